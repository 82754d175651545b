//! Profiles: a sandbox described in YAML (the policy DSL of `docs/policies.md`), parsed
//! into a [`Profile`] with every error located by file, line and column.
//!
//! ```yaml
//! profile: python-dev
//! mode: sandbox
//! security:
//!   seccomp: { default: errno, errno: ENOSYS, allow: [read, write, exit_group] }
//!   landlock:
//!     - { path: /workspace, access: read-write }
//!     - { path: /usr, access: read-execute }
//! resources: { memory: 512MiB, cpu: 1.0, pids: 256 }
//! network: { mode: none }
//! ```

mod catalog;
mod parse;
mod yaml;

use std::fmt;
use std::path::PathBuf;

use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall, PosixRlimitType,
};

pub use catalog::{load_file, Catalog, CatalogEntry, ProfileSource, BUILTIN, PROFILE_PATH_ENV};
pub use parse::{errno_name, parse_profile, parse_size, rlimit_name, ProfileError};

use crate::landlock::LandlockRules;
use crate::TargetArch;

/// How much isolation a profile asks for. The config.json carries it in the
/// `run.phantom.mode` annotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// No namespaces and no rootfs: the host's filesystem and network, confined by
    /// Landlock, seccomp, cgroup limits and rlimits only. The fastest start.
    Direct,
    /// Namespaces (pid, mount, ipc, uts, cgroup, network unless `host`) and a rootfs of
    /// read-only host directories; Landlock best-effort.
    #[default]
    Sandbox,
    /// `sandbox` plus a user namespace (the container's user mapped onto the caller's
    /// uid, nothing else) and no capabilities; refuses to run unless the kernel
    /// enforces the whole Landlock ruleset; a seccomp section is required.
    Hardened,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Direct, Mode::Sandbox, Mode::Hardened];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Direct => "direct",
            Mode::Sandbox => "sandbox",
            Mode::Hardened => "hardened",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == s)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// A parsed profile.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    pub name: String,
    pub description: Option<String>,
    pub mode: Mode,
    /// Default command when the caller gives none.
    pub command: Option<Vec<String>>,
    /// Working directory inside the sandbox (default `/workspace`).
    pub cwd: Option<PathBuf>,
    /// Bind-mount the host's /usr, /bin, /sbin, /lib* and a minimal /etc read-only
    /// into the rootfs (`host-system`, default true), so host interpreters run.
    pub host_system: bool,
    pub seccomp: Option<SeccompPolicy>,
    pub landlock: LandlockRules,
    /// Capabilities kept (all five sets); none by default.
    pub capabilities: Vec<Capability>,
    pub resources: Resources,
    pub network: NetworkMode,
    /// `network.allow` and `network.allow-cidr` (mode egress only).
    pub egress: crate::egress::EgressRules,
    pub mounts: Vec<MountSpec>,
    /// Environment, in order; the caller's additions come after.
    pub env: Vec<(String, String)>,
    pub rlimits: Vec<Rlimit>,
}

/// `security.seccomp`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeccompPolicy {
    /// For every syscall no list or rule names.
    pub default: Action,
    /// Allowed unconditionally.
    pub allow: Vec<String>,
    /// Denied with `deny_action`.
    pub deny: Vec<String>,
    pub deny_action: Action,
    /// Rules with argument conditions (or other actions), in order: the first matching
    /// rule of a syscall decides.
    pub rules: Vec<SyscallRule>,
}

/// A seccomp action of the DSL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Allow,
    /// Fail with this errno.
    Errno(u16),
    KillProcess,
    KillThread,
    /// SIGSYS to the thread.
    Trap,
    /// Allow and log.
    Log,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Errno(_) => "errno",
            Action::KillProcess => "kill-process",
            Action::KillThread => "kill-thread",
            Action::Trap => "trap",
            Action::Log => "log",
        }
    }

    fn oci(self) -> (LinuxSeccompAction, Option<u32>) {
        match self {
            Action::Allow => (LinuxSeccompAction::ScmpActAllow, None),
            Action::Errno(e) => (LinuxSeccompAction::ScmpActErrno, Some(u32::from(e))),
            Action::KillProcess => (LinuxSeccompAction::ScmpActKillProcess, None),
            Action::KillThread => (LinuxSeccompAction::ScmpActKillThread, None),
            Action::Trap => (LinuxSeccompAction::ScmpActTrap, None),
            Action::Log => (LinuxSeccompAction::ScmpActLog, None),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Errno(e) => match parse::errno_name(*e) {
                Some(n) => write!(f, "errno {n}"),
                None => write!(f, "errno {e}"),
            },
            a => f.write_str(a.name()),
        }
    }
}

/// One entry of `security.seccomp.rules`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyscallRule {
    pub names: Vec<String>,
    pub action: Action,
    /// ANDed.
    pub args: Vec<ArgCondition>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArgCondition {
    pub index: u8,
    pub op: ArgOp,
    pub value: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `(arg & mask) == value`.
    MaskedEq(u64),
}

/// `resources`.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Resources {
    /// Bytes.
    pub memory: Option<u64>,
    /// CPUs (1.5 = one and a half CPUs of time per period).
    pub cpu: Option<f64>,
    pub pids: Option<i64>,
    /// Size of the private /tmp tmpfs, bytes.
    pub tmp: Option<u64>,
    /// Size of /dev/shm, bytes.
    pub shm: Option<u64>,
    /// Most bytes a sandbox may keep in a workspace phantom makes for it:
    /// that workspace is then a tmpfs of this size, so a write past it
    /// fails with ENOSPC and nothing reaches the host's disk. A caller's
    /// own `--workspace` directory cannot be limited (docs/profiles.md).
    pub workspace: Option<u64>,
}

/// `network.mode`. Ordered by how much network it gives (none < loopback <
/// egress < host): a request may only go down from its profile's (`narrow`), so keep
/// the variants in that order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum NetworkMode {
    /// A network namespace with nothing in it.
    #[default]
    None,
    /// A network namespace with `lo` up.
    Loopback,
    /// A network namespace joined to the host by a veth; only what the
    /// egress allowlists name passes, through phantom's proxy and resolver
    /// (docs/egress.md).
    Egress,
    /// The host's network (no network namespace).
    Host,
}

impl NetworkMode {
    pub const ALL: [NetworkMode; 4] = [Self::None, Self::Loopback, Self::Egress, Self::Host];

    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Loopback => "loopback",
            Self::Egress => "egress",
            Self::Host => "host",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == s)
    }
}

impl fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// One entry of `mounts`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountSpec {
    pub target: PathBuf,
    pub kind: MountKind,
    /// Skip the mount when its source does not exist.
    pub optional: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountKind {
    Bind { source: PathBuf, writable: bool },
    Tmpfs { size: Option<u64> },
}

/// One entry of `rlimits`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rlimit {
    pub kind: PosixRlimitType,
    pub soft: u64,
    pub hard: u64,
}

impl SeccompPolicy {
    /// The `linux.seccomp` section this policy stands for on `arch`: names of syscalls
    /// the arch does not have are left out (the DSL has checked that each exists on
    /// x86_64 or aarch64). The deny list comes first, then the rules, then the allow
    /// list; only the native arch is listed, so 32-bit and x32 syscalls are killed.
    pub fn to_oci(&self, arch: TargetArch) -> LinuxSeccomp {
        let names = |v: &[String]| -> Vec<String> {
            v.iter()
                .filter(|n| arch.syscall_nr(n).is_some())
                .cloned()
                .collect()
        };
        let syscall = |names: Vec<String>, action: Action, args: Option<Vec<LinuxSeccompArg>>| {
            let (action, errno) = action.oci();
            let mut s = LinuxSyscall::default();
            s.set_names(names);
            s.set_action(action);
            s.set_errno_ret(errno);
            s.set_args(args);
            s
        };
        let mut syscalls = Vec::new();
        let deny = names(&self.deny);
        if !deny.is_empty() {
            syscalls.push(syscall(deny, self.deny_action, None));
        }
        for rule in &self.rules {
            let n = names(&rule.names);
            if n.is_empty() {
                continue;
            }
            let args = (!rule.args.is_empty()).then(|| {
                rule.args
                    .iter()
                    .map(|c| {
                        let (op, value, value_two) = match c.op {
                            ArgOp::Eq => (LinuxSeccompOperator::ScmpCmpEq, c.value, None),
                            ArgOp::Ne => (LinuxSeccompOperator::ScmpCmpNe, c.value, None),
                            ArgOp::Lt => (LinuxSeccompOperator::ScmpCmpLt, c.value, None),
                            ArgOp::Le => (LinuxSeccompOperator::ScmpCmpLe, c.value, None),
                            ArgOp::Gt => (LinuxSeccompOperator::ScmpCmpGt, c.value, None),
                            ArgOp::Ge => (LinuxSeccompOperator::ScmpCmpGe, c.value, None),
                            // OCI: (arg & value) == valueTwo.
                            ArgOp::MaskedEq(mask) => {
                                (LinuxSeccompOperator::ScmpCmpMaskedEq, mask, Some(c.value))
                            }
                        };
                        let mut b = LinuxSeccompArgBuilder::default()
                            .index(usize::from(c.index))
                            .op(op)
                            .value(value);
                        if let Some(v) = value_two {
                            b = b.value_two(v);
                        }
                        b.build().expect("every field is set")
                    })
                    .collect()
            });
            syscalls.push(syscall(n, rule.action, args));
        }
        let allow = names(&self.allow);
        if !allow.is_empty() {
            syscalls.push(syscall(allow, Action::Allow, None));
        }
        let (default_action, default_errno) = self.default.oci();
        let mut s = LinuxSeccomp::default();
        s.set_default_action(default_action);
        s.set_default_errno_ret(default_errno);
        s.set_architectures(Some(vec![match arch {
            TargetArch::X86_64 => Arch::ScmpArchX86_64,
            TargetArch::Aarch64 => Arch::ScmpArchAarch64,
        }]));
        s.set_syscalls(Some(syscalls));
        s
    }
}

impl Profile {
    /// Parses a profile. `file` names the source in errors (a path, or
    /// `builtin:NAME`).
    pub fn parse(text: &str, file: &str) -> Result<Profile, ProfileError> {
        parse_profile(text, file)
    }

    /// `linux.seccomp` for `arch`, if the profile has a seccomp section.
    pub fn linux_seccomp(&self, arch: TargetArch) -> Option<LinuxSeccomp> {
        self.seccomp.as_ref().map(|s| s.to_oci(arch))
    }

    /// One line about the filesystem: what is writable, readable, executable.
    pub fn filesystem_summary(&self) -> String {
        use crate::landlock::FsAccess as A;
        let mut rw = Vec::new();
        let mut ro = Vec::new();
        for r in &self.landlock.paths {
            let p = r.path.display().to_string();
            match r.access {
                A::ReadWrite => rw.push(p),
                A::ReadWriteExecute => rw.push(format!("{p}(x)")),
                A::ReadOnly => ro.push(p),
                A::ReadExecute | A::Execute => ro.push(format!("{p}(x)")),
            }
        }
        let mut parts = Vec::new();
        if !rw.is_empty() {
            parts.push(format!("rw {}", rw.join(",")));
        }
        if !ro.is_empty() {
            parts.push(format!("ro {}", ro.join(",")));
        }
        if parts.is_empty() {
            if self.mode == Mode::Direct {
                "host filesystem, unrestricted".into()
            } else {
                "rootfs only (no Landlock rules)".into()
            }
        } else {
            parts.join("; ")
        }
    }
}

#[cfg(test)]
mod tests;

//! Landlock: a compiled ruleset description ([`LandlockRules`]: paths with their access,
//! TCP ports) and [`apply`], which restricts the calling process with the `landlock`
//! crate.
//!
//! The rules travel from `phantom spec`/`phantom run --profile` to the container's init
//! as JSON in the annotation [`ANNOTATION`] (`run.phantom.landlock`). The init calls
//! [`apply`] after pivot_root (paths are resolved then, in the container's view) and
//! before seccomp (the filter of a profile may not allow the Landlock syscalls).
//!
//! # What is handled
//!
//! phantom targets Landlock ABI 6 (Linux 6.12): every filesystem right of that ABI is
//! handled, so whatever no rule grants is denied (read included); TCP bind/connect are
//! handled when the rules list a port (ABI 4); abstract UNIX sockets and signals are
//! scoped to the sandbox (ABI 6). On an older kernel the missing parts are not enforced
//! and reported in [`LandlockStatus::not_enforced`]; [`Mode::Hardened`] refuses to run
//! then. A rule whose path does not exist is skipped with a note.

use std::fmt;
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use landlock::{
    Access, AccessFs, AccessNet, BitFlags, NetPort, PathBeneath, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};
use serde::{Deserialize, Serialize};

use crate::Mode;

/// The annotation that carries [`LandlockRules`] as JSON in a config.json.
pub const ANNOTATION: &str = "run.phantom.landlock";

/// The Landlock ABI phantom asks for; hardened mode needs the kernel to have it.
const TARGET_ABI: ABI = ABI::V6;
const TARGET_ABI_NUMBER: u32 = 6;

/// A compiled Landlock ruleset: what the sandboxed process may reach. Serialised as the
/// JSON of the [`ANNOTATION`] annotation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LandlockRules {
    /// Filesystem hierarchies and what may be done beneath them; all else is denied.
    #[serde(default)]
    pub paths: Vec<PathRule>,
    /// TCP ports. Empty: TCP is not restricted by Landlock (the network namespace
    /// decides); otherwise only these binds and connects are allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortRule>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathRule {
    pub path: PathBuf,
    pub access: FsAccess,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortRule {
    pub port: u16,
    pub access: NetAccess,
}

/// Access to a file hierarchy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FsAccess {
    /// Read files, list directories.
    ReadOnly,
    /// Read and execute.
    ReadExecute,
    /// Execute only (the dynamic loader still needs read on the libraries).
    Execute,
    /// Read, write, create, remove, rename, truncate, device ioctls; no execute.
    ReadWrite,
    /// Everything.
    ReadWriteExecute,
}

impl FsAccess {
    pub const ALL: [FsAccess; 5] = [
        Self::ReadOnly,
        Self::ReadExecute,
        Self::Execute,
        Self::ReadWrite,
        Self::ReadWriteExecute,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::ReadOnly => "read-only",
            Self::ReadExecute => "read-execute",
            Self::Execute => "execute",
            Self::ReadWrite => "read-write",
            Self::ReadWriteExecute => "read-write-execute",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == s)
    }

    pub fn writable(self) -> bool {
        matches!(self, Self::ReadWrite | Self::ReadWriteExecute)
    }

    fn rights(self) -> BitFlags<AccessFs> {
        let read = AccessFs::ReadFile | AccessFs::ReadDir;
        let all = AccessFs::from_all(TARGET_ABI);
        match self {
            Self::ReadOnly => read,
            Self::ReadExecute => read | AccessFs::Execute,
            Self::Execute => AccessFs::Execute.into(),
            Self::ReadWrite => all & !AccessFs::Execute,
            Self::ReadWriteExecute => all,
        }
    }
}

impl fmt::Display for FsAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// Access to a TCP port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetAccess {
    Bind,
    Connect,
    BindConnect,
}

impl NetAccess {
    pub const ALL: [NetAccess; 3] = [Self::Bind, Self::Connect, Self::BindConnect];

    pub fn name(self) -> &'static str {
        match self {
            Self::Bind => "bind",
            Self::Connect => "connect",
            Self::BindConnect => "bind-connect",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == s)
    }

    fn rights(self) -> BitFlags<AccessNet> {
        match self {
            Self::Bind => AccessNet::BindTcp.into(),
            Self::Connect => AccessNet::ConnectTcp.into(),
            Self::BindConnect => AccessNet::BindTcp | AccessNet::ConnectTcp,
        }
    }
}

impl fmt::Display for NetAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl LandlockRules {
    /// The annotation value.
    pub fn to_annotation(&self) -> String {
        serde_json::to_string(self).expect("LandlockRules serialises")
    }

    /// Parses the annotation value (before the fork: the init only applies).
    pub fn from_annotation(s: &str) -> Result<Self, LandlockError> {
        serde_json::from_str(s).map_err(LandlockError::Annotation)
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty() && self.ports.is_empty()
    }
}

/// How much of the ruleset the kernel enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enforcement {
    Full,
    Partial,
    /// No Landlock on this kernel: nothing is enforced.
    None,
}

/// The outcome of [`apply`], to log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LandlockStatus {
    /// The kernel's Landlock ABI version; 0 without Landlock.
    pub abi: u32,
    pub enforcement: Enforcement,
    /// What the kernel could not enforce (empty when `enforcement` is `Full`).
    pub not_enforced: Vec<String>,
    /// Rules skipped because their path does not exist.
    pub skipped: Vec<String>,
}

impl fmt::Display for LandlockStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = match self.enforcement {
            Enforcement::Full => "fully enforced",
            Enforcement::Partial => "partially enforced",
            Enforcement::None => "not enforced",
        };
        write!(f, "Landlock ABI {}: {e}", self.abi)?;
        for n in &self.not_enforced {
            write!(f, "; {n}")?;
        }
        for s in &self.skipped {
            write!(f, "; {s}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LandlockError {
    #[error("annotations.{ANNOTATION}: {0}")]
    Annotation(#[source] serde_json::Error),

    #[error("landlock: open {path} for a rule: {source}")]
    Path {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "landlock: hardened mode needs the whole ruleset enforced, but this kernel has \
         Landlock ABI {abi} (phantom needs {TARGET_ABI_NUMBER}): {}",
        missing.join("; ")
    )]
    NotEnforced { abi: u32, missing: Vec<String> },

    #[error("landlock: {0}")]
    Ruleset(#[from] landlock::RulesetError),
}

/// The kernel's Landlock ABI version (`landlock_create_ruleset(NULL, 0,
/// LANDLOCK_CREATE_RULESET_VERSION)`), 0 when Landlock is missing or disabled.
pub fn kernel_abi() -> u32 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_ulong = 1;
    // SAFETY: with a NULL attribute and size 0, the kernel only reports its version.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    u32::try_from(v).unwrap_or(0)
}

/// What a kernel with Landlock ABI `abi` cannot enforce of `rules`.
pub fn unenforceable(abi: u32, rules: &LandlockRules) -> Vec<String> {
    let mut out = Vec::new();
    if abi == 0 {
        out.push(
            "Landlock is not available (not built into the kernel, or not enabled at boot): \
             no filesystem or network rule is enforced"
                .to_string(),
        );
        return out;
    }
    if abi < 3 {
        out.push("truncating files is not restricted (needs ABI 3)".into());
    }
    if abi < 4 && !rules.ports.is_empty() {
        out.push("TCP bind/connect port rules are not enforced (needs ABI 4)".into());
    }
    if abi < 5 {
        out.push("ioctl on device files is not restricted (needs ABI 5)".into());
    }
    if abi < 6 {
        out.push(
            "abstract UNIX sockets and signals are not scoped to the sandbox (needs ABI 6)".into(),
        );
    }
    out
}

/// Restricts the calling thread (and what it execs) to `rules`, with no_new_privs set.
///
/// Call it in the container's init after pivot_root and before seccomp. Paths are
/// opened now; one that does not exist is skipped with a note in
/// [`LandlockStatus::skipped`]. With [`Mode::Hardened`] anything the kernel cannot
/// enforce is an error and nothing is applied; otherwise it is applied best-effort and
/// reported in [`LandlockStatus::not_enforced`].
pub fn apply(rules: &LandlockRules, mode: Mode) -> Result<LandlockStatus, LandlockError> {
    let abi = kernel_abi();
    let not_enforced = unenforceable(abi, rules);
    if mode == Mode::Hardened && !not_enforced.is_empty() {
        return Err(LandlockError::NotEnforced {
            abi,
            missing: not_enforced,
        });
    }

    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(TARGET_ABI))?
        .scope(Scope::from_all(TARGET_ABI))?;
    if !rules.ports.is_empty() {
        ruleset = ruleset.handle_access(AccessNet::from_all(TARGET_ABI))?;
    }
    let mut created = ruleset.create()?.no_new_privs(true);

    let mut skipped = Vec::new();
    for rule in &rules.paths {
        let file = match File::options()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
            .open(&rule.path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                skipped.push(format!(
                    "{} does not exist: its {} rule is skipped",
                    rule.path.display(),
                    rule.access
                ));
                continue;
            }
            Err(source) => {
                return Err(LandlockError::Path {
                    path: rule.path.clone(),
                    source,
                })
            }
        };
        let is_dir = file
            .metadata()
            .map_err(|source| LandlockError::Path {
                path: rule.path.clone(),
                source,
            })?
            .is_dir();
        let mut access = rule.access.rights();
        if !is_dir {
            access &= AccessFs::from_file(TARGET_ABI);
        }
        if access.is_empty() {
            skipped.push(format!(
                "{} is not a directory: its {} rule grants nothing on a file",
                rule.path.display(),
                rule.access
            ));
            continue;
        }
        created = created.add_rule(PathBeneath::new(file, access))?;
    }
    for p in &rules.ports {
        created = created.add_rule(NetPort::new(p.port, p.access.rights()))?;
    }
    let status = created.restrict_self()?;
    let enforcement = match status.ruleset {
        RulesetStatus::FullyEnforced => Enforcement::Full,
        RulesetStatus::PartiallyEnforced => Enforcement::Partial,
        RulesetStatus::NotEnforced => Enforcement::None,
    };
    if mode == Mode::Hardened && enforcement != Enforcement::Full {
        // Unreachable with the ABI check above, unless the kernel disagrees with it.
        return Err(LandlockError::NotEnforced {
            abi,
            missing: vec![format!("the kernel reports the ruleset {enforcement:?}")],
        });
    }
    Ok(LandlockStatus {
        abi,
        enforcement,
        not_enforced: if enforcement == Enforcement::Full {
            Vec::new()
        } else {
            not_enforced
        },
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotation_round_trip() {
        let rules = LandlockRules {
            paths: vec![
                PathRule {
                    path: "/workspace".into(),
                    access: FsAccess::ReadWrite,
                },
                PathRule {
                    path: "/usr".into(),
                    access: FsAccess::ReadExecute,
                },
            ],
            ports: vec![PortRule {
                port: 443,
                access: NetAccess::Connect,
            }],
        };
        let s = rules.to_annotation();
        assert_eq!(
            s,
            r#"{"paths":[{"path":"/workspace","access":"read-write"},{"path":"/usr","access":"read-execute"}],"ports":[{"port":443,"access":"connect"}]}"#
        );
        assert_eq!(LandlockRules::from_annotation(&s).unwrap(), rules);
        assert!(LandlockRules::from_annotation(r#"{"paths":[],"extra":1}"#).is_err());
        assert!(
            LandlockRules::from_annotation(r#"{"paths":[{"path":"/","access":"all"}]}"#).is_err()
        );
    }

    #[test]
    fn unenforceable_by_abi() {
        let mut rules = LandlockRules::default();
        assert_eq!(unenforceable(0, &rules).len(), 1);
        assert_eq!(unenforceable(3, &rules).len(), 2);
        rules.ports.push(PortRule {
            port: 80,
            access: NetAccess::Bind,
        });
        assert_eq!(unenforceable(3, &rules).len(), 3);
        assert!(unenforceable(6, &rules).is_empty());
        assert!(unenforceable(7, &rules).is_empty());
    }

    #[test]
    fn rights_nest() {
        let ro = FsAccess::ReadOnly.rights();
        assert!(FsAccess::ReadWrite.rights().contains(ro));
        assert!(!FsAccess::ReadWrite.rights().contains(AccessFs::Execute));
        assert_eq!(
            FsAccess::ReadWriteExecute.rights(),
            AccessFs::from_all(TARGET_ABI)
        );
    }
}

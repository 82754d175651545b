//! The OCI `linux.seccomp` section compiled to one seccomp BPF program, loaded with one
//! `seccomp(SECCOMP_SET_MODE_FILTER)` call. No libseccomp.
//!
//! # How the program is built
//!
//! seccompiler's `SeccompFilter` has one match action per filter, and OCI profiles mix
//! actions (allow, several errnos, kill). Chaining one seccompiler filter per action, with
//! sentinel returns rewritten into jumps, would repeat the arch check and the syscall
//! dispatch per group and spend five instructions per unconditional syscall. Instead
//! phantom lays out the program itself and takes from seccompiler the part that is easy to
//! get wrong: the argument comparisons (`SeccompRule` → BPF, 64-bit values split into two
//! 32-bit compares). The program is:
//!
//! 1. **Arch check.** `seccomp_data.arch` is the native audit arch, or else: a listed
//!    compat arch (`SCMP_ARCH_X86` on x86_64, `SCMP_ARCH_ARM` on aarch64) gets the
//!    *default action* when that action denies (anything but `SCMP_ACT_ALLOW` and
//!    `SCMP_ACT_LOG`), and `SECCOMP_RET_KILL_PROCESS` otherwise; an unlisted arch is
//!    killed. phantom has no syscall table for 32-bit ABIs, so it cannot filter them
//!    rule by rule; with a denying default they are simply all denied (unlike
//!    libseccomp, which filters them by their own numbers, so 32-bit programs do not run
//!    under Docker's or Podman's profile), and with an allowing default they would be
//!    unfiltered, so they are killed (with a warning).
//! 2. **x32 check** (x86_64 only). x32 syscalls arrive with `AUDIT_ARCH_X86_64` and
//!    `nr | 0x40000000`; any `nr >= 0x40000000` gets the same treatment as a compat
//!    arch (`SCMP_ARCH_X32` listed or not), so x32 can never reach an x86_64 rule's
//!    fall-through or bypass a deny rule.
//! 3. **Syscall dispatch**, linear: first the syscalls whose rules look at arguments,
//!    each with its rules in profile order (a rule's comparisons from seccompiler, then
//!    `RET action`, the first matching rule wins, then `RET default`); then the syscalls
//!    with an unconditional rule, grouped by action so that each group shares one
//!    `RET` (one `JEQ` per syscall). Jumps longer than 255 go through a `JA`.
//! 4. `RET default`.
//!
//! The kernel caches "always allowed" syscall numbers per filter (Linux 5.11+), so the
//! linear dispatch costs nothing on the hot path of allowed syscalls.
//!
//! # Rule semantics (libseccomp's, as runc and crun apply it)
//!
//! - Rules whose action equals the default action are dropped (libseccomp refuses
//!   them; runc skips them).
//! - Per syscall, the first rule *without* arguments wins: a later rule for the same
//!   syscall is ignored, and it replaces earlier rules *with* arguments (libseccomp
//!   does the same). A warning says so when the actions differ.
//! - Rules with arguments: the comparisons of one rule are ANDed (also when one
//!   argument index appears twice, where runc instead splits the rule in two and ORs
//!   them); several rules for a syscall are ORed, and when their actions differ the
//!   first matching rule in profile order wins (libseccomp merges them into a tree whose
//!   result for overlapping rules with different actions is not specified).
//! - Comparisons are on the full 64-bit argument; `SCMP_CMP_MASKED_EQ` is
//!   `(arg & value) == (valueTwo & value)` (libseccomp masks `valueTwo` too).
//! - A syscall name unknown on the target arch is skipped with a warning, as libseccomp
//!   does (profiles list syscalls of every arch).
//! - `SCMP_ACT_NOTIFY`, `listenerPath` and `listenerMetadata` are refused: seccomp user
//!   notification needs an agent, which phantom does not have yet.

mod bpf;
mod explain;
mod syscalls;

use std::collections::HashMap;
use std::fmt;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator,
};
use seccompiler::{sock_filter, BpfProgram, SeccompCmpArgLen, SeccompCmpOp, SeccompRule};

pub use bpf::MAX_INSNS;
use bpf::{jump, ret, stmt, BPF_JMP_JA, BPF_JMP_JEQ_K, BPF_JMP_JGE_K, BPF_LD_W_ABS};
pub use explain::{describe_action, explain, ExplainedSyscall, Explanation, Verdict};

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;
const AUDIT_ARCH_ARM: u32 = 0x4000_0028;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Flags that `compile_oci` passes on to `seccomp()`.
const PASSED_FLAGS: u32 = (libc::SECCOMP_FILTER_FLAG_TSYNC
    | libc::SECCOMP_FILTER_FLAG_LOG
    | libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW) as u32;

/// Errors of compiling, decoding and loading a seccomp filter. Each names the
/// `linux.seccomp` field (or the step) that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SeccompError {
    #[error("{field}: {action} is not supported yet ({reason})")]
    UnsupportedAction {
        field: String,
        action: LinuxSeccompAction,
        reason: &'static str,
    },

    #[error(
        "{field}: seccomp user notification (SCMP_ACT_NOTIFY) is not supported yet, \
         so there is no listener to configure"
    )]
    NotifyListener { field: &'static str },

    #[error("{field}: {action} takes no errno (only SCMP_ACT_ERRNO and SCMP_ACT_TRACE do)")]
    ErrnoNotAllowed {
        field: String,
        action: LinuxSeccompAction,
    },

    #[error("{field}: {value} does not fit in the 16 bits of SECCOMP_RET_DATA")]
    ErrnoOutOfRange { field: String, value: u32 },

    #[error("{field}: argument index {index} is out of range (a syscall has arguments 0 to 5)")]
    ArgIndex { field: String, index: usize },

    #[error("{field}: {cause}")]
    Rule {
        field: String,
        cause: seccompiler::BackendError,
    },

    #[error(
        "linux.seccomp: the compiled filter has {len} BPF instructions, more than the \
         kernel's limit of {MAX_INSNS}; the profile has too many rules"
    )]
    TooLarge { len: usize },

    #[error(
        "linux.seccomp: no seccomp support for host architecture {0} (x86_64 and aarch64 only)"
    )]
    UnsupportedArch(&'static str),

    #[error("compiled seccomp filter: {0}")]
    Corrupt(String),

    #[error("compiling linux.seccomp produced an invalid program (a bug in phantom-policy): {0}")]
    Internal(String),

    #[error(
        "seccomp(SECCOMP_SET_MODE_FILTER, flags {flags:#x}): {cause}{}",
        install_hint(cause)
    )]
    Install { flags: u32, cause: std::io::Error },

    #[error(
        "seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC): thread {tid} \
         cannot be synchronised to the new filter"
    )]
    ThreadSync { tid: i64 },
}

fn install_hint(cause: &std::io::Error) -> &'static str {
    match cause.raw_os_error() {
        Some(libc::EACCES) => {
            " (the caller needs no_new_privs, prctl(PR_SET_NO_NEW_PRIVS, 1), or \
             CAP_SYS_ADMIN in its user namespace)"
        }
        Some(libc::EINVAL) => " (a flag or an action this kernel does not support?)",
        _ => "",
    }
}

/// An architecture phantom has a syscall table for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TargetArch {
    X86_64,
    Aarch64,
}

impl TargetArch {
    /// The arch phantom was built for, if it is supported.
    pub fn native() -> Option<Self> {
        if cfg!(target_arch = "x86_64") {
            Some(Self::X86_64)
        } else if cfg!(target_arch = "aarch64") {
            Some(Self::Aarch64)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::X86_64 => "x86_64",
            Self::Aarch64 => "aarch64",
        }
    }

    /// `AUDIT_ARCH_*`, as the kernel puts it in `seccomp_data.arch`.
    pub fn audit_arch(self) -> u32 {
        match self {
            Self::X86_64 => AUDIT_ARCH_X86_64,
            Self::Aarch64 => AUDIT_ARCH_AARCH64,
        }
    }

    /// The syscall number of `name` on this arch.
    pub fn syscall_nr(self, name: &str) -> Option<u32> {
        let table = match self {
            Self::X86_64 => syscalls::X86_64,
            Self::Aarch64 => syscalls::AARCH64,
        };
        syscalls::lookup(table, name)
    }

    /// The 32-bit ABI this arch's kernel also runs: its libseccomp name and audit arch.
    fn compat(self) -> (Arch, u32) {
        match self {
            Self::X86_64 => (Arch::ScmpArchX86, AUDIT_ARCH_I386),
            Self::Aarch64 => (Arch::ScmpArchArm, AUDIT_ARCH_ARM),
        }
    }
}

impl fmt::Display for TargetArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A seccomp BPF program ready for `seccomp(SECCOMP_SET_MODE_FILTER)`, with its flags
/// and the warnings of its compilation (kept so that a cache hit can repeat them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledFilter {
    program: BpfProgram,
    flags: u32,
    warnings: Vec<String>,
}

const MAGIC: &[u8; 4] = b"PHSF";
const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 20;

// `install` hands the program to the kernel as `libc::sock_filter`s.
const _: () = {
    assert!(std::mem::size_of::<sock_filter>() == std::mem::size_of::<libc::sock_filter>());
    assert!(std::mem::align_of::<sock_filter>() == std::mem::align_of::<libc::sock_filter>());
    assert!(std::mem::size_of::<sock_filter>() == 8);
};

impl CompiledFilter {
    /// Number of BPF instructions.
    pub fn len(&self) -> usize {
        self.program.len()
    }

    pub fn is_empty(&self) -> bool {
        self.program.is_empty()
    }

    /// `SECCOMP_FILTER_FLAG_*` bits passed to `seccomp()`.
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// Warnings of the compilation: syscall names unknown on the arch, rules that
    /// libseccomp semantics shadow, arches that cannot be filtered rule by rule.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The BPF instructions.
    pub fn instructions(&self) -> &[sock_filter] {
        &self.program
    }

    /// Runs the program on one syscall, as the kernel would, and returns its
    /// `SECCOMP_RET_*` value (action | data). `arch` is an `AUDIT_ARCH_*` value.
    pub fn simulate(&self, arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        bpf::run(&self.program, nr, arch, &args)
    }

    /// Serialises the filter for a cache: `b"PHSF"`, format version, flags, instruction
    /// count and warning count (u32 LE each), then 8 bytes per instruction (code u16,
    /// jt u8, jf u8, k u32, LE), then each warning as a u32 LE length and UTF-8 bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let warn_len: usize = self.warnings.iter().map(|w| 4 + w.len()).sum();
        let mut out = Vec::with_capacity(HEADER_LEN + 8 * self.program.len() + warn_len);
        out.extend_from_slice(MAGIC);
        for v in [
            FORMAT_VERSION,
            self.flags,
            len_u32(self.program.len()),
            len_u32(self.warnings.len()),
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for insn in &self.program {
            out.extend_from_slice(&insn.code.to_le_bytes());
            out.push(insn.jt);
            out.push(insn.jf);
            out.extend_from_slice(&insn.k.to_le_bytes());
        }
        for w in &self.warnings {
            out.extend_from_slice(&len_u32(w.len()).to_le_bytes());
            out.extend_from_slice(w.as_bytes());
        }
        out
    }

    /// Reads what [`to_bytes`](Self::to_bytes) wrote. Anything malformed (truncated,
    /// trailing bytes, unknown flags, a program that could not have been generated) is
    /// an error: a cache must recompile rather than trust it.
    pub fn from_bytes(b: &[u8]) -> Result<Self, SeccompError> {
        let corrupt = |what: String| SeccompError::Corrupt(what);
        let mut r = Reader { b, pos: 0 };
        if r.take(4)
            .ok_or_else(|| corrupt("truncated header".into()))?
            != MAGIC
        {
            return Err(corrupt("bad magic".into()));
        }
        let mut header = [0u32; 4];
        for v in &mut header {
            *v = r.u32().ok_or_else(|| corrupt("truncated header".into()))?;
        }
        let [version, flags, n_insns, n_warnings] = header;
        if version != FORMAT_VERSION {
            return Err(corrupt(format!(
                "format version {version}, expected {FORMAT_VERSION}"
            )));
        }
        if flags & !PASSED_FLAGS != 0 {
            return Err(corrupt(format!("unknown flags {flags:#x}")));
        }
        let n_insns = n_insns as usize;
        if n_insns == 0 || n_insns > MAX_INSNS {
            return Err(corrupt(format!("{n_insns} instructions")));
        }
        let code = r
            .take(8 * n_insns)
            .ok_or_else(|| corrupt(format!("truncated: fewer than {n_insns} instructions")))?;
        let program: BpfProgram = code
            .chunks_exact(8)
            .map(|c| sock_filter {
                code: u16::from_le_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        bpf::validate(&program).map_err(corrupt)?;
        let mut warnings = Vec::new();
        for i in 0..n_warnings {
            let text = r
                .u32()
                .and_then(|len| r.take(len as usize))
                .ok_or_else(|| corrupt(format!("truncated warning {i}")))?;
            let text = std::str::from_utf8(text)
                .map_err(|_| corrupt(format!("warning {i} is not UTF-8")))?;
            warnings.push(text.to_owned());
        }
        if r.pos != b.len() {
            return Err(corrupt(format!("{} trailing bytes", b.len() - r.pos)));
        }
        Ok(Self {
            program,
            flags,
            warnings,
        })
    }

    /// Loads the filter on the calling thread (on every thread of the process with
    /// `SECCOMP_FILTER_FLAG_TSYNC`) with one `seccomp(SECCOMP_SET_MODE_FILTER)` call.
    ///
    /// The caller must already have set no_new_privs (`prctl(PR_SET_NO_NEW_PRIVS)`) or
    /// hold CAP_SYS_ADMIN; otherwise the kernel answers EACCES. It neither allocates nor
    /// takes locks, so it may run in a child between `fork` and `exec`.
    pub fn install(&self) -> Result<(), SeccompError> {
        let prog = libc::sock_fprog {
            // At most MAX_INSNS (4096): `compile_oci` and `from_bytes` guarantee it.
            len: self.program.len() as libc::c_ushort,
            filter: self.program.as_ptr().cast::<libc::sock_filter>().cast_mut(),
        };
        // SAFETY: `prog` points to `self.program`, which outlives the call, with `len`
        // instructions; `seccompiler::sock_filter` and `libc::sock_filter` are both
        // `repr(C)` {u16, u8, u8, u32} (size and alignment asserted above). The kernel
        // only reads the program and copies it.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                libc::c_ulong::from(self.flags),
                &prog as *const libc::sock_fprog,
            )
        };
        match rc {
            0 => Ok(()),
            tid if tid > 0 => Err(SeccompError::ThreadSync { tid }),
            _ => Err(SeccompError::Install {
                flags: self.flags,
                cause: std::io::Error::last_os_error(),
            }),
        }
    }
}

fn len_u32(n: usize) -> u32 {
    u32::try_from(n).expect("length fits in u32")
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.b.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    fn u32(&mut self) -> Option<u32> {
        let s = self.take(4)?;
        Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
}

/// Compiles `linux.seccomp` for the arch phantom runs on.
pub fn compile_oci(seccomp: &LinuxSeccomp) -> Result<CompiledFilter, SeccompError> {
    let arch = TargetArch::native().ok_or(SeccompError::UnsupportedArch(std::env::consts::ARCH))?;
    compile_oci_for(seccomp, arch)
}

/// Compiles `linux.seccomp` for `arch` (for a cache filled ahead of time, or tests).
pub fn compile_oci_for(
    seccomp: &LinuxSeccomp,
    arch: TargetArch,
) -> Result<CompiledFilter, SeccompError> {
    let plan = plan(seccomp, arch)?;
    let program = generate(arch, plan.default, &plan.foreign, &plan.table)?;
    Ok(CompiledFilter {
        program,
        flags: plan.flags,
        warnings: plan.warnings,
    })
}

/// `linux.seccomp` resolved for one arch: actions as `SECCOMP_RET_*` values, the rules
/// per syscall number after libseccomp's merging. Both the compiler and `explain` work
/// from it.
struct Plan {
    default: u32,
    flags: u32,
    foreign: Foreign,
    table: RuleTable,
    warnings: Vec<String>,
}

fn plan(seccomp: &LinuxSeccomp, arch: TargetArch) -> Result<Plan, SeccompError> {
    let mut warnings = Vec::new();

    if seccomp.listener_path().is_some() {
        return Err(SeccompError::NotifyListener {
            field: "linux.seccomp.listenerPath",
        });
    }
    if seccomp.listener_metadata().is_some() {
        return Err(SeccompError::NotifyListener {
            field: "linux.seccomp.listenerMetadata",
        });
    }

    let default_action = seccomp.default_action();
    let default = action_value(default_action, seccomp.default_errno_ret(), Site::Default)?;

    let flags = filter_flags(
        seccomp.flags().as_deref().unwrap_or_default(),
        &mut warnings,
    );
    let foreign = foreign_actions(seccomp, arch, default_action, default, &mut warnings);

    let mut table = RuleTable::default();
    for (i, rule) in seccomp
        .syscalls()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let site = Site::Rule(i);
        let action = action_value(rule.action(), rule.errno_ret(), site)?;
        let args = rule.args().as_deref().unwrap_or_default();
        let condition = if args.is_empty() {
            None
        } else {
            Some(seccomp_rule(args, i)?)
        };
        let field = || format!("linux.seccomp.syscalls[{i}]");
        if rule.names().is_empty() {
            warnings.push(format!("{}.names: empty; rule ignored", field()));
        }
        if action == default {
            // libseccomp refuses a rule with the default action; runc and crun skip it.
            continue;
        }
        for (j, name) in rule.names().iter().enumerate() {
            let Some(nr) = arch.syscall_nr(name) else {
                warnings.push(format!(
                    "{}.names[{j}]: {name:?} is not a syscall on {arch}; ignored",
                    field()
                ));
                continue;
            };
            let origin = Origin {
                rule: i,
                action: rule.action(),
            };
            if let Some(w) = table.add(nr, name, origin, action, condition.clone()) {
                warnings.push(format!("{}.names[{j}]: {w}", field()));
            }
        }
    }
    Ok(Plan {
        default,
        flags,
        foreign,
        table,
        warnings,
    })
}

/// Where an action was found, to name its fields in errors.
#[derive(Clone, Copy)]
enum Site {
    Default,
    Rule(usize),
}

impl Site {
    fn action(self) -> String {
        match self {
            Site::Default => "linux.seccomp.defaultAction".into(),
            Site::Rule(i) => format!("linux.seccomp.syscalls[{i}].action"),
        }
    }

    fn errno(self) -> String {
        match self {
            Site::Default => "linux.seccomp.defaultErrnoRet".into(),
            Site::Rule(i) => format!("linux.seccomp.syscalls[{i}].errnoRet"),
        }
    }
}

/// `SECCOMP_RET_*` value of an OCI action.
fn action_value(
    action: LinuxSeccompAction,
    errno: Option<u32>,
    site: Site,
) -> Result<u32, SeccompError> {
    use LinuxSeccompAction as A;
    let data = match (action, errno) {
        (A::ScmpActErrno | A::ScmpActTrace, None) => libc::EPERM as u32,
        (A::ScmpActErrno | A::ScmpActTrace, Some(e)) if e <= libc::SECCOMP_RET_DATA => e,
        (A::ScmpActErrno | A::ScmpActTrace, Some(value)) => {
            return Err(SeccompError::ErrnoOutOfRange {
                field: site.errno(),
                value,
            })
        }
        (A::ScmpActNotify, _) => {
            return Err(SeccompError::UnsupportedAction {
                field: site.action(),
                action,
                reason: "seccomp user notification",
            })
        }
        (_, Some(_)) => {
            return Err(SeccompError::ErrnoNotAllowed {
                field: site.errno(),
                action,
            })
        }
        (_, None) => 0,
    };
    Ok(match action {
        A::ScmpActKill | A::ScmpActKillThread => libc::SECCOMP_RET_KILL_THREAD,
        A::ScmpActKillProcess => libc::SECCOMP_RET_KILL_PROCESS,
        A::ScmpActTrap => libc::SECCOMP_RET_TRAP,
        A::ScmpActErrno => libc::SECCOMP_RET_ERRNO | data,
        A::ScmpActTrace => libc::SECCOMP_RET_TRACE | data,
        A::ScmpActLog => libc::SECCOMP_RET_LOG,
        A::ScmpActAllow => libc::SECCOMP_RET_ALLOW,
        A::ScmpActNotify => unreachable!("refused above"),
    })
}

fn filter_flags(flags: &[LinuxSeccompFilterFlag], warnings: &mut Vec<String>) -> u32 {
    use LinuxSeccompFilterFlag as F;
    let mut bits = 0;
    for (i, flag) in flags.iter().enumerate() {
        bits |= match flag {
            F::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
            F::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            F::SeccompFilterFlagSpecAllow => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            F::SeccompFilterFlagWaitKillableRecv => {
                // The kernel refuses it without SECCOMP_FILTER_FLAG_NEW_LISTENER, which
                // only SCMP_ACT_NOTIFY needs; libseccomp likewise sets it only then.
                warnings.push(format!(
                    "linux.seccomp.flags[{i}]: SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV only \
                     applies to SCMP_ACT_NOTIFY, which is not used; not passed to seccomp()"
                ));
                0
            }
        };
    }
    bits as u32
}

/// What the program returns for syscalls it cannot filter by name.
struct Foreign {
    /// `seccomp_data.arch` of the compat ABI, and the action for it.
    compat: (u32, u32),
    /// Action for x32 syscalls (x86_64 only).
    x32: Option<u32>,
}

fn foreign_actions(
    seccomp: &LinuxSeccomp,
    arch: TargetArch,
    default_action: LinuxSeccompAction,
    default: u32,
    warnings: &mut Vec<String>,
) -> Foreign {
    let listed = seccomp.architectures().as_deref().unwrap_or_default();
    let denies = !matches!(
        default_action,
        LinuxSeccompAction::ScmpActAllow | LinuxSeccompAction::ScmpActLog
    );
    let mut action_for = |oci: Arch| {
        if !listed.contains(&oci) {
            libc::SECCOMP_RET_KILL_PROCESS
        } else if denies {
            default
        } else {
            warnings.push(format!(
                "linux.seccomp.architectures: {oci} syscalls are killed: phantom cannot \
                 filter them rule by rule, and the default action {default_action} would \
                 let them through unfiltered"
            ));
            libc::SECCOMP_RET_KILL_PROCESS
        }
    };
    let (compat_oci, compat_audit) = arch.compat();
    Foreign {
        compat: (compat_audit, action_for(compat_oci)),
        x32: (arch == TargetArch::X86_64).then(|| action_for(Arch::ScmpArchX32)),
    }
}

/// Converts the `args` of `linux.seccomp.syscalls[rule]` to a seccompiler rule (its
/// comparisons ANDed).
fn seccomp_rule(args: &[LinuxSeccompArg], rule: usize) -> Result<SeccompRule, SeccompError> {
    use LinuxSeccompOperator as O;
    let field = |k: usize| format!("linux.seccomp.syscalls[{rule}].args[{k}]");
    let mut conditions = Vec::with_capacity(args.len());
    for (k, arg) in args.iter().enumerate() {
        let index = u8::try_from(arg.index())
            .ok()
            .filter(|i| *i <= 5)
            .ok_or_else(|| SeccompError::ArgIndex {
                field: format!("{}.index", field(k)),
                index: arg.index(),
            })?;
        let (op, value) = match arg.op() {
            O::ScmpCmpNe => (SeccompCmpOp::Ne, arg.value()),
            O::ScmpCmpLt => (SeccompCmpOp::Lt, arg.value()),
            O::ScmpCmpLe => (SeccompCmpOp::Le, arg.value()),
            O::ScmpCmpEq => (SeccompCmpOp::Eq, arg.value()),
            O::ScmpCmpGe => (SeccompCmpOp::Ge, arg.value()),
            O::ScmpCmpGt => (SeccompCmpOp::Gt, arg.value()),
            O::ScmpCmpMaskedEq => (
                SeccompCmpOp::MaskedEq(arg.value()),
                arg.value_two().unwrap_or(0),
            ),
        };
        let condition =
            seccompiler::SeccompCondition::new(index, SeccompCmpArgLen::Qword, op, value).map_err(
                |cause| SeccompError::Rule {
                    field: field(k),
                    cause,
                },
            )?;
        conditions.push(condition);
    }
    SeccompRule::new(conditions).map_err(|cause| SeccompError::Rule {
        field: format!("linux.seccomp.syscalls[{rule}].args"),
        cause,
    })
}

/// Which OCI rule an entry came from, for warnings.
#[derive(Clone, Copy)]
struct Origin {
    rule: usize,
    action: LinuxSeccompAction,
}

enum Entry {
    /// A rule without arguments.
    Always { action: u32, origin: Origin },
    /// Rules with arguments, in profile order.
    Conditional(Vec<(SeccompRule, u32, Origin)>),
}

/// The rules per syscall number, after libseccomp's merging, in order of first mention.
#[derive(Default)]
struct RuleTable {
    order: Vec<(u32, Entry)>,
    index: HashMap<u32, usize>,
    names: HashMap<u32, String>,
}

impl RuleTable {
    /// Adds a rule for syscall `nr`; returns a warning if libseccomp semantics made it
    /// shadow, or be shadowed by, a rule with a different action.
    fn add(
        &mut self,
        nr: u32,
        name: &str,
        origin: Origin,
        action: u32,
        condition: Option<SeccompRule>,
    ) -> Option<String> {
        let Some(&slot) = self.index.get(&nr) else {
            self.index.insert(nr, self.order.len());
            self.names.insert(nr, name.to_string());
            let entry = match condition {
                None => Entry::Always { action, origin },
                Some(rule) => Entry::Conditional(vec![(rule, action, origin)]),
            };
            self.order.push((nr, entry));
            return None;
        };
        let entry = &mut self.order[slot].1;
        match entry {
            Entry::Always {
                action: a,
                origin: o,
            } => (*a != action).then(|| {
                format!(
                    "{name} already has a rule without arguments \
                     (linux.seccomp.syscalls[{}], {}); this {} rule is ignored, as \
                     libseccomp does",
                    o.rule, o.action, origin.action
                )
            }),
            Entry::Conditional(rules) => match condition {
                Some(rule) => {
                    rules.push((rule, action, origin));
                    None
                }
                None => {
                    let differs = rules.iter().any(|(_, a, _)| *a != action);
                    *entry = Entry::Always { action, origin };
                    differs.then(|| {
                        format!(
                            "this {} rule without arguments replaces the earlier rules \
                             with arguments for {name}, as libseccomp does",
                            origin.action
                        )
                    })
                }
            },
        }
    }
}

/// Lays out the program (see the module docs).
fn generate(
    arch: TargetArch,
    default: u32,
    foreign: &Foreign,
    table: &RuleTable,
) -> Result<BpfProgram, SeccompError> {
    let mut p: BpfProgram = Vec::with_capacity(512);

    // 1. Arch check.
    let (compat_audit, compat_action) = foreign.compat;
    let foreign_block: Vec<sock_filter> = if compat_action == libc::SECCOMP_RET_KILL_PROCESS {
        vec![ret(libc::SECCOMP_RET_KILL_PROCESS)]
    } else {
        vec![
            jump(BPF_JMP_JEQ_K, compat_audit, 0, 1),
            ret(compat_action),
            ret(libc::SECCOMP_RET_KILL_PROCESS),
        ]
    };
    p.push(stmt(BPF_LD_W_ABS, bpf::DATA_ARCH));
    p.push(jump(
        BPF_JMP_JEQ_K,
        arch.audit_arch(),
        foreign_block.len() as u8,
        0,
    ));
    p.extend(foreign_block);
    p.push(stmt(BPF_LD_W_ABS, bpf::DATA_NR));

    // 2. x32.
    if let Some(x32_action) = foreign.x32 {
        p.push(jump(BPF_JMP_JGE_K, X32_SYSCALL_BIT, 0, 1));
        p.push(ret(x32_action));
    }

    // 3a. Syscalls with argument rules: JEQ nr, then the rules, then RET default.
    for (nr, entry) in &table.order {
        let Entry::Conditional(rules) = entry else {
            continue;
        };
        let mut body: BpfProgram = Vec::new();
        for (rule, action, _) in rules {
            // seccompiler's rule block falls through when every comparison matches and
            // otherwise jumps to the instruction after the one that follows the block:
            // here, past `RET action` to the next rule or `RET default`.
            body.extend(BpfProgram::from(rule.clone()));
            body.push(ret(*action));
        }
        body.push(ret(default));
        match u8::try_from(body.len()) {
            Ok(skip) => p.push(jump(BPF_JMP_JEQ_K, *nr, 0, skip)),
            Err(_) => {
                p.push(jump(BPF_JMP_JEQ_K, *nr, 1, 0));
                p.push(stmt(BPF_JMP_JA, len_u32(body.len())));
            }
        }
        p.extend(body);
        if p.len() > MAX_INSNS {
            return Err(SeccompError::TooLarge { len: p.len() });
        }
    }

    // 3b. Syscalls with one unconditional action, grouped by action, runs of at most
    // 255 `JEQ`s sharing one `RET`.
    let mut groups: Vec<(u32, Vec<u32>)> = Vec::new();
    for (nr, entry) in &table.order {
        if let Entry::Always { action, .. } = entry {
            match groups.iter_mut().find(|(a, _)| a == action) {
                Some((_, nrs)) => nrs.push(*nr),
                None => groups.push((*action, vec![*nr])),
            }
        }
    }
    for (action, nrs) in &groups {
        for run in nrs.chunks(usize::from(u8::MAX)) {
            let last = run.len() - 1;
            for (i, nr) in run.iter().enumerate() {
                let jt = (last - i) as u8; // to the RET after the run
                let jf = u8::from(i == last); // next JEQ, or past the RET
                p.push(jump(BPF_JMP_JEQ_K, *nr, jt, jf));
            }
            p.push(ret(*action));
        }
    }

    // 4. Default.
    p.push(ret(default));

    if p.len() > MAX_INSNS {
        return Err(SeccompError::TooLarge { len: p.len() });
    }
    bpf::validate(&p).map_err(SeccompError::Internal)?;
    Ok(p)
}

#[cfg(test)]
mod tests;

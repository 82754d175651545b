//! What a compiled `linux.seccomp` does, syscall by syscall, in words: the same plan
//! the compiler lays out (libseccomp's merging applied), before it becomes BPF.

use std::fmt;

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompOperator};

use super::{plan, Entry, SeccompError, TargetArch};

/// What happens to one syscall the profile names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The same action whatever the arguments.
    Always(String),
    /// Conditions (ANDed comparisons) and their action, the first match wins; the
    /// default action otherwise.
    Conditional(Vec<(String, String)>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExplainedSyscall {
    pub name: String,
    pub nr: u32,
    pub verdict: Verdict,
}

/// A seccomp policy in words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    pub arch: TargetArch,
    /// The action for every syscall not listed.
    pub default: String,
    /// What other ABIs (32-bit, x32) get.
    pub foreign: Vec<String>,
    /// Listed syscalls, in the order of the profile.
    pub syscalls: Vec<ExplainedSyscall>,
    /// The compiler's warnings.
    pub warnings: Vec<String>,
}

/// A `SECCOMP_RET_*` value in words: `allow`, `errno EPERM (1)`, `kill-process`, ...
pub fn describe_action(ret: u32) -> String {
    let data = ret & libc::SECCOMP_RET_DATA;
    match ret & libc::SECCOMP_RET_ACTION_FULL {
        libc::SECCOMP_RET_ALLOW => "allow".into(),
        libc::SECCOMP_RET_LOG => "log (allow and log)".into(),
        libc::SECCOMP_RET_KILL_PROCESS => "kill-process (SIGSYS)".into(),
        libc::SECCOMP_RET_KILL_THREAD => "kill-thread (SIGSYS)".into(),
        libc::SECCOMP_RET_TRAP => "trap (SIGSYS)".into(),
        libc::SECCOMP_RET_TRACE => format!("trace ({data})"),
        libc::SECCOMP_RET_ERRNO => match errno_name(data) {
            Some(n) => format!("errno {n} ({data})"),
            None => format!("errno {data}"),
        },
        other => format!("action {other:#x}"),
    }
}

fn errno_name(v: u32) -> Option<&'static str> {
    u16::try_from(v).ok().and_then(crate::profile::errno_name)
}

fn op_text(op: LinuxSeccompOperator) -> &'static str {
    match op {
        LinuxSeccompOperator::ScmpCmpNe => "!=",
        LinuxSeccompOperator::ScmpCmpLt => "<",
        LinuxSeccompOperator::ScmpCmpLe => "<=",
        LinuxSeccompOperator::ScmpCmpEq => "==",
        LinuxSeccompOperator::ScmpCmpGe => ">=",
        LinuxSeccompOperator::ScmpCmpGt => ">",
        LinuxSeccompOperator::ScmpCmpMaskedEq => "&",
    }
}

fn number(v: u64) -> String {
    if v < 4096 {
        v.to_string()
    } else {
        format!("{v:#x}")
    }
}

/// Explains `seccomp` as [`compile_oci_for`](super::compile_oci_for) would compile it
/// for `arch`.
pub fn explain(seccomp: &LinuxSeccomp, arch: TargetArch) -> Result<Explanation, SeccompError> {
    let plan = plan(seccomp, arch)?;
    let rules = seccomp.syscalls().as_deref().unwrap_or_default();
    let mut syscalls = Vec::new();
    for (nr, entry) in &plan.table.order {
        let name = plan.table.names.get(nr).cloned().unwrap_or_default();
        let verdict = match entry {
            Entry::Always { action, .. } => Verdict::Always(describe_action(*action)),
            Entry::Conditional(list) => Verdict::Conditional(
                list.iter()
                    .map(|(_, action, origin)| {
                        let args = rules[origin.rule].args().as_deref().unwrap_or_default();
                        let cond = args
                            .iter()
                            .map(|a| match a.op() {
                                LinuxSeccompOperator::ScmpCmpMaskedEq => format!(
                                    "arg{} & {} == {}",
                                    a.index(),
                                    number(a.value()),
                                    number(a.value_two().unwrap_or(0))
                                ),
                                op => format!(
                                    "arg{} {} {}",
                                    a.index(),
                                    op_text(op),
                                    number(a.value())
                                ),
                            })
                            .collect::<Vec<_>>()
                            .join(" && ");
                        (cond, describe_action(*action))
                    })
                    .collect(),
            ),
        };
        syscalls.push(ExplainedSyscall {
            name,
            nr: *nr,
            verdict,
        });
    }
    let mut foreign = Vec::new();
    let (_, compat_action) = plan.foreign.compat;
    let compat_name = match arch {
        TargetArch::X86_64 => "i386",
        TargetArch::Aarch64 => "arm (32-bit)",
    };
    foreign.push(format!(
        "{compat_name} syscalls: {}",
        describe_action(compat_action)
    ));
    if let Some(x32) = plan.foreign.x32 {
        foreign.push(format!("x32 syscalls: {}", describe_action(x32)));
    }
    foreign.push("any other architecture: kill-process (SIGSYS)".into());
    Ok(Explanation {
        arch,
        default: describe_action(plan.default),
        foreign,
        syscalls,
        warnings: plan.warnings,
    })
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "architecture: {}", self.arch)?;
        writeln!(f, "default (any syscall not listed): {}", self.default)?;
        // Unconditional verdicts grouped by action, in order of first appearance.
        let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
        for s in &self.syscalls {
            if let Verdict::Always(a) = &s.verdict {
                match groups.iter_mut().find(|(g, _)| g == a) {
                    Some((_, names)) => names.push(&s.name),
                    None => groups.push((a, vec![&s.name])),
                }
            }
        }
        for (action, names) in &groups {
            let mut names = names.clone();
            names.sort_unstable();
            writeln!(f, "\n{action} ({} syscalls):", names.len())?;
            let mut line = String::from(" ");
            for n in names {
                if line.len() + n.len() + 1 > 88 {
                    writeln!(f, "{line}")?;
                    line = String::from(" ");
                }
                line.push(' ');
                line.push_str(n);
            }
            if !line.trim().is_empty() {
                writeln!(f, "{line}")?;
            }
        }
        let conditional: Vec<_> = self
            .syscalls
            .iter()
            .filter_map(|s| match &s.verdict {
                Verdict::Conditional(c) => Some((s, c)),
                Verdict::Always(_) => None,
            })
            .collect();
        if !conditional.is_empty() {
            writeln!(
                f,
                "\nwith argument conditions (first match wins, else the default):"
            )?;
            for (s, conds) in conditional {
                for (cond, action) in conds {
                    writeln!(f, "  {}: {cond} -> {action}", s.name)?;
                }
            }
        }
        writeln!(f, "\nother ABIs:")?;
        for line in &self.foreign {
            writeln!(f, "  {line}")?;
        }
        if !self.warnings.is_empty() {
            writeln!(f, "\nwarnings ({}):", self.warnings.len())?;
            for w in &self.warnings {
                writeln!(f, "  {w}")?;
            }
        }
        Ok(())
    }
}

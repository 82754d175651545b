//! Turning a configured `process` into a running program, shared by the
//! container's init (after its rootfs is set up) and by `exec` (after it
//! joined the container): terminal, oom_score_adj and rlimits, identity and
//! capabilities, no_new_privs, umask, cwd, program lookup, the fd table.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::Process;

use super::caps::CapSets;
use crate::error::{Error, Result, SysContext};
use crate::sys::Sys;

/// A process to start, resolved before the fork.
#[derive(Debug, Clone)]
pub struct ProcessPlan {
    pub process: Process,
    /// process.env plus LISTEN_FDS/LISTEN_PID when fds are passed on.
    pub env: Vec<String>,
    pub caps: CapSets,
    pub console_socket: Option<RawFd>,
    /// Socket-activation fds (LISTEN_FDS) plus `--preserve-fds`, kept from 3 up.
    pub extra_fds: i32,
    /// Bind the terminal onto /dev/console (the container's init only).
    pub bind_console: bool,
    /// `linux.seccomp`, compiled before the fork.
    pub seccomp: Option<phantom_policy::CompiledFilter>,
    /// Landlock rules of a sandbox profile (annotation run.phantom.landlock)
    /// and the profile's mode (hardened refuses partial enforcement).
    pub landlock: Option<(phantom_policy::LandlockRules, phantom_policy::Mode)>,
}

impl ProcessPlan {
    /// Landlock needs no_new_privs too, so a ruleset implies it.
    fn no_new_privs(&self) -> bool {
        self.process.no_new_privileges().unwrap_or(false) || self.landlock.is_some()
    }
}

/// Load the filter with one seccomp() call.
fn install_seccomp(p: &ProcessPlan) -> Result<()> {
    match &p.seccomp {
        Some(f) => f
            .install()
            .map_err(|e| Error::Seccomp(format!("linux.seccomp: {e}"))),
        None => Ok(()),
    }
}

fn prctl(op: libc::c_int, arg: libc::c_ulong, what: &str) -> Result<()> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(op, arg, 0, 0, 0) };
    nix::errno::Errno::result(rc)
        .map(drop)
        .ctx(|| what.to_string())
}

/// Everything that comes before the identity switch: terminal, limits,
/// umask, the cwd (confined to the container) and the program lookup;
/// returns the program.
pub fn prepare(sys: &dyn Sys, p: &ProcessPlan) -> Result<PathBuf> {
    prepare_limits(sys, p)?;
    locate(p)
}

/// The request-independent part that needs no identity change: terminal,
/// oom_score_adj, rlimits, umask.
pub fn prepare_limits(sys: &dyn Sys, p: &ProcessPlan) -> Result<()> {
    let process = &p.process;
    if process.terminal().unwrap_or(false) {
        let sock = p.console_socket.ok_or_else(|| {
            Error::Init("process.terminal is true but no --console-socket was given".into())
        })?;
        let size = process
            .console_size()
            .as_ref()
            .map(|b| (b.height() as u16, b.width() as u16));
        crate::console::setup(sys, sock, size, p.bind_console)?;
    }
    if let Some(adj) = process.oom_score_adj() {
        super::limits::apply_oom_score_adj(adj)?;
    }
    super::limits::apply_rlimits(&process.rlimits().clone().unwrap_or_default())?;
    if let Some(mask) = process.user().umask() {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    }
    Ok(())
}

/// Whether the identity switch must wait until just before execve.
///
/// Without no_new_privs, seccomp() needs CAP_SYS_ADMIN, so the filter is
/// loaded before the capabilities are dropped (as runc and crun do). Every
/// syscall phantom makes after that must then pass the user's filter, and
/// a profile only has to allow what the OCI contract forces on it: the
/// user and capability switch, and execve. So when such a filter exists,
/// the switch (and the filter before it) come after everything else:
/// cwd, lookup, fd sealing, `Ready`, the wait for `start`.
pub fn switch_is_late(p: &ProcessPlan) -> bool {
    p.seccomp.is_some() && !p.no_new_privs()
}

/// The identity switch: [the seccomp filter, without no_new_privs], the
/// bounding set, user and groups, capabilities, [no_new_privs]. With the
/// filter loaded first, only prctl, setgroups, setresgid, setresuid and
/// capset follow it here.
pub fn switch_identity(p: &ProcessPlan) -> Result<()> {
    if !p.no_new_privs() {
        install_seccomp(p)?;
    }
    super::caps::drop_bounding(&p.caps)?;
    // As root on the host we write the gid map ourselves, so setgroups is
    // allowed in a new user namespace too.
    super::identity::switch(p.process.user(), true)?;
    super::caps::apply(&p.caps)?;
    if p.no_new_privs() {
        prctl(libc::PR_SET_NO_NEW_PRIVS, 1, "prctl(PR_SET_NO_NEW_PRIVS)")?;
    }
    Ok(())
}

/// The cwd (confined to the container) and the program lookup, done while
/// init is still root in its namespaces (as crun does) and before any
/// seccomp filter: they need openat2, fchdir, getcwd and faccessat2.
pub fn locate(p: &ProcessPlan) -> Result<PathBuf> {
    let process = &p.process;
    enter_cwd(process.cwd())?;
    let args = process.args().clone().unwrap_or_default();
    let arg0 = args
        .first()
        .ok_or_else(|| Error::config("process.args", "must name a program to run"))?;
    super::lookup::find(arg0, &p.env)
}

/// CVE-2024-21626: nothing of the host survives into the program but what
/// was passed on purpose. `keep` are our own close-on-exec fds still needed
/// until exec. Signal dispositions and mask are reset too.
pub fn seal_fds(p: &ProcessPlan, keep: &[RawFd]) -> Result<()> {
    super::fds::inherit(p.extra_fds)?;
    super::fds::close_from(3 + p.extra_fds, keep)?;
    reset_signals();
    Ok(())
}

/// chdir to process.cwd, resolved inside the container's root with no
/// magic links (a `/proc/self/fd/N` cwd could name a host directory), and
/// checked afterwards to be reachable from `/` (CVE-2024-21626).
fn enter_cwd(cwd: &Path) -> Result<()> {
    use crate::rootfs::safe_path::{ensure_in_root, open_in_root, Kind};
    let root = nix::fcntl::open(
        "/",
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ctx(|| "open /".into())?;
    let dir = match open_in_root(root.as_raw_fd(), cwd, libc::O_PATH | libc::O_DIRECTORY) {
        Ok(fd) => fd,
        // runc creates a missing cwd; so do we (as root, before the
        // identity switch, like runc's rootfs set-up).
        Err(nix::errno::Errno::ENOENT) => ensure_in_root(root.as_raw_fd(), cwd, Kind::Dir)
            .ctx(|| format!("process.cwd: create {}", cwd.display()))?,
        Err(e) => {
            return Err(Error::sys(
                format!("process.cwd: open {}", cwd.display()),
                e,
            ))
        }
    };
    nix::unistd::fchdir(&dir).ctx(|| format!("process.cwd: chdir {}", cwd.display()))?;
    match nix::unistd::getcwd() {
        Ok(p) if p.is_absolute() => Ok(()),
        _ => Err(Error::Init(format!(
            "process.cwd: {} is outside the container's root",
            cwd.display()
        ))),
    }
}

/// Rust ignores SIGPIPE and `run` blocks signals it forwards; the
/// container's program must start with default dispositions and no mask.
fn reset_signals() {
    for sig in 1..32 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: resetting a disposition to SIG_DFL installs no handler.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    // SAFETY: an empty set is valid; sigprocmask only changes this thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// execve the program; with no_new_privs the seccomp filter is loaded
/// right before, as the very last step. argv and envp are built first, so
/// that no allocation happens under the filter.
pub fn exec(p: &ProcessPlan, program: &Path, args: &[String]) -> Result<Infallible> {
    use std::os::unix::ffi::OsStrExt;
    let c = |s: &str| {
        CString::new(s).map_err(|_| Error::config("process", format!("{s:?} contains a NUL byte")))
    };
    let prog = CString::new(program.as_os_str().as_bytes())
        .map_err(|_| Error::config("process.args[0]", "contains a NUL byte"))?;
    let argv: Vec<CString> = args.iter().map(|a| c(a)).collect::<Result<_>>()?;
    let envp: Vec<CString> = p.env.iter().map(|a| c(a)).collect::<Result<_>>()?;
    // Landlock last but for seccomp: after pivot_root (paths are the
    // container's), after init reached exec.fifo (a host path) at `start`.
    if let Some((rules, mode)) = &p.landlock {
        let status = phantom_policy::landlock::apply(rules, *mode)
            .map_err(|e| Error::Init(format!("annotations.run.phantom.landlock: {e}")))?;
        for note in status.not_enforced.iter().chain(&status.skipped) {
            tracing::debug!("landlock: {note}");
        }
    }
    if p.no_new_privs() {
        install_seccomp(p)?;
    }
    let e = nix::unistd::execve(&prog, &argv, &envp).unwrap_err();
    Err(Error::ExecFailed {
        errno: e as i32,
        message: format!("exec {}: {e}", program.display()),
    })
}

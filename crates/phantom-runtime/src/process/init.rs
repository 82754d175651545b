//! The child side of `create`. It runs in the copy of phantom made by the
//! clone (no re-exec), inside the new namespaces, and ends in execve of the
//! container's program or `_exit`.
//!
//! Order matters and follows what the kernel permits: namespaces, rootfs
//! and pivot_root, sysctl, terminal, masked and read-only paths, cwd,
//! oom_score_adj and rlimits, then the identity switch with capabilities,
//! no_new_privs, umask; the fd table is trimmed; init reports `Ready` and
//! blocks on exec.fifo until `start`.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::sched::CloneFlags;
use oci_spec::runtime::Process;

use crate::channel::{Channel, Msg};
use crate::error::{Error, Result, SysContext};
use crate::namespaces::NamespacePlan;
use crate::rootfs::{self, RootfsPlan};
use crate::sys::Sys;

use super::caps::CapSets;

/// Everything init needs, resolved in the parent before the clone.
#[derive(Debug, Clone)]
pub struct InitPlan {
    pub namespaces: NamespacePlan,
    pub new_cgroupns: bool,
    pub new_userns: bool,
    pub rootfs: RootfsPlan,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    pub sysctl: Vec<(String, String)>,
    pub process: Process,
    pub env: Vec<String>,
    pub caps: CapSets,
    pub console_socket: Option<RawFd>,
    /// Socket-activation fds (LISTEN_FDS) plus `--preserve-fds`, kept from 3 up.
    pub extra_fds: i32,
    pub state_dir: RawFd,
    pub hooks: Option<oci_spec::runtime::Hooks>,
    /// prestart or createRuntime hooks exist: stop for the parent to run them.
    pub runtime_hooks: bool,
}

/// Entry point of the child after the clone. Never returns.
pub fn main(sys: &dyn Sys, plan: &InitPlan, chan: &Channel) -> ! {
    let err = match setup(sys, plan, chan) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let _ = chan.send(&Msg::Error(err.to_string()));
    // SAFETY: _exit ends this process without running the parent's
    // destructors or atexit handlers, which belong to the phantom binary.
    unsafe { libc::_exit(1) }
}

fn prctl(op: libc::c_int, arg: libc::c_ulong, what: &str) -> Result<()> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(op, arg, 0, 0, 0) };
    nix::errno::Errno::result(rc)
        .map(drop)
        .ctx(|| what.to_string())
}

fn setup(sys: &dyn Sys, plan: &InitPlan, chan: &Channel) -> Result<Infallible> {
    // Die with `phantom create` while it is still setting us up.
    prctl(
        libc::PR_SET_PDEATHSIG,
        libc::SIGKILL as _,
        "prctl(PR_SET_PDEATHSIG)",
    )?;
    // Until exec, this process is the phantom binary: keep other processes
    // (in the container) from reaching its memory or /proc/PID/exe.
    prctl(libc::PR_SET_DUMPABLE, 0, "prctl(PR_SET_DUMPABLE)")?;

    let state = match chan.recv()? {
        Some(Msg::Go(state)) => state,
        // The parent gave up; leave quietly.
        _ => {
            // SAFETY: see `main`.
            unsafe { libc::_exit(1) }
        }
    };
    if plan.new_userns {
        // Become root of the new user namespace (the maps are written).
        nix::unistd::setresgid(0.into(), 0.into(), 0.into())
            .ctx(|| "setresgid(0) in the new user namespace (is gid 0 mapped?)".into())?;
        nix::unistd::setresuid(0.into(), 0.into(), 0.into())
            .ctx(|| "setresuid(0) in the new user namespace (is uid 0 mapped?)".into())?;
    }
    crate::namespaces::join_all(sys, &plan.namespaces)?;
    if plan.new_cgroupns {
        // After the parent placed us in our cgroup, so that is the ns root.
        sys.unshare(CloneFlags::CLONE_NEWCGROUP)
            .ctx(|| "unshare the cgroup namespace".into())?;
    }
    if let Some(h) = &plan.hostname {
        sys.sethostname(h).ctx(|| format!("hostname: set {h:?}"))?;
    }
    if let Some(d) = &plan.domainname {
        sys.setdomainname(d)
            .ctx(|| format!("domainname: set {d:?}"))?;
    }

    rootfs::prepare(sys, &plan.rootfs)?;
    if plan.runtime_hooks {
        // prestart and createRuntime run in the runtime's namespaces, by
        // the parent, now that ours exist (runtime.md "Lifecycle" step 3).
        chan.send(&Msg::Hooks)?;
        match chan.recv()? {
            Some(Msg::Go(_)) => {}
            // SAFETY: see `main`; the parent failed and tears us down.
            _ => unsafe { libc::_exit(1) },
        }
    }
    let hooks = plan.hooks.clone().unwrap_or_default();
    if let Some(h) = hooks.create_container() {
        // In the container's namespaces, before pivot_root.
        crate::hooks::run_all(h, "createContainer", state.as_bytes())?;
    }
    rootfs::enter(sys, &plan.rootfs)?;
    for (k, v) in &plan.sysctl {
        super::procfs::sysctl(k, v)?;
    }
    if plan.process.terminal().unwrap_or(false) {
        let sock = plan.console_socket.ok_or_else(|| {
            Error::Init("process.terminal is true but no --console-socket was given".into())
        })?;
        let size = plan
            .process
            .console_size()
            .as_ref()
            .map(|b| (b.height() as u16, b.width() as u16));
        crate::console::setup(sys, sock, size)?;
    }
    rootfs::finish(sys, &plan.rootfs)?;

    if let Some(adj) = plan.process.oom_score_adj() {
        super::limits::apply_oom_score_adj(adj)?;
    }
    super::limits::apply_rlimits(&plan.process.rlimits().clone().unwrap_or_default())?;

    super::caps::drop_bounding(&plan.caps)?;
    // setgroups is denied in a user namespace whose gid map was written
    // without privilege; as root on the host we always write it, so allow.
    super::identity::switch(plan.process.user(), true)?;
    super::caps::apply(&plan.caps)?;
    if plan.process.no_new_privileges().unwrap_or(false) {
        prctl(libc::PR_SET_NO_NEW_PRIVS, 1, "prctl(PR_SET_NO_NEW_PRIVS)")?;
    }
    if let Some(mask) = plan.process.user().umask() {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    }

    enter_cwd(plan.process.cwd())?;

    let args = plan.process.args().clone().unwrap_or_default();
    let program = super::lookup::find(&args[0], &plan.env)?;

    // CVE-2024-21626: nothing of the host but what was passed on purpose.
    super::fds::inherit(plan.extra_fds)?;
    let keep = [chan.raw(), plan.state_dir];
    super::fds::close_from(3 + plan.extra_fds, &keep)?;
    reset_signals();

    prctl(libc::PR_SET_PDEATHSIG, 0, "prctl(PR_SET_PDEATHSIG)")?;
    chan.send(&Msg::Ready)?;

    // From here on `phantom create` is gone: report on stderr instead.
    let started = wait_for_start(plan.state_dir).and_then(|()| match hooks.start_container() {
        Some(h) => {
            let state = state.replace("\"status\":\"creating\"", "\"status\":\"created\"");
            crate::hooks::run_all(h, "startContainer", state.as_bytes())
        }
        None => Ok(()),
    });
    let err = match started.and_then(|()| exec(&program, &args, &plan.env)) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    eprintln!("phantom: container init: {err}");
    // SAFETY: see `main`; 127 is what shells use for a failed exec.
    unsafe { libc::_exit(127) }
}

/// chdir to process.cwd, resolved inside the container's root with no
/// magic links (a `/proc/self/fd/N` cwd could name a host directory), and
/// checked afterwards to be reachable from `/` (CVE-2024-21626).
fn enter_cwd(cwd: &Path) -> Result<()> {
    let root = nix::fcntl::open(
        "/",
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ctx(|| "open /".into())?;
    let dir = match crate::rootfs::safe_path::open_in_root(
        root.as_raw_fd(),
        cwd,
        libc::O_PATH | libc::O_DIRECTORY,
    ) {
        Ok(fd) => fd,
        // runc creates a missing cwd; so do we, as the container user.
        Err(nix::errno::Errno::ENOENT) => crate::rootfs::safe_path::ensure_in_root(
            root.as_raw_fd(),
            cwd,
            crate::rootfs::safe_path::Kind::Dir,
        )
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

/// Block until `start` opens the other end of exec.fifo. The fifo is
/// reached through the state directory's fd: it is not inside the rootfs.
fn wait_for_start(state_dir: RawFd) -> Result<()> {
    let fd = loop {
        // SAFETY: valid dir fd and name; blocks until a reader opens the fifo.
        let fd = unsafe {
            libc::openat(
                state_dir,
                c"exec.fifo".as_ptr(),
                libc::O_WRONLY | libc::O_CLOEXEC,
            )
        };
        if fd >= 0 {
            break fd;
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(Error::Init(format!("open exec.fifo: {err}")));
        }
    };
    // SAFETY: fresh fd, owned here.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    nix::unistd::write(&fd, b"0").ctx(|| "write exec.fifo".into())?;
    Ok(())
}

fn exec(program: &Path, args: &[String], env: &[String]) -> Result<Infallible> {
    use std::os::unix::ffi::OsStrExt;
    let c = |s: &str| {
        CString::new(s).map_err(|_| Error::config("process", format!("{s:?} contains a NUL byte")))
    };
    let prog = CString::new(program.as_os_str().as_bytes())
        .map_err(|_| Error::config("process.args[0]", "contains a NUL byte"))?;
    let argv: Vec<CString> = args.iter().map(|a| c(a)).collect::<Result<_>>()?;
    let envp: Vec<CString> = env.iter().map(|a| c(a)).collect::<Result<_>>()?;
    let e = nix::unistd::execve(&prog, &argv, &envp).unwrap_err();
    Err(Error::Init(format!("exec {}: {e}", program.display())))
}

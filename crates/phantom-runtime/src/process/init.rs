//! The child side of `create`. It runs in the copy of phantom made by the
//! clone (no re-exec), inside the new namespaces, and ends in execve of the
//! container's program or `_exit`.
//!
//! Order matters and follows what the kernel permits: namespaces, rootfs
//! and pivot_root, sysctl, masked and read-only paths, terminal,
//! oom_score_adj, rlimits and umask, cwd and the program lookup, then the
//! identity switch with capabilities and no_new_privs; the fd table is
//! trimmed; init reports `Ready` and blocks on exec.fifo until `start`.
//! A seccomp filter loaded without no_new_privs moves the identity switch
//! (which it precedes) after the wait, so that the filter sees nothing but
//! the switch and execve.

use std::convert::Infallible;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::sched::CloneFlags;

use crate::channel::{Channel, Msg};
use crate::error::{Error, Result, SysContext};
use crate::namespaces::NamespacePlan;
use crate::rootfs::{self, RootfsPlan};
use crate::sys::Sys;

use super::setup::ProcessPlan;

/// Everything init needs, resolved in the parent before the clone.
#[derive(Debug, Clone)]
pub struct InitPlan {
    pub namespaces: NamespacePlan,
    pub new_cgroupns: bool,
    pub new_userns: bool,
    /// None in `direct` mode: the process keeps the host's filesystem,
    /// confined by Landlock and seccomp only.
    pub rootfs: Option<RootfsPlan>,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    pub sysctl: Vec<(String, String)>,
    pub process: ProcessPlan,
    pub state_dir: RawFd,
    pub hooks: Option<oci_spec::runtime::Hooks>,
    /// prestart or createRuntime hooks exist: stop for the parent to run them.
    pub runtime_hooks: bool,
    /// Join a new session keyring named after the container, so keys of the
    /// caller's session are not reachable (runc's default; off with
    /// `--no-new-keyring`).
    pub session_keyring: Option<String>,
    /// A zygote: set up everything that does not depend on the request,
    /// then wait on the sync channel for the program and stdio to run.
    pub zygote: bool,
    /// Bring `lo` up in the new network namespace (every container, as
    /// runc and crun do, but a sandbox whose run.phantom.network is `none`).
    pub loopback_up: bool,
}

/// Entry point of the child after the clone. Never returns.
pub fn main(sys: &dyn Sys, plan: &InitPlan, chan: &Channel) -> ! {
    // A panic must not unwind into the caller's frames (this is a copy of
    // `phantom create` and its stack): it becomes init's error like any.
    let err =
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| setup(sys, plan, chan))) {
            Ok(Ok(never)) => match never {},
            Ok(Err(e)) => e,
            Err(panic) => Error::Init(format!("container init panicked: {}", panic_text(&panic))),
        };
    report(chan, &err);
    // SAFETY: _exit ends this process without running the parent's
    // destructors or atexit handlers, which belong to the phantom binary.
    unsafe { libc::_exit(1) }
}

/// Send init's error to `phantom create`; if the channel cannot carry it,
/// write it to stderr (create's own, unless a terminal replaced it), so
/// that it is never lost.
pub(crate) fn report(chan: &Channel, err: &Error) {
    if chan.send(&Msg::from_error(err)).is_err() {
        eprintln!("phantom: container init: {err}");
    }
}

pub(crate) fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

fn prctl(op: libc::c_int, arg: libc::c_ulong, what: &str) -> Result<()> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(op, arg, 0, 0, 0) };
    nix::errno::Errno::result(rc)
        .map(drop)
        .ctx(|| what.to_string())
}

fn setup(sys: &dyn Sys, plan: &InitPlan, chan: &Channel) -> Result<Infallible> {
    if let Some(user) = &plan.namespaces.join_user {
        // Stage one: namespaces owned by the joined user namespace, then
        // (for a new pid namespace) a fork; the child is init, stage one
        // reports its pid and leaves. init's parent is then the caller's
        // subreaper, so it cannot use PDEATHSIG: it watches the channel.
        if crate::namespaces::enter_joined_user(sys, &plan.namespaces, user)? {
            // SAFETY: fork of this single-threaded process; the child goes
            // on with the setup below, the parent only reports and exits.
            let pid = unsafe { libc::fork() };
            if pid < 0 {
                return Err(Error::sys(
                    "fork init in its pid namespace",
                    nix::errno::Errno::last(),
                ));
            }
            if pid > 0 {
                let _ = chan.send(&Msg::Pid(pid));
                // SAFETY: see `main`.
                unsafe { libc::_exit(0) }
            }
        } else {
            chan.send(&Msg::Pid(nix::unistd::getpid().as_raw()))?;
        }
    } else {
        // Die with `phantom create` while it is still setting us up.
        prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as _,
            "prctl(PR_SET_PDEATHSIG)",
        )?;
    }
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
    if plan.new_userns || plan.namespaces.join_user.is_some() {
        // Become root of the (new or joined) user namespace: files we
        // create must belong to a uid mapped in it.
        nix::unistd::setresgid(0.into(), 0.into(), 0.into())
            .ctx(|| "setresgid(0) in the new user namespace (is gid 0 mapped?)".into())?;
        nix::unistd::setresuid(0.into(), 0.into(), 0.into())
            .ctx(|| "setresuid(0) in the new user namespace (is uid 0 mapped?)".into())?;
    }
    if plan.namespaces.join_user.is_none() {
        crate::namespaces::join_all(sys, &plan.namespaces)?;
    }
    if let Some(name) = &plan.session_keyring {
        join_session_keyring(name)?;
    }
    if plan.loopback_up {
        loopback_up()?;
    }
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

    let mut phases = crate::phase::Phases::start("init");
    tracing::debug!("init rootfs");
    if let Some(r) = &plan.rootfs {
        rootfs::prepare(sys, r)?;
    }
    phases.mark("mounts");
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
    if let Some(r) = &plan.rootfs {
        rootfs::enter(sys, r)?;
    }
    phases.mark("pivot_root");
    for (k, v) in &plan.sysctl {
        super::procfs::sysctl(k, v)?;
    }
    if let Some(r) = &plan.rootfs {
        rootfs::finish(sys, r)?;
    }
    phases.mark("masked and read-only paths");

    if plan.zygote {
        return zygote(sys, plan, chan);
    }
    // Init leads its own session, as under runc (nsexec.c calls setsid()
    // for every container init) and crun: CRIU refuses to checkpoint a
    // tree whose session leader is outside its pid namespace unless it is
    // a --shell-job. With a terminal, console::setup does it.
    if !plan.process.process.terminal().unwrap_or(false) {
        nix::unistd::setsid().ctx(|| "setsid".into())?;
    }
    let program = super::setup::prepare(sys, &plan.process)?;
    // With a filter loaded before the identity switch (no no_new_privs),
    // the switch waits until after `start`: nothing but it and execve may
    // run under the user's filter (see `setup::switch_is_late`).
    let late = super::setup::switch_is_late(&plan.process);
    if !late {
        super::setup::switch_identity(&plan.process)?;
    }
    phases.mark("process");
    let args = plan.process.process.args().clone().unwrap_or_default();
    super::setup::seal_fds(&plan.process, &[chan.raw(), plan.state_dir])?;

    if plan.namespaces.join_user.is_none() {
        prctl(libc::PR_SET_PDEATHSIG, 0, "prctl(PR_SET_PDEATHSIG)")?;
    }
    chan.send(&Msg::Ready)?;

    // From here on `phantom create` is gone: report on stderr instead.
    // The fifo stays open for writing until execve closes it (O_CLOEXEC):
    // `start` waits for that end of file, so that poststart hooks run
    // after startContainer hooks and the exec (runtime.md "Lifecycle").
    // startContainer hooks run as the container's user, after the switch,
    // as with runc and crun.
    let started = wait_for_start(plan.state_dir).and_then(|fifo| {
        if late {
            super::setup::switch_identity(&plan.process)?;
        }
        match hooks.start_container() {
            Some(h) => crate::hooks::run_all(h, "startContainer", state.as_bytes()).map(|()| fifo),
            None => Ok(fifo),
        }
    });
    let err = match started.and_then(|_fifo| super::setup::exec(&plan.process, &program, &args)) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    eprintln!("phantom: container init: {err}");
    // SAFETY: see `main`; 127 is what shells use for a failed exec.
    unsafe { libc::_exit(127) }
}

/// Block until `start` opens the other end of exec.fifo, and return our
/// end, which the caller keeps open until exec. The fifo is reached
/// through the state directory's fd: it is not inside the rootfs.
fn wait_for_start(state_dir: RawFd) -> Result<OwnedFd> {
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
    Ok(fd)
}

/// keyctl(KEYCTL_JOIN_SESSION_KEYRING, name): a fresh, empty session
/// keyring. A kernel without keyrings (ENOSYS) is fine, as for runc.
fn join_session_keyring(name: &str) -> Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    let c = std::ffi::CString::new(name)
        .map_err(|_| Error::Init(format!("keyring name {name:?} contains NUL")))?;
    // SAFETY: keyctl reads the NUL-terminated name, which outlives the call.
    let rc = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, c.as_ptr()) };
    match nix::errno::Errno::result(rc) {
        Ok(_) | Err(nix::errno::Errno::ENOSYS) => Ok(()),
        Err(e) => Err(Error::sys(format!("join a new session keyring {name}"), e)),
    }
}

/// `ip link set lo up`, with one ioctl on a throwaway socket.
fn loopback_up() -> Result<()> {
    // SAFETY: socket() with constant arguments; returns an fd or -1.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    let fd = nix::errno::Errno::result(fd).ctx(|| "socket for bringing up lo".into())?;
    // SAFETY: the kernel just gave us this fd.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: an all-zero ifreq is valid; we set the name and flags.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in b"lo".iter().enumerate() {
        req.ifr_name[i] = *b as libc::c_char;
    }
    req.ifr_ifru.ifru_flags =
        (libc::IFF_UP | libc::IFF_LOOPBACK | libc::IFF_RUNNING) as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads the ifreq, which lives for the call.
    let rc = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            libc::SIOCSIFFLAGS,
            &req,
        )
    };
    nix::errno::Errno::result(rc)
        .map(drop)
        .ctx(|| "bring up lo in the sandbox's network namespace".into())
}

/// What a zygote is asked to run.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ExecRequest {
    pub args: Vec<String>,
    /// `K=V`, added to (and overriding) the profile's environment.
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub cwd: Option<std::path::PathBuf>,
}

/// The zygote's tail: identity and capabilities now, then one request:
/// its stdio becomes ours, and the program is looked up and executed
/// under the profile's Landlock rules and seccomp filter. The parent stays
/// (PDEATHSIG is kept: a zygote never outlives its runner).
fn zygote(sys: &dyn Sys, plan: &InitPlan, chan: &Channel) -> Result<Infallible> {
    serve_request(sys, &plan.process, chan, &[chan.raw(), plan.state_dir])
}

/// What every zygote (a container's init, or a process joined to a running
/// container for `exec`) does once it is set up: drop to the process's
/// identity and capabilities, let go of every inherited fd but `keep`,
/// report `Ready`, and wait for one request. The request's stdio, argv, env
/// and cwd are applied; Landlock and seccomp come last, then execve.
/// Without a request (the runner closed the channel) it exits quietly.
pub(crate) fn serve_request(
    sys: &dyn Sys,
    plan: &ProcessPlan,
    chan: &Channel,
    keep: &[std::os::fd::RawFd],
) -> Result<Infallible> {
    super::setup::prepare_limits(sys, plan)?;
    let late = super::setup::switch_is_late(plan);
    if !late {
        super::setup::switch_identity(plan)?;
    }
    // A zygote may wait long: let go of everything inherited from the
    // runner now (the state directory's lock among it).
    super::setup::seal_fds(plan, keep)?;
    chan.send(&Msg::Ready)?;
    let (req, fds) = match chan.recv_with_fds()? {
        Some((Msg::Exec(json), fds)) => {
            let req: ExecRequest = serde_json::from_str(&json)
                .map_err(|e| Error::Init(format!("zygote request: {e}")))?;
            (req, fds)
        }
        // SAFETY: see `main`; the runner gave up on this zygote.
        _ => unsafe { libc::_exit(0) },
    };
    if req.args.is_empty() {
        return Err(Error::config("request.args", "must name a program to run"));
    }
    for (target, fd) in fds.iter().take(3).enumerate() {
        // SAFETY: dup2 onto the stdio numbers; `fd` is a valid received fd.
        nix::errno::Errno::result(unsafe {
            libc::dup2(std::os::fd::AsRawFd::as_raw_fd(fd), target as i32)
        })
        .ctx(|| format!("install the request's fd {target}"))?;
    }
    drop(fds);
    let mut p = plan.clone();
    p.process.set_args(Some(req.args.clone()));
    for kv in &req.env {
        let key = kv.split_once('=').map_or(kv.as_str(), |(k, _)| k);
        p.env
            .retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
        p.env.push(kv.clone());
    }
    if let Some(cwd) = &req.cwd {
        p.process.set_cwd(cwd.clone());
    }
    let program = super::setup::locate(&p)?;
    // Signals were reset before the wait; only fds can have come since.
    super::fds::close_from(3 + p.extra_fds, keep)?;
    if late {
        super::setup::switch_identity(&p)?;
    }
    super::setup::exec(&p, &program, &req.args)
}

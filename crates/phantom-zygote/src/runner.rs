//! The zygote runner (`phantom zygote-serve`): a small process the daemon
//! starts per warm sandbox. It is the sandbox init's parent (so the init
//! stays a descendant of a plain process, never of the multi-threaded
//! daemon), prints `ready WORKSPACE` on stdout once the zygote waits, and
//! serves it on a socket of its own:
//! - a plain zygote serves one request and the runner removes it;
//! - a Python zygote runs the fork server, which serves many requests,
//!   one fork each, until the runner is told to stop.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{accept, socketpair, AddressFamily, SockFlag, SockType};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;
use phantom_runtime::channel::{recv_with_fds, Msg};
use phantom_runtime::container::{self, zygote, CreateOptions};
use phantom_runtime::process::init::ExecRequest;
use phantom_runtime::sandbox;
use phantom_runtime::state::{StateStore, Status};

use crate::proto::{self, RunReply, RunRequest};
use crate::wire::{listen_at, pidfd_open, send_reply};

/// What the CLI made for the runner: a sandbox bundle from the profile.
pub struct Prepared {
    pub id: String,
    pub bundle: PathBuf,
    pub annotations: BTreeMap<String, String>,
}

pub enum Kind {
    /// One request, then the sandbox is removed.
    Plain,
    /// The Python fork server, with these modules imported up front.
    Python { modules: Vec<String> },
}

/// A pidfd of the daemon that started this runner. PDEATHSIG comes when
/// the daemon's forking thread ends, possibly before the whole process
/// has; the pidfd becomes readable once the process has exited, so the
/// client is told the daemon went away rather than left with a bare 137.
static DAEMON: std::sync::OnceLock<OwnedFd> = std::sync::OnceLock::new();

/// Why a run was stopped by a signal to its runner, for the client.
fn stop_reason() -> &'static str {
    let gone = DAEMON.get().is_none_or(|fd| {
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        // A daemon being killed is gone within a moment; a live one that
        // stopped us stays.
        poll(&mut fds, PollTimeout::from(500u16)).is_ok_and(|n| n > 0)
    });
    if gone {
        "the daemon serving this run went away"
    } else {
        "the daemon stopped this run"
    }
}

/// First thing a runner does: die with the daemon (SIGTERM, so it cleans
/// up), and take its signals through a signalfd.
pub fn become_runner() -> Result<SignalFd> {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0) };
    let daemon = nix::unistd::getppid().as_raw();
    if daemon == 1 {
        bail!("the daemon that started this runner is gone");
    }
    if let Ok(fd) = pidfd_open(daemon) {
        let _ = DAEMON.set(fd);
    }
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGCHLD] {
        set.add(s);
    }
    set.thread_block()?;
    Ok(SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC)?)
}

/// Remove the zygote sandbox `id`: kill what is left, delete its state and
/// cgroup, and its fresh workspace.
pub fn cleanup(store: &StateStore, id: &str) {
    let annotations = container::state(store, id)
        .map(|s| s.annotations)
        .unwrap_or_default();
    let _ = container::delete(store, id, true);
    let _ = sandbox::remove_dirs(&annotations, false);
}

/// Remove stopped zygote sandboxes (their runner and init are gone): what
/// a daemon killed with -9 leaves.
pub fn sweep(store: &StateStore) {
    for id in store.ids().unwrap_or_default() {
        if !id.starts_with(crate::ZYGOTE_PREFIX) {
            continue;
        }
        if let Ok(st) = container::state(store, &id) {
            if st.status == Status::Stopped {
                cleanup(store, &id);
            }
        }
    }
}

/// Make the zygote, tell the daemon it is ready, serve it on `socket`.
pub fn serve(
    store: &StateStore,
    sfd: &SignalFd,
    p: &Prepared,
    socket: &Path,
    kind: &Kind,
) -> Result<i32> {
    let z = match zygote::spawn(
        store,
        &CreateOptions {
            id: p.id.clone(),
            bundle: p.bundle.clone(),
            // The bundle names a phantom.slice scope where systemd runs.
            systemd_cgroup: phantom_runtime::cgroups::systemd::booted(),
            ..Default::default()
        },
    ) {
        Ok(z) => z,
        Err(e) => {
            cleanup(store, &p.id);
            return Err(e.into());
        }
    };
    let workspace = p
        .annotations
        .get(sandbox::WORKSPACE)
        .cloned()
        .unwrap_or_default();
    let workspace = reachable_workspace(workspace);
    let res = match kind {
        Kind::Plain => serve_plain(store, &z, socket, sfd, &workspace),
        Kind::Python { modules } => serve_python(store, &z, socket, sfd, modules),
    };
    let _ = container::kill(store, &p.id, Signal::SIGKILL, true);
    let _ = nix::sys::signal::kill(Pid::from_raw(z.pid()), Signal::SIGKILL);
    let _ = waitpid(Pid::from_raw(z.pid()), None);
    cleanup(store, &p.id);
    let _ = std::fs::remove_file(socket);
    res
}

/// A size-limited workspace (`resources.workspace`) is a tmpfs mounted in
/// this runner's mount namespace, which the CVE-2019-5736 guard may have
/// made private: a client copying files in through the plain host path
/// would write to the directory underneath, on disk, unseen by the
/// sandbox. Through `/proc/<runner>/root` the path resolves in our
/// namespace, where the tmpfs is, for as long as the runner serves.
fn reachable_workspace(ws: String) -> String {
    use std::os::unix::fs::MetadataExt;
    let p = Path::new(&ws);
    let dev = |p: &Path| std::fs::symlink_metadata(p).map(|m| m.dev()).ok();
    match (dev(p), p.parent().and_then(dev)) {
        (Some(a), Some(b)) if a != b => format!("/proc/{}/root{ws}", std::process::id()),
        _ => ws,
    }
}

fn announce(workspace: &str) -> Result<()> {
    let mut out = std::io::stdout();
    writeln!(out, "ready {workspace}")?;
    out.flush()?;
    Ok(())
}

fn readable(f: &PollFd<'_>) -> bool {
    f.revents().is_some_and(|r| !r.is_empty())
}

/// Whether a signal that means "stop" arrived (SIGCHLD is only a wake-up).
fn told_to_stop(sfd: &SignalFd) -> bool {
    matches!(sfd.read_signal(), Ok(Some(info)) if info.ssi_signo != Signal::SIGCHLD as u32)
}

fn serve_plain(
    store: &StateStore,
    z: &zygote::Zygote,
    path: &Path,
    sfd: &SignalFd,
    workspace: &str,
) -> Result<i32> {
    let listener = listen_at(path)?;
    // A zygote that dies while it waits is noticed through its pidfd: the
    // runner exits, and the daemon replaces it.
    let zfd = pidfd_open(z.pid())?;
    // Holding the sandbox's namespaces lets its init exit without tearing
    // them down first (freeing a mount namespace waits for an RCU grace
    // period, milliseconds): the status reaches the client sooner, and the
    // teardown happens when these close, after the reply.
    let _namespaces: Vec<std::fs::File> = ["mnt", "net", "ipc", "uts", "cgroup"]
        .iter()
        .filter_map(|ns| std::fs::File::open(format!("/proc/{}/ns/{ns}", z.pid())).ok())
        .collect();
    announce(workspace)?;
    let conn = match wait_for_client(listener, path, sfd, &zfd)? {
        Waited::Client(conn) => conn,
        Waited::Stop => return Ok(0),
        Waited::ZygoteDied => bail!("the zygote died before any request"),
    };
    // None: the client changed its mind (e.g. copying files in failed).
    let Some(req) = receive(&conn)? else {
        return Ok(0);
    };
    // Limits of this request (--memory, --cpus, --pids) on the zygote's own
    // cgroup, before the program starts.
    if let Some(r) = &req.run.resources {
        // Whoever sent them (the CLI checked, the daemon checked; a client
        // of our socket may not have): never above the zygote's own.
        if let Err(refused) = within_own(z, r) {
            send_reply(
                conn.as_raw_fd(),
                &RunReply::status(2, Some(refused.to_string())),
            )?;
            return Ok(0);
        }
        if let Err(e) = container::update(store, &z.state.id, r) {
            // The detail names host cgroup files: a remote client of the
            // daemon gets the short error, the local CLI (root) the detail.
            send_reply(
                conn.as_raw_fd(),
                &RunReply::Finished {
                    status: 126,
                    error: Some("the request's limits could not be applied to the sandbox".into()),
                    detail: Some(format!("{e:#}")),
                },
            )?;
            return Ok(0);
        }
    }
    let started = z.exec(store, &req.exec, req.stdio());
    let kill_all = || {
        let _ = container::kill(store, &z.state.id, Signal::SIGKILL, true);
        let _ = nix::sys::signal::kill(Pid::from_raw(z.pid()), Signal::SIGKILL);
    };
    // The request's own memory limit, else the profile's (the bundle's).
    let limit = req
        .run
        .resources
        .as_ref()
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.limit())
        .or_else(|| sandbox::memory_limit_of(&z.state.bundle));
    let oom = || {
        z.state
            .cgroup
            .as_ref()
            .and_then(|cg| sandbox::oom_note(cg, limit))
    };
    run_request(&conn, req, started, (z.pid(), &zfd), sfd, kill_all, oom)
}

/// A request's limits may only narrow those the zygote was made with (its
/// profile's, in its bundle): a zygote's runner is the last to see them
/// before they reach the cgroup.
fn within_own(
    z: &zygote::Zygote,
    asked: &oci_spec::runtime::LinuxResources,
) -> std::result::Result<(), phantom_policy::NarrowingError> {
    let own = phantom_runtime::spec::load(&z.state.bundle)
        .ok()
        .and_then(|s| s.linux().as_ref()?.resources().clone())
        .map(|r| phantom_policy::policy::resources_from_oci(&r))
        .unwrap_or_default();
    let name = z
        .state
        .annotations
        .get(sandbox::PROFILE)
        .map_or("of this zygote", String::as_str);
    phantom_policy::check_limits(
        name,
        &own,
        &phantom_policy::policy::resources_from_oci(asked),
        "",
        &phantom_policy::Raised::default(),
    )
}

/// What waiting for the one client ended with.
enum Waited {
    Client(OwnedFd),
    /// SIGTERM or SIGINT.
    Stop,
    ZygoteDied,
}

/// Wait until a client connects to `listener` (at `path`), we are told to
/// stop, or the zygote behind `zfd` dies. A client's connection ends the
/// listening: each zygote serves one.
fn wait_for_client(
    listener: OwnedFd,
    path: &Path,
    sfd: &SignalFd,
    zfd: &OwnedFd,
) -> Result<Waited> {
    loop {
        let mut fds = [
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(zfd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => r?,
        };
        if readable(&fds[2]) {
            return Ok(Waited::ZygoteDied);
        }
        if readable(&fds[1]) && told_to_stop(sfd) {
            return Ok(Waited::Stop);
        }
        if readable(&fds[0]) {
            break;
        }
    }
    let conn = accept(listener.as_raw_fd()).context("accept")?;
    drop(listener);
    let _ = std::fs::remove_file(path);
    // SAFETY: accept returned a new fd that only we own.
    Ok(Waited::Client(unsafe { OwnedFd::from_raw_fd(conn) }))
}

/// A client's request: what to run, its deadline, and its stdio.
struct Request {
    run: RunRequest,
    /// What the zygote's init is handed (args, env, cwd of `run`).
    exec: ExecRequest,
    deadline: Option<Instant>,
    fds: Vec<OwnedFd>,
}

impl Request {
    fn stdio(&self) -> [std::os::fd::RawFd; 3] {
        [
            self.fds[0].as_raw_fd(),
            self.fds[1].as_raw_fd(),
            self.fds[2].as_raw_fd(),
        ]
    }
}

/// The request on `conn`; `None` when the client closed without one.
fn receive(conn: &OwnedFd) -> Result<Option<Request>> {
    let Some((Msg::Exec(text), fds)) = recv_with_fds(conn.as_raw_fd())? else {
        return Ok(None);
    };
    let run: RunRequest = match proto::from_text(&text) {
        Ok(run) => run,
        Err(e) => {
            let _ = send_reply(conn.as_raw_fd(), &RunReply::status(2, Some(e.to_string())));
            bail!("a client's request: {e}");
        }
    };
    let exec = ExecRequest {
        args: run.args.clone(),
        env: run.env.clone(),
        cwd: run.cwd.clone(),
    };
    let deadline = run
        .timeout_ms
        .map(|ms| Instant::now() + Duration::from_millis(ms));
    if fds.len() < 3 {
        bail!("the request must carry stdin, stdout and stderr");
    }
    Ok(Some(Request {
        run,
        exec,
        deadline,
        fds,
    }))
}

/// After the hand-over (`started`): report a program that could not start
/// (127 when it does not exist, else 126), or say it started, wait for it
/// and report its status.
fn run_request(
    conn: &OwnedFd,
    req: Request,
    started: phantom_runtime::error::Result<()>,
    (pid, zfd): (i32, &OwnedFd),
    sfd: &SignalFd,
    kill: impl Fn(),
    oom: impl Fn() -> Option<String>,
) -> Result<i32> {
    if let Err(e) = started {
        send_reply(
            conn.as_raw_fd(),
            &RunReply::status(exec_failure_status(&e), Some(e.to_string())),
        )?;
        return Ok(0);
    }
    // Our copies of the caller's stdio must go, or its pipes never close.
    drop(req.fds);
    let _ = send_reply(conn.as_raw_fd(), &RunReply::Started { started: true });
    let (status, stopped) = wait_program(pid, zfd, conn.as_fd(), sfd, req.deadline, kill)?;
    let why = match stopped {
        // Asked once the program is gone, so the daemon has had time to go.
        true => Some(stop_reason().to_string()),
        false if status == 137 => oom(),
        false => None,
    };
    let _ = send_reply(conn.as_raw_fd(), &RunReply::status(status, why));
    Ok(0)
}

/// The exit status of a program that could not start, as a shell gives
/// it: 127 when it does not exist (ENOENT), 126 when it exists but cannot
/// be executed, or when the sandbox failed before the exec.
fn exec_failure_status(e: &phantom_runtime::error::Error) -> i32 {
    match e {
        phantom_runtime::error::Error::ExecFailed { errno, .. } if *errno == libc::ENOENT => 127,
        _ => 126,
    }
}

/// Wait for the program `pid`; `kill` it (and what belongs to it) if the
/// client goes away, we are told to stop (then also why), or the deadline
/// passes (then 124).
fn wait_program(
    pid: i32,
    zfd: &OwnedFd,
    conn: std::os::fd::BorrowedFd<'_>,
    sfd: &SignalFd,
    deadline: Option<Instant>,
    kill: impl Fn(),
) -> Result<(i32, bool)> {
    let mut timed_out = false;
    let mut stopped = false;
    loop {
        if let Ok(ws) = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            if let Some(c) = container::run::exit_status(ws) {
                return Ok((if timed_out { 124 } else { c }, stopped));
            }
        }
        let timeout = match deadline.filter(|_| !timed_out) {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    kill();
                    timed_out = true;
                    continue;
                }
                PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX)
            }
            None => PollTimeout::NONE,
        };
        let mut fds = [
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
            // The client sends nothing more: any readiness is its end.
            PollFd::new(conn, PollFlags::POLLIN),
            PollFd::new(zfd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, timeout) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => r?,
        };
        if readable(&fds[0]) && told_to_stop(sfd) {
            stopped = true;
            kill();
        }
        if readable(&fds[1]) {
            // The client is gone (Ctrl-C): nothing may keep running.
            kill();
        }
    }
}

/// The Python fork server in the zygote: its stdin is a socket to us, on
/// which it gets the listening socket clients connect to; its stdout tells
/// us when the modules are imported.
fn serve_python(
    store: &StateStore,
    z: &zygote::Zygote,
    path: &Path,
    sfd: &SignalFd,
    modules: &[String],
) -> Result<i32> {
    let listener = listen_at(path)?;
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .context("socketpair for the fork server")?;
    let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let zfd = pidfd_open(z.pid())?;
    let req = ExecRequest {
        args: vec!["python3".into(), "-c".into(), crate::FORKSERVER_PY.into()],
        env: vec![format!("{}={}", crate::PY_MODULES_ENV, modules.join(","))],
        cwd: None,
    };
    z.exec(
        store,
        &req,
        [theirs.as_raw_fd(), out_w.as_raw_fd(), libc::STDERR_FILENO],
    )
    .map_err(|e| anyhow!("start the Python fork server: {e}"))?;
    drop(theirs);
    drop(out_w);
    // The listener goes over as the one fd of an `L` message.
    send_listener(&ours, &listener)?;
    drop(listener);
    let mut lines = std::io::BufReader::new(std::fs::File::from(out_r));
    let mut line = String::new();
    lines
        .read_line(&mut line)
        .context("read the fork server's first line")?;
    if line.trim_end() != "ready" {
        bail!(
            "the Python fork server did not start: {}",
            if line.is_empty() {
                "no output"
            } else {
                line.trim_end()
            }
        );
    }
    announce("")?;
    loop {
        let mut fds = [
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(zfd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => r?,
        };
        if readable(&fds[1]) {
            bail!("the Python fork server exited");
        }
        if readable(&fds[0]) && told_to_stop(sfd) {
            return Ok(0);
        }
    }
}

fn send_listener(to: &OwnedFd, listener: &OwnedFd) -> Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage};
    let fds = [listener.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [std::io::IoSlice::new(b"L")];
    sendmsg::<()>(
        to.as_raw_fd(),
        &iov,
        &cmsg,
        nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .context("hand the listening socket to the fork server")?;
    Ok(())
}

/// A warm `exec`: a process joined to the running sandbox `opts.id` waits
/// on `socket` for one request; the runner hands it over, waits for the
/// program (killing it on the deadline, 124, or when the client goes
/// away) and reports its status. The sandbox itself is not touched.
pub fn serve_exec(
    store: &StateStore,
    sfd: &SignalFd,
    opts: &phantom_runtime::container::ExecOptions,
    socket: &Path,
) -> Result<i32> {
    let z = phantom_runtime::container::exec::spawn_zygote(store, opts)
        .with_context(|| format!("an exec zygote in {}", opts.id))?;
    let kill = |pid: i32| {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        let _ = waitpid(Pid::from_raw(pid), None);
    };
    let res = serve_exec_zygote(&z, socket, sfd);
    kill(z.pid);
    let _ = std::fs::remove_file(socket);
    res
}

fn serve_exec_zygote(
    z: &phantom_runtime::container::exec::ExecZygote,
    path: &Path,
    sfd: &SignalFd,
) -> Result<i32> {
    let listener = listen_at(path)?;
    let zfd = pidfd_open(z.pid)?;
    announce("")?;
    let conn = match wait_for_client(listener, path, sfd, &zfd)? {
        Waited::Client(conn) => conn,
        // The sandbox ended (its pid namespace took the zygote along):
        // nothing to report, the daemon drops the warm exec.
        Waited::Stop | Waited::ZygoteDied => return Ok(0),
    };
    let Some(req) = receive(&conn)? else {
        return Ok(0);
    };
    let started = z.exec(&req.exec, req.stdio());
    // Only the program goes: the sandbox is not ours.
    let kill = || {
        let _ = nix::sys::signal::kill(Pid::from_raw(z.pid), Signal::SIGKILL);
    };
    run_request(&conn, req, started, (z.pid, &zfd), sfd, kill, || None)
}

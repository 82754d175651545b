//! The warm path. `phantom daemon` keeps, per profile, a pool of zygote
//! runners (`phantom zygote-serve`, each the parent of one zygote sandbox
//! that waits for a request); `phantom run --profile` asks the daemon for
//! one and hands it the command and its own stdio.
//!
//! Protocol, over SOCK_SEQPACKET unix sockets (one message each way):
//! - client -> daemon: `{"op":"acquire","profile":P}`; daemon -> client:
//!   `{"zygote":PATH}` or `{"error":TEXT}`. `{"op":"pools"}` -> pool sizes.
//! - client -> zygote runner at PATH: `X{"args":[..],"env":[..],"timeout_ms":N}`
//!   with fds 0, 1, 2 attached; runner -> client: `{"status":N}` (or with
//!   `"error"`), once the program exited.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{
    accept, bind, connect, listen, recv, send, socket, AddressFamily, Backlog, MsgFlags, SockFlag,
    SockType, UnixAddr,
};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use phantom_runtime::channel::{recv_with_fds, send_with_fds, Msg};
use phantom_runtime::container::{self, zygote, CreateOptions};
use phantom_runtime::process::init::ExecRequest;
use phantom_runtime::sandbox;
use phantom_runtime::state::StateStore;
use serde_json::{json, Value};

pub const DEFAULT_SOCKET: &str = "/run/phantom/daemon.sock";
/// Ids of zygote sandboxes start with this, so a daemon can find and
/// remove the ones whose runner died.
pub const ZYGOTE_PREFIX: &str = "zyg-";

/// Remove zygote sandboxes whose runner is gone (their init died with it).
pub fn sweep(store: &StateStore) {
    for id in store.ids().unwrap_or_default() {
        if !id.starts_with(ZYGOTE_PREFIX) {
            continue;
        }
        if let Ok(st) = container::state(store, &id) {
            if st.status == phantom_runtime::state::Status::Stopped {
                let _ = container::delete(store, &id, true);
                let _ = sandbox::remove_dirs(&st.annotations, false);
            }
        }
    }
}
pub const SOCKET_ENV: &str = "PHANTOM_DAEMON_SOCKET";

fn seqpacket() -> Result<OwnedFd> {
    socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context("create a unix socket")
}

fn listen_at(path: &Path) -> Result<OwnedFd> {
    let _ = std::fs::remove_file(path);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let fd = seqpacket()?;
    bind(fd.as_raw_fd(), &UnixAddr::new(path)?)
        .with_context(|| format!("bind {}", path.display()))?;
    // Only root (the daemon's user) may ask for sandboxes.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    listen(&fd, Backlog::new(64)?).with_context(|| format!("listen on {}", path.display()))?;
    Ok(fd)
}

fn connect_to(path: &Path) -> Result<OwnedFd> {
    let fd = seqpacket()?;
    connect(fd.as_raw_fd(), &UnixAddr::new(path)?)
        .with_context(|| format!("connect to {}", path.display()))?;
    Ok(fd)
}

fn send_json(fd: RawFd, v: &Value) -> Result<()> {
    send(fd, v.to_string().as_bytes(), MsgFlags::MSG_NOSIGNAL).context("send")?;
    Ok(())
}

fn recv_json(fd: RawFd) -> Result<Option<Value>> {
    let mut buf = vec![0u8; 64 * 1024];
    let n = loop {
        match recv(fd, &mut buf, MsgFlags::empty()) {
            Ok(n) => break n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).context("receive"),
        }
    };
    if n == 0 {
        return Ok(None);
    }
    Ok(Some(
        serde_json::from_slice(&buf[..n]).context("malformed message")?,
    ))
}

fn block(signals: &[Signal]) -> Result<SignalFd> {
    let mut set = SigSet::empty();
    for s in signals {
        set.add(*s);
    }
    set.thread_block()?;
    Ok(SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC)?)
}

// ---------------------------------------------------------------------------
// The zygote runner

/// `phantom zygote-serve --profile P --socket PATH`: make one zygote,
/// serve one request on PATH, report its status, clean everything up.
pub fn serve(
    store: &StateStore,
    profile: &str,
    socket_path: &Path,
    profile_path: Option<PathBuf>,
) -> Result<i32> {
    // A runner does not outlive its daemon; SIGTERM lets it clean up.
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0) };
    let sfd = block(&[Signal::SIGTERM, Signal::SIGINT, Signal::SIGCHLD])?;
    let args = crate::cli::SandboxArgs {
        profile: Some(profile.to_string()),
        profile_path,
        ..Default::default()
    };
    // The command comes with the request; the config needs one meanwhile.
    let id = format!("{ZYGOTE_PREFIX}{}", crate::sandbox_cmd::random_suffix());
    let p = crate::sandbox_cmd::prepare(store, &args, Some(id), vec!["true".into()], false)?;
    let cleanup = |store: &StateStore| {
        let _ = container::delete(store, &p.id, true);
        let _ = sandbox::remove_dirs(&p.annotations, false);
        let _ = std::fs::remove_file(socket_path);
    };
    let z = match zygote::spawn(
        store,
        &CreateOptions {
            id: p.id.clone(),
            bundle: p.bundle.clone(),
            ..Default::default()
        },
    ) {
        Ok(z) => z,
        Err(e) => {
            cleanup(store);
            return Err(e.into());
        }
    };
    let workspace = p
        .annotations
        .get(sandbox::WORKSPACE)
        .cloned()
        .unwrap_or_default();
    let res = serve_zygote(store, &z, socket_path, &sfd, &workspace);
    cleanup(store);
    res
}

fn serve_zygote(
    store: &StateStore,
    z: &zygote::Zygote,
    path: &Path,
    sfd: &SignalFd,
    workspace: &str,
) -> Result<i32> {
    let listener = listen_at(path)?;
    // The daemon passes the workspace on, so a client can put files in it.
    println!("ready {workspace}");
    std::io::stdout().flush()?;
    // Wait for the one client (or the end).
    loop {
        let mut fds = [
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => r?,
        };
        if fds[1].revents().is_some_and(|r| !r.is_empty()) {
            // Told to stop, or the zygote died before any request.
            return Ok(0);
        }
        if fds[0].revents().is_some_and(|r| !r.is_empty()) {
            break;
        }
    }
    let conn = accept(listener.as_raw_fd()).context("accept")?;
    // SAFETY: accept returned a new fd that only we own.
    let conn = unsafe { OwnedFd::from_raw_fd(conn) };
    drop(listener);
    let _ = std::fs::remove_file(path);
    let Some((Msg::Exec(text), fds)) = recv_with_fds(conn.as_raw_fd())? else {
        bail!("the client sent no request");
    };
    let req: Value = serde_json::from_str(&text).context("malformed request")?;
    let exec: ExecRequest = serde_json::from_value(req.clone()).context("malformed request")?;
    let deadline = req["timeout_ms"]
        .as_u64()
        .map(|ms| Instant::now() + Duration::from_millis(ms));
    if fds.len() < 3 {
        bail!("the request must carry stdin, stdout and stderr");
    }
    let stdio = [fds[0].as_raw_fd(), fds[1].as_raw_fd(), fds[2].as_raw_fd()];
    if let Err(e) = z.exec(store, &exec, stdio) {
        let msg = e.to_string();
        let status = if msg.contains("not found") || msg.contains("no such file") {
            127
        } else {
            126
        };
        send_json(conn.as_raw_fd(), &json!({"status": status, "error": msg}))?;
        return Ok(0);
    }
    // Our copies of the caller's stdio must go, or its pipes never close.
    drop(fds);
    let status = wait_program(store, z, conn.as_fd(), sfd, deadline)?;
    let _ = send_json(conn.as_raw_fd(), &json!({"status": status}));
    Ok(0)
}

/// Wait for the program; kill the whole sandbox if the client goes away,
/// we are told to stop, or the deadline passes (then 124).
fn wait_program(
    store: &StateStore,
    z: &zygote::Zygote,
    conn: std::os::fd::BorrowedFd<'_>,
    sfd: &SignalFd,
    deadline: Option<Instant>,
) -> Result<i32> {
    let pid = z.pid();
    let kill_all = || {
        let _ = container::kill(store, &z.state.id, Signal::SIGKILL, true);
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
    };
    let mut timed_out = false;
    loop {
        if let Ok(ws) = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            if let Some(c) = container::run::exit_status(ws) {
                return Ok(if timed_out { 124 } else { c });
            }
        }
        let timeout = match deadline.filter(|_| !timed_out) {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    kill_all();
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
        ];
        match poll(&mut fds, timeout) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => r?,
        };
        if fds[0].revents().is_some_and(|r| !r.is_empty()) {
            if let Ok(Some(info)) = sfd.read_signal() {
                if info.ssi_signo != Signal::SIGCHLD as u32 {
                    kill_all();
                }
            }
        }
        if fds[1].revents().is_some_and(|r| !r.is_empty()) {
            // The client is gone (Ctrl-C): nothing may keep running.
            kill_all();
        }
    }
}

// ---------------------------------------------------------------------------
// The client side of `phantom run --profile`

/// Run `command` in a warm zygote of `profile`. `Ok(None)`: no daemon or no
/// warm zygote; the caller falls back to the cold path.
pub fn run_warm(
    socket_path: &Path,
    profile: &str,
    command: &[String],
    env: &[String],
    timeout: Option<Duration>,
    copy_in: Option<&Path>,
) -> Result<Option<i32>> {
    let daemon = match connect_to(socket_path) {
        Ok(fd) => fd,
        Err(e) => {
            tracing::debug!("no daemon at {}: {e:#}; cold path", socket_path.display());
            return Ok(None);
        }
    };
    send_json(
        daemon.as_raw_fd(),
        &json!({"op": "acquire", "profile": profile}),
    )?;
    let reply = recv_json(daemon.as_raw_fd())?.unwrap_or(Value::Null);
    let Some(path) = reply["zygote"].as_str() else {
        tracing::debug!(
            "daemon: {}; cold path",
            reply["error"].as_str().unwrap_or("no reply")
        );
        return Ok(None);
    };
    let zyg = match connect_to(Path::new(path)) {
        Ok(fd) => fd,
        Err(e) => {
            tracing::debug!("zygote {path}: {e:#}; cold path");
            return Ok(None);
        }
    };
    if let Some(dir) = copy_in {
        // Closing `zyg` without a request makes the runner remove the zygote.
        let ws = reply["workspace"]
            .as_str()
            .filter(|w| !w.is_empty())
            .ok_or_else(|| anyhow!("the daemon did not say where the zygote's workspace is"))?;
        crate::sandbox_cmd::copy_into(dir, Path::new(ws))?;
    }
    let mut req = json!({"args": command, "env": env});
    if let Some(t) = timeout {
        req["timeout_ms"] = json!(t.as_millis() as u64);
    }
    send_with_fds(zyg.as_raw_fd(), &Msg::Exec(req.to_string()), &[0, 1, 2])?;
    tracing::debug!("warm path: zygote {path}");
    // From here the request is under way: a missing answer is an error, not
    // a reason to run the command a second time.
    let reply = recv_json(zyg.as_raw_fd())?
        .ok_or_else(|| anyhow!("the warm sandbox ended without reporting a status"))?;
    if let Some(e) = reply["error"].as_str() {
        eprintln!("phantom: {e}");
    }
    reply["status"]
        .as_i64()
        .map(|s| Some(s as i32))
        .ok_or_else(|| anyhow!("the warm sandbox sent no status: {reply}"))
}

/// `--daemon-socket`, else $PHANTOM_DAEMON_SOCKET, else the default.
pub fn socket_path(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| std::env::var_os(SOCKET_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

// ---------------------------------------------------------------------------
// The daemon

struct Runner {
    profile: String,
    socket: PathBuf,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    ready: bool,
    /// The zygote's (fresh, empty) workspace on the host.
    workspace: String,
}

/// `phantom daemon --socket PATH --pool PROFILE=N...`
pub fn daemon(
    root: &Path,
    socket_path: &Path,
    pools: &[(String, usize)],
    profile_path: Option<&Path>,
) -> Result<i32> {
    let sfd = block(&[Signal::SIGTERM, Signal::SIGINT, Signal::SIGCHLD])?;
    let zyg_dir = socket_path
        .parent()
        .unwrap_or(Path::new("/run/phantom"))
        .join("zygotes");
    std::fs::create_dir_all(&zyg_dir)?;
    // A daemon killed with -9 leaves sockets behind; its runners died with
    // it (PDEATHSIG) and removed their sandboxes.
    for e in std::fs::read_dir(&zyg_dir)?.flatten() {
        let _ = std::fs::remove_file(e.path());
    }
    let store = StateStore::new(root);
    sweep(&store);
    let listener = listen_at(socket_path)?;
    let exe = std::env::current_exe().context("locate the phantom binary")?;
    let mut runners: BTreeMap<i32, Runner> = BTreeMap::new();
    let mut counter = 0u64;
    let mut spawn = |profile: &str, runners: &mut BTreeMap<i32, Runner>| -> Result<()> {
        counter += 1;
        let sock = zyg_dir.join(format!("{}-{}-{counter}.sock", profile, std::process::id()));
        let mut cmd = std::process::Command::new(&exe);
        cmd.arg("--root")
            .arg(root)
            .arg("zygote-serve")
            .arg("--profile")
            .arg(profile)
            .arg("--socket")
            .arg(&sock);
        if let Some(p) = profile_path {
            cmd.arg("--profile-path").arg(p);
        }
        // The runner must not start with our signals blocked.
        // SAFETY: only async-signal-safe sigprocmask runs between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
                Ok(())
            });
        }
        let mut child = cmd
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .with_context(|| format!("start a zygote runner for {profile}"))?;
        let stdout = child.stdout.take().expect("piped");
        runners.insert(
            child.id() as i32,
            Runner {
                profile: profile.to_string(),
                socket: sock,
                stdout: std::io::BufReader::new(stdout),
                ready: false,
                workspace: String::new(),
            },
        );
        Ok(())
    };
    for (profile, n) in pools {
        for _ in 0..*n {
            spawn(profile, &mut runners)?;
        }
    }
    eprintln!("phantom daemon: listening on {}", socket_path.display());
    loop {
        let pids: Vec<i32> = runners
            .iter()
            .filter(|(_, r)| !r.ready)
            .map(|(p, _)| *p)
            .collect();
        let mut fds = vec![
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
        ];
        for p in &pids {
            fds.push(PollFd::new(
                runners[p].stdout.get_ref().as_fd(),
                PollFlags::POLLIN,
            ));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => r?,
        };
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        for (i, p) in pids.iter().enumerate() {
            if ready[2 + i] {
                if let Some(r) = runners.get_mut(p) {
                    let mut line = String::new();
                    if r.stdout.read_line(&mut line).unwrap_or(0) > 0 {
                        if let Some(ws) = line.trim_end().strip_prefix("ready") {
                            r.ready = true;
                            r.workspace = ws.trim().to_string();
                        }
                    }
                }
            }
        }
        if ready[1] {
            if let Ok(Some(info)) = sfd.read_signal() {
                if info.ssi_signo != Signal::SIGCHLD as u32 {
                    break;
                }
            }
            // Reap runners; one that dies before being handed out (a dead
            // zygote) is replaced.
            while let Ok(ws) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                let Some(pid) = ws.pid() else { break };
                if let Some(r) = runners.remove(&pid.as_raw()) {
                    let _ = std::fs::remove_file(&r.socket);
                    spawn(&r.profile, &mut runners)?;
                }
                // A runner that died hard left its (now stopped) sandbox.
                sweep(&store);
            }
        }
        if ready[0] {
            let Ok(conn) = accept(listener.as_raw_fd()) else {
                continue;
            };
            // SAFETY: accept returned a new fd that only we own.
            let conn = unsafe { OwnedFd::from_raw_fd(conn) };
            let reply = match recv_json(conn.as_raw_fd()) {
                Ok(Some(req)) if req["op"] == "acquire" => {
                    let profile = req["profile"].as_str().unwrap_or("");
                    let found = runners
                        .iter()
                        .find(|(_, r)| r.ready && r.profile == profile)
                        .map(|(p, _)| *p);
                    match found {
                        Some(pid) => {
                            let r = runners.remove(&pid).expect("found");
                            // The runner serves this client and exits; refill now.
                            spawn(&r.profile, &mut runners)?;
                            json!({"zygote": r.socket, "workspace": r.workspace})
                        }
                        None => json!({"error": format!("no warm zygote for profile {profile:?}")}),
                    }
                }
                Ok(Some(req)) if req["op"] == "pools" => {
                    let mut pools = serde_json::Map::new();
                    for r in runners.values() {
                        let e = pools
                            .entry(r.profile.clone())
                            .or_insert(json!({"ready": 0, "starting": 0}));
                        let k = if r.ready { "ready" } else { "starting" };
                        e[k] = json!(e[k].as_u64().unwrap_or(0) + 1);
                    }
                    Value::Object(pools)
                }
                Ok(Some(other)) => json!({"error": format!("unknown request {other}")}),
                _ => continue,
            };
            let _ = send_json(conn.as_raw_fd(), &reply);
        }
    }
    // Drain: every runner stops and removes its sandbox.
    for pid in runners.keys() {
        let _ = nix::sys::signal::kill(Pid::from_raw(*pid), Signal::SIGTERM);
    }
    let until = Instant::now() + Duration::from_secs(10);
    while !runners.is_empty() && Instant::now() < until {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => std::thread::sleep(Duration::from_millis(5)),
            Ok(ws) => {
                if let Some(p) = ws.pid() {
                    runners.remove(&p.as_raw());
                }
            }
            Err(_) => break,
        }
    }
    let _ = std::fs::remove_file(socket_path);
    eprintln!("phantom daemon: stopped");
    Ok(0)
}

/// The daemon's pool sizes (`{"python-dev":{"ready":2,"starting":0}}`).
pub fn pools(socket_path: &Path) -> Result<Value> {
    let fd = connect_to(socket_path)?;
    send_json(fd.as_raw_fd(), &json!({"op": "pools"}))?;
    recv_json(fd.as_raw_fd())?.ok_or_else(|| anyhow!("the daemon closed the connection"))
}

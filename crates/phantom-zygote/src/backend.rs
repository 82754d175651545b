//! How sandboxes are run. The MCP server is multi-threaded (tokio), so it
//! never forks a container itself: the only backend today runs the phantom
//! binary as a subprocess (the cold path). A warm backend (zygotes behind
//! `phantom daemon`) can implement [`Backend`] later.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Exit status of `phantom create --profile P ID` when a container or
/// sandbox of that id exists already (EEXIST's number): the one failure
/// the backend must tell apart (HTTP 409), typed rather than read from
/// the message.
pub const EXIT_ALREADY_EXISTS: i32 = 17;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The caller asked for something that does not exist or is not valid.
    #[error("{0}")]
    Invalid(String),
    /// A sandbox of that id exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// phantom itself failed.
    #[error("{0}")]
    Failed(String),
}

/// Resource limits and network of a sandbox (phantom's flags).
#[derive(Debug, Clone, Default)]
pub struct Limits {
    pub memory: Option<String>,
    pub cpus: Option<f64>,
    pub pids: Option<i64>,
    pub network: Option<String>,
    /// Most bytes the sandbox's fresh workspace may hold (`--workspace-size`).
    pub workspace_size: Option<String>,
    /// The operator's ceilings for the key asking (checked by the caller;
    /// passed on so that phantom's own check agrees).
    pub raised: phantom_policy::Raised,
}

impl Limits {
    fn args(&self) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(n) = self.raised.network {
            a.extend(["--raise-network".into(), n.name().to_string()]);
        }
        if let Some(m) = self.raised.memory {
            a.extend(["--raise-memory".into(), m.to_string()]);
        }
        if let Some(p) = self.raised.pids {
            a.extend(["--raise-pids".into(), p.to_string()]);
        }
        if let Some(c) = self.raised.cpus {
            a.extend(["--raise-cpus".into(), c.to_string()]);
        }
        if let Some(m) = &self.memory {
            a.extend(["--memory".into(), m.clone()]);
        }
        if let Some(c) = self.cpus {
            a.extend(["--cpus".into(), c.to_string()]);
        }
        if let Some(p) = self.pids {
            a.extend(["--pids".into(), p.to_string()]);
        }
        if let Some(n) = &self.network {
            a.extend(["--network".into(), n.clone()]);
        }
        if let Some(w) = &self.workspace_size {
            a.extend(["--workspace-size".into(), w.clone()]);
        }
        a
    }
}

/// A command to run in a fresh sandbox.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The sandbox's id (so it can be killed by name).
    pub id: String,
    pub profile: String,
    pub argv: Vec<String>,
    /// Host directory mounted at /workspace (the caller owns it).
    pub workspace: Option<PathBuf>,
    pub stdin: Option<String>,
    pub timeout: Duration,
    pub limits: Limits,
    pub env: Vec<String>,
}

/// Output of one stream, capped.
#[derive(Debug, Clone, Serialize)]
pub struct Captured {
    pub text: String,
    /// Bytes that were produced past the cap and dropped.
    pub truncated_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The command's exit status (phantom's: 124 timeout, 137 SIGKILL/OOM,
    /// 127 command not found, 128+N killed by signal N).
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub stdout_truncated_bytes: u64,
    pub stderr_truncated_bytes: u64,
    pub duration_ms: u64,
    /// Killed because the time limit was reached.
    pub timed_out: bool,
    /// Killed by SIGKILL, the kernel's OOM killer's signal (memory limit).
    pub killed_for_memory: bool,
    /// Stopped because the client cancelled the request.
    pub cancelled: bool,
}

/// A persistent sandbox as the backend reports it.
#[derive(Debug, Clone, Serialize)]
pub struct SandboxInfo {
    pub id: String,
    pub profile: String,
    pub status: String,
    /// Where the workspace is reached from the host (never shown to clients).
    #[serde(skip)]
    pub workspace: WorkspaceDir,
}

/// A persistent sandbox's /workspace as the host reaches it: through the
/// sandbox itself (a descriptor of its /workspace, opened through its
/// init's root), held for as long as this value or a clone lives. A
/// size-limited workspace is a tmpfs that `phantom create` mounted in its
/// own mount namespace (the CVE-2019-5736 guard's private one), which dies
/// with it: the host path then names the directory underneath, on disk,
/// which the sandbox never sees and no limit holds. Derefs to a path
/// (`/proc/self/fd/N`) for the files API.
#[derive(Debug, Clone, Default)]
pub struct WorkspaceDir {
    path: PathBuf,
    _fd: Option<std::sync::Arc<std::os::fd::OwnedFd>>,
}

impl WorkspaceDir {
    /// The /workspace of the process `pid` (a sandbox's init).
    pub fn of_pid(pid: i32) -> std::io::Result<WorkspaceDir> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(format!("/proc/{pid}/root/workspace"))?;
        let fd = std::os::fd::OwnedFd::from(f);
        Ok(WorkspaceDir {
            path: PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())),
            _fd: Some(std::sync::Arc::new(fd)),
        })
    }

    /// A plain host directory (tests, backends without a container).
    pub fn host(path: PathBuf) -> WorkspaceDir {
        WorkspaceDir { path, _fd: None }
    }
}

impl std::ops::Deref for WorkspaceDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

/// Where sandboxes run.
pub trait Backend: Send + Sync + 'static {
    /// Run `spec` in a fresh sandbox that is removed afterwards. Cancelling
    /// `cancel` (or dropping the future) kills the sandbox's process tree.
    fn run(
        &self,
        spec: RunSpec,
        cancel: CancellationToken,
    ) -> BoxFuture<'_, Result<Outcome, BackendError>>;
    /// Make a persistent sandbox named `id`.
    fn create<'a>(
        &'a self,
        id: &'a str,
        profile: &'a str,
        limits: &'a Limits,
    ) -> BoxFuture<'a, Result<SandboxInfo, BackendError>>;
    /// Run `argv` in the persistent sandbox `id`, with `env` (`K=V`) added.
    fn exec<'a>(
        &'a self,
        id: &'a str,
        argv: &'a [String],
        env: &'a [String],
        stdin: Option<String>,
        timeout: Duration,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<Outcome, BackendError>>;
    /// Status of the sandboxes in `ids` (missing ones are left out).
    fn status<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, Vec<(String, String)>>;
    /// Remove a persistent sandbox and its workspace.
    fn destroy<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), BackendError>>;
    /// The same, blocking: for clean-up from `Drop`.
    fn destroy_blocking(&self, id: &str);
    /// Where run workspaces are made.
    fn scratch_dir(&self) -> PathBuf;
}

/// Runs `phantom` (this binary, or the one given) as a subprocess per call.
pub struct Subprocess {
    pub bin: PathBuf,
    pub root: Option<PathBuf>,
    pub max_output: usize,
    /// Where sandboxes' workspaces are made (default $PHANTOM_SANDBOX_DIR
    /// or /var/lib/phantom/sandboxes); scratch files go in `.mcp` there.
    pub sandbox_dir: Option<PathBuf>,
    /// The caller's profile directories (the daemon's --profile-path):
    /// phantom must make the sandbox from the very profile the caller
    /// checked the request against, so it gets them too.
    pub profile_dirs: Vec<PathBuf>,
}

impl Subprocess {
    fn command(&self) -> Command {
        let mut c = Command::new(&self.bin);
        if let Some(r) = &self.root {
            c.arg("--root").arg(r);
        }
        // The environment rather than --profile-path: that flag would keep
        // `phantom run` off the warm path, which the variable does not.
        if !self.profile_dirs.is_empty() {
            if let Ok(v) = std::env::join_paths(&self.profile_dirs) {
                c.env(phantom_policy::profile::PROFILE_PATH_ENV, v);
            }
        }
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn std_command(&self) -> std::process::Command {
        let mut c = std::process::Command::new(&self.bin);
        if let Some(r) = &self.root {
            c.arg("--root").arg(r);
        }
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    /// Output of a short phantom command that must succeed.
    async fn check(&self, args: &[&str]) -> Result<String, BackendError> {
        let out =
            self.command().args(args).output().await.map_err(|e| {
                BackendError::Failed(format!("cannot run {}: {e}", self.bin.display()))
            })?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            let err = err.trim().trim_start_matches("phantom: ");
            Err(BackendError::Invalid(err.to_string()))
        }
    }

    /// Spawns `cmd`, feeds stdin, collects capped output, honours the
    /// timeout (beyond phantom's own) and cancellation.
    async fn supervise(
        &self,
        mut cmd: Command,
        id: &str,
        stdin: Option<String>,
        timeout: Duration,
        cancel: CancellationToken,
        pid_file: Option<PathBuf>,
    ) -> Result<Outcome, BackendError> {
        if stdin.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let start = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| BackendError::Failed(format!("cannot run {}: {e}", self.bin.display())))?;
        let mut guard = KillGuard {
            pid: child.id(),
            id: id.to_string(),
            pid_file: pid_file.clone(),
            backend: KillWith {
                bin: self.bin.clone(),
                root: self.root.clone(),
            },
            armed: true,
        };
        if let (Some(data), Some(mut w)) = (stdin, child.stdin.take()) {
            tokio::spawn(async move {
                let _ = w.write_all(data.as_bytes()).await;
                let _ = w.shutdown().await;
            });
        }
        let out = tokio::spawn(capture(child.stdout.take(), self.max_output));
        let err = tokio::spawn(capture(child.stderr.take(), self.max_output));
        let mut timed_out = false;
        let mut cancelled = false;
        // phantom enforces the timeout itself (exit 124); this is a backstop.
        let backstop = timeout + Duration::from_secs(10);
        let status = tokio::select! {
            s = child.wait() => s,
            _ = cancel.cancelled() => {
                cancelled = true;
                guard.stop_now(&mut child).await
            }
            _ = tokio::time::sleep(backstop) => {
                timed_out = true;
                guard.stop_now(&mut child).await
            }
        };
        guard.armed = false;
        let status =
            status.map_err(|e| BackendError::Failed(format!("waiting for phantom: {e}")))?;
        let out = out.await.unwrap_or_else(|_| empty());
        let err = err.await.unwrap_or_else(|_| empty());
        let code = status.code().or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            status.signal().map(|s| 128 + s)
        });
        Ok(Outcome {
            exit_code: code,
            timed_out: timed_out || code == Some(124),
            killed_for_memory: code == Some(137) && !cancelled,
            cancelled,
            stdout: out.text,
            stderr: err.text,
            stdout_truncated_bytes: out.truncated_bytes,
            stderr_truncated_bytes: err.truncated_bytes,
            duration_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    }
}

pub fn empty() -> Captured {
    Captured {
        text: String::new(),
        truncated_bytes: 0,
    }
}

/// Reads everything from `r`, keeping the first `cap` bytes.
pub async fn capture(r: Option<impl AsyncRead + Unpin>, cap: usize) -> Captured {
    let Some(mut r) = r else { return empty() };
    let mut kept = Vec::new();
    let mut dropped = 0u64;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = cap.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
                dropped += (n - n.min(room)) as u64;
            }
        }
    }
    let mut text = String::from_utf8_lossy(&kept).into_owned();
    if dropped > 0 {
        text.push_str(&format!(
            "\n[phantom: output truncated: {dropped} more bytes not shown (limit {cap} bytes)]"
        ));
    }
    Captured {
        text,
        truncated_bytes: dropped,
    }
}

#[derive(Clone)]
struct KillWith {
    bin: PathBuf,
    root: Option<PathBuf>,
}

impl KillWith {
    fn kill_all(&self, id: &str) {
        let mut c = std::process::Command::new(&self.bin);
        if let Some(r) = &self.root {
            c.arg("--root").arg(r);
        }
        let _ = c
            .args(["kill", "--all", id, "KILL"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Kills a run's process tree if the run is abandoned: the client
/// cancelled, or the request future was dropped.
struct KillGuard {
    pid: Option<u32>,
    /// The sandbox (for `run`) or None-like for exec.
    id: String,
    /// For exec: the file where phantom wrote the exec'd process's pid.
    pid_file: Option<PathBuf>,
    backend: KillWith,
    armed: bool,
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    if let Ok(p) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), sig);
    }
}

impl KillGuard {
    /// What ends the work: for `run`, SIGTERM to phantom (which kills the
    /// whole sandbox and cleans up); for `exec`, SIGKILL to the process
    /// phantom started in the sandbox.
    fn first_blow(&self) {
        use nix::sys::signal::Signal;
        if let Some(pf) = &self.pid_file {
            if let Some(p) = std::fs::read_to_string(pf)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
            {
                signal(p, Signal::SIGKILL);
            }
        }
        if let Some(pid) = self.pid {
            signal(pid, Signal::SIGTERM);
        }
    }

    async fn stop_now(
        &mut self,
        child: &mut tokio::process::Child,
    ) -> std::io::Result<std::process::ExitStatus> {
        self.first_blow();
        if let Ok(s) = tokio::time::timeout(Duration::from_secs(3), child.wait()).await {
            return s;
        }
        if self.pid_file.is_none() {
            let k = self.backend.clone();
            let id = self.id.clone();
            let _ = tokio::task::spawn_blocking(move || k.kill_all(&id)).await;
        }
        if let Ok(s) = tokio::time::timeout(Duration::from_secs(3), child.wait()).await {
            return s;
        }
        let _ = child.start_kill();
        child.wait().await
    }
}

impl Drop for KillGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.first_blow();
        if let Some(pf) = self.pid_file.take() {
            // The exec's own cleanup (after `supervise` returns) never runs
            // when the request's future is dropped: remove the pid file
            // here, once now and once more after phantom is gone, in case
            // it wrote the file after our SIGTERM.
            let _ = std::fs::remove_file(&pf);
            let pid = self.pid;
            std::thread::spawn(move || {
                for _ in 0..30 {
                    let alive = pid.and_then(|p| i32::try_from(p).ok()).is_some_and(|p| {
                        nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None).is_ok()
                    });
                    if !alive {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                let _ = std::fs::remove_file(&pf);
            });
        } else {
            let k = self.backend.clone();
            let id = self.id.clone();
            let pid = self.pid;
            std::thread::spawn(move || {
                // Give phantom a moment to kill and remove the sandbox itself.
                for _ in 0..30 {
                    std::thread::sleep(Duration::from_millis(100));
                    if let Some(p) = pid.and_then(|p| i32::try_from(p).ok()) {
                        if nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None).is_err() {
                            return;
                        }
                    }
                }
                k.kill_all(&id);
            });
        }
    }
}

fn new_pid_file(dir: &Path) -> PathBuf {
    dir.join(format!("exec-{}.pid", crate::random_hex(8)))
}

impl Backend for Subprocess {
    fn run(
        &self,
        spec: RunSpec,
        cancel: CancellationToken,
    ) -> BoxFuture<'_, Result<Outcome, BackendError>> {
        Box::pin(async move {
            let mut cmd = self.command();
            cmd.arg("run").arg("--profile").arg(&spec.profile);
            // The files are copied into the sandbox's own fresh workspace,
            // which lets `phantom run` take a warm zygote when the daemon
            // is up (a workspace of ours would need a sandbox of its own).
            if let Some(w) = &spec.workspace {
                cmd.arg("--copy-in").arg(w);
            }
            cmd.arg("--timeout")
                .arg(format!("{}ms", spec.timeout.as_millis().max(1)));
            let limits = spec.limits.args();
            cmd.args(&limits);
            for e in &spec.env {
                cmd.arg("-e").arg(e);
            }
            // An id, too, asks for a sandbox of its own: name it only when a
            // network of its own makes one necessary anyway (memory, cpus and
            // pids travel with a warm request). Cancellation does not need
            // it: phantom kills the sandbox when it is interrupted.
            if spec.limits.network.is_some() {
                cmd.arg(&spec.id);
            }
            cmd.arg("--").args(&spec.argv);
            self.supervise(cmd, &spec.id, spec.stdin, spec.timeout, cancel, None)
                .await
        })
    }

    fn create<'a>(
        &'a self,
        id: &'a str,
        profile: &'a str,
        limits: &'a Limits,
    ) -> BoxFuture<'a, Result<SandboxInfo, BackendError>> {
        Box::pin(async move {
            let mut args = vec!["create", "--profile", profile, "--name", id];
            let extra = limits.args();
            args.extend(extra.iter().map(String::as_str));
            let out = self.command().args(&args).output().await.map_err(|e| {
                BackendError::Failed(format!("cannot run {}: {e}", self.bin.display()))
            })?;
            if !out.status.success() {
                let err = String::from_utf8_lossy(&out.stderr);
                let err = err.trim().trim_start_matches("phantom: ").to_string();
                return Err(if out.status.code() == Some(EXIT_ALREADY_EXISTS) {
                    BackendError::AlreadyExists(err)
                } else {
                    BackendError::Invalid(err)
                });
            }
            let state = self.check(&["state", id]).await?;
            let v: serde_json::Value = serde_json::from_str(&state)
                .map_err(|e| BackendError::Failed(format!("phantom state {id}: {e}")))?;
            if v["annotations"]["run.phantom.workspace"].as_str().is_none() {
                return Err(BackendError::Failed(format!(
                    "sandbox {id} has no workspace"
                )));
            }
            // Its init waits for `start` in its namespaces: its /workspace
            // is the one the sandbox uses (see WorkspaceDir).
            let pid = v["pid"]
                .as_i64()
                .and_then(|p| i32::try_from(p).ok())
                .filter(|p| *p > 0)
                .ok_or_else(|| {
                    BackendError::Failed(format!("sandbox {id} has no init pid: {v}"))
                })?;
            let workspace = WorkspaceDir::of_pid(pid).map_err(|e| {
                BackendError::Failed(format!(
                    "sandbox {id}: cannot open /proc/{pid}/root/workspace: {e}"
                ))
            })?;
            Ok(SandboxInfo {
                id: id.to_string(),
                profile: profile.to_string(),
                status: v["status"].as_str().unwrap_or("unknown").to_string(),
                workspace,
            })
        })
    }

    fn exec<'a>(
        &'a self,
        id: &'a str,
        argv: &'a [String],
        env: &'a [String],
        stdin: Option<String>,
        timeout: Duration,
        cancel: CancellationToken,
    ) -> BoxFuture<'a, Result<Outcome, BackendError>> {
        Box::pin(async move {
            let scratch = self.scratch_dir();
            let _ = std::fs::create_dir_all(&scratch);
            let pid_file = new_pid_file(&scratch);
            let mut cmd = self.command();
            cmd.arg("exec").arg("--pid-file").arg(&pid_file);
            for e in env {
                cmd.arg("--env").arg(e);
            }
            cmd.arg(id).arg("--").args(argv);
            let cancel2 = cancel.child_token();
            let timer = {
                let c = cancel2.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(timeout).await;
                    c.cancel();
                })
            };
            let res = self
                .supervise(cmd, id, stdin, timeout, cancel2, Some(pid_file.clone()))
                .await;
            let fired = timer.is_finished();
            timer.abort();
            // phantom writes the pid file once the program runs: without
            // it, phantom itself failed (no such sandbox, a broken state),
            // and its stderr is its own message, not the program's.
            let started = pid_file.exists();
            let _ = std::fs::remove_file(&pid_file);
            let mut o = res?;
            let could_not_exec = matches!(o.exit_code, Some(126 | 127));
            if !started && !o.cancelled && !fired && !could_not_exec && o.exit_code != Some(0) {
                return Err(BackendError::Failed(format!(
                    "phantom exec {id} (exit status {}): {}",
                    o.exit_code.map_or("none".into(), |c| c.to_string()),
                    o.stderr.trim()
                )));
            }
            if fired && !cancel.is_cancelled() {
                // Our own timer stopped it: a timeout, not a cancellation.
                o.cancelled = false;
                o.timed_out = true;
                o.exit_code = Some(124);
            }
            Ok(o)
        })
    }

    fn status<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, Vec<(String, String)>> {
        Box::pin(async move {
            let Ok(out) = self.check(&["list", "--format", "json"]).await else {
                return Vec::new();
            };
            let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
            let mut res = Vec::new();
            for c in v.as_array().into_iter().flatten() {
                let id = c["id"].as_str().unwrap_or_default();
                if ids.iter().any(|i| i == id) {
                    res.push((
                        id.to_string(),
                        c["status"].as_str().unwrap_or("unknown").to_string(),
                    ));
                }
            }
            res
        })
    }

    fn destroy<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move { self.check(&["destroy", id]).await.map(|_| ()) })
    }

    fn destroy_blocking(&self, id: &str) {
        let _ = self.std_command().args(["destroy", id]).status();
    }

    fn scratch_dir(&self) -> PathBuf {
        self.sandbox_dir
            .clone()
            .or_else(|| std::env::var_os("PHANTOM_SANDBOX_DIR").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("/var/lib/phantom/sandboxes"))
            .join(".mcp")
    }
}

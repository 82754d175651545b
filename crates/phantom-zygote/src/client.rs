//! The client side of a warm run: ask the daemon for a zygote, hand it the
//! command and our stdio, wait for its status.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use oci_spec::runtime::LinuxResources;
use phantom_runtime::channel::{send_with_fds, Msg};
use serde_json::Value;

use crate::proto::{self, DaemonReply, DaemonRequest, RunReply, RunRequest};
use crate::wire::{connect_to, recv_json};

/// One request and its JSON reply over the daemon's stream socket.
pub fn daemon_request(socket: &Path, req: &DaemonRequest) -> Result<Value> {
    let mut s = UnixStream::connect(socket)
        .with_context(|| format!("connect to the daemon at {}", socket.display()))?;
    // The daemon answers from memory: a daemon that does not answer soon
    // is treated as absent (the caller runs cold).
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    // One write: the daemon reads a line, and one segment is cheaper.
    s.write_all(format!("{}\n", proto::to_text(req)).as_bytes())
        .context("send to the daemon")?;
    let mut line = String::new();
    BufReader::new(&s)
        .read_line(&mut line)
        .context("read the daemon's reply")?;
    if line.is_empty() {
        return Err(anyhow!("the daemon closed the connection"));
    }
    serde_json::from_str(&line).context("the daemon's reply is malformed")
}

/// A zygote the daemon handed out.
pub struct Lease {
    pub socket: PathBuf,
    /// The sandbox's fresh workspace on the host (plain zygotes only).
    pub workspace: Option<PathBuf>,
    pub kind: String,
    conn: OwnedFd,
}

/// The daemon refused a warm request's limits: above its profile's (the
/// daemon's words name the rule). Typed, so that the CLI exits 2 as for
/// its own check, whatever the text.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Why no zygote was handed out.
#[derive(Debug)]
pub enum AcquireError {
    /// None to be had (no daemon, no pool, pool empty): run cold.
    Unavailable(String),
    /// The request may not be served at all, warm or cold.
    Refused(Refused),
}

/// Ask for a zygote of `profile` that can run `argv` with `resources`
/// (which the daemon checks against the profile before handing one out).
pub fn acquire(
    socket: &Path,
    profile: &str,
    argv: &[String],
    need_own_sandbox: bool,
    resources: Option<&LinuxResources>,
) -> std::result::Result<Lease, AcquireError> {
    // A request with files or limits of its own needs a plain zygote: a
    // Python fork server's sandbox is shared.
    let python = crate::python_serves(argv) && !need_own_sandbox;
    let req = DaemonRequest::Acquire {
        profile: profile.to_string(),
        python,
        resources: resources.cloned().map(Box::new),
    };
    lease(socket, &req)
}

/// A warm exec in the running sandbox `id` (under `root`); `Err(why)`
/// when the daemon has none ready (it then starts one for the next exec).
pub fn acquire_exec(socket: &Path, root: &Path, id: &str) -> std::result::Result<Lease, String> {
    let req = DaemonRequest::AcquireExec {
        id: id.to_string(),
        root: root.to_path_buf(),
    };
    lease(socket, &req).map_err(|e| match e {
        AcquireError::Unavailable(why) => why,
        AcquireError::Refused(r) => r.0,
    })
}

/// Send `req` to the daemon and connect to the zygote it names.
fn lease(socket: &Path, req: &DaemonRequest) -> std::result::Result<Lease, AcquireError> {
    let unavailable = AcquireError::Unavailable;
    let reply = daemon_request(socket, req).map_err(|e| unavailable(format!("{e:#}")))?;
    let reply: DaemonReply = serde_json::from_value(reply)
        .map_err(|e| unavailable(format!("the daemon's reply is malformed: {e}")))?;
    match reply {
        DaemonReply::Zygote {
            zygote,
            kind,
            workspace,
        } => Lease::connect(
            &zygote,
            &kind,
            workspace.filter(|w| !w.as_os_str().is_empty()),
        )
        .map_err(|e| unavailable(format!("zygote {}: {e:#}", zygote.display()))),
        DaemonReply::Error {
            error,
            refused: true,
        } => Err(AcquireError::Refused(Refused(error))),
        DaemonReply::Error { error, .. } => Err(unavailable(error)),
    }
}

/// What a warm run reports.
#[derive(Debug, Clone)]
pub struct Finished {
    pub status: i32,
    /// Why the program could not start, if it could not.
    pub error: Option<String>,
    /// The runner's detail of that failure, naming host paths (cgroup
    /// files): for the local CLI and the daemon's log, never a remote client.
    pub detail: Option<String>,
    /// From the request to the program running, as the zygote reports it.
    pub started_after: Option<Duration>,
}

impl Lease {
    /// Connect to the zygote (or fork server) at `socket`.
    pub fn connect(socket: &Path, kind: &str, workspace: Option<PathBuf>) -> Result<Lease> {
        Ok(Lease {
            socket: socket.to_path_buf(),
            workspace,
            kind: kind.to_string(),
            conn: connect_to(socket)?,
        })
    }

    /// Hand over argv with `stdio` as its stdin, stdout and stderr, in `cwd`
    /// (default: the zygote's own) and with `resources` (plain zygotes
    /// only) for the zygote's cgroup.
    /// The caller closes its copies of `stdio` afterwards, or its pipes
    /// never end.
    pub fn start_with(
        &self,
        argv: &[String],
        env: &[String],
        cwd: Option<&Path>,
        timeout: Option<Duration>,
        resources: Option<&LinuxResources>,
        stdio: [RawFd; 3],
    ) -> Result<Instant> {
        let req = RunRequest {
            args: argv.to_vec(),
            env: env.to_vec(),
            cwd: cwd.map(Path::to_path_buf),
            timeout_ms: timeout.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
            resources: resources.cloned(),
        };
        let msg = Msg::Exec(proto::to_text(&req));
        // A fork server reads one message (wire::send_whole_with_fds); Rust
        // runners join the channel's pieces.
        let whole = (self.kind == "python")
            .then(|| msg.encode())
            .filter(|b| b.len() > phantom_runtime::channel::PIECE);
        let t0 = Instant::now();
        match whole {
            Some(bytes) => crate::wire::send_whole_with_fds(self.conn.as_raw_fd(), &bytes, &stdio)?,
            None => send_with_fds(self.conn.as_raw_fd(), &msg, &stdio)?,
        }
        Ok(t0)
    }

    /// Wait for the program's status. Dropping the lease instead kills it.
    pub fn wait(&self, started: Instant) -> Result<Finished> {
        let mut started_after = None;
        // From here the request is under way: a missing answer is an error,
        // not a reason to run the command a second time.
        loop {
            let reply = recv_json(self.conn.as_raw_fd())?
                .ok_or_else(|| anyhow!("the warm sandbox ended without reporting a status"))?;
            let reply: RunReply = serde_json::from_value(reply.clone())
                .map_err(|_| anyhow!("the warm sandbox sent no status: {reply}"))?;
            match reply {
                RunReply::Started { .. } => started_after = Some(started.elapsed()),
                RunReply::Finished {
                    status,
                    error,
                    detail,
                } => {
                    return Ok(Finished {
                        status,
                        error,
                        detail,
                        started_after,
                    })
                }
            }
        }
    }

    /// A handle that ends this lease's connection from elsewhere (another
    /// thread, a `Drop`), even while [`Lease::wait`] blocks on it: the
    /// zygote's runner sees its client gone and kills the program, and the
    /// waiting `wait` returns. Dropping the lease alone cannot do that
    /// while a blocked thread owns it.
    pub fn hang_up_handle(&self) -> Result<HangUp> {
        Ok(HangUp(
            self.conn
                .try_clone()
                .context("duplicate the zygote connection")?,
        ))
    }

    /// `start_with` (no limits) then `wait`, with stdio that stays ours
    /// (e.g. 0, 1, 2).
    pub fn run_in(
        &self,
        argv: &[String],
        env: &[String],
        cwd: Option<&Path>,
        timeout: Option<Duration>,
        stdio: [RawFd; 3],
    ) -> Result<Finished> {
        let t0 = self.start_with(argv, env, cwd, timeout, None, stdio)?;
        self.wait(t0)
    }
}

/// Ends a lease's connection when dropped (see [`Lease::hang_up_handle`]).
/// `shutdown` acts on the socket, not on this descriptor, so it reaches
/// the lease's own copy too.
pub struct HangUp(OwnedFd);

impl Drop for HangUp {
    fn drop(&mut self) {
        let _ = nix::sys::socket::shutdown(self.0.as_raw_fd(), nix::sys::socket::Shutdown::Both);
    }
}

/// Puts files into a zygote's workspace (host path) before the request.
pub type CopyIn<'a> = dyn Fn(&Path) -> Result<()> + 'a;

/// `phantom run --profile` through the daemon, with our own stdio.
/// `Ok(None)`: no warm zygote (the reason is logged at debug level); the
/// caller runs the cold path.
pub fn run_warm(
    socket: &Path,
    profile: &str,
    command: &[String],
    env: &[String],
    timeout: Option<Duration>,
    resources: Option<&LinuxResources>,
    copy_in: Option<&CopyIn<'_>>,
) -> Result<Option<i32>> {
    let own = copy_in.is_some() || resources.is_some();
    let lease = match acquire(socket, profile, command, own, resources) {
        Ok(l) => l,
        Err(AcquireError::Unavailable(why)) => {
            tracing::debug!("no warm zygote ({why}); cold path");
            return Ok(None);
        }
        Err(AcquireError::Refused(r)) => return Err(r.into()),
    };
    if let Some(copy) = copy_in {
        // Dropping the lease without a request makes the runner remove it.
        let ws = lease
            .workspace
            .as_deref()
            .ok_or_else(|| anyhow!("the daemon did not say where the zygote's workspace is"))?;
        copy(ws)?;
    }
    tracing::debug!(
        "warm path: {} zygote {}",
        lease.kind,
        lease.socket.display()
    );
    let t0 = lease.start_with(command, env, None, timeout, resources, [0, 1, 2])?;
    let f = lease.wait(t0)?;
    if let Some(e) = &f.error {
        match &f.detail {
            Some(d) => eprintln!("phantom: {e}: {d}"),
            None => eprintln!("phantom: {e}"),
        }
    }
    Ok(Some(f.status))
}

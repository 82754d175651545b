//! Warm pools, below the daemon and the MCP server: the zygote protocol
//! (unix sockets with SCM_RIGHTS), the zygote runner that owns one warm
//! sandbox, the Python fork server, the client side of a warm run, and the
//! sandbox backend the daemon's REST API and the MCP server share.
//!
//! Protocol (the messages are typed once, in [`proto`]):
//! - client -> daemon (`SOCK_STREAM`, one JSON line each way):
//!   `{"v":1,"op":"acquire","profile":P,"python":BOOL,"resources":R?}`
//!   (python: the fork server can serve the command) ->
//!   `{"zygote":PATH,"workspace":DIR?,"kind":"zygote"|"python"}` or
//!   `{"error":TEXT,"refused":true?}`; `{"op":"acquire_exec","id":ID,"root":DIR}`;
//!   `{"op":"pools"}` -> the pool sizes.
//! - client -> zygote at PATH (`SOCK_SEQPACKET`): `X{"v":1,"args":[..],"env":[..],
//!   "cwd":DIR?,"timeout_ms":N?,"resources":R?}` with fds 0, 1, 2 attached; the
//!   zygote answers `{"started":true}` once the program runs (a fork server: once
//!   forked), then `{"status":N}` (with `"error"` when it could not start, and
//!   `"detail"` for the local caller) once it exited.
//!   Closing the connection early kills the program's whole tree.

pub mod backend;
pub mod client;
pub mod files;
pub mod keys;
pub mod limits;
pub mod proto;
pub mod runner;
pub mod wire;

use std::path::{Path, PathBuf};

pub const DEFAULT_SOCKET: &str = "/run/phantom/daemon.sock";
pub const SOCKET_ENV: &str = "PHANTOM_DAEMON_SOCKET";
/// Ids of zygote sandboxes start with this, so a daemon can find and
/// remove the ones a dead daemon left.
pub const ZYGOTE_PREFIX: &str = "zyg-";
/// The Python fork server, run as `python3 -c SOURCE` in a warm sandbox.
pub const FORKSERVER_PY: &str = include_str!("python/forkserver.py");
/// Comma-separated modules the fork server imports before it is ready.
pub const PY_MODULES_ENV: &str = "PHANTOM_PY_MODULES";

/// Set by `phantom` for the `phantom-server` it runs (`phantom daemon`,
/// `phantom mcp`): the runtime binary to start sandboxes and zygotes with.
pub const RUNTIME_BIN_ENV: &str = "_PHANTOM_RUNTIME_BIN";

/// The `phantom` binary that the daemon and the MCP server run for
/// sandboxes and zygotes: the one that started this server, else the
/// `phantom` beside this binary, else this binary itself (a test harness
/// that links the server into one executable).
pub fn runtime_binary() -> std::io::Result<PathBuf> {
    if let Some(p) = std::env::var_os(RUNTIME_BIN_ENV).map(PathBuf::from) {
        if p.is_absolute() {
            return Ok(p);
        }
    }
    let me = std::env::current_exe()?;
    let beside = me.with_file_name("phantom");
    Ok(if beside.is_file() { beside } else { me })
}

/// `--daemon-socket`, else $PHANTOM_DAEMON_SOCKET, else the default.
pub fn socket_path(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| std::env::var_os(SOCKET_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

/// Whether argv runs the Python interpreter the fork server stands in for.
pub fn is_python(argv0: &str) -> bool {
    matches!(
        argv0,
        "python" | "python3" | "/usr/bin/python3" | "/usr/bin/python"
    )
}

/// Whether the fork server can serve argv: python3 with `-c CODE`, `-m
/// MOD`, a script, or the program on stdin, and no other interpreter flag
/// (those need a real interpreter start: a plain zygote).
pub fn python_serves(argv: &[String]) -> bool {
    let Some((argv0, rest)) = argv.split_first() else {
        return false;
    };
    if !is_python(argv0) {
        return false;
    }
    match rest.first().map(String::as_str) {
        None | Some("-") | Some("--") => true,
        Some(a) if a.starts_with("-c") || a.starts_with("-m") => true,
        Some(a) => !a.starts_with('-'),
    }
}

/// `n` random bytes as hex.
pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    // SAFETY: the buffer is valid for writes of its length; getrandom only
    // writes into it.
    let got = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if usize::try_from(got).ok() != Some(n) {
        // Never expected after boot; fall back to something unique enough.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let seed = t ^ u128::from(std::process::id());
        for (i, x) in b.iter_mut().enumerate() {
            *x = (seed >> ((i % 16) * 8)) as u8;
        }
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Sizes: the tree's one reading (phantom_policy::units).
pub use phantom_policy::units::parse_size;

#[cfg(test)]
mod tests {
    #[test]
    fn what_the_fork_server_serves() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(super::python_serves(&v(&["python3", "-c", "pass"])));
        assert!(super::python_serves(&v(&["python3", "-m", "json.tool"])));
        assert!(super::python_serves(&v(&["python3", "x.py"])));
        assert!(super::python_serves(&v(&["python3"])));
        assert!(!super::python_serves(&v(&["python3", "-V"])));
        assert!(!super::python_serves(&v(&["python3", "-u", "-c", "1"])));
        assert!(!super::python_serves(&v(&["sh", "-c", "python3"])));
    }
}

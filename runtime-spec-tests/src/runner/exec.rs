//! Running commands with a deadline, output captured in files.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Runs `cmd` to completion (killing it after `timeout`) with stdin from
/// /dev/null and stdout/stderr captured.
///
/// Files, not pipes: a container started by `create` inherits the
/// runtime's stdio, and a pipe would stay open until the container exits.
pub fn output(mut cmd: Command, timeout: Duration) -> Result<Output, String> {
    let out = tempfile::tempfile().map_err(|e| format!("temp file: {e}"))?;
    let err = tempfile::tempfile().map_err(|e| format!("temp file: {e}"))?;
    cmd.stdin(Stdio::null());
    cmd.stdout(out.try_clone().map_err(|e| e.to_string())?);
    cmd.stderr(err.try_clone().map_err(|e| e.to_string())?);
    let status = wait(cmd, timeout)?;
    Ok(Output {
        status,
        stdout: read_all(out),
        stderr: read_all(err),
    })
}

/// Spawns `cmd` (stdio already set up by the caller) and waits for it.
pub fn wait(mut cmd: Command, timeout: Duration) -> Result<std::process::ExitStatus, String> {
    let what = format!("{:?}", cmd);
    let mut child = cmd.spawn().map_err(|e| format!("spawn {what}: {e}"))?;
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Ok(s),
            Ok(None) if Instant::now() < deadline => {
                thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(10));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{what} timed out after {timeout:?}"));
            }
            Err(e) => return Err(format!("wait for {what}: {e}")),
        }
    }
}

pub fn read_all(mut f: File) -> Vec<u8> {
    let mut buf = Vec::new();
    let _ = f.seek(SeekFrom::Start(0));
    let _ = f.read_to_end(&mut buf);
    buf
}

/// A short description of a failed command for a check's reason.
pub fn describe(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr);
    let out = String::from_utf8_lossy(&o.stdout);
    let text = if err.trim().is_empty() { out } else { err };
    // The last non-empty lines carry the error; runtimes log a lot before.
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(2)..].join(" | ");
    format!(
        "exit {}: {}",
        o.status.code().map_or("signal".into(), |c| c.to_string()),
        tail
    )
}

/// Polls `f` until true or `timeout`.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Whether `pid` exists and is not a zombie.
pub fn pid_alive(pid: i64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// Host pids whose root directory lies under `dir`.
pub fn processes_under(dir: &std::path::Path) -> Vec<i64> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: i64 = e.file_name().to_str()?.parse().ok()?;
            let root = std::fs::read_link(e.path().join("root")).ok()?;
            (root.starts_with(dir) && pid_alive(pid)).then_some(pid)
        })
        .collect()
}

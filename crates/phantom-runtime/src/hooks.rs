//! OCI hooks (config.md "POSIX-platform Hooks"): each is run with the
//! container's state on stdin, only its own `env`, and an optional
//! `timeout`. prestart, createRuntime, createContainer and startContainer
//! failing is an error that stops the container; poststart and poststop
//! failing is a warning, and the remaining hooks still run.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use crate::error::{Error, Result};

/// Run hooks in order; stop at the first failure. `kind` names them in
/// errors (`hooks.createRuntime`).
pub fn run_all(hooks: &[Hook], kind: &str, state: &[u8]) -> Result<()> {
    for (i, h) in hooks.iter().enumerate() {
        run_one(h, &format!("hooks.{kind}[{i}]"), state, runtime_hook(kind))?;
    }
    Ok(())
}

/// Run every hook; a failure is logged and the rest still run.
pub fn run_all_warn(hooks: &[Hook], kind: &str, state: &[u8]) {
    for (i, h) in hooks.iter().enumerate() {
        if let Err(e) = run_one(h, &format!("hooks.{kind}[{i}]"), state, runtime_hook(kind)) {
            tracing::warn!("{e}");
        }
    }
}

/// Hooks that run in the runtime's namespaces (the others run in the
/// container's, started by its init).
fn runtime_hook(kind: &str) -> bool {
    !matches!(kind, "createContainer" | "startContainer")
}

fn run_one(h: &Hook, field: &str, state: &[u8], in_runtime_ns: bool) -> Result<()> {
    let path = h.path();
    let args = h.args().clone().unwrap_or_default();
    let mut cmd = Command::new(path);
    if let Some(arg0) = args.first() {
        cmd.arg0(arg0);
    }
    cmd.args(args.iter().skip(1))
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some(ns) = crate::exe_guard::host_mount_ns().filter(|_| in_runtime_ns) {
        // phantom itself runs in a private mount namespace (the binary
        // guard); the hook belongs in the one phantom was started in.
        // SAFETY: between fork and exec only setns, async-signal-safe, runs.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(ns, libc::CLONE_NEWNS) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    for kv in h.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::Init(format!("{field}: run {}: {e}", path.display())))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin may exit first: not an error.
        let _ = stdin.write_all(state);
    }
    let deadline = h
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) => {}
            Err(e) => {
                return Err(Error::Init(format!(
                    "{field}: wait for {}: {e}",
                    path.display()
                )))
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Init(format!(
                "{field}: {} timed out after {}s",
                path.display(),
                h.timeout().unwrap_or(0)
            )));
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    if !status.success() {
        return Err(Error::Init(format!(
            "{field}: {} failed: {status}",
            path.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::HookBuilder;

    fn sh(script: &str, timeout: Option<i64>) -> Hook {
        let mut b = HookBuilder::default()
            .path("/bin/sh")
            .args(vec!["sh".to_string(), "-c".to_string(), script.to_string()])
            .env(vec!["GREETING=hi".to_string()]);
        if let Some(t) = timeout {
            b = b.timeout(t);
        }
        b.build().unwrap()
    }

    #[test]
    fn state_on_stdin_env_and_order() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let script = format!(
            "read s; echo \"$GREETING $s ${{HOME:-nohome}}\" >> {}",
            out.display()
        );
        let hooks = vec![
            sh(&script, None),
            sh(&format!("echo second >> {}", out.display()), None),
        ];
        run_all(&hooks, "createRuntime", b"{\"id\":\"x\"}\n").unwrap();
        let got = std::fs::read_to_string(&out).unwrap();
        assert_eq!(got, "hi {\"id\":\"x\"} nohome\nsecond\n");
    }

    #[test]
    fn failure_and_timeout_are_errors_naming_the_hook() {
        let e = run_all(&[sh("exit 3", None)], "prestart", b"{}")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("hooks.prestart[0]") && e.contains("exit status: 3"),
            "{e}"
        );
        let t = Instant::now();
        let e = run_all(&[sh("sleep 5", Some(1))], "createContainer", b"{}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("timed out after 1s"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(4));
    }

    #[test]
    fn warn_variant_runs_every_hook() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        run_all_warn(
            &[
                sh("exit 1", None),
                sh(&format!("echo ran > {}", out.display()), None),
            ],
            "poststop",
            b"{}",
        );
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "ran\n");
    }
}

//! Sandboxes from profiles (`phantom run --profile`, `create --profile`,
//! `exec`, `monitor`, `destroy`), with the host's python3 and tools.
//! phantom-specific: skipped for other runtimes.

use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use phantom_tests::{describe, require_root, runtime_binary, stderr, stdout, Runtime};

struct Sbx {
    rt: Runtime,
    dir: tempfile::TempDir,
}

impl Sbx {
    fn new() -> Option<Sbx> {
        if !runtime_binary().ends_with("phantom") {
            eprintln!("skipped: sandboxes are phantom's");
            return None;
        }
        Some(Sbx {
            rt: Runtime::new(),
            dir: tempfile::tempdir().unwrap(),
        })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = self.rt.command(args);
        c.env("PHANTOM_SANDBOX_DIR", self.dir.path().join("sandboxes"));
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .spawn()
            .unwrap()
            .wait_with_output()
            .unwrap()
    }

    /// Every sandbox left in our root (a test that failed midway): its
    /// container, directories and cgroup go, so a failure leaves nothing.
    fn remove_leftovers(&self) {
        let ids: Vec<String> = fs::read_dir(self.rt.root())
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        for id in ids {
            let _ = self.run(&["destroy", &id]);
            let _ = self.run(&["delete", "--force", &id]);
            phantom_tests::remove_cgroup(&format!("/{id}"));
        }
    }

    /// Nothing of the sandboxes is left on the host.
    fn assert_clean(&self) {
        let left: Vec<_> = fs::read_dir(self.dir.path().join("sandboxes"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "left behind: {left:?}");
        let st: Vec<_> = fs::read_dir(self.rt.root())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(st.is_empty(), "state left behind: {st:?}");
    }
}

impl Drop for Sbx {
    fn drop(&mut self) {
        self.remove_leftovers();
    }
}

fn python() -> bool {
    Path::new("/usr/bin/python3").exists()
}

#[test]
fn output_exit_status_and_workspace_pass_through() {
    require_root!();
    let Some(s) = Sbx::new() else { return };
    let ws = tempfile::tempdir().unwrap();
    let w = ws.path().display().to_string();
    let out = s.run(&[
        "run",
        "--profile",
        "python-dev",
        "--workspace",
        &w,
        "--",
        "sh",
        "-c",
        "pwd; echo hello > /workspace/out.txt; echo to-stderr >&2; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", describe(&out));
    assert_eq!(stdout(&out), "/workspace\n");
    assert!(stderr(&out).contains("to-stderr"));
    assert_eq!(
        fs::read_to_string(ws.path().join("out.txt")).unwrap(),
        "hello\n"
    );
    s.assert_clean();
    // The caller's workspace is never removed.
    assert!(ws.path().join("out.txt").exists());
}

#[test]
fn python_runs_and_cannot_touch_the_host() {
    require_root!();
    let Some(s) = Sbx::new() else { return };
    if !python() {
        eprintln!("skipped: no /usr/bin/python3");
        return;
    }
    let out = s.run(&[
        "run",
        "--profile",
        "python-dev",
        "--",
        "python3",
        "-c",
        r#"
import os
print("pid", os.getpid())
print("procs", len([p for p in os.listdir("/proc") if p.isdigit()]))
for path in ["/usr/phantom-test", "/etc/phantom-test"]:
    try:
        open(path, "w"); print("WROTE", path)
    except OSError as e:
        print("denied", path)
"#,
    ]);
    let text = stdout(&out);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(text.contains("pid 1\n"), "{text}");
    // Its own pid namespace: only its own process(es), not the host's.
    let procs: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("procs "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(procs <= 3, "{text}");
    assert!(!text.contains("WROTE"), "{text}");
    assert!(!Path::new("/usr/phantom-test").exists() && !Path::new("/etc/phantom-test").exists());
    s.assert_clean();
}

#[test]
fn network_none_and_loopback() {
    require_root!();
    let Some(s) = Sbx::new() else { return };
    if !python() {
        eprintln!("skipped: no /usr/bin/python3");
        return;
    }
    // A listener on the host's loopback: a sandbox must not reach it.
    let host = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = host.local_addr().unwrap().port();
    let connect = format!(
        "import socket\ns=socket.socket(); s.settimeout(2)\ntry:\n    s.connect(('127.0.0.1', {port})); print('CONNECTED')\nexcept OSError as e:\n    print('refused', e.errno)\n"
    );
    for net in ["none", "loopback"] {
        let out = s.run(&[
            "run",
            "--profile",
            "python-dev",
            "--network",
            net,
            "--",
            "python3",
            "-c",
            &connect,
        ]);
        assert!(
            stdout(&out).contains("refused"),
            "network {net}: {}",
            describe(&out)
        );
    }
    // With loopback, the sandbox's own 127.0.0.1 works.
    let own = "import socket\nl=socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(1)\nc=socket.socket(); c.connect(l.getsockname()); print('own-loopback-ok')\n";
    let out = s.run(&[
        "run",
        "--profile",
        "python-dev",
        "--network",
        "loopback",
        "--",
        "python3",
        "-c",
        own,
    ]);
    assert!(
        stdout(&out).contains("own-loopback-ok"),
        "{}",
        describe(&out)
    );
    let out = s.run(&[
        "run",
        "--profile",
        "python-dev",
        "--network",
        "none",
        "--",
        "python3",
        "-c",
        own,
    ]);
    assert!(
        !stdout(&out).contains("own-loopback-ok"),
        "network none has a working lo: {}",
        describe(&out)
    );
    s.assert_clean();
}

#[test]
fn limits_and_timeout() {
    require_root!();
    let Some(s) = Sbx::new() else { return };
    // A memory hog is OOM-killed: 128+9.
    let out = s.run(&[
        "run",
        "--profile",
        "python-dev",
        "--memory",
        "32MiB",
        "--",
        "sh",
        "-c",
        "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done",
    ]);
    assert_eq!(out.status.code(), Some(137), "{}", describe(&out));
    // ... and says so, rather than a bare 137.
    assert!(
        stderr(&out).contains("phantom: out of memory (limit 32 MiB)"),
        "{}",
        describe(&out)
    );
    // A SIGKILL that is not the OOM killer's is not called one.
    // (pid 1 of its namespace ignores SIGKILL from inside: a child gets it)
    let out = s.run(&[
        "run",
        "--profile",
        "python-dev",
        "--",
        "sh",
        "-c",
        "sh -c 'kill -9 $$'",
    ]);
    assert_eq!(out.status.code(), Some(137), "{}", describe(&out));
    assert!(
        !stderr(&out).contains("out of memory"),
        "{}",
        describe(&out)
    );
    // A fork bomb stops at the pids limit; the sandbox still exits.
    if python() {
        let bomb = "import os, time\nn = 0\nfor i in range(50):\n    try:\n        if os.fork() == 0:\n            time.sleep(3); os._exit(0)\n        n += 1\n    except OSError:\n        break\nprint('forked', n)\n";
        let out = s.run(&[
            "run",
            "--profile",
            "python-dev",
            "--pids",
            "8",
            "--timeout",
            "20s",
            "--",
            "python3",
            "-c",
            bomb,
        ]);
        let text = stdout(&out);
        let n: u32 = text
            .trim()
            .strip_prefix("forked ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{}", describe(&out)));
        assert!(n < 8, "pids limit 8 let {n} children fork");
    }
    // --timeout kills the whole tree and exits 124, like timeout(1).
    let t = std::time::Instant::now();
    let out = s.run(&[
        "run",
        "--profile",
        "python-dev",
        "--timeout",
        "1s",
        "--",
        "sh",
        "-c",
        "sleep 100 & sleep 100",
    ]);
    assert_eq!(out.status.code(), Some(124), "{}", describe(&out));
    assert!(t.elapsed() < Duration::from_secs(20));
    s.assert_clean();
}

#[test]
fn bad_input_is_named_and_leaves_nothing() {
    require_root!();
    let Some(s) = Sbx::new() else { return };
    let out = s.run(&["run", "--profile", "no-such-profile", "--", "true"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no-such-profile") && err.contains("python-dev"),
        "{err}"
    );
    let out = s.run(&[
        "run",
        "--profile",
        "python-dev",
        "--workspace",
        "/nonexistent/ws",
        "--",
        "true",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("/nonexistent/ws"));
    let out = s.run(&[
        "run",
        "--profile",
        "python-dev",
        "--memory",
        "lots",
        "--",
        "true",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("lots"));
    let out = s.run(&[
        "run",
        "--profile",
        "python-dev",
        "--",
        "no-such-command-xyz",
    ]);
    assert_eq!(out.status.code(), Some(127), "{}", describe(&out));
    assert!(stderr(&out).contains("no-such-command-xyz"));
    s.assert_clean();
}

#[test]
fn persistent_sandbox_keeps_files_and_is_monitored() {
    require_root!();
    let Some(s) = Sbx::new() else { return };
    let id = s.rt.id("box");
    let out = s.run(&["create", "--profile", "python-dev", "--name", &id]);
    assert!(out.status.success(), "{}", describe(&out));
    let out = s.run(&["exec", &id, "--", "sh", "-c", "echo kept > /workspace/f"]);
    assert!(out.status.success(), "{}", describe(&out));
    let out = s.run(&["exec", &id, "--", "cat", "/workspace/f"]);
    assert_eq!(stdout(&out), "kept\n", "{}", describe(&out));
    // An OCI container like any other.
    assert_eq!(s.rt.status(&id), "running");
    let list = s.run(&["list"]);
    assert!(
        stdout(&list)
            .lines()
            .any(|l| l.starts_with(&id) && l.ends_with("python-dev")),
        "{}",
        describe(&list)
    );
    let mut mon = s
        .command(&["monitor", "--count", "2", "--interval", "0.2", &id])
        .spawn()
        .unwrap();
    let mut text = String::new();
    mon.stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert!(mon.wait().unwrap().success());
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert!(first["memory_bytes"].as_u64().unwrap() > 0, "{text}");
    assert!(first["pids"].as_u64().unwrap() >= 1, "{text}");
    assert_eq!(first["memory_limit_bytes"].as_u64().unwrap(), 1 << 30);
    let out = s.run(&["destroy", &id]);
    assert!(out.status.success(), "{}", describe(&out));
    s.assert_clean();
}

/// A sandbox plants a symlink to a host directory in its workspace; a later
/// sandbox whose --workspace goes through it must not get that directory:
/// the path is opened without following symlinks in any component.
#[test]
fn workspace_through_a_planted_symlink_is_refused() {
    require_root!();
    let Some(s) = Sbx::new() else { return };
    let proj = tempfile::tempdir().unwrap();
    let host = tempfile::tempdir().unwrap();
    fs::create_dir(host.path().join("sub")).unwrap();
    let p = proj.path().display().to_string();
    let plant = format!("ln -s {} /workspace/out", host.path().display());
    let out = s.run(&[
        "run",
        "--profile",
        "python-dev",
        "--workspace",
        &p,
        "--",
        "sh",
        "-c",
        &plant,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(proj.path().join("out").is_symlink());
    for through in ["out", "out/sub"] {
        let w = proj.path().join(through).display().to_string();
        let out = s.run(&[
            "run",
            "--profile",
            "python-dev",
            "--workspace",
            &w,
            "--",
            "touch",
            "/workspace/x",
        ]);
        assert!(
            !out.status.success(),
            "--workspace {through} was accepted\n{}",
            describe(&out)
        );
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "{} is a symbolic link",
                proj.path().join("out").display()
            )),
            "the symlink is not named\n{}",
            describe(&out)
        );
        assert!(!host.path().join("x").exists() && !host.path().join("sub/x").exists());
    }
    s.assert_clean();
}

/// What a sandbox left behind without `destroy` (a create killed midway,
/// or `phantom delete` of a sandbox) never reaches a later sandbox of the
/// same id, and `destroy` of such an id removes it.
#[test]
fn a_leftover_sandbox_directory_is_never_reused() {
    require_root!();
    let Some(s) = Sbx::new() else { return };
    let id = s.rt.id("ks");
    let ok = |out: &Output, what: &str| assert!(out.status.success(), "{what}\n{}", describe(out));
    // A workspace on disk (python-dev's own is a tmpfs that goes with its
    // sandbox): what a leftover could hand to the next sandbox.
    let pp = unlimited_python_dev(&s);
    let create = ["create", "--profile-path", &pp, "--profile", "on-disk", &id];
    ok(&s.run(&create), "create");
    ok(
        &s.run(&[
            "exec",
            &id,
            "--",
            "sh",
            "-c",
            "echo secret > /workspace/left",
        ]),
        "exec",
    );
    // The container goes, the sandbox directory stays (not `destroy`).
    ok(&s.run(&["delete", "--force", &id]), "delete --force");
    assert!(s
        .dir
        .path()
        .join("sandboxes")
        .join(&id)
        .join("workspace/left")
        .exists());
    ok(&s.run(&create), "create again");
    let out = s.run(&["exec", &id, "--", "ls", "-A", "/workspace"]);
    ok(&out, "ls /workspace");
    assert_eq!(stdout(&out), "", "the new sandbox sees the old workspace");
    ok(&s.run(&["delete", "--force", &id]), "delete --force");
    // destroy of an id that has only a leftover directory removes it.
    ok(&s.run(&["destroy", &id]), "destroy of a leftover");
    s.assert_clean();
}

/// A profile states the most a caller may have; a request may only narrow
/// it (issue 14 item 1). python-dev's network is loopback, its limits 1 GiB,
/// 2 CPUs, 512 pids: asking for more is refused with exit 2 and the rule
/// named, before anything is made.
#[test]
fn a_request_cannot_loosen_its_profile() {
    require_root!();
    let Some(s) = Sbx::new() else { return };
    // A listener on the host's loopback: `--network host` would reach it.
    let host = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = host.local_addr().unwrap().port();
    let connect = format!(
        "import socket\ns=socket.socket(); s.settimeout(2)\ntry:\n    s.connect(('127.0.0.1', {port})); print('CONNECTED')\nexcept OSError as e:\n    print('refused', e.errno)\n"
    );
    let out = s.run(&[
        "run",
        "--profile",
        "python-dev",
        "--network",
        "host",
        "--",
        "python3",
        "-c",
        &connect,
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(!stdout(&out).contains("CONNECTED"), "{}", describe(&out));
    let err = stderr(&out);
    assert!(
        err.contains("--network host")
            && err.contains("python-dev")
            && err.contains("a request may only narrow its profile"),
        "{err}"
    );
    for (flag, value, named) in [
        (
            "--mode",
            "direct",
            "--mode direct: less isolated than the profile python-dev's mode sandbox",
        ),
        (
            "--memory",
            "4GiB",
            "--memory 4 GiB: above the profile python-dev's limit of 1 GiB",
        ),
        ("--memory", "1TiB", "--memory 1 TiB"),
        (
            "--pids",
            "100000",
            "--pids 100000: above the profile python-dev's limit of 512",
        ),
        (
            "--cpus",
            "64",
            "--cpus 64: above the profile python-dev's limit of 2",
        ),
    ] {
        for verb in [
            vec!["run", "--profile", "python-dev", flag, value, "--", "true"],
            vec!["create", "--profile", "python-dev", flag, value, "loosen-1"],
        ] {
            let out = s.run(&verb);
            assert_eq!(out.status.code(), Some(2), "{verb:?}: {}", describe(&out));
            let err = stderr(&out);
            assert!(
                err.contains(named) && err.contains("a request may only narrow its profile"),
                "{verb:?}: {err}"
            );
        }
    }
    // Narrower than the profile still works, and is applied: 32 MiB stops
    // a hog that python-dev's own 1 GiB would let through.
    let out = s.run(&[
        "run",
        "--profile",
        "python-dev",
        "--network",
        "none",
        "--memory",
        "256MiB",
        "--pids",
        "64",
        "--cpus",
        "1",
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let out = s.run(&[
        "run",
        "--profile",
        "python-dev",
        "--memory",
        "32MiB",
        "--",
        "python3",
        "-c",
        "x = bytearray(200 << 20); print('ALLOCATED')",
    ]);
    assert!(!stdout(&out).contains("ALLOCATED"), "{}", describe(&out));
    s.assert_clean();
}

/// Bytes in the regular files under `dir` as the test (on the host, in its
/// own mount namespace) sees them.
fn bytes_under(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => bytes_under(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

/// python-dev without its workspace limit, as the user profile `on-disk`:
/// its workspace is a plain directory on the host's disk. Returns the
/// --profile-path dir.
fn unlimited_python_dev(s: &Sbx) -> String {
    let text = include_str!("../../profiles/python-dev.yaml")
        .replacen("profile: python-dev", "profile: on-disk", 1)
        .replacen(", workspace: 1GiB }", " }", 1);
    assert!(
        !text.contains("workspace: 1GiB"),
        "python-dev.yaml changed shape"
    );
    let dir = s.dir.path().join("profiles-on-disk");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("on-disk.yaml"), text).unwrap();
    dir.display().to_string()
}

/// python-dev as a user profile named `name` whose workspace holds at most
/// `workspace` (resources.workspace); returns the --profile-path dir.
fn profile_with_workspace(s: &Sbx, name: &str, workspace: &str) -> String {
    let text = include_str!("../../profiles/python-dev.yaml")
        .replacen("profile: python-dev", &format!("profile: {name}"), 1)
        .replacen(
            "workspace: 1GiB }",
            &format!("workspace: {workspace} }}"),
            1,
        );
    assert!(
        text.contains(&format!("workspace: {workspace} }}")),
        "python-dev.yaml changed shape"
    );
    let dir = s.dir.path().join("profiles");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(format!("{name}.yaml")), text).unwrap();
    dir.display().to_string()
}

/// Issue 14 item 7: a sandbox filled the host's disk through /workspace.
/// With --workspace-size the fresh workspace is a tmpfs of that size: a
/// write past it fails with ENOSPC inside, and nothing lands on the host.
#[test]
fn workspace_size_stops_a_write_past_it() {
    require_root!();
    let Some(s) = Sbx::new() else { return };
    let id = s.rt.id("wsq");
    let out = s.run(&[
        "run",
        "--profile",
        "python-dev",
        "--workspace-size",
        "8MiB",
        "--keep",
        &id,
        "--",
        "sh",
        "-c",
        "dd if=/dev/zero of=/workspace/big bs=1M count=64; echo dd=$?; \
         echo size=$(stat -c %s /workspace/big)",
    ]);
    let text = stdout(&out);
    assert!(
        stderr(&out).contains("No space left on device"),
        "{}",
        describe(&out)
    );
    assert!(text.contains("dd=1"), "{}", describe(&out));
    let size: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("size="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(size <= 8 << 20, "wrote {size} bytes");
    // The kept sandbox's directory on the host holds no more than the limit.
    let held = bytes_under(&s.dir.path().join("sandboxes"));
    assert!(held <= 8 << 20, "the host holds {held} bytes");
    let out = s.run(&["destroy", &id]);
    assert!(out.status.success(), "{}", describe(&out));
    s.assert_clean();

    // Under the limit: written and read back; nothing left after the run.
    let out = s.run(&[
        "run",
        "--profile",
        "python-dev",
        "--workspace-size",
        "8MiB",
        "--",
        "sh",
        "-c",
        "dd if=/dev/zero of=/workspace/f bs=1M count=4 2>/dev/null && stat -c %s /workspace/f",
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(stdout(&out), format!("{}\n", 4 << 20));
    s.assert_clean();
}

/// A profile's resources.workspace applies without the flag (also to a
/// persistent sandbox, across exec calls), and the flag may only narrow it.
#[test]
fn profile_workspace_limit_applies_and_only_narrows() {
    require_root!();
    let Some(s) = Sbx::new() else { return };
    let path = profile_with_workspace(&s, "ws-quota", "8MiB");
    let out = s.run(&[
        "run",
        "--profile-path",
        &path,
        "--profile",
        "ws-quota",
        "--",
        "sh",
        "-c",
        "dd if=/dev/zero of=/workspace/big bs=1M count=64",
    ]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        stderr(&out).contains("No space left on device"),
        "{}",
        describe(&out)
    );
    s.assert_clean();

    // Above the profile's: refused (exit 2), naming the rule; nothing made.
    let out = s.run(&[
        "run",
        "--profile-path",
        &path,
        "--profile",
        "ws-quota",
        "--workspace-size",
        "1GiB",
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = stderr(&out);
    assert!(
        err.contains("--workspace-size 1 GiB") && err.contains("resources.workspace (8 MiB)"),
        "{err}"
    );
    s.assert_clean();

    // Narrower: the flag's limit holds, in a persistent sandbox's exec too.
    let id = s.rt.id("wsq-box");
    let out = s.run(&[
        "create",
        "--profile-path",
        &path,
        "--profile",
        "ws-quota",
        "--workspace-size",
        "2MiB",
        &id,
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    let out = s.run(&[
        "exec",
        &id,
        "--",
        "sh",
        "-c",
        "echo kept > /workspace/f; dd if=/dev/zero of=/workspace/big bs=1M count=4",
    ]);
    assert!(
        stderr(&out).contains("No space left on device"),
        "{}",
        describe(&out)
    );
    let out = s.run(&["exec", &id, "--", "cat", "/workspace/f"]);
    assert_eq!(stdout(&out), "kept\n", "{}", describe(&out));
    let out = s.run(&["destroy", &id]);
    assert!(out.status.success(), "{}", describe(&out));
    s.assert_clean();
}

/// A caller's own directory cannot be limited by a mount option: the two
/// flags together are refused (exit 2) rather than silently unlimited.
#[test]
fn workspace_size_with_a_caller_workspace_is_refused() {
    require_root!();
    let Some(s) = Sbx::new() else { return };
    let ws = tempfile::tempdir().unwrap();
    let out = s.run(&[
        "run",
        "--profile",
        "python-dev",
        "--workspace",
        &ws.path().display().to_string(),
        "--workspace-size",
        "8MiB",
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    // The conflict is named (not merely an unknown flag).
    assert!(
        stderr(&out).contains("cannot be used with") && stderr(&out).contains("'--workspace-size"),
        "{}",
        describe(&out)
    );
    s.assert_clean();
}

/// The daemon's CPU ceiling reaches the CLI it runs as the hidden
/// `--raise-cpus` (issue 14 item 1): up to it is served, beyond it is
/// exit 2 naming the daemon's raised limit; without it the profile's 2.
#[test]
fn a_raised_cpu_ceiling_goes_that_far_and_no_further() {
    require_root!();
    let Some(s) = Sbx::new() else { return };
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "--profile", "python-dev", "--no-daemon"];
        args.extend_from_slice(extra);
        args.extend(["--", "true"]);
        s.run(&args)
    };
    let out = run(&["--cpus", "3"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        stderr(&out).contains("--cpus 3: above the profile python-dev's limit of 2 CPUs"),
        "{}",
        describe(&out)
    );
    let out = run(&["--cpus", "3", "--raise-cpus", "3"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let out = run(&["--cpus", "4", "--raise-cpus", "3"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        stderr(&out).contains(
            "--cpus 4: above the daemon's raised limit for the profile python-dev of 3 CPUs"
        ),
        "{}",
        describe(&out)
    );
    s.assert_clean();
}

/// Issue 16: one size parser. A profile's `memory: 100MB` and the flag
/// `--memory 100MB` are the same 100,000,000 bytes, so asking for the
/// profile's own limit is not a loosening (it was, when the CLI read MB as
/// MiB), while one byte more is; and `--memory 64m` is 64 MiB as Podman
/// reads it.
#[test]
fn a_size_means_the_same_in_a_profile_and_a_flag() {
    require_root!();
    let Some(s) = Sbx::new() else { return };
    let text = include_str!("../../profiles/python-dev.yaml")
        .replacen("profile: python-dev", "profile: mb-units", 1)
        .replacen("memory: 1GiB,", "memory: 100MB,", 1);
    assert!(
        text.contains("memory: 100MB,"),
        "python-dev.yaml changed shape"
    );
    let dir = s.dir.path().join("profiles");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("mb-units.yaml"), text).unwrap();
    let pp = dir.display().to_string();
    let run = |memory: &str, argv: &[&str]| {
        let mut args = vec![
            "run",
            "--profile-path",
            &pp,
            "--profile",
            "mb-units",
            "--no-daemon",
            "--memory",
            memory,
            "--",
        ];
        args.extend(argv);
        s.run(&args)
    };
    let same = run("100MB", &["true"]);
    assert_eq!(same.status.code(), Some(0), "{}", describe(&same));
    let more = run("100000001", &["true"]);
    assert_eq!(more.status.code(), Some(2), "{}", describe(&more));
    assert!(stderr(&more).contains("memory"), "{}", describe(&more));
    let hog = [
        "sh",
        "-c",
        "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done",
    ];
    let podman_style = run("64m", &hog);
    assert!(
        stderr(&podman_style).contains("out of memory (limit 64 MiB)"),
        "{}",
        describe(&podman_style)
    );
    s.assert_clean();
}

//! The warm path: `phantom daemon` keeps zygote pools and `phantom run
//! --profile` uses them. phantom-specific: skipped for other runtimes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use phantom_tests::{describe, require_root, runtime_binary, stderr, stdout, wait_until, Runtime};

struct Daemon {
    rt: Runtime,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Daemon {
    fn socket(&self) -> PathBuf {
        self.dir.path().join("daemon.sock")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = self.rt.command(args);
        c.env("PHANTOM_SANDBOX_DIR", self.dir.path().join("sandboxes"))
            .env("PHANTOM_DAEMON_SOCKET", self.socket())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // A test's own profiles, for the daemon and its clients alike.
        let profiles = self.dir.path().join("profiles");
        if profiles.is_dir() {
            c.env("PHANTOM_PROFILE_PATH", profiles);
        }
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .spawn()
            .unwrap()
            .wait_with_output()
            .unwrap()
    }

    fn start(pools: &[&str]) -> Option<Daemon> {
        let mut args = Vec::new();
        for p in pools {
            args.extend(["--pool", p]);
        }
        Self::start_with(&args, "python-dev")
    }

    /// A daemon with these flags, once pool `key` (of `--status`) has one
    /// zygote ready.
    fn start_with(flags: &[&str], key: &str) -> Option<Daemon> {
        Self::start_in(tempfile::tempdir().unwrap(), flags, key)
    }

    /// As [`Daemon::start_with`], in `dir` (its `profiles/`, if any, is
    /// the profile path).
    fn start_in(dir: tempfile::TempDir, flags: &[&str], key: &str) -> Option<Daemon> {
        if !runtime_binary().ends_with("phantom") {
            eprintln!("skipped: the daemon is phantom's");
            return None;
        }
        let mut d = Daemon {
            rt: Runtime::new(),
            dir,
            child: None,
        };
        let mut args = vec!["daemon"];
        args.extend(flags);
        let mut c = d.command(&args);
        c.stdout(Stdio::null()).stderr(Stdio::null());
        d.child = Some(c.spawn().unwrap());
        assert!(
            wait_until(Duration::from_secs(20), || d.pool(key, "ready") >= 1),
            "the pool never filled"
        );
        Some(d)
    }

    /// A field of pool `key` in `daemon --status`.
    fn pool(&self, key: &str, field: &str) -> u64 {
        let out = self.run(&["daemon", "--status"]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|v| v[key][field].as_u64())
            .unwrap_or(0)
    }

    /// Ready zygotes of python-dev.
    fn ready(&self) -> u64 {
        self.pool("python-dev", "ready")
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = c.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `--debug run --profile python-dev -- CMD...`: a run that says on stderr
/// which path it took.
fn debug_run<'a>(cmd: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--debug", "run", "--profile", "python-dev", "--"];
    v.extend_from_slice(cmd);
    v
}

fn entries(p: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(p)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[test]
fn warm_and_cold_give_the_same_results_and_sigterm_cleans_up() {
    require_root!();
    let Some(mut d) = Daemon::start(&["python-dev=2"]) else {
        return;
    };
    let script = "echo out; echo err >&2; pwd; exit 3";
    let warm = d.run(&debug_run(&["sh", "-c", script]));
    let cold = d.run(&[
        "run",
        "--no-daemon",
        "--profile",
        "python-dev",
        "--",
        "sh",
        "-c",
        script,
    ]);
    assert!(stderr(&warm).contains("warm path"), "{}", describe(&warm));
    assert_eq!(warm.status.code(), Some(3), "{}", describe(&warm));
    assert_eq!(warm.status.code(), cold.status.code());
    assert_eq!(stdout(&warm), stdout(&cold));
    assert_eq!(stdout(&warm), "out\n/workspace\n");
    // stdin passes through too.
    let mut c = d.command(&["run", "--profile", "python-dev", "--", "cat"]);
    c.stdin(Stdio::piped());
    let mut child = c.spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"piped\n").unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out), "piped\n", "{}", describe(&out));
    // --copy-in fills the sandbox's fresh workspace, warm or cold.
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("f.txt"), "copied\n").unwrap();
    let dir = files.path().display().to_string();
    for mode in ["--debug", "--no-daemon"] {
        let mut args = vec![
            "run",
            "--profile",
            "python-dev",
            "--copy-in",
            &dir,
            "--",
            "cat",
            "/workspace/f.txt",
        ];
        if mode == "--no-daemon" {
            args.insert(1, mode);
        }
        let out = d.run(&args);
        assert_eq!(stdout(&out), "copied\n", "{mode}: {}", describe(&out));
    }
    // A missing command and a timeout behave as on the cold path. A
    // program that cannot be executed (a directory: execve's EACCES) is
    // 126, a missing one 127, warm and cold alike: the status comes from
    // init's errno.
    for (prog, want) in [
        ("no-such-cmd-xyz", 127),
        ("/usr", 126),
        ("/no/such/file", 127),
    ] {
        for mode in ["", "--no-daemon"] {
            let mut args = vec!["run", "--profile", "python-dev", "--", prog];
            if !mode.is_empty() {
                args.insert(1, mode);
            }
            let out = d.run(&args);
            assert_eq!(
                out.status.code(),
                Some(want),
                "{prog} {mode}: {}",
                describe(&out)
            );
            assert!(
                stderr(&out).contains(prog),
                "{prog} {mode}: {}",
                describe(&out)
            );
        }
    }
    let out = d.run(&[
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
    // The pool refills.
    assert!(
        wait_until(Duration::from_secs(20), || d.ready() == 2),
        "pool did not refill"
    );
    // SIGTERM drains: no zygote, sandbox or socket is left.
    d.stop();
    assert!(
        wait_until(Duration::from_secs(10), || entries(d.rt.root()).is_empty()),
        "{:?}",
        entries(d.rt.root())
    );
    assert!(entries(&d.dir.path().join("sandboxes")).is_empty());
    assert!(!d.socket().exists());
}

#[test]
fn a_dead_zygote_is_replaced_and_no_daemon_means_cold() {
    require_root!();
    let Some(mut d) = Daemon::start(&["python-dev=1"]) else {
        return;
    };
    // Kill every zygote runner: the daemon notices and starts new ones.
    let runners = Command::new("pgrep")
        .args(["-f", &format!("{} zygote-serve", d.rt.root().display())])
        .output()
        .unwrap();
    let killed: Vec<String> = String::from_utf8_lossy(&runners.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    for pid in &killed {
        let _ = Command::new("kill").args(["-9", pid]).status();
    }
    // Ready again with a runner that is not one of those killed: until the
    // daemon has seen them die, its report may still count a dead one.
    let replaced = || {
        let now = Command::new("pgrep")
            .args(["-f", &format!("{} zygote-serve", d.rt.root().display())])
            .output()
            .unwrap();
        let now = String::from_utf8_lossy(&now.stdout).to_string();
        let pids: Vec<&str> = now.split_whitespace().collect();
        !pids.is_empty() && pids.iter().all(|p| !killed.iter().any(|k| k == p)) && d.ready() == 1
    };
    assert!(
        wait_until(Duration::from_secs(20), replaced),
        "no replacement zygote"
    );
    let out = d.run(&["run", "--profile", "python-dev", "--", "echo", "after"]);
    assert_eq!(stdout(&out), "after\n", "{}", describe(&out));
    d.stop();
    // Without a daemon, run falls back to the cold path and says so with --debug.
    let out = d.run(&debug_run(&["echo", "cold"]));
    assert_eq!(stdout(&out), "cold\n", "{}", describe(&out));
    assert!(stderr(&out).contains("cold path"), "{}", describe(&out));
    assert!(
        wait_until(Duration::from_secs(10), || entries(d.rt.root()).is_empty()),
        "{:?}",
        entries(d.rt.root())
    );
}

#[test]
fn python_fork_server_keeps_requests_apart() {
    require_root!();
    let Some(d) = Daemon::start_with(
        &["--python-pool", "python-dev=1", "--python-modules", "json"],
        "python-dev:python",
    ) else {
        return;
    };
    // Each request sees a pristine interpreter: what one sets is not there
    // for the next, and the random generator is seeded anew.
    let code = "import builtins, json, random, os, sys\n\
print(getattr(builtins, 'LEAK', None), getattr(json, 'LEAK', None), 'json' in sys.modules)\n\
builtins.LEAK = 1; json.LEAK = 2\n\
open('mine.txt', 'w').write('secret')\n\
print(random.random())\n\
print(os.getcwd())";
    let mut seen = Vec::new();
    for _ in 0..3 {
        let out = d.run(&debug_run(&["python3", "-c", code]));
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        assert!(
            stderr(&out).contains("warm path: python"),
            "{}",
            describe(&out)
        );
        let text = stdout(&out);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "None None True", "{}", describe(&out));
        seen.push(lines[1].to_string());
    }
    assert!(
        seen[0] != seen[1] && seen[1] != seen[2],
        "the random seed repeats: {seen:?}"
    );
    // A request longer than one channel piece (200 KB of argv, below
    // ARG_MAX) is served warm by the fork server, as --no-daemon serves it
    // (it failed with "Connection reset by peer": issue 16).
    let big = "a".repeat(100_000);
    let code = "import sys; print(len(sys.argv[1]) + len(sys.argv[2]))";
    let out = d.run(&debug_run(&["python3", "-c", code, &big, &big]));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        describe(&out).chars().take(2000).collect::<String>()
    );
    assert_eq!(stdout(&out), "200000\n");
    assert!(stderr(&out).contains("warm path: python"), "went cold");
    // A running request's private directory is out of reach of another
    // (Landlock: a permission error, not a missing file).
    let mut holder = d.command(&[
        "run",
        "--profile",
        "python-dev",
        "--",
        "python3",
        "-c",
        "import os, time\nopen('mine.txt', 'w').write('secret')\nprint(os.getcwd(), flush=True)\ntime.sleep(30)",
    ]);
    let mut holder = holder.spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let dir = line.trim().to_string();
    assert!(dir.starts_with("/tmp/"), "{dir:?}");
    let probe = format!(
        "try:\n    open('{dir}/mine.txt').read(); print('read')\nexcept OSError as e:\n    print('denied', type(e).__name__)"
    );
    let out = d.run(&[
        "run",
        "--profile",
        "python-dev",
        "--",
        "python3",
        "-c",
        &probe,
    ]);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(
        stdout(&out),
        "denied PermissionError\n",
        "a request reached another's file: {}",
        describe(&out)
    );
    // Exit codes and stderr as with a fresh interpreter.
    let out = d.run(&[
        "run",
        "--profile",
        "python-dev",
        "--",
        "python3",
        "-c",
        "raise SystemExit(7)",
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", describe(&out));
    let out = d.run(&[
        "run",
        "--profile",
        "python-dev",
        "--",
        "python3",
        "-c",
        "1/0",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(stderr(&out).contains("ZeroDivisionError"));
    // Other programs are not the fork server's: without a plain pool they
    // take the cold path.
    let out = d.run(&debug_run(&["echo", "plain"]));
    assert_eq!(stdout(&out), "plain\n", "{}", describe(&out));
    assert!(stderr(&out).contains("cold path"));
}

#[test]
fn pools_grow_with_demand_and_shrink_back() {
    require_root!();
    let Some(d) = Daemon::start(&["python-dev=1..6"]) else {
        return;
    };
    assert_eq!(d.pool("python-dev", "target"), 1);
    // Steady requests from two clients raise the target above the minimum
    // (requests per second × time to make a zygote × 2)...
    let stop = std::sync::atomic::AtomicBool::new(false);
    let grew = std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let out = d.run(&["run", "--profile", "python-dev", "--", "true"]);
                    assert!(out.status.success(), "{}", describe(&out));
                }
            });
        }
        let grew = wait_until(Duration::from_secs(30), || {
            d.pool("python-dev", "target") > 1
        });
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        grew
    });
    assert!(grew, "the pool did not grow under load");
    // ...and idleness brings it back.
    assert!(
        wait_until(Duration::from_secs(20), || d.pool("python-dev", "target")
            == 1),
        "the pool did not shrink back"
    );
}

#[test]
fn exec_in_a_sandbox_goes_warm_after_the_first() {
    require_root!();
    let Some(d) = Daemon::start(&["python-dev=1"]) else {
        return;
    };
    let out = d.run(&["create", "--profile", "python-dev", "wx"]);
    assert!(out.status.success(), "{}", describe(&out));
    let script =
        "echo $FOO; pwd; grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; exit 5";
    let exec = |extra: &[&str]| {
        let mut args = vec!["--debug", "exec"];
        args.extend(extra);
        args.extend([
            "--env", "FOO=bar", "--cwd", "/tmp", "wx", "--", "sh", "-c", script,
        ]);
        d.run(&args)
    };
    // The first exec is cold and has the daemon start a warm one.
    let cold = exec(&[]);
    assert!(stderr(&cold).contains("cold path"), "{}", describe(&cold));
    assert!(
        wait_until(Duration::from_secs(20), || d.pool("_daemon", "warm_execs")
            == 1),
        "no warm exec was started"
    );
    let warm = exec(&[]);
    assert!(
        stderr(&warm).contains("warm path: exec"),
        "{}",
        describe(&warm)
    );
    // Same output, status and confinement either way.
    assert_eq!(warm.status.code(), Some(5), "{}", describe(&warm));
    assert_eq!(cold.status.code(), Some(5), "{}", describe(&cold));
    assert_eq!(stdout(&warm), stdout(&cold));
    assert!(
        stdout(&warm).starts_with("bar\n/tmp\nCapEff:\t0000000000000000\n"),
        "{}",
        describe(&warm)
    );
    let pid1 = |o: &Output| stdout(o);
    let mut both = Vec::new();
    for extra in [&["--no-daemon"][..], &[]] {
        assert!(wait_until(Duration::from_secs(20), || d
            .pool("_daemon", "warm_execs")
            == 1));
        let mut args = vec!["exec"];
        args.extend(extra);
        args.extend(["wx", "--", "cat", "/proc/1/cmdline"]);
        both.push(pid1(&d.run(&args)));
    }
    // Both run in the sandbox's pid namespace.
    assert_eq!(both[0], both[1]);
    // stdin passes through.
    let mut c = d.command(&["exec", "wx", "--", "cat"]);
    c.stdin(Stdio::piped());
    let mut child = c.spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"in\n").unwrap();
    drop(child.stdin.take());
    assert_eq!(stdout(&child.wait_with_output().unwrap()), "in\n");
    // A paused sandbox is not exec'd into, warm or cold.
    assert!(wait_until(Duration::from_secs(20), || d
        .pool("_daemon", "warm_execs")
        == 1));
    assert!(d.run(&["pause", "wx"]).status.success());
    let out = d.run(&["exec", "wx", "--", "true"]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(stderr(&out).contains("paused"), "{}", describe(&out));
    assert!(d.run(&["resume", "wx"]).status.success());
    let out = d.run(&["destroy", "wx"]);
    assert!(out.status.success(), "{}", describe(&out));
    // The sandbox's warm exec goes with it.
    assert!(
        wait_until(Duration::from_secs(10), || d.pool("_daemon", "warm_execs")
            == 0),
        "a warm exec outlived its sandbox"
    );
}

#[test]
fn a_daemon_killed_mid_request_ends_it_cleanly_and_a_restart_sweeps() {
    require_root!();
    let Some(mut d) = Daemon::start(&["python-dev=2"]) else {
        return;
    };
    // A warm request is under way...
    let mut c = d.command(&debug_run(&["sleep", "60"]));
    c.stdout(Stdio::null());
    let mut running = c.spawn().unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || std::fs::read_dir(d.rt.root())
            .map(|r| r.count())
            .unwrap_or(0)
            >= 2
            && d.ready() >= 1),
        "no warm request started"
    );
    std::thread::sleep(Duration::from_millis(300));
    // ...when the daemon dies hard: its runners die with it (PDEATHSIG),
    // killing the program, so the client ends instead of hanging.
    let daemon = d.child.take().unwrap();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    let mut daemon = daemon;
    let _ = daemon.wait();
    let ended = wait_until(Duration::from_secs(10), || {
        matches!(running.try_wait(), Ok(Some(_)))
    });
    if !ended {
        let _ = running.kill();
    }
    let out = running.wait_with_output().unwrap();
    assert!(ended, "the client hung after the daemon died");
    assert_eq!(out.status.code(), Some(137), "{}", describe(&out));
    // ...and says why, rather than a bare 137.
    assert!(
        stderr(&out).contains("phantom: the daemon serving this run went away"),
        "{}",
        describe(&out)
    );
    // Nothing of the dead daemon's zygotes is left.
    assert!(
        wait_until(Duration::from_secs(10), || entries(d.rt.root()).is_empty()),
        "{:?}",
        entries(d.rt.root())
    );
    // A new daemon on the same socket serves again.
    let mut c = d.command(&["daemon", "--pool", "python-dev=1"]);
    c.stdout(Stdio::null()).stderr(Stdio::null());
    d.child = Some(c.spawn().unwrap());
    assert!(wait_until(Duration::from_secs(20), || d.ready() >= 1));
    let out = d.run(&debug_run(&["echo", "again"]));
    assert_eq!(stdout(&out), "again\n", "{}", describe(&out));
    assert!(stderr(&out).contains("warm path"));
}

#[test]
fn limits_of_a_request_apply_to_its_warm_zygote() {
    require_root!();
    let Some(d) = Daemon::start(&["python-dev=1"]) else {
        return;
    };
    let hog = "b = b'x' * (300 * 1024 * 1024); print('alive')";
    for mode in ["--debug", "--no-daemon"] {
        let mut args = vec!["--debug", "run"];
        if mode == "--no-daemon" {
            args.push(mode);
        }
        args.extend([
            "--profile",
            "python-dev",
            "--memory",
            "64m",
            "--pids",
            "8",
            "--",
            "python3",
            "-c",
            hog,
        ]);
        assert!(wait_until(Duration::from_secs(20), || d.ready() >= 1));
        let out = d.run(&args);
        let warm = stderr(&out).contains("warm path");
        assert_eq!(warm, mode == "--debug", "{}", describe(&out));
        // The kernel's OOM killer ends it in both paths.
        assert_eq!(out.status.code(), Some(137), "{mode}: {}", describe(&out));
        assert_eq!(stdout(&out), "", "{mode}: {}", describe(&out));
        // ... and both say so, rather than a bare 137.
        assert!(
            stderr(&out).contains("phantom: out of memory (limit 64 MiB)"),
            "{mode}: {}",
            describe(&out)
        );
    }
    // Without limits the same program runs (the next zygote has the
    // profile's own limits again).
    assert!(wait_until(Duration::from_secs(20), || d.ready() >= 1));
    let out = d.run(&["run", "--profile", "python-dev", "--", "python3", "-c", hog]);
    assert_eq!(stdout(&out), "alive\n", "{}", describe(&out));
}

/// Issue 14 item 7, warm: a pooled zygote of a profile with
/// resources.workspace has a size-limited workspace too, and the client's
/// --copy-in lands in it (not in the directory underneath, on disk).
#[test]
fn a_warm_workspace_keeps_its_size_limit_and_copy_in() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let profiles = dir.path().join("profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    let text = include_str!("../../profiles/python-dev.yaml")
        .replacen("profile: python-dev", "profile: ws-warm", 1)
        .replacen("workspace: 1GiB }", "workspace: 8MiB }", 1);
    assert!(
        text.contains("workspace: 8MiB"),
        "python-dev.yaml changed shape"
    );
    std::fs::write(profiles.join("ws-warm.yaml"), text).unwrap();
    let Some(d) = Daemon::start_in(dir, &["--pool", "ws-warm=1"], "ws-warm") else {
        return;
    };
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("f.txt"), "copied\n").unwrap();
    let out = d.run(&[
        "--debug",
        "run",
        "--profile",
        "ws-warm",
        "--copy-in",
        &files.path().display().to_string(),
        "--",
        "sh",
        "-c",
        "cat /workspace/f.txt; dd if=/dev/zero of=/workspace/big bs=1M count=64",
    ]);
    assert!(stderr(&out).contains("warm path"), "{}", describe(&out));
    assert!(stdout(&out).starts_with("copied\n"), "{}", describe(&out));
    assert!(
        stderr(&out).contains("No space left on device"),
        "{}",
        describe(&out)
    );
}

/// Issue 16: a pool that keeps up. With one zygote and back-to-back runs,
/// each run finds the pool empty while the refill for it is being made;
/// it waits for that zygote (bounded by the pool's make time) instead of
/// going cold and competing with it. Every other run went cold before.
#[test]
fn back_to_back_runs_wait_for_the_zygote_being_made() {
    require_root!();
    let Some(d) = Daemon::start(&["python-dev=1"]) else {
        return;
    };
    let runs = 12;
    let mut warm = 0;
    for _ in 0..runs {
        let out = d.run(&debug_run(&["true"]));
        assert!(out.status.success(), "{}", describe(&out));
        if stderr(&out).contains("warm path: zygote") {
            warm += 1;
        }
    }
    // A refill slower than its usual time (a busy machine) may still send
    // one to the cold path; half of them went cold without the wait.
    assert!(
        warm >= runs - 2,
        "only {warm} of {runs} back-to-back runs were served warm"
    );
    // The daemon counts the same: what its pool served, and what went cold.
    let (served, missed) = (
        d.pool("python-dev", "served"),
        d.pool("python-dev", "missed"),
    );
    assert_eq!(
        (served, missed),
        (warm as u64, (runs - warm) as u64),
        "daemon --status: served {served}, missed {missed}; the clients saw {warm} warm of {runs}"
    );
}

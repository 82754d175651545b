//! The warm path: `phantom daemon` keeps zygote pools and `phantom run
//! --profile` uses them. phantom-specific: skipped for other runtimes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use phantom_tests::{describe, require_root, runtime_binary, stdout, wait_until, Runtime};

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
        if !runtime_binary().ends_with("phantom") {
            eprintln!("skipped: the daemon is phantom's");
            return None;
        }
        let mut d = Daemon {
            rt: Runtime::new(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        let mut args = vec!["daemon"];
        for p in pools {
            args.extend(["--pool", p]);
        }
        let mut c = d.command(&args);
        c.stdout(Stdio::null()).stderr(Stdio::null());
        d.child = Some(c.spawn().unwrap());
        assert!(
            wait_until(Duration::from_secs(20), || d.ready() >= 1),
            "the pool never filled"
        );
        Some(d)
    }

    /// Ready zygotes of python-dev.
    fn ready(&self) -> u64 {
        let out = self.run(&["daemon", "--status"]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|v| v["python-dev"]["ready"].as_u64())
            .unwrap_or(0)
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
    let warm = d.run(&[
        "--debug",
        "run",
        "--profile",
        "python-dev",
        "--",
        "sh",
        "-c",
        script,
    ]);
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
    assert!(
        String::from_utf8_lossy(&warm.stderr).contains("warm path"),
        "{}",
        describe(&warm)
    );
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
    // A missing command and a timeout behave as on the cold path.
    let out = d.run(&["run", "--profile", "python-dev", "--", "no-such-cmd-xyz"]);
    assert_eq!(out.status.code(), Some(127), "{}", describe(&out));
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
    for pid in String::from_utf8_lossy(&runners.stdout).split_whitespace() {
        let _ = Command::new("kill").args(["-9", pid]).status();
    }
    assert!(
        wait_until(Duration::from_secs(20), || d.ready() == 1),
        "no replacement zygote"
    );
    let out = d.run(&["run", "--profile", "python-dev", "--", "echo", "after"]);
    assert_eq!(stdout(&out), "after\n", "{}", describe(&out));
    d.stop();
    // Without a daemon, run falls back to the cold path and says so with --debug.
    let out = d.run(&[
        "--debug",
        "run",
        "--profile",
        "python-dev",
        "--",
        "echo",
        "cold",
    ]);
    assert_eq!(stdout(&out), "cold\n", "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cold path"),
        "{}",
        describe(&out)
    );
    assert!(
        wait_until(Duration::from_secs(10), || entries(d.rt.root()).is_empty()),
        "{:?}",
        entries(d.rt.root())
    );
}

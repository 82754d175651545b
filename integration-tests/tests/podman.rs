//! Podman 4.3 (with conmon) driving the runtime under test: the commands
//! people type, with their results checked from inside the container or on
//! the host, the same assertions for every runtime.

use std::fs;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use phantom_integration_tests::podman::Podman;
use phantom_integration_tests::{
    cgroup_read, check_mkdir_denied, counter, ensure, go, memory_limit, run, wait_for, Test,
    TestResult, COUNTER, DENY_MKDIR_PROFILE, EAT_MEMORY_ON_GO, IMAGE, TRY_MKDIR,
};

fn main() -> ExitCode {
    let tests: Vec<Test<Podman>> = vec![
        ("podman_run_echo", run_echo),
        ("podman_exit_code", exit_code),
        ("podman_missing_command_127", missing_command),
        ("podman_stdin_interactive", stdin_interactive),
        ("podman_tty", tty),
        ("podman_env_workdir_hostname", env_workdir_hostname),
        ("podman_detach_exec", detach_exec),
        ("podman_stop", stop),
        ("podman_kill", kill),
        ("podman_rm", rm),
        ("podman_pause_unpause", pause_unpause),
        ("podman_update_memory", update_memory),
        ("podman_network_none", network_none),
        ("podman_memory_oom_kill", memory_oom_kill),
        ("podman_pids_limit", pids_limit),
        ("podman_read_only", read_only),
        ("podman_user", user),
        ("podman_cap_drop_all", cap_drop_all),
        ("podman_preserve_fds", preserve_fds),
        ("podman_seccomp_profile", seccomp_profile),
        ("podman_ps", ps),
        ("podman_info_runtime", info_runtime),
    ];
    let mut tests = tests;
    let mut skipped = Vec::new();
    match criu_dir() {
        Ok(_) => tests.push(("podman_checkpoint_restore", checkpoint_restore)),
        Err(why) => skipped.push(("podman_checkpoint_restore", why)),
    }
    let skipped: Vec<(&'static str, &str)> =
        skipped.iter().map(|(n, w)| (*n, w.as_str())).collect();
    phantom_integration_tests::run_suite(tests, &skipped)
}

/// The directory of a CRIU whose `criu check` passes (hack/install-criu.sh
/// puts one in /opt/phantom-criu/bin), or why there is none.
fn criu_dir() -> Result<std::path::PathBuf, String> {
    let c = std::path::Path::new("/opt/phantom-criu/bin/criu");
    let c = if c.is_file() {
        c.to_path_buf()
    } else {
        phantom_integration_tests::which("criu").ok_or("no CRIU (run hack/install-criu.sh)")?
    };
    let out = std::process::Command::new(&c)
        .arg("check")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", c.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} check fails; run hack/install-criu.sh",
            c.display()
        ));
    }
    Ok(c.parent().expect("a file has a parent").to_path_buf())
}

/// `podman container checkpoint` / `restore` (and `--export`/`--import`)
/// of a counting container: it goes on from where it was. Podman and the
/// runtime find CRIU on PATH, so the working one goes first.
fn checkpoint_restore(p: &Podman) -> TestResult {
    let dir = criu_dir()?;
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let pc = |args: &[&str]| {
        let mut cmd = p.command();
        cmd.env("PATH", &path).args(args);
        run(&mut cmd, Duration::from_secs(60))
    };
    let c = p.container("ckpt");
    pc(&["run", "-d", "--name", &c.name, IMAGE, "sh", "-c", COUNTER])?.success()?;
    let pid = c.pid()?;
    ensure!(
        wait_for(Duration::from_secs(5), || counter(pid).is_ok_and(|n| n > 2)),
        "the counter does not count"
    );
    pc(&["container", "checkpoint", &c.name])?.success()?;
    let state = c.inspect("{{.State.Status}}")?;
    ensure!(state == "exited", "after checkpoint: {state:?}");
    let before = fs::read_to_string(format!("/proc/{pid}/root/tmp/counter")).is_err();
    ensure!(before, "the checkpointed container still runs");
    pc(&["container", "restore", &c.name])?.success()?;
    let state = c.inspect("{{.State.Status}}")?;
    ensure!(state == "running", "after restore: {state:?}");
    let pid = c.pid()?;
    let n = counter(pid)?;
    ensure!(n > 2, "the restored counter starts again from {n}");
    ensure!(
        wait_for(Duration::from_secs(5), || counter(pid)
            .is_ok_and(|m| m > n + 3)),
        "the restored counter does not count on from {n}"
    );

    // --export to a tarball, remove the container, --import it back.
    let tar = p.path("ckpt.tar.gz");
    let tar = tar.to_str().ok_or("non-UTF-8 temp path")?;
    pc(&["container", "checkpoint", "--export", tar, &c.name])?.success()?;
    pc(&["rm", "-f", &c.name])?.success()?;
    pc(&["container", "restore", "--import", tar])?.success()?;
    let pid = c.pid()?;
    let n = counter(pid)?;
    ensure!(
        wait_for(Duration::from_secs(5), || counter(pid)
            .is_ok_and(|m| m > n + 3)),
        "the imported counter does not count on from {n}"
    );
    pc(&["rm", "-f", &c.name])?.success()?;
    Ok(())
}

/// A command that runs until killed and exits 0 on SIGTERM (a shell as pid
/// 1 ignores SIGTERM unless it traps it).
const TRAP_TERM: &str = "trap 'exit 0' TERM; while :; do sleep 0.1; done";

fn run_echo(p: &Podman) -> TestResult {
    let out = p.run(&["run", "--rm", IMAGE, "echo", "hi"])?.success()?;
    ensure!(out.out() == "hi", "stdout {:?}, want \"hi\"", out.stdout);
    Ok(())
}

fn exit_code(p: &Podman) -> TestResult {
    p.run(&["run", "--rm", IMAGE, "sh", "-c", "exit 3"])?
        .code_is(3)?;
    Ok(())
}

/// Podman maps "executable file not found" / "no such file or directory"
/// in the runtime's error to 127.
fn missing_command(p: &Podman) -> TestResult {
    p.run(&["run", "--rm", IMAGE, "/no/such/command"])?
        .code_is(127)?;
    Ok(())
}

fn stdin_interactive(p: &Podman) -> TestResult {
    let out = p
        .run_input(&["run", "--rm", "-i", IMAGE, "cat"], b"through stdin\n")?
        .success()?;
    ensure!(out.out() == "through stdin", "stdout {:?}", out.stdout);
    Ok(())
}

/// `-t`: conmon passes `--console-socket` and the runtime sends it the pty.
fn tty(p: &Podman) -> TestResult {
    let out = p.run(&["run", "--rm", "-t", IMAGE, "tty"])?.success()?;
    ensure!(out.out() == "/dev/pts/0", "tty printed {:?}", out.stdout);
    Ok(())
}

fn env_workdir_hostname(p: &Podman) -> TestResult {
    let out = p
        .run(&[
            "run",
            "--rm",
            "--env",
            "GREETING=hello",
            "--workdir",
            "/tmp",
            "--hostname",
            "engine-test",
            IMAGE,
            "sh",
            "-c",
            "echo $GREETING $(pwd) $(hostname)",
        ])?
        .success()?;
    ensure!(
        out.out() == "hello /tmp engine-test",
        "stdout {:?}",
        out.stdout
    );
    Ok(())
}

/// `run -d`, then `exec` (conmon: `exec --process F --detach`), `exec -t`
/// (`--tty --console-socket`), exit codes and `--user` of exec'd processes.
fn detach_exec(p: &Podman) -> TestResult {
    let c = p.container("exec");
    p.run(&["run", "-d", "--name", &c.name, IMAGE, "sleep", "1000"])?
        .success()?;
    let out = p.run(&["exec", &c.name, "echo", "hi"])?.success()?;
    ensure!(out.out() == "hi", "exec stdout {:?}", out.stdout);
    p.run(&["exec", &c.name, "sh", "-c", "exit 5"])?
        .code_is(5)?;
    let out = p.run(&["exec", "-t", &c.name, "tty"])?.success()?;
    ensure!(
        out.out().starts_with("/dev/pts/"),
        "exec -t: tty printed {:?}",
        out.stdout
    );
    let out = p
        .run(&["exec", "--user", "1000:1000", &c.name, "id", "-u"])?
        .success()?;
    ensure!(
        out.out() == "1000",
        "exec --user: id -u printed {:?}",
        out.stdout
    );
    // The exec'd processes are in the container's pid namespace.
    let out = p.run(&[
        "exec",
        &c.name,
        "sh",
        "-c",
        "cat /proc/1/cmdline | tr '\\0' ' '",
    ])?;
    let out = out.success()?;
    ensure!(out.out() == "sleep 1000", "pid 1 is {:?}", out.stdout);
    Ok(())
}

/// `stop` sends SIGTERM (`kill ID 15`) and the container exits by itself.
fn stop(p: &Podman) -> TestResult {
    let c = p.container("stop");
    p.run(&["run", "-d", "--name", &c.name, IMAGE, "sh", "-c", TRAP_TERM])?
        .success()?;
    let started = Instant::now();
    p.run(&["stop", "--time", "20", &c.name])?.success()?;
    let took = started.elapsed();
    let state = c.inspect("{{.State.Status}} {{.State.ExitCode}}")?;
    ensure!(
        state == "exited 0",
        "after stop: {state:?}, want \"exited 0\""
    );
    ensure!(
        took < Duration::from_secs(15),
        "stop took {took:?}: SIGTERM did not reach the container, podman fell back to SIGKILL"
    );
    Ok(())
}

/// `kill` sends SIGKILL (`kill ID 9`): exit code 137.
fn kill(p: &Podman) -> TestResult {
    let c = p.container("kill");
    p.run(&["run", "-d", "--name", &c.name, IMAGE, "sleep", "1000"])?
        .success()?;
    p.run(&["kill", &c.name])?.success()?;
    p.run(&["wait", &c.name])?.success()?;
    let state = c.inspect("{{.State.Status}} {{.State.ExitCode}}")?;
    ensure!(
        state == "exited 137",
        "after kill: {state:?}, want \"exited 137\""
    );
    Ok(())
}

/// `rm -f` of a running container: gone from Podman and from the runtime's
/// own state (`RUNTIME list` with its default root, which Podman uses).
fn rm(p: &Podman) -> TestResult {
    let c = p.container("rm");
    p.run(&["run", "-d", "--name", &c.name, IMAGE, "sleep", "1000"])?
        .success()?;
    let id = c.inspect("{{.Id}}")?;
    let pid = c.pid()?;
    p.run(&["rm", "--force", "--time", "0", &c.name])?
        .success()?;
    let all = p
        .run(&["ps", "--all", "--quiet", "--no-trunc"])?
        .success()?;
    ensure!(!all.stdout.contains(&id), "still listed by podman ps -a");
    ensure!(
        wait_for(Duration::from_secs(5), || !std::path::Path::new(&format!(
            "/proc/{pid}"
        ))
        .exists()),
        "container init {pid} still alive after rm -f"
    );
    let list = run(
        std::process::Command::new(&p.runtime.binary).args(["list", "--quiet"]),
        Duration::from_secs(10),
    )?
    .success()?;
    ensure!(
        !list.stdout.contains(&id),
        "{} list still shows {id}",
        p.runtime.name
    );
    Ok(())
}

/// `pause` freezes every process (the counter stops), `unpause` thaws them.
fn pause_unpause(p: &Podman) -> TestResult {
    let c = p.container("pause");
    p.run(&["run", "-d", "--name", &c.name, IMAGE, "sh", "-c", COUNTER])?
        .success()?;
    let pid = c.pid()?;
    ensure!(
        wait_for(Duration::from_secs(5), || counter(pid).is_ok_and(|n| n > 1)),
        "the counter does not count"
    );
    p.run(&["pause", &c.name])?.success()?;
    let state = c.inspect("{{.State.Status}}")?;
    ensure!(state == "paused", "after pause: {state:?}");
    let before = counter(pid)?;
    thread::sleep(Duration::from_millis(700));
    let after = counter(pid)?;
    ensure!(
        before == after,
        "paused, yet the counter went {before} -> {after}"
    );
    p.run(&["unpause", &c.name])?.success()?;
    let state = c.inspect("{{.State.Status}}")?;
    ensure!(state == "running", "after unpause: {state:?}");
    ensure!(
        wait_for(Duration::from_secs(5), || counter(pid)
            .is_ok_and(|n| n > after)),
        "unpaused, yet the counter stays at {after}"
    );
    Ok(())
}

/// `update --memory` (`update --resources=FILE ID`) changes the cgroup.
fn update_memory(p: &Podman) -> TestResult {
    let c = p.container("update");
    p.run(&["run", "-d", "--name", &c.name, IMAGE, "sleep", "1000"])?
        .success()?;
    let pid = c.pid()?;
    p.run(&["update", "--memory", "128m", &c.name])?.success()?;
    let limit = memory_limit(pid)?;
    ensure!(limit == "134217728", "memory limit after update: {limit}");
    Ok(())
}

fn network_none(p: &Podman) -> TestResult {
    let out = p
        .run(&[
            "run",
            "--rm",
            "--network",
            "none",
            IMAGE,
            "sh",
            "-c",
            "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; readlink /proc/self/ns/net",
        ])?
        .success()?;
    let lines: Vec<_> = out.stdout.lines().collect();
    ensure!(
        lines.first() == Some(&"lo") && lines.len() == 2,
        "interfaces and netns: {lines:?}, want only lo"
    );
    let host = fs::read_link("/proc/self/ns/net").map_err(|e| e.to_string())?;
    ensure!(
        lines[1] != host.to_string_lossy(),
        "the container shares the host's network namespace {}",
        lines[1]
    );
    Ok(())
}

/// `--memory 64m`: the cgroup has the limit, and a process that outgrows it
/// is OOM-killed (exit 137). The host has no swap.
fn memory_oom_kill(p: &Podman) -> TestResult {
    let c = p.container("oom");
    p.run(&[
        "run",
        "-d",
        "--name",
        &c.name,
        "--memory",
        "64m",
        IMAGE,
        "sh",
        "-c",
        EAT_MEMORY_ON_GO,
    ])?
    .success()?;
    let pid = c.pid()?;
    let limit = memory_limit(pid)?;
    ensure!(limit == "67108864", "memory limit {limit}, want 64m");
    go(pid)?;
    let out = p.run_timeout(&["wait", &c.name], Duration::from_secs(120))?;
    ensure!(
        out.out() == "137",
        "{}",
        out.describe("expected the container to be OOM-killed (137)")
    );
    Ok(())
}

/// `--pids-limit 10`: pids.max is 10 and the 11th process cannot fork.
fn pids_limit(p: &Podman) -> TestResult {
    let c = p.container("pids");
    p.run(&[
        "run",
        "-d",
        "--name",
        &c.name,
        "--pids-limit",
        "10",
        IMAGE,
        "sleep",
        "1000",
    ])?
    .success()?;
    let pid = c.pid()?;
    let max = cgroup_read(pid, "pids", "pids.max")?;
    ensure!(max == "10", "pids.max = {max}");
    let out = p.run(&[
        "exec",
        &c.name,
        "sh",
        "-c",
        "i=0; while [ $i -lt 20 ]; do sleep 30 & i=$((i+1)); done; echo forked all",
    ])?;
    ensure!(
        out.code() != Some(0) && out.stderr.contains("can't fork"),
        "{}",
        out.describe("20 processes forked under --pids-limit 10")
    );
    Ok(())
}

fn read_only(p: &Podman) -> TestResult {
    let out = p
        .run(&[
            "run",
            "--rm",
            "--read-only",
            IMAGE,
            "sh",
            "-c",
            "touch /etc/x 2>&1; echo rc=$?; touch /tmp/y && echo tmp-writable",
        ])?
        .success()?;
    ensure!(
        out.stdout.contains("Read-only file system") && out.stdout.contains("rc=1"),
        "/ is writable: {:?}",
        out.stdout
    );
    ensure!(
        out.stdout.contains("tmp-writable"),
        "--read-only keeps a writable /tmp: {:?}",
        out.stdout
    );
    Ok(())
}

fn user(p: &Podman) -> TestResult {
    let out = p
        .run(&[
            "run",
            "--rm",
            "--user",
            "1000:1000",
            IMAGE,
            "sh",
            "-c",
            "echo $(id -u):$(id -g)",
        ])?
        .success()?;
    ensure!(out.out() == "1000:1000", "uid:gid {:?}", out.stdout);
    Ok(())
}

fn cap_drop_all(p: &Podman) -> TestResult {
    let out = p
        .run(&[
            "run",
            "--rm",
            "--cap-drop",
            "ALL",
            IMAGE,
            "grep",
            "^Cap",
            "/proc/self/status",
        ])?
        .success()?;
    for set in ["CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        let line = out
            .stdout
            .lines()
            .find(|l| l.starts_with(set))
            .unwrap_or("");
        ensure!(
            line.ends_with("0000000000000000"),
            "{set} not empty: {line:?}"
        );
    }
    Ok(())
}

/// `--preserve-fds 1`: conmon passes `--preserve-fds 1` and fd 3 reaches
/// the container.
fn preserve_fds(p: &Podman) -> TestResult {
    let file = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    fs::write(file.path(), "preserved\n").map_err(|e| e.to_string())?;
    let out = p
        .run_with_fd3(
            &[
                "run",
                "--rm",
                "--preserve-fds",
                "1",
                IMAGE,
                "sh",
                "-c",
                "cat <&3",
            ],
            file.path(),
        )?
        .success()?;
    ensure!(out.out() == "preserved", "fd 3 gave {:?}", out.stdout);
    Ok(())
}

/// A profile that allows everything but mkdir: mkdir fails with EPERM.
fn seccomp_profile(p: &Podman) -> TestResult {
    let profile = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    fs::write(profile.path(), DENY_MKDIR_PROFILE).map_err(|e| e.to_string())?;
    let opt = format!("seccomp={}", profile.path().display());
    let out = p
        .run(&[
            "run",
            "--rm",
            "--security-opt",
            &opt,
            IMAGE,
            "sh",
            "-c",
            TRY_MKDIR,
        ])?
        .success()?;
    check_mkdir_denied(&out.stdout)
}

/// `podman ps` shows a running container as Up, `ps -a` an exited one.
fn ps(p: &Podman) -> TestResult {
    let c = p.container("ps");
    p.run(&["run", "-d", "--name", &c.name, IMAGE, "sleep", "1000"])?
        .success()?;
    let out = p
        .run(&["ps", "--format", "{{.Names}} {{.Status}}"])?
        .success()?;
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with(&c.name))
        .unwrap_or("");
    ensure!(
        line.starts_with(&format!("{} Up", c.name)),
        "podman ps: {:?}",
        out.stdout
    );
    p.run(&["kill", &c.name])?.success()?;
    p.run(&["wait", &c.name])?.success()?;
    let out = p.run(&["ps", "--format", "{{.Names}}"])?.success()?;
    ensure!(
        !out.stdout.contains(&c.name),
        "exited container in podman ps"
    );
    let out = p
        .run(&["ps", "--all", "--format", "{{.Names}} {{.Status}}"])?
        .success()?;
    ensure!(
        out.stdout.contains(&format!("{} Exited (137)", c.name)),
        "podman ps -a: {:?}",
        out.stdout
    );
    Ok(())
}

/// `podman info` asks the runtime for `--version`.
fn info_runtime(p: &Podman) -> TestResult {
    let out = p
        .run(&[
            "info",
            "--format",
            "{{.Host.OCIRuntime.Name}}|{{.Host.OCIRuntime.Path}}|{{.Host.OCIRuntime.Version}}",
        ])?
        .success()?;
    let text = out.out();
    let f: Vec<_> = text.splitn(3, '|').collect();
    ensure!(f.len() == 3, "podman info: {text:?}");
    ensure!(f[0] == p.runtime.name, "runtime name {:?}", f[0]);
    ensure!(
        f[1] == p.runtime.binary.display().to_string(),
        "runtime path {:?}",
        f[1]
    );
    ensure!(
        f[2].contains(&p.runtime.name) && f[2].contains("version"),
        "runtime --version as podman reports it: {:?}",
        f[2]
    );
    Ok(())
}

//! containerd 1.6 driving the runtime under test through `ctr` and the
//! `io.containerd.runc.v2` shim (`--runc-binary`), as Kubernetes' CRI plugin
//! also does: the same assertions for every runtime.

use std::fs;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::thread;
use std::time::Duration;

use phantom_integration_tests::containerd::{Containerd, NAMESPACE};
use phantom_integration_tests::{
    cgroup_dir, check_mkdir_denied, counter, ensure, go, memory_limit, run, wait_for,
    workspace_root, Test, TestResult, CMD_TIMEOUT, COUNTER, DENY_MKDIR_PROFILE, EAT_MEMORY_ON_GO,
    TRY_MKDIR,
};

fn main() -> ExitCode {
    let tests: Vec<Test<Containerd>> = vec![
        ("ctr_run_echo", run_echo),
        ("ctr_exit_code", exit_code),
        ("ctr_run_tty", run_tty),
        ("ctr_task_exec", task_exec),
        ("ctr_task_kill_term", task_kill_term),
        ("ctr_task_kill_all", task_kill_all),
        ("ctr_pause_resume", pause_resume),
        ("ctr_task_ps", task_ps),
        ("ctr_memory_limit_oom_kill", memory_limit_oom_kill),
        ("ctr_read_only", read_only),
        ("ctr_seccomp_profile", seccomp_profile),
        ("ctr_state_in_runc_root", state_in_runc_root),
        ("contrib_containerd_config", contrib_config),
        ("ctr_checkpoint_restore", checkpoint_restore),
    ];
    // The CRI path (RuntimeClass handler, pods) is the cri suite.
    phantom_integration_tests::run_suite(tests, &[])
}

/// Arguments as `&str` for `Containerd::ctr`.
fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn run_echo(c: &Containerd) -> TestResult {
    let t = c.container("echo");
    let out = c
        .ctr(&strs(&c.run_args(&["--rm"], &t.id, &["echo", "hi"])))?
        .success()?;
    ensure!(out.out() == "hi", "stdout {:?}", out.stdout);
    Ok(())
}

fn exit_code(c: &Containerd) -> TestResult {
    let t = c.container("exit");
    c.ctr(&strs(&c.run_args(
        &["--rm"],
        &t.id,
        &["sh", "-c", "exit 3"],
    )))?
    .code_is(3)?;
    Ok(())
}

/// `ctr run -t` (the shim passes `--console-socket`), run in a pty.
fn run_tty(c: &Containerd) -> TestResult {
    let t = c.container("tty");
    let out = c
        .ctr_in_pty(&strs(&c.run_args(&["--rm", "-t"], &t.id, &["tty"])))?
        .success()?;
    ensure!(
        out.stdout.contains("/dev/pts/0"),
        "tty printed {:?}",
        out.stdout
    );
    Ok(())
}

/// `ctr task exec` (`exec --process F --detach --pid-file`): output, exit
/// code, `-t`, `--user`.
fn task_exec(c: &Containerd) -> TestResult {
    let t = c.container("exec");
    c.ctr(&strs(&c.run_args(&["-d"], &t.id, &["sleep", "1000"])))?
        .success()?;
    t.wait_running()?;
    let exec = |exec_id: &str, opts: &[&str], cmd: &[&str]| {
        let mut args = vec!["task", "exec", "--exec-id", exec_id];
        args.extend(opts);
        args.push(&t.id);
        args.extend(cmd);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let out = c.ctr(&strs(&exec("e1", &[], &["echo", "hi"])))?.success()?;
    ensure!(out.out() == "hi", "exec stdout {:?}", out.stdout);
    c.ctr(&strs(&exec("e2", &[], &["sh", "-c", "exit 4"])))?
        .code_is(4)?;
    let out = c
        .ctr_in_pty(&strs(&exec("e3", &["-t"], &["tty"])))?
        .success()?;
    ensure!(
        out.stdout.contains("/dev/pts/"),
        "exec -t: tty printed {:?}",
        out.stdout
    );
    let out = c
        .ctr(&strs(&exec("e4", &["--user", "1000"], &["id", "-u"])))?
        .success()?;
    ensure!(out.out() == "1000", "exec --user 1000: {:?}", out.stdout);
    Ok(())
}

/// `ctr task kill` sends SIGTERM (`kill ID 15`); the trap exits 7, which
/// `ctr run` returns.
fn task_kill_term(c: &Containerd) -> TestResult {
    let t = c.container("term");
    let cmd = [
        "sh",
        "-c",
        "trap 'exit 7' TERM; while :; do sleep 0.1; done",
    ];
    let run = c.ctr_spawn(&strs(&c.run_args(&["--rm"], &t.id, &cmd)))?;
    let (_, run) = t.wait_started(run)?;
    // The trap must be set before the signal arrives.
    thread::sleep(Duration::from_millis(300));
    c.ctr(&["task", "kill", &t.id])?.success()?;
    run.wait(CMD_TIMEOUT).code_is(7)?;
    Ok(())
}

/// `ctr task kill --all -s SIGKILL` (`kill --all ID 9`) ends every process
/// of the container, not just init.
fn task_kill_all(c: &Containerd) -> TestResult {
    let t = c.container("killall");
    let cmd = ["sh", "-c", "sleep 1000 & sleep 1001 & wait"];
    let run = c.ctr_spawn(&strs(&c.run_args(&["--rm"], &t.id, &cmd)))?;
    let (pid, run) = t.wait_started(run)?;
    let mut pids = Vec::new();
    ensure!(
        wait_for(Duration::from_secs(5), || {
            pids = same_pid_namespace(pid);
            pids.len() == 3
        }),
        "processes in the container's pid namespace: {pids:?}, want 3"
    );
    c.ctr(&["task", "kill", "--all", "--signal", "SIGKILL", &t.id])?
        .success()?;
    run.wait(CMD_TIMEOUT).code_is(137)?;
    let alive: Vec<_> = pids
        .iter()
        .filter(|p| Path::new(&format!("/proc/{p}")).exists())
        .collect();
    ensure!(alive.is_empty(), "still alive after kill --all: {alive:?}");
    Ok(())
}

/// The host pids of the processes in `pid`'s pid namespace (found from the
/// host, independent of the runtime's `ps`).
fn same_pid_namespace(pid: u32) -> Vec<u32> {
    let Ok(ns) = fs::read_link(format!("/proc/{pid}/ns/pid")) else {
        return Vec::new();
    };
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|p| fs::read_link(format!("/proc/{p}/ns/pid")).is_ok_and(|n| n == ns))
        .collect();
    pids.sort_unstable();
    pids
}

/// The pids `ctr task ps` lists (`ps --format json`).
fn task_pids(c: &Containerd, id: &str) -> Result<Vec<u32>, String> {
    let out = c.ctr(&["task", "ps", id])?.success()?;
    let mut pids: Vec<u32> = out
        .stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    pids.sort_unstable();
    Ok(pids)
}

/// `ctr task pause` / `resume`: the status and the frozen counter.
fn pause_resume(c: &Containerd) -> TestResult {
    let t = c.container("pause");
    c.ctr(&strs(&c.run_args(&["-d"], &t.id, &["sh", "-c", COUNTER])))?
        .success()?;
    let pid = t.wait_running()?;
    ensure!(
        wait_for(Duration::from_secs(5), || counter(pid).is_ok_and(|n| n > 1)),
        "the counter does not count"
    );
    c.ctr(&["task", "pause", &t.id])?.success()?;
    let status = c.task_status(&t.id).map(|(_, s)| s);
    ensure!(
        status.as_deref() == Some("PAUSED"),
        "after pause: {status:?}"
    );
    let before = counter(pid)?;
    thread::sleep(Duration::from_millis(700));
    let after = counter(pid)?;
    ensure!(
        before == after,
        "paused, yet the counter went {before} -> {after}"
    );
    c.ctr(&["task", "resume", &t.id])?.success()?;
    let status = c.task_status(&t.id).map(|(_, s)| s);
    ensure!(
        status.as_deref() == Some("RUNNING"),
        "after resume: {status:?}"
    );
    ensure!(
        wait_for(Duration::from_secs(5), || counter(pid)
            .is_ok_and(|n| n > after)),
        "resumed, yet the counter stays at {after}"
    );
    Ok(())
}

/// `ctr task ps` (`ps --format json`) lists init and its child.
fn task_ps(c: &Containerd) -> TestResult {
    let t = c.container("ps");
    c.ctr(&strs(&c.run_args(
        &["-d"],
        &t.id,
        &["sh", "-c", "sleep 1000 & wait"],
    )))?
    .success()?;
    let pid = t.wait_running()?;
    ensure!(
        wait_for(Duration::from_secs(5), || same_pid_namespace(pid).len()
            == 2),
        "the container did not start its child"
    );
    let pids = task_pids(c, &t.id)?;
    let want = same_pid_namespace(pid);
    ensure!(pids == want, "ctr task ps: {pids:?}, want {want:?}");
    Ok(())
}

/// `ctr run --memory-limit 64m`: the cgroup has the limit, and a process
/// that outgrows it is OOM-killed (exit 137). The host has no swap.
fn memory_limit_oom_kill(c: &Containerd) -> TestResult {
    let t = c.container("oom");
    let cmd = ["sh", "-c", EAT_MEMORY_ON_GO];
    let run = c.ctr_spawn(&strs(&c.run_args(
        &["--rm", "--memory-limit", "67108864"],
        &t.id,
        &cmd,
    )))?;
    let (pid, run) = t.wait_started(run)?;
    let limit = memory_limit(pid)?;
    ensure!(limit == "67108864", "memory limit {limit}, want 64m");
    go(pid)?;
    run.wait(Duration::from_secs(120)).code_is(137)?;
    Ok(())
}

fn read_only(c: &Containerd) -> TestResult {
    let t = c.container("ro");
    let cmd = ["sh", "-c", "touch /etc/x 2>&1; echo rc=$?"];
    let out = c
        .ctr(&strs(&c.run_args(&["--rm", "--read-only"], &t.id, &cmd)))?
        .success()?;
    ensure!(
        out.stdout.contains("Read-only file system") && out.stdout.contains("rc=1"),
        "/ is writable: {:?}",
        out.stdout
    );
    Ok(())
}

/// `--seccomp --seccomp-profile P`: a profile that denies mkdir with EPERM.
fn seccomp_profile(c: &Containerd) -> TestResult {
    let profile = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    fs::write(profile.path(), DENY_MKDIR_PROFILE).map_err(|e| e.to_string())?;
    let t = c.container("seccomp");
    let path = profile.path().display().to_string();
    let out = c
        .ctr(&strs(&c.run_args(
            &["--rm", "--seccomp", "--seccomp-profile", &path],
            &t.id,
            &["sh", "-c", TRY_MKDIR],
        )))?
        .success()?;
    check_mkdir_denied(&out.stdout)
}

/// The shim passes `--root <runc-root>/<namespace>`: the runtime's own
/// `state` there shows the running container with the task's pid, and the
/// container sits in the cgroup `/<namespace>/<id>` ctr asked for.
fn state_in_runc_root(c: &Containerd) -> TestResult {
    let t = c.container("state");
    c.ctr(&strs(&c.run_args(&["-d"], &t.id, &["sleep", "1000"])))?
        .success()?;
    let pid = t.wait_running()?;
    let out = run(
        Command::new(&c.runtime.binary)
            .arg("--root")
            .arg(c.runc_root().join(NAMESPACE))
            .args(["state", &t.id]),
        CMD_TIMEOUT,
    )?
    .success()?;
    let state: serde_json::Value = serde_json::from_str(&out.stdout)
        .map_err(|e| format!("state is not JSON ({e}): {}", out.stdout))?;
    ensure!(
        state["status"] == "running" && state["pid"] == pid,
        "state: {state}, want running with pid {pid}"
    );
    let cgroup = cgroup_dir(pid, "pids")?;
    ensure!(
        cgroup.ends_with(format!("{NAMESPACE}/{}", t.id)),
        "pids cgroup {}, want .../{NAMESPACE}/{} (cgroupsPath); /proc/{pid}/cgroup: {}",
        cgroup.display(),
        t.id,
        fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .unwrap_or_default()
            .replace('\n', " ")
    );
    Ok(())
}

/// contrib/containerd-config.toml is a config containerd accepts, with the
/// phantom runtime for the CRI plugin.
fn contrib_config(_: &Containerd) -> TestResult {
    let file = workspace_root().join("contrib/containerd-config.toml");
    let out = run(
        Command::new("containerd")
            .arg("--config")
            .arg(&file)
            .args(["config", "dump"]),
        CMD_TIMEOUT,
    )?
    .success()?;
    for want in [
        "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.phantom]",
        "runtime_type = \"io.containerd.runc.v2\"",
        "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.phantom.options]",
        "BinaryName = \"/usr/local/bin/phantom\"",
    ] {
        ensure!(
            out.stdout.contains(want),
            "`containerd config dump` of {} lacks {want}",
            file.display()
        );
    }
    Ok(())
}

/// `ctr containers checkpoint --task` of a counting container into an
/// image, the container removed, then `ctr containers restore --live`:
/// the counter goes on from where it was. The shim runs the runtime with
/// containerd's PATH: phantom finds /opt/phantom-criu/bin/criu itself,
/// runc only on PATH (run the suite with it first there).
fn checkpoint_restore(c: &Containerd) -> TestResult {
    let t = c.container("ckpt");
    c.ctr(&strs(&c.run_args(&["-d"], &t.id, &["sh", "-c", COUNTER])))?
        .success()?;
    let pid = t.wait_running()?;
    ensure!(
        wait_for(Duration::from_secs(5), || counter(pid).is_ok_and(|n| n > 2)),
        "the counter does not count"
    );
    let image = format!("phantom.test/checkpoint/{}:1", t.id);
    c.ctr(&["containers", "checkpoint", "--task", &t.id, &image])?
        .success()?;
    let n = counter(pid).unwrap_or(0);
    c.ctr(&["task", "kill", "--signal", "SIGKILL", &t.id])?;
    ensure!(
        wait_for(Duration::from_secs(5), || c
            .task_status(&t.id)
            .is_none_or(|(_, s)| s == "STOPPED")),
        "the task did not stop"
    );
    c.ctr(&["task", "delete", &t.id])?.success()?;
    c.ctr(&["containers", "delete", &t.id])?.success()?;
    c.ctr(&["containers", "restore", "--live", &t.id, &image])?
        .success()?;
    let pid = t.wait_running()?;
    let m = counter(pid)?;
    ensure!(
        m >= n,
        "the restored counter starts again from {m} (was {n})"
    );
    ensure!(
        wait_for(Duration::from_secs(5), || counter(pid)
            .is_ok_and(|k| k > m + 3)),
        "the restored counter does not count on from {m}"
    );
    let _ = c.ctr(&["images", "rm", &image]);
    Ok(())
}

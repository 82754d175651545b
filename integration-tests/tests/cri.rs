//! The kubelet's path: containerd 1.6's CRI plugin with the runtime under
//! test as a runtime handler (`io.containerd.runc.v2`, `BinaryName`),
//! driven over gRPC with the kubelet's requests. The same assertions for
//! every runtime.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use k8s_cri::v1 as api;
use k8s_cri::v1::ContainerState::ContainerExited;
use phantom_integration_tests::cri::{
    kubelet_resources, mounts_containing, processes_matching, Cri, Pod, NAMESPACE, POD_IP,
};
use phantom_integration_tests::{cgroup_read, ensure, memory_limit, wait_for, Test, TestResult};

fn main() -> ExitCode {
    let tests: Vec<Test<Cri>> = vec![
        ("cri_run_pod_sandbox", run_pod_sandbox),
        ("cri_container_joins_pod", container_joins_pod),
        ("cri_exec_sync", exec_sync),
        ("cri_exec_sync_timeout", exec_sync_timeout),
        ("cri_tty_container", tty_container),
        ("cri_container_logs", container_logs),
        ("cri_update_container_resources", update_container_resources),
        ("cri_container_stats", container_stats),
        ("cri_stop_container_timeout_0", stop_timeout_0),
        ("cri_stop_container_sigterm", stop_sigterm),
        ("cri_stop_container_grace_sigkill", stop_grace_sigkill),
        ("cri_remove_container", remove_container),
        ("cri_pod_lifecycle_leaves_nothing", lifecycle_leaves_nothing),
    ];
    phantom_integration_tests::run_suite(tests, &[])
}

/// A container that sleeps until it is killed (as pid 1 without a handler,
/// it ignores SIGTERM).
const SLEEP: &[&str] = &["sleep", "100000"];

/// `sh -c SCRIPT`.
fn sh(script: &str) -> [&str; 3] {
    ["sh", "-c", script]
}

/// The namespace inode link of process `pid` (`net:[4026...]`).
fn ns(pid: u32, kind: &str) -> Result<String, String> {
    let link = format!("/proc/{pid}/ns/{kind}");
    fs::read_link(&link)
        .map(|p| p.display().to_string())
        .map_err(|e| format!("{link}: {e}"))
}

/// RunPodSandbox: the pod is READY with the pod network's address, and its
/// pause container is the runtime's (running in the handler's root) in the
/// pod's cgroup.
fn run_pod_sandbox(c: &Cri) -> TestResult {
    let pod = c.pod("sandbox")?;
    let (status, _) = pod.status()?;
    ensure!(
        status.state == api::PodSandboxState::SandboxReady as i32,
        "pod state {:?}, want SANDBOX_READY",
        api::PodSandboxState::try_from(status.state)
    );
    let ip = status.network.map(|n| n.ip).unwrap_or_default();
    ensure!(ip == POD_IP, "pod IP {ip:?}, want {POD_IP}");
    let pid = pod.pause_pid()?;
    let state = c.runtime_state(&pod.id)?;
    ensure!(
        state["status"] == "running" && state["pid"] == pid,
        "{} state {}: {state}, want running with pid {pid}",
        c.runtime.name,
        pod.id
    );
    let cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let want = format!("/{}", pod.container_cgroup(&pod.id));
    ensure!(
        cgroup.lines().any(|l| l.ends_with(&want)),
        "pause is not in cgroup {want}: {cgroup}"
    );
    Ok(())
}

/// CreateContainer + StartContainer: the container joins the pod's network,
/// IPC and UTS namespaces (the pause's, by path) and has its own PID
/// namespace; it sees the pod's hostname, /etc/hosts and eth0 address, and
/// sits in the pod's cgroup.
fn container_joins_pod(c: &Cri) -> TestResult {
    let pod = c.pod("join")?;
    let pause = pod.pause_pid()?;
    let (id, pid) = pod.run("app", SLEEP)?;
    for kind in ["net", "ipc", "uts"] {
        let (mine, pods) = (ns(pid, kind)?, ns(pause, kind)?);
        ensure!(mine == pods, "{kind} namespace {mine}, the pod's is {pods}");
    }
    let (mine, pods) = (ns(pid, "pid")?, ns(pause, "pid")?);
    ensure!(
        mine != pods,
        "pid namespace shared with the pause ({mine}), want the container's own"
    );
    let (out, err, code) = c.exec_sync(
        &id,
        &sh("hostname; cat /etc/hosts; ip -4 -o addr show eth0"),
    )?;
    ensure!(code == 0, "exec exited {code}: {out:?} {err:?}");
    let lines: Vec<&str> = out.lines().collect();
    ensure!(
        lines.first() == Some(&pod.name.as_str()),
        "hostname {:?}, want the pod's {:?}",
        lines.first(),
        pod.name
    );
    ensure!(
        out.contains(&format!("{POD_IP}\t{}\n", pod.name)),
        "/etc/hosts is not the kubelet's file: {out:?}"
    );
    ensure!(
        out.contains(&format!("inet {POD_IP}/")),
        "eth0 lacks the pod address: {out:?}"
    );
    let cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let want = format!("/{}", pod.container_cgroup(&id));
    ensure!(
        cgroup.lines().any(|l| l.ends_with(&want)),
        "container is not in cgroup {want}: {cgroup}"
    );
    Ok(())
}

/// ExecSync (the kubelet's exec probes): stdout and stderr apart, exit
/// codes zero and non-zero.
fn exec_sync(c: &Cri) -> TestResult {
    let pod = c.pod("exec")?;
    let (id, _) = pod.run("app", SLEEP)?;
    let (out, err, code) = c.exec_sync(&id, &["echo", "hi"])?;
    ensure!(
        (out.as_str(), err.as_str(), code) == ("hi\n", "", 0),
        "echo hi: stdout {out:?}, stderr {err:?}, exit {code}"
    );
    let (out, err, code) = c.exec_sync(&id, &sh("echo out; echo err >&2; exit 3"))?;
    ensure!(
        (out.as_str(), err.as_str(), code) == ("out\n", "err\n", 3),
        "exit 3: stdout {out:?}, stderr {err:?}, exit {code}"
    );
    // A missing program: containerd reports the runtime's exec error (the
    // kubelet shows it as the probe's failure), or a non-zero exit.
    let req = api::ExecSyncRequest {
        container_id: id.clone(),
        cmd: vec!["/no/such/program".into()],
        timeout: 30,
    };
    match c.try_call(req, |mut c, r| async move { c.exec_sync(r).await }) {
        Ok(r) => ensure!(r.exit_code != 0, "a missing program exited 0: {r:?}"),
        Err(s) => ensure!(
            s.message().contains("not found") || s.message().contains("no such file"),
            "a missing program: {:?}: {}, want an error that says not found",
            s.code(),
            s.message()
        ),
    }
    Ok(())
}

/// ExecSync with a timeout (an exec probe's `timeoutSeconds`): the call
/// fails once it passes, and the exec'd process is gone afterwards.
fn exec_sync_timeout(c: &Cri) -> TestResult {
    let pod = c.pod("exectimeout")?;
    let (id, pid) = pod.run("app", SLEEP)?;
    let req = api::ExecSyncRequest {
        container_id: id.clone(),
        cmd: vec!["sleep".into(), "4242".into()],
        timeout: 1,
    };
    let started = Instant::now();
    let r = c.try_call(req, |mut c, r| async move { c.exec_sync(r).await });
    let took = started.elapsed();
    match r {
        Ok(r) => {
            return Err(format!("ExecSync of `sleep 4242` with timeout 1 returned {r:?}").into())
        }
        Err(s) => ensure!(
            s.message().contains("timeout") && took < Duration::from_secs(20),
            "ExecSync with timeout 1: {:?} {} after {took:?}",
            s.code(),
            s.message()
        ),
    }
    let pidns = ns(pid, "pid")?;
    let left = || {
        processes_matching(|cmd| cmd.trim() == "sleep 4242")
            .into_iter()
            .filter(|p| ns(*p, "pid").is_ok_and(|n| n == pidns))
            .collect::<Vec<_>>()
    };
    ensure!(
        wait_for(Duration::from_secs(10), || left().is_empty()),
        "the timed-out exec is still running: {:?}",
        left()
    );
    Ok(())
}

/// The CRI log lines of a container: `(stream, tag, message)` for each
/// line `TIMESTAMP STREAM TAG MESSAGE`; fails on a line of another form.
fn log_lines(path: &Path) -> Result<Vec<(String, String, String)>, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .map(|line| {
            let mut f = line.splitn(4, ' ');
            let (ts, stream, tag) = (
                f.next().unwrap_or(""),
                f.next().unwrap_or(""),
                f.next().unwrap_or(""),
            );
            let msg = f.next().unwrap_or("");
            let ts_ok = ts.len() >= 20
                && ts.as_bytes()[4] == b'-'
                && ts.as_bytes()[10] == b'T'
                && (ts.ends_with('Z') || ts[19..].contains(['+', '-']));
            if ts_ok && ["stdout", "stderr"].contains(&stream) && ["F", "P"].contains(&tag) {
                Ok((stream.into(), tag.into(), msg.trim_end_matches('\r').into()))
            } else {
                Err(format!("not a CRI log line: {line:?}"))
            }
        })
        .collect()
}

/// The container's log file, from ContainerStatus (the kubelet reads it
/// there): it must be `log_path` under the pod's log directory.
fn log_file(c: &Cri, pod: &Pod, id: &str, name: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(c.container_status(id)?.status.log_path);
    let want = pod.log_dir().join(format!("{name}/0.log"));
    if path == want {
        Ok(path)
    } else {
        Err(format!(
            "log path {}, want {}",
            path.display(),
            want.display()
        ))
    }
}

/// `tty: true`: the container's stdio is a terminal (the shim passes
/// `--console-socket`), and what it prints reaches the log as stdout.
fn tty_container(c: &Cri) -> TestResult {
    let pod = c.pod("tty")?;
    let mut config = pod.container_config("term", &sh("tty; echo done; sleep 100000"));
    config.tty = true;
    let (id, _) = pod.run_config(config)?;
    let log = log_file(c, &pod, &id, "term")?;
    let mut lines = Vec::new();
    wait_for(Duration::from_secs(10), || {
        lines = log_lines(&log).unwrap_or_default();
        lines.iter().any(|(_, _, m)| m == "done")
    });
    ensure!(
        lines
            .iter()
            .any(|(s, _, m)| s == "stdout" && m.starts_with("/dev/pts/")),
        "tty did not print a /dev/pts path to stdout: {lines:?}"
    );
    Ok(())
}

/// Container logs: stdout and stderr, in order, as full CRI lines in the
/// file under the pod's log directory; the exit code 0 once it exits.
fn container_logs(c: &Cri) -> TestResult {
    let pod = c.pod("logs")?;
    let cmd = sh("echo out1; echo err1 >&2; sleep 0.2; echo out2");
    let (id, _) = pod.run("logger", &cmd)?;
    let exited = c.wait_state(&id, ContainerExited, Duration::from_secs(15))?;
    ensure!(
        exited.status.exit_code == 0,
        "exit code {}, want 0",
        exited.status.exit_code
    );
    let log = log_file(c, &pod, &id, "logger")?;
    let lines = log_lines(&log)?;
    // Two pipes: the order holds within a stream, not across them.
    let stream = |name: &str| -> Vec<(&str, &str)> {
        lines
            .iter()
            .filter(|(s, _, _)| s == name)
            .map(|(_, t, m)| (t.as_str(), m.as_str()))
            .collect()
    };
    ensure!(
        stream("stdout") == [("F", "out1"), ("F", "out2")] && stream("stderr") == [("F", "err1")],
        "log lines {lines:?}, want stdout out1, out2 and stderr err1, each a full (F) line"
    );
    Ok(())
}

/// The container's CFS quota (v1 `cpu.cfs_quota_us`, or v2 `cpu.max`).
fn cpu_quota(pid: u32) -> Result<String, String> {
    cgroup_read(pid, "cpu", "cpu.cfs_quota_us").or_else(|_| {
        cgroup_read(pid, "cpu", "cpu.max")
            .map(|m| m.split_whitespace().next().unwrap_or("").to_string())
    })
}

/// UpdateContainerResources as the kubelet sends it (in-place resize):
/// every field of LinuxContainerResources. containerd applies it to the
/// container's spec and hands the runtime the spec's whole
/// `linux.resources`, device rules (deny all, then the allowed ones)
/// included: the new limits show in the cgroup, and the default devices
/// still work.
fn update_container_resources(c: &Cri) -> TestResult {
    let pod = c.pod("update")?;
    let (id, pid) = pod.run("app", SLEEP)?;
    let devices =
        "echo x > /dev/null && head -c 3 /dev/zero | wc -c && head -c 2 /dev/urandom | wc -c";
    let (out, err, code) = c.exec_sync(&id, &sh(devices))?;
    ensure!(
        code == 0 && out.split_whitespace().collect::<Vec<_>>() == ["3", "2"],
        "before the update, /dev/null, /dev/zero, /dev/urandom: exit {code}, {out:?} {err:?}"
    );
    ensure!(
        memory_limit(pid)? == (128u64 << 20).to_string() && cpu_quota(pid)? == "50000",
        "the created limits are not in the cgroup: memory {:?}, cpu quota {:?}",
        memory_limit(pid),
        cpu_quota(pid)
    );
    let list_before = cgroup_read(pid, "devices", "devices.list").unwrap_or_default();

    let resources = kubelet_resources(200, 96 << 20);
    let req = api::UpdateContainerResourcesRequest {
        container_id: id.clone(),
        linux: Some(resources),
        ..Default::default()
    };
    c.call("UpdateContainerResources", req, |mut c, r| async move {
        c.update_container_resources(r).await
    })?;

    let memory = memory_limit(pid)?;
    ensure!(
        memory == (96u64 << 20).to_string(),
        "memory limit after the update {memory}, want {}",
        96u64 << 20
    );
    let quota = cpu_quota(pid)?;
    ensure!(
        quota == "20000",
        "cpu quota after the update {quota}, want 20000"
    );
    if let Ok(shares) = cgroup_read(pid, "cpu", "cpu.shares") {
        ensure!(
            shares == "204",
            "cpu.shares after the update {shares}, want 204"
        );
    }
    let (out, err, code) = c.exec_sync(&id, &sh(devices))?;
    let list_after = cgroup_read(pid, "devices", "devices.list").unwrap_or_default();
    ensure!(
        code == 0 && out.split_whitespace().collect::<Vec<_>>() == ["3", "2"],
        "after the update, /dev/null, /dev/zero, /dev/urandom: exit {code}, stdout {out:?}, \
         stderr {err:?}; devices.list before {list_before:?}, after {list_after:?}"
    );
    Ok(())
}

/// ContainerStats and ListContainerStats (the kubelet's summary API): the
/// container's CPU time and memory.
fn container_stats(c: &Cri) -> TestResult {
    let pod = c.pod("stats")?;
    // Some CPU time and some memory that stays (a shell variable).
    let (id, _) = pod.run(
        "app",
        &sh("i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; x=$(head -c 1000000 /dev/zero | tr '\\0' a); sleep 100000"),
    )?;
    let mut stats = None;
    let mut last = String::new();
    wait_for(Duration::from_secs(15), || {
        let req = api::ContainerStatsRequest {
            container_id: id.clone(),
        };
        match c.call("ContainerStats", req, |mut c, r| async move {
            c.container_stats(r).await
        }) {
            Ok(r) => {
                let s = r.stats.unwrap_or_default();
                let cpu = s
                    .cpu
                    .as_ref()
                    .and_then(|c| c.usage_core_nano_seconds)
                    .map_or(0, |v| v.value);
                let mem = s
                    .memory
                    .as_ref()
                    .and_then(|m| m.working_set_bytes)
                    .map_or(0, |v| v.value);
                last = format!("cpu {cpu} ns, working set {mem} bytes: {s:?}");
                let done = cpu > 0 && mem > 0;
                stats = Some(s);
                done
            }
            Err(e) => {
                last = e;
                false
            }
        }
    });
    let s = stats.ok_or(last.clone())?;
    ensure!(
        s.attributes.as_ref().map(|a| a.id.as_str()) == Some(id.as_str()),
        "stats for another container: {s:?}"
    );
    ensure!(
        last.starts_with("cpu ") && !last.starts_with("cpu 0 ") && !last.contains(" set 0 "),
        "no CPU time or memory: {last}"
    );
    let list = c.call(
        "ListContainerStats",
        api::ListContainerStatsRequest {
            filter: Some(api::ContainerStatsFilter {
                pod_sandbox_id: pod.id.clone(),
                ..Default::default()
            }),
        },
        |mut c, r| async move { c.list_container_stats(r).await },
    )?;
    let ids: Vec<_> = list
        .stats
        .iter()
        .filter_map(|s| Some(s.attributes.as_ref()?.id.clone()))
        .collect();
    ensure!(
        ids == [id.clone()],
        "ListContainerStats of the pod: {ids:?}"
    );
    Ok(())
}

/// StopContainer and then the container's final status: exit code and how
/// long the stop took.
fn stop(c: &Cri, id: &str, timeout: i64) -> Result<(i32, Duration), String> {
    let started = Instant::now();
    c.stop_container(id, timeout)?;
    let took = started.elapsed();
    let info = c.wait_state(id, ContainerExited, Duration::from_secs(10))?;
    Ok((info.status.exit_code, took))
}

/// StopContainer with timeout 0 (`kubectl delete --grace-period=0`):
/// SIGKILL at once, even for a container that would exit on SIGTERM.
fn stop_timeout_0(c: &Cri) -> TestResult {
    let pod = c.pod("stop0")?;
    let (id, _) = pod.run(
        "app",
        &sh("trap 'exit 0' TERM; while :; do sleep 0.1; done"),
    )?;
    let (code, took) = stop(c, &id, 0)?;
    ensure!(code == 137, "exit code {code}, want 137 (SIGKILL)");
    ensure!(took < Duration::from_secs(10), "stop took {took:?}");
    Ok(())
}

/// StopContainer with a grace period: SIGTERM first, which the trap turns
/// into exit 3 well before the grace period ends.
fn stop_sigterm(c: &Cri) -> TestResult {
    let pod = c.pod("stopterm")?;
    let (id, pid) = pod.run(
        "app",
        &sh("trap 'exit 3' TERM; touch /tmp/trapped; while :; do sleep 0.1; done"),
    )?;
    // The trap must be set before the signal arrives.
    let trapped = format!("/proc/{pid}/root/tmp/trapped");
    ensure!(
        wait_for(Duration::from_secs(10), || Path::new(&trapped).exists()),
        "the container did not set its trap"
    );
    let (code, took) = stop(c, &id, 10)?;
    ensure!(code == 3, "exit code {code}, want 3 (the TERM trap)");
    ensure!(
        took < Duration::from_secs(8),
        "stop took {took:?}: SIGTERM did not arrive?"
    );
    Ok(())
}

/// StopContainer with a grace period, for a container that ignores SIGTERM:
/// SIGKILL once the grace period is over, exit code 137.
fn stop_grace_sigkill(c: &Cri) -> TestResult {
    let pod = c.pod("stopgrace")?;
    let (id, pid) = pod.run(
        "app",
        &sh("trap '' TERM; touch /tmp/trapped; while :; do sleep 0.1; done"),
    )?;
    let trapped = format!("/proc/{pid}/root/tmp/trapped");
    ensure!(
        wait_for(Duration::from_secs(10), || Path::new(&trapped).exists()),
        "the container did not set its trap"
    );
    let grace = 2;
    let (code, took) = stop(c, &id, grace)?;
    ensure!(code == 137, "exit code {code}, want 137 (SIGKILL)");
    ensure!(
        took >= Duration::from_secs(grace as u64) && took < Duration::from_secs(20),
        "stop took {took:?}, want the {grace} s grace period, then SIGKILL"
    );
    Ok(())
}

/// What must be gone once container or sandbox `id` is removed: the
/// runtime's state, its cgroup in every hierarchy, its mounts, its
/// processes (`pids`), containerd's container and task.
fn check_gone(c: &Cri, pod: &Pod, id: &str, pids: &[u32]) -> Result<(), String> {
    let state = c.state_root().join(id);
    ensure_str(
        !state.exists(),
        format!("runtime state left: {}", state.display()),
    )?;
    let cgroups: Vec<_> = pod
        .cgroup_dirs(id)
        .into_iter()
        .filter(|d| d.exists())
        .collect();
    ensure_str(cgroups.is_empty(), format!("cgroups left: {cgroups:?}"))?;
    let mounts = mounts_containing(&[id]);
    ensure_str(mounts.is_empty(), format!("mounts left: {mounts:?}"))?;
    let alive: Vec<_> = pids
        .iter()
        .filter(|p| Path::new(&format!("/proc/{p}")).exists())
        .collect();
    ensure_str(alive.is_empty(), format!("processes left: {alive:?}"))?;
    for what in ["containers", "tasks"] {
        let out = c.ctr(&[what, "ls", "--quiet"])?.success()?;
        ensure_str(
            !out.stdout.lines().any(|l| l.trim() == id),
            format!("containerd ({NAMESPACE}) still lists {what} {id}"),
        )?;
    }
    Ok(())
}

fn ensure_str(cond: bool, why: String) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(why)
    }
}

/// RemoveContainer of a stopped container: the CRI plugin, containerd and
/// the runtime forget it; nothing of it stays on the host.
fn remove_container(c: &Cri) -> TestResult {
    let pod = c.pod("remove")?;
    let (id, pid) = pod.run("app", SLEEP)?;
    stop(c, &id, 0)?;
    c.remove_container(&id)?;
    let listed = c.list_containers(Some(&pod.id))?;
    ensure!(listed.is_empty(), "ListContainers after remove: {listed:?}");
    let status = c.try_call(
        api::ContainerStatusRequest {
            container_id: id.clone(),
            verbose: false,
        },
        |mut c, r| async move { c.container_status(r).await },
    );
    ensure!(
        status
            .as_ref()
            .is_err_and(|s| s.code() == tonic::Code::NotFound),
        "ContainerStatus after remove: {status:?}, want NotFound"
    );
    check_gone(c, &pod, &id, &[pid])?;
    Ok(())
}

/// A pod's whole life as the kubelet drives it (a running and an exited
/// container, StopPodSandbox with the containers still running, then
/// RemovePodSandbox), and nothing left: no pod or container in the CRI
/// plugin or containerd, no runtime state, no cgroup (the kubelet then
/// removes the empty pod cgroup), no mount (rootfs, /dev/shm, the netns),
/// no process (pause, containers, the shim).
fn lifecycle_leaves_nothing(c: &Cri) -> TestResult {
    let pod = c.pod("lifecycle")?;
    let pause = pod.pause_pid()?;
    let (_, info) = pod.status()?;
    let netns = info["runtimeSpec"]["linux"]["namespaces"]
        .as_array()
        .and_then(|a| a.iter().find(|n| n["type"] == "network"))
        .and_then(|n| n["path"].as_str())
        .unwrap_or("")
        .to_string();
    ensure!(
        !netns.is_empty() && mounts_containing(&[&netns]).len() == 1,
        "the pod's netns {netns:?} is not a mount"
    );
    let (running, pid) = pod.run("app", SLEEP)?;
    let (exited, _) = pod.run("done", &["true"])?;
    c.wait_state(&exited, ContainerExited, Duration::from_secs(15))?;

    c.stop_pod(&pod.id)?;
    let (status, _) = pod.status()?;
    ensure!(
        status.state == api::PodSandboxState::SandboxNotready as i32,
        "pod state after StopPodSandbox {:?}",
        api::PodSandboxState::try_from(status.state)
    );
    let info = c.container_status(&running)?;
    ensure!(
        info.status.state == ContainerExited as i32,
        "container state after StopPodSandbox {:?}",
        api::ContainerState::try_from(info.status.state)
    );
    ensure!(
        mounts_containing(&[&netns]).is_empty(),
        "the netns {netns} is still mounted after StopPodSandbox"
    );
    c.remove_pod(&pod.id)?;

    let pods = c.list_pods()?;
    ensure!(!pods.contains(&pod.id), "ListPodSandbox: {pods:?}");
    let containers = c.list_containers(Some(&pod.id))?;
    ensure!(containers.is_empty(), "ListContainers: {containers:?}");
    check_gone(c, &pod, &running, &[pid])?;
    check_gone(c, &pod, &exited, &[])?;
    check_gone(c, &pod, &pod.id, &[pause])?;
    let shims = processes_matching(|cmd| cmd.contains("containerd-shim") && cmd.contains(&pod.id));
    ensure!(
        shims.is_empty(),
        "the pod's shim is still running: {shims:?}"
    );
    ensure!(
        !Path::new(&netns).exists(),
        "the netns file {netns} is still there"
    );
    pod.remove_pod_cgroup()?;
    // Give the shim's exit a moment to be reaped before the next test.
    thread::sleep(Duration::from_millis(100));
    Ok(())
}

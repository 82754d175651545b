//! Container lifecycle (OCI runtime spec "Lifecycle" and "Operations") and the
//! runc CLI verbs that drive it.

use std::fs;
use std::path::Path;
use std::time::Duration;

use phantom_tests::{
    assert_success, describe, pid_alive, require_root, stderr, stdout, wait_until, Bundle, Runtime,
};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

/// A container that records that it started, then waits for the host to
/// create /tmp/go in its rootfs and exits 0.
fn gated_bundle() -> Bundle {
    Bundle::sh("touch /tmp/started; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo done > /tmp/finished")
}

fn sleeper() -> Bundle {
    Bundle::sh("sleep 1000")
}

fn state_pid(state: &Value) -> i64 {
    state["pid"].as_i64().expect("state has a numeric pid")
}

#[test]
fn create_start_exit_delete() {
    require_root!();
    let rt = Runtime::new();
    let b = gated_bundle();
    let id = rt.id("life");

    rt.create(&id, &b);
    let st = rt.state(&id);
    assert_eq!(st["status"], "created", "{st}");
    let pid = state_pid(&st);
    assert!(
        pid > 0 && pid_alive(pid),
        "created container's pid {pid} is not alive"
    );
    // Spec: create MUST NOT run the user-specified program.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !b.rootfs().join("tmp/started").exists(),
        "the user process ran before start"
    );

    rt.start(&id);
    assert!(
        wait_until(WAIT, || b.rootfs().join("tmp/started").exists()),
        "the user process did not run after start"
    );
    let st = rt.state(&id);
    assert_eq!(st["status"], "running", "{st}");
    // The pid reported while created is the container process itself.
    assert_eq!(state_pid(&st), pid, "pid changed between create and start");

    fs::write(b.rootfs().join("tmp/go"), "").unwrap();
    rt.wait_status(&id, "stopped", WAIT);
    assert_eq!(
        b.read_rootfs_file("tmp/finished").as_deref(),
        Some("done\n")
    );
    assert!(
        wait_until(WAIT, || !pid_alive(pid)),
        "init pid {pid} still alive"
    );

    rt.delete(&id);
    let out = rt.try_state(&id);
    assert!(
        !out.status.success(),
        "state after delete succeeded\n{}",
        describe(&out)
    );
}

#[test]
fn state_reports_required_fields() {
    require_root!();
    let rt = Runtime::new();
    let b = sleeper();
    let id = rt.id("state");
    rt.prepare(&id, &b);
    // Pass the bundle as a relative path: the spec requires state.bundle
    // to be absolute regardless of how it was given.
    let parent = b.path().parent().unwrap();
    let name = b.path().file_name().unwrap();
    let mut cmd = rt.command(&["create".as_ref(), "--bundle".as_ref(), name, id.as_ref()]);
    cmd.current_dir(parent);
    assert_success(&phantom_tests::output(cmd), "create with relative bundle");

    let st = rt.state(&id);
    assert!(
        st["ociVersion"].as_str().is_some_and(|v| !v.is_empty()),
        "ociVersion missing: {st}"
    );
    assert_eq!(st["id"], id.as_str(), "{st}");
    assert_eq!(st["status"], "created", "{st}");
    assert!(state_pid(&st) > 0, "{st}");
    let bundle = st["bundle"].as_str().expect("bundle is a string");
    assert!(
        Path::new(bundle).is_absolute(),
        "bundle is not absolute: {bundle}"
    );
    assert_eq!(
        fs::canonicalize(bundle).unwrap(),
        fs::canonicalize(b.path()).unwrap(),
        "state.bundle points elsewhere"
    );
}

#[test]
fn delete_running_requires_force() {
    require_root!();
    let rt = Runtime::new();
    let id = rt.id("del");
    rt.create(&id, &sleeper());
    rt.start(&id);
    let pid = state_pid(&rt.state(&id));

    let out = rt.try_delete(&id, false);
    assert!(
        !out.status.success(),
        "delete of a running container succeeded"
    );
    // Spec: the failed delete MUST have no effect on the container.
    assert_eq!(rt.status(&id), "running");
    assert!(pid_alive(pid));

    assert_success(&rt.try_delete(&id, true), "delete --force");
    assert!(
        !rt.try_state(&id).status.success(),
        "state after delete --force"
    );
    assert!(
        wait_until(WAIT, || !pid_alive(pid)),
        "pid {pid} survived delete --force"
    );
}

#[test]
fn start_twice_fails() {
    require_root!();
    let rt = Runtime::new();
    let id = rt.id("start2");
    rt.create(&id, &sleeper());
    rt.start(&id);
    let pid = state_pid(&rt.state(&id));
    let out = rt.try_start(&id);
    assert!(
        !out.status.success(),
        "second start succeeded\n{}",
        describe(&out)
    );
    assert!(!out.stderr.is_empty(), "second start failed silently");
    assert_eq!(rt.status(&id), "running");
    assert_eq!(state_pid(&rt.state(&id)), pid);
}

#[test]
fn start_after_exit_fails() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::sh("echo ran >> /tmp/runs");
    let id = rt.id("rerun");
    rt.create(&id, &b);
    rt.start(&id);
    rt.wait_status(&id, "stopped", WAIT);
    let out = rt.try_start(&id);
    assert!(
        !out.status.success(),
        "start of a stopped container succeeded"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(b.read_rootfs_file("tmp/runs").as_deref(), Some("ran\n"));
}

/// Spec: signalling a container that is neither created nor running MUST
/// generate an error (runc: "container not running"; crun: "kill container:
/// No such process"; both exit 1).
#[test]
fn kill_stopped_container_fails() {
    require_root!();
    let rt = Runtime::new();
    let id = rt.id("killstopped");
    rt.create(&id, &Bundle::sh("true"));
    rt.start(&id);
    rt.wait_status(&id, "stopped", WAIT);
    for sig in ["KILL", "TERM"] {
        let out = rt.try_kill(&id, sig);
        assert!(
            !out.status.success(),
            "kill {sig} of a stopped container succeeded"
        );
        assert!(!out.stderr.is_empty(), "kill {sig} failed silently");
    }
    assert_eq!(rt.status(&id), "stopped");
    rt.delete(&id);
}

#[test]
fn duplicate_id_fails_and_keeps_first() {
    require_root!();
    let rt = Runtime::new();
    let first = sleeper();
    let id = rt.id("dup");
    rt.create(&id, &first);
    let before = rt.state(&id);

    let second = Bundle::sh("echo second > /tmp/ran");
    let out = rt.try_create(&id, &second, &[]);
    assert!(
        !out.status.success(),
        "duplicate create succeeded\n{}",
        describe(&out)
    );
    assert!(!out.stderr.is_empty(), "duplicate create failed silently");

    let after = rt.state(&id);
    assert_eq!(after["status"], "created");
    assert_eq!(after["pid"], before["pid"]);
    assert_eq!(after["bundle"], before["bundle"]);
    assert!(pid_alive(state_pid(&after)));
    // The first container still works.
    rt.start(&id);
    assert_eq!(rt.status(&id), "running");
    assert!(second.read_rootfs_file("tmp/ran").is_none());
}

/// Operations on an id that does not exist fail with a message. runc says
/// only "container does not exist" (without the id), so the message text
/// is not asserted.
#[test]
fn unknown_id_fails() {
    require_root!();
    let rt = Runtime::new();
    let id = rt.id("nosuch");
    let ops: [&[&str]; 5] = [
        &["state", &id],
        &["start", &id],
        &["kill", &id, "KILL"],
        &["delete", &id],
        &["pause", &id],
    ];
    for args in ops {
        let out = rt.cmd(args);
        assert!(
            !out.status.success(),
            "{args:?} succeeded\n{}",
            describe(&out)
        );
        assert!(!out.stderr.is_empty(), "{args:?} failed without a message");
    }
}

#[test]
fn run_propagates_exit_status() {
    require_root!();
    let rt = Runtime::new();
    for code in [0, 1, 42, 255] {
        let out = rt.run_bundle(&Bundle::sh(&format!("exit {code}")));
        assert_eq!(out.status.code(), Some(code), "{}", describe(&out));
    }
}

#[test]
fn run_detach_leaves_container_running() {
    require_root!();
    let rt = Runtime::new();
    let b = sleeper();
    let id = rt.id("detach");
    rt.prepare(&id, &b);
    let out = rt.cmd(&[
        "run".as_ref(),
        "--detach".as_ref(),
        "--bundle".as_ref(),
        b.path().as_os_str(),
        id.as_ref(),
    ]);
    assert_success(&out, "run --detach");
    assert_eq!(rt.status(&id), "running");
    rt.kill(&id, "KILL");
    rt.wait_status(&id, "stopped", WAIT);
    rt.delete(&id);
}

#[test]
fn list_shows_container() {
    require_root!();
    let rt = Runtime::new();
    let id = rt.id("list");
    // runc prints `null` for an empty list, crun `[]`.
    let empty = rt.cmd(&["list", "--format", "json"]);
    assert_success(&empty, "list on an empty root");
    let v: Value = serde_json::from_slice(&empty.stdout).expect("empty list is JSON");
    assert!(
        v.is_null() || v.as_array().is_some_and(Vec::is_empty),
        "{v}"
    );

    rt.create(&id, &sleeper());
    let out = rt.cmd(&["list", "--format", "json"]);
    assert_success(&out, "list --format json");
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("list output is not JSON ({e})\n{}", describe(&out)));
    let entry = v
        .as_array()
        .and_then(|a| a.iter().find(|c| c["id"] == id.as_str()))
        .unwrap_or_else(|| panic!("{id} missing from list: {v}"));
    assert_eq!(entry["status"], "created", "{entry}");

    let out = rt.cmd(&["list", "-q"]);
    assert_success(&out, "list -q");
    assert!(
        stdout(&out).lines().any(|l| l.trim() == id),
        "{}",
        describe(&out)
    );
}

/// A container whose init traps TERM and USR1 (pid 1 ignores signals it
/// has no handler for) and records which one arrived.
fn trapping_bundle() -> Bundle {
    Bundle::sh(
        "trap 'echo TERM > /tmp/sig; exit 0' TERM; \
         trap 'echo USR1 > /tmp/sig; exit 0' USR1; \
         touch /tmp/ready; while :; do sleep 0.05; done",
    )
}

fn signal_delivered(rt: &Runtime, signal: Option<&str>) -> Option<String> {
    let b = trapping_bundle();
    let id = rt.id("sig");
    rt.create(&id, &b);
    rt.start(&id);
    assert!(wait_until(WAIT, || b.rootfs().join("tmp/ready").exists()));
    match signal {
        Some(s) => rt.kill(&id, s),
        None => assert_success(&rt.cmd(&["kill", &id]), "kill without signal"),
    }
    rt.wait_status(&id, "stopped", WAIT);
    b.read_rootfs_file("tmp/sig").map(|s| s.trim().to_owned())
}

#[test]
fn kill_by_name_and_number() {
    require_root!();
    let rt = Runtime::new();
    assert_eq!(signal_delivered(&rt, Some("TERM")).as_deref(), Some("TERM"));
    assert_eq!(
        signal_delivered(&rt, Some("SIGTERM")).as_deref(),
        Some("TERM")
    );
    assert_eq!(signal_delivered(&rt, Some("15")).as_deref(), Some("TERM"));
    assert_eq!(signal_delivered(&rt, Some("USR1")).as_deref(), Some("USR1"));
    assert_eq!(signal_delivered(&rt, Some("10")).as_deref(), Some("USR1"));
    // runc's default signal is SIGTERM.
    assert_eq!(signal_delivered(&rt, None).as_deref(), Some("TERM"));

    for sig in ["SIGKILL", "KILL", "9"] {
        let id = rt.id("kill");
        rt.create(&id, &sleeper());
        rt.start(&id);
        let pid = state_pid(&rt.state(&id));
        rt.kill(&id, sig);
        rt.wait_status(&id, "stopped", WAIT);
        assert!(
            wait_until(WAIT, || !pid_alive(pid)),
            "{sig}: pid {pid} alive"
        );
    }
}

/// runc rejects signal names it does not know. crun 1.8.1 fails this test:
/// it exits 0 for `kill ID SIGBOGUS` (apparently sending signal 0).
#[test]
fn kill_unknown_signal_fails() {
    require_root!();
    let rt = Runtime::new();
    let id = rt.id("badsig");
    rt.create(&id, &sleeper());
    rt.start(&id);
    let out = rt.try_kill(&id, "SIGBOGUS");
    assert!(!out.status.success(), "kill SIGBOGUS succeeded");
    assert_eq!(rt.status(&id), "running");
}

/// Direct children of `pid` (host pids).
fn children(pid: i64) -> Vec<i64> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| phantom_tests::numbers(&s))
        .collect()
}

/// `kill --all` signals every process of the container, not just init:
/// TERM is ignored by init (pid 1 without a handler) but kills its
/// children, which a plain `kill` would not reach.
#[test]
fn kill_all_reaches_every_process() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::sh("sleep 1000 & sleep 1000 & touch /tmp/ready; wait; sleep 1000");
    let id = rt.id("killall");
    rt.create(&id, &b);
    rt.start(&id);
    assert!(wait_until(WAIT, || b.rootfs().join("tmp/ready").exists()));
    let init = state_pid(&rt.state(&id));
    // The `touch` child may not have been reaped yet; wait for the two sleeps.
    let mut kids = Vec::new();
    assert!(
        wait_until(WAIT, || {
            kids = children(init);
            kids.len() == 2
        }),
        "expected two sleep children of {init}: {kids:?}"
    );

    rt.kill(&id, "TERM");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        kids.iter().all(|&k| pid_alive(k)),
        "plain kill reached children"
    );

    assert_success(&rt.cmd(&["kill", "--all", &id, "TERM"]), "kill --all");
    assert!(
        wait_until(WAIT, || kids.iter().all(|&k| !pid_alive(k))),
        "children survived kill --all TERM"
    );
    // Init ignores TERM, so it is still there.
    assert!(pid_alive(init));
}

#[test]
fn pid_file_has_init_pid() {
    require_root!();
    let rt = Runtime::new();
    let b = sleeper();
    let id = rt.id("pidfile");
    let pid_file = b.path().join("init.pid");
    let out = rt.try_create(&id, &b, &["--pid-file", pid_file.to_str().unwrap()]);
    assert_success(&out, "create --pid-file");
    let text = fs::read_to_string(&pid_file).expect("pid file written");
    let pid: i64 = text
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("pid file: {text:?}"));
    assert_eq!(pid, state_pid(&rt.state(&id)));
    assert!(pid_alive(pid));
}

#[test]
fn delete_removes_state() {
    require_root!();
    let rt = Runtime::new();
    let id = rt.id("gone");
    rt.create(&id, &Bundle::sh("true"));
    assert!(
        find_named(rt.root(), &id),
        "no trace of {id} under --root; is --root honoured?"
    );
    rt.start(&id);
    rt.wait_status(&id, "stopped", WAIT);
    rt.delete(&id);
    assert!(!find_named(rt.root(), &id), "{id} left behind in --root");
    let out = rt.cmd(&["list", "-q"]);
    assert!(!stdout(&out).contains(&id), "{}", describe(&out));
    // A second delete has nothing to delete.
    let out = rt.try_delete(&id, false);
    assert!(
        !out.status.success(),
        "second delete succeeded: {}",
        stderr(&out)
    );
}

/// Whether any entry under `dir` (recursively) is named `name`.
fn find_named(dir: &Path, name: &str) -> bool {
    let Ok(entries) = fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        e.file_name() == name
            || (e.file_type().is_ok_and(|t| t.is_dir()) && find_named(&e.path(), name))
    })
}

/// A `create` killed halfway (here: while a createRuntime hook runs)
/// leaves a container that `delete --force` removes completely: no state,
/// no process, no cgroup.
#[test]
fn delete_force_cleans_up_after_a_killed_create() {
    require_root!();
    let rt = Runtime::new();
    let id = rt.id("killedcreate");
    let marker = tempfile::tempdir().unwrap();
    let started = marker.path().join("hook-started");
    let b = Bundle::sh("sleep 1000").with(|c| {
        c["hooks"] = json!({"createRuntime": [{"path": "/bin/sh",
            "args": ["sh", "-c", format!("touch {}; exec sleep 30", started.display())]}]});
    });
    rt.prepare(&id, &b);
    let mut create = rt.command(&["create", "--bundle", &b.path().display().to_string(), &id]);
    create
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = create.spawn().unwrap();
    assert!(wait_until(WAIT, || started.exists()), "the hook never ran");
    child.kill().unwrap();
    child.wait().unwrap();
    // The state directory may or may not be there; either way, after
    // delete --force nothing of the container is left.
    let out = rt.try_delete(&id, true);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(!rt.try_state(&id).status.success());
    assert!(!rt.root().join(&id).exists());
    let cg = phantom_tests::cgroup_dirs(&format!("{}/{id}", phantom_tests::CGROUP_PARENT));
    assert!(
        wait_until(WAIT, || phantom_tests::cgroup_dirs(&format!(
            "{}/{id}",
            phantom_tests::CGROUP_PARENT
        ))
        .is_empty()),
        "cgroups left: {cg:?}"
    );
}

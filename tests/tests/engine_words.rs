//! The words engines read in a runtime's error output, per verb. An engine
//! cannot tell "the container has already exited" from a real failure
//! except by matching text, so those substrings are part of the runc CLI
//! contract (docs/engines.md). Each check below applies the engine's own
//! rule, transcribed from its source:
//!
//! * containerd 1.6 `pkg/process/utils.go` `checkKillError` (kill, and kill
//!   of an exec'd process): "os: process already finished", "container not
//!   running", "no such process" (case-insensitive) -> the process already
//!   finished; "does not exist" -> no such container; anything else ->
//!   "unknown error after kill", which makes the kubelet's StopContainer,
//!   StopPodSandbox and RemovePodSandbox fail for good.
//! * containerd 1.6 `pkg/process/init.go` `delete`: "does not exist" is
//!   ignored (the runtime has already removed the container).
//! * CRI-O `internal/oci/runtime_oci.go` `runtimeCmd`: "no such process",
//!   "container not running", "invalid process" -> not found.
//! * Podman 4.3 `libpod/oci_conmon_common.go` `UpdateContainerStatus`
//!   (`state`): "does not exist" or "No such file" -> the container exited.
//!
//! Exit codes are runc 1.1.5's: 1 for every verb, 255 for a failed `exec`
//! (crun exits 1 there). The tests run against phantom, runc or crun
//! (`PHANTOM_RUNTIME`).

use std::time::Duration;

use phantom_tests::{describe, require_root, runtime_binary, stderr, Bundle, Runtime};

const WAIT: Duration = Duration::from_secs(10);

/// What containerd's shim makes of a failed `kill`.
#[derive(Debug, PartialEq)]
enum KillClass {
    ProcessFinished,
    NoSuchContainer,
    Unknown,
}

/// containerd 1.6 `checkKillError`, on go-runc's error text (which ends
/// with the runtime's combined output).
fn containerd_kill(output: &str) -> KillClass {
    if output.contains("os: process already finished")
        || output.contains("container not running")
        || output.to_lowercase().contains("no such process")
    {
        KillClass::ProcessFinished
    } else if output.contains("does not exist") {
        KillClass::NoSuchContainer
    } else {
        KillClass::Unknown
    }
}

/// CRI-O `runtimeCmd`: the runtime says the container has no process.
fn crio_not_found(stderr: &str) -> bool {
    [
        "no such process",
        "container not running",
        "invalid process",
    ]
    .iter()
    .any(|w| stderr.contains(w))
}

fn is_crun() -> bool {
    runtime_binary().ends_with("crun")
}

/// A container whose process has exited (status stopped).
fn stopped(rt: &Runtime, prefix: &str) -> String {
    let id = rt.id(prefix);
    rt.create(&id, &Bundle::sh("true"));
    rt.start(&id);
    rt.wait_status(&id, "stopped", WAIT);
    id
}

#[test]
fn kill_of_an_exited_container_says_not_running() {
    require_root!();
    let rt = Runtime::new();
    let id = stopped(&rt, "words-kill");
    for sig in ["KILL", "TERM"] {
        let out = rt.try_kill(&id, sig);
        assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
        let err = stderr(&out);
        assert_eq!(
            containerd_kill(&err),
            KillClass::ProcessFinished,
            "containerd would call this an unknown error after kill: {err}"
        );
        // crun 1.8.1 says "No such process", capitalised, which CRI-O's
        // case-sensitive match misses.
        if !is_crun() {
            assert!(crio_not_found(&err), "CRI-O would not see it exited: {err}");
        }
    }
    // `kill --all` of an exited container succeeds, as in runc 1.1
    // (crun 1.8 fails it with "no such process", also understood).
    let out = rt.cmd(&["kill", "--all", &id, "KILL"]);
    if !is_crun() {
        assert!(out.status.success(), "{}", describe(&out));
    }
    rt.delete(&id);
}

#[test]
fn missing_container_says_does_not_exist() {
    require_root!();
    let rt = Runtime::new();
    let id = rt.id("words-missing");
    let out = rt.try_kill(&id, "KILL");
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    if !is_crun() {
        // crun says "No such file or directory" here, which containerd
        // does not match; runc and phantom say "does not exist".
        assert_eq!(
            containerd_kill(&stderr(&out)),
            KillClass::NoSuchContainer,
            "{}",
            describe(&out)
        );
    }
    for args in [
        vec!["delete", id.as_str()],
        vec!["state", &id],
        vec!["start", &id],
        vec!["pause", &id],
        vec!["resume", &id],
        vec!["ps", &id],
    ] {
        let out = rt.cmd(&args);
        assert!(!out.status.success(), "{args:?}: {}", describe(&out));
        let err = stderr(&out);
        // containerd's delete ignores it; Podman's state takes it as exited.
        assert!(
            err.contains("does not exist") || (is_crun() && err.contains("No such file")),
            "{args:?}: {err}"
        );
        if !is_crun() {
            assert_eq!(out.status.code(), Some(1), "{args:?}: {}", describe(&out));
        }
    }
    // `delete --force` of a missing container succeeds (the shim follows
    // every delete with one).
    let out = rt.try_delete(&id, true);
    assert!(out.status.success(), "{}", describe(&out));
    let out = rt.cmd(&["exec", &id, "true"]);
    assert!(
        stderr(&out).contains("does not exist") || is_crun(),
        "{}",
        describe(&out)
    );
    assert_eq!(
        out.status.code(),
        Some(if is_crun() { 1 } else { 255 }),
        "{}",
        describe(&out)
    );
}

/// Every verb a stopped container refuses names runc's words for it.
#[test]
fn verbs_on_an_exited_container_use_runcs_words() {
    require_root!();
    if is_crun() {
        eprintln!("skipped: crun words these differently (\"is not running\")");
        return;
    }
    let rt = Runtime::new();
    let id = stopped(&rt, "words-verbs");
    let cases: [(&[&str], &str, i32); 5] = [
        (
            &["start", &id],
            "cannot start a container that has stopped",
            1,
        ),
        (&["pause", &id], "container not running", 1),
        (&["resume", &id], "container not paused", 1),
        (
            &["update", "--pids-limit", "10", &id],
            "container not running",
            1,
        ),
        (
            &["exec", &id, "true"],
            "cannot exec in a stopped container",
            255,
        ),
    ];
    for (args, words, code) in cases {
        let out = rt.cmd(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: {}",
            describe(&out)
        );
        assert!(
            stderr(&out).contains(words),
            "{args:?}: want {words:?}: {}",
            describe(&out)
        );
    }
    rt.delete(&id);
}

/// A live container: start twice, delete without --force, resume.
#[test]
fn verbs_on_a_live_container_use_runcs_words() {
    require_root!();
    if is_crun() {
        eprintln!("skipped: crun words these differently");
        return;
    }
    let rt = Runtime::new();
    let id = rt.id("words-live");
    rt.create(&id, &Bundle::new(&["sleep", "1000"]));
    let out = rt.cmd(&["resume", &id]);
    assert!(
        stderr(&out).contains("container not paused"),
        "{}",
        describe(&out)
    );
    rt.start(&id);
    let out = rt.try_start(&id);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stderr(&out).contains("cannot start an already running container"),
        "{}",
        describe(&out)
    );
    let out = rt.try_delete(&id, false);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(stderr(&out).contains("not stopped"), "{}", describe(&out));
    assert_eq!(rt.status(&id), "running");
    assert!(rt.cmd(&["pause", &id]).status.success());
    let out = rt.cmd(&["exec", &id, "true"]);
    assert_eq!(out.status.code(), Some(255), "{}", describe(&out));
    assert!(
        stderr(&out).contains("cannot exec in a paused container"),
        "{}",
        describe(&out)
    );
    let out = rt.cmd(&["pause", &id]);
    assert!(
        stderr(&out).contains("container not running"),
        "{}",
        describe(&out)
    );
    assert!(rt.cmd(&["resume", &id]).status.success());
    let out = rt.try_delete(&id, true);
    assert!(out.status.success(), "{}", describe(&out));
}

/// A create of an id that exists fails with "already exists" and exit 1,
/// as runc's "container with given ID already exists" and crun's
/// "container `X` already exists".
#[test]
fn duplicate_create_says_already_exists() {
    require_root!();
    let rt = Runtime::new();
    let id = rt.id("words-dup");
    rt.create(&id, &Bundle::new(&["sleep", "1000"]));
    let out = rt.try_create(&id, &Bundle::sh("true"), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stderr(&out).contains("already exists"),
        "{}",
        describe(&out)
    );
    assert_eq!(rt.status(&id), "created");
}

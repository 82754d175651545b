//! Several callers create the same id at once (an engine retrying, two
//! scripts, a daemon's requests): exactly one wins and keeps a working
//! container; every other one fails with "already exists" and touches
//! nothing of the winner's (the id is reserved before it is checked, and a
//! loser's cleanup only removes what it made itself).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use phantom_tests::{
    assert_success, describe, output, require_root, runtime_binary, stderr, stdout, Bundle, Runtime,
};

/// How many callers race.
const RACERS: usize = 8;

/// Runs every command at the same moment; their outputs in order.
fn race(cmds: Vec<Command>) -> Vec<Output> {
    let barrier = std::sync::Barrier::new(cmds.len());
    std::thread::scope(|s| {
        let handles: Vec<_> = cmds
            .into_iter()
            .map(|c| {
                let b = &barrier;
                s.spawn(move || {
                    b.wait();
                    output(c)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Exactly one output succeeded; every other one says "already exists".
/// Returns the winner's index.
#[track_caller]
fn one_winner(outs: &[Output]) -> usize {
    let winners: Vec<usize> = (0..outs.len())
        .filter(|&i| outs[i].status.success())
        .collect();
    let all: Vec<String> = outs.iter().map(describe).collect();
    assert_eq!(
        winners.len(),
        1,
        "want exactly one success:\n{}",
        all.join("\n")
    );
    for (i, o) in outs.iter().enumerate() {
        if i != winners[0] {
            assert!(
                stderr(o).contains("already exists"),
                "a loser must say already exists:\n{}",
                describe(o)
            );
        }
    }
    winners[0]
}

fn entries(p: &Path) -> Vec<PathBuf> {
    fs::read_dir(p)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[test]
fn concurrent_oci_creates_leave_one_working_container() {
    require_root!();
    let rt = Runtime::new();
    let id = rt.id("race-create");
    let bundle = Bundle::new(&["sleep", "1000"]);
    rt.prepare(&id, &bundle);
    let b = bundle.path().to_str().unwrap().to_string();
    let outs = race(
        (0..RACERS)
            .map(|_| rt.command(&["create", "--bundle", &b, &id]))
            .collect(),
    );
    one_winner(&outs);
    assert_eq!(rt.status(&id), "created");
    rt.start(&id);
    assert_eq!(rt.status(&id), "running");
    let out = rt.cmd(&["exec", &id, "echo", "alive"]);
    assert_eq!(stdout(&out), "alive\n", "{}", describe(&out));
    assert_success(&rt.try_delete(&id, true), "delete --force");
    assert!(entries(rt.root()).is_empty(), "{:?}", entries(rt.root()));
}

#[test]
fn concurrent_oci_detached_runs_leave_one_running_container() {
    require_root!();
    let rt = Runtime::new();
    let id = rt.id("race-run");
    let bundle = Bundle::new(&["sleep", "1000"]);
    rt.prepare(&id, &bundle);
    let b = bundle.path().to_str().unwrap().to_string();
    let outs = race(
        (0..RACERS)
            .map(|_| rt.command(&["run", "--detach", "--bundle", &b, &id]))
            .collect(),
    );
    one_winner(&outs);
    assert_eq!(rt.status(&id), "running");
    let out = rt.cmd(&["exec", &id, "echo", "alive"]);
    assert_eq!(stdout(&out), "alive\n", "{}", describe(&out));
    assert_success(&rt.try_delete(&id, true), "delete --force");
    assert!(entries(rt.root()).is_empty(), "{:?}", entries(rt.root()));
}

/// A private sandbox directory; destroys the sandbox `id` when dropped,
/// so a failed assertion leaves nothing either.
struct Sandboxes {
    rt: Runtime,
    dir: tempfile::TempDir,
    id: String,
}

impl Sandboxes {
    fn new(prefix: &str) -> Option<Sandboxes> {
        if !runtime_binary().ends_with("phantom") {
            eprintln!("skipped: sandboxes are phantom's");
            return None;
        }
        let rt = Runtime::new();
        let id = rt.id(prefix);
        Some(Sandboxes {
            rt,
            dir: tempfile::tempdir().unwrap(),
            id,
        })
    }

    fn base(&self) -> PathBuf {
        self.dir.path().join("sandboxes")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = self.rt.command(args);
        c.env("PHANTOM_SANDBOX_DIR", self.base());
        c
    }

    fn cmd(&self, args: &[&str]) -> Output {
        output(self.command(args))
    }

    #[track_caller]
    fn assert_clean(&self) {
        assert!(
            entries(&self.base()).is_empty(),
            "{:?}",
            entries(&self.base())
        );
        assert!(
            entries(self.rt.root()).is_empty(),
            "{:?}",
            entries(self.rt.root())
        );
    }
}

impl Drop for Sandboxes {
    fn drop(&mut self) {
        let _ = output(self.command(&["destroy", &self.id]));
        let _ = output(self.command(&["delete", "--force", &self.id]));
    }
}

#[test]
fn concurrent_sandbox_creates_leave_one_working_sandbox() {
    require_root!();
    let Some(s) = Sandboxes::new("race-box") else {
        return;
    };
    let id = s.id.clone();
    let outs = race(
        (0..RACERS)
            .map(|_| s.command(&["create", "--profile", "python-dev", &id]))
            .collect(),
    );
    one_winner(&outs);
    for o in outs.iter().filter(|o| !o.status.success()) {
        // The daemon's backend tells this failure apart by its exit status.
        assert_eq!(o.status.code(), Some(17), "{}", describe(o));
    }
    assert_eq!(s.rt.status(&id), "running");
    assert!(
        s.base().join(&id).is_dir(),
        "the winner's sandbox directory is gone"
    );
    let out = s.cmd(&[
        "exec",
        "--no-daemon",
        &id,
        "--",
        "sh",
        "-c",
        "echo kept > /workspace/f; cat /workspace/f",
    ]);
    assert_eq!(stdout(&out), "kept\n", "{}", describe(&out));
    // And once more, now that nobody races: still "already exists".
    let out = s.cmd(&["create", "--profile", "python-dev", &id]);
    assert_eq!(out.status.code(), Some(17), "{}", describe(&out));
    assert_eq!(s.rt.status(&id), "running");
    assert_success(&s.cmd(&["destroy", &id]), "destroy");
    s.assert_clean();
}

#[test]
fn concurrent_sandbox_runs_with_one_id_run_once() {
    require_root!();
    let Some(s) = Sandboxes::new("race-run-box") else {
        return;
    };
    let id = s.id.clone();
    let outs = race(
        (0..RACERS)
            .map(|_| {
                s.command(&[
                    "run",
                    "--profile",
                    "python-dev",
                    "--no-daemon",
                    &id,
                    "--",
                    "sh",
                    "-c",
                    "sleep 2; echo done",
                ])
            })
            .collect(),
    );
    let w = one_winner(&outs);
    assert_eq!(stdout(&outs[w]), "done\n", "{}", describe(&outs[w]));
    s.assert_clean();
}

/// An OCI container holds the id: a sandbox of that name fails and leaves
/// the container alone (the loser's cleanup used to force-delete it).
#[test]
fn sandbox_create_over_an_oci_container_leaves_it_alone() {
    require_root!();
    let Some(s) = Sandboxes::new("race-mixed") else {
        return;
    };
    let bundle = Bundle::new(&["sleep", "1000"]);
    s.rt.prepare(&s.id, &bundle);
    let b = bundle.path().to_str().unwrap().to_string();
    assert_success(&s.cmd(&["create", "--bundle", &b, &s.id]), "create");
    let out = s.cmd(&["create", "--profile", "python-dev", &s.id]);
    assert_eq!(out.status.code(), Some(17), "{}", describe(&out));
    assert!(
        stderr(&out).contains("already exists"),
        "{}",
        describe(&out)
    );
    assert_eq!(s.rt.status(&s.id), "created");
    assert!(entries(&s.base()).is_empty(), "{:?}", entries(&s.base()));
}

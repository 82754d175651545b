//! Lifecycle, state and errors (runtime.md).

use std::fs;
use std::time::Duration;

use serde_json::{json, Value};

use super::exec::{self, describe, pid_alive, wait_until};
use super::{Bundle, Ctx, Group, Rec};
use crate::outcome::Outcome;

const CHECKS: &[&str] = &[
    "lifecycle.create.status",
    "lifecycle.create.pid_file",
    "lifecycle.create.not_run",
    "lifecycle.state.fields",
    "lifecycle.create.config_snapshot",
    "lifecycle.start.status",
    "lifecycle.start.twice",
    "lifecycle.delete.running",
    "lifecycle.kill.signal",
    "lifecycle.kill.stopped_status",
    "lifecycle.kill.not_running",
    "lifecycle.create.duplicate_id",
    "lifecycle.delete.stopped",
    "lifecycle.delete.resources",
    "lifecycle.delete.created",
    "lifecycle.kill.created",
    "lifecycle.exit.stopped",
    "lifecycle.unknown.state",
    "lifecycle.unknown.start",
    "lifecycle.unknown.kill",
    "lifecycle.unknown.delete",
    "lifecycle.create.no_id",
    "lifecycle.create.no_config",
    "lifecycle.create.bad_namespace",
    "lifecycle.create.bad_exec",
];

pub fn group() -> Group {
    Group {
        name: "lifecycle",
        checks: CHECKS.iter().map(|s| (*s).to_owned()).collect(),
        run: Box::new(run),
    }
}

fn run(ctx: &mut Ctx, rec: &mut Rec) {
    main_container(ctx, rec);
    created_container(ctx, rec);
    exiting_container(ctx, rec);
    unknown_ids(ctx, rec);
    bad_creates(ctx, rec);
}

const ANNOTATIONS: &str = r#"{"org.example.rst/key": "value", "org.example.rst/empty": ""}"#;

fn fail_all(rec: &mut Rec, names: &[&str], why: &str) {
    for n in names {
        if rec.get(n).is_none() {
            rec.set(*n, Outcome::Fail(why.to_owned()));
        }
    }
}

/// Waits for a file in the rootfs to exist.
fn appears(b: &Bundle, rel: &str, timeout: Duration) -> bool {
    let p = b.in_rootfs(rel);
    wait_until(timeout, || p.exists())
}

/// The spec's state fields for a container in `status`.
fn state_fields(st: &Value, id: &str, bundle: &Bundle, status: &str, pid: i64) -> Outcome {
    let mut problems = Vec::new();
    match st.get("ociVersion").and_then(Value::as_str) {
        Some(v)
            if v.split('.').count() >= 3
                && v.chars().next().is_some_and(|c| c.is_ascii_digit()) => {}
        other => problems.push(format!("ociVersion {other:?} is not a SemVer string")),
    }
    if st.get("id").and_then(Value::as_str) != Some(id) {
        problems.push(format!("id {:?}, want {id:?}", st.get("id")));
    }
    if st.get("status").and_then(Value::as_str) != Some(status) {
        problems.push(format!("status {:?}, want {status:?}", st.get("status")));
    }
    if st.get("pid").and_then(Value::as_i64) != Some(pid) {
        problems.push(format!("pid {:?}, want {pid}", st.get("pid")));
    }
    let want_bundle = fs::canonicalize(&bundle.dir).unwrap_or_else(|_| bundle.dir.clone());
    match st.get("bundle").and_then(Value::as_str) {
        Some(b) if fs::canonicalize(b).is_ok_and(|c| c == want_bundle) => {}
        other => problems.push(format!(
            "bundle {other:?}, want {:?} (the absolute bundle path)",
            want_bundle.display()
        )),
    }
    let want_ann: Value = serde_json::from_str(ANNOTATIONS).unwrap_or_default();
    if st.get("annotations") != Some(&want_ann) {
        problems.push(format!(
            "annotations {:?}, want {want_ann}",
            st.get("annotations")
        ));
    }
    Outcome::from_problems(problems)
}

/// One container walked through its whole life.
fn main_container(ctx: &mut Ctx, rec: &mut Rec) {
    let names = &CHECKS[..14];
    let mut b = match Bundle::new(ctx, "life") {
        Ok(b) => b,
        Err(e) => return fail_all(rec, names, &e),
    };
    b.config["annotations"] = serde_json::from_str(ANNOTATIONS).unwrap_or_default();
    b.sh("touch /tmp/rst-started; trap 'touch /tmp/rst-usr1' USR1; while :; do sleep 0.05; done");
    let id = ctx.id("life");
    let out = ctx.create(&id, &b);
    if !out.status.success() {
        ctx.destroy(&id);
        return fail_all(rec, names, &format!("create failed: {}", describe(&out)));
    }

    // create -> created, with a live pid, and the user process not run.
    let st = ctx.state(&id);
    let pid = st
        .as_ref()
        .ok()
        .and_then(|s| s.get("pid"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    rec.set(
        "lifecycle.create.status",
        match &st {
            Ok(s) => {
                let status = s.get("status").and_then(Value::as_str).unwrap_or("");
                Outcome::check(status == "created" && pid > 0 && pid_alive(pid), || {
                    format!(
                        "after create: status {status:?}, pid {pid} (alive: {})",
                        pid_alive(pid)
                    )
                })
            }
            Err(e) => Outcome::Fail(e.clone()),
        },
    );
    let pid_file = fs::read_to_string(b.dir.join("pid")).unwrap_or_default();
    rec.set(
        "lifecycle.create.pid_file",
        Outcome::check(pid_file.trim().parse::<i64>().ok() == Some(pid), || {
            format!("--pid-file holds {:?}, state pid is {pid}", pid_file.trim())
        }),
    );
    std::thread::sleep(Duration::from_millis(100));
    rec.set(
        "lifecycle.create.not_run",
        Outcome::check(!b.in_rootfs("tmp/rst-started").exists(), || {
            "the user process ran before start".into()
        }),
    );
    rec.set(
        "lifecycle.state.fields",
        match &st {
            Ok(s) => state_fields(s, &id, &b, "created", pid),
            Err(e) => Outcome::Fail(e.clone()),
        },
    );

    // Changing config.json after create must not affect the container.
    let mut changed = b.config.clone();
    changed["process"]["args"] = json!(["sh", "-c", "touch /tmp/rst-changed; sleep 10"]);
    let _ = fs::write(b.dir.join("config.json"), changed.to_string());

    // start -> running, and the process runs.
    let out = ctx.start(&id);
    let ran = appears(&b, "tmp/rst-started", Duration::from_secs(5));
    rec.set(
        "lifecycle.start.status",
        if !out.status.success() {
            Outcome::Fail(format!("start failed: {}", describe(&out)))
        } else {
            match ctx.status(&id) {
                Ok(s) => Outcome::check(s == "running" && ran, || {
                    format!("after start: status {s:?}, process ran: {ran}")
                }),
                Err(e) => Outcome::Fail(e),
            }
        },
    );
    rec.set(
        "lifecycle.create.config_snapshot",
        Outcome::check(ran && !b.in_rootfs("tmp/rst-changed").exists(), || {
            format!(
                "the original process ran: {ran}; the process of the rewritten config.json ran: {}",
                b.in_rootfs("tmp/rst-changed").exists()
            )
        }),
    );

    // start again: error, no effect.
    let again = ctx.start(&id);
    rec.set(
        "lifecycle.start.twice",
        if again.status.success() {
            Outcome::Fail("a second start succeeded".into())
        } else {
            unaffected(ctx, &id, "running", pid)
        },
    );

    // delete while running: error, no effect.
    let del = ctx.rt(&["delete", &id]);
    rec.set(
        "lifecycle.delete.running",
        if del.status.success() {
            Outcome::Fail("delete of a running container succeeded".into())
        } else {
            unaffected(ctx, &id, "running", pid)
        },
    );

    // kill delivers the signal.
    let k = ctx.kill(&id, "USR1");
    rec.set(
        "lifecycle.kill.signal",
        if !k.status.success() {
            Outcome::Fail(format!("kill USR1 failed: {}", describe(&k)))
        } else {
            Outcome::check(appears(&b, "tmp/rst-usr1", Duration::from_secs(5)), || {
                "the process's USR1 trap did not run".into()
            })
        },
    );

    // kill KILL -> stopped.
    let k = ctx.kill(&id, "KILL");
    rec.set(
        "lifecycle.kill.stopped_status",
        if !k.status.success() {
            Outcome::Fail(format!("kill KILL failed: {}", describe(&k)))
        } else {
            match ctx.wait_status(&id, "stopped", Duration::from_secs(5)) {
                Ok(()) => Outcome::Pass,
                Err(e) => Outcome::Fail(e),
            }
        },
    );

    // kill of a stopped container: error, no effect.
    let k = ctx.kill(&id, "KILL");
    rec.set(
        "lifecycle.kill.not_running",
        if k.status.success() {
            Outcome::Fail("kill of a stopped container succeeded".into())
        } else {
            unaffected(ctx, &id, "stopped", pid)
        },
    );

    // create with an id in use: error, no effect on the existing one.
    let dup = Bundle::new(ctx, "dup");
    rec.set(
        "lifecycle.create.duplicate_id",
        match dup {
            Err(e) => Outcome::Fail(e),
            Ok(dup) => {
                let out = ctx.create(&id, &dup);
                if out.status.success() {
                    Outcome::Fail("create with an existing id succeeded".into())
                } else {
                    unaffected(ctx, &id, "stopped", pid)
                }
            }
        },
    );

    // delete of a stopped container succeeds and removes its resources.
    let cgroups_path = ctx.cgroups_path(&id);
    let del = ctx.delete(&id);
    rec.set(
        "lifecycle.delete.stopped",
        if !del.status.success() {
            Outcome::Fail(format!("delete failed: {}", describe(&del)))
        } else {
            let st = ctx.rt(&["state", &id]);
            Outcome::check(!st.status.success(), || {
                "state still succeeds after delete".into()
            })
        },
    );
    let left = ctx.cgroup_dirs(&cgroups_path);
    rec.set(
        "lifecycle.delete.resources",
        Outcome::check(left.is_empty() && !pid_alive(pid), || {
            format!(
                "after delete: init alive {}, cgroups left {:?}",
                pid_alive(pid),
                left
            )
        }),
    );
    ctx.destroy(&id);
}

/// After a refused operation: same status and pid as before.
fn unaffected(ctx: &Ctx, id: &str, status: &str, pid: i64) -> Outcome {
    match ctx.state(id) {
        Ok(s) => {
            let got = s.get("status").and_then(Value::as_str).unwrap_or("");
            let got_pid = s.get("pid").and_then(Value::as_i64).unwrap_or(0);
            let alive_ok = status == "stopped" || pid_alive(pid);
            Outcome::check(
                got == status && (got_pid == pid || status == "stopped") && alive_ok,
                || {
                    format!("refused, but the container changed: status {got:?} pid {got_pid}, want {status:?} pid {pid}")
                },
            )
        }
        Err(e) => Outcome::Fail(format!("refused, but the container is gone: {e}")),
    }
}

/// A created, never started container: delete must refuse, kill works.
fn created_container(ctx: &mut Ctx, rec: &mut Rec) {
    let names = ["lifecycle.delete.created", "lifecycle.kill.created"];
    let mut b = match Bundle::new(ctx, "created") {
        Ok(b) => b,
        Err(e) => return fail_all(rec, &names, &e),
    };
    b.sh("sleep 30");
    let id = ctx.id("created");
    let out = ctx.create(&id, &b);
    if !out.status.success() {
        ctx.destroy(&id);
        return fail_all(rec, &names, &format!("create failed: {}", describe(&out)));
    }
    let pid = ctx
        .state(&id)
        .ok()
        .and_then(|s| s.get("pid").and_then(Value::as_i64))
        .unwrap_or(0);
    let del = ctx.rt(&["delete", &id]);
    rec.set(
        "lifecycle.delete.created",
        if del.status.success() {
            Outcome::Fail(
                "delete of a created (not stopped) container succeeded; runtime.md: deleting a \
                 container that is not stopped MUST have no effect and MUST generate an error"
                    .into(),
            )
        } else {
            unaffected(ctx, &id, "created", pid)
        },
    );
    ctx.destroy(&id);

    // "neither created nor running" is the error case: created accepts kill.
    let id = ctx.id("created");
    let out = ctx.create(&id, &b);
    let o = if !out.status.success() {
        Outcome::Fail(format!("create failed: {}", describe(&out)))
    } else {
        let k = ctx.kill(&id, "KILL");
        if !k.status.success() {
            Outcome::Fail(format!(
                "kill of a created container failed: {}",
                describe(&k)
            ))
        } else {
            match ctx.wait_status(&id, "stopped", Duration::from_secs(5)) {
                Ok(()) => Outcome::Pass,
                Err(e) => Outcome::Fail(e),
            }
        }
    };
    rec.set("lifecycle.kill.created", o);
    ctx.destroy(&id);
}

/// A process that exits by itself leaves the container stopped.
fn exiting_container(ctx: &mut Ctx, rec: &mut Rec) {
    let name = "lifecycle.exit.stopped";
    let mut b = match Bundle::new(ctx, "exit") {
        Ok(b) => b,
        Err(e) => return rec.set(name, Outcome::Fail(e)),
    };
    b.config["process"]["args"] = json!(["true"]);
    let id = ctx.id("exit");
    let out = ctx.create(&id, &b);
    let o = if !out.status.success() {
        Outcome::Fail(format!("create failed: {}", describe(&out)))
    } else {
        let s = ctx.start(&id);
        if !s.status.success() {
            Outcome::Fail(format!("start failed: {}", describe(&s)))
        } else {
            match ctx.wait_status(&id, "stopped", Duration::from_secs(5)) {
                Ok(()) => Outcome::Pass,
                Err(e) => Outcome::Fail(e),
            }
        }
    };
    rec.set(name, o);
    ctx.destroy(&id);
}

fn unknown_ids(ctx: &mut Ctx, rec: &mut Rec) {
    let id = format!("rst-{}-no-such-container", std::process::id());
    for (check, args) in [
        ("lifecycle.unknown.state", vec!["state", id.as_str()]),
        ("lifecycle.unknown.start", vec!["start", id.as_str()]),
        ("lifecycle.unknown.kill", vec!["kill", id.as_str(), "KILL"]),
        ("lifecycle.unknown.delete", vec!["delete", id.as_str()]),
    ] {
        let out = ctx.rt(&args);
        rec.set(
            check,
            Outcome::check(!out.status.success(), || {
                format!("`{}` on an unknown id succeeded", args.join(" "))
            }),
        );
    }
}

/// A create that must fail, and leave no container behind.
fn refused(ctx: &mut Ctx, id: &str, out: &std::process::Output, what: &str) -> Outcome {
    if out.status.success() {
        ctx.destroy(id);
        return Outcome::Fail(format!("create {what} succeeded"));
    }
    let st = ctx.rt(&["state", id]);
    let o = Outcome::check(!st.status.success(), || {
        format!("create {what} failed but left a container: state succeeds")
    });
    ctx.destroy(id);
    o
}

fn bad_creates(ctx: &mut Ctx, rec: &mut Rec) {
    // No id.
    match Bundle::new(ctx, "noid") {
        Ok(b) => {
            let _ = b.write(ctx, "noid");
            let mut cmd = ctx.command(&["create", "--bundle"]);
            cmd.arg(&b.dir);
            let out = exec::output(cmd, super::CMD_TIMEOUT).unwrap_or_else(super::failed_output);
            rec.set(
                "lifecycle.create.no_id",
                Outcome::check(!out.status.success(), || {
                    "create without an id succeeded".into()
                }),
            );
        }
        Err(e) => rec.set("lifecycle.create.no_id", Outcome::Fail(e)),
    }

    // A bundle without config.json.
    let id = ctx.id("noconfig");
    let dir = ctx.work.join("bundle-noconfig");
    let _ = fs::create_dir_all(dir.join("rootfs"));
    ctx.created.push(id.clone());
    let mut cmd = ctx.command(&["create", "--bundle"]);
    cmd.arg(&dir).arg(&id);
    let out = exec::output(cmd, super::CMD_TIMEOUT).unwrap_or_else(super::failed_output);
    let o = refused(ctx, &id, &out, "from a bundle without config.json");
    rec.set("lifecycle.create.no_config", o);

    // An unknown namespace type.
    match Bundle::new(ctx, "badns") {
        Ok(mut b) => {
            if let Some(ns) = b.config["linux"]["namespaces"].as_array_mut() {
                ns.push(json!({"type": "rst-bogus"}));
            }
            let id = ctx.id("badns");
            let out = ctx.create(&id, &b);
            let o = refused(ctx, &id, &out, "with namespace type \"rst-bogus\"");
            rec.set("lifecycle.create.bad_namespace", o);
        }
        Err(e) => rec.set("lifecycle.create.bad_namespace", Outcome::Fail(e)),
    }

    // A program that does not exist: create or start must report it.
    match Bundle::new(ctx, "badexec") {
        Ok(mut b) => {
            b.config["process"]["args"] = json!(["/rst/no/such/program"]);
            let id = ctx.id("badexec");
            let out = ctx.create(&id, &b);
            let o = if !out.status.success() {
                Outcome::Pass
            } else {
                let s = ctx.start(&id);
                Outcome::check(!s.status.success(), || {
                    "create and start both succeeded for a program that does not exist".into()
                })
            };
            rec.set("lifecycle.create.bad_exec", o);
            ctx.destroy(&id);
        }
        Err(e) => rec.set("lifecycle.create.bad_exec", Outcome::Fail(e)),
    }
}

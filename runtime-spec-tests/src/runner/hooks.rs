//! POSIX-platform hooks (config.md) and their place in the lifecycle
//! (runtime.md).
//!
//! Every hook is the checker in hook mode, installed in a host directory
//! that is bind-mounted into the container at the same path, so its path
//! resolves both in the runtime namespace (prestart, createRuntime,
//! poststart, poststop) and in the container namespace (createContainer,
//! startContainer). Each call appends a JSON record to a log there.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::exec::{describe, pid_alive, processes_under, wait_until};
use super::{Bundle, Ctx, Group, Rec, STOP_TIMEOUT};
use crate::outcome::Outcome;
use crate::procfs;

/// Hook kinds in lifecycle order, with the status runtime.md implies for
/// the state each one receives: the create operation has not finished
/// during prestart/createRuntime/createContainer ("creating"), start has
/// not yet run the program during startContainer ("created").
const KINDS: &[(&str, &str)] = &[
    // runtime.md "State": `creating` is step 2 of the lifecycle, `created`
    // after it; these hooks are steps 3 to 5 (runtime-tools' hooks_stdin
    // validation expects `created` for prestart too).
    ("prestart", "created"),
    ("createRuntime", "created"),
    ("createContainer", "created"),
    ("startContainer", "created"),
    ("poststart", "running"),
    ("poststop", "stopped"),
];

const MAIN_CHECKS: &[&str] = &[
    "hooks.run",
    "hooks.order",
    "hooks.state",
    "hooks.args",
    "hooks.env",
    "hooks.namespace",
];

const OTHER_CHECKS: &[&str] = &[
    "hooks.createRuntime.fail",
    "hooks.startContainer.fail",
    "hooks.poststart.fail",
    "hooks.poststop.fail",
    "hooks.timeout",
];

pub fn group() -> Group {
    let mut checks: Vec<String> = MAIN_CHECKS.iter().map(|s| (*s).to_owned()).collect();
    checks.extend(KINDS.iter().map(|(k, _)| format!("hooks.status.{k}")));
    checks.extend(OTHER_CHECKS.iter().map(|s| (*s).to_owned()));
    Group {
        name: "hooks",
        checks,
        run: Box::new(run),
    }
}

/// A host directory holding the hook program and its log, bind-mounted at
/// the same path in the container.
struct HookDir {
    program: PathBuf,
    log: PathBuf,
}

impl HookDir {
    fn new(ctx: &mut Ctx, b: &mut Bundle) -> Result<HookDir, String> {
        let dir = b.dir.join("hooks");
        fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o777));
        let program = dir.join("rst-checker");
        fs::copy(&ctx.checker, &program).map_err(|e| format!("copy checker: {e}"))?;
        let _ = fs::set_permissions(&program, fs::Permissions::from_mode(0o755));
        let log = dir.join("hooks.log");
        if let Some(m) = b.config["mounts"].as_array_mut() {
            m.push(json!({
                "destination": dir, "type": "bind", "source": dir,
                "options": ["rbind", "rw"]
            }));
        }
        Ok(HookDir { program, log })
    }

    /// The config entry of one hook.
    fn hook(&self, kind: &str, extra: &[&str], timeout: Option<u64>) -> Value {
        let mut args = vec![
            "rst-hook".to_owned(),
            "hook".to_owned(),
            "--log".to_owned(),
            self.log.to_string_lossy().into_owned(),
            "--name".to_owned(),
            kind.to_owned(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let mut h = json!({
            "path": self.program,
            "args": args,
            "env": [format!("RST_HOOK={kind}"), "RST_SPACES=a b  c", "PATH=/usr/bin:/bin"],
        });
        if let Some(t) = timeout {
            h["timeout"] = json!(t);
        }
        h
    }

    fn records(&self) -> Vec<Value> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

fn run(ctx: &mut Ctx, rec: &mut Rec) {
    all_hooks(ctx, rec);
    create_runtime_fails(ctx, rec);
    start_container_fails(ctx, rec);
    post_hooks_fail(ctx, rec);
    timeout(ctx, rec);
}

fn fail_all(rec: &mut Rec, names: &[String], why: &str) {
    for n in names {
        if rec.get(n).is_none() {
            rec.set(n.clone(), Outcome::Fail(why.to_owned()));
        }
    }
}

fn main_names() -> Vec<String> {
    let mut v: Vec<String> = MAIN_CHECKS.iter().map(|s| (*s).to_owned()).collect();
    v.extend(KINDS.iter().map(|(k, _)| format!("hooks.status.{k}")));
    v
}

/// The extra arguments of each hook in `all_hooks`. The startContainer hook
/// is slow: poststart must still come after it, since poststart runs once
/// the program was executed (runtime.md "Lifecycle"), which waits for the
/// startContainer hooks.
fn main_hook_args(kind: &str) -> &'static [&'static str] {
    if kind == "startContainer" {
        &["--delay-ms", "300", "an arg", "--"]
    } else {
        &["an arg", "--"]
    }
}

/// One container with every hook kind.
fn all_hooks(ctx: &mut Ctx, rec: &mut Rec) {
    let names = main_names();
    let mut b = match Bundle::new(ctx, "hooks") {
        Ok(b) => b,
        Err(e) => return fail_all(rec, &names, &e),
    };
    let hd = match HookDir::new(ctx, &mut b) {
        Ok(h) => h,
        Err(e) => return fail_all(rec, &names, &e),
    };
    for (kind, _) in KINDS {
        b.config["hooks"][kind] = json!([hd.hook(kind, main_hook_args(kind), Some(10))]);
    }
    b.config["process"]["args"] = json!(["true"]);
    let id = ctx.id("hooks");
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
    let container_mnt = procfs::ns_inode(format!("/proc/{pid}/ns/mnt"));
    let start = ctx.start(&id);
    let mut problems = Vec::new();
    if !start.status.success() {
        problems.push(format!("start failed: {}", describe(&start)));
    } else if let Err(e) = ctx.wait_status(&id, "stopped", STOP_TIMEOUT) {
        problems.push(e);
    }
    let del = ctx.delete(&id);
    if !del.status.success() {
        problems.push(format!("delete failed: {}", describe(&del)));
    }
    ctx.destroy(&id);
    // poststop may finish a moment after delete returns on some runtimes.
    wait_until(Duration::from_secs(2), || {
        hd.records().iter().any(|r| r["name"] == "poststop")
    });
    let records = hd.records();
    let ran: Vec<&str> = records.iter().filter_map(|r| r["name"].as_str()).collect();

    // Each hook ran exactly once.
    let mut run_problems = problems.clone();
    for (kind, _) in KINDS {
        let n = ran.iter().filter(|r| *r == kind).count();
        if n != 1 {
            run_problems.push(format!("{kind} ran {n} times"));
        }
    }
    rec.set("hooks.run", Outcome::from_problems(run_problems));

    let want: Vec<&str> = KINDS.iter().map(|(k, _)| *k).collect();
    rec.set(
        "hooks.order",
        Outcome::check(ran == want, || format!("ran {ran:?}, want {want:?}")),
    );

    // The state on stdin.
    let bundle = fs::canonicalize(&b.dir).unwrap_or_else(|_| b.dir.clone());
    let mut state_problems = Vec::new();
    for r in &records {
        let kind = r["name"].as_str().unwrap_or("?");
        let st = &r["state"];
        if !st.is_object() {
            state_problems.push(format!("{kind}: stdin is not a JSON state: {st}"));
            continue;
        }
        if st["id"] != json!(id) {
            state_problems.push(format!("{kind}: id {}, want {id}", st["id"]));
        }
        let b_ok = st["bundle"]
            .as_str()
            .is_some_and(|p| fs::canonicalize(p).is_ok_and(|c| c == bundle));
        if !b_ok {
            state_problems.push(format!(
                "{kind}: bundle {}, want {}",
                st["bundle"],
                bundle.display()
            ));
        }
        if kind != "poststop" && st["pid"].as_i64() != Some(pid) {
            state_problems.push(format!("{kind}: pid {}, want {pid}", st["pid"]));
        }
        if !st["ociVersion"].is_string() {
            state_problems.push(format!("{kind}: no ociVersion"));
        }
    }
    rec.set(
        "hooks.state",
        if records.is_empty() {
            Outcome::Fail("no hook ran".into())
        } else {
            Outcome::from_problems(state_problems)
        },
    );
    for (kind, status) in KINDS {
        let name = format!("hooks.status.{kind}");
        let o = match records.iter().find(|r| r["name"] == *kind) {
            None => Outcome::Fail(format!("{kind} did not run")),
            Some(r) => {
                let got = r["state"]["status"].as_str().unwrap_or("(none)");
                Outcome::check(got == *status, || {
                    format!("state.status {got:?}, want {status:?}")
                })
            }
        };
        rec.set(name, o);
    }

    // argv and environment exactly as configured.
    let mut arg_problems = Vec::new();
    let mut env_problems = Vec::new();
    for r in &records {
        let kind = r["name"].as_str().unwrap_or("?");
        let want = hd.hook(kind, main_hook_args(kind), Some(10));
        if r["argv"] != want["args"] {
            arg_problems.push(format!("{kind}: argv {}, want {}", r["argv"], want["args"]));
        }
        let mut got: Vec<String> = r["env"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let mut want_env: Vec<String> = want["env"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        got.sort();
        want_env.sort();
        if got != want_env {
            env_problems.push(format!("{kind}: env {got:?}, want {want_env:?}"));
        }
    }
    let none = records.is_empty();
    rec.set(
        "hooks.args",
        if none {
            Outcome::Fail("no hook ran".into())
        } else {
            Outcome::from_problems(arg_problems)
        },
    );
    rec.set(
        "hooks.env",
        if none {
            Outcome::Fail("no hook ran".into())
        } else {
            Outcome::from_problems(env_problems)
        },
    );

    // Namespaces: runtime namespace for prestart, createRuntime, poststart
    // and poststop; the container's for createContainer and startContainer.
    let host_mnt = ctx.host.ns.get("mount").copied();
    let mut ns_problems = Vec::new();
    for r in &records {
        let kind = r["name"].as_str().unwrap_or("?");
        let got = r["mntns"].as_u64();
        let (want, what) = if matches!(kind, "createContainer" | "startContainer") {
            (container_mnt, "the container's")
        } else {
            (host_mnt, "the runtime's")
        };
        if want.is_none() || got != want {
            ns_problems.push(format!(
                "{kind}: mount namespace {got:?}, want {what} {want:?}"
            ));
        }
    }
    rec.set(
        "hooks.namespace",
        if none {
            Outcome::Fail("no hook ran".into())
        } else {
            Outcome::from_problems(ns_problems)
        },
    );
}

/// A bundle whose process leaves `/tmp/rst-ran` when it runs, with hooks.
fn hook_bundle(ctx: &mut Ctx, name: &str) -> Result<(Bundle, HookDir), String> {
    let mut b = Bundle::new(ctx, name)?;
    let hd = HookDir::new(ctx, &mut b)?;
    b.sh("touch /tmp/rst-ran");
    Ok((b, hd))
}

fn no_processes_under(root: &Path) -> Result<(), String> {
    let left = processes_under(root);
    if left.is_empty() {
        Ok(())
    } else {
        Err(format!("processes left in the rootfs: {left:?}"))
    }
}

/// createRuntime fails: create fails and no container is left.
fn create_runtime_fails(ctx: &mut Ctx, rec: &mut Rec) {
    let name = "hooks.createRuntime.fail";
    let (mut b, hd) = match hook_bundle(ctx, "crfail") {
        Ok(x) => x,
        Err(e) => return rec.set(name, Outcome::Fail(e)),
    };
    b.config["hooks"]["createRuntime"] = json!([hd.hook("createRuntime", &["--exit", "1"], None)]);
    let id = ctx.id("crfail");
    let out = ctx.create(&id, &b);
    let o = if out.status.success() {
        Outcome::Fail("create succeeded although a createRuntime hook failed".into())
    } else if ctx.rt(&["state", &id]).status.success() {
        Outcome::Fail("create failed but the container still exists (state succeeds)".into())
    } else {
        match no_processes_under(&b.rootfs()) {
            Ok(()) => Outcome::Pass,
            Err(e) => Outcome::Fail(e),
        }
    };
    rec.set(name, o);
    ctx.destroy(&id);
}

/// startContainer fails: "the runtime MUST generate an error, stop the
/// container, and continue the lifecycle at step 12". The spec does not
/// mandate how the error is exposed (runtime.md, "Errors"), so `start` may
/// return before the hook ran; what is checked is that the program never
/// runs and the container ends up stopped (or gone).
fn start_container_fails(ctx: &mut Ctx, rec: &mut Rec) {
    let name = "hooks.startContainer.fail";
    let (mut b, hd) = match hook_bundle(ctx, "scfail") {
        Ok(x) => x,
        Err(e) => return rec.set(name, Outcome::Fail(e)),
    };
    b.config["hooks"]["startContainer"] =
        json!([hd.hook("startContainer", &["--exit", "1"], None)]);
    let id = ctx.id("scfail");
    let out = ctx.create(&id, &b);
    let o = if !out.status.success() {
        Outcome::Fail(format!("create failed: {}", describe(&out)))
    } else {
        let s = ctx.start(&id);
        let hook_ran = wait_until(Duration::from_secs(5), || {
            hd.records().iter().any(|r| r["name"] == "startContainer")
        });
        let stopped = wait_until(Duration::from_secs(5), || {
            ctx.status(&id).map_or(true, |st| st == "stopped")
        });
        let ran = b.in_rootfs("tmp/rst-ran").exists();
        let start_said = if s.status.success() {
            "start succeeded"
        } else {
            "start failed"
        };
        Outcome::check(hook_ran && !ran && stopped, || {
            format!(
                "{start_said}; hook ran: {hook_ran}; program ran: {ran}; container stopped: {stopped}"
            )
        })
    };
    rec.set(name, o);
    ctx.destroy(&id);
}

/// Failing poststart and poststop hooks only warn (runtime.md of
/// runtime-spec 1.0 and 1.1: "the runtime MUST log a warning, but the
/// remaining hooks and lifecycle continue as if the hook had succeeded").
/// One container each, so that one outcome cannot hide the other.
fn post_hooks_fail(ctx: &mut Ctx, rec: &mut Rec) {
    for kind in ["poststart", "poststop"] {
        let name = format!("hooks.{kind}.fail");
        let o = post_hook_fails(ctx, kind).unwrap_or_else(Outcome::Fail);
        rec.set(name, o);
    }
}

fn post_hook_fails(ctx: &mut Ctx, kind: &str) -> Result<Outcome, String> {
    let (mut b, hd) = hook_bundle(ctx, kind)?;
    b.config["hooks"][kind] = json!([hd.hook(kind, &["--exit", "1"], None)]);
    let id = ctx.id(kind);
    let out = ctx.create(&id, &b);
    if !out.status.success() {
        ctx.destroy(&id);
        return Err(format!("create failed: {}", describe(&out)));
    }
    let s = ctx.start(&id);
    let ran = wait_until(Duration::from_secs(5), || {
        b.in_rootfs("tmp/rst-ran").exists()
    });
    if kind == "poststart" {
        let hook_ran = hd.records().iter().any(|r| r["name"] == "poststart");
        ctx.destroy(&id);
        return Ok(if !s.status.success() {
            Outcome::Fail(format!(
                "start failed because poststart failed: {}",
                describe(&s)
            ))
        } else {
            Outcome::check(ran && hook_ran, || {
                format!("program ran: {ran}, poststart ran: {hook_ran}")
            })
        });
    }
    if !s.status.success() {
        ctx.destroy(&id);
        return Err(format!("start failed: {}", describe(&s)));
    }
    let _ = ctx.wait_status(&id, "stopped", STOP_TIMEOUT);
    let d = ctx.delete(&id);
    let gone = !ctx.rt(&["state", &id]).status.success();
    let stop_ran = wait_until(Duration::from_secs(2), || {
        hd.records().iter().any(|r| r["name"] == "poststop")
    });
    ctx.destroy(&id);
    Ok(if !d.status.success() {
        Outcome::Fail(format!(
            "delete failed because poststop failed: {}",
            describe(&d)
        ))
    } else {
        Outcome::check(gone && stop_ran, || {
            format!("container gone: {gone}, poststop ran: {stop_ran}")
        })
    })
}

/// A createRuntime hook that outlives its `timeout` is killed and create
/// fails.
fn timeout(ctx: &mut Ctx, rec: &mut Rec) {
    let name = "hooks.timeout";
    let (mut b, hd) = match hook_bundle(ctx, "timeout") {
        Ok(x) => x,
        Err(e) => return rec.set(name, Outcome::Fail(e)),
    };
    b.config["hooks"]["createRuntime"] =
        json!([hd.hook("createRuntime", &["--sleep", "30"], Some(1))]);
    let id = ctx.id("timeout");
    let t = Instant::now();
    let out = ctx.create(&id, &b);
    let took = t.elapsed();
    let hook_pid = hd
        .records()
        .first()
        .and_then(|r| r["hook_pid"].as_i64())
        .unwrap_or(0);
    let killed = wait_until(Duration::from_secs(3), || {
        hook_pid > 0 && !pid_alive(hook_pid)
    });
    let o = if out.status.success() {
        Outcome::Fail(format!(
            "create succeeded after {took:.1?} although the hook timed out"
        ))
    } else if hook_pid == 0 {
        Outcome::Fail(format!("the hook never ran: {}", describe(&out)))
    } else {
        Outcome::check(took < Duration::from_secs(10) && killed, || {
            format!(
                "create failed after {took:.1?}; hook still alive: {}",
                !killed
            )
        })
    };
    let ours = fs::read(format!("/proc/{hook_pid}/cmdline"))
        .is_ok_and(|c| c.starts_with(b"rst-hook\0hook\0"));
    if hook_pid > 0 && pid_alive(hook_pid) && ours {
        // SAFETY: kill(2) has no memory effects; the pid is our own hook's
        // (its command line was just checked).
        unsafe { libc::kill(hook_pid as i32, libc::SIGKILL) };
    }
    rec.set(name, o);
    ctx.destroy(&id);
}

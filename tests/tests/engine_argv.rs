//! The config.json and process.json files that containerd 1.6 (ctr and
//! the CRI plugin) and Podman 4.3 (through conmon) wrote on this machine,
//! each run with the exact argument forms those engines passed to their
//! runtime (`tests/fixtures/engine-argv/*.txt`, recorded by logging the
//! engines' runtime calls). Only what cannot exist here is adapted: the
//! rootfs, the host files the engines bind in, the cgroup path, the
//! command, and namespace paths (pointed at a live sandbox, as the
//! kubelet's pod would be).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use phantom_tests::{assert_success, describe, require_root, stdout, wait_until, Bundle, Runtime};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

fn fixture(name: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/engine-argv")
        .join(name);
    serde_json::from_slice(&fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Host files the engines bind in (hosts, hostname, resolv.conf, shm,
/// .containerenv) are recreated under `host`, and a writable `/out`
/// directory is added so the test can see what ran.
fn adapt(mut cfg: Value, host: &Path, out: &Path, script: &str) -> Value {
    fs::create_dir_all(host).unwrap();
    cfg["root"]["path"] = json!("rootfs");
    cfg["linux"]["cgroupsPath"] = Value::Null;
    cfg["process"]["args"] = json!(["sh", "-c", script]);
    cfg["process"]["terminal"] = json!(false);
    if let Some(mounts) = cfg["mounts"].as_array_mut() {
        for m in mounts.iter_mut() {
            let is_bind = m["type"] == "bind"
                || m["options"]
                    .as_array()
                    .is_some_and(|o| o.iter().any(|x| x == "bind" || x == "rbind"));
            let src = m["source"].as_str().map(PathBuf::from);
            if let (true, Some(src)) = (is_bind, src) {
                if src.exists() {
                    continue;
                }
                let name = src.file_name().unwrap().to_owned();
                let local = host.join(&name);
                if name == "shm" {
                    fs::create_dir_all(&local).unwrap();
                } else {
                    fs::write(&local, "127.0.0.1 localhost\n").unwrap();
                }
                m["source"] = json!(local);
            }
        }
        mounts.push(json!({"destination": "/out", "type": "bind",
                           "source": out, "options": ["rbind", "rw"]}));
    }
    cfg
}

fn adapt_process(mut p: Value, script: &str) -> Value {
    p["args"] = json!(["sh", "-c", script]);
    p["terminal"] = json!(false);
    p
}

struct Case {
    rt: Runtime,
    bundle: Bundle,
    out: PathBuf,
    _tmp: tempfile::TempDir,
}

fn case(config: &str, script: &str) -> Case {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    fs::create_dir_all(&out).unwrap();
    fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let cfg = adapt(fixture(config), &tmp.path().join("host"), &out, script);
    let bundle = Bundle::sh("true").with(|c| *c = cfg);
    Case {
        rt: Runtime::new(),
        bundle,
        out,
        _tmp: tmp,
    }
}

impl Case {
    fn log(&self) -> PathBuf {
        self._tmp.path().join("log.json")
    }

    fn wait_file(&self, name: &str) -> String {
        let p = self.out.join(name);
        assert!(
            wait_until(WAIT, || p.exists()),
            "{} never appeared",
            p.display()
        );
        let mut text = String::new();
        wait_until(WAIT, || {
            text = fs::read_to_string(&p).unwrap_or_default();
            text.ends_with('\n')
        });
        text
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let out = self.rt.cmd(args);
        assert_success(&out, &args.join(" "));
        stdout(&out)
    }
}

/// Podman via conmon: `--log-format=json --log F create --bundle B
/// --pid-file P ID`, `start`, `exec --pid-file --process --detach`,
/// `pause`, `resume`, `update --resources=FILE`, `kill ID 9`, `delete --force`.
#[test]
fn podman_conmon_forms() {
    require_root!();
    let c = case(
        "podman-run-d-config.json",
        "echo run-ok > /out/run; exec sleep 1000",
    );
    let id = c.rt.id("podman");
    c.rt.prepare(&id, &c.bundle);
    let log = c.log().display().to_string();
    let pidfile = c._tmp.path().join("pidfile").display().to_string();
    let bundle = c.bundle.path().display().to_string();
    c.ok(&[
        "--log-format=json",
        "--log",
        &log,
        "create",
        "--bundle",
        &bundle,
        "--pid-file",
        &pidfile,
        &id,
    ]);
    assert!(fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse::<i32>()
        .is_ok());
    c.ok(&["start", &id]);
    assert_eq!(c.wait_file("run"), "run-ok\n");

    let proc_file = c._tmp.path().join("exec-process-1");
    let p = adapt_process(fixture("podman-exec-process.json"), "id -u > /out/exec");
    fs::write(&proc_file, p.to_string()).unwrap();
    let exec_pid = c._tmp.path().join("exec_pid").display().to_string();
    c.ok(&[
        "--log-format=json",
        "--log",
        &log,
        "exec",
        "--pid-file",
        &exec_pid,
        "--process",
        &proc_file.display().to_string(),
        "--detach",
        &id,
    ]);
    // podman-exec-process.json runs as uid 1000.
    assert_eq!(c.wait_file("exec"), "1000\n");

    c.ok(&["pause", &id]);
    assert_eq!(c.rt.status(&id), "paused");
    c.ok(&["resume", &id]);
    assert_eq!(c.rt.status(&id), "running");
    let res = c._tmp.path().join("podman-update");
    fs::write(
        &res,
        r#"{"memory":{"limit":134217728},"pids":{"limit":64}}"#,
    )
    .unwrap();
    c.ok(&["update", &format!("--resources={}", res.display()), &id]);
    c.ok(&["kill", &id, "9"]);
    c.rt.wait_status(&id, "stopped", WAIT);
    c.ok(&["delete", "--force", &id]);
    assert!(!c.rt.try_state(&id).status.success());
    let log_text = fs::read_to_string(c.log()).unwrap_or_default();
    assert!(!log_text.contains("\"level\":\"error\""), "{log_text}");
}

/// containerd's runc v2 shim (ctr): `--root R --log F --log-format json`
/// then `create --bundle --pid-file`, `start`, `exec --process --detach
/// --pid-file`, `ps --format json`, `pause`, `resume`, `kill --all ID 9`,
/// `delete`, `delete --force`.
#[test]
fn containerd_ctr_forms() {
    require_root!();
    let c = case(
        "ctr-run-config.json",
        "echo run-ok > /out/run; exec sleep 1000",
    );
    let id = c.rt.id("ctr");
    c.rt.prepare(&id, &c.bundle);
    let log = c.log().display().to_string();
    let g = ["--log", log.as_str(), "--log-format", "json"];
    let pidfile = c._tmp.path().join("init.pid").display().to_string();
    let bundle = c.bundle.path().display().to_string();
    c.ok(&[
        &g[..],
        &["create", "--bundle", &bundle, "--pid-file", &pidfile, &id],
    ]
    .concat());
    c.ok(&[&g[..], &["start", &id]].concat());
    assert_eq!(c.wait_file("run"), "run-ok\n");

    let proc_file = c._tmp.path().join("runc-process1");
    let p = adapt_process(
        fixture("ctr-exec-process.json"),
        "echo exec-ok > /out/exec; sleep 1000",
    );
    fs::write(&proc_file, p.to_string()).unwrap();
    let exec_pid = c._tmp.path().join("exec.pid").display().to_string();
    c.ok(&[
        &g[..],
        &[
            "exec",
            "--process",
            &proc_file.display().to_string(),
            "--detach",
            "--pid-file",
            &exec_pid,
            &id,
        ],
    ]
    .concat());
    assert_eq!(c.wait_file("exec"), "exec-ok\n");

    let ps = c.ok(&[&g[..], &["ps", "--format", "json", &id]].concat());
    let pids: Vec<i32> = serde_json::from_str(&ps).unwrap_or_else(|e| panic!("{ps}: {e}"));
    let init: i32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let exec: i32 = fs::read_to_string(&exec_pid)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        pids.contains(&init) && pids.contains(&exec),
        "{pids:?} lacks {init} or {exec}"
    );

    c.ok(&[&g[..], &["pause", &id]].concat());
    c.ok(&[&g[..], &["resume", &id]].concat());
    c.ok(&[&g[..], &["kill", "--all", &id, "9"]].concat());
    c.rt.wait_status(&id, "stopped", WAIT);
    assert!(wait_until(WAIT, || !Path::new(&format!("/proc/{exec}"))
        .exists()
        || fs::read_to_string(format!("/proc/{exec}/stat"))
            .is_ok_and(|s| s.contains(") Z"))));
    c.ok(&[&g[..], &["delete", &id]].concat());
    // The shim always follows with delete --force: for a container that
    // is already gone that succeeds, as with runc.
    let again = c.rt.cmd(&[&g[..], &["delete", "--force", &id]].concat());
    assert!(again.status.success(), "{}", describe(&again));
}

/// Kubernetes through the CRI plugin: a pod sandbox, then a container that
/// joins its pid, ipc, uts and network namespaces by /proc path, `update
/// --resources -` with JSON on stdin, and an exec from execsync.
#[test]
fn containerd_cri_pod_forms() {
    require_root!();
    let sb = case("cri-sandbox-config.json", "exec sleep 1000");
    let sb_id = sb.rt.id("sandbox");
    sb.rt.create(&sb_id, &sb.bundle);
    sb.rt.start(&sb_id);
    let sb_pid = sb.rt.state(&sb_id)["pid"].as_i64().unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    fs::create_dir_all(&out).unwrap();
    let mut cfg = adapt(
        fixture("cri-container-config.json"),
        &tmp.path().join("host"),
        &out,
        "readlink /proc/self/ns/pid > /out/ns.tmp; readlink /proc/self/ns/ipc >> /out/ns.tmp; mv /out/ns.tmp /out/ns; exec sleep 1000",
    );
    for ns in cfg["linux"]["namespaces"].as_array_mut().unwrap() {
        if ns.get("path").is_some() {
            let name = match ns["type"].as_str().unwrap() {
                "network" => "net",
                other => other,
            };
            ns["path"] = json!(format!("/proc/{sb_pid}/ns/{name}"));
        }
    }
    let bundle = Bundle::sh("true").with(|c| *c = cfg);
    let rt = &sb.rt;
    let id = rt.id("cri");
    rt.create(&id, &bundle);
    rt.start(&id);
    let ns_file = out.join("ns");
    assert!(wait_until(WAIT, || fs::read_to_string(&ns_file)
        .is_ok_and(|s| s.lines().count() == 2)));
    let inside = fs::read_to_string(&ns_file).unwrap();
    let want = format!(
        "{}\n{}\n",
        fs::read_link(format!("/proc/{sb_pid}/ns/pid"))
            .unwrap()
            .display(),
        fs::read_link(format!("/proc/{sb_pid}/ns/ipc"))
            .unwrap()
            .display()
    );
    assert_eq!(
        inside, want,
        "the container did not join the sandbox's namespaces"
    );

    let mut update = rt.command(&["update", "--resources", "-", &id]);
    update
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = update.spawn().unwrap();
    std::io::Write::write_all(
        child.stdin.as_mut().unwrap(),
        br#"{"cpu":{"shares":256,"quota":20000,"period":100000},"memory":{"limit":67108864}}"#,
    )
    .unwrap();
    drop(child.stdin.take());
    let res = child.wait_with_output().unwrap();
    assert_success(&res, "update --resources -");

    let proc_file = tmp.path().join("runc-process2");
    let p = adapt_process(
        fixture("cri-execsync-process.json"),
        "echo exec-ok > /out/exec",
    );
    fs::write(&proc_file, p.to_string()).unwrap();
    let exec_pid = tmp.path().join("exec.pid").display().to_string();
    let out_exec = rt.cmd(&[
        "exec",
        "--process",
        &proc_file.display().to_string(),
        "--detach",
        "--pid-file",
        &exec_pid,
        &id,
    ]);
    assert_success(&out_exec, "exec");
    assert!(wait_until(WAIT, || out.join("exec").exists()));

    for cid in [&id, &sb_id] {
        let k = rt.cmd(&["kill", "--all", cid, "9"]);
        assert_success(&k, "kill --all");
        rt.wait_status(cid, "stopped", WAIT);
        rt.delete(cid);
    }
}

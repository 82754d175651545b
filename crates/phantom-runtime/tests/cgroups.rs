//! The cgroup manager on the real machine (as root): a v1/hybrid host
//! through /sys/fs/cgroup, and cgroup v2 through a private cgroup2 mount.
//! Each test uses its own cgroup path and cleans up in a guard, even when
//! an assertion fails. Without root they skip with a message.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use oci_spec::runtime::{Linux, LinuxResources};
use phantom_runtime::cgroups::{attached_device_programs, container_device_rules, Cgroup, Layout};

static SEQ: AtomicUsize = AtomicUsize::new(0);

fn unique_parent() -> String {
    format!(
        "/phantom-cgtest-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    )
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Kills the children, thaws and removes the cgroup and its parent in
/// every hierarchy, and unmounts a private mount: on success and on panic.
struct Guard {
    children: Vec<Child>,
    cg: Option<Cgroup>,
    parents: Vec<PathBuf>,
    mount: Option<PathBuf>,
}

impl Guard {
    fn new() -> Guard {
        Guard {
            children: Vec::new(),
            cg: None,
            parents: Vec::new(),
            mount: None,
        }
    }

    fn spawn(&mut self, script: &str) -> usize {
        let child = Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sh");
        self.children.push(child);
        self.children.len() - 1
    }

    fn pid(&self, i: usize) -> i32 {
        self.children[i].id() as i32
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(cg) = &self.cg {
            let _ = cg.thaw();
        }
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(cg) = &self.cg {
            if let Err(e) = cg.destroy() {
                eprintln!("cleanup: {e}");
            }
        }
        for p in &self.parents {
            let _ = fs::remove_dir(p);
        }
        if let Some(m) = &self.mount {
            let _ = Command::new("umount").arg("-l").arg(m).status();
            let _ = fs::remove_dir(m);
        }
    }
}

fn res(json: &str) -> LinuxResources {
    serde_json::from_str(json).unwrap()
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = read(Path::new(&format!("/proc/{pid}/stat")));
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // Fields 14 and 15 of stat; `rest` starts at field 3.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn proc_state(pid: i32) -> String {
    let status = read(Path::new(&format!("/proc/{pid}/status")));
    status
        .lines()
        .find(|l| l.starts_with("State:"))
        .unwrap_or("")
        .to_string()
}

/// Ask a `read _; ...` child to go on and collect its output lines.
fn release(stdin: &mut Option<ChildStdin>, stdout: &mut Option<ChildStdout>) -> Vec<String> {
    let mut i = stdin.take().unwrap();
    i.write_all(b"go\n").unwrap();
    drop(i);
    BufReader::new(stdout.take().unwrap())
        .lines()
        .map(|l| l.unwrap())
        .collect()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "timed out waiting for {what}"
        );
        sleep(Duration::from_millis(20));
    }
}

/// Waits for a line on stdin, then opens /dev/kmsg (c 1:11, not in the
/// default allowlist) and writes /dev/null (allowed). Its stderr is
/// opened by the test, outside the cgroup.
const DEVICE_PROBE: &str = "read _; \
    if true </dev/kmsg; then echo KMSG_OPEN; else echo KMSG_DENIED; fi; \
    if echo x >/dev/null; then echo NULL_OK; else echo NULL_DENIED; fi";

fn deny_all_linux() -> Linux {
    serde_json::from_str(r#"{"resources":{"devices":[{"allow":false,"access":"rwm"}]}}"#).unwrap()
}

#[test]
fn v1_hybrid_host_end_to_end() {
    if !is_root() {
        eprintln!("skipped: needs root (creates cgroups under /sys/fs/cgroup)");
        return;
    }
    let layout = Layout::detect().unwrap();
    if !matches!(layout, Layout::V1 { .. }) {
        eprintln!("skipped: this host is not cgroup v1/hybrid ({layout:?})");
        return;
    }
    let parent = unique_parent();
    let cg = Cgroup::resolve(&layout, Some(&format!("{parent}/c")), "c").unwrap();
    let mut g = Guard::new();
    g.parents = cg
        .dirs()
        .iter()
        .map(|d| d.parent().unwrap().to_path_buf())
        .collect();
    g.cg = Some(cg.clone());

    cg.create().unwrap();
    for d in cg.dirs() {
        assert!(d.is_dir(), "{} was not created", d.display());
    }
    let mem = cg.v1["memory"].clone();
    let mut r = res(
        r#"{"memory":{"limit":67108864,"swap":67108864},"pids":{"limit":32},
            "cpu":{"quota":50000,"period":100000,"shares":512},
            "hugepageLimits":[{"pageSize":"2MB","limit":2097152}]}"#,
    );
    r.set_devices(Some(container_device_rules(&deny_all_linux())));
    cg.apply(&r).unwrap();
    assert_eq!(read(&mem.join("memory.limit_in_bytes")).trim(), "67108864");
    assert_eq!(
        read(&mem.join("memory.memsw.limit_in_bytes")).trim(),
        "67108864"
    );
    assert_eq!(read(&cg.v1["pids"].join("pids.max")).trim(), "32");
    assert_eq!(read(&cg.v1["cpu"].join("cpu.cfs_quota_us")).trim(), "50000");
    assert_eq!(read(&cg.v1["cpu"].join("cpu.shares")).trim(), "512");
    if let Some(h) = cg.v1.get("hugetlb") {
        assert_eq!(
            read(&h.join("hugetlb.2MB.limit_in_bytes")).trim(),
            "2097152"
        );
    }
    let list = read(&cg.v1["devices"].join("devices.list"));
    assert!(
        list.contains("c 1:3 rwm") && list.contains("c 136:* rwm"),
        "{list}"
    );
    assert!(!list.contains("a *:* rwm"), "{list}");

    // bfq's weight file exists in child cgroups (not in the root), cfq's
    // (and leaf weights) do not.
    let blkio = cg.v1["blkio"].clone();
    if blkio.join("blkio.bfq.weight").exists() && !blkio.join("blkio.weight").exists() {
        cg.apply(&res(r#"{"blockIO":{"weight":300}}"#)).unwrap();
        assert_eq!(read(&blkio.join("blkio.bfq.weight")).trim(), "300");
    }
    // What this host cannot do fails clearly.
    if !blkio.join("blkio.leaf_weight").exists() {
        let e = cg
            .apply(&res(r#"{"blockIO":{"leafWeight":300}}"#))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("linux.resources.blockIO.leafWeight: not supported here"),
            "{e}"
        );
    }
    if !cg.v1.contains_key("net_cls") {
        let e = cg
            .apply(&res(r#"{"network":{"classID":1}}"#))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("linux.resources.network.classID: not supported here"),
            "{e}"
        );
    }

    // A sleeping child joins every hierarchy.
    let sleeper = g.spawn("exec sleep 30");
    let pid = g.pid(sleeper);
    cg.add_pid(pid).unwrap();
    let pc = read(Path::new(&format!("/proc/{pid}/cgroup")));
    for line in pc.lines() {
        let path = line.splitn(3, ':').nth(2).unwrap();
        assert_eq!(path, format!("{parent}/c"), "{line} in\n{pc}");
    }
    assert_eq!(cg.pids().unwrap(), [pid]);

    // Device rules hold for a process in the cgroup.
    let probe = g.spawn(DEVICE_PROBE);
    cg.add_pid(g.pid(probe)).unwrap();
    let (mut i, mut o) = (
        g.children[probe].stdin.take(),
        g.children[probe].stdout.take(),
    );
    let out = release(&mut i, &mut o);
    assert_eq!(out, ["KMSG_DENIED", "NULL_OK"]);

    // Freeze a busy loop: it stops using CPU; thaw: it goes on.
    let busy = g.spawn("while :; do :; done");
    let bpid = g.pid(busy);
    cg.add_pid(bpid).unwrap();
    wait_for("the busy loop to run", || cpu_ticks(bpid) > 0);
    cg.freeze().unwrap();
    assert!(cg.is_frozen());
    assert_eq!(
        read(&cg.v1["freezer"].join("freezer.state")).trim(),
        "FROZEN"
    );
    let state = proc_state(bpid);
    let t0 = cpu_ticks(bpid);
    sleep(Duration::from_millis(300));
    assert_eq!(cpu_ticks(bpid), t0, "frozen process used CPU ({state})");
    eprintln!("v1 frozen busy loop: {state}");
    cg.thaw().unwrap();
    assert!(!cg.is_frozen());
    wait_for("the thawed loop to run", || cpu_ticks(bpid) > t0);

    let s = cg.stats().unwrap();
    assert!(s["cpu"]["usage"]["total"].as_u64().unwrap() > 0, "{s}");
    assert!(s["memory"]["usage"]["usage"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(s["memory"]["usage"]["limit"], 67108864, "{s}");
    assert!(s["pids"]["current"].as_u64().unwrap() >= 2, "{s}");
    assert_eq!(s["pids"]["limit"], 32, "{s}");
    assert!(
        s["cpu"]["throttling"]["periods"].as_u64().unwrap_or(0) > 0,
        "{s}"
    );
    assert_eq!(cg.oom_kill_count(), 0);

    // Busy: rmdir must fail while processes are inside, naming the path.
    let e = cg.destroy().unwrap_err().to_string();
    assert!(
        e.contains("processes are still inside") && e.contains(&parent),
        "{e}"
    );
    for c in &mut g.children {
        c.kill().unwrap();
        c.wait().unwrap();
    }
    g.children.clear();
    cg.destroy().unwrap();
    for d in cg.dirs() {
        assert!(!d.exists(), "{} still exists", d.display());
    }
    cg.destroy().unwrap();
}

#[test]
fn v2_private_mount() {
    if !is_root() {
        eprintln!("skipped: needs root (mounts cgroup2)");
        return;
    }
    let mut g = Guard::new();
    let mnt = tempfile::Builder::new()
        .prefix("phantom-cg2-")
        .tempdir()
        .unwrap()
        .keep();
    let st = Command::new("mount")
        .args(["-t", "cgroup2", "none"])
        .arg(&mnt)
        .status()
        .unwrap();
    if !st.success() {
        let _ = fs::remove_dir(&mnt);
        eprintln!("skipped: cannot mount cgroup2 on {}", mnt.display());
        return;
    }
    g.mount = Some(mnt.clone());
    let layout = Layout::v2_at(&mnt);
    let parent = unique_parent();
    let cg = Cgroup::resolve(&layout, Some(&format!("{parent}/c")), "c").unwrap();
    g.parents = vec![mnt.join(parent.trim_start_matches('/'))];
    g.cg = Some(cg.clone());
    cg.create().unwrap();
    let dir = cg.unified.clone().unwrap();
    assert!(dir.is_dir());
    let controllers = read(&dir.join("cgroup.controllers"));
    let have = |c: &str| controllers.split_whitespace().any(|x| x == c);
    eprintln!("cgroup2 controllers offered here: {:?}", controllers.trim());

    // Limits: applied where the controller is offered, a clear error where not.
    for (json, ctrl, file, want) in [
        (r#"{"pids":{"limit":32}}"#, "pids", "pids.max", "32"),
        (
            r#"{"memory":{"limit":67108864}}"#,
            "memory",
            "memory.max",
            "67108864",
        ),
        (r#"{"cpu":{"shares":1024}}"#, "cpu", "cpu.weight", "39"),
    ] {
        match cg.apply(&res(json)) {
            Ok(()) => {
                assert!(have(ctrl), "{ctrl} applied without the controller");
                assert_eq!(read(&dir.join(file)).trim(), want);
            }
            Err(e) => {
                assert!(!have(ctrl), "{ctrl} is offered but: {e}");
                let e = e.to_string();
                assert!(
                    e.contains(&format!(
                        "the {ctrl} controller is not enabled for this cgroup"
                    )),
                    "{e}"
                );
                assert!(e.contains("cgroup.controllers"), "{e}");
            }
        }
    }

    // Devices: an eBPF program, replaced (not stacked) on update.
    let mut r = LinuxResources::default();
    r.set_devices(Some(container_device_rules(&deny_all_linux())));
    cg.apply(&r).unwrap();
    let progs = attached_device_programs(&dir).unwrap();
    assert_eq!(progs.len(), 1, "{progs:?}");
    let probe = g.spawn(DEVICE_PROBE);
    cg.add_pid(g.pid(probe)).unwrap();
    let (mut i, mut o) = (
        g.children[probe].stdin.take(),
        g.children[probe].stdout.take(),
    );
    assert_eq!(release(&mut i, &mut o), ["KMSG_DENIED", "NULL_OK"]);
    // Update: allow everything but writes to /dev/null. The new filter is
    // in force alone (the old one would deny /dev/kmsg).
    let mut r2 = LinuxResources::default();
    r2.set_devices(Some(
        serde_json::from_str(
            r#"[{"allow":true,"access":"rwm"},{"allow":false,"type":"c","major":1,"minor":3,"access":"w"}]"#,
        )
        .unwrap(),
    ));
    cg.apply(&r2).unwrap();
    let again = attached_device_programs(&dir).unwrap();
    assert_eq!(again.len(), 1, "{again:?}");
    assert_ne!(again, progs, "the old program was not replaced");
    let probe = g.spawn(DEVICE_PROBE);
    cg.add_pid(g.pid(probe)).unwrap();
    let (mut i, mut o) = (
        g.children[probe].stdin.take(),
        g.children[probe].stdout.take(),
    );
    assert_eq!(release(&mut i, &mut o), ["KMSG_OPEN", "NULL_DENIED"]);

    // Processes, freeze (cgroup.freeze needs no controller), thaw.
    let sleeper = g.spawn("exec sleep 30");
    let pid = g.pid(sleeper);
    cg.add_pid(pid).unwrap();
    let pc = read(Path::new(&format!("/proc/{pid}/cgroup")));
    assert!(pc.lines().any(|l| l == format!("0::{parent}/c")), "{pc}");
    assert!(cg.pids().unwrap().contains(&pid));
    let busy = g.spawn("while :; do :; done");
    let bpid = g.pid(busy);
    cg.add_pid(bpid).unwrap();
    wait_for("the busy loop to run", || cpu_ticks(bpid) > 0);
    cg.freeze().unwrap();
    assert!(cg.is_frozen());
    assert!(read(&dir.join("cgroup.events")).contains("frozen 1"));
    let state = proc_state(bpid);
    let t0 = cpu_ticks(bpid);
    sleep(Duration::from_millis(300));
    assert_eq!(cpu_ticks(bpid), t0, "frozen process used CPU ({state})");
    eprintln!("v2 frozen busy loop: {state}");
    cg.thaw().unwrap();
    assert!(!cg.is_frozen());
    wait_for("the thawed loop to run", || cpu_ticks(bpid) > t0);
    let s = cg.stats().unwrap();
    assert!(s["cpu"]["usage"]["total"].as_u64().unwrap() > 0, "{s}");

    for c in &mut g.children {
        c.kill().unwrap();
        c.wait().unwrap();
    }
    g.children.clear();
    cg.destroy().unwrap();
    assert!(!dir.exists());
}

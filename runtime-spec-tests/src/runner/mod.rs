//! `rst`: the conformance runner.
//!
//! ```text
//! RUNTIME=/usr/bin/crun rst [--filter SUBSTR] [--keep] [--list]
//! ```
//!
//! Environment:
//! * `RUNTIME`: the runtime binary, or a bare name looked up in PATH
//!   (default and `phantom`: `<workspace>/target/debug/phantom`).
//! * `RST_RUNTIME_NAME`: its name in expected.tsv (default: the binary's
//!   file name, e.g. `crun`).
//! * `RST_CHECKER`: the static `rst-checker` (default: looked up under
//!   `<workspace>/target/*/debug/`).
//! * `RST_EXPECTED`: the expectations file (default
//!   `runtime-spec-tests/expected.tsv`).
//!
//! Prints one TAP line per check, then exactly `N passed, M failed, K
//! skipped`. Exits 1 when a result differs from expected.tsv (an expected
//! failure that now passes is only reported), 2 on a setup error.

mod bundle;
mod config;
mod console;
mod exec;
mod expected;
mod features;
mod hooks;
mod host;
mod lifecycle;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub use bundle::Bundle;
use expected::Expected;
use host::HostFacts;

use crate::outcome::{one_line, Outcome};

/// Upper bound for one runtime command.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a container's process may take to stop by itself.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Results of one group, by check name.
#[derive(Default)]
pub struct Rec {
    results: Vec<(String, Outcome)>,
}

impl Rec {
    pub fn set(&mut self, name: impl Into<String>, o: Outcome) {
        let name = name.into();
        if let Some(r) = self.results.iter_mut().find(|(n, _)| *n == name) {
            r.1 = o;
        } else {
            self.results.push((name, o));
        }
    }

    pub fn get(&self, name: &str) -> Option<&Outcome> {
        self.results.iter().find(|(n, _)| n == name).map(|(_, o)| o)
    }
}

/// A group of checks that share containers.
pub struct Group {
    pub name: &'static str,
    /// Every check the group reports, declared up front so that `--list`
    /// and `--filter` work and a check that is never reported fails.
    pub checks: Vec<String>,
    pub run: RunFn,
}

/// How a group runs: fills `Rec` using the `Ctx`.
pub type RunFn = Box<dyn Fn(&mut Ctx, &mut Rec)>;

pub struct Opts {
    pub filter: Option<String>,
    pub keep: bool,
    pub list: bool,
}

/// Everything a group needs: the runtime, the work directory, host facts,
/// and the list of what to clean up.
pub struct Ctx {
    pub runtime: PathBuf,
    pub runtime_name: String,
    /// Private work directory (bundles, hook logs, the `--root`).
    pub work: PathBuf,
    pub state_root: PathBuf,
    pub base_rootfs: PathBuf,
    pub checker: PathBuf,
    pub host: HostFacts,
    /// Parent of every container's cgroupsPath: `/rst-<pid>`.
    pub cgroup_parent: String,
    /// `RST_SYSTEMD_CGROUP=1`: the runtime gets `--systemd-cgroup` and each
    /// container's cgroupsPath is `system.slice:rst:<id>` (its cgroup is
    /// then the unit `rst-<id>.scope` in `system.slice`).
    pub systemd: bool,
    created: Vec<String>,
    holders: Vec<Child>,
    counter: usize,
    keep: bool,
}

impl Ctx {
    /// A fresh container id.
    pub fn id(&mut self, what: &str) -> String {
        self.counter += 1;
        format!("rst-{}-{what}-{}", std::process::id(), self.counter)
    }

    /// `RUNTIME --root ROOT args...`.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let mut c = Command::new(&self.runtime);
        c.arg("--root").arg(&self.state_root);
        if self.systemd {
            c.arg("--systemd-cgroup");
        }
        c.args(args);
        c
    }

    /// Runs a runtime command; a timeout or spawn failure becomes an
    /// Output with exit status 255 and the error as stderr.
    pub fn rt<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Output {
        exec::output(self.command(args), CMD_TIMEOUT).unwrap_or_else(failed_output)
    }

    /// `create --bundle B --pid-file B/pid ID`, with the container's stdout
    /// and stderr going to `B/stdout` and `B/stderr`.
    pub fn create(&mut self, id: &str, b: &Bundle) -> Output {
        self.create_with(id, b, &[])
    }

    pub fn create_with(&mut self, id: &str, b: &Bundle, extra: &[&str]) -> Output {
        if let Err(e) = b.write(self, id) {
            return failed_output(e);
        }
        self.created.push(id.to_owned());
        let mut cmd = self.command(&["create", "--bundle"]);
        cmd.arg(&b.dir).arg("--pid-file").arg(b.dir.join("pid"));
        cmd.args(extra).arg(id);
        let (out, err) = (b.dir.join("stdout"), b.dir.join("stderr"));
        let files = (|| {
            let o = fs::File::create(&out)?;
            let e = fs::File::create(&err)?;
            Ok::<_, std::io::Error>((o, e))
        })();
        let (o, e) = match files {
            Ok(f) => f,
            Err(e) => return failed_output(format!("create output files: {e}")),
        };
        cmd.stdin(std::process::Stdio::null()).stdout(o).stderr(e);
        match exec::wait(cmd, CMD_TIMEOUT) {
            Ok(status) => Output {
                status,
                stdout: fs::read(&out).unwrap_or_default(),
                stderr: fs::read(&err).unwrap_or_default(),
            },
            Err(e) => failed_output(e),
        }
    }

    pub fn start(&self, id: &str) -> Output {
        self.rt(&["start", id])
    }

    pub fn kill(&self, id: &str, sig: &str) -> Output {
        self.rt(&["kill", id, sig])
    }

    /// `delete ID` (no --force); forgets the id when it succeeds.
    pub fn delete(&mut self, id: &str) -> Output {
        let out = self.rt(&["delete", id]);
        if out.status.success() {
            self.created.retain(|c| c != id);
        }
        out
    }

    /// Best-effort `kill -9` and `delete --force`.
    pub fn destroy(&mut self, id: &str) {
        let quick = Duration::from_secs(10);
        let _ = exec::output(self.command(&["kill", id, "KILL"]), quick);
        let _ = exec::output(self.command(&["delete", "--force", id]), quick);
        if exec::output(self.command(&["state", id]), quick).is_ok_and(|o| !o.status.success()) {
            self.created.retain(|c| c != id);
        }
    }

    /// `state ID` as JSON.
    pub fn state(&self, id: &str) -> Result<Value, String> {
        let out = self.rt(&["state", id]);
        if !out.status.success() {
            return Err(format!("state {id} failed: {}", exec::describe(&out)));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| {
            format!(
                "state {id} is not JSON ({e}): {}",
                one_line(&String::from_utf8_lossy(&out.stdout))
            )
        })
    }

    pub fn status(&self, id: &str) -> Result<String, String> {
        let s = self.state(id)?;
        s.get("status")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("state {id} has no string status: {s}"))
    }

    /// Polls `state` until the status is `want`.
    pub fn wait_status(&self, id: &str, want: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = self.status(id)?;
            if last == want {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{id} is still {last} after {timeout:?}, want {want}"
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// create, start, wait for the process to exit, delete. Returns the
    /// container's stdout.
    pub fn run_to_end(&mut self, b: &Bundle, what: &str) -> Result<String, String> {
        let id = self.id(what);
        let out = self.create(&id, b);
        if !out.status.success() {
            self.destroy(&id);
            return Err(format!("create failed: {}", exec::describe(&out)));
        }
        let started = self.start(&id);
        if !started.status.success() {
            self.destroy(&id);
            return Err(format!("start failed: {}", exec::describe(&started)));
        }
        let waited = self.wait_status(&id, "stopped", STOP_TIMEOUT);
        let stdout = fs::read_to_string(b.dir.join("stdout")).unwrap_or_default();
        if let Err(e) = waited {
            self.destroy(&id);
            return Err(e);
        }
        let del = self.delete(&id);
        if !del.status.success() {
            self.destroy(&id);
        }
        Ok(stdout)
    }

    /// Keeps a namespace-holder process until the end of the run.
    pub fn hold(&mut self, c: Child) {
        self.holders.push(c);
    }

    /// The cgroupsPath a container gets unless its config sets one.
    pub fn cgroups_path(&self, id: &str) -> String {
        if self.systemd {
            format!("{SYSTEMD_SLICE}:{SYSTEMD_PREFIX}:{id}")
        } else {
            format!("{}/{id}", self.cgroup_parent)
        }
    }

    /// Directories of `cgroups_path` that exist in any hierarchy.
    pub fn cgroup_dirs(&self, cgroups_path: &str) -> Vec<PathBuf> {
        let rel = cgroup_rel(cgroups_path);
        let rel = rel.trim_start_matches('/');
        fs::read_dir("/sys/fs/cgroup")
            .map(|it| {
                it.flatten()
                    .map(|h| h.path().join(rel))
                    .filter(|d| d.is_dir())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn cleanup(&mut self) {
        for id in std::mem::take(&mut self.created).iter().rev() {
            self.destroy(id);
        }
        for mut h in std::mem::take(&mut self.holders) {
            let _ = h.kill();
            let _ = h.wait();
        }
        // Container processes whose runtime lost track of them (a killed
        // create, a hook past its timeout): their root is in our work dir.
        for p in exec::processes_under(&self.work) {
            // SAFETY: kill(2) has no memory effects; the process's root
            // directory lies in this run's private work directory.
            unsafe { libc::kill(p as i32, libc::SIGKILL) };
        }
        // systemd mode: units the runtime left behind are stopped (their
        // cgroups go with them).
        if self.systemd {
            stop_stale_units(&format!("{SYSTEMD_PREFIX}-rst-{}-", std::process::id()));
        }
        // Remove our cgroup subtree from every hierarchy, leaves first.
        let rel = self.cgroup_parent.trim_start_matches('/').to_owned();
        if let Ok(hier) = fs::read_dir("/sys/fs/cgroup") {
            for h in hier.flatten() {
                remove_cgroup_tree(&h.path().join(&rel));
            }
        }
        if self.keep {
            let _ = fs::write(self.work.join(".kept"), "left by rst --keep\n");
            eprintln!("# --keep: work directory left at {}", self.work.display());
        } else {
            remove_work_dir(&self.work);
        }
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// Removes the work directory unless something is still mounted inside it
/// on the host (a runtime that mounted in the wrong namespace): deleting
/// through such a mount could delete host files.
fn remove_work_dir(work: &Path) {
    let w = work.to_string_lossy().into_owned();
    let inside: Vec<String> = crate::procfs::mountinfo()
        .unwrap_or_default()
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| p == &w || p.starts_with(&format!("{w}/")))
        .collect();
    if inside.is_empty() {
        let _ = fs::remove_dir_all(work);
    } else {
        println!(
            "# warning: not removing {}: still mounted on the host: {}",
            work.display(),
            inside.join(", ")
        );
    }
}

/// The slice and unit prefix of the systemd mode's cgroupsPath.
const SYSTEMD_SLICE: &str = "system.slice";
const SYSTEMD_PREFIX: &str = "rst";

/// A cgroupsPath as a path below the hierarchy root: a cgroupfs path as it
/// is; systemd's `slice:prefix:name` where systemd puts that unit (each
/// `-` of the slice name opens a level: `a-b.slice` is
/// `a.slice/a-b.slice`; the unit is `prefix-name.scope`).
pub fn cgroup_rel(cgroups_path: &str) -> String {
    let parts: Vec<&str> = cgroups_path.split(':').collect();
    let [slice, prefix, name] = parts[..] else {
        return cgroups_path.to_owned();
    };
    let slice = if slice.is_empty() {
        SYSTEMD_SLICE
    } else {
        slice
    };
    let mut path = String::new();
    let base = slice.trim_end_matches(".slice");
    if base != "-" {
        let mut acc = String::new();
        for part in base.split('-') {
            acc.push_str(part);
            path.push('/');
            path.push_str(&acc);
            path.push_str(".slice");
            acc.push('-');
        }
    }
    let unit = if name.ends_with(".slice") {
        name.to_owned()
    } else if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    format!("{path}/{unit}")
}

/// Stops the systemd units (scopes in `system.slice`) whose names start
/// with `prefix`, as a runtime's delete should have; the cgroup goes with
/// the unit.
fn stop_stale_units(prefix: &str) {
    let dir = Path::new("/sys/fs/cgroup").join(SYSTEMD_SLICE);
    let Ok(entries) = fs::read_dir(&dir) else {
        return;
    };
    let units: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix) && n.ends_with(".scope"))
        .collect();
    if units.is_empty() {
        return;
    }
    println!(
        "# note: stopping {} systemd unit(s) the runtime left: {}",
        units.len(),
        units.join(" ")
    );
    let mut stop = Command::new("systemctl");
    stop.arg("stop").args(&units);
    let _ = exec::output(stop, Duration::from_secs(60));
    let mut reset = Command::new("systemctl");
    reset.arg("reset-failed").args(&units);
    let _ = exec::output(reset, Duration::from_secs(30));
}

fn remove_cgroup_tree(dir: &Path) {
    if !dir.is_dir() {
        return;
    }
    if let Ok(children) = fs::read_dir(dir) {
        for c in children.flatten() {
            if c.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&c.path());
            }
        }
    }
    // Tasks killed just now may take a moment to leave.
    exec::wait_until(Duration::from_secs(2), || {
        fs::remove_dir(dir).is_ok() || !dir.exists()
    });
}

/// Removes what a killed earlier run left: its container processes (found
/// by their root directory under its work directory), its cgroups and the
/// directory itself. Runs whose rst process is alive are left alone.
fn cleanup_stale_runs() {
    let Ok(entries) = fs::read_dir("/tmp") else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("rst-")
            .and_then(|p| p.parse::<i64>().ok())
        else {
            continue;
        };
        if exec::pid_alive(pid) || !e.path().is_dir() || e.path().join(".kept").exists() {
            continue;
        }
        println!(
            "# note: cleaning up after an earlier run that was killed: {}",
            e.path().display()
        );
        for p in exec::processes_under(&e.path()) {
            // SAFETY: kill(2) has no memory effects; the process's root
            // directory lies in the dead run's private work directory.
            unsafe { libc::kill(p as i32, libc::SIGKILL) };
        }
        if let Ok(hier) = fs::read_dir("/sys/fs/cgroup") {
            for h in hier.flatten() {
                remove_cgroup_tree(&h.path().join(&name));
            }
        }
        remove_work_dir(&e.path());
    }
}

pub fn failed_output(e: String) -> Output {
    use std::os::unix::process::ExitStatusExt;
    Output {
        status: std::process::ExitStatus::from_raw(255 << 8),
        stdout: Vec::new(),
        stderr: e.into_bytes(),
    }
}

/// `<workspace>` (the parent of this crate's directory).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// `RUNTIME` as a path: empty or `phantom` is this workspace's debug build,
/// another bare name is looked up in PATH and the sbin directories.
fn resolve_runtime(r: &str) -> PathBuf {
    if r.is_empty() || r == "phantom" {
        return workspace().join("target/debug/phantom");
    }
    if r.contains('/') {
        return PathBuf::from(r);
    }
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain([
            "/usr/local/sbin",
            "/usr/sbin",
            "/sbin",
            "/usr/local/bin",
            "/usr/bin",
            "/bin",
        ])
        .map(|d| Path::new(d).join(r))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| PathBuf::from(r))
}

/// Whether an ELF file has no program interpreter (is statically linked).
fn is_static_elf(path: &Path) -> Result<bool, String> {
    let b = fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 {
        return Err(format!("{} is not a 64-bit ELF file", path.display()));
    }
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(b[0x20..0x28].try_into().unwrap_or([0; 8])) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    for i in 0..phnum {
        let o = phoff + i * phentsize;
        if o + 4 > b.len() {
            break;
        }
        // PT_INTERP
        if u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or([0; 4])) == 3 {
            return Ok(false);
        }
    }
    Ok(true)
}

fn find_checker() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("RST_CHECKER") {
        return Ok(PathBuf::from(p));
    }
    let target = workspace().join("target");
    let candidates = [
        "x86_64-unknown-linux-musl/debug",
        "x86_64-unknown-linux-gnu/debug",
        "x86_64-unknown-linux-musl/release",
        "x86_64-unknown-linux-gnu/release",
    ];
    for c in candidates {
        let p = target.join(c).join("rst-checker");
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(format!(
        "no static rst-checker under {}/<triple>/debug: run `make conformance`, or build it \
         with `RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build -p runtime-spec-tests \
         --bin rst-checker --target x86_64-unknown-linux-gnu` and/or set RST_CHECKER",
        target.display()
    ))
}

/// crun 1.8.1 refuses hybrid hosts whose cgroup2 mount still has a
/// controller; binding hugetlb to v1 frees it (as root, once per boot).
fn prepare_for_crun(name: &str) {
    if !name.contains("crun") {
        return;
    }
    let controllers =
        fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers").unwrap_or_default();
    if controllers.split_whitespace().any(|c| c == "hugetlb") {
        println!(
            "# note: crun 1.8.1 refuses this hybrid cgroup layout while cgroup2 holds hugetlb; \
             mounting hugetlb as v1 at /sys/fs/cgroup/hugetlb"
        );
        let _ = fs::create_dir_all("/sys/fs/cgroup/hugetlb");
        let st = Command::new("mount")
            .args([
                "-t",
                "cgroup",
                "-o",
                "hugetlb",
                "cgroup",
                "/sys/fs/cgroup/hugetlb",
            ])
            .status();
        if !st.is_ok_and(|s| s.success()) {
            println!("# note: mounting hugetlb failed; crun may refuse every container");
        }
    }
}

fn groups() -> Vec<Group> {
    let mut g = vec![lifecycle::group(), hooks::group()];
    g.extend(config::groups());
    g.push(features::group());
    g
}

fn parse_opts(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        filter: None,
        keep: false,
        list: false,
    };
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--filter" => o.filter = Some(it.next().ok_or("--filter needs a value")?.clone()),
            s if s.starts_with("--filter=") => o.filter = Some(s["--filter=".len()..].to_owned()),
            "--keep" => o.keep = true,
            "--list" => o.list = true,
            "-h" | "--help" => {
                return Err(
                    "usage: RUNTIME=/path/to/runtime rst [--filter SUBSTR] [--keep] [--list]"
                        .into(),
                )
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(o)
}

pub fn main(args: &[String]) -> i32 {
    let opts = match parse_opts(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    match run(opts) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rst: {e}");
            println!("Bail out! {}", one_line(&e));
            2
        }
    }
}

fn run(opts: Opts) -> Result<i32, String> {
    let runtime = resolve_runtime(&std::env::var("RUNTIME").unwrap_or_default());
    let runtime_name = std::env::var("RST_RUNTIME_NAME").unwrap_or_else(|_| {
        runtime
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let expected_path = std::env::var_os("RST_EXPECTED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("expected.tsv"));
    let expected = Expected::load(&expected_path)?;

    let all_groups = groups();
    let selected = |name: &str| opts.filter.as_deref().is_none_or(|f| name.contains(f));
    let all_names: Vec<String> = all_groups.iter().flat_map(|g| g.checks.clone()).collect();
    if opts.list {
        for n in &all_names {
            println!("{n}");
        }
        return Ok(0);
    }
    for (check, line) in expected.unknown_checks(&all_names) {
        println!(
            "# warning: {}:{line} names unknown check {check}",
            expected_path.display()
        );
    }

    if !nix::unistd::geteuid().is_root() {
        return Err("rst needs root: it creates containers".into());
    }
    if !runtime.is_file() {
        return Err(format!(
            "RUNTIME={} does not exist (build phantom with `cargo build -p phantom`, or set \
             RUNTIME=/usr/bin/crun)",
            runtime.display()
        ));
    }
    let checker = find_checker()?;
    if !is_static_elf(&checker)? {
        return Err(format!(
            "{} is dynamically linked; the busybox rootfs has no libc. Build it statically \
             (see runtime-spec-tests/README.md)",
            checker.display()
        ));
    }

    // SAFETY: the handler only stores to an atomic, which is
    // async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    prepare_for_crun(&runtime_name);

    cleanup_stale_runs();
    let work = PathBuf::from(format!("/tmp/rst-{}", std::process::id()));
    fs::create_dir_all(&work).map_err(|e| format!("mkdir {}: {e}", work.display()))?;
    // Reachable by containers whose root maps to an unprivileged host uid.
    let _ = fs::set_permissions(&work, fs::Permissions::from_mode(0o755));
    let state_root = work.join("state");
    fs::create_dir_all(&state_root).map_err(|e| format!("mkdir state: {e}"))?;
    let host = HostFacts::probe(&work);
    let mut ctx = Ctx {
        runtime: runtime.clone(),
        runtime_name: runtime_name.clone(),
        state_root,
        base_rootfs: PathBuf::new(),
        checker,
        host,
        cgroup_parent: format!("/rst-{}", std::process::id()),
        systemd: std::env::var("RST_SYSTEMD_CGROUP").is_ok_and(|v| v == "1"),
        created: Vec::new(),
        holders: Vec::new(),
        counter: 0,
        keep: opts.keep,
        work,
    };
    ctx.base_rootfs = bundle::base_rootfs(&workspace())?;

    let mut version_cmd = Command::new(&runtime);
    version_cmd.arg("--version");
    let version = exec::output(version_cmd, CMD_TIMEOUT)
        .map(|o| {
            one_line(
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .unwrap_or(""),
            )
        })
        .unwrap_or_default();
    let plan: usize = all_groups
        .iter()
        .map(|g| g.checks.iter().filter(|c| selected(c)).count())
        .sum();
    println!(
        "# runtime: {} ({version}) as \"{runtime_name}\"",
        runtime.display()
    );
    if ctx.systemd {
        println!("# cgroup driver: systemd (--systemd-cgroup, cgroupsPath {SYSTEMD_SLICE}:{SYSTEMD_PREFIX}:<id>)");
    }
    println!("# checker: {}", ctx.checker.display());
    println!("# expected: {}", expected_path.display());
    println!("1..{plan}");

    let started = Instant::now();
    let mut n = 0;
    let mut counts = BTreeMap::from([("pass", 0), ("fail", 0), ("skip", 0)]);
    let mut unexpected = Vec::new();
    let mut unexpected_passes = Vec::new();
    for g in &all_groups {
        let wanted: Vec<&String> = g.checks.iter().filter(|c| selected(c)).collect();
        if wanted.is_empty() {
            continue;
        }
        let mut rec = Rec::default();
        if INTERRUPTED.load(Ordering::SeqCst) {
            for c in &wanted {
                rec.set(c.as_str(), Outcome::Fail("interrupted".into()));
            }
        } else {
            let t = Instant::now();
            let r = catch_unwind(AssertUnwindSafe(|| (g.run)(&mut ctx, &mut rec)));
            if let Err(p) = r {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                for c in &wanted {
                    if rec.get(c).is_none() {
                        rec.set(c.as_str(), Outcome::Fail(format!("runner panicked: {msg}")));
                    }
                }
            }
            println!("# group {} ({:.1} s)", g.name, t.elapsed().as_secs_f64());
        }
        for c in wanted {
            n += 1;
            let got = rec
                .get(c)
                .cloned()
                .unwrap_or_else(|| Outcome::Fail("the group did not report this check".into()));
            *counts.entry(got.word()).or_default() += 1;
            let exp = expected.get(c, &runtime_name);
            let want = exp.map_or("pass", |e| e.result.as_str());
            let why = exp.map_or("", |e| e.reason.as_str());
            let line = match (&got, want) {
                (Outcome::Pass, "pass") => format!("ok {n} - {c}"),
                (Outcome::Pass, w) => {
                    unexpected_passes.push(c.clone());
                    format!("ok {n} - {c} # unexpected pass (expected {w}: {why})")
                }
                (Outcome::Fail(r), "fail") => {
                    format!(
                        "not ok {n} - {c} # TODO expected fail ({why}): {}",
                        one_line(r)
                    )
                }
                (Outcome::Fail(r), _) => {
                    unexpected.push(c.clone());
                    format!("not ok {n} - {c} # {}", one_line(r))
                }
                (Outcome::Skip(r), "skip") => format!("ok {n} - {c} # SKIP {}", one_line(r)),
                (Outcome::Skip(r), "fail") => {
                    format!(
                        "ok {n} - {c} # SKIP {} (note: expected fail: {why})",
                        one_line(r)
                    )
                }
                (Outcome::Skip(r), _) => {
                    unexpected.push(c.clone());
                    format!(
                        "ok {n} - {c} # SKIP {} (unexpected: no expected.tsv row says skip)",
                        one_line(r)
                    )
                }
            };
            println!("{line}");
        }
        let _ = std::io::stdout().flush();
    }
    drop(ctx);
    println!("# elapsed: {:.1} s", started.elapsed().as_secs_f64());
    if !unexpected_passes.is_empty() {
        println!(
            "# unexpected passes (update expected.tsv): {}",
            unexpected_passes.join(", ")
        );
    }
    if unexpected.is_empty() {
        println!("# all results as expected for {runtime_name}");
    } else {
        println!(
            "# UNEXPECTED results for {runtime_name}: {}",
            unexpected.join(", ")
        );
    }
    println!(
        "{} passed, {} failed, {} skipped",
        counts["pass"], counts["fail"], counts["skip"]
    );
    Ok(
        if unexpected.is_empty() && !INTERRUPTED.load(Ordering::SeqCst) {
            0
        } else {
            1
        },
    )
}

#[cfg(test)]
mod tests {
    use super::cgroup_rel;

    #[test]
    fn systemd_cgroups_paths_are_where_systemd_puts_the_unit() {
        assert_eq!(cgroup_rel("/rst-1/c"), "/rst-1/c");
        assert_eq!(
            cgroup_rel("system.slice:rst:rst-1-a-2"),
            "/system.slice/rst-rst-1-a-2.scope"
        );
        assert_eq!(cgroup_rel("::x"), "/system.slice/x.scope");
        assert_eq!(cgroup_rel("a-b.slice:p:n"), "/a.slice/a-b.slice/p-n.scope");
        assert_eq!(cgroup_rel("-.slice:p:n"), "/p-n.scope");
    }
}

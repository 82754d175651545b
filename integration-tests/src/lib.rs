//! Engine tests: real Podman (through conmon), containerd (through `ctr`
//! and the runc v2 shim) and containerd's CRI plugin (the kubelet's API,
//! through the same shim) drive an OCI runtime exactly as they drive runc.
//!
//! ```text
//! integration-tests/setup.sh                      # once, as root: engines, crun, runc, busybox
//! cargo build -p phantom
//! PHANTOM_ENGINE_TESTS=1 cargo test -p phantom-integration-tests            # phantom
//! RUNTIME=crun cargo test -p phantom-integration-tests -- --test-threads=1  # the reference
//! make engines RUNTIME=runc
//! ```
//!
//! * The runtime under test is `$RUNTIME` (`phantom`, `crun` or `runc`;
//!   default `phantom`). phantom's binary is `$PHANTOM_BIN`, else
//!   `target/debug/phantom`, else `target/release/phantom`.
//! * The suites are opt-in (they need root, Podman and containerd, and take
//!   a minute): they run when `RUNTIME` or `PHANTOM_ENGINE_TESTS=1` is set,
//!   and are reported as ignored otherwise, so `cargo test --workspace`
//!   stays fast on machines without engines.
//! * Every test asserts the same thing for every runtime.
//! * Each suite owns its engine: one private Podman store (its own
//!   `--root`, `--runroot`, `--tmpdir`, `containers.conf`) or one containerd
//!   daemon (its own root, state and socket), under one temp dir, created
//!   on first use and torn down after the last test, even after failures.
//!   Each test removes its own containers when it ends, pass or fail.
//! * Nothing global changes: no writes to `/etc/containers` or the default
//!   storage; the few directories the engines create on their own under
//!   `/run`, `/var/lib/containers` and the cgroup trees are removed again
//!   when the suite created them and they are empty.

pub mod containerd;
pub mod cri;
pub mod podman;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

pub use libtest_mimic::Failed;

/// What every test returns; `?` turns any `Display` error into a failure.
pub type TestResult = Result<(), Failed>;

/// Fails the test with a formatted message unless the condition holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err($crate::Failed::from(format!($($fmt)+)));
        }
    };
}

/// Upper bound for one engine command; a hung engine or runtime fails the
/// test instead of hanging the suite.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(60);

/// The image both suites run: Debian's busybox-static as a rootfs.
pub const IMAGE: &str = "localhost/phantom-busybox:latest";

/// The workspace root (the parent of this crate), or `$PHANTOM_SRC` where
/// the test binary runs away from its sources (the VM bed copies
/// `hack/make-rootfs.sh` there).
pub fn workspace_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("PHANTOM_SRC") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("integration-tests lives inside the workspace")
        .to_path_buf()
}

/// The OCI runtime under test: the name the engines know it by and its
/// absolute path.
#[derive(Clone, Debug)]
pub struct Runtime {
    pub name: String,
    pub binary: PathBuf,
}

impl Runtime {
    /// `$RUNTIME` (default `phantom`).
    pub fn from_env() -> Result<Self, String> {
        let name = std::env::var("RUNTIME").unwrap_or_else(|_| "phantom".into());
        Self::named(&name)
    }

    /// `phantom` (`$PHANTOM_BIN`, else the workspace's debug build, else
    /// its release build), `crun` or `runc` (from `PATH`).
    pub fn named(name: &str) -> Result<Self, String> {
        let binary = match name {
            "phantom" => match std::env::var_os("PHANTOM_BIN") {
                Some(p) => PathBuf::from(p),
                None => ["debug", "release"]
                    .iter()
                    .map(|p| workspace_root().join("target").join(p).join("phantom"))
                    .find(|p| p.is_file())
                    .ok_or(
                        "phantom is not built: run `cargo build -p phantom` or set PHANTOM_BIN",
                    )?,
            },
            "crun" | "runc" => which(name)
                .ok_or_else(|| format!("{name} not found: run integration-tests/setup.sh"))?,
            other => return Err(format!("RUNTIME={other}: expected phantom, crun or runc")),
        };
        let binary = fs::canonicalize(&binary)
            .map_err(|e| format!("runtime binary {}: {e}", binary.display()))?;
        Ok(Self {
            name: name.to_string(),
            binary,
        })
    }
}

/// A program on `PATH` (plus the sbin directories, which root's `PATH`
/// under cargo may lack).
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"])
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file());
    found
}

/// Fails with a pointer to the setup script when a program is missing.
pub fn require_programs(programs: &[&str]) -> Result<(), String> {
    let missing: Vec<_> = programs.iter().filter(|p| which(p).is_none()).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "missing {missing:?}: run integration-tests/setup.sh (as root) first"
        ))
    }
}

/// Quotes one word for `sh`.
pub fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(OsStr::to_string_lossy)
        .map(|w| shell_quote(&w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a finished (or timed-out) command did.
#[derive(Debug)]
pub struct Output {
    pub cmdline: String,
    /// `None` when the command timed out and was killed.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Output {
    /// The exit code, with the shell's `128 + signal` for a killed command;
    /// `None` on timeout.
    pub fn code(&self) -> Option<i32> {
        self.status
            .map(|s| s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)))
    }

    /// The command, as an error saying why it is wrong: the first line ends
    /// with the last line of its stderr (where engines put the runtime's
    /// error), the full output follows.
    pub fn describe(&self, why: &str) -> String {
        let status = match self.code() {
            Some(c) => format!("exited {c}"),
            None => format!("timed out after {:?}", self.elapsed),
        };
        // Under `script`, stderr arrives on stdout.
        let last_line = |s: &str| {
            s.lines()
                .rev()
                .map(|l| l.trim_matches(|c: char| c.is_whitespace() || c.is_control()))
                .find(|l| !l.is_empty())
                .map(str::to_string)
        };
        let mut last = last_line(&self.stderr)
            .or_else(|| last_line(&self.stdout))
            .unwrap_or_default();
        // Podman runs `pause`, `update`, `kill` itself, lets the runtime's
        // own (logrus-style) error line through and sums up with "`RUNTIME
        // pause ID` failed: exit status 1": show the runtime's line.
        if last.contains("failed: exit status") {
            let runtime_error = self.stderr.lines().rev().find_map(|l| {
                let (_, msg) = l.split_once("level=error msg=")?;
                Some(msg.trim_matches('"'))
            });
            if let Some(msg) = runtime_error {
                last = format!("{last} [{msg}]");
            }
        }
        format!(
            "{why}: {status}: {last}\n  command: {}\n  stdout: {}\n  stderr: {}",
            self.cmdline,
            tail(&self.stdout, 2000),
            tail(&self.stderr, 4000)
        )
    }

    /// `Ok` when the command exited 0.
    pub fn success(self) -> Result<Self, String> {
        self.code_is(0)
    }

    /// `Ok` when the command exited `want`.
    pub fn code_is(self, want: i32) -> Result<Self, String> {
        if self.code() == Some(want) {
            Ok(self)
        } else {
            Err(self.describe(&format!("expected exit code {want}")))
        }
    }

    /// stdout without surrounding whitespace and carriage returns (a
    /// terminal turns `\n` into `\r\n`).
    pub fn out(&self) -> String {
        self.stdout.replace('\r', "").trim().to_string()
    }
}

/// The last `max` bytes of `s` (at a char boundary), marked with `...`.
pub fn tail(s: &str, max: usize) -> String {
    let s = s.trim_end();
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &s[start..])
}

/// A command running in the background with its output collected.
pub struct Running {
    child: Option<Child>,
    cmdline: String,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
    started: Instant,
}

fn collect(mut from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock()
                .expect("output buffer")
                .extend_from_slice(&buf[..n]);
        }
    })
}

/// Starts `cmd` with stdin from `input` (or `/dev/null`) and stdout and
/// stderr collected.
pub fn spawn(cmd: &mut Command, input: Option<&[u8]>) -> Result<Running, String> {
    let cmdline = command_line(cmd);
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run `{cmdline}`: {e}"))?;
    if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
        let data = data.to_vec();
        thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
    }
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let readers = vec![
        collect(child.stdout.take().expect("piped stdout"), stdout.clone()),
        collect(child.stderr.take().expect("piped stderr"), stderr.clone()),
    ];
    Ok(Running {
        child: Some(child),
        cmdline,
        stdout,
        stderr,
        readers,
        started: Instant::now(),
    })
}

impl Running {
    /// Whether the command is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Waits for the command, killing it after `timeout`.
    pub fn wait(mut self, timeout: Duration) -> Output {
        let mut child = self.child.take().expect("waited once");
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if self.started.elapsed() < timeout => {
                    thread::sleep(Duration::from_millis(10));
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
            }
        };
        let elapsed = self.started.elapsed();
        // A daemon the command left behind may keep the pipes open: take
        // what arrived within a grace period rather than wait for it.
        let grace = Instant::now() + Duration::from_secs(2);
        while self.readers.iter().any(|r| !r.is_finished()) && Instant::now() < grace {
            thread::sleep(Duration::from_millis(5));
        }
        let text = |b: &Arc<Mutex<Vec<u8>>>| {
            String::from_utf8_lossy(&b.lock().expect("output buffer")).into_owned()
        };
        Output {
            cmdline: std::mem::take(&mut self.cmdline),
            status,
            stdout: text(&self.stdout),
            stderr: text(&self.stderr),
            elapsed,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `cmd` to completion (stdin `/dev/null`), killing it after `timeout`.
pub fn run(cmd: &mut Command, timeout: Duration) -> Result<Output, String> {
    Ok(spawn(cmd, None)?.wait(timeout))
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Builds the busybox-static rootfs with `hack/make-rootfs.sh` under `dir`
/// and returns it as a tar archive `dir/rootfs.tar`.
pub fn rootfs_tar(dir: &Path) -> Result<PathBuf, String> {
    let script = workspace_root().join("hack/make-rootfs.sh");
    run(Command::new("bash").arg(script).arg(dir), CMD_TIMEOUT)?.success()?;
    let tar = dir.join("rootfs.tar");
    run(
        Command::new("tar")
            .arg("-C")
            .arg(dir.join("rootfs"))
            .arg("-cf")
            .arg(&tar)
            .arg("."),
        CMD_TIMEOUT,
    )?
    .success()?;
    Ok(tar)
}

/// A container command that counts in /tmp/counter, ten times a second
/// (pause tests read it from the host through `/proc/PID/root`).
pub const COUNTER: &str = "i=0; while :; do i=$((i+1)); echo $i > /tmp/counter.new; \
     mv /tmp/counter.new /tmp/counter; sleep 0.1; done";

/// The counter that [`COUNTER`] keeps in the container whose init is `pid`.
pub fn counter(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/root/tmp/counter");
    let text = fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    Ok(text.trim().parse().unwrap_or(0))
}

/// A container command that waits for /tmp/go (written from the host once
/// the test has checked the cgroup), then has `tail` buffer an endless line
/// from /dev/zero: memory grows until the kernel kills it.
pub const EAT_MEMORY_ON_GO: &str =
    "while [ ! -e /tmp/go ]; do sleep 0.1; done; exec tail /dev/zero";

/// Tells an [`EAT_MEMORY_ON_GO`] container whose init is `pid` to start.
pub fn go(pid: u32) -> Result<(), String> {
    let path = format!("/proc/{pid}/root/tmp/go");
    fs::write(&path, "").map_err(|e| format!("{path}: {e}"))
}

/// A seccomp profile that allows everything but mkdir, which fails with
/// EPERM; and the container command that shows it.
pub const DENY_MKDIR_PROFILE: &str = r#"{"defaultAction": "SCMP_ACT_ALLOW",
  "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#;

/// Prints mkdir's error and status, then `touch-ok` if touch works.
pub const TRY_MKDIR: &str = "mkdir /tmp/d 2>&1; echo rc=$?; touch /tmp/f && echo touch-ok";

/// Checks the output of [`TRY_MKDIR`] under [`DENY_MKDIR_PROFILE`].
pub fn check_mkdir_denied(stdout: &str) -> TestResult {
    ensure!(
        stdout.contains("Operation not permitted") && stdout.contains("rc=1"),
        "mkdir was not denied with EPERM: {stdout:?}"
    );
    ensure!(
        stdout.contains("touch-ok"),
        "other syscalls denied too: {stdout:?}"
    );
    Ok(())
}

/// `(mount point, filesystem type, super options)` of every mount.
fn mounts() -> Vec<(PathBuf, String, String)> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let point = left.split(' ').nth(4)?.replace("\\040", " ");
            let mut r = right.split(' ');
            let fstype = r.next()?.to_string();
            let opts = r.nth(1).unwrap_or("").to_string();
            Some((PathBuf::from(point), fstype, opts))
        })
        .collect()
}

/// The mount points of every mount in this (the host's) mount namespace.
pub fn mount_points() -> Vec<PathBuf> {
    mounts().into_iter().map(|(p, _, _)| p).collect()
}

/// Lazily unmounts whatever an engine left mounted under `dir` (deepest
/// first), so the directory can be removed.
pub fn unmount_under(dir: &Path) {
    let mut points: Vec<_> = mounts()
        .into_iter()
        .map(|(p, _, _)| p)
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        let _ = run(Command::new("umount").arg("--lazy").arg(&p), CMD_TIMEOUT);
    }
}

/// The mount points of the cgroup hierarchies (v1 and v2).
pub fn cgroup_mounts() -> Vec<PathBuf> {
    mounts()
        .into_iter()
        .filter(|(_, t, _)| t == "cgroup" || t == "cgroup2")
        .map(|(p, _, _)| p)
        .collect()
}

/// The host directory of `controller`'s cgroup of process `pid`: on v1 the
/// hierarchy where that controller is mounted, on v2 the unified one.
pub fn cgroup_dir(pid: u32, controller: &str) -> Result<PathBuf, String> {
    let membership = fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map_err(|e| format!("/proc/{pid}/cgroup: {e}"))?;
    let all = mounts();
    for line in membership.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrls, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        let rel = path.trim_start_matches('/');
        if ctrls.split(',').any(|c| c == controller) {
            if let Some((mnt, _, _)) = all
                .iter()
                .find(|(_, t, o)| t == "cgroup" && o.split(',').any(|c| c == controller))
            {
                return Ok(mnt.join(rel));
            }
        } else if ctrls.is_empty() {
            for (mnt, t, _) in &all {
                let listed = fs::read_to_string(mnt.join("cgroup.controllers")).unwrap_or_default();
                if t == "cgroup2" && listed.split_whitespace().any(|c| c == controller) {
                    return Ok(mnt.join(rel));
                }
            }
        }
    }
    Err(format!(
        "process {pid} is in no {controller} cgroup:\n{membership}"
    ))
}

/// Reads one cgroup file of process `pid`, trimmed.
pub fn cgroup_read(pid: u32, controller: &str, file: &str) -> Result<String, String> {
    let path = cgroup_dir(pid, controller)?.join(file);
    fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The memory limit of process `pid`'s cgroup, in bytes (v1 or v2 file).
pub fn memory_limit(pid: u32) -> Result<String, String> {
    cgroup_read(pid, "memory", "memory.limit_in_bytes")
        .or_else(|_| cgroup_read(pid, "memory", "memory.max"))
}

/// Directories an engine creates on the host by itself (runtime state
/// roots, socket dirs, cgroup parents). Those that did not exist when the
/// suite started are removed at the end, if empty, deepest first. Also
/// scratch files named `<dir>/<prefix>*` that appeared meanwhile (conmon
/// leaves its `/tmp/conmon-term.*` console socket behind when the runtime
/// fails to create the container).
pub struct HostLeftovers {
    dirs: Vec<PathBuf>,
    scratch: Vec<(PathBuf, String, Vec<std::ffi::OsString>)>,
}

impl HostLeftovers {
    /// Remembers which of `paths` do not exist yet.
    pub fn record(paths: impl IntoIterator<Item = PathBuf>) -> Self {
        let mut dirs: Vec<_> = paths.into_iter().filter(|p| !p.exists()).collect();
        dirs.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        Self {
            dirs,
            scratch: Vec::new(),
        }
    }

    /// Also removes, at the end, new entries `dir/prefix*`.
    pub fn scratch(mut self, dir: &str, prefix: &str) -> Self {
        let before = Self::matching(Path::new(dir), prefix);
        self.scratch.push((dir.into(), prefix.into(), before));
        self
    }

    fn matching(dir: &Path, prefix: &str) -> Vec<std::ffi::OsString> {
        fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| Some(e.ok()?.file_name()))
                    .filter(|n| n.to_string_lossy().starts_with(prefix))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `sub` under every cgroup hierarchy.
    pub fn cgroups(sub: &[&str]) -> Vec<PathBuf> {
        cgroup_mounts()
            .iter()
            .flat_map(|m| sub.iter().map(move |s| m.join(s)))
            .collect()
    }
}

impl Drop for HostLeftovers {
    fn drop(&mut self) {
        // Scratch files first: they may sit in one of the directories.
        for (dir, prefix, before) in &self.scratch {
            for name in Self::matching(dir, prefix) {
                if !before.contains(&name) {
                    let _ = fs::remove_file(dir.join(name));
                }
            }
        }
        for p in &self.dirs {
            let _ = fs::remove_dir(p);
        }
    }
}

/// Kills (SIGKILL, by pid) the processes still alive among `pids`.
pub fn kill_leftovers(pids: &[u32]) {
    for &pid in pids {
        if pid > 1 && Path::new(&format!("/proc/{pid}")).exists() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// A private temp dir for one suite, named after it.
pub fn suite_dir(suite: &str) -> Result<tempfile::TempDir, String> {
    tempfile::Builder::new()
        .prefix(&format!("phantom-engines-{suite}."))
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))
}

/// `ENGINE_DEFAULTS=minimal`: a diagnostic mode in which the engines leave
/// out what they add to every container on their own (Podman: its seccomp
/// profile and pids limit; ctr: `cpu.shares` 1024), so that a runtime still
/// missing seccomp or cgroup limits shows what else fails. Tests that ask
/// for a limit or a profile themselves still ask for it and assert it.
pub fn minimal_defaults() -> bool {
    std::env::var("ENGINE_DEFAULTS").is_ok_and(|v| v == "minimal")
}

/// One engine shared by all tests of a suite.
pub trait Engine: Send + Sync + Sized + 'static {
    /// The suite's name in reports.
    const NAME: &'static str;
    /// Starts the engine for `runtime`; dropping it tears everything down.
    fn setup(runtime: &Runtime) -> Result<Self, String>;
}

/// One test of a suite.
pub type Test<E> = (&'static str, fn(&E) -> TestResult);

/// Why the engine suites do not run here, if they do not.
fn disabled() -> Option<String> {
    let opted_in = std::env::var_os("RUNTIME").is_some()
        || std::env::var("PHANTOM_ENGINE_TESTS").is_ok_and(|v| v == "1");
    if !opted_in {
        Some(
            "engine tests are opt-in: set RUNTIME=phantom|crun|runc or PHANTOM_ENGINE_TESTS=1 \
             (`make engines` does)"
                .into(),
        )
    } else if !nix::unistd::geteuid().is_root() {
        Some("engine tests need root".into())
    } else {
        None
    }
}

/// The main of a suite: runs `tests` (libtest's command line: filters,
/// `--test-threads`, default 1) against one engine set up on first use,
/// tears it down, then prints every result and `N passed, M failed`.
/// `skipped` tests are listed as ignored with their reason.
pub fn run_suite<E: Engine>(tests: Vec<Test<E>>, skipped: &[(&'static str, &str)]) -> ExitCode {
    let mut args = libtest_mimic::Arguments::from_args();
    if args.test_threads.is_none() {
        args.test_threads = Some(1);
    }
    let disabled = disabled();
    if let Some(why) = &disabled {
        eprintln!("{}: every test ignored: {why}", E::NAME);
    }
    let runtime = Runtime::from_env();
    let engine: Arc<OnceLock<Result<E, String>>> = Arc::new(OnceLock::new());
    let results: Arc<Mutex<BTreeMap<&'static str, Option<String>>>> = Arc::default();

    let mut trials = Vec::new();
    for (name, test) in tests {
        let (engine, runtime, results) = (engine.clone(), runtime.clone(), results.clone());
        let trial = libtest_mimic::Trial::test(name, move || {
            let outcome = match engine.get_or_init(|| runtime.and_then(|r| E::setup(&r))) {
                Ok(e) => test(e),
                Err(why) => Err(format!("{} setup failed: {why}", E::NAME).into()),
            };
            let message = outcome.as_ref().err().map(|f| {
                f.message()
                    .unwrap_or("failed")
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string()
            });
            // At once, not only in the summary: a suite cut short (a
            // timeout, a slow machine) still says why each test failed.
            if let Some(m) = &message {
                eprintln!("{}: {name} FAILED: {m}", E::NAME);
            }
            results.lock().expect("results").insert(name, message);
            outcome
        });
        trials.push(trial.with_ignored_flag(disabled.is_some()));
    }
    for (name, why) in skipped {
        if disabled.is_none() {
            eprintln!("{}: {name} skipped: {why}", E::NAME);
        }
        trials.push(libtest_mimic::Trial::test(*name, || Ok(())).with_ignored_flag(true));
    }

    let conclusion = libtest_mimic::run(&args, trials);
    // Every trial (and its handle on the engine) is gone: tear down.
    match Arc::try_unwrap(engine) {
        Ok(engine) => drop(engine.into_inner()),
        Err(_) => eprintln!("{}: engine still in use, not torn down", E::NAME),
    }

    let results = results.lock().expect("results");
    if !results.is_empty() {
        let rt = runtime
            .map(|r| format!("{} ({})", r.name, r.binary.display()))
            .unwrap_or_else(|e| e);
        let mode = if minimal_defaults() {
            " [ENGINE_DEFAULTS=minimal: diagnostic, not the engine's defaults]"
        } else {
            ""
        };
        println!("\n{} with RUNTIME={rt}{mode}:", E::NAME);
        for (name, message) in results.iter() {
            match message {
                None => println!("  ok    {name}"),
                Some(m) => println!("  FAIL  {name}: {m}"),
            }
        }
        println!(
            "{}: {} passed, {} failed",
            E::NAME,
            conclusion.num_passed,
            conclusion.num_failed
        );
    }
    conclusion.exit_code()
}

//! Black-box harness for testing any runc-compatible OCI runtime.
//!
//! Everything here talks to the runtime only through its command line (the
//! runc CLI contract) and observes the container from the inside with busybox
//! commands, so the same tests validate phantom, runc and crun:
//!
//! ```text
//! cargo build -p phantom && cargo test -p phantom-tests -- --test-threads=2
//! PHANTOM_RUNTIME=/usr/sbin/runc cargo test -p phantom-tests -- --test-threads=2
//! ```
//!
//! Tests need root; as another user each one prints "skipped: needs root"
//! and passes.
//!
//! * The binary under test is `$PHANTOM_RUNTIME`, or
//!   `<workspace>/target/debug/phantom` when unset.
//! * Every [`Runtime`] has its own `--root` state directory, and every
//!   container it creates is killed, force-deleted and has its cgroup removed
//!   when the `Runtime` is dropped, even if the test panicked.
//! * Every [`Bundle`] has its own copy of a busybox rootfs built once by
//!   `hack/make-rootfs.sh` into `target/test-rootfs`.
//!
//! * The last `Runtime` of all (across test processes) removes the shared
//!   parent cgroup [`CGROUP_PARENT`] too, so a test run leaves no cgroup.
//!
//! crun 1.8.1 refuses hybrid cgroup hosts whose cgroup2 mount still has a
//! controller (this machine binds hugetlb there). `hack/prepare-host.sh`
//! mounts hugetlb as v1, once, before any test (`make test` runs it first).
//! The harness does not do this itself because it changes the host globally.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;

/// Upper bound for one runtime invocation; a hung runtime fails the test
/// instead of hanging the whole suite.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(30);

/// Parent cgroup (relative to each hierarchy) of every test container, so a
/// test run never touches anything else in the host's cgroup tree. The
/// last [`Runtime`] to go (in any test process) removes it again.
pub const CGROUP_PARENT: &str = "/phantom-test";

/// Every live [`Runtime`], in any process, holds this file locked shared;
/// the one that can lock it exclusive after its own cleanup is the last
/// and removes [`CGROUP_PARENT`]. A new Runtime's shared lock waits for
/// that removal, so no container's cgroup is created under a parent that
/// is being removed.
const CGROUP_LOCK: &str = "/run/phantom-test-cgroups.lock";

fn cgroup_lock(arg: nix::fcntl::FlockArg) -> Option<nix::fcntl::Flock<File>> {
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(CGROUP_LOCK)
        .ok()?;
    nix::fcntl::Flock::lock(f, arg).ok()
}

/// Removes [`CGROUP_PARENT`] and any empty cgroup left below it from every
/// hierarchy (one with processes in it stays and is reported).
fn remove_cgroup_parent() {
    fn rmdir_tree(dir: &Path) {
        if let Ok(entries) = fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    rmdir_tree(&e.path());
                }
            }
        }
        if let Err(e) = fs::remove_dir(dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("cannot remove test cgroup {}: {e}", dir.display());
            }
        }
    }
    let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for h in hierarchies.flatten() {
        let dir = h.path().join(CGROUP_PARENT.trim_start_matches('/'));
        if dir.is_dir() {
            rmdir_tree(&dir);
        }
    }
}

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate lives inside the workspace")
        .to_path_buf()
}

/// The runtime binary under test.
///
/// # Panics
/// If the binary does not exist, with a hint on how to build or select one.
pub fn runtime_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("PHANTOM_RUNTIME") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "PHANTOM_RUNTIME={} does not exist or is not a file",
            p.display()
        );
        return p;
    }
    let p = workspace_root().join("target/debug/phantom");
    assert!(
        p.is_file(),
        "runtime binary {} not found: run `cargo build -p phantom` first, \
         or set PHANTOM_RUNTIME=/usr/sbin/runc to test another runtime",
        p.display()
    );
    p
}

/// Whether we run as root; container tests need it.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Returns early from a test (which then passes) when not running as root.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::is_root() {
            eprintln!("skipped: needs root");
            return;
        }
    };
}

/// The busybox rootfs, built once per test process (and serialised across
/// processes with a file lock, since several test binaries may build it).
pub fn cached_rootfs() -> &'static Path {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS.get_or_init(|| {
        let dir = workspace_root().join("target/test-rootfs");
        fs::create_dir_all(&dir).expect("create target/test-rootfs");
        let lock = File::create(dir.join(".lock")).expect("create rootfs lock file");
        let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .expect("lock target/test-rootfs");
        let script = workspace_root().join("hack/make-rootfs.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg(&dir)
            .stdin(Stdio::null())
            .output()
            .expect("run hack/make-rootfs.sh");
        assert!(
            out.status.success(),
            "hack/make-rootfs.sh failed: {}",
            describe(&out)
        );
        dir.join("rootfs")
    })
}

/// The config `runc spec` generates, adapted for non-interactive tests:
/// no terminal, writable root, no ambient/inheritable capabilities and
/// no `/sys/fs/cgroup` mount (cgroup v1/hybrid mounting is out of scope).
pub fn default_config(args: &[&str]) -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": args,
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": caps.clone(),
                "effective": caps.clone(),
                "permitted": caps,
            },
            "rlimits": [ { "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 } ],
            "noNewPrivileges": true
        },
        "root": { "path": "rootfs", "readonly": false },
        "hostname": "phantom",
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc" },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
              "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
            { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
              "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
            { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
              "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs",
              "options": ["nosuid", "noexec", "nodev", "ro"] }
        ],
        "linux": {
            "resources": { "devices": [ { "allow": false, "access": "rwm" } ] },
            "namespaces": [
                { "type": "pid" }, { "type": "network" }, { "type": "ipc" },
                { "type": "uts" }, { "type": "mount" }
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    })
}

/// What a bundle's config.json should contain.
enum ConfigSource {
    /// Generated from this JSON at create/run time (cgroupsPath filled in).
    Json(Box<Value>),
    /// Left exactly as the test wrote it (malformed or missing on purpose).
    Manual,
}

/// An OCI bundle: a private temp dir with `rootfs/` and `config.json`.
pub struct Bundle {
    /// Shared with the [`Runtime`] that runs it, so the directory outlives
    /// the containers even if the test drops the bundle first.
    dir: Arc<TempDir>,
    config: ConfigSource,
}

impl Bundle {
    /// A bundle whose process runs `args`.
    pub fn new(args: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("phantom-bundle-")
            .tempdir()
            .expect("create bundle dir");
        // 0700 from mkdtemp would hide the rootfs from a container whose
        // root is mapped to an unprivileged host uid (user namespaces).
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
            .expect("chmod bundle dir");
        let status = Command::new("cp")
            .arg("-a")
            .arg(cached_rootfs())
            .arg(dir.path().join("rootfs"))
            .stdin(Stdio::null())
            .status()
            .expect("run cp -a");
        assert!(status.success(), "cp -a of the cached rootfs failed");
        Bundle {
            dir: Arc::new(dir),
            config: ConfigSource::Json(Box::new(default_config(args))),
        }
    }

    /// A bundle whose process runs `sh -c script`.
    pub fn sh(script: &str) -> Self {
        Self::new(&["sh", "-c", script])
    }

    /// Builder-style config mutation.
    pub fn with(mut self, f: impl FnOnce(&mut Value)) -> Self {
        self.edit(f);
        self
    }

    /// Mutates the generated config.
    ///
    /// # Panics
    /// If the config was replaced by [`Bundle::write_raw_config`].
    pub fn edit(&mut self, f: impl FnOnce(&mut Value)) {
        match &mut self.config {
            ConfigSource::Json(v) => f(v),
            ConfigSource::Manual => panic!("config.json was written manually"),
        }
    }

    /// The generated config (for assertions against what was requested).
    pub fn config(&self) -> &Value {
        match &self.config {
            ConfigSource::Json(v) => v,
            ConfigSource::Manual => panic!("config.json was written manually"),
        }
    }

    /// Writes `text` as config.json verbatim and stops generating it.
    pub fn write_raw_config(&mut self, text: &str) {
        fs::write(self.config_path(), text).expect("write config.json");
        self.config = ConfigSource::Manual;
    }

    /// Removes config.json and stops generating it.
    pub fn remove_config(&mut self) {
        let _ = fs::remove_file(self.config_path());
        self.config = ConfigSource::Manual;
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.path().join("rootfs")
    }

    pub fn config_path(&self) -> PathBuf {
        self.path().join("config.json")
    }

    /// Reads a file of the rootfs from the host, e.g. `"tmp/out"`.
    pub fn read_rootfs_file(&self, rel: &str) -> Option<String> {
        fs::read_to_string(self.rootfs().join(rel)).ok()
    }

    /// Writes config.json for container `id` and returns the cgroupsPath it
    /// uses. Tests that do not set `linux.cgroupsPath` get a unique one, so
    /// that nothing global changes and cleanup knows what to remove.
    fn write_config_for(&self, id: &str) -> Option<String> {
        let ConfigSource::Json(v) = &self.config else {
            return None;
        };
        let mut v = (**v).clone();
        if v["linux"]["cgroupsPath"].is_null() && v["linux"].is_object() {
            v["linux"]["cgroupsPath"] = json!(format!("{CGROUP_PARENT}/{id}"));
        }
        let text = serde_json::to_string_pretty(&v).expect("serialise config");
        fs::write(self.config_path(), text).expect("write config.json");
        v["linux"]["cgroupsPath"].as_str().map(str::to_owned)
    }
}

/// stdout as (lossy) UTF-8.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stderr as (lossy) UTF-8.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A one-paragraph description of a command result for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        stdout(out),
        stderr(out)
    )
}

/// Asserts the command succeeded, showing its output otherwise.
#[track_caller]
pub fn assert_success(out: &Output, what: &str) {
    assert!(out.status.success(), "{what} failed\n{}", describe(out));
}

/// Runs `cmd` to completion with stdout/stderr captured into files.
///
/// Files rather than pipes: a detached container (`create`, `run -d`)
/// inherits the runtime's stdio, and with pipes reading to EOF would wait
/// for the container to exit. Returns `Err` on spawn failure or timeout (the
/// child is killed then).
pub fn try_output(mut cmd: Command, timeout: Duration) -> Result<Output, String> {
    let out = tempfile::tempfile().map_err(|e| e.to_string())?;
    let err = tempfile::tempfile().map_err(|e| e.to_string())?;
    cmd.stdout(out.try_clone().map_err(|e| e.to_string())?);
    cmd.stderr(err.try_clone().map_err(|e| e.to_string())?);
    let mut child = cmd.spawn().map_err(|e| format!("spawn {cmd:?}: {e}"))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{cmd:?} timed out after {timeout:?}"));
            }
            Err(e) => return Err(format!("wait for {cmd:?}: {e}")),
        }
    };
    let read_all = |mut f: File| -> Vec<u8> {
        let mut buf = Vec::new();
        let _ = f.seek(SeekFrom::Start(0));
        let _ = f.read_to_end(&mut buf);
        buf
    };
    Ok(Output {
        status,
        stdout: read_all(out),
        stderr: read_all(err),
    })
}

/// [`try_output`] with [`CMD_TIMEOUT`], panicking on timeout.
#[track_caller]
pub fn output(cmd: Command) -> Output {
    match try_output(cmd, CMD_TIMEOUT) {
        Ok(o) => o,
        Err(e) => panic!("{e}"),
    }
}

/// Makes the child of `cmd` inherit `fd` as descriptor `target` (which is
/// then not close-on-exec). `fd` itself stays close-on-exec in the parent,
/// so concurrently spawned commands of other tests never inherit it.
///
/// If std's internal exec-error pipe happens to sit at `target`, the dup2
/// replaces it; that only loses the error report of a failed exec (the
/// spawn then looks successful and the command fails visibly instead).
pub fn pass_fd(cmd: &mut Command, fd: &impl AsRawFd, target: RawFd) {
    // Move the source above any descriptor the child may already use (its
    // low numbers might be targets of other pass_fd calls).
    // SAFETY: F_DUPFD_CLOEXEC on a valid open descriptor has no memory
    // effects; the result is checked and owned below.
    let high = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 200) };
    assert!(
        high >= 0,
        "F_DUPFD_CLOEXEC: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: `high` was just returned by fcntl and is owned by nobody else.
    let high = unsafe { OwnedFd::from_raw_fd(high) };
    // SAFETY: the closure only calls dup2, which is async-signal-safe, as
    // required between fork and exec. `high` is moved into the closure and
    // so stays open until the Command is dropped.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(high.as_raw_fd(), target) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Polls `f` every 20 ms until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `pid` exists and is not a zombie.
pub fn pid_alive(pid: i64) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Host pids whose root or cwd lies under `dir`: leftover container
/// processes of a bundle, found without asking the runtime.
pub fn processes_under(dir: &Path) -> Vec<i64> {
    let mut pids = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return pids;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i64>().ok()) else {
            continue;
        };
        let hit = ["root", "cwd"].iter().any(|l| {
            fs::read_link(e.path().join(l))
                .map(|t| t.starts_with(dir))
                .unwrap_or(false)
        });
        if hit && pid_alive(pid) {
            pids.push(pid);
        }
    }
    pids
}

/// Mount points of the test process's mount namespace (host view).
pub fn host_mount_points() -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mountinfo")
        .expect("read mountinfo")
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .collect()
}

/// Linux capability numbers, in kernel order.
pub const CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The /proc/PID/status bitmask for a list of capability names.
pub fn cap_mask(names: &[&str]) -> u64 {
    names.iter().fold(0, |m, n| {
        let bit = CAPABILITIES
            .iter()
            .position(|c| c == n)
            .unwrap_or_else(|| panic!("unknown capability {n}"));
        m | (1u64 << bit)
    })
}

/// Parses a `Name:\tvalue` field of /proc/PID/status text.
pub fn status_field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// A capability mask field (CapEff, CapBnd, ...) of /proc/PID/status text.
#[track_caller]
pub fn status_caps(status: &str, name: &str) -> u64 {
    let hex = status_field(status, name)
        .unwrap_or_else(|| panic!("{name} missing from status:\n{status}"));
    u64::from_str_radix(hex, 16).unwrap_or_else(|e| panic!("{name}={hex}: {e}"))
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// One container we created: what to clean up for it.
struct Created {
    id: String,
    cgroups_path: Option<String>,
}

/// The runtime under test, with a private `--root` state directory.
pub struct Runtime {
    bin: PathBuf,
    /// Private directory holding `state/`, the `--root`. The extra level
    /// contains path-traversing ids: crun 1.8.1 resolves `delete ..` to
    /// `ROOT/..` and removes it recursively, which wiped all of /tmp when
    /// the root was directly in /tmp.
    tmp: TempDir,
    root: PathBuf,
    created: Mutex<Vec<Created>>,
    /// Bundles of our containers, kept until the containers are gone.
    bundles: Mutex<Vec<Arc<TempDir>>>,
    /// Shared lock on [`CGROUP_LOCK`] while this Runtime lives.
    cgroup_hold: Option<nix::fcntl::Flock<File>>,
}

impl Default for Runtime {
    fn default() -> Self {
        Self::new()
    }
}

impl Runtime {
    pub fn new() -> Self {
        let bin = runtime_binary();
        let tmp = tempfile::Builder::new()
            .prefix("phantom-root-")
            .tempdir()
            .expect("create --root parent dir");
        let root = tmp.path().join("state");
        fs::create_dir(&root).expect("create --root dir");
        Runtime {
            bin,
            tmp,
            root,
            created: Mutex::new(Vec::new()),
            bundles: Mutex::new(Vec::new()),
            cgroup_hold: is_root()
                .then(|| cgroup_lock(nix::fcntl::FlockArg::LockShared))
                .flatten(),
        }
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The `--root` state directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The private directory containing [`Runtime::root`]; anything a
    /// path-like container id escapes to lands here.
    pub fn sandbox(&self) -> &Path {
        self.tmp.path()
    }

    /// A fresh container id, unique across tests and test processes.
    pub fn id(&self, prefix: &str) -> String {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}-{}-{n}", std::process::id())
    }

    /// `RUNTIME --root ROOT args...` with stdin from /dev/null.
    pub fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(self.root()).args(args);
        c.stdin(Stdio::null());
        c
    }

    /// Runs a runtime command with [`CMD_TIMEOUT`].
    #[track_caller]
    pub fn cmd<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        output(self.command(args))
    }

    /// Registers `id` for cleanup and writes the bundle's config.json for it.
    /// Call before any hand-built create/run command.
    pub fn prepare(&self, id: &str, bundle: &Bundle) {
        let cgroups_path = bundle.write_config_for(id);
        self.created.lock().unwrap().push(Created {
            id: id.to_owned(),
            cgroups_path,
        });
        self.bundles.lock().unwrap().push(Arc::clone(&bundle.dir));
    }

    /// `create --bundle B [extra...] ID`, whatever the outcome.
    pub fn try_create(&self, id: &str, bundle: &Bundle, extra: &[&str]) -> Output {
        self.prepare(id, bundle);
        let mut args: Vec<&OsStr> = vec!["create".as_ref(), "--bundle".as_ref()];
        args.push(bundle.path().as_os_str());
        args.extend(extra.iter().map(OsStr::new));
        args.push(id.as_ref());
        self.cmd(&args)
    }

    /// `create`, asserting success.
    #[track_caller]
    pub fn create(&self, id: &str, bundle: &Bundle) {
        let out = self.try_create(id, bundle, &[]);
        assert_success(&out, &format!("create {id}"));
    }

    pub fn try_start(&self, id: &str) -> Output {
        self.cmd(&["start", id])
    }

    #[track_caller]
    pub fn start(&self, id: &str) {
        assert_success(&self.try_start(id), &format!("start {id}"));
    }

    pub fn try_state(&self, id: &str) -> Output {
        self.cmd(&["state", id])
    }

    /// `state ID` parsed as JSON.
    #[track_caller]
    pub fn state(&self, id: &str) -> Value {
        let out = self.try_state(id);
        assert_success(&out, &format!("state {id}"));
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("state {id} is not JSON ({e})\n{}", describe(&out)))
    }

    /// The `status` field of `state ID`.
    #[track_caller]
    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"]
            .as_str()
            .expect("state has a string status")
            .to_owned()
    }

    /// Waits until `state ID` reports `status`.
    #[track_caller]
    pub fn wait_status(&self, id: &str, status: &str, timeout: Duration) {
        let mut last = String::new();
        let ok = wait_until(timeout, || {
            last = self.status(id);
            last == status
        });
        assert!(
            ok,
            "{id} did not become {status} within {timeout:?}; last: {last}"
        );
    }

    pub fn try_kill(&self, id: &str, signal: &str) -> Output {
        self.cmd(&["kill", id, signal])
    }

    #[track_caller]
    pub fn kill(&self, id: &str, signal: &str) {
        assert_success(&self.try_kill(id, signal), &format!("kill {id} {signal}"));
    }

    pub fn try_delete(&self, id: &str, force: bool) -> Output {
        if force {
            self.cmd(&["delete", "--force", id])
        } else {
            self.cmd(&["delete", id])
        }
    }

    #[track_caller]
    pub fn delete(&self, id: &str) {
        assert_success(&self.try_delete(id, false), &format!("delete {id}"));
    }

    /// `run --bundle B ID` in the foreground; the container's stdout/stderr
    /// and exit status are the returned output's.
    pub fn run(&self, id: &str, bundle: &Bundle) -> Output {
        self.prepare(id, bundle);
        let mut args: Vec<&OsStr> = vec!["run".as_ref(), "--bundle".as_ref()];
        args.push(bundle.path().as_os_str());
        args.push(id.as_ref());
        self.cmd(&args)
    }

    /// [`Runtime::run`] with a fresh id.
    pub fn run_bundle(&self, bundle: &Bundle) -> Output {
        let id = self.id("run");
        self.run(&id, bundle)
    }

    /// [`Runtime::run_bundle`], asserting exit status 0; returns stdout.
    #[track_caller]
    pub fn run_ok(&self, bundle: &Bundle) -> String {
        let out = self.run_bundle(bundle);
        assert_success(&out, "run");
        stdout(&out)
    }

    /// Best-effort cleanup of one container; never panics (it runs in Drop,
    /// possibly while unwinding).
    fn cleanup(&self, c: &Created) {
        let quick = Duration::from_secs(10);
        let _ = try_output(self.command(&["kill", &c.id, "KILL"]), quick);
        let _ = try_output(self.command(&["delete", "--force", &c.id]), quick);
        if let Some(cg) = &c.cgroups_path {
            remove_cgroup(cg);
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let created = std::mem::take(&mut *self.created.lock().unwrap_or_else(|e| e.into_inner()));
        for c in created.iter().rev() {
            self.cleanup(c);
        }
        // Only now may the bundles go away.
        self.bundles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        // The last Runtime anywhere removes the shared parent cgroup.
        if self.cgroup_hold.take().is_some() {
            if let Some(_last) = cgroup_lock(nix::fcntl::FlockArg::LockExclusiveNonblock) {
                remove_cgroup_parent();
            }
        }
    }
}

/// Removes `path` (a cgroupsPath) from every mounted hierarchy, retrying
/// briefly while just-killed tasks are still leaving it.
pub fn remove_cgroup(path: &str) {
    let rel = path.trim_start_matches('/');
    // Path-like container ids produce cgroupsPaths such as
    // "/phantom-test/.."; never resolve those to a real hierarchy.
    let plain = Path::new(rel)
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    if rel.is_empty() || !plain {
        return;
    }
    let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for h in hierarchies.flatten() {
        let dir = h.path().join(rel);
        if !dir.is_dir() {
            continue;
        }
        wait_until(Duration::from_secs(2), || {
            fs::remove_dir(&dir).is_ok() || !dir.exists()
        });
    }
}

/// Where each hierarchy under /sys/fs/cgroup has a directory for `path`.
pub fn cgroup_dirs(path: &str) -> Vec<PathBuf> {
    let rel = path.trim_start_matches('/');
    fs::read_dir("/sys/fs/cgroup")
        .map(|it| {
            it.flatten()
                .map(|h| h.path().join(rel))
                .filter(|d| d.is_dir())
                .collect()
        })
        .unwrap_or_default()
}

/// Lines of `s` parsed as decimal numbers (ignores anything else).
pub fn numbers(s: &str) -> Vec<i64> {
    s.split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect()
}

/// Convenience for tests that compare several `key=value` lines printed by
/// a container script.
pub fn key_values(s: &str) -> HashMap<String, String> {
    s.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

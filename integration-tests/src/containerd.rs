//! A private containerd (1.6) daemon, driven with `ctr` through the
//! `io.containerd.runc.v2` shim with `--runc-binary` set to the runtime under
//! test.
//!
//! Root, state, sockets, the runc root and ctr's FIFOs live under one temp
//! dir; the CRI plugin is disabled (no kubelet here). The shim itself puts
//! its sockets under `/run/containerd/s` (fixed in containerd 1.6); the
//! directory is removed again if the suite created it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tempfile::TempDir;

use crate::podman::Podman;
use crate::{
    kill_leftovers, require_programs, run, shell_quote, spawn, unmount_under, wait_for, Engine,
    HostLeftovers, Output, Running, Runtime, CMD_TIMEOUT, IMAGE,
};

/// The containerd namespace of every test container (and so the cgroup
/// parent `/<namespace>/<id>` the shim gives them).
pub const NAMESPACE: &str = "phantom-engines";

/// The part of a private containerd 1.6 config both suites share: root,
/// state, sockets and the opt plugin under `dir`, unused snapshotters and
/// tracing off; the CRI plugin off unless `cri` (its section is then the
/// caller's to append).
pub(crate) fn base_config(dir: &Path, suite: &str, cri: bool) -> String {
    let dir = dir.display();
    let cri_off = if cri {
        ""
    } else {
        "\n  \"io.containerd.grpc.v1.cri\","
    };
    format!(
        r#"# Private containerd config of phantom's {suite}.
version = 2
root = "{dir}/root"
state = "{dir}/state"
disabled_plugins = [{cri_off}
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{dir}/containerd.sock"

[ttrpc]
  address = "{dir}/containerd.sock.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{dir}/opt"
"#
    )
}

/// containerd on `dir/config.toml`, logging to `dir/containerd.log`.
pub(crate) fn spawn_daemon(dir: &Path) -> Result<Child, String> {
    let log =
        fs::File::create(dir.join("containerd.log")).map_err(|e| format!("containerd.log: {e}"))?;
    // containerd 1.6 leaves the work directories of `ctr c checkpoint`
    // (`ctrd-checkpoint*`) in its temp dir: that is the suite's own.
    let tmp = dir.join("tmp");
    fs::create_dir_all(&tmp).map_err(|e| format!("mkdir {}: {e}", tmp.display()))?;
    Command::new("containerd")
        .current_dir(dir)
        .env("TMPDIR", &tmp)
        .arg("--config")
        .arg(dir.join("config.toml"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start containerd: {e}"))
}

/// A private containerd daemon.
pub struct Containerd {
    pub runtime: Runtime,
    dir: TempDir,
    daemon: Option<Child>,
    seq: AtomicUsize,
    // Dropped after `dir` is emptied by `Drop::drop`.
    _host: HostLeftovers,
}

impl Engine for Containerd {
    const NAME: &'static str = "containerd";

    fn setup(runtime: &Runtime) -> Result<Self, String> {
        require_programs(&["containerd", "ctr", "containerd-shim-runc-v2", "script"])?;
        let host = HostLeftovers::record(
            [
                "/run/containerd/s",
                "/run/containerd/fifo",
                "/run/containerd",
            ]
            .iter()
            .map(PathBuf::from)
            .chain(HostLeftovers::cgroups(&[NAMESPACE])),
        );
        let mut ctd = Self {
            runtime: runtime.clone(),
            dir: crate::suite_dir("containerd")?,
            daemon: None,
            seq: AtomicUsize::new(0),
            _host: host,
        };
        ctd.start()?;

        // The image: Podman builds it from the busybox rootfs and saves it
        // as an OCI archive, which ctr imports.
        let archive = ctd.path("image.oci.tar");
        Podman::setup(&Runtime::named("crun").unwrap_or_else(|_| runtime.clone()))?
            .save_oci_archive(&archive)?;
        let archive = archive.to_str().ok_or("temp dir is not UTF-8")?.to_string();
        ctd.ctr(&["images", "import", &archive])?.success()?;
        Ok(ctd)
    }
}

impl Containerd {
    fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    /// The daemon's gRPC socket.
    pub fn socket(&self) -> PathBuf {
        self.path("containerd.sock")
    }

    /// The `--runc-root` the shim gets; it adds the namespace below it.
    pub fn runc_root(&self) -> PathBuf {
        self.path("runc-root")
    }

    fn start(&mut self) -> Result<(), String> {
        for sub in ["root", "state", "opt", "runc-root", "fifo"] {
            fs::create_dir_all(self.path(sub)).map_err(|e| format!("mkdir {sub}: {e}"))?;
        }
        let config = base_config(self.dir.path(), "engine tests", false);
        fs::write(self.path("config.toml"), config).map_err(|e| format!("config.toml: {e}"))?;
        let child = spawn_daemon(self.dir.path())?;
        self.daemon = Some(child);
        let up = wait_for(Duration::from_secs(20), || {
            self.ctr(&["version"])
                .map(|o| o.code() == Some(0))
                .unwrap_or(false)
        });
        if !up {
            let log = fs::read_to_string(self.path("containerd.log")).unwrap_or_default();
            return Err(format!("containerd did not come up:\n{log}"));
        }
        Ok(())
    }

    /// `ctr` on the private socket and namespace.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.current_dir(self.dir.path())
            .env("TMPDIR", self.dir.path().join("tmp"));
        // overlayfs unless $SNAPSHOTTER (e.g. native) says otherwise.
        if let Ok(snapshotter) = std::env::var("SNAPSHOTTER") {
            cmd.env("CONTAINERD_SNAPSHOTTER", snapshotter);
        }
        cmd.arg("--address")
            .arg(self.socket())
            .args(["--namespace", NAMESPACE]);
        cmd
    }

    /// Runs `ctr ARGS`.
    pub fn ctr(&self, args: &[&str]) -> Result<Output, String> {
        run(self.command().args(args), CMD_TIMEOUT)
    }

    /// Starts `ctr ARGS` in the background.
    pub fn ctr_spawn(&self, args: &[&str]) -> Result<Running, String> {
        spawn(self.command().args(args), None)
    }

    /// Runs `ctr ARGS` inside `script`, so ctr has a terminal (`-t` needs
    /// one); the output is what the terminal showed.
    pub fn ctr_in_pty(&self, args: &[&str]) -> Result<Output, String> {
        let ctr = self.command();
        let line: Vec<String> = std::iter::once(ctr.get_program())
            .chain(ctr.get_args())
            .map(|a| shell_quote(&a.to_string_lossy()))
            .chain(args.iter().map(|a| shell_quote(a)))
            .collect();
        run(
            Command::new("script")
                .current_dir(self.dir.path())
                .args(["--quiet", "--return", "--command"])
                .arg(line.join(" "))
                .arg("/dev/null"),
            CMD_TIMEOUT,
        )
    }

    /// `ctr run` options that pick the runtime under test, before the image:
    /// `--runtime io.containerd.runc.v2 --runc-binary BIN --runc-root DIR`.
    pub fn runtime_args(&self) -> Vec<String> {
        [
            "--runtime".into(),
            "io.containerd.runc.v2".into(),
            "--runc-binary".into(),
            self.runtime.binary.display().to_string(),
            "--runc-root".into(),
            self.runc_root().display().to_string(),
            "--fifo-dir".into(),
            self.path("fifo").display().to_string(),
        ]
        .into_iter()
        // ctr asks for cpu.shares 1024 unless told 0.
        .chain(
            crate::minimal_defaults()
                .then(|| ["--cpu-shares".into(), "0".into()])
                .into_iter()
                .flatten(),
        )
        .collect()
    }

    /// `ctr run [OPTS] <runtime args> IMAGE ID CMD...` as one argument list.
    pub fn run_args(&self, opts: &[&str], id: &str, cmd: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = vec!["run".into()];
        args.extend(opts.iter().map(|s| s.to_string()));
        args.extend(self.runtime_args());
        args.push(IMAGE.into());
        args.push(id.into());
        args.extend(cmd.iter().map(|s| s.to_string()));
        args
    }

    /// A unique container id, cleaned up (task killed and deleted, container
    /// deleted) when the guard drops, whatever the test's outcome.
    pub fn container(&self, tag: &str) -> Task<'_> {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        Task {
            ctd: self,
            id: format!("ce-{tag}-{}-{n}", std::process::id()),
        }
    }

    /// The task's status column in `ctr task ls` (RUNNING, PAUSED, ...).
    pub fn task_status(&self, id: &str) -> Option<(u32, String)> {
        let out = self.ctr(&["task", "ls"]).ok()?;
        out.stdout.lines().find_map(|l| {
            let f: Vec<_> = l.split_whitespace().collect();
            (f.len() >= 3 && f[0] == id).then(|| (f[1].parse().unwrap_or(0), f[2].to_string()))
        })
    }

    /// The pids of the shims our daemon started (they carry its socket).
    fn shims(&self) -> Vec<u32> {
        let sock = self.socket().display().to_string();
        let Ok(entries) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                    let c = String::from_utf8_lossy(&c);
                    c.contains("containerd-shim") && c.contains(sock.as_str())
                })
            })
            .collect()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if self.daemon.is_some() {
            // Whatever a test left: tasks, then containers.
            if let Ok(out) = self.ctr(&["containers", "ls", "--quiet"]) {
                for id in out.stdout.split_whitespace() {
                    remove(self, id);
                }
            }
        }
        let shims = self.shims();
        if let Some(mut daemon) = self.daemon.take() {
            let pid = nix::unistd::Pid::from_raw(daemon.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let stopped = wait_for(Duration::from_secs(10), || {
                matches!(daemon.try_wait(), Ok(Some(_)))
            });
            if !stopped {
                let _ = daemon.kill();
            }
            let _ = daemon.wait();
        }
        // A shim outlives the daemon while its task lives; with a runtime
        // that cannot kill or delete, both stay: end them by pid.
        kill_leftovers(&shims);
        unmount_under(self.dir.path());
    }
}

/// Kills and deletes task `id`, then deletes the container.
fn remove(ctd: &Containerd, id: &str) {
    let _ = ctd.ctr(&["task", "kill", "--all", "--signal", "SIGKILL", id]);
    wait_for(Duration::from_secs(5), || {
        ctd.task_status(id)
            .is_none_or(|(_, status)| status == "STOPPED")
    });
    let _ = ctd.ctr(&["task", "delete", "--force", id]);
    let _ = ctd.ctr(&["containers", "delete", id]);
}

/// A container id whose task and container are removed when dropped.
pub struct Task<'a> {
    ctd: &'a Containerd,
    pub id: String,
}

impl Task<'_> {
    /// The task's host pid, once it is running.
    pub fn wait_running(&self) -> Result<u32, String> {
        self.wait_running_while(|| true)
    }

    /// The task's host pid, once it is running, for a task that `ctr run`
    /// (`run`) started in the foreground: fails with ctr's output as soon
    /// as ctr exits.
    pub fn wait_started(&self, run: Running) -> Result<(u32, Running), String> {
        let run = std::cell::RefCell::new(run);
        match self.wait_running_while(|| run.borrow_mut().is_running()) {
            Ok(pid) => Ok((pid, run.into_inner())),
            Err(why) => {
                let out = run.into_inner().wait(Duration::from_secs(5));
                Err(out.describe(&format!("ctr run exited early ({why})")))
            }
        }
    }

    fn wait_running_while(&self, mut go_on: impl FnMut() -> bool) -> Result<u32, String> {
        let mut pid = 0;
        let mut gave_up = false;
        let running = wait_for(Duration::from_secs(20), || {
            if let Some((p, s)) = self.ctd.task_status(&self.id) {
                if s == "RUNNING" {
                    pid = p;
                    return true;
                }
            }
            gave_up = !go_on();
            gave_up
        });
        if running && !gave_up {
            Ok(pid)
        } else {
            Err(format!(
                "task {} not RUNNING (ctr task ls: {:?})",
                self.id,
                self.ctd.task_status(&self.id)
            ))
        }
    }
}

impl Drop for Task<'_> {
    fn drop(&mut self) {
        remove(self.ctd, &self.id);
    }
}

//! A private Podman (4.3, with conmon) whose runtime is the one under test.
//!
//! Everything lives under one temp dir: the store (`--root`, `--runroot`,
//! overlay unless `$STORAGE_DRIVER` says otherwise), `--tmpdir`, and a
//! `containers.conf` that `CONTAINERS_CONF` points to. Podman then reads no
//! other containers.conf, so the host's configuration neither leaks in nor
//! changes.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tempfile::TempDir;

use crate::{
    kill_leftovers, require_programs, rootfs_tar, run, spawn, unmount_under, Engine, HostLeftovers,
    Output, Runtime, CMD_TIMEOUT, IMAGE,
};

/// The runtimes the private containers.conf defines, by the names Podman
/// knows them by; all of them get `--log-format=json --log FILE` from conmon.
const RUNTIMES: [&str; 3] = ["phantom", "crun", "runc"];

fn path_str(p: &Path) -> Result<&str, String> {
    p.to_str()
        .ok_or_else(|| format!("{} is not UTF-8", p.display()))
}

/// overlay (as in the recorded engine runs) unless `$STORAGE_DRIVER` says
/// otherwise (e.g. vfs).
fn storage_driver() -> String {
    std::env::var("STORAGE_DRIVER").unwrap_or_else(|_| "overlay".into())
}

/// The calling process's hard limit of `resource`.
fn hard_limit(resource: nix::sys::resource::Resource) -> u64 {
    nix::sys::resource::getrlimit(resource)
        .map(|(_, hard)| hard)
        .unwrap_or(1024)
}

/// A private Podman store whose default runtime is the one under test.
pub struct Podman {
    pub runtime: Runtime,
    dir: TempDir,
    seq: AtomicUsize,
    // Dropped after `dir` is emptied by `Drop::drop`.
    _host: HostLeftovers,
}

impl Engine for Podman {
    const NAME: &'static str = "podman";

    fn setup(runtime: &Runtime) -> Result<Self, String> {
        Self::setup_with(runtime, crate::minimal_defaults())
    }
}

impl Podman {
    /// A private store for `runtime`; `minimal`: containers.conf turns off
    /// Podman's default seccomp profile and pids limit (see
    /// [`crate::minimal_defaults`]).
    pub fn setup_with(runtime: &Runtime, minimal: bool) -> Result<Self, String> {
        require_programs(&["podman", "conmon", "unshare", "tar"])?;
        let host = HostLeftovers::record(
            [
                "/run/containers/networks",
                "/run/containers",
                "/var/lib/containers",
            ]
            .iter()
            .map(PathBuf::from)
            .chain([PathBuf::from("/run").join(&runtime.name)])
            .chain(HostLeftovers::cgroups(&[
                "libpod_parent/conmon",
                "libpod_parent",
            ])),
        )
        .scratch("/tmp", "conmon-term.");
        let podman = Self {
            runtime: runtime.clone(),
            dir: crate::suite_dir("podman")?,
            seq: AtomicUsize::new(0),
            _host: host,
        };
        podman.write_config(minimal)?;
        let tar = rootfs_tar(&podman.path("image"))?;
        podman
            .unshared(&[
                "import",
                "--quiet",
                "--change",
                "CMD [\"/bin/sh\"]",
                "--change",
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                path_str(&tar)?,
                IMAGE,
            ])?
            .success()?;
        Ok(podman)
    }

    pub fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    fn write_config(&self, minimal: bool) -> Result<(), String> {
        for sub in ["root", "runroot", "tmp", "net", "volumes", "events"] {
            fs::create_dir_all(self.path(sub)).map_err(|e| format!("mkdir {sub}: {e}"))?;
        }
        let dir = self.dir.path().display();
        // Rootful Podman asks for RLIMIT_NOFILE 1048576 and a big NPROC;
        // without CAP_SYS_RESOURCE in the bounding set (this machine) no
        // runtime may raise a hard limit, and conmon runs the runtime below
        // our NPROC limit, so ask for what is there (as the recorded
        // engine-argv runs did).
        use nix::sys::resource::Resource;
        let nofile = hard_limit(Resource::RLIMIT_NOFILE).min(1_048_576);
        let nproc = hard_limit(Resource::RLIMIT_NPROC).min(4096);
        let runtimes: String = RUNTIMES
            .iter()
            .map(|name| {
                let path = match Runtime::named(name) {
                    Ok(r) => r.binary.display().to_string(),
                    Err(_) => format!("/usr/local/bin/{name}"),
                };
                format!("{name} = [\"{path}\"]\n")
            })
            .collect();
        let conf = format!(
            r#"# Private containers.conf of phantom's engine tests (CONTAINERS_CONF).
[containers]
default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]
# No CNI or netavark here, and the tests must not touch the host's network:
# no network namespace setup beyond loopback unless a test asks.
netns = "none"
log_driver = "k8s-file"
{minimal}

[network]
network_config_dir = "{dir}/net"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{dir}/events/events.log"
tmp_dir = "{dir}/tmp"
image_copy_tmp_dir = "{dir}/tmp"
volume_path = "{dir}/volumes"
lock_type = "file"
runtime = "{runtime}"
runtime_supports_json = ["phantom", "crun", "runc"]

[engine.runtimes]
{runtimes}"#,
            runtime = self.runtime.name,
            minimal = if minimal {
                "# ENGINE_DEFAULTS=minimal (diagnostic)\nseccomp_profile = \"unconfined\"\npids_limit = 0\n"
            } else {
                ""
            },
        );
        let driver = storage_driver();
        let storage = format!(
            "[storage]\ndriver = \"{driver}\"\ngraphroot = \"{dir}/root\"\nrunroot = \"{dir}/runroot\"\n"
        );
        for (file, text) in [
            ("containers.conf", conf.as_str()),
            ("storage.conf", storage.as_str()),
            ("registries.conf", "unqualified-search-registries = []\n"),
        ] {
            fs::write(self.path(file), text).map_err(|e| format!("write {file}: {e}"))?;
        }
        Ok(())
    }

    /// `podman` with the private store, configuration and runtime.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new("podman");
        // conmon writes an `oom` marker into its working directory when the
        // container is OOM-killed: keep it in the suite's directory.
        cmd.current_dir(self.dir.path())
            .env("CONTAINERS_CONF", self.path("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.path("storage.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", self.path("registries.conf"))
            .arg("--root")
            .arg(self.path("root"))
            .arg("--runroot")
            .arg(self.path("runroot"))
            .arg("--storage-driver")
            .arg(storage_driver())
            .arg("--tmpdir")
            .arg(self.path("tmp"))
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "file"])
            .arg("--runtime")
            .arg(&self.runtime.name);
        cmd
    }

    /// Runs `podman ARGS`.
    pub fn run(&self, args: &[&str]) -> Result<Output, String> {
        self.run_timeout(args, CMD_TIMEOUT)
    }

    /// Runs `podman ARGS`, killing it after `timeout`.
    pub fn run_timeout(&self, args: &[&str], timeout: Duration) -> Result<Output, String> {
        run(self.command().args(args), timeout)
    }

    /// Runs `podman ARGS` with `input` on its stdin.
    pub fn run_input(&self, args: &[&str], input: &[u8]) -> Result<Output, String> {
        Ok(spawn(self.command().args(args), Some(input))?.wait(CMD_TIMEOUT))
    }

    /// Runs `podman ARGS` with `file` open as fd 3.
    pub fn run_with_fd3(&self, args: &[&str], file: &Path) -> Result<Output, String> {
        let wrapper = ["sh", "-c", "exec 3<\"$0\"; exec \"$@\""].map(OsStr::new);
        let mut cmd = self.wrapped(&[&wrapper[..], &[file.as_os_str()]].concat(), args);
        run(&mut cmd, CMD_TIMEOUT)
    }

    /// Runs `podman ARGS` in a private mount namespace with a tmpfs over
    /// `/var/lib`: `podman import` and `save` record blob digests in
    /// `/var/lib/containers/cache` (no flag moves it in Podman 4.3), and
    /// that cache must not appear on the host.
    fn unshared(&self, args: &[&str]) -> Result<Output, String> {
        let wrapper = [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            "mount -t tmpfs -o size=16m,mode=0755 phantom-engines /var/lib && exec \"$@\"",
            "sh",
        ]
        .map(OsStr::new);
        run(&mut self.wrapped(&wrapper, args), CMD_TIMEOUT)
    }

    /// `WRAPPER... podman <private flags> ARGS` with the private environment.
    fn wrapped(&self, wrapper: &[&OsStr], args: &[&str]) -> Command {
        let podman = self.command();
        let mut cmd = Command::new(wrapper[0]);
        cmd.current_dir(self.dir.path())
            .args(&wrapper[1..])
            .arg(podman.get_program())
            .args(podman.get_args())
            .args(args);
        for (k, v) in podman.get_envs() {
            if let Some(v) = v {
                cmd.env(k, v);
            }
        }
        cmd
    }

    /// Writes the image as an OCI archive (for `ctr images import`).
    pub fn save_oci_archive(&self, to: &Path) -> Result<(), String> {
        self.unshared(&[
            "save",
            "--format",
            "oci-archive",
            "-o",
            path_str(to)?,
            IMAGE,
        ])?
        .success()
        .map(drop)
    }

    /// A unique container name; the container is removed when the returned
    /// guard drops, whatever the test's outcome.
    pub fn container(&self, tag: &str) -> Container<'_> {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        Container {
            podman: self,
            name: format!("pe-{tag}-{}-{n}", std::process::id()),
        }
    }

    /// `podman inspect --format FORMAT NAME`, trimmed.
    pub fn inspect(&self, name: &str, format: &str) -> Result<String, String> {
        Ok(self
            .run(&["inspect", "--format", format, name])?
            .success()?
            .out())
    }

    /// The host pid of the container's init.
    pub fn pid(&self, name: &str) -> Result<u32, String> {
        let pid = self.inspect(name, "{{.State.Pid}}")?;
        pid.parse::<u32>()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| format!("{name} has no running init (State.Pid = {pid:?})"))
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // If the runtime cannot kill or delete, `rm` fails and processes
        // survive it: note every container's init and conmon first.
        let mut pids = Vec::new();
        if let Ok(out) = self.run(&["ps", "--all", "--quiet", "--no-trunc"]) {
            for id in out.stdout.split_whitespace() {
                if let Ok(s) = self.inspect(id, "{{.State.Pid}} {{.State.ConmonPid}}") {
                    pids.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
                }
            }
        }
        let _ = self.run(&["rm", "--all", "--force", "--time", "0"]);
        kill_leftovers(&pids);
        unmount_under(self.dir.path());
    }
}

/// A named container that is force-removed when dropped.
pub struct Container<'a> {
    podman: &'a Podman,
    pub name: String,
}

impl Container<'_> {
    /// `podman inspect --format FORMAT` of this container.
    pub fn inspect(&self, format: &str) -> Result<String, String> {
        self.podman.inspect(&self.name, format)
    }

    /// The host pid of this container's init.
    pub fn pid(&self) -> Result<u32, String> {
        self.podman.pid(&self.name)
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = self
            .podman
            .run(&["rm", "--force", "--ignore", "--time", "0", &self.name]);
    }
}

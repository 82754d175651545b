//! Bundles: a copy of the busybox rootfs with the checker inside, and a
//! config.json generated per container.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use super::Ctx;

/// Where the checker and its inputs live inside every rootfs.
pub const RST_DIR: &str = "/.rst";
pub const CHECKER_IN_ROOTFS: &str = "/.rst/rst-checker";

/// The process args that run the checker in check mode.
pub fn checker_args() -> Value {
    json!([
        CHECKER_IN_ROOTFS,
        "check",
        "/.rst/config.json",
        "/.rst/host.json"
    ])
}

pub struct Bundle {
    pub dir: PathBuf,
    pub config: Value,
    /// Extra host facts for this bundle's checker (`ns_paths`).
    pub host_extra: Value,
}

/// Builds (or refreshes) the busybox rootfs once per workspace with
/// `hack/make-rootfs.sh`; `RST_ROOTFS` may name a ready one instead.
pub fn base_rootfs(workspace: &Path) -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("RST_ROOTFS") {
        return Ok(PathBuf::from(p));
    }
    let dir = workspace.join("target/rst-rootfs");
    fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    let script = workspace.join("hack/make-rootfs.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(&dir)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(dir.join("rootfs"))
}

/// The config every container starts from: close to `runc spec`, without
/// a terminal, running the checker.
pub fn default_config() -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": checker_args(),
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
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
        "hostname": "rst",
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

fn copy_file(from: &Path, to: &Path, mode: u32) -> Result<(), String> {
    fs::copy(from, to).map_err(|e| format!("copy {} to {}: {e}", from.display(), to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", to.display()))
}

impl Bundle {
    /// A new bundle directory with its own copy of the rootfs.
    pub fn new(ctx: &mut Ctx, name: &str) -> Result<Bundle, String> {
        ctx.counter += 1;
        let dir = ctx.work.join(format!("bundle-{name}-{}", ctx.counter));
        fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o755));
        let st = Command::new("cp")
            .arg("-a")
            .arg(&ctx.base_rootfs)
            .arg(dir.join("rootfs"))
            .status()
            .map_err(|e| format!("cp -a: {e}"))?;
        if !st.success() {
            return Err(format!("cp -a {} failed", ctx.base_rootfs.display()));
        }
        let rst = dir.join("rootfs").join(RST_DIR.trim_start_matches('/'));
        fs::create_dir_all(&rst).map_err(|e| format!("mkdir {}: {e}", rst.display()))?;
        let _ = fs::set_permissions(&rst, fs::Permissions::from_mode(0o755));
        copy_file(&ctx.checker, &rst.join("rst-checker"), 0o755)?;
        Ok(Bundle {
            dir,
            config: default_config(),
            host_extra: json!({}),
        })
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// A path inside the rootfs, e.g. `"tmp/x"`.
    pub fn in_rootfs(&self, rel: &str) -> PathBuf {
        self.rootfs().join(rel.trim_start_matches('/'))
    }

    /// `config.process.args = ["sh", "-c", script]`.
    pub fn sh(&mut self, script: &str) {
        self.config["process"]["args"] = json!(["sh", "-c", script]);
    }

    /// Writes config.json for container `id` (with a cgroupsPath under the
    /// run's parent unless set) plus the checker's copies of it and of the
    /// host facts.
    pub fn write(&self, ctx: &Ctx, id: &str) -> Result<(), String> {
        let mut config = self.config.clone();
        if config["linux"].is_object() && config["linux"]["cgroupsPath"].is_null() {
            config["linux"]["cgroupsPath"] = json!(ctx.cgroups_path(id));
        }
        let text = serde_json::to_string_pretty(&config).map_err(|e| e.to_string())?;
        fs::write(self.dir.join("config.json"), &text)
            .map_err(|e| format!("write config.json: {e}"))?;
        let rst = self.in_rootfs(RST_DIR);
        fs::write(rst.join("config.json"), &text)
            .map_err(|e| format!("write .rst/config.json: {e}"))?;
        let mut host = ctx.host.to_json();
        if let (Some(h), Some(extra)) = (host.as_object_mut(), self.host_extra.as_object()) {
            for (k, v) in extra {
                h.insert(k.clone(), v.clone());
            }
        }
        fs::write(rst.join("host.json"), host.to_string())
            .map_err(|e| format!("write .rst/host.json: {e}"))?;
        for f in ["config.json", "host.json"] {
            let _ = fs::set_permissions(rst.join(f), fs::Permissions::from_mode(0o644));
        }
        Ok(())
    }
}

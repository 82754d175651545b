//! Profile → OCI config.json ([`to_oci_spec`]): what `phantom spec --profile NAME` prints
//! and `phantom run --profile NAME` runs, with no image: the host's system directories
//! are bind-mounted read-only into an empty rootfs, the caller's workspace read-write.
//!
//! # The annotation contract
//!
//! Three things of a profile have no OCI field; the runtime reads them from
//! annotations:
//!
//! | annotation | value | the runtime must |
//! |---|---|---|
//! | `run.phantom.mode` | `direct`, `sandbox`, `hardened` | `direct`: no namespaces, no rootfs (the process sees the host's filesystem, confined by Landlock and seccomp) |
//! | `run.phantom.landlock` | [`LandlockRules`](crate::landlock::LandlockRules) as JSON | parse it before the fork; in the init, after pivot_root and before seccomp, call [`landlock::apply`](crate::landlock::apply) with the mode; `hardened`: fail the start on error |
//! | `run.phantom.network` | `none`, `loopback`, `egress`, `host` | `loopback`: bring `lo` up in the new network namespace; `egress`: the namespace is joined by path (phantom-egress made it) |
//! | `run.phantom.profile` | the profile's name | nothing (for `phantom list`, logs) |

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Mount, Spec};
use serde_json::{json, Value};

use crate::landlock::{LandlockRules, PathRule};
use crate::policy::linux_resources;
use crate::profile::{Mode, MountKind, NetworkMode, Profile};

pub const MODE_ANNOTATION: &str = "run.phantom.mode";
pub const LANDLOCK_ANNOTATION: &str = crate::landlock::ANNOTATION;
pub const NETWORK_ANNOTATION: &str = "run.phantom.network";
pub const PROFILE_ANNOTATION: &str = "run.phantom.profile";

/// Where the sandbox's working directory is mounted.
pub const WORKSPACE: &str = "/workspace";
/// The default size of the private /tmp.
pub const DEFAULT_TMP_SIZE: u64 = 64 << 20;
/// The default size of /dev/shm.
pub const DEFAULT_SHM_SIZE: u64 = 64 << 20;

/// Host directories bind-mounted read-only when `host-system` is on (those that exist).
pub const HOST_SYSTEM_DIRS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];
/// The minimal /etc: these entries of the host's /etc, read-only (those that exist).
pub const HOST_ETC: &[&str] = &[
    "passwd",
    "group",
    "hosts",
    "resolv.conf",
    "nsswitch.conf",
    "localtime",
    "ld.so.cache",
    "ssl",
    "ca-certificates",
    "alternatives",
];

/// The host side of an egress sandbox, made before its config.json.
#[derive(Clone, Debug, PartialEq)]
pub struct EgressNet {
    /// A bind-mounted network namespace (`/run/netns/NAME`).
    pub netns: PathBuf,
    /// Mounted read-only at /etc/resolv.conf instead of the host's.
    pub resolv_conf: PathBuf,
}

/// What the caller adds to a profile to make a config.json.
#[derive(Clone, Debug, PartialEq)]
pub struct SandboxOptions {
    /// The bundle's rootfs: an empty directory the caller made (unused in direct mode).
    pub rootfs: PathBuf,
    /// The host directory mounted read-write at `/workspace` (the cwd in direct mode).
    pub workspace: PathBuf,
    /// The command; empty: the profile's `command`, else `/bin/sh`.
    pub args: Vec<String>,
    /// `KEY=VALUE`s added after the profile's env (a key given twice: the last wins).
    pub env: Vec<String>,
    /// The process's uid and gid inside the sandbox.
    pub uid: u32,
    pub gid: u32,
    /// The host ids the sandbox's uid/gid map onto in hardened mode's user namespace.
    pub host_uid: u32,
    pub host_gid: u32,
    /// Overrides the profile's network mode.
    pub network: Option<NetworkMode>,
    /// Network `egress`: the namespace phantom prepared (joined by path)
    /// and the resolv.conf naming phantom's resolver; none (as `phantom
    /// spec` prints it): a new, empty network namespace.
    pub egress_net: Option<EgressNet>,
    pub terminal: bool,
    pub hostname: String,
}

impl SandboxOptions {
    /// Options for the calling user: its real uid/gid, inside and outside.
    pub fn new(rootfs: impl Into<PathBuf>, workspace: impl Into<PathBuf>) -> Self {
        // SAFETY: getuid and getgid have no preconditions and cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        SandboxOptions {
            rootfs: rootfs.into(),
            workspace: workspace.into(),
            args: Vec::new(),
            env: Vec::new(),
            uid,
            gid,
            host_uid: uid,
            host_gid: gid,
            network: None,
            egress_net: None,
            terminal: false,
            hostname: "phantom".into(),
        }
    }
}

/// runc's default masked paths (without /sys: phantom's sandboxes mount none).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
];
/// runc's default read-only paths.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

fn bind(source: &Path, dest: &Path, writable: bool) -> Value {
    let mut options = vec!["bind", "nosuid", "nodev"];
    options.push(if writable { "rw" } else { "ro" });
    json!({"destination": dest, "type": "bind", "source": source, "options": options})
}

fn tmpfs(dest: &str, size: u64, mode: &str, extra: &[&str]) -> Value {
    let mut options: Vec<String> = vec!["nosuid".into(), "nodev".into()];
    options.extend(extra.iter().map(|s| s.to_string()));
    options.push(format!("mode={mode}"));
    options.push(format!("size={}k", size.div_ceil(1024)));
    json!({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": options})
}

fn profile_mounts_json(p: &Profile) -> Vec<Value> {
    let mut out = Vec::new();
    for m in &p.mounts {
        match &m.kind {
            MountKind::Bind { source, writable } => {
                if m.optional && !source.exists() {
                    continue;
                }
                out.push(bind(source, &m.target, *writable));
            }
            MountKind::Tmpfs { size } => {
                let dest = m.target.to_string_lossy();
                out.push(tmpfs(&dest, size.unwrap_or(DEFAULT_TMP_SIZE), "755", &[]));
            }
        }
    }
    out
}

/// The profile's own `mounts` as OCI mounts (an optional bind whose source is missing
/// on this host is left out).
pub fn profile_mounts(p: &Profile) -> Vec<Mount> {
    profile_mounts_json(p)
        .into_iter()
        .map(|v| serde_json::from_value(v).expect("a valid OCI mount"))
        .collect()
}

/// In direct mode the workspace is the host directory itself: rules under
/// `/workspace` are moved there.
fn direct_landlock(rules: &LandlockRules, workspace: &Path) -> LandlockRules {
    let mut out = rules.clone();
    out.paths = rules
        .paths
        .iter()
        .map(|r| PathRule {
            path: in_workspace(&r.path, workspace),
            access: r.access,
        })
        .collect();
    out
}

/// `/workspace/x` as the host path `workspace/x` (direct mode); other paths unchanged.
fn in_workspace(path: &Path, workspace: &Path) -> PathBuf {
    match path.strip_prefix(WORKSPACE) {
        Ok(rest) if rest.as_os_str().is_empty() => workspace.to_path_buf(),
        Ok(rest) => workspace.join(rest),
        Err(_) => path.to_path_buf(),
    }
}

/// The config.json of `profile` with `opts` (see the module docs and docs/policies.md).
pub fn to_oci_spec(profile: &Profile, opts: &SandboxOptions) -> Spec {
    let mode = profile.mode;
    let direct = mode == Mode::Direct;
    let network = if direct {
        NetworkMode::Host
    } else {
        opts.network.unwrap_or(profile.network)
    };
    let arch = crate::TargetArch::native();

    // Process.
    let args = if !opts.args.is_empty() {
        opts.args.clone()
    } else {
        profile
            .command
            .clone()
            .unwrap_or_else(|| vec!["/bin/sh".into()])
    };
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut set = |k: &str, v: &str| {
        if env.insert(k.to_string(), v.to_string()).is_none() {
            order.push(k.to_string());
        }
    };
    set(
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    );
    set("HOME", if direct { "/tmp" } else { WORKSPACE });
    if opts.terminal {
        set("TERM", "xterm");
    }
    for (k, v) in &profile.env {
        set(k, v);
    }
    for kv in &opts.env {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        set(k, v);
    }
    let env: Vec<String> = order.iter().map(|k| format!("{k}={}", env[k])).collect();

    let cwd = match (&profile.cwd, direct) {
        (Some(c), false) => c.clone(),
        (Some(c), true) => in_workspace(c, &opts.workspace),
        (None, false) => PathBuf::from(WORKSPACE),
        (None, true) => opts.workspace.clone(),
    };
    let caps: Vec<Value> = profile
        .capabilities
        .iter()
        .map(|c| serde_json::to_value(c).expect("capability serialises"))
        .collect();
    let rlimits: Vec<Value> = profile
        .rlimits
        .iter()
        .map(|r| json!({"type": r.kind, "soft": r.soft, "hard": r.hard}))
        .collect();
    let mut process = json!({
        "terminal": opts.terminal,
        "user": {"uid": opts.uid, "gid": opts.gid},
        "args": args,
        "env": env,
        "cwd": cwd,
        "capabilities": {
            "bounding": caps, "effective": caps, "permitted": caps, "ambient": caps
        },
        "noNewPrivileges": true,
    });
    if !rlimits.is_empty() {
        process["rlimits"] = Value::Array(rlimits);
    }

    // Mounts.
    let mut mounts: Vec<Value> = Vec::new();
    if !direct {
        mounts.push(
            json!({"destination": "/proc", "type": "proc", "source": "proc",
                           "options": ["nosuid", "noexec", "nodev"]}),
        );
        mounts.push(
            json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        );
        mounts.push(
            json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        );
        mounts.push(tmpfs(
            "/dev/shm",
            profile.resources.shm.unwrap_or(DEFAULT_SHM_SIZE),
            "1777",
            &["noexec"],
        ));
        if profile.host_system {
            for d in HOST_SYSTEM_DIRS {
                let p = Path::new(d);
                if p.exists() {
                    mounts.push(bind(p, p, false));
                }
            }
            let own_resolv = opts
                .egress_net
                .as_ref()
                .filter(|_| network == NetworkMode::Egress);
            for e in HOST_ETC {
                let p = Path::new("/etc").join(e);
                if let (true, Some(net)) = (*e == "resolv.conf", own_resolv) {
                    mounts.push(bind(&net.resolv_conf, &p, false));
                } else if p.exists() {
                    mounts.push(bind(&p, &p, false));
                }
            }
        }
        mounts.push(tmpfs(
            "/tmp",
            profile.resources.tmp.unwrap_or(DEFAULT_TMP_SIZE),
            "1777",
            &[],
        ));
        mounts.push(bind(&opts.workspace, Path::new(WORKSPACE), true));
        mounts.extend(profile_mounts_json(profile));
    }

    // Linux.
    let mut linux = json!({});
    let mut resources = serde_json::to_value(linux_resources(profile)).expect("serialises");
    if !direct {
        resources["devices"] = json!([{"allow": false, "access": "rwm"}]);
        let mut ns = vec!["pid", "mount", "ipc", "uts", "cgroup"];
        if network != NetworkMode::Host {
            ns.push("network");
        }
        if mode == Mode::Hardened {
            ns.push("user");
            linux["uidMappings"] =
                json!([{"containerID": opts.uid, "hostID": opts.host_uid, "size": 1}]);
            linux["gidMappings"] =
                json!([{"containerID": opts.gid, "hostID": opts.host_gid, "size": 1}]);
        }
        linux["namespaces"] = ns
            .iter()
            .map(|t| match (&opts.egress_net, *t, network) {
                (Some(net), "network", NetworkMode::Egress) => {
                    json!({"type": t, "path": net.netns})
                }
                _ => json!({"type": t}),
            })
            .collect();
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
    } else {
        linux["namespaces"] = json!([]);
    }
    if resources.as_object().is_some_and(|o| !o.is_empty()) {
        linux["resources"] = resources;
    }
    if let (Some(arch), Some(_)) = (arch, &profile.seccomp) {
        linux["seccomp"] =
            serde_json::to_value(profile.linux_seccomp(arch)).expect("seccomp serialises");
    }

    // Annotations.
    let landlock = if direct {
        direct_landlock(&profile.landlock, &opts.workspace)
    } else {
        profile.landlock.clone()
    };
    let mut annotations = json!({
        MODE_ANNOTATION: mode.name(),
        PROFILE_ANNOTATION: profile.name,
        NETWORK_ANNOTATION: network.name(),
    });
    if !landlock.is_empty() {
        annotations[LANDLOCK_ANNOTATION] = Value::String(landlock.to_annotation());
    }

    let mut spec = json!({
        // As `phantom spec`: nothing here needs a newer spec.
        "ociVersion": "1.0.2",
        "process": process,
        "root": if direct {
            json!({"path": "/", "readonly": false})
        } else {
            json!({"path": opts.rootfs, "readonly": true})
        },
        "mounts": mounts,
        "linux": linux,
        "annotations": annotations,
    });
    if !direct {
        spec["hostname"] = Value::String(opts.hostname.clone());
    }
    serde_json::from_value(spec).expect("to_oci_spec builds a valid config")
}

//! `rst-checker`: runs inside the container and compares the process's
//! reality with the container's own config.json.
//!
//! ```text
//! rst-checker check SPEC HOST           one line per check (see outcome.rs)
//! rst-checker hook --log F --name N [--delay-ms MS] [--exit CODE] [--sleep SECS] [ARGS...]
//! ```
//!
//! `SPEC` is the bundle's config.json (the runner copies it into the
//! rootfs); `HOST` is a small JSON file of facts only the host can know
//! (namespace inodes of the runtime and of `path`-joined namespaces, whether
//! the bundle's mount is shared). Every check is computed from those two
//! files, so the same checker serves every container the runner builds.
//! Hook mode records the hook's stdin (the container state), argv,
//! environment and namespaces as one JSON line appended to a log file.

pub(crate) mod cgroup;
mod files;
pub mod hook;
mod process;

use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};

use serde_json::Value;

use crate::outcome::{Line, Outcome};
use crate::procfs::{self, MountInfo};

/// Every check the checker knows, in output order.
pub const CHECK_NAMES: &[&str] = &[
    "hostname",
    "domainname",
    "process.args",
    "process.env",
    "process.cwd",
    "process.user.uid",
    "process.user.gid",
    "process.user.additionalGids",
    "process.user.umask",
    "process.capabilities.bounding",
    "process.capabilities.effective",
    "process.capabilities.permitted",
    "process.capabilities.inheritable",
    "process.capabilities.ambient",
    "process.noNewPrivileges",
    "process.rlimits",
    "process.oomScoreAdj",
    "process.terminal",
    "process.console",
    "linux.sysctl",
    "linux.namespaces.pid",
    "linux.namespaces.network",
    "linux.namespaces.mount",
    "linux.namespaces.ipc",
    "linux.namespaces.uts",
    "linux.namespaces.user",
    "linux.namespaces.cgroup",
    "linux.namespaces.time",
    "linux.uidMappings",
    "linux.gidMappings",
    "mounts.exist",
    "mounts.options",
    "root.readonly",
    "linux.rootfsPropagation",
    "linux.maskedPaths",
    "linux.readonlyPaths",
    "linux.devices",
    "linux.devices.default",
    "linux.devices.symlinks",
    "linux.resources.devices",
    "linux.resources.memory.limit",
    "linux.resources.memory.reservation",
    "linux.resources.memory.swap",
    "linux.resources.pids.limit",
    "linux.resources.cpu.shares",
    "linux.resources.cpu.quota",
    "linux.resources.cpu.period",
    "linux.resources.cpu.cpus",
    "linux.resources.cpu.mems",
    "linux.resources.blockIO.weight",
    "linux.resources.network.classID",
    "linux.seccomp.errno",
    "linux.seccomp.errnoRet",
    "linux.seccomp.defaultAction",
];

/// What every check may look at.
pub struct Env {
    /// The container's config.json.
    pub spec: Value,
    /// Host facts written by the runner.
    pub host: Value,
    /// `/proc/self/status`, read once at start.
    pub status: String,
    pub mounts: Result<Vec<MountInfo>, String>,
}

impl Env {
    /// `spec` at a JSON pointer such as `/process/user/uid`.
    pub fn spec_at(&self, ptr: &str) -> Option<&Value> {
        self.spec.pointer(ptr).filter(|v| !v.is_null())
    }

    /// The container's uid as config.json asks.
    pub fn uid(&self) -> u32 {
        self.spec_at("/process/user/uid")
            .and_then(Value::as_u64)
            .and_then(|u| u32::try_from(u).ok())
            .unwrap_or(0)
    }

    /// `linux.namespaces` as (type, optional path).
    pub fn namespaces(&self) -> Vec<(String, Option<String>)> {
        self.spec_at("/linux/namespaces")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|n| {
                        Some((
                            n.get("type")?.as_str()?.to_owned(),
                            n.get("path").and_then(Value::as_str).map(str::to_owned),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn has_namespace(&self, t: &str) -> bool {
        self.namespaces().iter().any(|(n, _)| n == t)
    }

    pub fn mounts(&self) -> Result<&[MountInfo], String> {
        self.mounts.as_deref().map_err(Clone::clone)
    }
}

/// Runs one check by name.
pub fn run_check(name: &str, env: &Env) -> Outcome {
    if let Some(t) = name.strip_prefix("linux.namespaces.") {
        return process::namespace(env, t);
    }
    if let Some(r) = name.strip_prefix("linux.resources.") {
        if r == "devices" {
            return files::device_cgroup(env);
        }
        return cgroup::check(env, r);
    }
    if let Some(set) = name.strip_prefix("process.capabilities.") {
        return process::capabilities(env, set);
    }
    match name {
        "hostname" => process::uts(env, "hostname"),
        "domainname" => process::uts(env, "domainname"),
        "process.args" => process::args(env),
        "process.env" => process::environment(env),
        "process.cwd" => process::cwd(env),
        "process.user.uid" => process::ids(env, "Uid", "/process/user/uid"),
        "process.user.gid" => process::ids(env, "Gid", "/process/user/gid"),
        "process.user.additionalGids" => process::groups(env),
        "process.user.umask" => process::umask(env),
        "process.noNewPrivileges" => process::no_new_privs(env),
        "process.rlimits" => process::rlimits(env),
        "process.oomScoreAdj" => process::oom_score_adj(env),
        "process.terminal" => process::terminal(env),
        "process.console" => process::console(env),
        "linux.sysctl" => process::sysctl(env),
        "linux.uidMappings" => process::mappings(env, "uid"),
        "linux.gidMappings" => process::mappings(env, "gid"),
        "mounts.exist" => files::mounts_exist(env),
        "mounts.options" => files::mounts_options(env),
        "root.readonly" => files::root_readonly(env),
        "linux.rootfsPropagation" => files::rootfs_propagation(env),
        "linux.maskedPaths" => files::masked_paths(env),
        "linux.readonlyPaths" => files::readonly_paths(env),
        "linux.devices" => files::devices(env),
        "linux.devices.default" => files::default_devices(env),
        "linux.devices.symlinks" => files::dev_symlinks(env),
        "linux.seccomp.errno" => process::seccomp(env, false),
        "linux.seccomp.errnoRet" => process::seccomp(env, true),
        "linux.seccomp.defaultAction" => process::seccomp_default(env),
        _ => Outcome::Fail(format!("rst-checker knows no check named {name}")),
    }
}

fn read_json(path: &str) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("read {path}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("parse {path}: {e}"))
}

/// `rst-checker check SPEC HOST`.
fn check_main(spec: &str, host: &str) -> i32 {
    let spec = match read_json(spec) {
        Ok(v) => v,
        Err(e) => {
            println!("not ok checker.setup # {e}");
            return 1;
        }
    };
    let host = read_json(host).unwrap_or(Value::Null);
    let env = Env {
        spec,
        host,
        status: std::fs::read_to_string("/proc/self/status").unwrap_or_default(),
        mounts: procfs::mountinfo(),
    };
    let mut out = std::io::stdout().lock();
    for name in CHECK_NAMES {
        let outcome = catch_unwind(AssertUnwindSafe(|| run_check(name, &env)))
            .unwrap_or_else(|_| Outcome::Fail("rst-checker panicked in this check".into()));
        // Each line is written and flushed on its own so that a crash later
        // on still leaves the earlier results readable.
        let _ = writeln!(out, "{}", Line(name, &outcome));
        let _ = out.flush();
    }
    let _ = writeln!(out, "# rst-checker done");
    let _ = out.flush();
    0
}

/// The checker's `main`.
pub fn main(args: &[String]) -> i32 {
    match args.get(1).map(String::as_str) {
        Some("check") if args.len() == 4 => check_main(&args[2], &args[3]),
        Some("hook") => hook::main(&args[2..]),
        Some("names") => {
            for n in CHECK_NAMES {
                println!("{n}");
            }
            0
        }
        _ => {
            eprintln!(
                "usage: rst-checker check SPEC HOST | hook --log FILE --name NAME \
                 [--delay-ms MS] [--exit CODE] [--sleep SECS] [ARGS...] | names"
            );
            2
        }
    }
}

//! `linux.resources` limits, read from the container's own view of its
//! cgroups (`/proc/self/cgroup` plus the cgroup mounts in mountinfo).
//!
//! A value the config does not set is a SKIP; so is a limit whose file this
//! host's kernel does not offer (no blkio weight without BFQ, no net_cls
//! hierarchy): both say why.

use std::fs;
use std::path::PathBuf;

use serde_json::Value;

use super::Env;
use crate::outcome::Outcome;
use crate::procfs::MountInfo;

/// A controller's directory for this process, and whether it is cgroup v2.
fn controller_dir(mounts: &[MountInfo], controller: &str) -> Result<(PathBuf, bool), String> {
    let text = fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("read /proc/self/cgroup: {e}"))?;
    let mut v2_path = None;
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if ctrls.is_empty() {
            v2_path = Some(path.to_owned());
            continue;
        }
        if !ctrls.split(',').any(|c| c == controller) {
            continue;
        }
        // v1: the mount of this hierarchy (its superblock options name the
        // controllers) that shows our cgroup.
        for m in mounts.iter().rev() {
            if m.fstype == "cgroup" && m.has_super(controller) {
                if let Some(dir) = under_mount(m, path) {
                    return Ok((dir, false));
                }
            }
        }
        return Err(format!(
            "/proc/self/cgroup puts us in {controller} cgroup {path}, but no cgroup mount in \
             the container shows it"
        ));
    }
    if let Some(path) = v2_path {
        let controller = v2_name(controller);
        for m in mounts.iter().rev() {
            if m.fstype != "cgroup2" {
                continue;
            }
            if let Some(dir) = under_mount(m, &path) {
                let ctrls = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
                if ctrls.split_whitespace().any(|c| c == controller) {
                    return Ok((dir, true));
                }
            }
        }
    }
    Err(format!(
        "no {controller} controller is mounted in the container (no cgroup mount, or the \
         host does not offer it)"
    ))
}

/// A v1 controller's name in cgroup v2 (`blkio` is `io` there).
pub fn v2_name(controller: &str) -> &str {
    match controller {
        "blkio" => "io",
        c => c,
    }
}

/// Where cgroup `path` appears under mount `m`, if it does.
fn under_mount(m: &MountInfo, path: &str) -> Option<PathBuf> {
    let root = m.root.trim_end_matches('/');
    let rel = if root.is_empty() {
        path
    } else if path == root {
        ""
    } else {
        path.strip_prefix(root)?.strip_prefix('/')?
    };
    let dir = PathBuf::from(&m.mount_point).join(rel.trim_start_matches('/'));
    dir.is_dir().then_some(dir)
}

fn read_value(dir: &std::path::Path, file: &str) -> Result<String, Outcome> {
    match fs::read_to_string(dir.join(file)) {
        Ok(t) => Ok(t.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Outcome::Skip(format!(
            "{file} does not exist in this cgroup hierarchy (the host kernel does not offer it)"
        ))),
        Err(e) => Err(Outcome::Fail(format!(
            "read {}: {e}",
            dir.join(file).display()
        ))),
    }
}

/// cgroup v2's io.weight for a v1 blkio.weight value (10..1000 onto
/// 1..10000, as runc and crun convert it).
pub fn blkio_weight_to_io(w: u64) -> u64 {
    let w = w.clamp(10, 1000);
    1 + (w - 10) * 9999 / 990
}

/// cgroup v2's cpu.weight for a v1 cpu.shares value (the conversion runc,
/// crun and the kernel documentation use).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + ((shares.max(2) - 2) * 9999) / 262_142
}

/// Which files hold one resource, on v1 and on v2.
struct Spec {
    ptr: &'static str,
    controller: &'static str,
    v1: &'static [&'static str],
    v2: &'static [&'static str],
}

const SPECS: &[(&str, Spec)] = &[
    (
        "memory.limit",
        Spec {
            ptr: "/linux/resources/memory/limit",
            controller: "memory",
            v1: &["memory.limit_in_bytes"],
            v2: &["memory.max"],
        },
    ),
    (
        "memory.reservation",
        Spec {
            ptr: "/linux/resources/memory/reservation",
            controller: "memory",
            v1: &["memory.soft_limit_in_bytes"],
            v2: &["memory.low"],
        },
    ),
    (
        "memory.swap",
        Spec {
            ptr: "/linux/resources/memory/swap",
            controller: "memory",
            v1: &["memory.memsw.limit_in_bytes"],
            v2: &["memory.swap.max"],
        },
    ),
    (
        "pids.limit",
        Spec {
            ptr: "/linux/resources/pids/limit",
            controller: "pids",
            v1: &["pids.max"],
            v2: &["pids.max"],
        },
    ),
    (
        "cpu.shares",
        Spec {
            ptr: "/linux/resources/cpu/shares",
            controller: "cpu",
            v1: &["cpu.shares"],
            v2: &["cpu.weight"],
        },
    ),
    (
        "cpu.quota",
        Spec {
            ptr: "/linux/resources/cpu/quota",
            controller: "cpu",
            v1: &["cpu.cfs_quota_us"],
            v2: &["cpu.max"],
        },
    ),
    (
        "cpu.period",
        Spec {
            ptr: "/linux/resources/cpu/period",
            controller: "cpu",
            v1: &["cpu.cfs_period_us"],
            v2: &["cpu.max"],
        },
    ),
    (
        "cpu.cpus",
        Spec {
            ptr: "/linux/resources/cpu/cpus",
            controller: "cpuset",
            v1: &["cpuset.cpus"],
            v2: &["cpuset.cpus"],
        },
    ),
    (
        "cpu.mems",
        Spec {
            ptr: "/linux/resources/cpu/mems",
            controller: "cpuset",
            v1: &["cpuset.mems"],
            v2: &["cpuset.mems"],
        },
    ),
    (
        "blockIO.weight",
        Spec {
            ptr: "/linux/resources/blockIO/weight",
            controller: "blkio",
            v1: &["blkio.weight", "blkio.bfq.weight"],
            v2: &["io.bfq.weight", "io.weight"],
        },
    ),
    (
        "network.classID",
        Spec {
            ptr: "/linux/resources/network/classID",
            controller: "net_cls",
            v1: &["net_cls.classid"],
            v2: &[],
        },
    ),
];

/// Normalises a value for comparison: `max` and -1 mean unlimited.
fn norm(s: &str) -> String {
    match s.trim() {
        "max" | "-1" | "9223372036854771712" => "max".to_owned(),
        t => t.strip_prefix("default ").unwrap_or(t).to_owned(),
    }
}

/// One `linux.resources.<name>` check.
pub fn check(env: &Env, name: &str) -> Outcome {
    let Some((_, spec)) = SPECS.iter().find(|(n, _)| *n == name) else {
        return Outcome::Fail(format!("unknown resource check {name}"));
    };
    let Some(value) = env.spec_at(spec.ptr) else {
        return Outcome::Skip(format!(
            "{} is not set in config.json",
            spec.ptr.trim_start_matches('/').replace('/', ".")
        ));
    };
    let mounts = match env.mounts() {
        Ok(m) => m,
        Err(e) => return Outcome::Fail(e),
    };
    let (dir, v2) = match controller_dir(mounts, spec.controller) {
        Ok(d) => d,
        Err(e) => {
            // A controller the host never mounted cannot be checked; one
            // that exists on the host but not in the container is a failure.
            let on_host = env
                .host
                .pointer(&format!("/controllers/{}", spec.controller))
                .and_then(Value::as_bool)
                .unwrap_or(true);
            return if on_host {
                Outcome::Fail(e)
            } else {
                Outcome::Skip(format!("the host has no {} controller", spec.controller))
            };
        }
    };
    let files = if v2 { spec.v2 } else { spec.v1 };
    let mut last = None;
    for file in files {
        match read_value(&dir, file) {
            Ok(got) => return compare(name, value, &got, (v2, file), env),
            Err(o) => last = Some(o),
        }
    }
    last.unwrap_or_else(|| Outcome::Skip(format!("{name} has no cgroup v2 file")))
}

/// `file` is the one `got` was read from (v2's `io.weight` holds the
/// converted weight, `io.bfq.weight` the blkio one).
fn compare(name: &str, value: &Value, got: &str, (v2, file): (bool, &str), env: &Env) -> Outcome {
    let want_raw = match value {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    let want = match (name, v2) {
        ("cpu.shares", true) => shares_to_weight(value.as_u64().unwrap_or(0)).to_string(),
        ("blockIO.weight", true) if file == "io.weight" => {
            blkio_weight_to_io(value.as_u64().unwrap_or(0)).to_string()
        }
        ("memory.swap", true) => {
            // v2 limits swap alone; OCI's swap is memory + swap.
            let limit = env
                .spec_at("/linux/resources/memory/limit")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            match value.as_i64() {
                Some(-1) | None => "max".to_owned(),
                Some(s) => (s - limit).to_string(),
            }
        }
        _ => want_raw.clone(),
    };
    let got = match (name, v2) {
        ("cpu.quota", true) => got.split_whitespace().next().unwrap_or("").to_owned(),
        ("cpu.period", true) => got.split_whitespace().nth(1).unwrap_or("").to_owned(),
        _ => got.to_owned(),
    };
    Outcome::check(norm(&got) == norm(&want), || {
        format!("want {want} (config {want_raw}), got {got}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_conversion() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10000);
        assert_eq!(blkio_weight_to_io(10), 1);
        assert_eq!(blkio_weight_to_io(1000), 10000);
        assert_eq!(blkio_weight_to_io(300), 2930);
    }

    #[test]
    fn path_under_mount() {
        let m = MountInfo {
            root: "/".into(),
            mount_point: "/".into(),
            ..MountInfo::default()
        };
        assert_eq!(under_mount(&m, "/"), Some(PathBuf::from("/")));
        assert_eq!(norm("max"), norm("-1"));
    }
}

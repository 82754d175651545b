//! `events --stats`: the "data" object runc prints (runc's types.Stats,
//! with Go's `omitempty` rules: zero numbers and empty lists of fields
//! marked so are left out, structs never are).
//!
//! v1 reads cpuacct.*, cpu.stat, memory.*, pids.*, blkio.* and hugetlb.*;
//! v2 reads cpu.stat, memory.{current,max,peak,stat,events,swap.*},
//! pids.*, io.stat and hugetlb.*. Every file is optional: a missing one
//! reads as zero, as for a controller a hybrid host does not have.

use std::path::Path;

use serde_json::{json, Map, Value};

use super::error::{CgroupError, Result};
use super::{fsio, Cgroup};

type Obj = Map<String, Value>;

/// Insert `v` unless it is zero (Go `omitempty`).
fn nz(o: &mut Obj, k: &str, v: u64) {
    if v != 0 {
        o.insert(k.into(), json!(v));
    }
}

fn list(o: &mut Obj, k: &str, v: Vec<u64>) {
    if !v.is_empty() {
        o.insert(k.into(), json!(v));
    }
}

fn num(dir: &Path, file: &str) -> u64 {
    fsio::read_u64(&dir.join(file)).unwrap_or(0)
}

fn kv(dir: &Path, file: &str) -> Vec<(String, u64)> {
    fsio::read_opt(&dir.join(file))
        .map(|t| {
            fsio::key_values(&t)
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect()
        })
        .unwrap_or_default()
}

fn get(kv: &[(String, u64)], key: &str) -> u64 {
    kv.iter().find(|(k, _)| k == key).map_or(0, |(_, v)| *v)
}

pub(crate) fn stats(cg: &Cgroup) -> Result<Value> {
    let dirs = cg.dirs();
    if !dirs.iter().any(|d| d.is_dir()) {
        let d = dirs
            .first()
            .map_or_else(|| Path::new(&cg.path).to_path_buf(), |d| d.to_path_buf());
        return Err(CgroupError::io(
            "events --stats",
            "read",
            d,
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ));
    }
    let v2 = cg.unified.as_deref();
    let mut out = Obj::new();
    out.insert("cpu".into(), cpu(cg, v2));
    out.insert("cpuset".into(), cpuset(cg, v2));
    out.insert("memory".into(), memory(cg, v2));
    out.insert("pids".into(), pids(cg, v2));
    out.insert("blkio".into(), blkio(cg, v2));
    out.insert("hugetlb".into(), hugetlb(cg, v2));
    out.insert("intel_rdt".into(), json!({}));
    out.insert("network_interfaces".into(), Value::Null);
    Ok(Value::Object(out))
}

fn cpu(cg: &Cgroup, v2: Option<&Path>) -> Value {
    let mut usage = Obj::new();
    let mut thr = Obj::new();
    let (mut kernel, mut user) = (0, 0);
    if let Some(d) = cg.v1.get("cpuacct") {
        nz(&mut usage, "total", num(d, "cpuacct.usage"));
        let percpu = |file: &str| -> Vec<u64> {
            fsio::read_opt(&d.join(file))
                .map(|t| t.split_whitespace().filter_map(fsio::parse_u64).collect())
                .unwrap_or_default()
        };
        list(&mut usage, "percpu", percpu("cpuacct.usage_percpu"));
        // cpuacct.usage_all: "cpu user system" then one line per cpu.
        let (mut pk, mut pu) = (Vec::new(), Vec::new());
        for line in fsio::read_opt(&d.join("cpuacct.usage_all"))
            .unwrap_or_default()
            .lines()
            .skip(1)
        {
            let f: Vec<u64> = line
                .split_whitespace()
                .filter_map(fsio::parse_u64)
                .collect();
            if let [_, u, s] = f[..] {
                pu.push(u);
                pk.push(s);
            }
        }
        list(&mut usage, "percpu_kernel", pk);
        list(&mut usage, "percpu_user", pu);
        if fsio::exists(&d.join("cpuacct.usage_user")) {
            user = num(d, "cpuacct.usage_user");
            kernel = num(d, "cpuacct.usage_sys");
        } else {
            // USER_HZ ticks.
            let st = kv(d, "cpuacct.stat");
            let tick = 1_000_000_000 / clock_ticks();
            user = get(&st, "user") * tick;
            kernel = get(&st, "system") * tick;
        }
    } else if let Some(d) = v2 {
        let st = kv(d, "cpu.stat");
        nz(&mut usage, "total", get(&st, "usage_usec") * 1000);
        user = get(&st, "user_usec") * 1000;
        kernel = get(&st, "system_usec") * 1000;
    }
    usage.insert("kernel".into(), json!(kernel));
    usage.insert("user".into(), json!(user));
    if let Some(d) = cg.v1.get("cpu") {
        let st = kv(d, "cpu.stat");
        nz(&mut thr, "periods", get(&st, "nr_periods"));
        nz(&mut thr, "throttledPeriods", get(&st, "nr_throttled"));
        nz(&mut thr, "throttledTime", get(&st, "throttled_time"));
    } else if let Some(d) = v2 {
        let st = kv(d, "cpu.stat");
        nz(&mut thr, "periods", get(&st, "nr_periods"));
        nz(&mut thr, "throttledPeriods", get(&st, "nr_throttled"));
        nz(&mut thr, "throttledTime", get(&st, "throttled_usec") * 1000);
    }
    json!({"usage": usage, "throttling": thr})
}

fn clock_ticks() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as u64,
        _ => 100,
    }
}

/// "0-3,5" → [0, 1, 2, 3, 5].
pub(crate) fn cpu_list(s: &str) -> Vec<u64> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u64>(), b.parse::<u64>()) {
                    out.extend(a..=b.min(a + 65535));
                }
            }
            None => out.extend(part.parse::<u64>().ok()),
        }
    }
    out
}

fn cpuset(cg: &Cgroup, v2: Option<&Path>) -> Value {
    let mut o = Obj::new();
    let flags = [
        ("cpu_exclusive", "cpuset.cpu_exclusive"),
        ("mem_hardwall", "cpuset.mem_hardwall"),
        ("mem_exclusive", "cpuset.mem_exclusive"),
        ("memory_migrate", "cpuset.memory_migrate"),
        ("memory_spread_page", "cpuset.memory_spread_page"),
        ("memory_spread_slab", "cpuset.memory_spread_slab"),
        ("memory_pressure", "cpuset.memory_pressure"),
        ("sched_load_balance", "cpuset.sched_load_balance"),
    ];
    let v1 = cg.v1.get("cpuset");
    let (dir, cpus, mems) = match (v1, v2) {
        (Some(d), _) => (Some(d.as_path()), "cpuset.cpus", "cpuset.mems"),
        (None, Some(d)) => (Some(d), "cpuset.cpus.effective", "cpuset.mems.effective"),
        _ => (None, "", ""),
    };
    let read_list = |f: &str| {
        dir.and_then(|d| fsio::read_opt(&d.join(f)))
            .map(|t| cpu_list(&t))
            .unwrap_or_default()
    };
    list(&mut o, "cpus", read_list(cpus));
    list(&mut o, "mems", read_list(mems));
    for (k, f) in flags {
        let v = match (v1, dir) {
            (Some(_), Some(d)) => num(d, f),
            _ => 0,
        };
        o.insert(k.into(), json!(v));
    }
    let relax = v1
        .and_then(|d| fsio::read_opt(&d.join("cpuset.sched_relax_domain_level")))
        .and_then(|t| t.trim().parse::<i64>().ok())
        .unwrap_or(0);
    o.insert("sched_relax_domain_level".into(), json!(relax));
    Value::Object(o)
}

fn entry(limit: u64, usage: u64, max: u64, failcnt: u64) -> Value {
    let mut o = Obj::new();
    o.insert("limit".into(), json!(limit));
    nz(&mut o, "usage", usage);
    nz(&mut o, "max", max);
    o.insert("failcnt".into(), json!(failcnt));
    Value::Object(o)
}

fn memory(cg: &Cgroup, v2: Option<&Path>) -> Value {
    let mut o = Obj::new();
    let raw: Vec<(String, u64)>;
    if let Some(d) = cg.v1.get("memory") {
        raw = kv(d, "memory.stat");
        let e = |p: &str| {
            entry(
                num(d, &format!("{p}.limit_in_bytes")),
                num(d, &format!("{p}.usage_in_bytes")),
                num(d, &format!("{p}.max_usage_in_bytes")),
                num(d, &format!("{p}.failcnt")),
            )
        };
        nz(&mut o, "cache", get(&raw, "cache"));
        o.insert("usage".into(), e("memory"));
        o.insert("swap".into(), e("memory.memsw"));
        o.insert("kernel".into(), e("memory.kmem"));
        o.insert("kernelTCP".into(), e("memory.kmem.tcp"));
    } else if let Some(d) = v2 {
        raw = kv(d, "memory.stat");
        let events = kv(d, "memory.events");
        let (usage, limit) = (num(d, "memory.current"), num(d, "memory.max"));
        nz(&mut o, "cache", get(&raw, "file"));
        o.insert(
            "usage".into(),
            entry(limit, usage, num(d, "memory.peak"), get(&events, "max")),
        );
        // runc reports v2 swap as memory+swap, like v1's memsw.
        let swap_limit = num(d, "memory.swap.max");
        let swap_limit = if swap_limit == u64::MAX {
            u64::MAX
        } else {
            swap_limit.saturating_add(limit)
        };
        let swap_usage = num(d, "memory.swap.current") + usage;
        o.insert("swap".into(), entry(swap_limit, swap_usage, 0, 0));
        o.insert("kernel".into(), entry(0, 0, 0, 0));
        o.insert("kernelTCP".into(), entry(0, 0, 0, 0));
    } else {
        raw = Vec::new();
        for k in ["usage", "swap", "kernel", "kernelTCP"] {
            o.insert(k.into(), entry(0, 0, 0, 0));
        }
    }
    if !raw.is_empty() {
        let m: Obj = raw.into_iter().map(|(k, v)| (k, json!(v))).collect();
        o.insert("raw".into(), Value::Object(m));
    }
    Value::Object(o)
}

fn pids(cg: &Cgroup, v2: Option<&Path>) -> Value {
    let mut o = Obj::new();
    if let Some(d) = cg.v1.get("pids").map(|d| d.as_path()).or(v2) {
        nz(&mut o, "current", num(d, "pids.current"));
        let limit = num(d, "pids.max");
        nz(&mut o, "limit", if limit == u64::MAX { 0 } else { limit });
    }
    Value::Object(o)
}

fn blkio_entry(major: u64, minor: u64, op: &str, value: u64) -> Value {
    let mut o = Obj::new();
    nz(&mut o, "major", major);
    nz(&mut o, "minor", minor);
    if !op.is_empty() {
        o.insert("op".into(), json!(op));
    }
    nz(&mut o, "value", value);
    Value::Object(o)
}

/// v1 blkio lines: "8:0 Read 4096" ("Total N" lines are skipped).
pub(crate) fn blkio_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (dev, op, v) = match f[..] {
                [dev, op, v] => (dev, op, v),
                [dev, v] if dev.contains(':') => (dev, "", v),
                _ => return None,
            };
            let (ma, mi) = dev.split_once(':')?;
            Some(blkio_entry(
                ma.parse().ok()?,
                mi.parse().ok()?,
                op,
                v.parse().ok()?,
            ))
        })
        .collect()
}

fn blkio(cg: &Cgroup, v2: Option<&Path>) -> Value {
    let mut o = Obj::new();
    if let Some(d) = cg.v1.get("blkio") {
        // cfq, then bfq, then blk-throttle (which counts every device).
        const KEYS: [(&str, &str); 8] = [
            ("ioServiceBytesRecursive", "io_service_bytes_recursive"),
            ("ioServicedRecursive", "io_serviced_recursive"),
            ("ioQueueRecursive", "io_queued_recursive"),
            ("ioServiceTimeRecursive", "io_service_time_recursive"),
            ("ioWaitTimeRecursive", "io_wait_time_recursive"),
            ("ioMergedRecursive", "io_merged_recursive"),
            ("ioTimeRecursive", "time_recursive"),
            ("sectorsRecursive", "sectors_recursive"),
        ];
        let has_devices = |prefix: &str| {
            fsio::read_opt(&d.join(format!("{prefix}io_service_bytes_recursive")))
                .is_some_and(|t| !blkio_lines(&t).is_empty())
        };
        let prefix = ["blkio.", "blkio.bfq."]
            .into_iter()
            .find(|p| has_devices(p))
            .unwrap_or("blkio.throttle.");
        for (key, file) in KEYS {
            let lines = fsio::read_opt(&d.join(format!("{prefix}{file}")))
                .map(|t| blkio_lines(&t))
                .unwrap_or_default();
            if !lines.is_empty() {
                o.insert(key.into(), Value::Array(lines));
            }
        }
    } else if let Some(d) = v2 {
        let (mut bytes, mut ios) = (Vec::new(), Vec::new());
        for line in fsio::read_opt(&d.join("io.stat"))
            .unwrap_or_default()
            .lines()
        {
            let mut f = line.split_whitespace();
            let Some((ma, mi)) = f.next().and_then(|dev| dev.split_once(':')) else {
                continue;
            };
            let (Ok(ma), Ok(mi)) = (ma.parse::<u64>(), mi.parse::<u64>()) else {
                continue;
            };
            for kv in f {
                let Some((k, v)) = kv.split_once('=') else {
                    continue;
                };
                let Ok(v) = v.parse::<u64>() else { continue };
                let (table, op) = match k {
                    "rbytes" => (&mut bytes, "Read"),
                    "wbytes" => (&mut bytes, "Write"),
                    "dbytes" => (&mut bytes, "Discard"),
                    "rios" => (&mut ios, "Read"),
                    "wios" => (&mut ios, "Write"),
                    "dios" => (&mut ios, "Discard"),
                    _ => continue,
                };
                table.push(blkio_entry(ma, mi, op, v));
            }
        }
        if !bytes.is_empty() {
            o.insert("ioServiceBytesRecursive".into(), Value::Array(bytes));
        }
        if !ios.is_empty() {
            o.insert("ioServicedRecursive".into(), Value::Array(ios));
        }
    }
    Value::Object(o)
}

fn hugetlb(cg: &Cgroup, v2: Option<&Path>) -> Value {
    let mut o = Obj::new();
    let (dir, is_v1) = match (cg.v1.get("hugetlb"), v2) {
        (Some(d), _) => (d.as_path(), true),
        (None, Some(d)) => (d, false),
        _ => return Value::Object(o),
    };
    let suffix = if is_v1 { ".limit_in_bytes" } else { ".max" };
    let mut sizes: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter_map(|n| {
                    n.strip_prefix("hugetlb.")?
                        .strip_suffix(suffix)
                        .map(str::to_string)
                })
                .filter(|s| !s.contains('.'))
                .collect()
        })
        .unwrap_or_default();
    sizes.sort();
    for s in sizes {
        let mut e = Obj::new();
        let (usage, max, failcnt) = if is_v1 {
            (
                num(dir, &format!("hugetlb.{s}.usage_in_bytes")),
                num(dir, &format!("hugetlb.{s}.max_usage_in_bytes")),
                num(dir, &format!("hugetlb.{s}.failcnt")),
            )
        } else {
            (
                num(dir, &format!("hugetlb.{s}.current")),
                0,
                get(&kv(dir, &format!("hugetlb.{s}.events")), "max"),
            )
        };
        nz(&mut e, "usage", usage);
        nz(&mut e, "max", max);
        e.insert("failcnt".into(), json!(failcnt));
        o.insert(s, Value::Object(e));
    }
    Value::Object(o)
}

//! `linux.resources` → cgroup files (OCI config-linux.md "Control groups"),
//! following runc's fs (v1) and fs2 (v2) drivers: which file, which value,
//! in which order. Absent fields are left alone; for the numbers runc
//! treats 0 as "unset" too (limit, swap, reservation, shares, quota,
//! period, pids limit), and so do we.

use std::collections::HashMap;
use std::path::Path;

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxNetwork, LinuxPids, LinuxRdma,
    LinuxResources,
};

use super::error::{CgroupError, Result};
use super::{devices, fsio, Cgroup, Target};

pub(crate) fn apply(cg: &Cgroup, r: &LinuxResources) -> Result<()> {
    if let Some(c) = r.cpu() {
        cpuset(cg, c)?;
    }
    if let Some(d) = r.devices() {
        match device_target(cg)? {
            Target::V1(dir) => devices::apply_v1(dir, d)?,
            Target::V2(dir) => devices::apply_v2(dir, d)?,
        }
    }
    if let Some(m) = r.memory() {
        memory(cg, m)?;
    }
    if let Some(c) = r.cpu() {
        cpu(cg, c)?;
    }
    if let Some(p) = r.pids() {
        pids(cg, p)?;
    }
    if let Some(b) = r.block_io() {
        blkio(cg, b)?;
    }
    if let Some(h) = r.hugepage_limits() {
        hugetlb(cg, h)?;
    }
    if let Some(n) = r.network() {
        network(cg, n)?;
    }
    if let Some(rd) = r.rdma() {
        rdma(cg, rd)?;
    }
    if let Some(u) = r.unified() {
        unified(cg, u)?;
    }
    Ok(())
}

fn warn(field: &str, msg: &str) {
    tracing::warn!(field, "{field}: {msg}");
}

fn is_errno(e: &CgroupError, errno: i32) -> bool {
    matches!(e, CgroupError::Write { source, .. } if source.raw_os_error() == Some(errno))
}

/// Where `controller` ("blkio" stands for v2's "io") is driven for `field`.
pub(crate) fn target<'a>(cg: &'a Cgroup, controller: &str, field: &str) -> Result<Target<'a>> {
    if let Some(d) = cg.v1.get(controller) {
        return Ok(Target::V1(d));
    }
    let v2name = if controller == "blkio" {
        "io"
    } else {
        controller
    };
    let hybrid = !cg.is_v2();
    let Some(dir) = &cg.unified else {
        return Err(CgroupError::unsupported(
            field,
            &cg.path,
            format!("the {controller} controller is not mounted (cgroup v1) and there is no cgroup2 hierarchy"),
        ));
    };
    let list = dir.join("cgroup.controllers");
    let avail = fsio::read_opt(&list).unwrap_or_default();
    if avail.split_whitespace().any(|c| c == v2name) {
        return Ok(Target::V2(dir));
    }
    // Hybrid: `create` enabled nothing on the cgroup2 side; this setting
    // needs the controller there, so enable it (and only it) now.
    if hybrid && cg.enable_v2(v2name) {
        return Ok(Target::V2(dir));
    }
    let avail = fsio::read_opt(&list).unwrap_or_default();
    let also = if hybrid {
        format!(" and it is not mounted as a cgroup v1 hierarchy either (hybrid host: {controller} cannot be set)")
    } else {
        String::new()
    };
    Err(CgroupError::unsupported(
        field,
        list,
        format!(
            "the {v2name} controller is not enabled for this cgroup (cgroup.controllers lists {:?}){also}",
            avail.trim()
        ),
    ))
}

fn device_target(cg: &Cgroup) -> Result<Target<'_>> {
    if let Some(d) = cg.v1.get("devices") {
        return Ok(Target::V1(d));
    }
    match &cg.unified {
        Some(d) => Ok(Target::V2(d)),
        None => Err(CgroupError::unsupported(
            "linux.resources.devices",
            &cg.path,
            "the devices controller is not mounted and there is no cgroup2 hierarchy for an eBPF device filter",
        )),
    }
}

/// v2 number: -1 → "max".
fn v2_num(v: i64) -> String {
    if v == -1 {
        "max".into()
    } else {
        v.to_string()
    }
}

fn check_num(field: &str, dir: &Path, v: i64) -> Result<i64> {
    if v < -1 {
        return Err(CgroupError::invalid(
            field,
            dir,
            format!("{v} is invalid (a byte count, or -1 for no limit)"),
        ));
    }
    Ok(v)
}

// ---------------------------------------------------------------------------
// memory

fn memory(cg: &Cgroup, m: &LinuxMemory) -> Result<()> {
    const F: &str = "linux.resources.memory";
    let any = m.limit().is_some()
        || m.reservation().is_some()
        || m.swap().is_some()
        || m.kernel().is_some()
        || m.kernel_tcp().is_some()
        || m.swappiness().is_some()
        || m.disable_oom_killer().is_some()
        || m.use_hierarchy().is_some();
    if !any {
        return Ok(());
    }
    match target(cg, "memory", F)? {
        Target::V1(d) => memory_v1(d, m),
        Target::V2(d) => memory_v2(d, m),
    }
}

/// memory.limit_in_bytes; EBUSY means "below current usage": say so.
fn set_limit_v1(dir: &Path, v: i64) -> Result<()> {
    let r = fsio::write(
        "linux.resources.memory.limit",
        dir,
        "memory.limit_in_bytes",
        &v.to_string(),
    );
    match r {
        Err(CgroupError::Write {
            field,
            path,
            value,
            source,
            ..
        }) if source.raw_os_error() == Some(libc::EBUSY) => {
            let usage = fsio::read_u64(&dir.join("memory.usage_in_bytes")).unwrap_or(0);
            let peak = fsio::read_u64(&dir.join("memory.max_usage_in_bytes")).unwrap_or(0);
            Err(CgroupError::Write {
                field,
                path,
                value,
                hint: format!(
                    "; the limit is below the current usage ({usage} bytes, peak {peak})"
                ),
                source,
            })
        }
        r => r,
    }
}

fn memory_v1(dir: &Path, m: &LinuxMemory) -> Result<()> {
    const MEMSW: &str = "memory.memsw.limit_in_bytes";
    let limit = m.limit().filter(|v| *v != 0);
    let mut swap = m.swap().filter(|v| *v != 0);
    if let Some(l) = limit {
        check_num("linux.resources.memory.limit", dir, l)?;
    }
    if let Some(s) = swap {
        check_num("linux.resources.memory.swap", dir, s)?;
    }
    let has_memsw = fsio::exists(&dir.join(MEMSW));
    // runc: unlimited memory with swap unset means unlimited swap too.
    if limit == Some(-1) && swap.is_none() && has_memsw {
        swap = Some(-1);
    }
    if let Some(s) = swap {
        if !has_memsw {
            if s == -1 {
                swap = None;
            } else {
                return Err(CgroupError::unsupported(
                    "linux.resources.memory.swap",
                    dir.join(MEMSW),
                    "swap accounting is off in this kernel (boot with swapaccount=1)",
                ));
            }
        }
    }
    let set_swap = |s: i64| fsio::write("linux.resources.memory.swap", dir, MEMSW, &s.to_string());
    match (limit, swap) {
        (Some(l), Some(s)) => {
            // memsw must stay >= limit at every step: when raising, swap first.
            let cur = fsio::read(
                "linux.resources.memory.limit",
                &dir.join("memory.limit_in_bytes"),
            )?;
            let cur = fsio::parse_u64(&cur).unwrap_or(u64::MAX);
            if s == -1 || cur < s as u64 {
                set_swap(s)?;
                set_limit_v1(dir, l)?;
            } else {
                set_limit_v1(dir, l)?;
                set_swap(s)?;
            }
        }
        (Some(l), None) => set_limit_v1(dir, l)?,
        (None, Some(s)) => set_swap(s)?,
        (None, None) => {}
    }
    for (field, file, v) in [
        (
            "linux.resources.memory.kernel",
            "memory.kmem.limit_in_bytes",
            m.kernel(),
        ),
        (
            "linux.resources.memory.kernelTCP",
            "memory.kmem.tcp.limit_in_bytes",
            m.kernel_tcp(),
        ),
    ] {
        let Some(v) = v else { continue };
        if !fsio::exists(&dir.join(file)) {
            warn(
                field,
                &format!(
                    "ignored: this kernel has no {file} (kernel memory limits are deprecated)"
                ),
            );
            continue;
        }
        fsio::write(field, dir, file, &v.to_string())?;
        let now = fsio::read_u64(&dir.join(file)).unwrap_or(0);
        if v > 0 && now >= 1 << 62 {
            warn(
                field,
                &format!(
                    "the kernel accepted but ignores {file} (kernel memory limits are deprecated)"
                ),
            );
        }
    }
    if let Some(r) = m.reservation().filter(|v| *v != 0) {
        check_num("linux.resources.memory.reservation", dir, r)?;
        fsio::write(
            "linux.resources.memory.reservation",
            dir,
            "memory.soft_limit_in_bytes",
            &r.to_string(),
        )?;
    }
    if let Some(d) = m.disable_oom_killer() {
        let v = if d { "1" } else { "0" };
        fsio::write(
            "linux.resources.memory.disableOOMKiller",
            dir,
            "memory.oom_control",
            v,
        )?;
    }
    if let Some(s) = m.swappiness() {
        if s > 100 {
            return Err(CgroupError::invalid(
                "linux.resources.memory.swappiness",
                dir.join("memory.swappiness"),
                format!("{s} is out of range 0-100"),
            ));
        }
        fsio::write(
            "linux.resources.memory.swappiness",
            dir,
            "memory.swappiness",
            &s.to_string(),
        )?;
    }
    if let Some(h) = m.use_hierarchy() {
        const FIELD: &str = "linux.resources.memory.useHierarchy";
        match fsio::write(
            FIELD,
            dir,
            "memory.use_hierarchy",
            if h { "1" } else { "0" },
        ) {
            Err(e) if !h && is_errno(&e, libc::EINVAL) => {
                warn(
                    FIELD,
                    "ignored: this kernel always accounts memory hierarchically",
                );
            }
            r => r?,
        }
    }
    Ok(())
}

/// OCI swap is memory+swap; v2's memory.swap.max is swap alone (runc's
/// ConvertMemorySwapToCgroupV2Value). 0 = leave alone, -1 = "max".
pub(crate) fn swap_to_v2(swap: i64, limit: i64) -> std::result::Result<i64, String> {
    match (swap, limit) {
        (0, -1) => Ok(-1),
        (-1, _) | (0, _) => Ok(swap),
        (_, -1) => Ok(swap),
        (_, 0) => Err(
            "a swap limit needs a memory limit on cgroup v2 (memory.swap.max = swap - limit)"
                .into(),
        ),
        (_, l) if l < 0 => Err(format!("invalid memory limit {l}")),
        (s, l) if s < l => Err(format!(
            "swap ({s}) is memory+swap and must be >= the memory limit ({l})"
        )),
        (s, l) => Ok(s - l),
    }
}

fn memory_v2(dir: &Path, m: &LinuxMemory) -> Result<()> {
    let limit = m.limit().filter(|v| *v != 0);
    let swap = m.swap().filter(|v| *v != 0);
    if let Some(l) = limit {
        check_num("linux.resources.memory.limit", dir, l)?;
    }
    if let (Some(true), Some(l)) = (m.check_before_update(), limit) {
        if l > 0 {
            let usage = fsio::read_u64(&dir.join("memory.current")).unwrap_or(0);
            if usage >= l as u64 {
                return Err(CgroupError::invalid(
                    "linux.resources.memory.limit",
                    dir.join("memory.current"),
                    format!("the new limit {l} is not above the current usage {usage} (checkBeforeUpdate)"),
                ));
            }
        }
    }
    let sw = swap_to_v2(swap.unwrap_or(0), limit.unwrap_or(0)).map_err(|e| {
        CgroupError::invalid(
            "linux.resources.memory.swap",
            dir.join("memory.swap.max"),
            e,
        )
    })?;
    let swap_str = match sw {
        0 if swap.is_some_and(|s| s > 0) => Some("0".to_string()),
        0 => None,
        v => Some(v2_num(v)),
    };
    if let Some(s) = swap_str {
        match fsio::write("linux.resources.memory.swap", dir, "memory.swap.max", &s) {
            // No swap accounting: "no swap" and "unlimited" need no file.
            Err(e) if is_errno(&e, libc::ENOENT) && (s == "max" || s == "0") => {}
            r => r?,
        }
    }
    if let Some(l) = limit {
        fsio::write(
            "linux.resources.memory.limit",
            dir,
            "memory.max",
            &v2_num(l),
        )?;
    }
    if let Some(r) = m.reservation().filter(|v| *v != 0) {
        check_num("linux.resources.memory.reservation", dir, r)?;
        fsio::write(
            "linux.resources.memory.reservation",
            dir,
            "memory.low",
            &v2_num(r),
        )?;
    }
    if m.kernel().is_some() {
        warn(
            "linux.resources.memory.kernel",
            "ignored: cgroup v2 has no kernel memory limit",
        );
    }
    if m.kernel_tcp().is_some() {
        warn(
            "linux.resources.memory.kernelTCP",
            "ignored: cgroup v2 has no kernel TCP memory limit",
        );
    }
    if m.swappiness().is_some() {
        warn(
            "linux.resources.memory.swappiness",
            "ignored: cgroup v2 has no per-cgroup swappiness",
        );
    }
    if m.disable_oom_killer() == Some(true) {
        warn(
            "linux.resources.memory.disableOOMKiller",
            "ignored: cgroup v2 cannot disable the OOM killer",
        );
    }
    if m.use_hierarchy() == Some(false) {
        warn(
            "linux.resources.memory.useHierarchy",
            "ignored: cgroup v2 is always hierarchical",
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// cpu and cpuset

fn cpuset(cg: &Cgroup, c: &LinuxCpu) -> Result<()> {
    let cpus = c.cpus().as_deref().filter(|s| !s.is_empty());
    let mems = c.mems().as_deref().filter(|s| !s.is_empty());
    if cpus.is_none() && mems.is_none() {
        return Ok(());
    }
    let field = if cpus.is_some() {
        "linux.resources.cpu.cpus"
    } else {
        "linux.resources.cpu.mems"
    };
    let (Target::V1(dir) | Target::V2(dir)) = target(cg, "cpuset", field)?;
    if let Some(v) = cpus {
        fsio::write("linux.resources.cpu.cpus", dir, "cpuset.cpus", v)?;
    }
    if let Some(v) = mems {
        fsio::write("linux.resources.cpu.mems", dir, "cpuset.mems", v)?;
    }
    Ok(())
}

/// runc's shares → cpu.weight: [2, 262144] → [1, 10000].
pub(crate) fn shares_to_weight(shares: u64) -> u64 {
    let s = shares.clamp(2, 262_144);
    1 + ((s - 2) * 9999) / 262_142
}

fn cpu(cg: &Cgroup, c: &LinuxCpu) -> Result<()> {
    let any = c.shares().is_some()
        || c.quota().is_some()
        || c.period().is_some()
        || c.burst().is_some()
        || c.idle().is_some()
        || c.realtime_runtime().is_some()
        || c.realtime_period().is_some();
    if !any {
        return Ok(());
    }
    match target(cg, "cpu", "linux.resources.cpu")? {
        Target::V1(d) => cpu_v1(d, c),
        Target::V2(d) => cpu_v2(d, c),
    }
}

fn cpu_v1(dir: &Path, c: &LinuxCpu) -> Result<()> {
    if let Some(s) = c.shares().filter(|v| *v != 0) {
        const FIELD: &str = "linux.resources.cpu.shares";
        fsio::write(FIELD, dir, "cpu.shares", &s.to_string())?;
        let got = fsio::read_u64(&dir.join("cpu.shares")).unwrap_or(s);
        if got != s {
            let which = if s > got { "maximum" } else { "minimum" };
            return Err(CgroupError::invalid(
                FIELD,
                dir.join("cpu.shares"),
                format!("{s} is out of range: the {which} allowed cpu-shares is {got}"),
            ));
        }
    }
    let quota = c.quota().filter(|v| *v != 0);
    // The kernel can refuse a period (or burst) that does not fit the old
    // quota; then write it again after the quota, as runc does.
    let mut period_retry = None;
    if let Some(p) = c.period().filter(|v| *v != 0) {
        match fsio::write(
            "linux.resources.cpu.period",
            dir,
            "cpu.cfs_period_us",
            &p.to_string(),
        ) {
            Err(e) if is_errno(&e, libc::EINVAL) && quota.is_some() => period_retry = Some(p),
            r => r?,
        }
    }
    let mut burst_retry = None;
    if let Some(b) = c.burst() {
        const FIELD: &str = "linux.resources.cpu.burst";
        match fsio::write(FIELD, dir, "cpu.cfs_burst_us", &b.to_string()) {
            Err(e) if is_errno(&e, libc::ENOENT) => {
                warn(FIELD, "ignored: this kernel has no cpu.cfs_burst_us")
            }
            Err(e) if is_errno(&e, libc::EINVAL) && quota.is_some() => burst_retry = Some(b),
            r => r?,
        }
    }
    if let Some(q) = quota {
        if q < -1 {
            return Err(CgroupError::invalid(
                "linux.resources.cpu.quota",
                dir.join("cpu.cfs_quota_us"),
                format!("{q} is invalid (microseconds, or -1 for no limit)"),
            ));
        }
        fsio::write(
            "linux.resources.cpu.quota",
            dir,
            "cpu.cfs_quota_us",
            &q.to_string(),
        )?;
        if let Some(p) = period_retry {
            fsio::write(
                "linux.resources.cpu.period",
                dir,
                "cpu.cfs_period_us",
                &p.to_string(),
            )?;
        }
        if let Some(b) = burst_retry {
            fsio::write(
                "linux.resources.cpu.burst",
                dir,
                "cpu.cfs_burst_us",
                &b.to_string(),
            )?;
        }
    }
    if let Some(i) = c.idle() {
        fsio::write("linux.resources.cpu.idle", dir, "cpu.idle", &i.to_string())?;
    }
    // Real-time period before runtime (runc's SetRtSched).
    for (field, file, v) in [
        (
            "linux.resources.cpu.realtimePeriod",
            "cpu.rt_period_us",
            c.realtime_period().map(|v| v as i64),
        ),
        (
            "linux.resources.cpu.realtimeRuntime",
            "cpu.rt_runtime_us",
            c.realtime_runtime(),
        ),
    ] {
        let Some(v) = v.filter(|v| *v != 0) else {
            continue;
        };
        if !fsio::exists(&dir.join(file)) {
            return Err(CgroupError::unsupported(
                field,
                dir.join(file),
                "this kernel has no real-time group scheduling (CONFIG_RT_GROUP_SCHED)",
            ));
        }
        fsio::write(field, dir, file, &v.to_string())?;
    }
    Ok(())
}

fn cpu_v2(dir: &Path, c: &LinuxCpu) -> Result<()> {
    for (field, v) in [
        (
            "linux.resources.cpu.realtimePeriod",
            c.realtime_period().unwrap_or(0) as i64,
        ),
        (
            "linux.resources.cpu.realtimeRuntime",
            c.realtime_runtime().unwrap_or(0),
        ),
    ] {
        if v != 0 {
            return Err(CgroupError::unsupported(
                field,
                dir,
                "cgroup v2 has no real-time group scheduling (cpu.rt_* files)",
            ));
        }
    }
    if let Some(i) = c.idle() {
        fsio::write("linux.resources.cpu.idle", dir, "cpu.idle", &i.to_string())?;
    }
    if let Some(s) = c.shares().filter(|v| *v != 0) {
        fsio::write(
            "linux.resources.cpu.shares",
            dir,
            "cpu.weight",
            &shares_to_weight(s).to_string(),
        )?;
    }
    let quota = c.quota().filter(|v| *v != 0);
    let period = c.period().filter(|v| *v != 0);
    let mut burst_retry = None;
    if let Some(b) = c.burst() {
        const FIELD: &str = "linux.resources.cpu.burst";
        match fsio::write(FIELD, dir, "cpu.max.burst", &b.to_string()) {
            Err(e) if is_errno(&e, libc::ENOENT) => {
                warn(FIELD, "ignored: this kernel has no cpu.max.burst")
            }
            Err(e) if is_errno(&e, libc::EINVAL) && quota.is_some() => burst_retry = Some(b),
            r => r?,
        }
    }
    if quota.is_some() || period.is_some() {
        // cpu.max is "QUOTA PERIOD"; keep the half that is not given.
        let cur = fsio::read_opt(&dir.join("cpu.max")).unwrap_or_default();
        let mut cur = cur.split_whitespace();
        let (cur_q, cur_p) = (
            cur.next().unwrap_or("max").to_string(),
            cur.next().unwrap_or("100000").to_string(),
        );
        let q = match quota {
            Some(q) if q > 0 => q.to_string(),
            Some(-1) => "max".to_string(),
            Some(q) => {
                return Err(CgroupError::invalid(
                    "linux.resources.cpu.quota",
                    dir.join("cpu.max"),
                    format!("{q} is invalid (microseconds, or -1 for no limit)"),
                ))
            }
            None => cur_q,
        };
        let p = period.map_or(cur_p, |p| p.to_string());
        let field = if quota.is_some() {
            "linux.resources.cpu.quota"
        } else {
            "linux.resources.cpu.period"
        };
        fsio::write(field, dir, "cpu.max", &format!("{q} {p}"))?;
        if let Some(b) = burst_retry {
            fsio::write(
                "linux.resources.cpu.burst",
                dir,
                "cpu.max.burst",
                &b.to_string(),
            )?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// pids, hugetlb

fn pids(cg: &Cgroup, p: &LinuxPids) -> Result<()> {
    const F: &str = "linux.resources.pids.limit";
    let limit = p.limit();
    if limit == 0 {
        return Ok(());
    }
    let (Target::V1(dir) | Target::V2(dir)) = target(cg, "pids", F)?;
    let v = if limit > 0 {
        limit.to_string()
    } else {
        "max".to_string()
    };
    fsio::write(F, dir, "pids.max", &v)
}

fn hugetlb(cg: &Cgroup, limits: &[LinuxHugepageLimit]) -> Result<()> {
    if limits.is_empty() {
        return Ok(());
    }
    let t = target(cg, "hugetlb", "linux.resources.hugepageLimits")?;
    for (i, h) in limits.iter().enumerate() {
        let field = format!("linux.resources.hugepageLimits[{i}]");
        let size = h.page_size();
        let (Target::V1(dir) | Target::V2(dir)) = t;
        if size.is_empty() || size.contains('/') || size.contains('.') {
            return Err(CgroupError::invalid(
                &field,
                dir,
                format!("bad pageSize {size:?} (like \"2MB\")"),
            ));
        }
        let (file, rsvd, value) = match t {
            Target::V1(_) => (
                format!("hugetlb.{size}.limit_in_bytes"),
                format!("hugetlb.{size}.rsvd.limit_in_bytes"),
                if h.limit() < 0 {
                    "-1".to_string()
                } else {
                    h.limit().to_string()
                },
            ),
            Target::V2(_) => (
                format!("hugetlb.{size}.max"),
                format!("hugetlb.{size}.rsvd.max"),
                if h.limit() < 0 {
                    "max".to_string()
                } else {
                    h.limit().to_string()
                },
            ),
        };
        if !fsio::exists(&dir.join(&file)) {
            return Err(CgroupError::unsupported(
                &field,
                dir.join(&file),
                format!("this kernel has no {size} huge pages"),
            ));
        }
        fsio::write(&field, dir, &file, &value)?;
        if fsio::exists(&dir.join(&rsvd)) {
            fsio::write(&field, dir, &rsvd, &value)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// block I/O

/// runc's blkio weight → io.weight: [10, 1000] → [1, 10000].
pub(crate) fn blkio_weight_to_io(w: u16) -> u64 {
    let w = u64::from(w.clamp(10, 1000));
    1 + (w - 10) * 9999 / 990
}

fn blkio(cg: &Cgroup, b: &LinuxBlockIo) -> Result<()> {
    let weights = b.weight().is_some() || b.leaf_weight().is_some() || !empty(b.weight_device());
    let throttles = !empty(b.throttle_read_bps_device())
        || !empty(b.throttle_write_bps_device())
        || !empty(b.throttle_read_iops_device())
        || !empty(b.throttle_write_iops_device());
    if !weights && !throttles {
        return Ok(());
    }
    match target(cg, "blkio", "linux.resources.blockIO")? {
        Target::V1(d) => blkio_v1(d, b),
        Target::V2(d) => blkio_v2(d, b),
    }
}

fn empty<T>(v: &Option<Vec<T>>) -> bool {
    v.as_ref().map(Vec::is_empty).unwrap_or(true)
}

fn throttles(
    b: &LinuxBlockIo,
) -> [(
    &'static str,
    &Option<Vec<oci_spec::runtime::LinuxThrottleDevice>>,
); 4] {
    [
        ("throttleReadBpsDevice", b.throttle_read_bps_device()),
        ("throttleWriteBpsDevice", b.throttle_write_bps_device()),
        ("throttleReadIOPSDevice", b.throttle_read_iops_device()),
        ("throttleWriteIOPSDevice", b.throttle_write_iops_device()),
    ]
}

fn blkio_v1(dir: &Path, b: &LinuxBlockIo) -> Result<()> {
    // cfq has blkio.weight, bfq blkio.bfq.weight; with neither scheduler
    // (none, mq-deadline) there is no weight file at all.
    let bfq =
        !fsio::exists(&dir.join("blkio.weight")) && fsio::exists(&dir.join("blkio.bfq.weight"));
    let (weight, weight_dev) = if bfq {
        ("blkio.bfq.weight", "blkio.bfq.weight_device")
    } else {
        ("blkio.weight", "blkio.weight_device")
    };
    let need = |field: &str, file: &str| -> Result<()> {
        if fsio::exists(&dir.join(file)) {
            Ok(())
        } else {
            Err(CgroupError::unsupported(
                field,
                dir.join(file),
                format!("no {file}: block I/O weights need the cfq or bfq I/O scheduler"),
            ))
        }
    };
    if let Some(w) = b.weight().filter(|w| *w != 0) {
        need("linux.resources.blockIO.weight", weight)?;
        fsio::write(
            "linux.resources.blockIO.weight",
            dir,
            weight,
            &w.to_string(),
        )?;
    }
    if let Some(w) = b.leaf_weight().filter(|w| *w != 0) {
        need("linux.resources.blockIO.leafWeight", "blkio.leaf_weight")?;
        fsio::write(
            "linux.resources.blockIO.leafWeight",
            dir,
            "blkio.leaf_weight",
            &w.to_string(),
        )?;
    }
    for (i, wd) in b
        .weight_device()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let field = format!("linux.resources.blockIO.weightDevice[{i}]");
        if let Some(w) = wd.weight() {
            need(&field, weight_dev)?;
            fsio::write(
                &field,
                dir,
                weight_dev,
                &format!("{}:{} {w}", wd.major(), wd.minor()),
            )?;
        }
        if let Some(w) = wd.leaf_weight() {
            need(&field, "blkio.leaf_weight_device")?;
            fsio::write(
                &field,
                dir,
                "blkio.leaf_weight_device",
                &format!("{}:{} {w}", wd.major(), wd.minor()),
            )?;
        }
    }
    for (name, list) in throttles(b) {
        let file = match name {
            "throttleReadBpsDevice" => "blkio.throttle.read_bps_device",
            "throttleWriteBpsDevice" => "blkio.throttle.write_bps_device",
            "throttleReadIOPSDevice" => "blkio.throttle.read_iops_device",
            _ => "blkio.throttle.write_iops_device",
        };
        for (i, t) in list.as_deref().unwrap_or_default().iter().enumerate() {
            let field = format!("linux.resources.blockIO.{name}[{i}]");
            fsio::write(
                &field,
                dir,
                file,
                &format!("{}:{} {}", t.major(), t.minor(), t.rate()),
            )?;
        }
    }
    Ok(())
}

fn blkio_v2(dir: &Path, b: &LinuxBlockIo) -> Result<()> {
    // With the bfq scheduler io.bfq.weight takes 1-1000 (like v1) and
    // per-device lines; otherwise io.weight takes 1-10000 (converted).
    let bfq = fsio::exists(&dir.join("io.bfq.weight"));
    let (file, conv): (&str, fn(u16) -> u64) = if bfq {
        ("io.bfq.weight", u64::from)
    } else {
        ("io.weight", blkio_weight_to_io)
    };
    if let Some(w) = b.weight().filter(|w| *w != 0) {
        fsio::write(
            "linux.resources.blockIO.weight",
            dir,
            file,
            &conv(w).to_string(),
        )?;
    }
    if b.leaf_weight().is_some_and(|w| w != 0) {
        return Err(CgroupError::unsupported(
            "linux.resources.blockIO.leafWeight",
            dir,
            "cgroup v2 has no leaf weights",
        ));
    }
    for (i, wd) in b
        .weight_device()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let field = format!("linux.resources.blockIO.weightDevice[{i}]");
        if wd.leaf_weight().is_some() {
            return Err(CgroupError::unsupported(
                &field,
                dir,
                "cgroup v2 has no leaf weights",
            ));
        }
        if let Some(w) = wd.weight() {
            fsio::write(
                &field,
                dir,
                file,
                &format!("{}:{} {}", wd.major(), wd.minor(), conv(w)),
            )?;
        }
    }
    for (name, list) in throttles(b) {
        let key = match name {
            "throttleReadBpsDevice" => "rbps",
            "throttleWriteBpsDevice" => "wbps",
            "throttleReadIOPSDevice" => "riops",
            _ => "wiops",
        };
        for (i, t) in list.as_deref().unwrap_or_default().iter().enumerate() {
            let field = format!("linux.resources.blockIO.{name}[{i}]");
            fsio::write(
                &field,
                dir,
                "io.max",
                &format!("{}:{} {key}={}", t.major(), t.minor(), t.rate()),
            )?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// network, rdma

fn network(cg: &Cgroup, n: &LinuxNetwork) -> Result<()> {
    let prios = n.priorities().as_deref().unwrap_or_default();
    let settings: [(&str, &str, bool); 2] = [
        (
            "linux.resources.network.classID",
            "net_cls",
            n.class_id().is_some(),
        ),
        (
            "linux.resources.network.priorities",
            "net_prio",
            !prios.is_empty(),
        ),
    ];
    for (field, ctrl, wanted) in settings {
        if !wanted {
            continue;
        }
        let Some(dir) = cg.v1.get(ctrl) else {
            let reason = if cg.is_v2() {
                format!("cgroup v2 has no {ctrl} controller")
            } else {
                format!("the {ctrl} controller is not mounted (it exists only in cgroup v1)")
            };
            return Err(CgroupError::unsupported(field, &cg.path, reason));
        };
        if let Some(id) = n.class_id().filter(|_| ctrl == "net_cls") {
            fsio::write(field, dir, "net_cls.classid", &id.to_string())?;
        }
        if ctrl == "net_prio" {
            for (i, p) in prios.iter().enumerate() {
                let f = format!("{field}[{i}]");
                fsio::write(
                    &f,
                    dir,
                    "net_prio.ifpriomap",
                    &format!("{} {}", p.name(), p.priority()),
                )?;
            }
        }
    }
    Ok(())
}

fn rdma(cg: &Cgroup, limits: &HashMap<String, LinuxRdma>) -> Result<()> {
    if limits.is_empty() {
        return Ok(());
    }
    let (Target::V1(dir) | Target::V2(dir)) = target(cg, "rdma", "linux.resources.rdma")?;
    let mut devs: Vec<_> = limits.iter().collect();
    devs.sort_by(|a, b| a.0.cmp(b.0));
    for (dev, l) in devs {
        let mut line = dev.clone();
        if let Some(h) = l.hca_handles() {
            line.push_str(&format!(" hca_handle={h}"));
        }
        if let Some(o) = l.hca_objects() {
            line.push_str(&format!(" hca_object={o}"));
        }
        fsio::write(
            &format!("linux.resources.rdma[{dev:?}]"),
            dir,
            "rdma.max",
            &line,
        )?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// unified (cgroup v2 files by name)

fn unified(cg: &Cgroup, map: &HashMap<String, String>) -> Result<()> {
    let mut keys: Vec<_> = map.iter().collect();
    keys.sort_by(|a, b| a.0.cmp(b.0));
    for (key, value) in keys {
        let field = format!("linux.resources.unified[{key:?}]");
        let ctrl = key
            .split_once('.')
            .map(|(c, _)| c)
            .filter(|c| !c.is_empty());
        let Some(ctrl) = ctrl.filter(|_| !key.contains('/') && !key.ends_with('.')) else {
            return Err(CgroupError::invalid(
                &field,
                &cg.path,
                "must be a cgroup v2 file name of the form CONTROLLER.PARAMETER",
            ));
        };
        if let Some(d) = cg.v1.get(ctrl) {
            return Err(CgroupError::invalid(
                &field,
                d,
                format!(
                    "the {ctrl} controller is a cgroup v1 hierarchy on this host; unified keys only reach cgroup v2 (use the linux.resources fields for {ctrl})"
                ),
            ));
        }
        let Some(dir) = &cg.unified else {
            return Err(CgroupError::unsupported(
                &field,
                &cg.path,
                "this host has no cgroup v2 hierarchy",
            ));
        };
        let path = dir.join(key);
        // Hybrid: the controller is enabled on demand (see `target`).
        if !fsio::exists(&path) && !cg.is_v2() && ctrl != "cgroup" {
            cg.enable_v2(ctrl);
        }
        if !fsio::exists(&path) {
            let avail = fsio::read_opt(&dir.join("cgroup.controllers")).unwrap_or_default();
            let reason = if ctrl != "cgroup" && !avail.split_whitespace().any(|c| c == ctrl) {
                format!(
                    "the {ctrl} controller is not available for this cgroup (cgroup.controllers lists {:?})",
                    avail.trim()
                )
            } else {
                format!("no such cgroup file {key}")
            };
            return Err(CgroupError::unsupported(&field, path, reason));
        }
        // One write per line, as runc (io.max with several devices, say).
        for line in value.split('\n').filter(|l| !l.is_empty()) {
            fsio::write(&field, dir, key, line)?;
        }
        if value.is_empty() {
            fsio::write(&field, dir, key, "")?;
        }
    }
    Ok(())
}

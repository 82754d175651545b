//! OCI resources as systemd unit properties (the ones systemd 252 has;
//! the rest are written to the cgroup's files after the unit is up).
//!
//! Conversions follow the cgroup v2 meaning of each property, as runc's
//! systemd driver does: OCI swap is memory+swap and `MemorySwapMax` is
//! swap alone; shares and the blkio weight are mapped onto v2's weight
//! ranges; a CFS quota becomes a per-second quota rounded up to systemd's
//! 10 ms granularity. A value systemd cannot take is left out here: the
//! file write that follows reports it against its config field.

use oci_spec::runtime::LinuxResources;

use crate::cgroups::apply::{blkio_weight_to_io, shares_to_weight, swap_to_v2};

/// A property value, in D-Bus terms (`s`, `b`, `t`, `au`, `ay`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prop {
    Str(String),
    Bool(bool),
    U64(u64),
    U32s(Vec<u32>),
    Bytes(Vec<u8>),
}

pub type Props = Vec<(&'static str, Prop)>;

/// systemd's "infinity" for limits.
const INFINITY: u64 = u64::MAX;

/// What every new unit gets: where it goes, that its cgroup is ours
/// (`Delegate`), that it depends on nothing (it must start even while
/// systemd is busy shutting other things down), and accounting, so that
/// systemd enables the controllers down to it.
pub fn unit_props(unit: &super::Unit, pid: i32) -> Props {
    let mut p: Props = vec![(
        "Description",
        Prop::Str(format!("phantom container {}", unit.name)),
    )];
    if unit.is_slice() {
        // A slice's parent is given by a dependency, not Slice=.
        p.push(("Wants", Prop::Str(unit.slice.clone())));
    } else {
        p.push(("Slice", Prop::Str(unit.slice.clone())));
        p.push(("Delegate", Prop::Bool(true)));
        p.push(("PIDs", Prop::U32s(vec![pid as u32])));
    }
    p.push(("DefaultDependencies", Prop::Bool(false)));
    for acct in [
        "MemoryAccounting",
        "CPUAccounting",
        "TasksAccounting",
        "IOAccounting",
    ] {
        p.push((acct, Prop::Bool(true)));
    }
    p
}

/// The resources systemd has a property for.
pub fn resource_props(r: &LinuxResources) -> Props {
    let mut p = Props::new();
    if let Some(m) = r.memory() {
        let limit = m.limit().filter(|v| *v != 0);
        match limit {
            Some(-1) => p.push(("MemoryMax", Prop::U64(INFINITY))),
            Some(l) if l > 0 => p.push(("MemoryMax", Prop::U64(l as u64))),
            _ => {}
        }
        match m.reservation().filter(|v| *v != 0) {
            Some(-1) => p.push(("MemoryLow", Prop::U64(INFINITY))),
            Some(l) if l > 0 => p.push(("MemoryLow", Prop::U64(l as u64))),
            _ => {}
        }
        if let Some(s) = m.swap().filter(|v| *v != 0) {
            match swap_to_v2(s, limit.unwrap_or(0)) {
                Ok(-1) => p.push(("MemorySwapMax", Prop::U64(INFINITY))),
                Ok(v) if v >= 0 => p.push(("MemorySwapMax", Prop::U64(v as u64))),
                _ => {}
            }
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(s) = c.shares().filter(|v| *v != 0) {
            p.push(("CPUWeight", Prop::U64(shares_to_weight(s))));
        }
        let quota = c.quota().filter(|v| *v != 0);
        let period = c.period().filter(|v| *v != 0);
        if let Some(period) = period {
            p.push(("CPUQuotaPeriodUSec", Prop::U64(period)));
        }
        match quota {
            Some(-1) => p.push(("CPUQuotaPerSecUSec", Prop::U64(INFINITY))),
            Some(q) if q > 0 => {
                let period = period.unwrap_or(100_000);
                let mut per_sec = (q as u64).saturating_mul(1_000_000) / period;
                // systemd keeps the quota in 1% steps (10 ms per second):
                // round up so the limit is never below what was asked.
                if !per_sec.is_multiple_of(10_000) {
                    per_sec = (per_sec / 10_000 + 1) * 10_000;
                }
                p.push(("CPUQuotaPerSecUSec", Prop::U64(per_sec)));
            }
            _ => {}
        }
        if let Some(mask) = c.cpus().as_deref().and_then(cpu_mask) {
            p.push(("AllowedCPUs", Prop::Bytes(mask)));
        }
        if let Some(mask) = c.mems().as_deref().and_then(cpu_mask) {
            p.push(("AllowedMemoryNodes", Prop::Bytes(mask)));
        }
    }
    if let Some(pids) = r.pids() {
        match pids.limit() {
            -1 => p.push(("TasksMax", Prop::U64(INFINITY))),
            l if l > 0 => p.push(("TasksMax", Prop::U64(l as u64))),
            _ => {}
        }
    }
    if let Some(w) = r.block_io().as_ref().and_then(|b| b.weight()) {
        if w != 0 {
            p.push(("IOWeight", Prop::U64(blkio_weight_to_io(w))));
        }
    }
    p
}

/// A cpuset list ("0-3,6") as systemd's byte mask (bit N of byte N/8);
/// None if it does not parse (the file write then names the error).
fn cpu_mask(list: &str) -> Option<Vec<u8>> {
    let list = list.trim();
    if list.is_empty() {
        return None;
    }
    let mut mask: Vec<u8> = Vec::new();
    for part in list.split(',') {
        let (lo, hi) = match part.trim().split_once('-') {
            Some((a, b)) => (
                a.trim().parse::<usize>().ok()?,
                b.trim().parse::<usize>().ok()?,
            ),
            None => {
                let n = part.trim().parse::<usize>().ok()?;
                (n, n)
            }
        };
        if lo > hi || hi >= 8192 {
            return None;
        }
        for cpu in lo..=hi {
            if mask.len() <= cpu / 8 {
                mask.resize(cpu / 8 + 1, 0);
            }
            mask[cpu / 8] |= 1 << (cpu % 8);
        }
    }
    Some(mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    fn get(p: &Props, name: &str) -> Option<Prop> {
        p.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn limits_map_to_properties() {
        let p = resource_props(&res(
            r#"{"memory":{"limit":67108864,"swap":134217728,"reservation":1048576},
                "cpu":{"shares":1024,"quota":50000,"period":100000,"cpus":"0-1,3"},
                "pids":{"limit":50},"blockIO":{"weight":500}}"#,
        ));
        assert_eq!(get(&p, "MemoryMax"), Some(Prop::U64(64 << 20)));
        assert_eq!(get(&p, "MemorySwapMax"), Some(Prop::U64(64 << 20)));
        assert_eq!(get(&p, "MemoryLow"), Some(Prop::U64(1 << 20)));
        assert_eq!(get(&p, "CPUWeight"), Some(Prop::U64(39)));
        assert_eq!(get(&p, "CPUQuotaPerSecUSec"), Some(Prop::U64(500_000)));
        assert_eq!(get(&p, "CPUQuotaPeriodUSec"), Some(Prop::U64(100_000)));
        assert_eq!(get(&p, "AllowedCPUs"), Some(Prop::Bytes(vec![0b1011])));
        assert_eq!(get(&p, "TasksMax"), Some(Prop::U64(50)));
        assert_eq!(get(&p, "IOWeight"), Some(Prop::U64(1 + 490 * 9999 / 990)));
    }

    #[test]
    fn unlimited_and_odd_values() {
        let p = resource_props(&res(
            r#"{"memory":{"limit":-1,"swap":-1},"cpu":{"quota":-1},"pids":{"limit":-1}}"#,
        ));
        assert_eq!(get(&p, "MemoryMax"), Some(Prop::U64(u64::MAX)));
        assert_eq!(get(&p, "MemorySwapMax"), Some(Prop::U64(u64::MAX)));
        assert_eq!(get(&p, "CPUQuotaPerSecUSec"), Some(Prop::U64(u64::MAX)));
        assert_eq!(get(&p, "TasksMax"), Some(Prop::U64(u64::MAX)));
        // 33 ms per 100 ms is 330 ms/s; 12345 per 100000 rounds up to 130 ms/s.
        let p = resource_props(&res(r#"{"cpu":{"quota":12345,"period":100000}}"#));
        assert_eq!(get(&p, "CPUQuotaPerSecUSec"), Some(Prop::U64(130_000)));
        // Unset (0) and unparsable values are left to the file writes.
        let p = resource_props(&res(
            r#"{"memory":{"limit":0},"cpu":{"cpus":"x"},"pids":{"limit":0}}"#,
        ));
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(cpu_mask("9"), Some(vec![0, 0b10]));
        assert_eq!(cpu_mask("3-1"), None);
    }

    #[test]
    fn scopes_and_slices() {
        let scope = crate::cgroups::systemd::Unit {
            name: "p-x.scope".into(),
            slice: "system.slice".into(),
        };
        let p = unit_props(&scope, 42);
        assert_eq!(get(&p, "PIDs"), Some(Prop::U32s(vec![42])));
        assert_eq!(get(&p, "Delegate"), Some(Prop::Bool(true)));
        assert_eq!(get(&p, "Slice"), Some(Prop::Str("system.slice".into())));
        let slice = crate::cgroups::systemd::Unit {
            name: "a-b.slice".into(),
            slice: "a.slice".into(),
        };
        let p = unit_props(&slice, 42);
        assert_eq!(get(&p, "PIDs"), None);
        assert_eq!(get(&p, "Wants"), Some(Prop::Str("a.slice".into())));
    }
}

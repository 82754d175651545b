//! A profile (or an OCI config's `linux.seccomp`) compiled into everything the runtime
//! applies: seccomp BPF (through the cache), Landlock rules, capabilities, cgroup
//! limits, mounts.

use oci_spec::runtime::{
    Capability, LinuxCpu, LinuxMemory, LinuxPids, LinuxResources, LinuxSeccomp, Mount,
};

use crate::cache::{CacheKey, CacheOutcome, PolicyCache};
use crate::landlock::LandlockRules;
use crate::oci::profile_mounts;
use crate::profile::{Mode, NetworkMode, Profile};
use crate::seccomp::{CompiledFilter, SeccompError};

/// The CFS period phantom uses for `resources.cpu` (100 ms, the kernel's default).
pub const CPU_PERIOD_US: u64 = 100_000;

/// A policy ready to apply.
#[derive(Clone, Debug)]
pub struct CompiledPolicy {
    /// The profile's name (empty for an OCI config).
    pub name: String,
    pub mode: Mode,
    /// The `linux.seccomp` the filter was compiled from.
    pub seccomp: Option<LinuxSeccomp>,
    pub filter: Option<CompiledFilter>,
    /// The cache key and what the cache did.
    pub cache: Option<(CacheKey, CacheOutcome)>,
    pub landlock: LandlockRules,
    pub capabilities: Vec<Capability>,
    pub resources: LinuxResources,
    /// The profile's own mounts (without the rootfs phantom builds around them).
    pub mounts: Vec<Mount>,
    pub network: NetworkMode,
}

/// `linux.resources` of a profile: memory limit (swap disabled: memory+swap = memory),
/// CPU quota per [`CPU_PERIOD_US`], pids limit.
pub fn linux_resources(p: &Profile) -> LinuxResources {
    resources_to_oci(&p.resources)
}

/// The same for resources alone (a warm zygote gets limits per request).
pub fn resources_to_oci(res: &crate::profile::Resources) -> LinuxResources {
    let p = res;
    let mut r = LinuxResources::default();
    if let Some(m) = p.memory {
        let mut mem = LinuxMemory::default();
        let m = i64::try_from(m).unwrap_or(i64::MAX);
        mem.set_limit(Some(m));
        mem.set_swap(Some(m));
        r.set_memory(Some(mem));
    }
    if let Some(c) = p.cpu {
        let mut cpu = LinuxCpu::default();
        cpu.set_quota(Some((c * CPU_PERIOD_US as f64).round() as i64));
        cpu.set_period(Some(CPU_PERIOD_US));
        r.set_cpu(Some(cpu));
    }
    if let Some(n) = p.pids {
        let mut pids = LinuxPids::default();
        pids.set_limit(n);
        r.set_pids(Some(pids));
    }
    r
}

/// The limits an OCI `LinuxResources` sets, as a profile states them: the
/// inverse of [`resources_to_oci`] (memory limit, CPUs as quota / period,
/// pids limit), so that limits sent over a socket are checked as a
/// profile's are. A negative value (the kernel's "unlimited") lifts the
/// limit, so it reads as the largest there is.
pub fn resources_from_oci(r: &LinuxResources) -> crate::profile::Resources {
    let mut res = crate::profile::Resources::default();
    if let Some(l) = r.memory().as_ref().and_then(|m| m.limit()) {
        res.memory = Some(u64::try_from(l).unwrap_or(u64::MAX));
    }
    if let Some(c) = r.cpu() {
        if let Some(q) = c.quota() {
            let period = c.period().filter(|p| *p > 0).unwrap_or(CPU_PERIOD_US);
            res.cpu = Some(if q < 0 {
                f64::INFINITY
            } else {
                q as f64 / period as f64
            });
        }
    }
    if let Some(p) = r.pids() {
        res.pids = Some(if p.limit() < 0 { i64::MAX } else { p.limit() });
    }
    res
}

/// Compiles `profile` for this host, its seccomp filter through `cache`.
pub fn compile_profile(
    profile: &Profile,
    cache: &PolicyCache,
) -> Result<CompiledPolicy, SeccompError> {
    let arch =
        crate::TargetArch::native().ok_or(SeccompError::UnsupportedArch(std::env::consts::ARCH))?;
    let seccomp = profile.linux_seccomp(arch);
    let (filter, cache_info) = match &seccomp {
        Some(s) => {
            let key = cache.key(s)?;
            let (f, outcome) = cache.seccomp(s)?;
            (Some(f), Some((key, outcome)))
        }
        None => (None, None),
    };
    Ok(CompiledPolicy {
        name: profile.name.clone(),
        mode: profile.mode,
        seccomp,
        filter,
        cache: cache_info,
        landlock: profile.landlock.clone(),
        capabilities: profile.capabilities.clone(),
        resources: linux_resources(profile),
        mounts: profile_mounts(profile),
        network: profile.network,
    })
}

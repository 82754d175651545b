//! `update`: change the cgroup limits of a live container.

use crate::error::{words, Error, Result};
use crate::state::{StateStore, Status};

/// Apply `resources`, except `devices`, which only `create` sets.
pub fn update(
    store: &StateStore,
    id: &str,
    resources: &oci_spec::runtime::LinuxResources,
) -> Result<()> {
    let _lock = store.lock(id)?;
    let mut st = store.load(id)?;
    store.refresh(&mut st);
    if st.status == Status::Stopped {
        return Err(Error::wrong_state(
            id,
            st.status,
            words::NOT_RUNNING,
            "a stopped container cannot be updated",
        ));
    }
    let cg = st
        .cgroup
        .as_ref()
        .ok_or_else(|| Error::Cgroup(format!("container {id:?} has no cgroup")))?;
    // `devices` is ignored, as runc's `update` ignores it (it copies the
    // limits it knows, never the device list, into the cgroup config).
    // Kubernetes' UpdateContainerResources sends containerd's whole
    // LinuxResources, whose `devices` is the spec's "deny all" plus the
    // engine's own additions: applied here it would replace the rules
    // `create` derived from `linux.devices` and the default devices, and
    // /dev/null in the container would fail with EPERM. Leaving it out
    // also keeps a v2 host's eBPF device filter as create attached it.
    let mut limits = resources.clone();
    if limits.devices().is_some() {
        tracing::debug!("update: linux.resources.devices ignored (as runc does)");
        limits.set_devices(None);
    }
    cg.update(&limits)?;
    Ok(())
}

/// Parse `update --resources` JSON (runc's form: a LinuxResources object).
pub fn parse_resources(data: &[u8]) -> Result<oci_spec::runtime::LinuxResources> {
    crate::spec::parse_json(data, "resources: ")
}

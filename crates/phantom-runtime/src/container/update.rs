//! `update`: change the cgroup limits of a live container.

use crate::error::{words, Error, Result};
use crate::state::{StateStore, Status};

/// Apply `resources` (devices left alone unless given).
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
    cg.apply(resources)?;
    Ok(())
}

/// Parse `update --resources` JSON (runc's form: a LinuxResources object).
pub fn parse_resources(data: &[u8]) -> Result<oci_spec::runtime::LinuxResources> {
    crate::spec::parse_json(data, "resources: ")
}

//! `pause` and `resume`: freeze and thaw the container's cgroup.

use crate::error::{words, Error, Result};
use crate::state::{ContainerState, StateStore, Status};

fn cgroup<'a>(st: &'a ContainerState, id: &str) -> Result<&'a crate::cgroups::Cgroup> {
    st.cgroup
        .as_ref()
        .ok_or_else(|| Error::Cgroup(format!("container {id:?} has no cgroup to freeze")))
}

pub fn pause(store: &StateStore, id: &str) -> Result<()> {
    let _lock = store.lock(id)?;
    let mut st = store.load(id)?;
    store.refresh(&mut st);
    if st.status != Status::Running && st.status != Status::Created {
        return Err(Error::wrong_state(
            id,
            st.status,
            words::NOT_RUNNING,
            "only a running or created container can be paused",
        ));
    }
    cgroup(&st, id)?.freeze()?;
    Ok(())
}

pub fn resume(store: &StateStore, id: &str) -> Result<()> {
    let _lock = store.lock(id)?;
    let mut st = store.load(id)?;
    store.refresh(&mut st);
    if st.status != Status::Paused {
        return Err(Error::wrong_state(
            id,
            st.status,
            words::NOT_PAUSED,
            "only a paused container can be resumed",
        ));
    }
    cgroup(&st, id)?.thaw()?;
    Ok(())
}

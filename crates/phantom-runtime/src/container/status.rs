//! `state` and `list`: read-only, no lock (a `create` in progress holds it).

use crate::error::Result;
use crate::state::{ContainerState, StateStore};

pub fn state(store: &StateStore, id: &str) -> Result<ContainerState> {
    let mut st = store.load(id)?;
    store.refresh(&mut st);
    Ok(st)
}

pub fn list(store: &StateStore) -> Result<Vec<ContainerState>> {
    let mut out = Vec::new();
    for id in store.ids()? {
        // A container deleted while we list is simply not listed.
        if let Ok(st) = state(store, &id) {
            out.push(st);
        }
    }
    Ok(out)
}

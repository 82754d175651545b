//! `events`: the container's statistics (`--stats`: once) and, in the
//! streaming form, a stats event every interval plus an `oom` event when
//! the OOM killer strikes, as runc prints them (one JSON object a line).

use std::io::Write;
use std::time::Duration;

use serde_json::json;

use crate::error::{Error, Result};
use crate::state::{StateStore, Status};

pub fn stats_event(store: &StateStore, id: &str) -> Result<serde_json::Value> {
    let st = store.load(id)?;
    let cg = st
        .cgroup
        .as_ref()
        .ok_or_else(|| Error::Cgroup(format!("container {id:?} has no cgroup")))?;
    Ok(json!({"type": "stats", "id": id, "data": cg.stats()?}))
}

/// Print events to `out` until the container stops.
pub fn stream(
    store: &StateStore,
    id: &str,
    interval: Duration,
    stats_once: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let io = |e: std::io::Error| Error::io("cannot write events to", "stdout", e);
    if stats_once {
        writeln!(out, "{}", stats_event(store, id)?).map_err(io)?;
        return Ok(());
    }
    let mut st = store.load(id)?;
    let cg = st
        .cgroup
        .clone()
        .ok_or_else(|| Error::Cgroup(format!("container {id:?} has no cgroup")))?;
    let mut ooms = cg.oom_kill_count();
    let tick = Duration::from_millis(100).min(interval);
    let mut waited = Duration::ZERO;
    loop {
        store.refresh(&mut st);
        let now = cg.oom_kill_count();
        if now > ooms {
            writeln!(out, "{}", json!({"type": "oom", "id": id})).map_err(io)?;
            out.flush().map_err(io)?;
            ooms = now;
        }
        if st.status == Status::Stopped {
            return Ok(());
        }
        if waited >= interval {
            waited = Duration::ZERO;
            if let Ok(ev) = stats_event(store, id) {
                writeln!(out, "{ev}").map_err(io)?;
                out.flush().map_err(io)?;
            }
        }
        std::thread::sleep(tick);
        waited += tick;
    }
}

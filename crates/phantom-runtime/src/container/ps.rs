//! `ps`: the container's processes, from its cgroup.

use crate::error::{Error, Result};
use crate::state::StateStore;

/// Host pids of every process in the container.
pub fn pids(store: &StateStore, id: &str) -> Result<Vec<i32>> {
    let mut st = store.load(id)?;
    store.refresh(&mut st);
    match &st.cgroup {
        Some(cg) => Ok(cg.pids()?),
        None => Ok(st
            .pid
            .map(|p| super::kill::container_pids(p, st.own_pid_ns))
            .unwrap_or_default()),
    }
}

/// `ps` output (run with `ps_args`, default `-ef`) filtered to `pids`:
/// the header and the lines whose PID column is one of them.
pub fn filter_ps_output(output: &str, pids: &[i32]) -> Result<String> {
    let mut lines = output.lines();
    let header = lines.next().unwrap_or("");
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| Error::Unsupported("ps output has no PID column".into()))?;
    let mut out = format!("{header}\n");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_header_and_container_lines() {
        let ps = "UID PID PPID C STIME TTY TIME CMD\nroot 1 0 0 10:00 ? 00:00:01 init\nroot 42 1 0 10:00 ? 00:00:00 sleep 9\n";
        let out = filter_ps_output(ps, &[42]).unwrap();
        assert_eq!(
            out,
            "UID PID PPID C STIME TTY TIME CMD\nroot 42 1 0 10:00 ? 00:00:00 sleep 9\n"
        );
        assert!(filter_ps_output("NO HEADER\n1\n", &[1]).is_err());
    }
}

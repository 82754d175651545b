//! `kill`: a signal to init, or with `--all` to every process of the
//! container.

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::state::{StateStore, Status};

/// `9`, `KILL`, `SIGKILL`, `sigkill`.
pub fn parse_signal(s: &str) -> Result<Signal> {
    let bad = || Error::Unsupported(format!("unknown signal {s:?}"));
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<Signal>().map_err(|_| bad())
}

pub fn kill(store: &StateStore, id: &str, signal: Signal, all: bool) -> Result<()> {
    let mut st = store.load(id)?;
    store.refresh(&mut st);
    // runtime.md "kill": an error unless the container is created or running.
    if !matches!(
        st.status,
        Status::Created | Status::Running | Status::Paused
    ) {
        return Err(Error::WrongState {
            id: id.to_string(),
            status: st.status.to_string(),
            action: "only a created or running container can be signalled".into(),
        });
    }
    let pid = st.pid.unwrap_or(0);
    if all {
        let pids = match &st.cgroup {
            Some(cg) => cg.pids()?,
            None => container_pids(pid, st.own_pid_ns),
        };
        for p in pids {
            let _ = nix::sys::signal::kill(Pid::from_raw(p), signal);
        }
        return Ok(());
    }
    nix::sys::signal::kill(Pid::from_raw(pid), signal).map_err(|e| {
        Error::sys(
            format!("kill container {id:?} (pid {pid}) with {signal}"),
            e,
        )
    })
}

/// Every process of a container: its pid namespace when it has its own,
/// else init and its descendants.
pub fn container_pids(init: i32, own_pid_ns: bool) -> Vec<i32> {
    if own_pid_ns {
        if let Ok(link) = std::fs::read_link(format!("/proc/{init}/ns/pid")) {
            let pids = crate::proc_info::pids_in_pid_ns(&link.to_string_lossy());
            if !pids.is_empty() {
                return pids;
            }
        }
    }
    crate::proc_info::descendants(init)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_forms() {
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("KILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("SIGTERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("hup").unwrap(), Signal::SIGHUP);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("99").is_err());
    }
}

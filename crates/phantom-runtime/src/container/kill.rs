//! `kill`: a signal to init, or with `--all` to every process of the
//! container.

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::error::{words, Error, Result};
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
    let live = matches!(
        st.status,
        Status::Created | Status::Running | Status::Paused
    );
    let pid = st.pid.unwrap_or(0);
    if all {
        // As runc 1.1 does: `kill --all` signals whatever is left in the
        // cgroup, also once init has exited (processes that outlived it
        // in a shared pid namespace), and an empty cgroup is no error.
        let pids = match &st.cgroup {
            Some(cg) => cg.pids()?,
            None if live => container_pids(pid, st.own_pid_ns),
            None => Vec::new(),
        };
        for p in pids {
            let _ = nix::sys::signal::kill(Pid::from_raw(p), signal);
        }
        return Ok(());
    }
    // runtime.md "kill": an error unless the container is created or
    // running; in runc's words, so that containerd's shim knows the
    // process has already exited (else StopContainer fails for good).
    let not_running = || {
        Error::wrong_state(
            id,
            Status::Stopped,
            words::NOT_RUNNING,
            "only a created, running or paused container can be signalled",
        )
    };
    if !live {
        return Err(not_running());
    }
    match nix::sys::signal::kill(Pid::from_raw(pid), signal) {
        Ok(()) => Ok(()),
        // Init exited between the check and the signal.
        Err(nix::errno::Errno::ESRCH) => Err(not_running()),
        Err(e) => Err(Error::sys(
            format!("kill container {id:?} (pid {pid}) with {signal}"),
            e,
        )),
    }
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

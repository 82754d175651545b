//! `delete`: release a stopped container's resources; `--force` kills a
//! live one first, and cleans up after a `create` that was killed midway.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::error::{words, Error, Result};
use crate::state::{StateStore, Status};

pub fn delete(store: &StateStore, id: &str, force: bool) -> Result<()> {
    let _lock = match store.lock(id) {
        Ok(l) => l,
        // A create killed before it wrote state.json leaves only the dir;
        // but a create still running holds its lock, and its container is
        // not ours to remove (reserve first, then check; STYLE.md).
        Err(Error::NotFound(_)) if force && store.dir(id).is_dir() => {
            return match store.try_lock_dir(id) {
                Ok(Some(_held)) if !store.dir(id).join(crate::state::STATE_FILE).exists() => {
                    store.remove(id)
                }
                // It got its state.json meanwhile: an ordinary delete.
                Ok(Some(held)) => {
                    drop(held);
                    delete(store, id, force)
                }
                Ok(None) => Err(Error::wrong_state(
                    id,
                    Status::Creating,
                    words::DELETE_LIVE,
                    "another command is creating it; delete it once that is done",
                )),
                Err(Error::NotFound(_)) => Ok(()),
                Err(e) => Err(e),
            };
        }
        // Like runc: forcing the delete of a container that is already gone
        // succeeds (containerd's shim follows every delete with one).
        Err(Error::NotFound(_)) if force => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut st = store.load(id)?;
    store.refresh(&mut st);
    // We hold the lock, so no create is running: "creating" is a leftover.
    let stale_creating = st.status == Status::Creating;
    if st.status != Status::Stopped && !force && !stale_creating {
        return Err(Error::wrong_state(
            id,
            st.status,
            words::DELETE_LIVE,
            "only a stopped container can be deleted (use --force to kill it first)",
        ));
    }
    if let Some(pid) = st.pid {
        if crate::proc_info::is_alive(pid, st.init_start_time) {
            let pids = match &st.cgroup {
                Some(cg) => cg.pids().unwrap_or_else(|_| vec![pid]),
                None => super::kill::container_pids(pid, st.own_pid_ns),
            };
            for p in pids {
                let _ = nix::sys::signal::kill(Pid::from_raw(p), Signal::SIGKILL);
            }
            // A frozen cgroup holds SIGKILL until it is thawed.
            if let Some(cg) = st.cgroup.as_ref().filter(|c| c.is_frozen()) {
                let _ = cg.thaw();
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while crate::proc_info::is_alive(pid, st.init_start_time) {
                if Instant::now() > deadline {
                    return Err(Error::Init(format!(
                        "container {id:?}: init (pid {pid}) did not die after SIGKILL"
                    )));
                }
                // Reap it if it is our own child (as in `run`).
                let _ = nix::sys::wait::waitpid(
                    Pid::from_raw(pid),
                    Some(nix::sys::wait::WaitPidFlag::WNOHANG),
                );
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
    if st.host_mount_ns {
        let left = crate::rootfs::unmount_under_in_host_ns(&crate::sys::LinuxSys, &st.rootfs);
        if !left.is_empty() {
            return Err(Error::Init(format!(
                "container {id:?}: cannot unmount {} under its rootfs in the host's mount namespace: {left:?}",
                left.len()
            )));
        }
    }
    if let Some(cg) = &st.cgroup {
        cg.destroy()?;
    }
    store.remove(id)?;
    if let Some(h) = st.hooks.as_ref().and_then(|h| h.poststop().clone()) {
        crate::hooks::run_all_warn(&h, "poststop", &st.hook_state(Status::Stopped));
    }
    Ok(())
}

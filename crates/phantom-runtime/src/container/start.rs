//! `start`: release init, blocked on exec.fifo, to exec the program.

use std::os::fd::AsFd;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::error::{words, Error, Result, SysContext};
use crate::state::{StateStore, Status};

pub fn start(store: &StateStore, id: &str) -> Result<()> {
    let _lock = store.lock(id)?;
    let mut st = store.load(id)?;
    store.refresh(&mut st);
    if st.status != Status::Created {
        let words = match st.status {
            Status::Stopped => words::START_STOPPED,
            Status::Running => words::START_RUNNING,
            _ => words::START_OTHER,
        };
        return Err(Error::wrong_state(
            id,
            st.status,
            words,
            "only a created container can be started",
        ));
    }
    let fifo = store.fifo_path(id);
    // Non-blocking open: if init died, a blocking open would wait forever.
    let fd = nix::fcntl::open(
        &fifo,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ctx(|| format!("open {}", fifo.display()))?;
    let pid = st.pid.unwrap_or(0);
    // Init writes one byte once we opened the fifo, then keeps its end
    // open through the startContainer hooks until execve closes it. The
    // end of file is what says the program runs: poststart must come after
    // it (runtime.md "Lifecycle", steps 9 to 11).
    let mut released = false;
    loop {
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        let n = poll(&mut fds, PollTimeout::from(100u16)).or_else(|e| {
            if e == nix::errno::Errno::EINTR {
                Ok(0)
            } else {
                Err(e)
            }
        });
        let n = n.ctx(|| format!("wait on {}", fifo.display()))?;
        if n > 0 {
            let mut b = [0u8; 1];
            match nix::unistd::read(&fd, &mut b) {
                Ok(1) => released = true,
                // No writer: before init opened its end, or after it exec'd.
                Ok(_) if released => break,
                Ok(_) | Err(nix::errno::Errno::EAGAIN) => {}
                Err(e) => return Err(Error::sys(format!("read {}", fifo.display()), e)),
            }
        }
        if !crate::proc_info::is_alive(pid, st.init_start_time) {
            if released {
                // It was released and exited (a failed startContainer hook
                // or exec, or a program that already finished).
                break;
            }
            return Err(Error::wrong_state(
                id,
                Status::Stopped,
                words::START_STOPPED,
                "its init exited before start",
            ));
        }
        if !released {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let _ = std::fs::remove_file(&fifo);
    st.status = Status::Running;
    store.save(&st)?;
    if let Some(h) = st.hooks.as_ref().and_then(|h| h.poststart().clone()) {
        crate::hooks::run_all_warn(&h, "poststart", &st.hook_state(Status::Running));
    }
    Ok(())
}

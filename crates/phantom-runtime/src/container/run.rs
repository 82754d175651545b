//! `run`: create and start; in the foreground, forward signals to init,
//! reap it, and exit with its status (128+N for a signal, as shells do).

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::os::fd::AsRawFd;

use crate::error::{Result, SysContext};
use crate::state::StateStore;

use super::create::CreateOptions;

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub create: CreateOptions,
    pub detach: bool,
    pub keep: bool,
}

pub(crate) const FORWARDED: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Returns the exit status for the caller to exit with.
pub fn run(store: &StateStore, opts: &RunOptions) -> Result<i32> {
    let id = &opts.create.id;
    if opts.detach {
        super::create(store, &opts.create)?;
        if let Err(e) = super::start(store, id) {
            let _ = super::delete(store, id, true);
            return Err(e);
        }
        return Ok(0);
    }
    // Block what we forward (and SIGCHLD) before the clone, so none is lost;
    // init clears the mask before exec.
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    set.add(Signal::SIGCHLD);
    set.thread_block().ctx(|| "block signals".into())?;
    // Processes orphaned inside the container are re-parented to us.
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };

    // A terminal with nobody to hand it to: proxy it ourselves, as runc does.
    let needs_tty = opts.create.console_socket.is_none()
        && crate::spec::bundle_dir(&opts.create.bundle)
            .and_then(|b| crate::spec::load(&b))
            .is_ok_and(|s| {
                s.process()
                    .as_ref()
                    .and_then(|p| p.terminal())
                    .unwrap_or(false)
            });
    let pair = if needs_tty {
        Some(crate::tty_proxy::console_pair()?)
    } else {
        None
    };
    let mut create_opts = opts.create.clone();
    create_opts.console_fd = pair.as_ref().map(|(_, theirs)| theirs.as_raw_fd());
    let state = super::create(store, &create_opts)?;
    let pid = state.pid.unwrap_or(0);
    let master = match &pair {
        Some((ours, _)) => Some(crate::tty_proxy::receive_master(ours)?),
        None => None,
    };
    drop(pair);
    if let Err(e) = super::start(store, id) {
        let _ = super::delete(store, id, true);
        return Err(e);
    }
    let code = match master {
        Some(m) => crate::tty_proxy::proxy(&set, pid, m)?,
        None => wait_forwarding(&set, pid)?,
    };
    if !opts.keep {
        super::delete(store, id, true)?;
    }
    Ok(code)
}

/// Forward the blocked signals in `set` to `pid`, reap children, and
/// return `pid`'s exit status (128+N if killed by signal N).
pub(crate) fn wait_forwarding(set: &SigSet, pid: i32) -> Result<i32> {
    loop {
        let sig = set.wait().ctx(|| "wait for signals".into())?;
        if sig != Signal::SIGCHLD {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), sig);
            continue;
        }
        let mut done = None;
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, c)) if p.as_raw() == pid => done = Some(c),
                Ok(WaitStatus::Signaled(p, s, _)) if p.as_raw() == pid => {
                    done = Some(128 + s as i32)
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
        if let Some(c) = done {
            return Ok(c);
        }
    }
}

//! `run`: create and start; in the foreground, forward signals to init,
//! reap it, and exit with its status (128+N for a signal, as shells do).

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::error::{Result, SysContext};
use crate::state::StateStore;

use super::create::CreateOptions;

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub create: CreateOptions,
    pub detach: bool,
    pub keep: bool,
    /// Kill every process of the container after this long; the exit
    /// status is then 124, as timeout(1) has it.
    pub timeout: Option<Duration>,
    /// INT, TERM, HUP and QUIT kill the whole container instead of being
    /// forwarded (a sandboxed program is pid 1, which ignores signals it
    /// has no handler for, so Ctrl-C would otherwise do nothing).
    pub interrupt_kills: bool,
}

/// Exit status after `--timeout` fired.
pub const TIMEOUT_STATUS: i32 = 124;

/// How the foreground wait treats time and signals.
pub(crate) struct Waiting<'a> {
    pub deadline: Option<Instant>,
    pub interrupt_kills: bool,
    /// The container, to kill all of its processes.
    pub kill_all: Box<dyn Fn() + 'a>,
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
    let kill_all = || {
        if let Ok(st) = store.load(id) {
            let pids = match &st.cgroup {
                Some(cg) => cg.pids().unwrap_or_default(),
                None => super::kill::container_pids(pid, st.own_pid_ns),
            };
            for p in pids.into_iter().chain(std::iter::once(pid)) {
                let _ = nix::sys::signal::kill(Pid::from_raw(p), Signal::SIGKILL);
            }
        }
    };
    let waiting = Waiting {
        deadline: opts.timeout.map(|t| Instant::now() + t),
        interrupt_kills: opts.interrupt_kills,
        kill_all: Box::new(kill_all),
    };
    let code = match master {
        Some(m) => crate::tty_proxy::proxy(&set, pid, m, &waiting)?,
        None => wait_forwarding(&set, pid, &waiting)?,
    };
    if !opts.keep {
        super::delete(store, id, true)?;
    }
    Ok(code)
}

/// Forward the blocked signals in `set` to `pid`, reap children, and
/// return `pid`'s exit status (128+N if killed by signal N).
pub(crate) fn wait_forwarding(set: &SigSet, pid: i32, w: &Waiting<'_>) -> Result<i32> {
    let mut timed_out = false;
    loop {
        let sig = match w.deadline.filter(|_| !timed_out) {
            None => Some(set.wait().ctx(|| "wait for signals".into())?),
            Some(d) => timed_wait(set, d.saturating_duration_since(Instant::now()))?,
        };
        let Some(sig) = sig else {
            // The deadline passed: kill everything, then reap as usual.
            (w.kill_all)();
            timed_out = true;
            continue;
        };
        if sig != Signal::SIGCHLD {
            w.deliver(sig, pid);
            continue;
        }
        if let Some(c) = reap(pid) {
            return Ok(if timed_out { TIMEOUT_STATUS } else { c });
        }
    }
}

/// A shell's exit status for a wait status: the code, or 128+N for a
/// death by signal N; None for anything else (stopped, continued).
pub fn exit_status(ws: WaitStatus) -> Option<i32> {
    match ws {
        WaitStatus::Exited(_, c) => Some(c),
        WaitStatus::Signaled(_, s, _) => Some(128 + s as i32),
        _ => None,
    }
}

/// Reap every exited child (we may be a subreaper); `pid`'s exit status
/// if it was among them.
pub(crate) fn reap(pid: i32) -> Option<i32> {
    let mut done = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return done,
            Ok(ws) if ws.pid().is_some_and(|p| p.as_raw() == pid) => done = exit_status(ws),
            Ok(_) => {}
        }
    }
}

impl Waiting<'_> {
    /// A signal that arrived for the container.
    pub(crate) fn deliver(&self, sig: Signal, pid: i32) {
        let interrupt = matches!(
            sig,
            Signal::SIGINT | Signal::SIGTERM | Signal::SIGHUP | Signal::SIGQUIT
        );
        if self.interrupt_kills && interrupt {
            (self.kill_all)();
        } else {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), sig);
        }
    }
}

/// sigtimedwait: the next signal of `set`, or None once `left` is over.
fn timed_wait(set: &SigSet, left: Duration) -> Result<Option<Signal>> {
    let ts = libc::timespec {
        tv_sec: left.as_secs() as libc::time_t,
        tv_nsec: left.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `set` and `ts` are valid for the call; no siginfo is wanted.
    let rc = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &ts) };
    if rc < 0 {
        let e = nix::errno::Errno::last();
        return match e {
            nix::errno::Errno::EAGAIN => Ok(None),
            nix::errno::Errno::EINTR => Ok(Some(Signal::SIGCHLD)),
            e => Err(crate::error::Error::sys("wait for signals", e)),
        };
    }
    Ok(Signal::try_from(rc).ok())
}

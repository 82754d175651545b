//! `phantom run` in the foreground with `process.terminal: true` and no
//! `--console-socket`: like runc, phantom receives the pty master itself and
//! copies between it and its own stdio, with the caller's terminal in raw
//! mode and window size changes passed on.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{
    recvmsg, socketpair, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType,
};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};

use crate::error::{Error, Result, SysContext};

/// A connected pair: give `.1` to the container as its console socket.
pub fn console_pair() -> Result<(OwnedFd, OwnedFd)> {
    socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .ctx(|| "socketpair for the terminal".into())
}

/// Receive the pty master that init sent over the console socket.
pub fn receive_master(sock: &OwnedFd) -> Result<OwnedFd> {
    let mut buf = [0u8; 64];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .ctx(|| "receive the pty master".into())?;
    for c in msg.cmsgs().ctx(|| "read control messages".into())? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel just installed this fd for us.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err(Error::Init("the container sent no terminal".into()))
}

/// Puts stdin's terminal in raw mode; restores it when dropped.
struct RawMode {
    saved: Option<Termios>,
}

impl RawMode {
    fn enter() -> Self {
        let stdin = std::io::stdin();
        let saved = tcgetattr(stdin.as_fd()).ok();
        if let Some(t) = &saved {
            let mut raw = t.clone();
            cfmakeraw(&mut raw);
            let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        }
        RawMode { saved }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, t);
        }
    }
}

fn copy_winsize(master: RawFd) {
    // SAFETY: an all-zero winsize is valid; the ioctls read/write it.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(master, libc::TIOCSWINSZ, &ws);
        }
    }
}

fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

/// Copy stdio <-> master until `pid` exits; forward the signals in `set`
/// (blocked by the caller) and return `pid`'s exit status.
pub(crate) fn proxy(
    set: &SigSet,
    pid: i32,
    master: OwnedFd,
    w: &crate::container::run::Waiting<'_>,
) -> Result<i32> {
    let mut timed_out = false;
    let _raw = RawMode::enter();
    copy_winsize(master.as_raw_fd());
    let sfd = SignalFd::with_flags(set, SfdFlags::SFD_CLOEXEC).ctx(|| "signalfd".into())?;
    // SAFETY: fds 0 and 1 are this process's stdio for its whole life.
    let (stdin, stdout) = unsafe { (BorrowedFd::borrow_raw(0), BorrowedFd::borrow_raw(1)) };
    let mut stdin_open = true;
    let mut buf = vec![0u8; 16 * 1024];
    let mut status = None;
    loop {
        let mut fds = vec![
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(master.as_fd(), PollFlags::POLLIN),
        ];
        if stdin_open {
            fds.push(PollFd::new(stdin, PollFlags::POLLIN));
        }
        let timeout = match (status.is_some(), w.deadline.filter(|_| !timed_out)) {
            (true, _) => 50u16,
            (false, Some(d)) => {
                let left = d.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    (w.kill_all)();
                    timed_out = true;
                }
                left.as_millis().clamp(1, u128::from(u16::MAX - 1)) as u16
            }
            (false, None) => u16::MAX,
        };
        match poll(&mut fds, PollTimeout::from(timeout)) {
            Ok(0) => break, // child gone and output drained
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::sys("poll the terminal", e)),
        }
        let ready = |i: usize| {
            fds.get(i)
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty())
        };
        let (sig_ready, master_ready, stdin_ready) = (ready(0), ready(1), ready(2));
        if master_ready {
            match nix::unistd::read(&master, &mut buf) {
                Ok(n) if n > 0 => write_all(stdout, &buf[..n]),
                // EIO: every slave fd is closed, the program is done.
                _ => {
                    if status.is_some() {
                        break;
                    }
                }
            }
        }
        if stdin_ready {
            match nix::unistd::read(stdin, &mut buf) {
                Ok(n) if n > 0 => write_all(master.as_fd(), &buf[..n]),
                _ => stdin_open = false,
            }
        }
        if sig_ready {
            if let Ok(Some(info)) = sfd.read_signal() {
                let sig = Signal::try_from(info.ssi_signo as i32).ok();
                match sig {
                    Some(Signal::SIGCHLD) => {
                        if let Some(c) = crate::container::run::reap(pid) {
                            status = Some(c);
                        }
                    }
                    Some(Signal::SIGWINCH) => copy_winsize(master.as_raw_fd()),
                    Some(s) => w.deliver(s, pid),
                    None => {}
                }
            }
        }
    }
    status
        .map(|s| {
            if timed_out {
                crate::container::run::TIMEOUT_STATUS
            } else {
                s
            }
        })
        .ok_or_else(|| Error::Init("the container's terminal closed before it exited".into()))
}

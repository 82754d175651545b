//! The container's fd table, built on purpose (CVE-2024-21626): only stdio,
//! socket-activation fds and `--preserve-fds` survive into the container.

use std::os::fd::RawFd;

use crate::error::{Result, SysContext};

/// Close every fd from `first` up, except those in `keep` (our own
/// close-on-exec sync fds, needed until exec).
pub fn close_from(first: RawFd, keep: &[RawFd]) -> Result<()> {
    let mut keep: Vec<RawFd> = keep.iter().copied().filter(|&k| k >= first).collect();
    keep.sort_unstable();
    let mut lo = first;
    for k in keep {
        if k > lo {
            close_range(lo as u32, (k - 1) as u32, 0)?;
        }
        lo = k + 1;
    }
    close_range(lo as u32, u32::MAX, 0)
}

/// Make fds `3..3+n` inheritable (the caller passed them on purpose).
pub fn inherit(n: i32) -> Result<()> {
    for fd in 3..3 + n {
        // SAFETY: fcntl on an fd number; an fd that is not open gives EBADF.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags < 0 {
            return Err(crate::error::Error::Init(format!(
                "--preserve-fds: fd {fd} is not open in the caller"
            )));
        }
        // SAFETY: as above, clearing FD_CLOEXEC.
        unsafe { libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) };
    }
    Ok(())
}

fn close_range(lo: u32, hi: u32, flags: u32) -> Result<()> {
    // SAFETY: close_range only closes descriptors; no memory is passed.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, lo, hi, flags) };
    nix::errno::Errno::result(rc)
        .map(drop)
        .ctx(|| format!("close_range({lo}, {hi})"))
}

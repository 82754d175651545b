//! What a pre-created network namespace would save `phantom create`:
//! making one (`unshare(CLONE_NEWNET)`, then bringing `lo` up, as the
//! loopback network mode does) against joining one made beforehand
//! (`setns` on its fd, `lo` already up), both in-process on one thread of
//! the bench. The daemon hands pre-created namespaces to `create` only if
//! this shows a gain (docs/bench.md).
//!
//! Each iteration times one of each, in alternating order; everything else
//! (making the namespace to join, returning to the bench's own namespace,
//! dropping the last reference, whose teardown the kernel defers to a
//! worker) is untimed.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Instant;

use anyhow::{Context, Result};
use nix::sched::{setns, unshare, CloneFlags};

use crate::report::{Cell, Figure, Status, Unit};
use crate::rows::Section;

/// `struct ifreq` with the `ifr_flags` member (40 bytes on Linux).
#[repr(C)]
struct IfreqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// `ip link set lo up` in the calling thread's network namespace.
fn lo_up() -> Result<()> {
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context("socket(AF_INET)")?;
    let mut req = IfreqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: 0,
        _pad: [0; 22],
    };
    req.name[..2].copy_from_slice(b"lo");
    // SAFETY: SIOCGIFFLAGS and SIOCSIFFLAGS read and write a `struct ifreq`;
    // `req` has its layout and size and outlives both calls.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) != 0 {
            return Err(std::io::Error::last_os_error()).context("SIOCGIFFLAGS lo");
        }
        req.flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) != 0 {
            return Err(std::io::Error::last_os_error()).context("SIOCSIFFLAGS lo");
        }
    }
    Ok(())
}

fn own_netns() -> Result<File> {
    File::open("/proc/thread-self/ns/net").context("open /proc/thread-self/ns/net")
}

/// Microseconds of (make + lo up, join), one pair per iteration after
/// `warmup` untimed ones. Runs on a thread of its own, which it leaves in
/// the namespace it started in.
pub fn measure(iterations: usize, warmup: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    std::thread::spawn(move || -> Result<(Vec<f64>, Vec<f64>)> {
        let home = own_netns()?;
        let back = || setns(home.as_fd(), CloneFlags::CLONE_NEWNET).context("setns back");
        let mut new = Vec::with_capacity(iterations);
        let mut join = Vec::with_capacity(iterations);
        for i in 0..warmup + iterations {
            let keep = i >= warmup;
            for step in [i % 2, 1 - i % 2] {
                if step == 0 {
                    let t = Instant::now();
                    unshare(CloneFlags::CLONE_NEWNET).context("unshare(CLONE_NEWNET)")?;
                    lo_up()?;
                    let us = t.elapsed().as_secs_f64() * 1e6;
                    back()?;
                    if keep {
                        new.push(us);
                    }
                } else {
                    // What the daemon would have made beforehand.
                    unshare(CloneFlags::CLONE_NEWNET).context("unshare(CLONE_NEWNET)")?;
                    lo_up()?;
                    let made = own_netns()?;
                    back()?;
                    let t = Instant::now();
                    setns(made.as_fd(), CloneFlags::CLONE_NEWNET).context("setns(netns)")?;
                    let us = t.elapsed().as_secs_f64() * 1e6;
                    back()?;
                    drop(made);
                    if keep {
                        join.push(us);
                    }
                }
            }
        }
        Ok((new, join))
    })
    .join()
    .unwrap_or_else(|_| Err(anyhow::anyhow!("the netns thread panicked")))
}

/// The figure "netns: new vs join": two cells, one per way.
pub fn figure(iterations: usize, warmup: usize) -> Figure {
    const NEW: &str = "new: unshare(CLONE_NEWNET) + lo up";
    const JOIN: &str = "join: setns(pre-created netns)";
    let mut cells = vec![
        Cell::new(NEW, Status::Ok, None),
        Cell::new(JOIN, Status::Ok, None),
    ];
    match measure(iterations, warmup) {
        Ok((new, join)) => {
            cells[0].samples = new;
            cells[1].samples = join;
        }
        Err(e) => {
            for c in &mut cells {
                c.stop(format!("{e:#}"));
            }
        }
    }
    Figure::new(
        "netns-new-vs-join",
        Section::Floor,
        "netns: new vs join (in-process, per namespace)",
        Unit::Us,
        cells,
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn ifreq_has_the_kernels_size() {
        assert_eq!(std::mem::size_of::<super::IfreqFlags>(), 40);
    }
}

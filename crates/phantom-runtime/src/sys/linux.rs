use std::ffi::CString;
use std::os::fd::{BorrowedFd, RawFd};
use std::path::Path;

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

use super::Sys;

/// The real kernel.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinuxSys;

impl Sys for LinuxSys {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        nix::mount::mount(source, target, fstype, flags, data)
    }

    fn umount2(&self, target: &Path, flags: MntFlags) -> nix::Result<()> {
        nix::mount::umount2(target, flags)
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> nix::Result<()> {
        nix::unistd::pivot_root(new_root, put_old)
    }

    fn chroot(&self, path: &Path) -> nix::Result<()> {
        nix::unistd::chroot(path)
    }

    fn setns(&self, fd: RawFd, nstype: CloneFlags) -> nix::Result<()> {
        // SAFETY: the caller owns `fd` for the duration of this call.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        nix::sched::setns(fd, nstype)
    }

    fn unshare(&self, flags: CloneFlags) -> nix::Result<()> {
        nix::sched::unshare(flags)
    }

    fn sethostname(&self, name: &str) -> nix::Result<()> {
        nix::unistd::sethostname(name)
    }

    fn setdomainname(&self, name: &str) -> nix::Result<()> {
        // SAFETY: the pointer and length describe `name`'s live buffer.
        let rc = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
        nix::errno::Errno::result(rc).map(drop)
    }

    fn mknodat(
        &self,
        dirfd: RawFd,
        name: &str,
        mode: libc::mode_t,
        dev: libc::dev_t,
    ) -> nix::Result<()> {
        let c = CString::new(name).map_err(|_| nix::errno::Errno::EINVAL)?;
        // SAFETY: `c` is a valid NUL-terminated name that outlives the call;
        // `dirfd` is owned by the caller.
        let rc = unsafe { libc::mknodat(dirfd, c.as_ptr(), mode, dev) };
        nix::errno::Errno::result(rc).map(drop)
    }
}

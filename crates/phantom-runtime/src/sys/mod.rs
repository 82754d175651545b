//! The privileged-call seam. Namespace, mount and identity code calls these
//! through `&dyn Sys` so that unit tests can run it against [`RecordingSys`]
//! without root, and the real [`LinuxSys`] is only used by the runtime.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use std::os::fd::RawFd;

mod linux;
#[cfg(any(test, feature = "test-sys"))]
mod recording;

pub use linux::LinuxSys;
#[cfg(any(test, feature = "test-sys"))]
pub use recording::{Call, RecordingSys};

/// Privileged system calls used while building a container.
pub trait Sys {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()>;
    fn umount2(&self, target: &Path, flags: MntFlags) -> nix::Result<()>;
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> nix::Result<()>;
    fn chroot(&self, path: &Path) -> nix::Result<()>;
    fn setns(&self, fd: RawFd, nstype: CloneFlags) -> nix::Result<()>;
    fn unshare(&self, flags: CloneFlags) -> nix::Result<()>;
    fn sethostname(&self, name: &str) -> nix::Result<()>;
    fn setdomainname(&self, name: &str) -> nix::Result<()>;
    /// mknod of `name` inside the directory `dirfd` (already resolved in the rootfs).
    fn mknodat(
        &self,
        dirfd: RawFd,
        name: &str,
        mode: libc::mode_t,
        dev: libc::dev_t,
    ) -> nix::Result<()>;
}

/// A mount target given as an open file descriptor: the kernel resolves
/// `/proc/self/fd/N` to exactly the inode we opened (and verified), so a
/// symlink swapped in afterwards cannot redirect the mount.
pub fn fd_path(fd: RawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{fd}"))
}

//! Writes to /proc only through a verified procfs (CVE-2025-52881): the
//! mount at /proc must be a real procfs root, and the file is opened beneath
//! it without following any symlink, then checked to be on procfs.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::Path;

use crate::error::{Error, Result};
use crate::rootfs::safe_path::{fs_type, fstat, openat2};

const PROC_SUPER_MAGIC: i64 = 0x9fa0;
const PROC_ROOT_INO: u64 = 1;

pub fn write(rel: &str, value: &str) -> Result<()> {
    let path = Path::new("/proc").join(rel);
    let io = |e: nix::Error| Error::io("cannot write", &path, std::io::Error::from(e));
    let proc = nix::fcntl::open(
        "/proc",
        nix::fcntl::OFlag::O_PATH
            | nix::fcntl::OFlag::O_DIRECTORY
            | nix::fcntl::OFlag::O_CLOEXEC
            | nix::fcntl::OFlag::O_NOFOLLOW,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(io)?;
    let st = fstat(proc.as_raw_fd()).map_err(io)?;
    if fs_type(proc.as_raw_fd()).map_err(io)? != PROC_SUPER_MAGIC || st.st_ino != PROC_ROOT_INO {
        return Err(Error::io(
            "refusing to write: /proc is not the root of a procfs mount",
            &path,
            std::io::Error::from_raw_os_error(libc::EXDEV),
        ));
    }
    // `self` is itself a symlink in procfs; resolve it to our pid first.
    let rel = match rel.strip_prefix("self/") {
        Some(rest) => format!("{}/{rest}", nix::unistd::getpid()),
        None => rel.to_string(),
    };
    let fd = openat2(
        proc.as_raw_fd(),
        Path::new(&rel),
        libc::O_WRONLY | libc::O_CLOEXEC,
        libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    )
    .map_err(io)?;
    if fs_type(fd.as_raw_fd()).map_err(io)? != PROC_SUPER_MAGIC {
        return Err(Error::io(
            "refusing to write: not a procfs file",
            &path,
            std::io::Error::from_raw_os_error(libc::EXDEV),
        ));
    }
    // SAFETY: we own `fd`; the File takes it over.
    let mut f = unsafe { std::fs::File::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(fd)) };
    f.write_all(value.as_bytes())
        .map_err(|e| Error::io("cannot write", &path, e))
}

/// `linux.sysctl`: `net.ipv4.ip_forward` -> /proc/sys/net/ipv4/ip_forward.
pub fn sysctl(key: &str, value: &str) -> Result<()> {
    let rel = format!("sys/{}", key.replace('.', "/"));
    write(&rel, value).map_err(|e| Error::Init(format!("linux.sysctl.{key}: {e}")))
}

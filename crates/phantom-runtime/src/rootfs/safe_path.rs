//! Path resolution confined to the container's rootfs (CVE-2021-30465).
//!
//! Every mount target is opened with `openat2(RESOLVE_IN_ROOT)`: a symlink
//! in the rootfs, even `evil -> /`, resolves against the rootfs and never
//! out of it, and magic links (`/proc/self/fd/N`) are refused. The mount is
//! then made onto the opened fd (`/proc/self/fd/N`), so a rename or symlink
//! swapped in after the check cannot redirect it.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;

/// `openat2(dirfd, path, flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`.
pub fn open_in_root(root: RawFd, path: &Path, flags: i32) -> nix::Result<OwnedFd> {
    openat2(
        root,
        path,
        flags | libc::O_CLOEXEC,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    )
}

pub fn openat2(dirfd: RawFd, path: &Path, flags: i32, resolve: u64) -> nix::Result<OwnedFd> {
    let rel = relative(path);
    let c = CString::new(rel.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: open_how is plain old data; zeroed is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags as u64;
    // O_TMPFILE contains the O_DIRECTORY bit: compare the whole mask.
    how.mode = if flags & libc::O_CREAT != 0 || flags & libc::O_TMPFILE == libc::O_TMPFILE {
        0o644
    } else {
        0
    };
    how.resolve = resolve;
    // SAFETY: `c` and `how` are live for the call and the size matches the
    // struct we pass; the kernel returns a new fd or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dirfd,
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    let fd = Errno::result(fd)? as RawFd;
    // SAFETY: the kernel just gave us this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Drop the leading `/` so the path is taken relative to the root fd.
fn relative(path: &Path) -> PathBuf {
    let rel: PathBuf = path
        .components()
        .filter(|c| !matches!(c, Component::RootDir | Component::Prefix(_)))
        .collect();
    if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    }
}

/// What to create when a mount destination does not exist yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

/// Open `path` inside `root` (as an O_PATH fd), creating it and its missing
/// parent directories inside the rootfs first.
pub fn ensure_in_root(root: RawFd, path: &Path, kind: Kind) -> nix::Result<OwnedFd> {
    let flags = libc::O_PATH;
    match open_in_root(root, path, flags) {
        Ok(fd) => return Ok(fd),
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(e),
    }
    let rel = relative(path);
    let mut cur = open_in_root(root, Path::new("/"), libc::O_PATH | libc::O_DIRECTORY)?;
    let comps: Vec<_> = rel.components().collect();
    let mut sofar = PathBuf::from("/");
    for (i, comp) in comps.iter().enumerate() {
        let name = comp.as_os_str();
        sofar.push(name);
        let last = i + 1 == comps.len();
        match open_in_root(root, &sofar, libc::O_PATH) {
            Ok(fd) => {
                cur = fd;
                continue;
            }
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(e),
        }
        let c = CString::new(name.as_bytes()).map_err(|_| Errno::EINVAL)?;
        if last && kind == Kind::File {
            // SAFETY: `cur` is a directory fd we own; `c` is a valid name.
            // O_EXCL|O_NOFOLLOW: never create through a dangling symlink.
            let fd = unsafe {
                libc::openat(
                    cur.as_raw_fd(),
                    c.as_ptr(),
                    libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_NOFOLLOW
                        | libc::O_CLOEXEC
                        | libc::O_WRONLY,
                    0o644,
                )
            };
            let fd = Errno::result(fd)?;
            // SAFETY: fresh fd from the kernel, owned only here.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
        } else {
            // SAFETY: `cur` is a directory fd we own; `c` is a valid name.
            let rc = unsafe { libc::mkdirat(cur.as_raw_fd(), c.as_ptr(), 0o755) };
            match Errno::result(rc) {
                Ok(_) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(e),
            }
        }
        // Re-resolve from the root: what we created must itself resolve
        // inside the rootfs (a dangling symlink named like it would not).
        cur = open_in_root(root, &sofar, libc::O_PATH)?;
    }
    Ok(cur)
}

/// fstat an fd.
pub fn fstat(fd: RawFd) -> nix::Result<libc::stat> {
    // SAFETY: an all-zero stat is valid; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid out-pointer and `fd` is owned by the caller.
    Errno::result(unsafe { libc::fstat(fd, &mut st) })?;
    Ok(st)
}

/// The filesystem magic of an fd.
pub fn fs_type(fd: RawFd) -> nix::Result<i64> {
    // SAFETY: an all-zero statfs is valid; fstatfs fills it.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid out-pointer and `fd` is owned by the caller.
    Errno::result(unsafe { libc::fstatfs(fd, &mut st) })?;
    Ok(st.f_type as i64)
}

/// Mount flags that a bind remount must keep (the kernel refuses to clear
/// "locked" flags in a user namespace).
pub fn locked_flags(fd: RawFd) -> nix::mount::MsFlags {
    use nix::mount::MsFlags;
    // SAFETY: an all-zero statvfs is valid; fstatvfs fills it.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid out-pointer and `fd` is owned by the caller.
    if unsafe { libc::fstatvfs(fd, &mut st) } != 0 {
        return MsFlags::empty();
    }
    let mut f = MsFlags::empty();
    for (st_flag, ms) in [
        (libc::ST_NOSUID, MsFlags::MS_NOSUID),
        (libc::ST_NODEV, MsFlags::MS_NODEV),
        (libc::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (libc::ST_RDONLY, MsFlags::MS_RDONLY),
        (libc::ST_NOATIME, MsFlags::MS_NOATIME),
        (libc::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (libc::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if st.f_flag & st_flag != 0 {
            f |= ms;
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        symlink("/", root.join("evil")).unwrap();
        symlink("../../../../etc", root.join("up")).unwrap();
        let rootfd = nix::fcntl::open(
            &root,
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap();
        // /evil/x -> <root>/x, never the host's /x.
        let fd = ensure_in_root(rootfd.as_raw_fd(), Path::new("/evil/x/y"), Kind::Dir).unwrap();
        assert!(root.join("x/y").is_dir());
        assert_eq!(
            std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap(),
            root.join("x/y")
        );
        // ../../ climbs stop at the root.
        let fd = ensure_in_root(rootfd.as_raw_fd(), Path::new("/up/passwd"), Kind::File).unwrap();
        assert_eq!(
            std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap(),
            root.join("etc/passwd")
        );
        // Magic links are refused.
        assert!(open_in_root(
            rootfd.as_raw_fd(),
            Path::new("/proc/self/fd/0"),
            libc::O_PATH
        )
        .is_err());
    }
}

//! A recursive copy between two directory fds (for `tmpcopyup`): files,
//! directories, symlinks and device nodes, with mode, owner and times.
//! Every step is relative to an fd, with O_NOFOLLOW: nothing in the image
//! can redirect the copy outside the two trees.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

fn open_at(dir: RawFd, name: &CStr, flags: i32, mode: u32) -> nix::Result<OwnedFd> {
    // SAFETY: a valid dir fd and NUL-terminated name; returns a new fd or -1.
    let fd = unsafe {
        libc::openat(
            dir,
            name.as_ptr(),
            flags | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            mode,
        )
    };
    // SAFETY: the kernel just returned this fd.
    Errno::result(fd).map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
}

fn stat_at(dir: RawFd, name: &CStr) -> nix::Result<libc::stat> {
    // SAFETY: an all-zero stat is valid; fstatat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd, name and out-pointer.
    Errno::result(unsafe {
        libc::fstatat(dir, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW)
    })?;
    Ok(st)
}

fn set_meta(dir: RawFd, name: &CStr, st: &libc::stat) -> nix::Result<()> {
    let kind = st.st_mode & libc::S_IFMT;
    // SAFETY: valid fd and name; AT_SYMLINK_NOFOLLOW for the link itself.
    Errno::result(unsafe {
        libc::fchownat(
            dir,
            name.as_ptr(),
            st.st_uid,
            st.st_gid,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    if kind != libc::S_IFLNK {
        // SAFETY: valid fd and name (not a symlink, so no follow issue).
        Errno::result(unsafe { libc::fchmodat(dir, name.as_ptr(), st.st_mode & 0o7777, 0) })?;
    }
    let times = [
        libc::timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec,
        },
        libc::timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec,
        },
    ];
    // SAFETY: valid fd, name and a two-element array.
    Errno::result(unsafe {
        libc::utimensat(
            dir,
            name.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(())
}

/// Copy the contents of directory `from` into directory `to`.
pub fn copy_tree(from: RawFd, to: RawFd) -> nix::Result<()> {
    // The entry list needs its own fd (readdir moves its offset).
    let dup = nix::unistd::dup(
        // SAFETY: `from` is open for the duration of this call.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(from) },
    )?;
    let mut dir = nix::dir::Dir::from_fd(dup)?;
    for entry in dir.iter() {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        let name: CString = name.to_owned();
        let st = stat_at(from, &name)?;
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {
                // SAFETY: valid fd and name.
                match Errno::result(unsafe { libc::mkdirat(to, name.as_ptr(), 0o700) }) {
                    Ok(_) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(e),
                }
                let sub_from = open_at(from, &name, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
                let sub_to = open_at(to, &name, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
                copy_tree(sub_from.as_raw_fd(), sub_to.as_raw_fd())?;
            }
            libc::S_IFREG => {
                let src = open_at(from, &name, libc::O_RDONLY, 0)?;
                let dst = open_at(
                    to,
                    &name,
                    libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
                    0o600,
                )?;
                let mut left = st.st_size as usize;
                while left > 0 {
                    // SAFETY: both fds are open; sendfile moves data in the kernel.
                    let n = unsafe {
                        libc::sendfile(dst.as_raw_fd(), src.as_raw_fd(), std::ptr::null_mut(), left)
                    };
                    let n = Errno::result(n)?;
                    if n == 0 {
                        break;
                    }
                    left -= n as usize;
                }
            }
            libc::S_IFLNK => {
                let mut buf = vec![0u8; libc::PATH_MAX as usize];
                // SAFETY: valid fd, name and buffer of the given length.
                let n = unsafe {
                    libc::readlinkat(from, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
                };
                buf.truncate(Errno::result(n)? as usize);
                let target = CString::new(buf).map_err(|_| Errno::EINVAL)?;
                // SAFETY: valid strings and dir fd.
                Errno::result(unsafe { libc::symlinkat(target.as_ptr(), to, name.as_ptr()) })?;
            }
            kind => {
                // Device nodes, fifos, sockets: recreate the node.
                // SAFETY: valid fd and name.
                Errno::result(unsafe {
                    libc::mknodat(to, name.as_ptr(), kind | 0o600, st.st_rdev)
                })?;
            }
        }
        set_meta(to, &name, &st)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    #[test]
    fn copies_files_dirs_links_and_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        std::fs::create_dir_all(a.join("sub")).unwrap();
        std::fs::create_dir(&b).unwrap();
        std::fs::write(a.join("sub/f"), b"hello").unwrap();
        std::fs::set_permissions(a.join("sub/f"), std::fs::Permissions::from_mode(0o640)).unwrap();
        symlink("sub/f", a.join("l")).unwrap();
        let fa = nix::fcntl::open(
            &a,
            nix::fcntl::OFlag::O_RDONLY,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap();
        let fb = nix::fcntl::open(
            &b,
            nix::fcntl::OFlag::O_RDONLY,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap();
        copy_tree(fa.as_raw_fd(), fb.as_raw_fd()).unwrap();
        assert_eq!(std::fs::read(b.join("sub/f")).unwrap(), b"hello");
        assert_eq!(
            std::fs::metadata(b.join("sub/f")).unwrap().mode() & 0o777,
            0o640
        );
        assert_eq!(
            std::fs::read_link(b.join("l")).unwrap(),
            std::path::Path::new("sub/f")
        );
    }
}

//! Device nodes in the container's `/dev`: the defaults every container
//! gets (config-linux.md "Default Devices"), `linux.devices`, and the
//! standard symlinks. In a user namespace mknod is not allowed, so the
//! host's node is bind-mounted instead.

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::fd::RawFd;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::MsFlags;
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::safe_path::{ensure_in_root, open_in_root, Kind};
use crate::error::{Error, Result, SysContext};
use crate::sys::{fd_path, Sys};

/// (path, major, minor): character devices with mode 0666.
pub const DEFAULT_DEVICES: [(&str, u32, u32); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

pub fn default_devices(sys: &dyn Sys, root: RawFd, userns: bool) -> Result<()> {
    for (path, major, minor) in DEFAULT_DEVICES {
        make_node(
            sys,
            root,
            Path::new(path),
            libc::S_IFCHR,
            0o666,
            major,
            minor,
            None,
            userns,
        )?;
    }
    Ok(())
}

pub fn create(sys: &dyn Sys, root: RawFd, d: &LinuxDevice, userns: bool) -> Result<()> {
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
        LinuxDeviceType::B => libc::S_IFBLK,
        LinuxDeviceType::P => libc::S_IFIFO,
        LinuxDeviceType::A => {
            return Err(Error::config(
                "linux.devices.type",
                "\"a\" is only valid in linux.resources.devices",
            ))
        }
    };
    if !d.path().starts_with("/dev") {
        return Err(Error::config(
            "linux.devices.path",
            format!("{} is not under /dev", d.path().display()),
        ));
    }
    let owner = match (d.uid(), d.gid()) {
        (None, None) => None,
        (u, g) => Some((u.unwrap_or(0), g.unwrap_or(0))),
    };
    make_node(
        sys,
        root,
        d.path(),
        kind,
        d.file_mode().unwrap_or(0o666) & 0o7777,
        d.major() as u32,
        d.minor() as u32,
        owner,
        userns,
    )
}

#[allow(clippy::too_many_arguments)]
fn make_node(
    sys: &dyn Sys,
    root: RawFd,
    path: &Path,
    kind: libc::mode_t,
    perm: u32,
    major: u32,
    minor: u32,
    owner: Option<(u32, u32)>,
    userns: bool,
) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("/dev"));
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        Error::config(
            "linux.devices.path",
            format!("{} has no name", path.display()),
        )
    })?;
    ensure_in_root(root, parent, Kind::Dir).ctx(|| format!("create {}", parent.display()))?;
    // The O_PATH fd cannot be used for *at calls; reopen as a directory.
    let dir = open_in_root(root, parent, libc::O_DIRECTORY | libc::O_RDONLY)
        .ctx(|| format!("open {}", parent.display()))?;
    if userns {
        // Bind the host's node onto an empty file: mknod needs
        // CAP_MKNOD in the initial user namespace.
        let target =
            ensure_in_root(root, path, Kind::File).ctx(|| format!("create {}", path.display()))?;
        return sys
            .mount(
                Some(path),
                &fd_path(target.as_raw_fd()),
                None,
                MsFlags::MS_BIND,
                None,
            )
            .ctx(|| format!("bind host device {}", path.display()));
    }
    let c = CString::new(name).map_err(|_| Error::config("linux.devices.path", "contains NUL"))?;
    // A leftover from the image (regular file or symlink) is replaced.
    // SAFETY: `dir` is an fd we own and `c` a valid name.
    let rc = unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) };
    match Errno::result(rc) {
        Ok(_) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(Error::sys(format!("remove old {}", path.display()), e)),
    }
    let dev = if kind == libc::S_IFIFO {
        0
    } else {
        libc::makedev(major, minor)
    };
    sys.mknodat(dir.as_raw_fd(), name, kind | perm, dev)
        .ctx(|| format!("mknod {} ({major}:{minor})", path.display()))?;
    // mknod applies the umask; set the mode the config asked for.
    // SAFETY: valid fd and name; AT_SYMLINK_NOFOLLOW is not needed as we
    // just created a device node under this name.
    Errno::result(unsafe { libc::fchmodat(dir.as_raw_fd(), c.as_ptr(), perm, 0) })
        .ctx(|| format!("chmod {}", path.display()))?;
    if let Some((uid, gid)) = owner {
        // SAFETY: valid fd and name; do not follow a symlink.
        Errno::result(unsafe {
            libc::fchownat(
                dir.as_raw_fd(),
                c.as_ptr(),
                uid,
                gid,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })
        .ctx(|| format!("chown {}", path.display()))?;
    }
    Ok(())
}

/// /dev/fd, /dev/std{in,out,err}, /dev/ptmx -> pts/ptmx, /dev/core.
pub fn dev_symlinks(root: RawFd) -> Result<()> {
    let dev = open_in_root(root, Path::new("/dev"), libc::O_DIRECTORY | libc::O_RDONLY)
        .ctx(|| "open /dev".into())?;
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
        ("pts/ptmx", "ptmx"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    for (target, name) in links {
        let t = CString::new(target).expect("no NUL");
        let n = CString::new(name).expect("no NUL");
        if name == "ptmx" {
            // SAFETY: valid fd and name.
            let _ = unsafe { libc::unlinkat(dev.as_raw_fd(), n.as_ptr(), 0) };
        }
        // SAFETY: valid strings and a directory fd we own.
        let rc = unsafe { libc::symlinkat(t.as_ptr(), dev.as_raw_fd(), n.as_ptr()) };
        match Errno::result(rc) {
            Ok(_) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(Error::sys(format!("symlink /dev/{name} -> {target}"), e)),
        }
    }
    Ok(())
}

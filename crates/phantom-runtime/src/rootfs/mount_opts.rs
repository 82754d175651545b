//! Mount options of config.json (`mounts[].options`) turned into mount(2)
//! flags, propagation changes, recursive attributes and filesystem data.

use nix::mount::MsFlags;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    pub flags: MsFlags,
    /// Propagation changes, applied in order after the mount.
    pub propagation: Vec<MsFlags>,
    /// `mount_setattr(AT_RECURSIVE)` attributes to set and clear (`rro`, ...).
    pub attr_set: u64,
    pub attr_clr: u64,
    /// Options passed to the filesystem as data (`mode=755`, `size=1m`).
    pub data: Vec<String>,
    pub bind: bool,
    pub recursive: bool,
    /// `tmpcopyup` (runc, crun): a tmpfs starts with a copy of what the
    /// image had at its destination.
    pub tmpcopyup: bool,
}

impl MountOptions {
    pub fn data_string(&self) -> Option<String> {
        (!self.data.is_empty()).then(|| self.data.join(","))
    }
}

/// mount_setattr(2) attribute bits.
pub mod attr {
    pub const RDONLY: u64 = 0x1;
    pub const NOSUID: u64 = 0x2;
    pub const NODEV: u64 = 0x4;
    pub const NOEXEC: u64 = 0x8;
}
use attr::{
    NODEV as MOUNT_ATTR_NODEV, NOEXEC as MOUNT_ATTR_NOEXEC, NOSUID as MOUNT_ATTR_NOSUID,
    RDONLY as MOUNT_ATTR_RDONLY,
};
const MOUNT_ATTR_NOATIME: u64 = 0x10;
const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
const MOUNT_ATTR__ATIME: u64 = 0x70;

/// Parse options; `field` names the config entry in errors.
pub fn parse(options: &[String], field: &str) -> Result<MountOptions, String> {
    let mut o = MountOptions {
        flags: MsFlags::empty(),
        propagation: Vec::new(),
        attr_set: 0,
        attr_clr: 0,
        data: Vec::new(),
        bind: false,
        recursive: false,
        tmpcopyup: false,
    };
    for opt in options {
        let (set, clear): (MsFlags, MsFlags) = match opt.as_str() {
            "defaults" => (MsFlags::empty(), MsFlags::empty()),
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "lazytime" => (MsFlags::MS_LAZYTIME, MsFlags::empty()),
            "nolazytime" => (MsFlags::empty(), MsFlags::MS_LAZYTIME),
            "silent" => (MsFlags::MS_SILENT, MsFlags::empty()),
            "loud" => (MsFlags::empty(), MsFlags::MS_SILENT),
            "bind" => {
                o.bind = true;
                (MsFlags::MS_BIND, MsFlags::empty())
            }
            "rbind" => {
                o.bind = true;
                o.recursive = true;
                (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty())
            }
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                let base = match opt.trim_start_matches('r') {
                    "private" => MsFlags::MS_PRIVATE,
                    "shared" => MsFlags::MS_SHARED,
                    "slave" => MsFlags::MS_SLAVE,
                    _ => MsFlags::MS_UNBINDABLE,
                };
                let rec = opt.starts_with('r');
                o.propagation
                    .push(if rec { base | MsFlags::MS_REC } else { base });
                continue;
            }
            "rro" | "rrw" | "rnosuid" | "rsuid" | "rnodev" | "rdev" | "rnoexec" | "rexec"
            | "rnoatime" | "ratime" | "rstrictatime" | "rnodiratime" | "rdiratime" => {
                // The atime attributes are one field: setting one of them
                // must clear the field (MOUNT_ATTR__ATIME) in the same call.
                let (set, attr, clear_atime) = match opt.as_str() {
                    "rro" => (true, MOUNT_ATTR_RDONLY, false),
                    "rrw" => (false, MOUNT_ATTR_RDONLY, false),
                    "rnosuid" => (true, MOUNT_ATTR_NOSUID, false),
                    "rsuid" => (false, MOUNT_ATTR_NOSUID, false),
                    "rnodev" => (true, MOUNT_ATTR_NODEV, false),
                    "rdev" => (false, MOUNT_ATTR_NODEV, false),
                    "rnoexec" => (true, MOUNT_ATTR_NOEXEC, false),
                    "rexec" => (false, MOUNT_ATTR_NOEXEC, false),
                    "rnoatime" => (true, MOUNT_ATTR_NOATIME, true),
                    // relatime is the field's zero value.
                    "ratime" => (true, 0, true),
                    "rstrictatime" => (true, MOUNT_ATTR_STRICTATIME, true),
                    "rnodiratime" => (true, MOUNT_ATTR_NODIRATIME, false),
                    _ => (false, MOUNT_ATTR_NODIRATIME, false),
                };
                if clear_atime {
                    o.attr_set &= !MOUNT_ATTR__ATIME;
                    o.attr_clr |= MOUNT_ATTR__ATIME;
                }
                if set {
                    o.attr_set |= attr;
                    o.attr_clr &= !attr | if clear_atime { MOUNT_ATTR__ATIME } else { 0 };
                } else {
                    o.attr_clr |= attr;
                    o.attr_set &= !attr;
                }
                continue;
            }
            "tmpcopyup" => {
                o.tmpcopyup = true;
                continue;
            }
            "idmap" | "ridmap" | "copy-symlink" => {
                return Err(format!(
                    "{field}: mount option {opt:?} is not implemented yet"
                ))
            }
            other if other.starts_with("X-") || other.starts_with("x-") => continue,
            other => {
                o.data.push(other.to_string());
                continue;
            }
        };
        o.flags = (o.flags & !clear) | set;
    }
    Ok(o)
}

/// `mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, attr)`.
pub fn set_recursive_attrs(fd: std::os::fd::RawFd, set: u64, clr: u64) -> nix::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clr,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `attr` lives for the call and its size is passed; the empty
    // path with AT_EMPTY_PATH makes the kernel act on `fd` itself.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    nix::errno::Errno::result(rc).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(opts: &[&str]) -> MountOptions {
        let v: Vec<String> = opts.iter().map(|s| s.to_string()).collect();
        parse(&v, "mounts[0].options").unwrap()
    }

    #[test]
    fn flags_and_data() {
        let o = p(&["nosuid", "noexec", "nodev", "mode=755", "size=65536k"]);
        assert_eq!(
            o.flags,
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV
        );
        assert_eq!(o.data_string().as_deref(), Some("mode=755,size=65536k"));
        let o = p(&["ro", "rw"]);
        assert!(!o.flags.contains(MsFlags::MS_RDONLY));
    }

    #[test]
    fn bind_and_propagation() {
        let o = p(&["rbind", "rprivate", "ro"]);
        assert!(o.bind && o.recursive);
        assert_eq!(o.propagation, vec![MsFlags::MS_PRIVATE | MsFlags::MS_REC]);
        assert!(o
            .flags
            .contains(MsFlags::MS_RDONLY | MsFlags::MS_BIND | MsFlags::MS_REC));
        let o = p(&["slave", "runbindable", "shared"]);
        assert_eq!(
            o.propagation,
            vec![
                MsFlags::MS_SLAVE,
                MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
                MsFlags::MS_SHARED
            ]
        );
    }

    #[test]
    fn recursive_attrs_and_unknowns() {
        let o = p(&["rro", "rnosuid", "x-systemd.automount"]);
        assert_eq!(o.attr_set, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID);
        let o = p(&["rnoatime"]);
        assert_eq!(
            (o.attr_set, o.attr_clr),
            (MOUNT_ATTR_NOATIME, MOUNT_ATTR__ATIME)
        );
        let o = p(&["rnoatime", "rstrictatime"]);
        assert_eq!(
            (o.attr_set, o.attr_clr),
            (MOUNT_ATTR_STRICTATIME, MOUNT_ATTR__ATIME)
        );
        assert!(o.data.is_empty());
        let e = parse(&["idmap".to_string()], "mounts[3].options").unwrap_err();
        assert!(e.contains("mounts[3].options") && e.contains("not implemented yet"));
    }
}

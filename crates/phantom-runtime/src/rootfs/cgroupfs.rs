//! The `cgroup` mount of config.json (usually `/sys/fs/cgroup`).
//!
//! On a cgroup2 host it is one cgroup2 mount. On a v1 or hybrid host (like
//! this project's CI machine) it is a tmpfs with one entry per hierarchy.
//! With a cgroup namespace each hierarchy is mounted afresh (its root is the
//! namespace root); without one, the container's own cgroup directory of
//! each hierarchy is bind-mounted, so the host's tree stays hidden.

use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use super::mount_opts::MountOptions;
use super::safe_path::{ensure_in_root, open_in_root, Kind};
use crate::error::{Error, Result, SysContext};
use crate::sys::{fd_path, Sys};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub mountpoint: PathBuf,
    /// "cgroup" or "cgroup2".
    pub fstype: String,
    /// Controllers (or name=...) from the super options, for a fresh mount.
    pub options: Vec<String>,
}

/// Cgroup filesystems mounted under /sys/fs/cgroup, from mountinfo text.
pub fn hierarchies(mountinfo: &str) -> Vec<Hierarchy> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = left.split(' ').collect();
        let rfields: Vec<&str> = right.split(' ').collect();
        let (Some(mp), Some(fstype), Some(superopts)) =
            (fields.get(4), rfields.first(), rfields.get(2))
        else {
            continue;
        };
        if (*fstype != "cgroup" && *fstype != "cgroup2") || !mp.starts_with("/sys/fs/cgroup") {
            continue;
        }
        let options = superopts
            .split(',')
            .filter(|o| {
                !matches!(*o, "rw" | "ro") && !o.contains("nsdelegate") && !o.starts_with("memory_")
            })
            .map(str::to_string)
            .collect();
        out.push(Hierarchy {
            mountpoint: PathBuf::from(mp),
            fstype: fstype.to_string(),
            options,
        });
    }
    out
}

/// This process's cgroup path in the hierarchy with `options` (v1) or in
/// the unified hierarchy (empty controller list), from /proc/self/cgroup.
fn own_path(proc_cgroup: &str, h: &Hierarchy) -> String {
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), Some(c)) => (a, b, c),
            _ => continue,
        };
        let matches = if h.fstype == "cgroup2" {
            ctrls.is_empty()
        } else {
            !ctrls.is_empty() && ctrls.split(',').all(|c| h.options.iter().any(|o| o == c))
        };
        if matches {
            return path.to_string();
        }
    }
    "/".to_string()
}

pub fn mount(
    sys: &dyn Sys,
    root: RawFd,
    dest: &Path,
    opts: &MountOptions,
    new_cgroupns: bool,
) -> Result<()> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("cannot read", "/proc/self/mountinfo", e))?;
    let proc_cgroup = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| Error::io("cannot read", "/proc/self/cgroup", e))?;
    let hs = hierarchies(&mountinfo);
    let ro = opts.flags & MsFlags::MS_RDONLY;
    let flags = opts.flags
        & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RELATIME);
    if let Some(v2) = hs
        .iter()
        .find(|h| h.mountpoint == Path::new("/sys/fs/cgroup"))
    {
        mount_hierarchy(sys, root, dest, v2, &proc_cgroup, flags | ro, new_cgroupns)?;
        let top =
            open_in_root(root, dest, libc::O_PATH).ctx(|| format!("reopen {}", dest.display()))?;
        return super::mount_opts::set_recursive_attrs(top.as_raw_fd(), attrs(flags | ro), 0)
            .ctx(|| format!("set mount flags on {}", dest.display()));
    }
    let target = ensure_in_root(root, dest, Kind::Dir)
        .ctx(|| format!("create cgroup mount point {}", dest.display()))?;

    sys.mount(
        Some(Path::new("tmpfs")),
        &fd_path(target.as_raw_fd()),
        Some("tmpfs"),
        flags,
        Some("mode=755"),
    )
    .ctx(|| format!("mount tmpfs for cgroups on {}", dest.display()))?;
    for h in &hs {
        let name = h
            .mountpoint
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_default();
        mount_hierarchy(
            sys,
            root,
            &dest.join(&name),
            h,
            &proc_cgroup,
            flags | ro,
            new_cgroupns,
        )?;
    }
    // Flags for the whole tree (the tmpfs and every bind in it) in one
    // call, rather than one remount per hierarchy.
    let top =
        open_in_root(root, dest, libc::O_PATH).ctx(|| format!("reopen {}", dest.display()))?;
    super::mount_opts::set_recursive_attrs(top.as_raw_fd(), attrs(flags | ro), 0)
        .ctx(|| format!("set mount flags on {}", dest.display()))
}

/// MS_* flags as mount_setattr attributes.
fn attrs(flags: MsFlags) -> u64 {
    use super::mount_opts::attr;
    [
        (MsFlags::MS_RDONLY, attr::RDONLY),
        (MsFlags::MS_NOSUID, attr::NOSUID),
        (MsFlags::MS_NODEV, attr::NODEV),
        (MsFlags::MS_NOEXEC, attr::NOEXEC),
    ]
    .iter()
    .filter(|(f, _)| flags.contains(*f))
    .fold(0, |acc, (_, a)| acc | a)
}

fn mount_hierarchy(
    sys: &dyn Sys,
    root: RawFd,
    dest: &Path,
    h: &Hierarchy,
    proc_cgroup: &str,
    flags: MsFlags,
    new_cgroupns: bool,
) -> Result<()> {
    let target =
        ensure_in_root(root, dest, Kind::Dir).ctx(|| format!("create {}", dest.display()))?;
    let target = &fd_path(target.as_raw_fd());
    if new_cgroupns {
        let data = h.options.join(",");
        return sys
            .mount(
                Some(Path::new("cgroup")),
                target,
                Some(&h.fstype),
                flags,
                (!data.is_empty()).then_some(data.as_str()),
            )
            .ctx(|| format!("mount {} ({})", h.fstype, h.mountpoint.display()));
    }
    let own = own_path(proc_cgroup, h);
    let src = h.mountpoint.join(own.trim_start_matches('/'));
    // Flags come afterwards, for the whole tree at once (see `mount`).
    sys.mount(Some(&src), target, None, MsFlags::MS_BIND, None)
        .ctx(|| format!("bind cgroup {}", src.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
36 31 0:33 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate";

    #[test]
    fn finds_hybrid_hierarchies() {
        let hs = hierarchies(HYBRID);
        assert_eq!(hs.len(), 4);
        assert_eq!(hs[1].options, vec!["memory"]);
        assert_eq!(hs[2].options, vec!["name=systemd"]);
        assert_eq!(hs[3].fstype, "cgroup2");
        assert!(hs[3].options.is_empty());
        let pc = "4:memory:/a/b\n9:name=systemd:/s\n0::/u\n";
        assert_eq!(own_path(pc, &hs[1]), "/a/b");
        assert_eq!(own_path(pc, &hs[2]), "/s");
        assert_eq!(own_path(pc, &hs[3]), "/u");
        assert_eq!(own_path(pc, &hs[0]), "/");
    }
}

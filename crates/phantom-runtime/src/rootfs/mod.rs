//! The container's root filesystem: the mounts of config.json, `/dev`,
//! pivot_root, masked and read-only paths. Runs in init, inside the new
//! mount namespace, or (a config without a mount namespace, which must
//! inherit the runtime's: config-linux.md "Namespaces") in the host's: then
//! the rootfs is a private bind of its own, entered by chroot, and `delete`
//! unmounts everything under it ([`unmount_under`]).

pub mod cgroupfs;
pub mod copy;
pub mod devices;
pub mod mount_opts;
pub mod safe_path;

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use oci_spec::runtime::{LinuxDevice, Mount};

use crate::error::{Error, Result, SysContext};
use crate::sys::{fd_path, Sys};
use safe_path::{ensure_in_root, open_in_root, Kind};

/// Everything rootfs setup needs, resolved before the fork.
#[derive(Debug, Clone)]
pub struct RootfsPlan {
    pub rootfs: PathBuf,
    pub bundle: PathBuf,
    pub mounts: Vec<Mount>,
    pub devices: Vec<LinuxDevice>,
    pub readonly: bool,
    pub propagation: Option<MsFlags>,
    pub no_pivot: bool,
    /// Inside a new user namespace device nodes cannot be made: bind them.
    pub userns: bool,
    pub new_cgroupns: bool,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    /// No mount namespace of its own: everything happens in the host's.
    pub host_ns: bool,
    /// Bind sources opened without following a symlink in any component
    /// and mounted through that fd: a sandbox's caller-given workspace,
    /// which an earlier sandbox may have laced with symlinks to host dirs.
    pub nofollow_sources: Vec<PathBuf>,
}

impl RootfsPlan {
    fn setup_dev(&self) -> bool {
        self.mounts
            .iter()
            .any(|m| m.destination() == Path::new("/dev"))
    }
}

pub fn rootfs_propagation(s: &str) -> Result<MsFlags> {
    Ok(match s {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        other => {
            return Err(Error::config(
                "linux.rootfsPropagation",
                format!("unknown propagation {other:?}"),
            ))
        }
    })
}

fn open_dir(path: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ctx(|| format!("open {}", path.display()))
}

/// Before pivot_root: propagation, the rootfs bind, every mount, /dev.
pub fn prepare(sys: &dyn Sys, plan: &RootfsPlan) -> Result<()> {
    if plan.host_ns {
        prepare_in_host_ns(sys, plan)?;
    } else {
        prepare_own_ns(sys, plan)?;
    }
    let root = open_dir(&plan.rootfs)?;
    for (i, m) in plan.mounts.iter().enumerate() {
        mount_one(sys, plan, root.as_raw_fd(), i, m)?;
    }
    if plan.setup_dev() {
        devices::default_devices(sys, root.as_raw_fd(), plan.userns)?;
        devices::dev_symlinks(root.as_raw_fd())?;
    }
    for (i, d) in plan.devices.iter().enumerate() {
        devices::create(sys, root.as_raw_fd(), d, plan.userns)
            .map_err(|e| annotate(e, &format!("linux.devices[{i}]")))?;
    }
    Ok(())
}

/// In the host's mount namespace nothing of the host's may change: `/`
/// keeps its propagation. The rootfs gets a bind of its own (so that a
/// read-only root or a propagation applies to it alone), made private at
/// once, so that nothing mounted under it propagates to other namespaces.
fn prepare_in_host_ns(sys: &dyn Sys, plan: &RootfsPlan) -> Result<()> {
    bind_rootfs(sys, plan)?;
    sys.mount(
        None,
        &plan.rootfs,
        None,
        MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        None,
    )
    .ctx(|| format!("make the rootfs bind {} private", plan.rootfs.display()))
}

fn prepare_own_ns(sys: &dyn Sys, plan: &RootfsPlan) -> Result<()> {
    // Nothing we mount may propagate back to the host (config-linux.md
    // "Rootfs Mount Propagation"; rslave unless the config says otherwise).
    // An unbindable `/` (rootfsPropagation unbindable/runbindable) would
    // refuse the rootfs bind below with EINVAL: that one is applied by
    // `enter`, after pivot_root, as runc and crun do; until then rslave.
    let root_flag = plan
        .propagation
        .filter(|p| !p.contains(MsFlags::MS_UNBINDABLE))
        .unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC);
    sys.mount(None, Path::new("/"), None, root_flag, None)
        .ctx(|| "set propagation of / in the container's mount namespace".into())?;
    if root_flag.contains(MsFlags::MS_SHARED) {
        // pivot_root refuses a new root whose parent mount is shared.
        make_parent_private(sys, &plan.rootfs)?;
    }
    bind_rootfs(sys, plan)
}

/// The rootfs bound onto itself: a mount of its own for pivot_root, a
/// read-only root and the propagation to apply to.
fn bind_rootfs(sys: &dyn Sys, plan: &RootfsPlan) -> Result<()> {
    sys.mount(
        Some(&plan.rootfs),
        &plan.rootfs,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .ctx(|| format!("bind rootfs {} onto itself", plan.rootfs.display()))
}

/// Unmount everything at or under `rootfs` in our mount namespace, last
/// mounted first: what a container without a mount namespace of its own
/// left in the host's. Best effort for each mount; returns the mount
/// points that could not be detached.
pub fn unmount_under(sys: &dyn Sys, rootfs: &Path) -> Vec<PathBuf> {
    let mut failed = Vec::new();
    // A mount may hide others (stacked at one point): a few rounds.
    for _ in 0..4 {
        let points = mount_points_under(rootfs);
        if points.is_empty() {
            return Vec::new();
        }
        failed.clear();
        for p in points.iter().rev() {
            if sys.umount2(p, MntFlags::MNT_DETACH).is_err() {
                failed.push(p.clone());
            }
        }
    }
    failed
}

/// [`unmount_under`] in the caller's mount namespace (where a container
/// without one of its own has its mounts), entered first if the
/// CVE-2019-5736 guard runs us in a private one. The process stays there.
pub fn unmount_under_in_host_ns(sys: &dyn Sys, rootfs: &Path) -> Vec<PathBuf> {
    if let Some(fd) = crate::exe_guard::host_mount_ns() {
        if let Err(e) = sys.setns(fd, nix::sched::CloneFlags::CLONE_NEWNS) {
            tracing::warn!("cannot enter the caller's mount namespace to unmount: {e}");
        }
    }
    unmount_under(sys, rootfs)
}

/// Mount points at or under `dir`, in mountinfo order (parents first).
pub fn mount_points_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(crate::cgroups::layout::unescape(p)))
        .filter(|p| p.starts_with(dir))
        .collect()
}

fn annotate(e: Error, field: &str) -> Error {
    match e {
        Error::Sys { what, cause } => Error::sys(format!("{field}: {what}"), cause),
        other => other,
    }
}

fn make_parent_private(sys: &dyn Sys, rootfs: &Path) -> Result<()> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("cannot read", "/proc/self/mountinfo", e))?;
    let parent = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|mp| rootfs.starts_with(mp))
        .max_by_key(|mp| mp.len())
        .unwrap_or("/")
        .to_string();
    sys.mount(None, Path::new(&parent), None, MsFlags::MS_PRIVATE, None)
        .ctx(|| format!("make {parent} private for pivot_root"))
}

fn mount_one(sys: &dyn Sys, plan: &RootfsPlan, root: RawFd, i: usize, m: &Mount) -> Result<()> {
    let field = format!("mounts[{i}]");
    let dest = m.destination();
    let opts = mount_opts::parse(
        &m.options().clone().unwrap_or_default(),
        &format!("{field}.options"),
    )
    .map_err(Error::Unsupported)?;
    let typ = m.typ().clone().unwrap_or_default();
    if opts.bind || typ == "bind" {
        return bind_mount(sys, plan, root, &field, m, &opts);
    }
    if typ == "cgroup" || typ == "cgroup2" {
        return cgroupfs::mount(sys, root, dest, &opts, plan.new_cgroupns)
            .map_err(|e| annotate(e, &field));
    }
    if typ.is_empty() {
        return Err(Error::config(
            format!("{field}.type"),
            "missing, and the options do not say bind",
        ));
    }
    let target = ensure_in_root(root, dest, Kind::Dir)
        .ctx(|| format!("{field}: create destination {}", dest.display()))?;
    // For tmpcopyup: the directory the tmpfs will cover, still readable
    // through this fd once it is covered.
    let covered = if opts.tmpcopyup && typ == "tmpfs" {
        Some(
            open_in_root(root, dest, libc::O_RDONLY | libc::O_DIRECTORY)
                .ctx(|| format!("{field}: open {} to copy it up", dest.display()))?,
        )
    } else {
        None
    };
    let source = m.source().clone().unwrap_or_else(|| PathBuf::from(&typ));
    let data = opts.data_string();
    let res = sys.mount(
        Some(&source),
        &fd_path(target.as_raw_fd()),
        Some(&typ),
        opts.flags,
        data.as_deref(),
    );
    match res {
        Ok(()) => {}
        // In a user namespace without its own network namespace sysfs
        // cannot be mounted, and mqueue needs its ipc namespace: bind the
        // host's instead, read-only where asked (as runc does).
        Err(Errno::EPERM) if plan.userns && (typ == "sysfs" || typ == "mqueue") => {
            let host = if typ == "sysfs" {
                "/sys"
            } else {
                "/dev/mqueue"
            };
            sys.mount(
                Some(Path::new(host)),
                &fd_path(target.as_raw_fd()),
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )
            .ctx(|| format!("{field}: bind {host} onto {}", dest.display()))?;
        }
        Err(e) => {
            return Err(Error::sys(
                format!("{field}: mount {typ} on {}", dest.display()),
                e,
            ))
        }
    }
    if let Some(from) = covered {
        let to = open_in_root(root, dest, libc::O_RDONLY | libc::O_DIRECTORY)
            .ctx(|| format!("{field}: open the new tmpfs at {}", dest.display()))?;
        copy::copy_tree(from.as_raw_fd(), to.as_raw_fd())
            .ctx(|| format!("{field}: tmpcopyup into {}", dest.display()))?;
    }
    after_mount(sys, root, &field, dest, &opts)
}

fn bind_mount(
    sys: &dyn Sys,
    plan: &RootfsPlan,
    root: RawFd,
    field: &str,
    m: &Mount,
    opts: &mount_opts::MountOptions,
) -> Result<()> {
    let dest = m.destination();
    let src = m
        .source()
        .clone()
        .ok_or_else(|| Error::config(format!("{field}.source"), "a bind mount needs a source"))?;
    let src = if src.is_absolute() {
        src
    } else {
        plan.bundle.join(src)
    };
    // Opened here, in our own mount namespace, so that the fd's mount can
    // be the source of the bind (one from another namespace cannot).
    let nofollow = if plan.nofollow_sources.contains(&src) {
        let fd = safe_path::openat2(
            open_dir(Path::new("/"))?.as_raw_fd(),
            &src,
            libc::O_PATH | libc::O_CLOEXEC,
            libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
        )
        .ctx(|| {
            format!(
                "{field}.source: open {} without following symlinks",
                src.display()
            )
        })?;
        Some(fd)
    } else {
        None
    };
    let src = match &nofollow {
        Some(fd) => fd_path(fd.as_raw_fd()),
        None => src,
    };
    let meta = std::fs::metadata(&src)
        .map_err(|e| Error::config(format!("{field}.source"), format!("{}: {e}", src.display())))?;
    let kind = if meta.is_dir() { Kind::Dir } else { Kind::File };
    let target = ensure_in_root(root, dest, kind)
        .ctx(|| format!("{field}: create destination {}", dest.display()))?;
    let rec = if opts.recursive {
        MsFlags::MS_REC
    } else {
        MsFlags::empty()
    };
    sys.mount(
        Some(&src),
        &fd_path(target.as_raw_fd()),
        None,
        MsFlags::MS_BIND | rec,
        None,
    )
    .ctx(|| format!("{field}: bind {} onto {}", src.display(), dest.display()))?;
    let extra = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
    if !extra.is_empty() {
        // A bind mount takes its flags only from a second, remounting call,
        // made on the new mount (re-opened: the old fd is the covered dir).
        let top = open_in_root(root, dest, libc::O_PATH)
            .ctx(|| format!("{field}: reopen {}", dest.display()))?;
        let locked = safe_path::locked_flags(top.as_raw_fd())
            & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC)
            & if plan.userns {
                MsFlags::all()
            } else {
                MsFlags::empty()
            };
        sys.mount(
            None,
            &fd_path(top.as_raw_fd()),
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | extra | locked,
            None,
        )
        .ctx(|| format!("{field}: remount {} with its options", dest.display()))?;
    }
    after_mount(sys, root, field, dest, opts)
}

/// Propagation and recursive attributes, applied to the mount just made.
fn after_mount(
    sys: &dyn Sys,
    root: RawFd,
    field: &str,
    dest: &Path,
    opts: &mount_opts::MountOptions,
) -> Result<()> {
    if opts.propagation.is_empty() && opts.attr_set == 0 && opts.attr_clr == 0 {
        return Ok(());
    }
    let top = open_in_root(root, dest, libc::O_PATH)
        .ctx(|| format!("{field}: reopen {}", dest.display()))?;
    for p in &opts.propagation {
        sys.mount(None, &fd_path(top.as_raw_fd()), None, *p, None)
            .ctx(|| format!("{field}: set propagation of {}", dest.display()))?;
    }
    if opts.attr_set != 0 || opts.attr_clr != 0 {
        mount_opts::set_recursive_attrs(top.as_raw_fd(), opts.attr_set, opts.attr_clr)
            .ctx(|| format!("{field}: set recursive attributes of {}", dest.display()))?;
    }
    Ok(())
}

/// Make the rootfs the container's `/`: pivot_root, or with `--no-pivot`
/// a move of the rootfs onto `/` and a chroot.
pub fn enter(sys: &dyn Sys, plan: &RootfsPlan) -> Result<()> {
    nix::unistd::chdir(&plan.rootfs).ctx(|| format!("chdir {}", plan.rootfs.display()))?;
    if plan.host_ns {
        // pivot_root (or a move onto `/`) would change the root of every
        // process in the host's namespace: a chroot changes only ours.
        sys.chroot(Path::new("."))
            .ctx(|| "chroot into rootfs (no mount namespace)".into())?;
    } else if plan.no_pivot {
        sys.mount(
            Some(&plan.rootfs),
            Path::new("/"),
            None,
            MsFlags::MS_MOVE,
            None,
        )
        .ctx(|| "move rootfs onto / (--no-pivot)".into())?;
        sys.chroot(Path::new("."))
            .ctx(|| "chroot into rootfs".into())?;
    } else {
        // pivot_root(".", ".") stacks the old root under the new one; it is
        // then detached, so no host path stays reachable.
        sys.pivot_root(Path::new("."), Path::new("."))
            .ctx(|| format!("pivot_root into {}", plan.rootfs.display()))?;
        sys.mount(
            None,
            Path::new("."),
            None,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None,
        )
        .ctx(|| "make the old root a slave before detaching it".into())?;
        sys.umount2(Path::new("."), MntFlags::MNT_DETACH)
            .ctx(|| "detach the old root".into())?;
    }
    nix::unistd::chdir("/").ctx(|| "chdir /".into())?;
    Ok(())
}

/// After pivot_root: masked paths, read-only paths, a read-only root,
/// linux.rootfsPropagation.
pub fn finish(sys: &dyn Sys, plan: &RootfsPlan) -> Result<()> {
    let root = open_dir(Path::new("/"))?;
    let root = root.as_raw_fd();
    if !plan.masked_paths.is_empty() {
        // CVE-2025-31133: /dev/null must be the real null device before it
        // is bound over anything, or a planted file would be exposed instead.
        let null = open_in_root(root, Path::new("/dev/null"), libc::O_PATH)
            .ctx(|| "open /dev/null to mask paths".into())?;
        let st = safe_path::fstat(null.as_raw_fd()).ctx(|| "stat /dev/null".into())?;
        if st.st_mode & libc::S_IFMT != libc::S_IFCHR || st.st_rdev != libc::makedev(1, 3) {
            return Err(Error::Init(
                "/dev/null in the container is not the null device (1:3): refusing to mask paths with it".into(),
            ));
        }
        for (i, p) in plan.masked_paths.iter().enumerate() {
            mask(sys, root, null.as_raw_fd(), Path::new(p))
                .map_err(|e| annotate(e, &format!("linux.maskedPaths[{i}]")))?;
        }
    }
    for (i, p) in plan.readonly_paths.iter().enumerate() {
        readonly(sys, root, Path::new(p))
            .map_err(|e| annotate(e, &format!("linux.readonlyPaths[{i}]")))?;
    }
    if plan.readonly {
        let locked = safe_path::locked_flags(root);
        sys.mount(
            None,
            Path::new("/"),
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked,
            None,
        )
        .ctx(|| "remount / read-only (root.readonly)".into())?;
    }
    // Last: an unbindable `/` (recursively: runbindable) would refuse the
    // binds of /dev/null over masked paths and of read-only paths.
    if let Some(p) = plan.propagation {
        sys.mount(None, Path::new("/"), None, p, None)
            .ctx(|| "apply linux.rootfsPropagation to /".into())?;
    }
    Ok(())
}

fn mask(sys: &dyn Sys, root: RawFd, null: RawFd, path: &Path) -> Result<()> {
    let target = match open_in_root(root, path, libc::O_PATH | libc::O_NOFOLLOW) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(Error::sys(format!("open {}", path.display()), e)),
    };
    let st = safe_path::fstat(target.as_raw_fd()).ctx(|| format!("stat {}", path.display()))?;
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        sys.mount(
            Some(Path::new("tmpfs")),
            &fd_path(target.as_raw_fd()),
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            Some("size=0"),
        )
        .ctx(|| format!("mask directory {} with an empty tmpfs", path.display()))
    } else {
        sys.mount(
            Some(&fd_path(null)),
            &fd_path(target.as_raw_fd()),
            None,
            MsFlags::MS_BIND,
            None,
        )
        .ctx(|| format!("mask {} with /dev/null", path.display()))
    }
}

fn readonly(sys: &dyn Sys, root: RawFd, path: &Path) -> Result<()> {
    let target = match open_in_root(root, path, libc::O_PATH | libc::O_NOFOLLOW) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(Error::sys(format!("open {}", path.display()), e)),
    };
    let p = fd_path(target.as_raw_fd());
    sys.mount(Some(&p), &p, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)
        .ctx(|| format!("bind {} onto itself", path.display()))?;
    let top = open_in_root(root, path, libc::O_PATH | libc::O_NOFOLLOW)
        .ctx(|| format!("reopen {}", path.display()))?;
    let locked = safe_path::locked_flags(top.as_raw_fd());
    sys.mount(
        None,
        &fd_path(top.as_raw_fd()),
        None,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked,
        None,
    )
    .ctx(|| format!("remount {} read-only", path.display()))
}

//! `restore`: make a container from a checkpoint image with CRIU, as runc
//! does (libcontainer/criu_linux.go `Restore`):
//!
//! * the id is reserved first, so restoring over an existing container
//!   fails before anything is made;
//! * the image's `phantom-checkpoint.json` must be ours, of this phantom
//!   version, and of this bundle's config (`criu::image`);
//! * the rootfs is bind-mounted onto `<state dir>/criu-root` as CRIU's
//!   root, in a private mount namespace of this process (runc mounts it in
//!   the host's and unmounts it after; ours vanishes with us);
//! * CRIU is moved into the container's cgroup (created and limited from
//!   config.json as by `create`) and told that cgroup is the root of the
//!   image's (`cg_root`), so a container restored under another cgroup
//!   lands in its own;
//! * CRIU recreates the container's namespaces from the image: the pid
//!   namespace is a new one, init is pid 1 in it (a host-pid restore could
//!   collide with the old pid, which this host's PID 1 reaps late);
//! * stdio that was a pipe is given back from ours (`inherit_fd`); a
//!   terminal is a new pty whose master goes to `--console-socket`
//!   (CRIU's orphan-pts-master);
//! * `rst_sibling`: the restored init is our child, as `create` leaves it.
//!
//! A failed restore kills whatever was restored and removes the cgroup and
//! the state directory.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use oci_spec::runtime::LinuxNamespaceType;
use rust_criu::rust_criu_protobuf::rpc::{
    Cgroup_root, Criu_opts, Criu_req_type, Ext_mount_map, Inherit_fd,
};

use super::checkpoint::{bind_mounts, cg_mode, empty_ns_bits, open_dir};
use crate::criu::{self, image, CriuError};
use crate::error::{Error, Result, SysContext};
use crate::state::{rfc3339_now, ContainerState, StateStore, Status, OCI_VERSION};
use crate::sys::{LinuxSys, Sys};

#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    pub id: String,
    pub bundle: PathBuf,
    pub image_path: PathBuf,
    pub work_path: Option<PathBuf>,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub tcp_established: bool,
    pub ext_unix_sk: bool,
    pub shell_job: bool,
    pub file_locks: bool,
    pub manage_cgroups_mode: Option<String>,
    pub empty_ns: Vec<String>,
    pub auto_dedup: bool,
    pub lazy_pages: bool,
    pub criu: Option<PathBuf>,
}

/// Restores the container; returns its state (status `running`) and, when
/// not detached, its exit status once it ends (the container is deleted
/// then, as after `run`).
pub fn restore(store: &StateStore, opts: &RestoreOptions) -> Result<(ContainerState, Option<i32>)> {
    let id = &opts.id;
    crate::state::validate_id(id)?;
    let bundle = crate::spec::bundle_dir(&opts.bundle)?;
    let spec = crate::spec::load(&bundle)?;
    let rootfs = crate::spec::validate(&spec, &bundle)?;
    let desc = image::read(&opts.image_path)?;
    let digest = image::bundle_digest(&bundle)?;
    if digest != desc.config_sha256 {
        return Err(CriuError::Image {
            dir: opts.image_path.clone(),
            what: format!(
                "taken of container {:?} with another config.json than {}/config.json \
                 (sha256 {} vs {digest})",
                desc.id,
                bundle.display(),
                desc.config_sha256
            ),
        }
        .into());
    }
    if desc.terminal && !opts.shell_job {
        return Err(Error::Unsupported(format!(
            "the checkpoint in {} has a terminal: restore it with --shell-job (and --console-socket)",
            opts.image_path.display()
        )));
    }
    let mode = cg_mode(opts.manage_cgroups_mode.as_deref())?;
    let empty_ns = empty_ns_bits(&opts.empty_ns)?;
    let (criu_path, _) = criu::locate_checked(opts.criu.as_deref())?;
    let linux = spec.linux().as_ref().expect("validated");
    let layout = crate::cgroups::Layout::detect()?;
    let cgroup = crate::cgroups::Cgroup::resolve(
        &layout,
        linux.cgroups_path().as_deref().and_then(Path::to_str),
        id,
    )?;
    let mut resources = linux.resources().clone().unwrap_or_default();
    resources.set_devices(Some(crate::cgroups::container_device_rules(linux)));

    let lock = store.reserve(id)?;
    let mut restored: Option<i32> = None;
    let res = (|| -> Result<ContainerState> {
        cgroup.create()?;
        cgroup.apply(&resources)?;
        let console = match &opts.console_socket {
            Some(p) => Some(crate::console::connect(p)?),
            None => None,
        };
        // Every mount needs its mountpoint in the rootfs, which a fresh
        // rootfs (an imported checkpoint, containerd's new snapshot) may
        // lack: runc's prepareCriuRestoreMounts. Those inside a tmpfs of
        // the container come back with its content. Made inside the root,
        // without following its symlinks out of it.
        let root_fd = open_dir(&rootfs)?;
        let mounts = spec.mounts().clone().unwrap_or_default();
        let tmpfs: Vec<&Path> = mounts
            .iter()
            .filter(|m| m.typ().as_deref() == Some("tmpfs"))
            .map(|m| m.destination().as_path())
            .collect();
        let binds = bind_mounts(&spec);
        for m in &mounts {
            let dest = m.destination();
            if tmpfs.iter().any(|t| dest != *t && dest.starts_with(t)) {
                continue;
            }
            let source = binds.iter().find(|(d, _)| d == dest).map(|(_, s)| {
                if s.is_relative() {
                    bundle.join(s)
                } else {
                    s.clone()
                }
            });
            let kind = match source {
                Some(s) if !s.is_dir() => crate::rootfs::safe_path::Kind::File,
                _ => crate::rootfs::safe_path::Kind::Dir,
            };
            crate::rootfs::safe_path::ensure_in_root(root_fd.as_raw_fd(), dest, kind).ctx(
                || {
                    format!(
                        "create mountpoint {} in {}",
                        dest.display(),
                        rootfs.display()
                    )
                },
            )?;
        }
        drop(root_fd);
        let criu_root = store.dir(id).join("criu-root");
        std::fs::create_dir(&criu_root).map_err(|e| Error::io("cannot create", &criu_root, e))?;
        let sys = LinuxSys;
        // Our own mount namespace: the rootfs bind below is seen by CRIU
        // (our child) and by no one else, and goes when we exit.
        sys.unshare(CloneFlags::CLONE_NEWNS)
            .ctx(|| "unshare the mount namespace for CRIU's root".into())?;
        sys.mount(
            None,
            Path::new("/"),
            None,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None,
        )
        .ctx(|| "make / private in CRIU's mount namespace".into())?;
        sys.mount(
            Some(&rootfs),
            &criu_root,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )
        .ctx(|| format!("bind {} onto {}", rootfs.display(), criu_root.display()))?;

        let work = opts
            .work_path
            .clone()
            .unwrap_or_else(|| opts.image_path.clone());
        std::fs::create_dir_all(&work)
            .map_err(|e| Error::io("cannot create work directory", &work, e))?;
        let images_fd = open_dir(&opts.image_path)?;
        let work_fd = open_dir(&work)?;

        let mut o = Criu_opts::new();
        o.set_images_dir_fd(images_fd.as_raw_fd());
        o.set_work_dir_fd(work_fd.as_raw_fd());
        o.set_log_level(4);
        o.set_log_file("restore.log".into());
        o.set_rst_sibling(true);
        o.set_root(criu_root.to_string_lossy().into_owned());
        o.set_manage_cgroups(true);
        if let Some(m) = mode {
            o.set_manage_cgroups_mode(m);
        }
        o.set_notify_scripts(true);
        o.set_evasive_devices(true);
        o.set_shell_job(opts.shell_job);
        o.set_ext_unix_sk(opts.ext_unix_sk);
        o.set_tcp_established(opts.tcp_established);
        o.set_file_locks(opts.file_locks);
        o.set_auto_dedup(opts.auto_dedup);
        o.set_lazy_pages(opts.lazy_pages);
        o.set_orphan_pts_master(console.is_some());
        if empty_ns != 0 {
            o.set_empty_ns(empty_ns);
        }
        for (dest, source) in bind_mounts(&spec) {
            let source = if source.is_relative() {
                bundle.join(source)
            } else {
                source
            };
            let mut m = Ext_mount_map::new();
            m.set_key(dest.to_string_lossy().into_owned());
            m.set_val(source.to_string_lossy().into_owned());
            o.ext_mnt.push(m);
        }
        // The container's view of its cgroup is the new container's cgroup.
        for c in &desc.cgroup_mounts {
            let dir = if c.controller.is_empty() {
                cgroup.unified.clone()
            } else {
                cgroup.v1.get(&c.controller).cloned().or_else(|| {
                    // Co-mounted controllers ("cpu,cpuacct") share a dir.
                    c.controller
                        .split(',')
                        .find_map(|k| cgroup.v1.get(k).cloned())
                })
            };
            let Some(dir) = dir else {
                return Err(CriuError::Image {
                    dir: opts.image_path.clone(),
                    what: format!(
                        "the checkpoint mounts cgroup {:?} at {}, which this host does not have",
                        c.controller, c.mountpoint
                    ),
                }
                .into());
            };
            let mut m = Ext_mount_map::new();
            m.set_key(c.mountpoint.clone());
            m.set_val(dir.to_string_lossy().into_owned());
            o.ext_mnt.push(m);
        }
        // Pipes and external files of the dumped stdio are ours now, fd
        // for fd (runc's descriptors.json and inherit_fd).
        for (fd, link) in desc.stdio.iter().enumerate() {
            if link.starts_with("pipe:") || link.starts_with("file[") {
                let mut i = Inherit_fd::new();
                i.set_key(link.clone());
                i.set_fd(i32::try_from(fd).unwrap_or(0));
                o.inherit_fd.push(i);
            }
        }

        let swrk =
            criu::swrk::Swrk::spawn(&criu_path, &[images_fd.as_raw_fd(), work_fd.as_raw_fd()])?;
        let criu_pid = i32::try_from(swrk.pid()).unwrap_or(0);
        cgroup.add_pid(criu_pid)?;
        o.cg_root = cgroup_roots(criu_pid);

        let mut console_err: Option<String> = None;
        let resp = swrk.call(Criu_req_type::RESTORE, Some(o), |n, fd| {
            if n.script() == "orphan-pts-master" {
                let (Some(sock), Some(master)) = (&console, fd) else {
                    return Err("no pty master to pass on".into());
                };
                if let Err(e) = send_fd(sock, &master) {
                    console_err = Some(e.clone());
                    return Err(e);
                }
            }
            Ok(())
        })?;
        if !resp.success() {
            return Err(CriuError::Failed {
                action: "restore",
                errno: resp.cr_errno(),
                log: criu::log_errors(&work.join("restore.log"), true),
            }
            .into());
        }
        if let Some(e) = console_err {
            return Err(Error::Init(format!("--console-socket: {e}")));
        }
        let pid = resp.restore.pid();
        restored = Some(pid);
        let _ = sys.umount2(&criu_root, MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(&criu_root);

        let st = ContainerState {
            oci_version: OCI_VERSION.to_string(),
            id: id.clone(),
            status: Status::Running,
            pid: Some(pid),
            bundle: bundle.clone(),
            annotations: spec
                .annotations()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            rootfs: rootfs.clone(),
            created: rfc3339_now(),
            owner: super::create::owner(),
            init_start_time: crate::proc_info::start_time(pid),
            own_pid_ns: linux
                .namespaces()
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|n| n.typ() == LinuxNamespaceType::Pid && n.path().is_none()),
            host_mount_ns: false,
            hooks: spec.hooks().clone(),
            process: spec.process().clone(),
            seccomp: linux.seccomp().clone(),
            cgroup: Some(cgroup.clone()),
        };
        store.save(&st)?;
        if let Some(p) = &opts.pid_file {
            super::create::write_pid_file(p, pid)?;
        }
        Ok(st)
    })();
    let st = match res {
        Ok(st) => st,
        Err(e) => {
            if let Some(pid) = restored {
                let pid = nix::unistd::Pid::from_raw(pid);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(pid, None);
            }
            for p in cgroup.pids().unwrap_or_default() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = cgroup.destroy();
            let _ = store.remove(id);
            return Err(e);
        }
    };
    drop(lock);
    if opts.detach {
        return Ok((st, None));
    }
    let pid = st.pid.unwrap_or(0);
    let code = loop {
        match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None) {
            Ok(ws) => {
                if let Some(c) = super::run::exit_status(ws) {
                    break c;
                }
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::sys(format!("wait for restored init {pid}"), e)),
        }
    };
    super::delete(store, id, true)?;
    Ok((st, Some(code)))
}

/// The cgroup of `pid` in each hierarchy (from /proc/PID/cgroup) as CRIU's
/// cgroup roots: one per v1 controller, the cgroup2 one as the default.
fn cgroup_roots(pid: i32) -> Vec<Cgroup_root> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if ctrls.is_empty() {
            let mut r = Cgroup_root::new();
            r.set_path(path.to_string());
            out.push(r);
            continue;
        }
        for c in ctrls.split(',') {
            let mut r = Cgroup_root::new();
            r.set_ctrl(c.to_string());
            r.set_path(path.to_string());
            out.push(r);
        }
    }
    out
}

/// Passes `fd` over the connected console socket (SCM_RIGHTS), as init
/// passes its pty master in `create`.
fn send_fd(sock: &OwnedFd, fd: &OwnedFd) -> std::result::Result<(), String> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let fds = [fd.as_raw_fd()];
    let iov = [std::io::IoSlice::new(b"/dev/ptmx")];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map(|_| ())
    .map_err(|e| format!("cannot send the pty master: {e}"))
}

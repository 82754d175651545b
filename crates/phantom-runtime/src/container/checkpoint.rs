//! `checkpoint`: dump a running container's process tree with CRIU, as
//! runc does (libcontainer/criu_linux.go `Checkpoint`): the container's
//! rootfs is CRIU's root, its bind mounts are external mounts (their
//! sources are the host's, not the image's), cgroups are recorded in
//! `--manage-cgroups-mode`, stdio is remembered for `restore`.
//!
//! Without `--leave-running` (or with `--pre-dump`) the dumped processes
//! are gone afterwards and the container is deleted, as runc does. A
//! failed dump leaves the container running (CRIU resumes the tasks it
//! froze) and removes the image directory if this call created it.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use rust_criu::rust_criu_protobuf::rpc::{Criu_cg_mode, Criu_opts, Criu_req_type, Ext_mount_map};

use crate::criu::{self, image, CriuError};
use crate::error::{words, Error, Result, SysContext};
use crate::state::{StateStore, Status};

#[derive(Debug, Clone, Default)]
pub struct CheckpointOptions {
    pub id: String,
    pub image_path: PathBuf,
    pub work_path: Option<PathBuf>,
    pub parent_path: Option<PathBuf>,
    pub leave_running: bool,
    pub tcp_established: bool,
    pub ext_unix_sk: bool,
    pub shell_job: bool,
    pub file_locks: bool,
    pub link_remap: bool,
    pub manage_cgroups_mode: Option<String>,
    /// Namespaces (runc's names: network, ...) dumped empty.
    pub empty_ns: Vec<String>,
    pub pre_dump: bool,
    pub auto_dedup: bool,
    pub status_fd: Option<i32>,
    /// `--criu PATH`.
    pub criu: Option<PathBuf>,
}

/// CRIU's cgroup mode for runc's `--manage-cgroups-mode` word.
pub(crate) fn cg_mode(word: Option<&str>) -> Result<Option<Criu_cg_mode>> {
    Ok(match word {
        None | Some("") => None,
        Some("soft") => Some(Criu_cg_mode::SOFT),
        Some("full") => Some(Criu_cg_mode::FULL),
        Some("strict") => Some(Criu_cg_mode::STRICT),
        Some("ignore") => Some(Criu_cg_mode::IGNORE),
        Some(other) => {
            return Err(Error::Unsupported(format!(
                "--manage-cgroups-mode {other:?}: expected soft, full, strict or ignore"
            )))
        }
    })
}

/// CLONE_NEW* of runc's namespace names for `--empty-ns`.
pub(crate) fn empty_ns_bits(names: &[String]) -> Result<u32> {
    let mut bits = 0u32;
    for n in names {
        let b = match n.as_str() {
            "network" | "net" => libc::CLONE_NEWNET,
            other => {
                return Err(Error::Unsupported(format!(
                    "--empty-ns {other:?}: CRIU can only leave the network namespace empty"
                )))
            }
        };
        bits |= u32::try_from(b).unwrap_or(0);
    }
    Ok(bits)
}

/// Bind mounts of the spec: CRIU must treat them as external (runc's
/// `addCriuDumpMount`), keyed by their destination.
pub(crate) fn bind_mounts(spec: &oci_spec::runtime::Spec) -> Vec<(PathBuf, PathBuf)> {
    spec.mounts()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter(|m| {
            m.typ().as_deref() == Some("bind")
                || m.options()
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .any(|o| o == "bind" || o == "rbind")
        })
        .map(|m| {
            (
                m.destination().clone(),
                m.source().clone().unwrap_or_default(),
            )
        })
        .collect()
}

/// Mount ids of a mountinfo text.
fn mount_ids(mountinfo: &str) -> Vec<u64> {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .collect()
}

/// What restore needs to give init's stdio `fd` back: CRIU's external key
/// `file[MNT:INODE]` (hex) for a file on a mount outside the container,
/// otherwise the fd's link (`pipe:[N]`, `/dev/null`, ...).
fn stdio_key(pid: i32, fd: i32, mounts_in_ns: &[u64]) -> String {
    let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .map(|l| l.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !link.starts_with('/') {
        return link;
    }
    let mnt = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("mnt_id:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        });
    let ino = std::fs::metadata(format!("/proc/{pid}/fd/{fd}"))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .ok();
    match (mnt, ino) {
        (Some(m), Some(i)) if !mounts_in_ns.contains(&m) => format!("file[{m:x}:{i:x}]"),
        _ => link,
    }
}

pub(crate) fn open_dir(p: &Path) -> Result<OwnedFd> {
    // Not O_CLOEXEC: CRIU inherits it (cleared again for it alone in
    // Swrk::spawn; we set CLOEXEC so nothing else does).
    nix::fcntl::open(
        p,
        nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ctx(|| format!("open {}", p.display()))
}

pub fn checkpoint(store: &StateStore, opts: &CheckpointOptions) -> Result<()> {
    let id = &opts.id;
    let lock = store.lock(id)?;
    let mut st = store.load(id)?;
    store.refresh(&mut st);
    // Paused too, as runc: containerd pauses a task before checkpointing
    // it. CRIU then finds the freezer cgroup frozen and leaves it so.
    if !matches!(st.status, Status::Running | Status::Paused) {
        return Err(Error::wrong_state(
            id,
            st.status,
            words::NOT_RUNNING,
            "only a running or paused container can be checkpointed",
        ));
    }
    let pid = st.pid.expect("a running container has a pid");
    let terminal = st
        .process
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    if terminal && !opts.shell_job {
        return Err(Error::Unsupported(format!(
            "container {id:?} has a terminal (process.terminal): CRIU cannot dump a tty whose \
             master is outside the container; checkpoint it with --shell-job"
        )));
    }
    if st
        .annotations
        .contains_key(phantom_policy::landlock::ANNOTATION)
    {
        // Found on this machine (kernel 6.18, CRIU 4.1.1): CRIU's parasite
        // connects an abstract UNIX socket from inside the task, which a
        // Landlock domain scoped to the sandbox (ABI 6) refuses with EPERM
        // ("Unable to connect a transport socket", compel/src/lib/infect.c).
        // And were it allowed, no kernel interface reads a Landlock domain
        // back: the restored sandbox would run unconfined.
        return Err(Error::Unsupported(format!(
            "container {id:?} is confined by Landlock (annotation {}): CRIU cannot checkpoint it \
             (its parasite's socket is scoped out of the sandbox) nor restore the Landlock domain",
            phantom_policy::landlock::ANNOTATION
        )));
    }
    let mode = cg_mode(opts.manage_cgroups_mode.as_deref())?;
    let empty_ns = empty_ns_bits(&opts.empty_ns)?;
    let (criu_path, criu_version) = criu::locate_checked(opts.criu.as_deref())?;
    let spec = crate::spec::load(&st.bundle)?;
    let digest = image::bundle_digest(&st.bundle)?;

    let created_dir = !opts.image_path.exists();
    std::fs::create_dir_all(&opts.image_path)
        .map_err(|e| Error::io("cannot create image directory", &opts.image_path, e))?;
    let work = opts
        .work_path
        .clone()
        .unwrap_or_else(|| opts.image_path.clone());
    let res = (|| -> Result<()> {
        std::fs::create_dir_all(&work)
            .map_err(|e| Error::io("cannot create work directory", &work, e))?;
        let images_fd = open_dir(&opts.image_path)?;
        let work_fd = open_dir(&work)?;

        let mut o = Criu_opts::new();
        o.set_pid(pid);
        o.set_images_dir_fd(images_fd.as_raw_fd());
        o.set_work_dir_fd(work_fd.as_raw_fd());
        o.set_log_level(4);
        o.set_log_file("dump.log".into());
        o.set_root(st.rootfs.to_string_lossy().into_owned());
        o.set_manage_cgroups(true);
        if let Some(m) = mode {
            o.set_manage_cgroups_mode(m);
        }
        o.set_leave_running(opts.leave_running || opts.pre_dump);
        o.set_shell_job(opts.shell_job);
        o.set_ext_unix_sk(opts.ext_unix_sk);
        o.set_tcp_established(opts.tcp_established);
        o.set_file_locks(opts.file_locks);
        o.set_link_remap(opts.link_remap);
        o.set_auto_dedup(opts.auto_dedup);
        o.set_notify_scripts(false);
        if empty_ns != 0 {
            o.set_empty_ns(empty_ns);
        }
        if let Some(p) = &opts.parent_path {
            o.set_parent_img(p.to_string_lossy().into_owned());
            o.set_track_mem(true);
        }
        if opts.pre_dump {
            o.set_track_mem(true);
        }
        if let Some(fd) = opts.status_fd {
            o.set_status_fd(fd);
        }
        // The freezer (v1's, else the cgroup2 dir's cgroup.freeze): CRIU
        // freezes the whole tree at once (runc's FreezeCgroup) instead of
        // seizing task by task, and a paused container stays frozen.
        let freezer = st
            .cgroup
            .as_ref()
            .and_then(|c| c.v1.get("freezer").or(c.unified.as_ref()));
        if let Some(f) = freezer {
            o.set_freeze_cgroup(f.to_string_lossy().into_owned());
        }
        for (dest, _) in bind_mounts(&spec) {
            let mut m = Ext_mount_map::new();
            let d = dest.to_string_lossy().into_owned();
            m.set_key(d.clone());
            m.set_val(d);
            o.ext_mnt.push(m);
        }
        let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
            .map_err(|e| Error::io("cannot read", format!("/proc/{pid}/mountinfo"), e))?;
        let cgroup_mounts = image::cgroup_mounts(&mountinfo);
        for c in &cgroup_mounts {
            let mut m = Ext_mount_map::new();
            m.set_key(c.mountpoint.clone());
            m.set_val(c.mountpoint.clone());
            o.ext_mnt.push(m);
        }
        let mounts_in_ns = mount_ids(&mountinfo);
        let stdio: Vec<String> = (0..3).map(|fd| stdio_key(pid, fd, &mounts_in_ns)).collect();
        // A file on a mount outside the container (the host's /dev/null
        // or a log file the engine passed) cannot be reopened by path in
        // there: CRIU records it as external and restore hands ours over
        // (CRIU's "file[mnt_id:inode]", as criu-coordinator and CedanaS do).
        for key in stdio.iter().filter(|k| k.starts_with("file[")) {
            o.external.push(key.clone());
        }

        let kind = if opts.pre_dump {
            Criu_req_type::PRE_DUMP
        } else {
            Criu_req_type::DUMP
        };
        let mut keep = vec![images_fd.as_raw_fd(), work_fd.as_raw_fd()];
        keep.extend(opts.status_fd);
        let resp =
            criu::swrk::Swrk::spawn(&criu_path, &keep)?.call(kind, Some(o), |_, _| Ok(()))?;
        if !resp.success() {
            return Err(CriuError::Failed {
                action: if opts.pre_dump { "pre-dump" } else { "dump" },
                errno: resp.cr_errno(),
                log: criu::log_errors(
                    &work.join("dump.log"),
                    !created_dir || opts.work_path.is_some(),
                ),
            }
            .into());
        }
        image::write(
            &opts.image_path,
            &image::Descriptor {
                format: image::FORMAT.into(),
                phantom_version: image::phantom_version().into(),
                id: id.clone(),
                config_sha256: digest,
                criu_version: criu::fmt_version(criu_version),
                stdio,
                terminal,
                created: crate::state::rfc3339_now(),
                cgroup_mounts,
            },
        )?;
        Ok(())
    })();
    if let Err(e) = res {
        // Nothing left behind: our image directory goes, unless the caller
        // keeps the log in a separate --work-path.
        if created_dir {
            let _ = std::fs::remove_dir_all(&opts.image_path);
        }
        if !crate::proc_info::is_alive(pid, st.init_start_time) {
            tracing::warn!("container {id:?}: init is gone after the failed checkpoint");
        }
        return Err(e);
    }
    drop(lock);
    if !opts.leave_running && !opts.pre_dump {
        // runc destroys the checkpointed container; `restore` makes it anew.
        super::delete(store, id, true)?;
    }
    Ok(())
}

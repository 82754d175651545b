//! Which namespaces a container gets: new ones are created by the clone of
//! init (one syscall), ones given by `path` are joined with setns.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

use crate::error::{Error, Result};
use crate::sys::Sys;

pub fn clone_flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// A namespace to join, in the order they are joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Join {
    pub kind: LinuxNamespaceType,
    pub path: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespacePlan {
    /// New namespaces created by the clone of init.
    pub clone_flags: CloneFlags,
    /// A new time namespace is made by unshare in the parent (clone cannot).
    pub new_time: bool,
    /// A pid namespace joined by path: the parent enters it for its
    /// children just before the clone.
    pub join_pid: Option<PathBuf>,
    /// Joined by init after the clone, user namespace first.
    pub join: Vec<Join>,
    /// A user namespace joined by path. New namespaces must then be owned
    /// by it, so they cannot come from the clone: init joins it, unshares
    /// them, and forks once more for a new pid namespace (two stages).
    pub join_user: Option<PathBuf>,
}

impl NamespacePlan {
    pub fn has_new(&self, t: LinuxNamespaceType) -> bool {
        if t == LinuxNamespaceType::Time {
            return self.new_time;
        }
        self.clone_flags.contains(clone_flag(t))
    }

    pub fn has(&self, t: LinuxNamespaceType) -> bool {
        self.has_new(t)
            || self.join.iter().any(|j| j.kind == t)
            || (t == LinuxNamespaceType::Pid && self.join_pid.is_some())
            || (t == LinuxNamespaceType::User && self.join_user.is_some())
    }
}

pub fn plan(namespaces: &[LinuxNamespace]) -> Result<NamespacePlan> {
    let mut p = NamespacePlan {
        clone_flags: CloneFlags::empty(),
        new_time: false,
        join_pid: None,
        join: Vec::new(),
        join_user: None,
    };
    for ns in namespaces {
        match (ns.typ(), ns.path()) {
            (LinuxNamespaceType::Time, None) => p.new_time = true,
            (t, None) => p.clone_flags |= clone_flag(t),
            (LinuxNamespaceType::Pid, Some(path)) => p.join_pid = Some(path.clone()),
            (LinuxNamespaceType::User, Some(path)) => p.join_user = Some(path.clone()),
            (t, Some(path)) => p.join.push(Join {
                kind: t,
                path: path.clone(),
            }),
        }
    }
    // Join the mount namespace last: entering it changes what paths mean.
    p.join.sort_by_key(|j| j.kind == LinuxNamespaceType::Mount);
    Ok(p)
}

pub fn open_ns(path: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| Error::sys(format!("open namespace {}", path.display()), e))
}

/// Stage one of a container in a joined user namespace: join it and the
/// other namespaces given by path, then create the new ones, owned by it.
/// Returns whether a new pid namespace was unshared (the caller must fork
/// for it to take effect).
pub fn enter_joined_user(sys: &dyn Sys, plan: &NamespacePlan, user: &Path) -> Result<bool> {
    let fd = open_ns(user)?;
    sys.setns(fd.as_raw_fd(), CloneFlags::CLONE_NEWUSER)
        .map_err(|e| Error::sys(format!("join user namespace {}", user.display()), e))?;
    join_all(sys, plan)?;
    let new = plan.clone_flags - CloneFlags::CLONE_NEWPID;
    if !new.is_empty() {
        sys.unshare(new).map_err(|e| {
            Error::sys(
                format!("create namespaces {new:?} in the joined user namespace"),
                e,
            )
        })?;
    }
    let new_pid = plan.clone_flags.contains(CloneFlags::CLONE_NEWPID);
    if new_pid {
        sys.unshare(CloneFlags::CLONE_NEWPID)
            .map_err(|e| Error::sys("create a pid namespace in the joined user namespace", e))?;
    }
    Ok(new_pid)
}

/// Join the namespaces given by path (called in init, after the clone).
pub fn join_all(sys: &dyn Sys, plan: &NamespacePlan) -> Result<()> {
    for j in &plan.join {
        let fd = open_ns(&j.path)?;
        sys.setns(fd.as_raw_fd(), clone_flag(j.kind)).map_err(|e| {
            Error::sys(format!("join {} namespace {}", j.kind, j.path.display()), e)
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::{Call, RecordingSys};
    use oci_spec::runtime::LinuxNamespaceBuilder;

    fn ns(t: LinuxNamespaceType, path: Option<&str>) -> LinuxNamespace {
        let mut b = LinuxNamespaceBuilder::default().typ(t);
        if let Some(p) = path {
            b = b.path(p);
        }
        b.build().unwrap()
    }

    #[test]
    fn new_namespaces_become_clone_flags() {
        let p = plan(&[
            ns(LinuxNamespaceType::Pid, None),
            ns(LinuxNamespaceType::Mount, None),
            ns(LinuxNamespaceType::Network, None),
        ])
        .unwrap();
        assert_eq!(
            p.clone_flags,
            CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWNET
        );
        assert!(p.join.is_empty());
        assert!(p.has(LinuxNamespaceType::Pid));
        assert!(!p.has(LinuxNamespaceType::Uts));
    }

    #[test]
    fn joined_mount_namespace_comes_last() {
        let p = plan(&[
            ns(LinuxNamespaceType::Mount, Some("/proc/1/ns/mnt")),
            ns(LinuxNamespaceType::Network, Some("/proc/1/ns/net")),
            ns(LinuxNamespaceType::Pid, Some("/proc/1/ns/pid")),
        ])
        .unwrap();
        let kinds: Vec<_> = p.join.iter().map(|j| j.kind).collect();
        assert_eq!(
            kinds,
            vec![LinuxNamespaceType::Network, LinuxNamespaceType::Mount]
        );
        assert_eq!(p.join_pid, Some(PathBuf::from("/proc/1/ns/pid")));
        assert!(p.clone_flags.is_empty());
    }

    #[test]
    fn join_calls_setns_in_order() {
        // /proc/self/ns/* always exists, so open succeeds without root.
        let p = plan(&[
            ns(LinuxNamespaceType::Mount, Some("/proc/self/ns/mnt")),
            ns(LinuxNamespaceType::Uts, Some("/proc/self/ns/uts")),
        ])
        .unwrap();
        let sys = RecordingSys::default();
        join_all(&sys, &p).unwrap();
        let flags: Vec<_> = sys
            .calls()
            .into_iter()
            .map(|c| match c {
                Call::Setns(_, f) => f,
                other => panic!("unexpected call {other:?}"),
            })
            .collect();
        assert_eq!(
            flags,
            vec![CloneFlags::CLONE_NEWUTS, CloneFlags::CLONE_NEWNS]
        );
    }

    #[test]
    fn user_namespace_by_path_takes_two_stages() {
        let p = plan(&[
            ns(LinuxNamespaceType::User, Some("/proc/1/ns/user")),
            ns(LinuxNamespaceType::Mount, None),
        ])
        .unwrap();
        assert_eq!(p.join_user, Some(PathBuf::from("/proc/1/ns/user")));
        assert!(p.join.is_empty());
        assert!(p.has(LinuxNamespaceType::User) && p.has_new(LinuxNamespaceType::Mount));
    }
}

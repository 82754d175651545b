//! Facts about the host that checks need and the container cannot see.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde_json::{json, Value};

use crate::procfs;

#[derive(Clone, Debug, Default)]
pub struct HostFacts {
    /// The runner's own namespace inodes by OCI type.
    pub ns: BTreeMap<String, u64>,
    /// The runner's capability bounding set.
    pub cap_bounding: u64,
    /// RLIMIT_NOFILE hard limit of the runner.
    pub nofile_hard: u64,
    /// cgroup controllers mounted on the host (v1 hierarchies or v2).
    pub controllers: BTreeMap<String, bool>,
    /// Whether the mount holding the work directory propagates as shared.
    pub work_mount_shared: bool,
    pub apparmor: bool,
    pub selinux: bool,
}

impl HostFacts {
    pub fn probe(work: &Path) -> HostFacts {
        let mut ns = BTreeMap::new();
        for (t, f) in procfs::NAMESPACES {
            if let Some(ino) = procfs::ns_inode(format!("/proc/self/ns/{f}")) {
                ns.insert(t.to_owned(), ino);
            }
        }
        let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
        let cap_bounding = procfs::status_field(&status, "CapBnd")
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .unwrap_or(0);
        let nofile_hard = fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("Max open files"))
                    .and_then(|l| l.split_whitespace().nth(4).map(str::to_owned))
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or(1024);
        let mounts = procfs::mountinfo().unwrap_or_default();
        let mut controllers = BTreeMap::new();
        for c in [
            "cpu",
            "cpuacct",
            "cpuset",
            "memory",
            "devices",
            "freezer",
            "blkio",
            "pids",
            "net_cls",
            "net_prio",
            "hugetlb",
            "perf_event",
            "rdma",
            "misc",
        ] {
            let v1 = mounts
                .iter()
                .any(|m| m.fstype == "cgroup" && m.has_super(c));
            let v2 = mounts.iter().any(|m| {
                m.fstype == "cgroup2"
                    && fs::read_to_string(Path::new(&m.mount_point).join("cgroup.controllers"))
                        .is_ok_and(|t| {
                            t.split_whitespace()
                                .any(|x| x == crate::checker::cgroup::v2_name(c))
                        })
            });
            controllers.insert(c.to_owned(), v1 || v2);
        }
        let work_s = work.to_string_lossy();
        let work_mount_shared = procfs::mount_containing(&mounts, &work_s)
            .is_some_and(|m| m.optional.iter().any(|o| o.starts_with("shared:")));
        let apparmor = fs::read_to_string("/sys/module/apparmor/parameters/enabled")
            .is_ok_and(|t| t.trim() == "Y");
        let selinux = fs::read_to_string("/sys/fs/selinux/enforce").is_ok();
        HostFacts {
            ns,
            cap_bounding,
            nofile_hard,
            controllers,
            work_mount_shared,
            apparmor,
            selinux,
        }
    }

    pub fn has_cap(&self, name: &str) -> bool {
        crate::caps::bit(name).is_some_and(|b| self.cap_bounding & b != 0)
    }

    /// The first of `files` that exists in the root of a v1 hierarchy for
    /// `controller`, or in the v2 root or the runner's own v2 cgroup (on
    /// pure v2 the root has no controller files; the runner's cgroup has
    /// those its parent enables, as a container's will).
    pub fn cgroup_file(&self, controller: &str, files: &[&str]) -> Option<String> {
        let mounts = procfs::mountinfo().unwrap_or_default();
        let own_v2 = fs::read_to_string("/proc/self/cgroup")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("0::").map(str::to_owned));
        for m in &mounts {
            let v2 = m.fstype == "cgroup2";
            if !(v2 || (m.fstype == "cgroup" && m.has_super(controller))) {
                continue;
            }
            let mut dirs = vec![Path::new(&m.mount_point).to_path_buf()];
            if let (true, Some(own)) = (v2, &own_v2) {
                dirs.push(Path::new(&m.mount_point).join(own.trim_start_matches('/')));
            }
            for d in &dirs {
                for f in files {
                    if d.join(f).exists() {
                        return Some((*f).to_owned());
                    }
                }
            }
        }
        None
    }

    /// The host part of the checker's host.json.
    pub fn to_json(&self) -> Value {
        json!({
            "ns_host": self.ns,
            "rootfs_source_shared": self.work_mount_shared,
            "controllers": self.controllers,
        })
    }
}

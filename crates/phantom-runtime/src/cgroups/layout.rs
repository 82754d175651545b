//! Where the cgroup hierarchies are mounted (from /proc/self/mountinfo), and
//! where a container's cgroup lands in each (runc's path rules).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::{CgroupError, Result};

/// cgroup v1 controllers the kernel knows. Any other super option of a
/// `cgroup` mount (`rw`, `xattr`, `clone_children`, `release_agent=`...)
/// is a mount option, except `name=X`, a named hierarchy such as systemd's.
const V1_CONTROLLERS: &[&str] = &[
    "cpuset",
    "cpu",
    "cpuacct",
    "blkio",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "net_prio",
    "perf_event",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
    "debug",
];

/// One mounted hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Where it is mounted, e.g. `/sys/fs/cgroup/memory`.
    pub path: PathBuf,
    /// Which cgroup of the hierarchy sits at `path` (mountinfo field 4):
    /// "/" unless the mount is a bind of a sub-cgroup (as inside a
    /// container without a cgroup namespace).
    pub root: String,
}

impl Mount {
    pub fn at(path: impl Into<PathBuf>) -> Mount {
        Mount {
            path: path.into(),
            root: "/".to_string(),
        }
    }
}

/// The cgroup layout of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// Legacy or hybrid: v1 hierarchies, keyed by controller (`memory`,
    /// `cpu`, ... and named ones as `name=systemd`; co-mounted controllers
    /// share a mount), plus the cgroup2 mount of a hybrid host (typically
    /// `/sys/fs/cgroup/unified`), used for whatever is not mounted as v1.
    V1 {
        mounts: BTreeMap<String, Mount>,
        unified: Option<Mount>,
    },
    /// Pure cgroup v2 (`/sys/fs/cgroup` is cgroup2).
    V2 { mount: Mount },
}

impl Layout {
    /// Detect the layout from /proc/self/mountinfo.
    pub fn detect() -> Result<Layout> {
        let path = Path::new("/proc/self/mountinfo");
        let text = std::fs::read_to_string(path).map_err(|e| CgroupError::NoCgroupfs {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Layout::from_mountinfo(&text)
    }

    /// Parse mountinfo text. Mounts under /sys/fs/cgroup win over others
    /// of the same hierarchy (a test's private cgroup2 mount, say).
    pub fn from_mountinfo(text: &str) -> Result<Layout> {
        let mut v1: Vec<(Vec<String>, Mount)> = Vec::new();
        let mut v2: Vec<Mount> = Vec::new();
        for line in text.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let fields: Vec<&str> = left.split(' ').collect();
            let rfields: Vec<&str> = right.split(' ').collect();
            let (Some(root), Some(mp), Some(fstype), Some(superopts)) = (
                fields.get(3),
                fields.get(4),
                rfields.first(),
                rfields.get(2),
            ) else {
                continue;
            };
            let mount = Mount {
                path: PathBuf::from(unescape(mp)),
                root: unescape(root),
            };
            match *fstype {
                "cgroup" => {
                    let ctrls: Vec<String> = superopts
                        .split(',')
                        .filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name="))
                        .map(str::to_string)
                        .collect();
                    if !ctrls.is_empty() {
                        v1.push((ctrls, mount));
                    }
                }
                "cgroup2" => v2.push(mount),
                _ => {}
            }
        }
        let preferred = |m: &Mount| m.path.starts_with("/sys/fs/cgroup");
        let mut mounts: BTreeMap<String, Mount> = BTreeMap::new();
        for pass_preferred in [true, false] {
            for (ctrls, m) in &v1 {
                if preferred(m) != pass_preferred {
                    continue;
                }
                for c in ctrls {
                    mounts.entry(c.clone()).or_insert_with(|| m.clone());
                }
            }
        }
        let unified = v2
            .iter()
            .find(|m| m.path == Path::new("/sys/fs/cgroup"))
            .or_else(|| v2.iter().find(|m| preferred(m)))
            .or_else(|| v2.first())
            .cloned();
        let has_v1_controller = mounts.keys().any(|k| !k.starts_with("name="));
        if has_v1_controller {
            return Ok(Layout::V1 { mounts, unified });
        }
        match unified {
            Some(mount) => Ok(Layout::V2 { mount }),
            None => Err(CgroupError::NoCgroupfs {
                path: PathBuf::from("/proc/self/mountinfo"),
                reason: "neither a cgroup v1 controller nor cgroup2 is mounted".into(),
            }),
        }
    }

    /// A pure v2 layout on a given cgroup2 mount (tests with a private
    /// mount, or fixture directories).
    pub fn v2_at(path: impl Into<PathBuf>) -> Layout {
        Layout::V2 {
            mount: Mount::at(path),
        }
    }

    /// A v1 layout with each controller mounted at `root/<controller>`,
    /// and an optional cgroup2 mount (fixture directories in tests).
    pub fn v1_at(root: &Path, controllers: &[&str], unified: Option<&Path>) -> Layout {
        Layout::V1 {
            mounts: controllers
                .iter()
                .map(|c| (c.to_string(), Mount::at(root.join(c))))
                .collect(),
            unified: unified.map(Mount::at),
        }
    }
}

/// mountinfo escapes space, tab, newline and backslash as octal.
pub(crate) fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// This process's cgroup per hierarchy, from /proc/self/cgroup text:
/// controller (or `name=X`) → path, and "" → the cgroup2 path.
pub(crate) fn own_cgroups(proc_cgroup: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if ctrls.is_empty() {
            out.insert(String::new(), path.to_string());
        } else {
            for c in ctrls.split(',') {
                out.insert(c.to_string(), path.to_string());
            }
        }
    }
    out
}

/// Check and normalise `linux.cgroupsPath` (or the container id when it
/// is empty, as runc does). Returns the path with single slashes and no
/// "." components; absolute paths keep their leading '/'.
pub(crate) fn normalise(cgroups_path: Option<&str>, id: &str) -> Result<String> {
    let (given, from_id) = match cgroups_path {
        Some(p) if !p.is_empty() => (p, false),
        _ => (id, true),
    };
    let bad = |reason: &str| CgroupError::InvalidPath {
        path: given.to_string(),
        reason: reason.to_string(),
    };
    if given.contains('\0') {
        return Err(bad("contains a NUL byte"));
    }
    if from_id && (given.contains('/') || given.is_empty()) {
        return Err(bad("is empty and the container id cannot name a cgroup"));
    }
    let parts: Vec<&str> = given
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(bad("\"..\" is not allowed in a cgroup path"));
    }
    if parts.is_empty() {
        return Err(bad(
            "names the root cgroup or the runtime's own cgroup, which a container cannot own",
        ));
    }
    let joined = parts.join("/");
    Ok(if given.starts_with('/') {
        format!("/{joined}")
    } else {
        joined
    })
}

/// `mount.path` joined with the hierarchy path `cg` (absolute within the
/// hierarchy), taking the mount's root into account.
pub(crate) fn in_mount(mount: &Mount, cg: &str) -> PathBuf {
    let root = mount.root.trim_end_matches('/');
    let rel = match cg.strip_prefix(root) {
        Some(r) if root.is_empty() || r.is_empty() || r.starts_with('/') => r,
        _ => cg,
    };
    let rel = rel.trim_start_matches('/');
    if rel.is_empty() {
        mount.path.clone()
    } else {
        mount.path.join(rel)
    }
}

/// Parent of a hierarchy path ("/a/b" → "/a", "/a" → "/", "/" → "/").
pub(crate) fn parent(cg: &str) -> String {
    match cg.trim_end_matches('/').rsplit_once('/') {
        Some(("", _)) | None => "/".to_string(),
        Some((p, _)) => p.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
90 22 0:38 / /tmp/x\\040y rw,relatime - cgroup2 none rw
";

    #[test]
    fn detects_hybrid() {
        let l = Layout::from_mountinfo(HYBRID).unwrap();
        let Layout::V1 { mounts, unified } = l else {
            panic!("not v1")
        };
        assert_eq!(
            mounts.keys().collect::<Vec<_>>(),
            ["cpu", "cpuacct", "memory", "name=systemd"]
        );
        assert_eq!(mounts["memory"].path, Path::new("/sys/fs/cgroup/memory"));
        assert_eq!(unified.unwrap().path, Path::new("/sys/fs/cgroup/unified"));
    }

    #[test]
    fn detects_v2_and_comounts() {
        let v2 =
            "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
        assert_eq!(
            Layout::from_mountinfo(v2).unwrap(),
            Layout::v2_at("/sys/fs/cgroup")
        );
        let co = "1 2 0:1 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
        let Layout::V1 { mounts, unified } = Layout::from_mountinfo(co).unwrap() else {
            panic!()
        };
        assert_eq!(mounts["cpu"], mounts["cpuacct"]);
        assert_eq!(unified, None);
        // A named hierarchy alone does not make a v1 host.
        let named = "1 2 0:1 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n\
                     3 2 0:2 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        assert!(matches!(
            Layout::from_mountinfo(named).unwrap(),
            Layout::V2 { .. }
        ));
        assert!(Layout::from_mountinfo("").is_err());
        assert_eq!(unescape("/tmp/x\\040y"), "/tmp/x y");
    }

    #[test]
    fn own_paths() {
        let own = own_cgroups("4:memory:/a/b\n2:cpu,cpuacct:/\n9:name=systemd:/s\n0::/u\n");
        assert_eq!(own["memory"], "/a/b");
        assert_eq!(own["cpuacct"], "/");
        assert_eq!(own["name=systemd"], "/s");
        assert_eq!(own[""], "/u");
    }

    #[test]
    fn normalises_and_rejects() {
        assert_eq!(normalise(Some("/a//b/./c/"), "id").unwrap(), "/a/b/c");
        assert_eq!(normalise(Some("a/b"), "id").unwrap(), "a/b");
        assert_eq!(normalise(None, "id").unwrap(), "id");
        assert_eq!(normalise(Some(""), "id").unwrap(), "id");
        for bad in ["/a/../b", "..", "a/..", "/", ".", "//"] {
            let e = normalise(Some(bad), "id").unwrap_err().to_string();
            assert!(e.starts_with("linux.cgroupsPath"), "{e}");
        }
        assert!(normalise(None, "a/b").is_err());
        assert!(normalise(None, "..").is_err());
    }

    #[test]
    fn mount_root_is_stripped() {
        let m = Mount {
            path: PathBuf::from("/sys/fs/cgroup/memory"),
            root: "/docker/abc".into(),
        };
        assert_eq!(
            in_mount(&m, "/docker/abc/x"),
            Path::new("/sys/fs/cgroup/memory/x")
        );
        assert_eq!(
            in_mount(&m, "/docker/abcd"),
            Path::new("/sys/fs/cgroup/memory/docker/abcd")
        );
        assert_eq!(in_mount(&Mount::at("/m"), "/"), Path::new("/m"));
        assert_eq!(parent("/a/b"), "/a");
        assert_eq!(parent("/a"), "/");
        assert_eq!(parent("/"), "/");
    }
}

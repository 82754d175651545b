//! Small readers for `/proc` files, shared by the runner and the checker.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// One line of `/proc/PID/mountinfo`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MountInfo {
    pub id: u32,
    pub parent: u32,
    /// Root of the mount within its filesystem.
    pub root: String,
    pub mount_point: String,
    /// Per-mount options (`rw,nosuid,nodev,relatime`).
    pub options: Vec<String>,
    /// Optional fields (`shared:N`, `master:N`, `unbindable`, ...).
    pub optional: Vec<String>,
    pub fstype: String,
    pub source: String,
    /// Per-superblock options (`rw,size=65536k,mode=755`).
    pub super_options: Vec<String>,
}

impl MountInfo {
    pub fn has_option(&self, o: &str) -> bool {
        self.options.iter().any(|x| x == o)
    }

    /// The value of a `key=value` superblock option.
    pub fn super_option(&self, key: &str) -> Option<&str> {
        self.super_options
            .iter()
            .find_map(|o| o.strip_prefix(key)?.strip_prefix('='))
    }

    /// The value of a superblock flag or option named `key` (`ro`, `memory`).
    pub fn has_super(&self, key: &str) -> bool {
        self.super_options.iter().any(|o| o == key)
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
pub fn unescape(s: &str) -> String {
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

/// Parses mountinfo text; malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let f: Vec<&str> = pre.split(' ').collect();
            let g: Vec<&str> = post.split(' ').collect();
            if f.len() < 6 || g.len() < 3 {
                return None;
            }
            Some(MountInfo {
                id: f[0].parse().ok()?,
                parent: f[1].parse().ok()?,
                root: unescape(f[3]),
                mount_point: unescape(f[4]),
                options: f[5].split(',').map(str::to_owned).collect(),
                optional: f[6..].iter().map(|s| (*s).to_owned()).collect(),
                fstype: g[0].to_owned(),
                source: unescape(g[1]),
                super_options: g[2].split(',').map(str::to_owned).collect(),
            })
        })
        .collect()
}

/// This process's mount table.
pub fn mountinfo() -> Result<Vec<MountInfo>, String> {
    fs::read_to_string("/proc/self/mountinfo")
        .map(|t| parse_mountinfo(&t))
        .map_err(|e| format!("read /proc/self/mountinfo: {e}"))
}

/// The visible (last mounted) mount whose mount point is exactly `path`.
pub fn mount_at<'a>(mounts: &'a [MountInfo], path: &str) -> Option<&'a MountInfo> {
    let path = normalize(path);
    mounts.iter().rev().find(|m| m.mount_point == path)
}

/// The visible mount that contains `path` (longest mount point prefix).
pub fn mount_containing<'a>(mounts: &'a [MountInfo], path: &str) -> Option<&'a MountInfo> {
    let path = normalize(path);
    let mut best: Option<&MountInfo> = None;
    for m in mounts {
        let inside = m.mount_point == "/"
            || path == m.mount_point
            || path.starts_with(&format!("{}/", m.mount_point));
        if inside && best.is_none_or(|b| m.mount_point.len() >= b.mount_point.len()) {
            best = Some(m);
        }
    }
    best
}

/// `/a/b/` -> `/a/b`; `//a` -> `/a`.
pub fn normalize(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// A `Name:\tvalue` field of `/proc/PID/status` text.
pub fn status_field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// The inode of a namespace file (`/proc/PID/ns/net`), following the link.
pub fn ns_inode(path: impl AsRef<Path>) -> Option<u64> {
    fs::metadata(path).ok().map(|m| m.ino())
}

/// The namespace types of config-linux.md with their `/proc/PID/ns` names.
pub const NAMESPACES: [(&str, &str); 8] = [
    ("pid", "pid"),
    ("network", "net"),
    ("mount", "mnt"),
    ("ipc", "ipc"),
    ("uts", "uts"),
    ("user", "user"),
    ("cgroup", "cgroup"),
    ("time", "time"),
];

/// The `/proc/PID/ns` file name of an OCI namespace type.
pub fn ns_file(oci_type: &str) -> Option<&'static str> {
    NAMESPACES
        .iter()
        .find(|(t, _)| *t == oci_type)
        .map(|(_, f)| *f)
}

/// Splits a `dev_t` as glibc's `major()`/`minor()` do.
pub fn major_minor(dev: u64) -> (u64, u64) {
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0xff);
    (major, minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
40 27 0:40 / /a\\040b ro,nosuid master:3 - tmpfs tmpfs ro,mode=755
41 27 0:41 / /proc/sys ro,relatime - proc proc rw
";

    #[test]
    fn parses_mountinfo() {
        let m = parse_mountinfo(SAMPLE);
        assert_eq!(m.len(), 4);
        assert_eq!(m[1].optional, vec!["shared:1".to_owned()]);
        assert_eq!(m[2].mount_point, "/a b");
        assert!(m[2].has_option("nosuid"));
        assert_eq!(m[2].super_option("mode"), Some("755"));
        assert_eq!(mount_at(&m, "/a b/").map(|x| x.id), Some(40));
        assert_eq!(
            mount_containing(&m, "/proc/sys/kernel").map(|x| x.id),
            Some(41)
        );
        assert_eq!(mount_containing(&m, "/procx").map(|x| x.id), Some(27));
    }

    #[test]
    fn splits_dev() {
        // makedev(136, 3) and makedev(259, 65536)
        assert_eq!(major_minor(0x8803), (136, 3));
        let (major, minor) = (259u64, 65536u64);
        let dev = ((major & 0xfff) << 8) | (minor & 0xff) | ((minor & !0xff) << 12);
        assert_eq!(major_minor(dev), (259, 65536));
    }
}

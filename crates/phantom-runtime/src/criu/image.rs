//! The descriptor phantom writes into a checkpoint's image directory,
//! `phantom-checkpoint.json`, so that `restore` can tell its own images
//! from a foreign, corrupt or incompatible directory before CRIU runs.
//! It also keeps what CRIU does not: the container's stdio at dump time
//! (runc keeps the same in `descriptors.json`), to map pipes back with
//! `inherit_fd`.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::CriuError;

pub const FILE: &str = "phantom-checkpoint.json";
pub const FORMAT: &str = "phantom-checkpoint/1";
/// Files CRIU writes into every dump (criu/image-desc.c): a directory
/// without them holds no checkpoint.
pub const REQUIRED: &[&str] = &["inventory.img", "pstree.img"];

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Descriptor {
    pub format: String,
    pub phantom_version: String,
    pub id: String,
    /// sha256 of config.json (as JSON, without `linux.cgroupsPath`).
    pub config_sha256: String,
    pub criu_version: String,
    /// Init's fds 0, 1, 2 at dump time: their link (`pipe:[N]`), or
    /// CRIU's external key `file[MNT:INODE]` for one outside the container.
    pub stdio: Vec<String>,
    pub terminal: bool,
    pub created: String,
    /// The container's cgroupfs mounts (of its own cgroup, so external to
    /// CRIU): restore binds the new container's cgroup there.
    #[serde(default)]
    pub cgroup_mounts: Vec<CgroupMount>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CgroupMount {
    /// Where, inside the container (`/sys/fs/cgroup/cpu`).
    pub mountpoint: String,
    /// The v1 controller (`cpu`, `name=systemd`); empty for cgroup2.
    pub controller: String,
}

/// cgroupfs mounts of a subtree in a mountinfo text (as a container sees
/// its own cgroup): CRIU finds no root mount for them in the container and
/// refuses them ("doesn't have a proper root mount") unless they are
/// external, as runc makes them (`addCriuDumpMount` of each cgroup bind).
pub fn cgroup_mounts(mountinfo: &str) -> Vec<CgroupMount> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        // proc(5): ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPER
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 5 || r.len() < 3 {
            continue;
        }
        let (root, mountpoint, fstype, sup) = (l[3], l[4], r[0], r[2]);
        if root == "/" {
            continue;
        }
        let controller = match fstype {
            "cgroup2" => String::new(),
            "cgroup" => sup
                .split(',')
                .filter(|o| !matches!(*o, "rw" | "ro") && !o.starts_with("release_agent"))
                .collect::<Vec<_>>()
                .join(","),
            _ => continue,
        };
        out.push(CgroupMount {
            mountpoint: mountpoint.to_string(),
            controller,
        });
    }
    out
}

pub fn phantom_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// The digest a config is checked by: of the parts of config.json the
/// dumped processes depend on (the program, its cwd and terminal, the
/// namespace types, the mount destinations), as JSON with keys sorted.
/// The rest may change between checkpoint and restore: engines write a
/// new config.json for an imported checkpoint (Podman's `restore
/// --import`: new mount sources, annotations, cgroupsPath, netns path).
pub fn config_digest(config_json: &serde_json::Value) -> String {
    fn canonical(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String(k.clone()).to_string());
                    out.push(':');
                    canonical(&m[k], out);
                }
                out.push('}');
            }
            serde_json::Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    canonical(x, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let c = config_json;
    let mut dests: Vec<&serde_json::Value> = c["mounts"]
        .as_array()
        .map(|m| m.iter().map(|m| &m["destination"]).collect())
        .unwrap_or_default();
    dests.sort_by_key(|d| d.to_string());
    let mut types: Vec<&serde_json::Value> = c["linux"]["namespaces"]
        .as_array()
        .map(|n| n.iter().map(|n| &n["type"]).collect())
        .unwrap_or_default();
    types.sort_by_key(|t| t.to_string());
    let v = serde_json::json!({
        "args": c["process"]["args"],
        "cwd": c["process"]["cwd"],
        "terminal": c["process"]["terminal"],
        "namespaces": types,
        "mounts": dests,
    });
    let mut text = String::new();
    canonical(&v, &mut text);
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// [`config_digest`] of `bundle`/config.json as it is on disk.
pub fn bundle_digest(bundle: &Path) -> Result<String, CriuError> {
    let path = bundle.join("config.json");
    let bad = |what: String| CriuError::Image {
        dir: bundle.to_path_buf(),
        what,
    };
    let bytes = std::fs::read(&path).map_err(|e| bad(format!("cannot read config.json: {e}")))?;
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("config.json: {e}")))?;
    Ok(config_digest(&v))
}

pub fn write(dir: &Path, d: &Descriptor) -> Result<(), CriuError> {
    let text = serde_json::to_vec_pretty(d).expect("descriptor serialises");
    std::fs::write(dir.join(FILE), text).map_err(|e| CriuError::Image {
        dir: dir.to_path_buf(),
        what: format!("cannot write {FILE}: {e}"),
    })
}

/// Reads and checks the descriptor of `dir`: it must exist, parse, be of
/// this phantom version, and sit next to CRIU's own images.
pub fn read(dir: &Path) -> Result<Descriptor, CriuError> {
    let bad = |what: String| CriuError::Image {
        dir: dir.to_path_buf(),
        what,
    };
    if !dir.is_dir() {
        return Err(bad("does not exist or is not a directory".into()));
    }
    let text = match std::fs::read(dir.join(FILE)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(bad(format!(
                "no {FILE}: not a checkpoint made by phantom (or an incomplete one)"
            )))
        }
        Err(e) => return Err(bad(format!("cannot read {FILE}: {e}"))),
    };
    let d: Descriptor =
        serde_json::from_slice(&text).map_err(|e| bad(format!("{FILE} is corrupt: {e}")))?;
    if d.format != FORMAT {
        return Err(bad(format!(
            "{FILE}: format {:?}, phantom reads {FORMAT:?}",
            d.format
        )));
    }
    if d.phantom_version != phantom_version() {
        return Err(bad(format!(
            "made by phantom {}, this is phantom {}: restore it with that version",
            d.phantom_version,
            phantom_version()
        )));
    }
    for f in REQUIRED {
        if !dir.join(f).is_file() {
            return Err(bad(format!(
                "{f} is missing: the CRIU images are incomplete"
            )));
        }
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc() -> Descriptor {
        Descriptor {
            format: FORMAT.into(),
            phantom_version: phantom_version().into(),
            id: "c".into(),
            config_sha256: "00".into(),
            criu_version: "4.1.1".into(),
            stdio: vec![],
            terminal: false,
            created: String::new(),
            cgroup_mounts: vec![],
        }
    }

    #[test]
    fn digest_covers_what_the_processes_depend_on() {
        let a = serde_json::json!({"process": {"args": ["sh"]}, "linux": {"cgroupsPath": "/a"},
                                   "mounts": [{"destination": "/a", "source": "/x"}]});
        let b = serde_json::json!({"process": {"args": ["sh"]}, "linux": {"cgroupsPath": "/b"},
                                   "mounts": [{"destination": "/a", "source": "/y"}]});
        let c = serde_json::json!({"process": {"args": ["sh", "-c"]}});
        let d = serde_json::json!({"process": {"args": ["sh"]}, "mounts": [{"destination": "/b"}]});
        assert_ne!(config_digest(&a), config_digest(&d));
        assert_eq!(config_digest(&a), config_digest(&b));
        assert_ne!(config_digest(&a), config_digest(&c));
    }

    #[test]
    fn cgroup_mounts_of_mountinfo() {
        let text = "100 99 0:47 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs rw,mode=755\n\
                    101 100 0:29 /p/c /sys/fs/cgroup/cpu ro,nosuid - cgroup cgroup rw,cpu\n\
                    109 100 0:37 /p/c /sys/fs/cgroup/systemd ro shared:5 - cgroup cgroup rw,name=systemd\n\
                    110 100 0:38 /p/c /sys/fs/cgroup/unified ro - cgroup2 cgroup2 rw\n\
                    111 100 0:38 / /host/cg ro - cgroup2 cgroup2 rw\n";
        let m = cgroup_mounts(text);
        let pairs: Vec<(&str, &str)> = m
            .iter()
            .map(|c| (c.mountpoint.as_str(), c.controller.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("/sys/fs/cgroup/cpu", "cpu"),
                ("/sys/fs/cgroup/systemd", "name=systemd"),
                ("/sys/fs/cgroup/unified", "")
            ]
        );
    }

    #[test]
    fn read_checks_everything() {
        let t = tempfile::tempdir().unwrap();
        let err = read(t.path()).unwrap_err().to_string();
        assert!(err.contains("not a checkpoint made by phantom"), "{err}");
        std::fs::write(t.path().join(FILE), b"{ not json").unwrap();
        assert!(read(t.path()).unwrap_err().to_string().contains("corrupt"));
        let mut d = desc();
        d.phantom_version = "0.0.0-other".into();
        write(t.path(), &d).unwrap();
        assert!(read(t.path())
            .unwrap_err()
            .to_string()
            .contains("made by phantom 0.0.0-other"));
        write(t.path(), &desc()).unwrap();
        assert!(read(t.path())
            .unwrap_err()
            .to_string()
            .contains("inventory.img is missing"));
        for f in REQUIRED {
            std::fs::write(t.path().join(f), b"").unwrap();
        }
        assert_eq!(read(t.path()).unwrap(), desc());
    }
}

//! The state store: `<root>/<id>/state.json`, written atomically (temp file
//! and rename), with an `flock` on the container directory so concurrent
//! commands on one container run one after the other.
//!
//! The stored status is only a hint: the real status is derived from the
//! init process (alive, with the start time we recorded) and the exec fifo
//! (present until `start`), so `state` is right even after init was killed
//! from outside.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const DEFAULT_ROOT: &str = "/run/phantom";
pub const STATE_FILE: &str = "state.json";
pub const EXEC_FIFO: &str = "exec.fifo";
pub const OCI_VERSION: &str = "1.2.0";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What phantom keeps about a container. The first fields are the OCI state
/// (runtime.md "State"); the rest is phantom's own bookkeeping.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerState {
    pub oci_version: String,
    pub id: String,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    pub bundle: PathBuf,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,

    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    /// Start time of init (field 22 of /proc/PID/stat), to tell our init
    /// from an unrelated process that reused its pid.
    #[serde(default)]
    pub init_start_time: Option<u64>,
    /// Whether the container has a pid namespace of its own; then killing
    /// init kills every process in it.
    #[serde(default)]
    pub own_pid_ns: bool,
    /// The container has no mount namespace of its own: its mounts sit
    /// under `rootfs` in the runtime's, and `delete` unmounts them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub host_mount_ns: bool,
    /// The config's hooks, for poststart (in `start`) and poststop (in
    /// `delete`), which run when config.json may have changed or be gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<oci_spec::runtime::Hooks>,
    /// The container's `process`, the defaults of `exec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<oci_spec::runtime::Process>,
    /// `linux.seccomp`: `exec` joins the container under the same filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<oci_spec::runtime::LinuxSeccomp>,
    /// The container's cgroup directories (pause, kill --all, ps, update,
    /// events and delete reopen them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<crate::cgroups::Cgroup>,
}

impl ContainerState {
    /// The state as the OCI spec defines it (what `phantom state` prints).
    /// The OCI state with `status` as given: what hooks read on stdin.
    pub fn hook_state(&self, status: Status) -> Vec<u8> {
        let mut v = self.oci_json();
        v["status"] = serde_json::json!(status);
        serde_json::to_vec(&v).expect("state serialises")
    }

    pub fn oci_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "ociVersion": self.oci_version,
            "id": self.id,
            "status": self.status,
            "pid": self.pid.unwrap_or(0),
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "owner": self.owner,
        });
        if !self.annotations.is_empty() {
            v["annotations"] = serde_json::to_value(&self.annotations).unwrap_or_default();
        }
        v
    }
}

/// Check an id the way runc does: it becomes a directory name under root.
pub fn validate_id(id: &str) -> Result<()> {
    let reason = if id.is_empty() {
        "it is empty"
    } else if id == "." || id == ".." {
        "it is a relative path component"
    } else if id.len() > 1024 {
        "it is longer than 1024 bytes"
    } else if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b))
    {
        "only letters, digits, '_', '+', '-' and '.' are allowed"
    } else {
        return Ok(());
    };
    Err(Error::InvalidId {
        id: id.to_string(),
        reason,
    })
}

#[derive(Debug, Clone)]
pub struct StateStore {
    root: PathBuf,
}

/// Holds the per-container `flock` until dropped.
#[derive(Debug)]
pub struct Lock {
    _fd: OwnedFd,
}

impl StateStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StateStore { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    pub fn fifo_path(&self, id: &str) -> PathBuf {
        self.dir(id).join(EXEC_FIFO)
    }

    fn ensure_root(&self) -> Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(|e| Error::io("cannot create state root", &self.root, e))
    }

    /// Reserve `id`: create its directory (atomically: a second `create` of
    /// the same id fails here) and lock it.
    pub fn reserve(&self, id: &str) -> Result<Lock> {
        validate_id(id)?;
        self.ensure_root()?;
        let dir = self.dir(id);
        // 0711: the container's init may run as another user and must still
        // reach exec.fifo through its directory fd.
        match fs::DirBuilder::new().mode(0o711).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::AlreadyExists(id.to_string()))
            }
            Err(e) => return Err(Error::io("cannot create state directory", &dir, e)),
        }
        self.lock_dir(id, &dir)
    }

    /// Lock an existing container.
    pub fn lock(&self, id: &str) -> Result<Lock> {
        validate_id(id)?;
        let dir = self.dir(id);
        if !dir.join(STATE_FILE).exists() {
            return Err(Error::NotFound(id.to_string()));
        }
        self.lock_dir(id, &dir)
    }

    /// Lock a container's directory whether or not it has a state.json
    /// yet, without waiting: None while another command holds it (a
    /// `create` holds it from its reservation to its end).
    pub fn try_lock_dir(&self, id: &str) -> Result<Option<Lock>> {
        validate_id(id)?;
        let dir = self.dir(id);
        let f = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&dir)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::NotFound(id.to_string()),
                _ => Error::io("cannot open state directory", &dir, e),
            })?;
        // SAFETY: flock on a descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Ok(None);
            }
            return Err(Error::io("cannot lock state directory", &dir, e));
        }
        Ok(Some(Lock { _fd: f.into() }))
    }

    fn lock_dir(&self, id: &str, dir: &Path) -> Result<Lock> {
        let f = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(dir)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::NotFound(id.to_string()),
                _ => Error::io("cannot open state directory", dir, e),
            })?;
        // SAFETY: flock on a descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            return Err(Error::io(
                "cannot lock state directory",
                dir,
                std::io::Error::last_os_error(),
            ));
        }
        Ok(Lock { _fd: f.into() })
    }

    pub fn load(&self, id: &str) -> Result<ContainerState> {
        validate_id(id)?;
        let path = self.dir(id).join(STATE_FILE);
        let data = fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound(id.to_string()),
            _ => Error::io("cannot read state", &path, e),
        })?;
        serde_json::from_slice(&data).map_err(|e| {
            Error::io(
                "corrupt state file",
                &path,
                std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            )
        })
    }

    /// Write state.json atomically: a reader sees the old or the new file,
    /// never a torn one.
    pub fn save(&self, state: &ContainerState) -> Result<()> {
        let dir = self.dir(&state.id);
        let tmp = dir.join(".state.json.tmp");
        let path = dir.join(STATE_FILE);
        let data = serde_json::to_vec(state).expect("state serialises");
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(|e| Error::io("cannot write state", &tmp, e))?;
        f.write_all(&data)
            .map_err(|e| Error::io("cannot write state", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| Error::io("cannot write state", &path, e))
    }

    /// Remove a container's directory and everything in it.
    pub fn remove(&self, id: &str) -> Result<()> {
        let dir = self.dir(id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("cannot remove state directory", &dir, e)),
        }
    }

    /// Ids of every container under root, sorted.
    pub fn ids(&self) -> Result<Vec<String>> {
        let rd = match fs::read_dir(&self.root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("cannot read state root", &self.root, e)),
        };
        let mut ids: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join(STATE_FILE).exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Derive the real status of a container from its init process and
    /// exec fifo, updating `state.status` (runtime.md "State").
    pub fn refresh(&self, state: &mut ContainerState) {
        let alive = state
            .pid
            .is_some_and(|pid| crate::proc_info::is_alive(pid, state.init_start_time));
        state.status = match (state.status, alive) {
            (Status::Creating, _) if state.pid.is_none() => Status::Creating,
            (Status::Creating, true) => Status::Creating,
            (_, false) => Status::Stopped,
            (_, true) => {
                if state.cgroup.as_ref().is_some_and(|c| c.is_frozen()) {
                    Status::Paused
                } else if self.fifo_path(&state.id).exists() {
                    Status::Created
                } else {
                    Status::Running
                }
            }
        };
    }
}

/// RFC 3339 time in UTC with nanoseconds, as runc prints `created`.
pub fn rfc3339_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(now.as_secs() as i64, now.subsec_nanos())
}

pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(validate_id("abc-1.2_x+y").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "../x"] {
            assert!(validate_id(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn rfc3339_known_values() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(rfc3339(1_795_000_000, 0), "2026-11-18T11:06:40.000000000Z");
    }

    #[test]
    fn save_load_and_reserve() {
        let tmp = tempfile::tempdir().unwrap();
        let store = StateStore::new(tmp.path().join("root"));
        let _lock = store.reserve("c1").unwrap();
        assert!(matches!(store.reserve("c1"), Err(Error::AlreadyExists(_))));
        let st = ContainerState {
            oci_version: OCI_VERSION.into(),
            id: "c1".into(),
            status: Status::Creating,
            pid: None,
            bundle: "/b".into(),
            annotations: BTreeMap::new(),
            rootfs: "/b/rootfs".into(),
            created: rfc3339_now(),
            owner: "root".into(),
            init_start_time: None,
            own_pid_ns: true,
            host_mount_ns: false,
            hooks: None,
            process: None,
            seccomp: None,
            cgroup: None,
        };
        store.save(&st).unwrap();
        assert_eq!(store.ids().unwrap(), vec!["c1".to_string()]);
        let mut back = store.load("c1").unwrap();
        store.refresh(&mut back);
        assert_eq!(back.status, Status::Creating);
        back.pid = Some(i32::MAX);
        store.refresh(&mut back);
        assert_eq!(back.status, Status::Stopped);
        store.remove("c1").unwrap();
        assert!(matches!(store.load("c1"), Err(Error::NotFound(_))));
    }
}

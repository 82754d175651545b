//! Errors of the cgroup manager. Every variant names the config field (or,
//! for lifecycle calls, the operation such as `pause`) and the cgroup path
//! or file that failed, and keeps the underlying cause.

use std::io;
use std::path::PathBuf;

pub type Result<T, E = CgroupError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// `linux.cgroupsPath` (or the default built from the container id) is
    /// not acceptable.
    #[error("linux.cgroupsPath {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },

    /// No usable cgroup filesystem in /proc/self/mountinfo.
    #[error("cgroups: {} lists no usable cgroup filesystem: {reason}", path.display())]
    NoCgroupfs { path: PathBuf, reason: String },

    #[error("{field}: write {value:?} to {}: {source}{hint}", path.display())]
    Write {
        field: String,
        path: PathBuf,
        value: String,
        /// Extra explanation, empty or starting with "; ".
        hint: String,
        #[source]
        source: io::Error,
    },

    #[error("{field}: read {}: {source}", path.display())]
    Read {
        field: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// mkdir, rmdir, open of a cgroup directory.
    #[error("{field}: {what} {}: {source}", path.display())]
    Io {
        field: String,
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A value in config.json that no cgroup file can take.
    #[error("{field}: {reason} (for {})", path.display())]
    Invalid {
        field: String,
        path: PathBuf,
        reason: String,
    },

    /// The setting needs a controller or file that this host does not have.
    #[error("{field}: not supported here: {reason} ({})", path.display())]
    Unsupported {
        field: String,
        path: PathBuf,
        reason: String,
    },

    /// A bpf(2) call for the cgroup v2 device filter failed.
    #[error("{field}: {what} for {}: {source}{log}", path.display())]
    Bpf {
        field: String,
        what: &'static str,
        path: PathBuf,
        /// The verifier log, empty or starting with "; ".
        log: String,
        #[source]
        source: nix::errno::Errno,
    },

    /// systemd refused or failed a unit operation (systemd cgroup driver).
    #[error("{op} {unit}: {reason}")]
    Systemd {
        op: String,
        unit: String,
        reason: String,
    },

    /// Freezing did not settle.
    #[error("{field}: {} did not reach {want} within {waited_ms} ms (last state {last:?})", path.display())]
    Timeout {
        field: String,
        path: PathBuf,
        want: &'static str,
        last: String,
        waited_ms: u64,
    },
}

impl CgroupError {
    pub(crate) fn invalid(
        field: impl Into<String>,
        path: impl Into<PathBuf>,
        reason: impl Into<String>,
    ) -> Self {
        CgroupError::Invalid {
            field: field.into(),
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn unsupported(
        field: impl Into<String>,
        path: impl Into<PathBuf>,
        reason: impl Into<String>,
    ) -> Self {
        CgroupError::Unsupported {
            field: field.into(),
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(
        field: impl Into<String>,
        what: &'static str,
        path: impl Into<PathBuf>,
        source: io::Error,
    ) -> Self {
        CgroupError::Io {
            field: field.into(),
            what,
            path: path.into(),
            source,
        }
    }
}

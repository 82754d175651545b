//! Errors of the runtime. Each variant names what failed: the container id,
//! the path, or the config.json field, and keeps the underlying cause.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid container id {id:?}: {reason}")]
    InvalidId { id: String, reason: &'static str },

    #[error("container {0:?} does not exist")]
    NotFound(String),

    #[error("container {0:?} already exists")]
    AlreadyExists(String),

    #[error("container {id:?} is {status}: {action}")]
    WrongState {
        id: String,
        status: String,
        action: String,
    },

    #[error("config.json: {field}: {message}")]
    Config { field: String, message: String },

    // The cause is part of the message (not a `source`), so that the one
    // error line a shim shows says everything, once.
    #[error("{what} {}: {cause}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },

    #[error("{what}: {}", cause.desc())]
    Sys {
        what: String,
        cause: nix::errno::Errno,
    },

    /// An error that the container's init reported over the sync socket.
    #[error("{0}")]
    Init(String),

    #[error("{0}")]
    Unsupported(String),

    /// A seccomp profile that cannot be compiled or loaded; the message
    /// names the field (`linux.seccomp.syscalls[3].action`).
    #[error("{0}")]
    Seccomp(String),

    /// A cgroup operation; the message names the field and the file.
    #[error("{0}")]
    Cgroup(String),
}

impl Error {
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            what,
            path: path.into(),
            cause: source,
        }
    }

    pub fn sys(what: impl Into<String>, source: nix::errno::Errno) -> Self {
        Error::Sys {
            what: what.into(),
            cause: source,
        }
    }

    pub fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Attach a description to a raw `nix` result.
pub trait SysContext<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> SysContext<T> for nix::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::sys(what(), e))
    }
}

impl From<crate::cgroups::CgroupError> for Error {
    fn from(e: crate::cgroups::CgroupError) -> Self {
        Error::Cgroup(e.to_string())
    }
}

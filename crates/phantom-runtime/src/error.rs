//! Errors of the runtime. Each variant names what failed: the container id,
//! the path, or the config.json field, and keeps the underlying cause.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid container id {id:?}: {reason}")]
    InvalidId { id: String, reason: &'static str },

    /// "does not exist" is what containerd's shim (kill, delete) and
    /// Podman 4 (`state`) match for a missing container.
    #[error("container {0:?} does not exist")]
    NotFound(String),

    #[error("container {0:?} already exists")]
    AlreadyExists(String),

    /// A verb the container's status does not allow. The message starts
    /// with runc's words for the case (`words`, e.g. "container not
    /// running"): engines match those in our stderr to tell an exited
    /// container from a failure (containerd's `checkKillError`, CRI-O's
    /// `runtimeCmd`; docs/engines.md lists them), so they are part of the
    /// contract, not prose.
    #[error("{words}: container {id:?} is {status}; {action}")]
    WrongState {
        id: String,
        status: String,
        words: &'static str,
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

    /// The program could not be executed: `errno` is the PATH lookup's or
    /// execve's (ENOENT: not found; EACCES, ENOEXEC...: found but not
    /// runnable), so that callers pick an exit code from it (a shell's 127
    /// or 126) instead of reading the text. The message keeps runc's words
    /// ("executable file not found in $PATH"), which engines match.
    #[error("{message}")]
    ExecFailed { errno: i32, message: String },

    #[error("{0}")]
    Unsupported(String),

    /// A seccomp profile that cannot be compiled or loaded; the message
    /// names the field (`linux.seccomp.syscalls[3].action`).
    #[error("{0}")]
    Seccomp(String),

    /// A cgroup operation; the message names the field and the file.
    #[error("{0}")]
    Cgroup(String),

    /// Checkpoint/restore: CRIU missing, too old or failing, or a bad image.
    #[error(transparent)]
    Criu(#[from] crate::criu::CriuError),
}

/// runc 1.1's words for each status a verb refuses, which engines match in
/// our stderr (checked side by side with runc 1.1.5; docs/engines.md).
pub mod words {
    /// kill, pause and update of a container that is not running.
    /// containerd's `checkKillError` and CRI-O's `runtimeCmd` read it as
    /// "the process already exited" (crun's "no such process" too).
    pub const NOT_RUNNING: &str = "container not running";
    /// resume of a container that is not paused.
    pub const NOT_PAUSED: &str = "container not paused";
    pub const START_STOPPED: &str = "cannot start a container that has stopped";
    pub const START_RUNNING: &str = "cannot start an already running container";
    pub const START_OTHER: &str = "cannot start a container that is not created";
    pub const EXEC_STOPPED: &str = "cannot exec in a stopped container";
    pub const EXEC_PAUSED: &str = "cannot exec in a paused container";
    pub const DELETE_LIVE: &str = "cannot delete a container that is not stopped";
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

    pub fn wrong_state(
        id: &str,
        status: impl std::fmt::Display,
        words: &'static str,
        action: impl Into<String>,
    ) -> Self {
        Error::WrongState {
            id: id.to_string(),
            status: status.to_string(),
            words,
            action: action.into(),
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

//! The container's init: everything between the clone and the execve of the
//! container's program, run from a plan resolved before the fork.

pub mod caps;
pub mod fds;
pub mod identity;
pub mod init;
pub mod limits;
pub mod lookup;
pub mod procfs;
pub mod setup;

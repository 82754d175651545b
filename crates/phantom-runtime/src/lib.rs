//! Phantom's OCI runtime: the container lifecycle (state store, create,
//! start, kill, delete, run), namespaces, rootfs and mounts, the container's
//! init process, and the defences around them.

pub mod cgroups;
pub mod channel;
pub mod console;
pub mod container;
pub mod criu;
pub mod error;
pub mod exe_guard;
pub mod hooks;
pub mod namespaces;
pub mod phase;
pub mod proc_info;
pub mod process;
pub mod rootfs;
pub mod sandbox;
pub mod spec;
pub mod state;
pub mod sys;
pub mod tty_proxy;

pub use error::{Error, Result};

//! OCI runtime-spec conformance suite.
//!
//! Two programs share this library:
//!
//! * `rst` ([`runner`]) runs on the host. It builds bundles from a busybox
//!   rootfs, drives the runtime under test through runc's command line
//!   (`create`, `start`, `state`, `kill`, `delete`, `features`) and compares
//!   every result with `expected.tsv`.
//! * `rst-checker` ([`checker`]) is copied into each container's rootfs and
//!   runs as the container process. It reads the container's own
//!   `config.json` and compares it with what the process really got
//!   (`/proc/self/status`, `/proc/self/mountinfo`, `getrlimit`, ...). It is
//!   also the program the hooks run.
//!
//! Both speak one line per check ([`outcome`]).

pub mod caps;
pub mod checker;
pub mod outcome;
pub mod procfs;
pub mod runner;

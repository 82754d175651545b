//! Phantom's policies, compiled ahead of time.
//!
//! Today: the OCI `linux.seccomp` section compiled to one seccomp BPF program
//! ([`seccomp`]), serialisable for the AOT cache and loaded with one `seccomp()` call.

pub mod seccomp;

pub use seccomp::{
    compile_oci, compile_oci_for, CompiledFilter, SeccompError, TargetArch, MAX_INSNS,
};

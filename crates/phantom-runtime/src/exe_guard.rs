//! The CVE-2019-5736 defence. Until it execs, the container's init is a
//! copy of this binary; and a container process that execs
//! `/proc/self/exe` (or a `#!` script naming it) runs the host binary again
//! inside the container, where it could open `/proc/PID/exe` and later write
//! through it. Neither can write when the binary sits on a read-only mount.
//!
//! So: if the binary is already on a read-only mount (an install under a
//! read-only /usr, as crun also checks), nothing is done. Otherwise phantom
//! re-executes itself once through a read-only bind mount of itself, in a
//! private mount namespace of its own: every process that can appear in the
//! container then maps the binary from a read-only mount.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::sys::statvfs::{statvfs, FsFlags};

use crate::error::{Error, Result, SysContext};

const MARKER: &str = "_PHANTOM_EXE_SEALED";

/// True if this process's binary cannot be opened for writing.
pub fn is_sealed() -> bool {
    statvfs("/proc/self/exe").is_ok_and(|s| s.flags().contains(FsFlags::ST_RDONLY))
}

/// Make sure the running binary is on a read-only mount, re-executing
/// through a read-only bind of it if needed. Returns only when sealed.
pub fn ensure_sealed() -> Result<()> {
    if is_sealed() {
        return Ok(());
    }
    if std::env::var_os(MARKER).is_some() {
        return Err(Error::Init(
            "could not run phantom from a read-only mount of itself (CVE-2019-5736 guard)".into(),
        ));
    }
    let exe = std::fs::read_link("/proc/self/exe")
        .map_err(|e| Error::io("cannot resolve", "/proc/self/exe", e))?;
    nix::sched::unshare(CloneFlags::CLONE_NEWNS)
        .ctx(|| "unshare a mount namespace for the read-only binary".into())?;
    // Host mounts still propagate in; nothing of ours propagates out.
    nix::mount::mount(
        None::<&Path>,
        "/",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .ctx(|| "make / a slave mount".into())?;
    nix::mount::mount(
        Some(&exe),
        &exe,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .ctx(|| format!("bind {} onto itself", exe.display()))?;
    nix::mount::mount(
        None::<&Path>,
        &exe,
        None::<&str>,
        MsFlags::MS_BIND
            | MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV,
        None::<&str>,
    )
    .ctx(|| format!("remount {} read-only", exe.display()))?;

    let prog = CString::new(exe.as_os_str().as_bytes()).expect("path has no NUL");
    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.as_bytes()).expect("argv has no NUL"))
        .collect();
    let mut env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut b = k.as_bytes().to_vec();
            b.push(b'=');
            b.extend_from_slice(v.as_bytes());
            CString::new(b).expect("env has no NUL")
        })
        .collect();
    env.push(CString::new(format!("{MARKER}=1")).expect("no NUL"));
    let e = nix::unistd::execve(&prog, &args, &env).unwrap_err();
    Err(Error::sys(
        format!("re-exec {} read-only", exe.display()),
        e,
    ))
}

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
/// The fd of the caller's mount namespace, kept across the re-exec so that
/// hooks that must run in the runtime's namespaces still can.
const HOST_MNTNS: &str = "_PHANTOM_HOST_MNTNS";

/// The mount namespace phantom was started in, when the guard moved it
/// into a private one (None otherwise: then it is the current one).
pub fn host_mount_ns() -> Option<std::os::fd::RawFd> {
    static FD: std::sync::OnceLock<Option<std::os::fd::RawFd>> = std::sync::OnceLock::new();
    *FD.get_or_init(|| {
        let fd: std::os::fd::RawFd = std::env::var(HOST_MNTNS).ok()?.parse().ok()?;
        // Only an inherited namespace fd counts; make it close-on-exec so
        // no program we start (a container's above all) inherits it.
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
        if !link.to_string_lossy().starts_with("mnt:[") {
            return None;
        }
        // SAFETY: fcntl on an fd number we just verified is open.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        Some(fd)
    })
}

/// True in the copy of phantom that `ensure_sealed` re-executed: it has
/// decided on the cold path already.
pub fn is_reexec() -> bool {
    marked_for_this_binary()
}

/// The marker names the binary that was re-executed: a child of another
/// phantom binary (the daemon's `phantom-server` starting `phantom`)
/// inherits it and must still seal itself.
fn marked_for_this_binary() -> bool {
    let Some(marked) = std::env::var_os(MARKER) else {
        return false;
    };
    // The memfd copy (PHANTOM_EXE_GUARD=memfd) has a name of its own.
    std::fs::read_link("/proc/self/exe").is_ok_and(|exe| {
        exe.as_os_str() == marked || exe.as_os_str().as_bytes().starts_with(b"/memfd:")
    })
}

/// True if this process's binary cannot be opened for writing.
pub fn is_sealed() -> bool {
    if statvfs("/proc/self/exe").is_ok_and(|s| s.flags().contains(FsFlags::ST_RDONLY)) {
        return true;
    }
    // A sealed memfd copy cannot be written either.
    std::fs::File::open("/proc/self/exe").is_ok_and(|f| {
        use std::os::fd::AsRawFd;
        // SAFETY: fcntl on an fd we own, integer result.
        let seals = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GET_SEALS) };
        seals > 0 && seals & libc::F_SEAL_WRITE != 0
    })
}

/// Make sure the running binary is on a read-only mount, re-executing
/// through a read-only bind of it if needed. Returns only when sealed.
pub fn ensure_sealed() -> Result<()> {
    if is_sealed() {
        // Make the inherited namespace fd close-on-exec right away.
        let _ = host_mount_ns();
        return Ok(());
    }
    if marked_for_this_binary() {
        return Err(Error::Init(
            "could not run phantom from a read-only mount of itself (CVE-2019-5736 guard)".into(),
        ));
    }
    if std::env::var_os("PHANTOM_EXE_GUARD").is_some_and(|v| v == "memfd") {
        return reexec_memfd();
    }
    let exe = std::fs::read_link("/proc/self/exe")
        .map_err(|e| Error::io("cannot resolve", "/proc/self/exe", e))?;
    // Deliberately inheritable: the re-executed phantom picks it up.
    // SAFETY: open of a constant NUL-terminated path; returns an fd or -1.
    let host_ns = unsafe { libc::open(c"/proc/self/ns/mnt".as_ptr(), libc::O_RDONLY) };
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
    let (args, mut env) = reexec_argv_env();
    if host_ns >= 0 {
        env.push(CString::new(format!("{HOST_MNTNS}={host_ns}")).expect("no NUL"));
    }
    let e = nix::unistd::execve(&prog, &args, &env).unwrap_err();
    Err(Error::sys(
        format!("re-exec {} read-only", exe.display()),
        e,
    ))
}

/// The other way to the same end: a sealed in-memory copy of the binary.
/// Kept to measure against the read-only bind (`PHANTOM_EXE_GUARD=memfd`).
fn reexec_memfd() -> Result<()> {
    use std::os::fd::AsRawFd;
    let src = std::fs::File::open("/proc/self/exe")
        .map_err(|e| Error::io("cannot open", "/proc/self/exe", e))?;
    let len = src
        .metadata()
        .map_err(|e| Error::io("cannot stat", "/proc/self/exe", e))?
        .len();
    let memfd = nix::sys::memfd::memfd_create(
        c"phantom",
        nix::sys::memfd::MFdFlags::MFD_CLOEXEC | nix::sys::memfd::MFdFlags::MFD_ALLOW_SEALING,
    )
    .ctx(|| "memfd_create".into())?;
    let mut off = 0u64;
    while off < len {
        // SAFETY: both fds are valid for the call; no memory is passed.
        let n = unsafe {
            libc::sendfile(
                memfd.as_raw_fd(),
                src.as_raw_fd(),
                std::ptr::null_mut(),
                (len - off) as usize,
            )
        };
        if n <= 0 {
            return Err(Error::io(
                "cannot copy",
                "/proc/self/exe",
                std::io::Error::last_os_error(),
            ));
        }
        off += n as u64;
    }
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on our memfd with an integer argument.
    if unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(Error::io(
            "cannot seal",
            "memfd",
            std::io::Error::last_os_error(),
        ));
    }
    let (args, env) = reexec_argv_env();
    let e = nix::unistd::fexecve(&memfd, &args, &env).unwrap_err();
    Err(Error::sys("re-exec from a sealed memfd", e))
}

/// Our argv, and our environment plus the marker that says "sealed".
fn reexec_argv_env() -> (Vec<CString>, Vec<CString>) {
    let exe = std::fs::read_link("/proc/self/exe").unwrap_or_default();
    let args = std::env::args_os()
        .map(|a| CString::new(a.as_bytes()).expect("argv has no NUL"))
        .collect();
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| k != "PHANTOM_EXE_GUARD" && k != MARKER)
        .map(|(k, v)| {
            let mut b = k.as_bytes().to_vec();
            b.push(b'=');
            b.extend_from_slice(v.as_bytes());
            CString::new(b).expect("env has no NUL")
        })
        .collect();
    let mut marker = format!("{MARKER}=").into_bytes();
    marker.extend_from_slice(exe.as_os_str().as_bytes());
    env.push(CString::new(marker).expect("path has no NUL"));
    (args, env)
}

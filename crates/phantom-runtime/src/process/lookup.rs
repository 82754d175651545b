//! Finding the program to run, before `start`, so that a missing binary is
//! an error of `create` (with the words Podman maps to exit code 127).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn executable(p: &Path) -> std::result::Result<(), i32> {
    let Ok(c) = CString::new(p.as_os_str().as_bytes()) else {
        return Err(libc::EINVAL);
    };
    let meta = std::fs::metadata(p).map_err(|e| e.raw_os_error().unwrap_or(libc::ENOENT))?;
    if meta.is_dir() {
        return Err(libc::EACCES);
    }
    // SAFETY: `c` is a valid NUL-terminated path.
    if unsafe { libc::access(c.as_ptr(), libc::X_OK) } != 0 {
        return Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EACCES));
    }
    Ok(())
}

/// Resolve `arg0` like execvp, with PATH taken from the container's env.
pub fn find(arg0: &str, env: &[String]) -> Result<PathBuf> {
    if arg0.contains('/') {
        let p = PathBuf::from(arg0);
        return match executable(&p) {
            Ok(()) => Ok(p),
            Err(libc::ENOENT) => Err(Error::ExecFailed {
                errno: libc::ENOENT,
                message: format!("exec: {arg0:?}: no such file or directory"),
            }),
            Err(e @ (libc::EACCES | libc::EPERM)) => Err(Error::ExecFailed {
                errno: e,
                message: format!("exec: {arg0:?}: permission denied"),
            }),
            Err(e) => Err(Error::ExecFailed {
                errno: e,
                message: format!("exec: {arg0:?}: {}", std::io::Error::from_raw_os_error(e)),
            }),
        };
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let mut denied = false;
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let cand = Path::new(dir).join(arg0);
        match executable(&cand) {
            Ok(()) => return Ok(cand),
            Err(libc::EACCES) => denied = true,
            Err(_) => {}
        }
    }
    if denied {
        return Err(Error::ExecFailed {
            errno: libc::EACCES,
            message: format!("exec: {arg0:?}: permission denied"),
        });
    }
    Err(Error::ExecFailed {
        errno: libc::ENOENT,
        message: format!("exec: {arg0:?}: executable file not found in $PATH"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_in_path_and_reports_missing() {
        let env = vec!["PATH=/nonexistent:/bin:/usr/bin".to_string()];
        assert!(find("sh", &env).unwrap().ends_with("sh"));
        let e = find("no-such-program-xyz", &env).unwrap_err().to_string();
        assert!(e.contains("executable file not found in $PATH"), "{e}");
        let e = find("/no/such/file", &env).unwrap_err().to_string();
        assert!(e.contains("no such file or directory"), "{e}");
    }
}

//! CRIU (Checkpoint/Restore In Userspace) for `checkpoint` and `restore`.
//!
//! Phantom drives CRIU as runc does: it runs `criu swrk FD` with one end of
//! a socketpair and speaks CRIU's RPC (criu/images/rpc.proto) over it
//! ([`swrk`]). The protobuf messages come from the `rust-criu` crate; its
//! own `Criu` client is not used because it cannot do what a container
//! restore needs between spawning CRIU and sending the request: put the
//! CRIU process into the container's cgroup and name that cgroup as
//! `cg_root` (runc's `criuApplyCgroups`), and read the restored pid from
//! the response.
//!
//! [`locate`] finds the binary: `--criu PATH`, `$PHANTOM_CRIU`,
//! `/opt/phantom-criu/bin/criu` (what `hack/install-criu.sh` installs when
//! the distribution's CRIU is too old), then `criu` on `PATH`; and checks
//! its version with the VERSION request.

pub mod image;
pub mod swrk;

use std::path::{Path, PathBuf};

/// The oldest CRIU we accept: 3.16 is the first with the cgroup v2 and
/// `cg_root` handling runc relies on. (Debian 12's 3.17.1 passes this
/// check but fails on kernel 6.18 in `criu check`'s vDSO probe; the error
/// then quotes CRIU's log.)
pub const MIN_VERSION: u32 = 3_16_00;

/// Where `hack/install-criu.sh` puts its wrapper.
pub const PRIVATE_CRIU: &str = "/opt/phantom-criu/bin/criu";

/// Environment variable naming the CRIU binary.
pub const ENV: &str = "PHANTOM_CRIU";

#[derive(Debug, thiserror::Error)]
pub enum CriuError {
    #[error(
        "CRIU not found: {0} (install CRIU >= 3.16, e.g. with hack/install-criu.sh, or name it with --criu PATH or PHANTOM_CRIU)"
    )]
    NotFound(String),

    #[error("CRIU {} is too old: phantom needs {} or newer ({})", fmt_version(*.found), fmt_version(MIN_VERSION), .path.display())]
    TooOld { path: PathBuf, found: u32 },

    #[error("cannot run CRIU {}: {cause}", .path.display())]
    Spawn {
        path: PathBuf,
        cause: std::io::Error,
    },

    #[error("CRIU RPC with {}: {what}", .path.display())]
    Rpc { path: PathBuf, what: String },

    /// CRIU answered the request with failure; `log` holds the error lines
    /// of its log file.
    #[error("criu {action} failed (errno {errno}){}{log}", if .log.is_empty() { "" } else { ":\n" })]
    Failed {
        action: &'static str,
        errno: i32,
        log: String,
    },

    #[error("checkpoint image {}: {what}", .dir.display())]
    Image { dir: PathBuf, what: String },
}

pub fn fmt_version(v: u32) -> String {
    format!("{}.{}.{}", v / 10000, v / 100 % 100, v % 100)
}

/// The CRIU binary to use (see the module doc for the order).
pub fn locate(flag: Option<&Path>) -> Result<PathBuf, CriuError> {
    locate_in(
        flag,
        std::env::var_os(ENV).as_deref(),
        Path::new(PRIVATE_CRIU),
        &std::env::var_os("PATH").unwrap_or_default(),
    )
}

fn locate_in(
    flag: Option<&Path>,
    env: Option<&std::ffi::OsStr>,
    private: &Path,
    path: &std::ffi::OsStr,
) -> Result<PathBuf, CriuError> {
    if let Some(p) = flag {
        return existing(p, "--criu");
    }
    if let Some(p) = env.filter(|p| !p.is_empty()) {
        return existing(Path::new(p), ENV);
    }
    if private.is_file() {
        return Ok(private.to_path_buf());
    }
    std::env::split_paths(path)
        .map(|d| d.join("criu"))
        .find(|p| p.is_file())
        .ok_or_else(|| CriuError::NotFound(format!("not in {} nor on PATH", private.display())))
}

fn existing(p: &Path, from: &str) -> Result<PathBuf, CriuError> {
    if p.is_file() {
        Ok(p.to_path_buf())
    } else {
        Err(CriuError::NotFound(format!(
            "{from} names {}, which does not exist",
            p.display()
        )))
    }
}

/// Finds CRIU and checks that it is new enough; returns its path and
/// version (major * 10000 + minor * 100 + sublevel).
pub fn locate_checked(flag: Option<&Path>) -> Result<(PathBuf, u32), CriuError> {
    let path = locate(flag)?;
    let v = swrk::version(&path)?;
    if v < MIN_VERSION {
        return Err(CriuError::TooOld { path, found: v });
    }
    Ok((path, v))
}

/// The error lines ("Error (...)") of a CRIU log, at most the last 20, so
/// a failure says why without the reader opening the log. `kept`: whether
/// the log stays (else it goes with the image directory being removed).
pub fn log_errors(log: &Path, kept: bool) -> String {
    let Ok(text) = std::fs::read_to_string(log) else {
        return String::new();
    };
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("Error (") || l.contains("Warn ") && l.contains("fail"))
        // Harmless: CRIU raises its own fd limit when it can, and goes on.
        .filter(|l| !l.contains("Can't setup RLIMIT_NOFILE for self"))
        .collect();
    let tail = &lines[lines.len().saturating_sub(20)..];
    let mut s = tail.join("\n");
    if !s.is_empty() {
        if kept {
            s.push_str(&format!("\n(CRIU log: {})", log.display()));
        } else {
            s.push_str("\n(CRIU's log went with the image directory; keep it with --work-path)");
        }
    }
    s
}
#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn locate_order_and_errors() {
        let t = tempfile::tempdir().unwrap();
        let (a, b, c) = (t.path().join("a"), t.path().join("b"), t.path().join("bin"));
        std::fs::write(&a, "").unwrap();
        std::fs::write(&b, "").unwrap();
        std::fs::create_dir(&c).unwrap();
        std::fs::write(c.join("criu"), "").unwrap();
        let none = t.path().join("none");
        let path = c.as_os_str();
        // --criu wins, then $PHANTOM_CRIU, then the private install, then PATH.
        assert_eq!(
            locate_in(Some(&a), Some(b.as_os_str()), &b, path).unwrap(),
            a
        );
        assert_eq!(locate_in(None, Some(b.as_os_str()), &a, path).unwrap(), b);
        assert_eq!(locate_in(None, None, &a, path).unwrap(), a);
        assert_eq!(
            locate_in(None, Some(OsStr::new("")), &none, path).unwrap(),
            c.join("criu")
        );
        // A named binary that is missing is an error, not a fallback.
        let e = locate_in(Some(&none), None, &a, path)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--criu names") && e.contains("does not exist"),
            "{e}"
        );
        let e = locate_in(None, Some(none.as_os_str()), &a, path)
            .unwrap_err()
            .to_string();
        assert!(e.contains("PHANTOM_CRIU names"), "{e}");
        let e = locate_in(None, None, &none, OsStr::new(""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("CRIU not found"), "{e}");
    }

    #[test]
    fn versions_print_as_criu_does() {
        assert_eq!(fmt_version(4_01_01), "4.1.1");
        assert_eq!(fmt_version(MIN_VERSION), "3.16.0");
    }
}

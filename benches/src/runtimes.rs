//! The contenders: phantom as built, phantom installed on a read-only mount,
//! and the peers (crun is the reference every ratio is taken against).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::exec;

/// The runtime every ratio is taken against.
pub const REFERENCE: &str = "crun";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Runtime {
    /// Display name: "phantom", "phantom (ro)", "crun", "runc", "youki".
    pub name: String,
    pub exe: PathBuf,
    /// This runtime's `--root` (state dir), on the bench's tmpfs.
    pub root: PathBuf,
    /// Runs phantom's own rows (sandbox, AOT cache) too.
    pub is_phantom: bool,
    /// `None` when usable.
    pub unavailable: Option<String>,
    pub version: String,
    /// How this binary was obtained / where it runs from.
    pub note: String,
    pub binary_bytes: u64,
}

impl Runtime {
    pub fn new(name: &str, exe: &Path, root: PathBuf, is_phantom: bool, note: &str) -> Runtime {
        let exe_s = exe.to_string_lossy().into_owned();
        let version = exec::first_line(&[&exe_s, "--version"]).unwrap_or_default();
        Runtime {
            name: name.to_string(),
            exe: exe.to_path_buf(),
            root,
            is_phantom,
            unavailable: None,
            version,
            note: note.to_string(),
            binary_bytes: std::fs::metadata(exe).map(|m| m.len()).unwrap_or(0),
        }
    }

    pub fn unavailable(name: &str, reason: &str) -> Runtime {
        Runtime {
            name: name.to_string(),
            exe: PathBuf::new(),
            root: PathBuf::new(),
            is_phantom: false,
            unavailable: Some(reason.to_string()),
            version: String::new(),
            note: String::new(),
            binary_bytes: 0,
        }
    }

    pub fn available(&self) -> bool {
        self.unavailable.is_none()
    }

    /// `exe --root ROOT` followed by `tail`.
    pub fn argv(&self, tail: impl IntoIterator<Item = String>) -> Vec<String> {
        let mut v = vec![
            self.exe.to_string_lossy().into_owned(),
            "--root".into(),
            self.root.to_string_lossy().into_owned(),
        ];
        v.extend(tail);
        v
    }

    pub fn delete_force(&self, id: &str) -> Vec<String> {
        self.argv(["delete".into(), "--force".into(), id.into()])
    }
}

/// A program on PATH, as an absolute path.
pub fn which(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

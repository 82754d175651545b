//! Sandboxes: containers made from a profile instead of a bundle
//! (`phantom run --profile`, `phantom create --profile`). They are ordinary
//! OCI containers under `--root`; these annotations on them say what
//! phantom made for them, so `destroy` can remove it again:
//!
//! | annotation | meaning |
//! |---|---|
//! | `run.phantom.profile` | the profile's name |
//! | `run.phantom.workspace` | the host directory mounted at /workspace |
//! | `run.phantom.workspace-owned` | `true` if phantom created it (then `destroy` removes it) |
//! | `run.phantom.sandbox-dir` | phantom's directory for the bundle (always removed) |

pub mod monitor;

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::state::StateStore;

pub const PROFILE: &str = "run.phantom.profile";
pub const WORKSPACE: &str = "run.phantom.workspace";
pub const WORKSPACE_OWNED: &str = "run.phantom.workspace-owned";
pub const SANDBOX_DIR: &str = "run.phantom.sandbox-dir";

/// Where phantom keeps sandbox bundles and workspaces it creates.
pub fn base_dir() -> PathBuf {
    std::env::var_os("PHANTOM_SANDBOX_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/phantom/sandboxes"))
}

/// Kill and delete a sandbox, remove its bundle directory and, unless
/// `keep_workspace` or the workspace was the caller's, its workspace.
pub fn destroy(store: &StateStore, id: &str, keep_workspace: bool) -> Result<()> {
    let st = store.load(id)?;
    if !st.annotations.contains_key(PROFILE) {
        return Err(Error::Unsupported(format!(
            "{id:?} is not a sandbox (it was not made from a profile): use `phantom delete --force {id}`"
        )));
    }
    crate::container::delete(store, id, true)?;
    remove_dirs(&st.annotations, keep_workspace)
}

/// Remove what phantom created for a sandbox (after its container is gone).
pub fn remove_dirs(
    annotations: &std::collections::BTreeMap<String, String>,
    keep_workspace: bool,
) -> Result<()> {
    let owned = annotations
        .get(WORKSPACE_OWNED)
        .is_some_and(|v| v == "true");
    if let (Some(ws), true, false) = (annotations.get(WORKSPACE), owned, keep_workspace) {
        match std::fs::remove_dir_all(ws) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("cannot remove workspace", ws, e)),
        }
    }
    if let Some(dir) = annotations.get(SANDBOX_DIR) {
        let dir = PathBuf::from(dir);
        // Keep a workspace that lives inside the sandbox directory.
        let keep_inside = annotations
            .get(WORKSPACE)
            .is_some_and(|ws| PathBuf::from(ws).starts_with(&dir) && (keep_workspace || !owned));
        if keep_inside {
            let _ = std::fs::remove_dir_all(dir.join("bundle"));
        } else {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("cannot remove sandbox directory", &dir, e)),
            }
        }
    }
    Ok(())
}

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

use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::mount::{MntFlags, MsFlags};

use crate::error::{Error, Result};
use crate::state::StateStore;
use crate::sys::{LinuxSys, Sys};

pub const PROFILE: &str = "run.phantom.profile";
pub const WORKSPACE: &str = "run.phantom.workspace";
pub const WORKSPACE_OWNED: &str = "run.phantom.workspace-owned";
pub const SANDBOX_DIR: &str = "run.phantom.sandbox-dir";

/// A caller's `--workspace`, opened without following a symlink in any
/// component (`openat2` with `RESOLVE_NO_SYMLINKS` from `/`). A sandbox
/// can plant `ln -s /some/host/dir out` in its workspace; the next caller
/// naming `proj/out` must not get that host directory read-write. This is
/// the early check with a clear error; the container's init opens the
/// path again the same way and binds that fd (`RootfsPlan::
/// nofollow_sources`), so it cannot be swapped in between. Returns the fd
/// and the absolute path.
pub fn open_workspace(path: &Path) -> Result<(OwnedFd, PathBuf)> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| Error::io("cannot resolve --workspace against the cwd", path, e))?
            .join(path)
    };
    let fail = |why: String| Error::config("--workspace", format!("{}: {why}", path.display()));
    let root = nix::fcntl::open(
        "/",
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::sys("open /", e))?;
    match crate::rootfs::safe_path::openat2(
        root.as_raw_fd(),
        &abs,
        libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    ) {
        Ok(fd) => Ok((fd, abs)),
        Err(nix::errno::Errno::ELOOP) => {
            // Name the first component that is a symlink.
            let link = abs
                .ancestors()
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .find(|p| fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink()));
            Err(fail(match link {
                Some(l) => format!(
                    "{} is a symbolic link: a workspace is opened without following symlinks; \
                     give the path without them",
                    l.display()
                ),
                None => "a component is a symbolic link".into(),
            }))
        }
        Err(nix::errno::Errno::ENOENT) => Err(fail("does not exist".into())),
        Err(nix::errno::Errno::ENOTDIR) => Err(fail("not a directory".into())),
        Err(e) => Err(fail(format!("cannot open it: {e}"))),
    }
}

/// "out of memory (limit 512 MiB)" when a sandbox's program was
/// ended by the OOM killer (its cgroup counted an oom_kill), so that a 137
/// does not go unexplained (cold runs and warm runners both say it).
pub fn oom_note(cg: &crate::cgroups::Cgroup, limit: Option<i64>) -> Option<String> {
    if cg.oom_kill_count() == 0 {
        return None;
    }
    Some(match limit {
        Some(l) if l > 0 => format!(
            "out of memory (limit {})",
            phantom_policy::narrow::Bytes(l as u64)
        ),
        _ => "out of memory".to_string(),
    })
}

/// linux.resources.memory.limit of a bundle's config.json.
pub fn memory_limit_of(bundle: &Path) -> Option<i64> {
    let s = crate::spec::load(bundle).ok()?;
    s.linux()
        .as_ref()?
        .resources()
        .as_ref()?
        .memory()
        .as_ref()?
        .limit()
}

/// Where phantom keeps sandbox bundles and workspaces it creates.
pub fn base_dir() -> PathBuf {
    std::env::var_os("PHANTOM_SANDBOX_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/phantom/sandboxes"))
}

/// In a sandbox directory: the `--root` whose container it belongs to.
const ROOT_FILE: &str = ".root";

/// A sandbox directory (`base/<id>`) this call holds: it is locked
/// (`flock`) from before it appears under its name until this value is
/// dropped, which the caller does once the container exists in its root
/// (or after removing the directory again). A second create of the same
/// id therefore never takes over a directory in use: it sees the lock, or
/// a live container in the root the directory names, and fails with
/// "already exists" without touching anything (docs/engines.md).
#[derive(Debug)]
pub struct SandboxDir {
    pub path: PathBuf,
    _lock: OwnedFd,
}

/// Reserve `base/<id>` for a sandbox of the store at `root`: reserve first,
/// then check. The directory is made under a temporary name, locked, and
/// renamed into place without replacing anything. A directory that is
/// already there is taken over only when nobody holds it and no container
/// of that id exists (a create killed midway, or a container deleted with
/// `phantom delete` instead of `destroy`): then everything in it (bundle,
/// workspace, files a sandbox left there) is removed first, so that no new
/// sandbox starts in an old workspace it did not make.
pub fn reserve_dir(base: &Path, id: &str, store: &StateStore) -> Result<SandboxDir> {
    crate::state::validate_id(id)?;
    fs::create_dir_all(base).map_err(|e| Error::io("cannot create sandbox directory", base, e))?;
    let root = std::path::absolute(store.root())
        .map_err(|e| Error::io("cannot resolve the state root", store.root(), e))?;
    let dir = base.join(id);
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let tmp = base.join(format!(
        ".new-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir(&tmp).map_err(|e| Error::io("cannot create sandbox directory", &tmp, e))?;
    let made = (|| {
        let lock = lock_dir(&tmp, false)?.expect("a blocking lock is always taken");
        let root_file = tmp.join(ROOT_FILE);
        fs::write(&root_file, root.as_os_str().as_encoded_bytes())
            .map_err(|e| Error::io("cannot write", &root_file, e))?;
        let base_fd = nix::fcntl::open(
            base,
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| Error::io("cannot open sandbox directory", base, e.into()))?;
        let name = tmp.file_name().expect("tmp has a name");
        match nix::fcntl::renameat2(
            base_fd.as_fd(),
            name,
            base_fd.as_fd(),
            std::ffi::OsStr::new(id),
            nix::fcntl::RenameFlags::RENAME_NOREPLACE,
        ) {
            Ok(()) => Ok(Some(lock)),
            Err(nix::errno::Errno::EEXIST) => Ok(None),
            Err(e) => Err(Error::io("cannot create sandbox directory", &dir, e.into())),
        }
    })();
    match made {
        Ok(Some(lock)) => Ok(SandboxDir {
            path: dir,
            _lock: lock,
        }),
        Ok(None) => {
            let _ = fs::remove_dir_all(&tmp);
            adopt(&dir, id, &root, store)
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

/// Take over an existing `dir` if it is a leftover (see [`reserve_dir`]).
fn adopt(dir: &Path, id: &str, root: &Path, store: &StateStore) -> Result<SandboxDir> {
    let exists = || Error::AlreadyExists(id.to_string());
    let lock = match lock_dir(dir, true) {
        Ok(Some(l)) => l,
        // Held by a create or a foreground run of that id, or just removed.
        Ok(None) | Err(_) => return Err(exists()),
    };
    // The directory we locked must still be the one under the name.
    let same = match (nix::sys::stat::fstat(&lock), fs::symlink_metadata(dir)) {
        (Ok(a), Ok(b)) => a.st_ino == b.ino() && a.st_dev == b.dev(),
        _ => false,
    };
    if !same {
        return Err(exists());
    }
    let root_file = dir.join(ROOT_FILE);
    let recorded = fs::read(&root_file)
        .ok()
        .map(|b| PathBuf::from(String::from_utf8_lossy(&b).into_owned()));
    let live = store.dir(id).exists() || recorded.is_some_and(|r| r.join(id).exists());
    if live {
        return Err(exists());
    }
    clear_dir(dir)?;
    fs::write(&root_file, root.as_os_str().as_encoded_bytes())
        .map_err(|e| Error::io("cannot write", &root_file, e))?;
    Ok(SandboxDir {
        path: dir.to_path_buf(),
        _lock: lock,
    })
}

/// Make the owned workspace `ws` (an empty directory phantom just made)
/// hold at most `bytes`: a tmpfs of that size is mounted over it on the
/// host. Why a host-side tmpfs rather than a tmpfs in the container's
/// spec: `--copy-in` (cold and warm) and the zygote's `ready` line use the
/// workspace's host path before and while the container runs, and the
/// container's bind of `ws` then simply binds the tmpfs. A write past the
/// size fails with ENOSPC inside the sandbox and never reaches the host's
/// disk; the pages count against the writer's memory cgroup. The mount
/// lives until [`remove_dirs`] (or the cleanup of a leftover) detaches it;
/// `destroy --keep-workspace` keeps it mounted, in memory. The root of the tmpfs belongs to the caller, as
/// the plain directory did.
pub fn limit_workspace(sys: &dyn Sys, ws: &Path, bytes: u64) -> Result<()> {
    // SAFETY: getuid and getgid have no preconditions and cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let data = format!("size={bytes},mode=0755,uid={uid},gid={gid}");
    sys.mount(
        Some(Path::new("tmpfs")),
        ws,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(&data),
    )
    .map_err(|e| {
        Error::io(
            "cannot mount the size-limited workspace (resources.workspace) on",
            ws,
            e.into(),
        )
    })
}

/// Detach a size-limited workspace's tmpfs from `ws`, if one is mounted
/// there (see [`limit_workspace`]); a plain directory is left alone. Only
/// ever called on a workspace phantom made, inside its sandbox directory.
fn unlimit_workspace(sys: &dyn Sys, ws: &Path) -> Result<()> {
    // MNT_DETACH: a persistent sandbox's container holds its own bind of
    // the tmpfs until it is gone; UMOUNT_NOFOLLOW: never through a link.
    match sys.umount2(ws, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
        // EINVAL: not a mount point (no limit); ENOENT: already gone.
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(Error::io("cannot unmount workspace", ws, e.into())),
    }
}

/// Remove everything inside `dir` (not `dir` itself: its lock is held).
fn clear_dir(dir: &Path) -> Result<()> {
    // A leftover's size-limited workspace is still mounted on the host.
    unlimit_workspace(&LinuxSys, &dir.join("workspace"))?;
    let entries = fs::read_dir(dir).map_err(|e| Error::io("cannot read", dir, e))?;
    for e in entries.flatten() {
        let p = e.path();
        let r = match e.file_type() {
            Ok(t) if t.is_dir() => fs::remove_dir_all(&p),
            _ => fs::remove_file(&p),
        };
        r.map_err(|err| Error::io("cannot remove a leftover", &p, err))?;
    }
    Ok(())
}

/// `destroy` of an id with no container: remove a leftover sandbox
/// directory of that id (a create killed midway, a `phantom delete`d
/// sandbox) if nobody holds it. Returns whether there was one.
pub fn remove_orphan(base: &Path, id: &str, store: &StateStore) -> Result<bool> {
    crate::state::validate_id(id)?;
    let dir = base.join(id);
    if !dir.is_dir() {
        return Ok(false);
    }
    let root = std::path::absolute(store.root())
        .map_err(|e| Error::io("cannot resolve the state root", store.root(), e))?;
    // adopt() cleared it, a size-limited workspace's mount included.
    let held = adopt(&dir, id, &root, store)?;
    fs::remove_dir_all(&held.path)
        .map_err(|e| Error::io("cannot remove sandbox directory", &held.path, e))?;
    Ok(true)
}

/// What [`sweep_orphans`] did with one directory under the sandboxes dir.
#[derive(Debug)]
pub enum Swept {
    /// A leftover of this store's root (no lock, no container): removed.
    Removed(String),
    /// Held by a create or run, or its container exists: left alone.
    Live(String),
    /// Could not be removed.
    Failed(String, Error),
}

/// The daemon's sweep: every sandbox directory under `base` that records
/// `store`'s root and is not a live sandbox (lock free, no container) is
/// removed with [`remove_orphan`], as `destroy` of its id would. Names
/// starting with `.` (reservations in progress, the daemon's scratch
/// directory) and directories of other roots (another daemon's, the
/// CLI's) are never touched: they are their owners' to sweep.
pub fn sweep_orphans(base: &Path, store: &StateStore) -> Vec<Swept> {
    let Ok(root) = std::path::absolute(store.root()) else {
        return Vec::new();
    };
    let canon = |p: &Path| fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let ours = canon(&root);
    let mut out = Vec::new();
    for e in fs::read_dir(base).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let recorded = fs::read(e.path().join(ROOT_FILE))
            .ok()
            .map(|b| PathBuf::from(String::from_utf8_lossy(&b).into_owned()));
        if recorded.is_none_or(|r| canon(&r) != ours) {
            continue;
        }
        out.push(match remove_orphan(base, &name, store) {
            Ok(true) => Swept::Removed(name),
            Ok(false) | Err(Error::AlreadyExists(_)) => Swept::Live(name),
            Err(err) => Swept::Failed(name, err),
        });
    }
    out
}

/// `flock` a directory; with `try_only`, None if someone else holds it.
fn lock_dir(dir: &Path, try_only: bool) -> Result<Option<OwnedFd>> {
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map_err(|e| Error::io("cannot open sandbox directory", dir, e))?;
    let op = if try_only {
        libc::LOCK_EX | libc::LOCK_NB
    } else {
        libc::LOCK_EX
    };
    // SAFETY: flock on a descriptor we own; no memory is involved.
    if unsafe { libc::flock(f.as_raw_fd(), op) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Ok(None);
        }
        return Err(Error::io("cannot lock sandbox directory", dir, e));
    }
    Ok(Some(f.into()))
}

/// Kill and delete a sandbox, remove its bundle directory and, unless
/// `keep_workspace` or the workspace was the caller's, its workspace.
pub fn destroy(store: &StateStore, id: &str, keep_workspace: bool) -> Result<()> {
    let st = match store.load(id) {
        Ok(st) => st,
        // No container, but maybe what a killed create left behind.
        Err(Error::NotFound(_)) if remove_orphan(&base_dir(), id, store)? => return Ok(()),
        Err(e) => return Err(e),
    };
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
        unlimit_workspace(&LinuxSys, Path::new(ws))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workspace_limit_is_a_tmpfs_of_that_size_and_is_detached() {
        use crate::sys::{Call, RecordingSys};
        let sys = RecordingSys::default();
        let ws = Path::new("/sbx/box/workspace");
        limit_workspace(&sys, ws, 8 << 20).unwrap();
        unlimit_workspace(&sys, ws).unwrap();
        // SAFETY: getuid and getgid have no preconditions and cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        assert_eq!(
            sys.calls(),
            vec![
                Call::Mount {
                    source: Some("tmpfs".into()),
                    target: ws.into(),
                    fstype: Some("tmpfs".into()),
                    flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                    data: Some(format!("size=8388608,mode=0755,uid={uid},gid={gid}")),
                },
                // Detached, never through a symlink.
                Call::Umount(ws.into(), MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW),
            ]
        );
    }

    #[test]
    fn one_reservation_wins_and_leftovers_are_taken_over() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("sandboxes");
        let store = StateStore::new(tmp.path().join("root"));
        let won: Vec<Result<SandboxDir>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| s.spawn(|| reserve_dir(&base, "box", &store)))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(won.iter().filter(|r| r.is_ok()).count(), 1);
        for r in won.iter().filter(|r| r.is_err()) {
            assert!(
                matches!(r, Err(Error::AlreadyExists(id)) if id == "box"),
                "{r:?}"
            );
        }
        // No temporary directories are left.
        let names: Vec<_> = fs::read_dir(&base)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("box")]);
        // Held: refused. Released with a container in the root: refused.
        let held = won.into_iter().find_map(|r| r.ok()).unwrap();
        assert!(matches!(
            reserve_dir(&base, "box", &store),
            Err(Error::AlreadyExists(_))
        ));
        let _state = store.reserve("box").unwrap();
        drop(held);
        assert!(matches!(
            reserve_dir(&base, "box", &store),
            Err(Error::AlreadyExists(_))
        ));
        // Released and no container: a leftover, taken over, and emptied
        // first: nothing an old sandbox left reaches the new one.
        store.remove("box").unwrap();
        fs::create_dir_all(base.join("box/workspace")).unwrap();
        fs::write(base.join("box/workspace/secret"), "x").unwrap();
        let again = reserve_dir(&base, "box", &store).unwrap();
        assert!(!again.path.join("workspace").exists());
        drop(again);
        // destroy of an id without a container removes such a leftover.
        fs::write(base.join("box/left"), "x").unwrap();
        assert!(remove_orphan(&base, "box", &store).unwrap());
        assert!(!base.join("box").exists());
        assert!(!remove_orphan(&base, "box", &store).unwrap());
    }

    #[test]
    fn the_sweep_removes_only_this_roots_leftovers() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("sandboxes");
        let store = StateStore::new(tmp.path().join("root"));
        let other = StateStore::new(tmp.path().join("other-root"));
        // A leftover of ours, a live one of ours (container), one held by
        // a create under way, and a leftover of another root.
        drop(reserve_dir(&base, "left", &store).unwrap());
        fs::create_dir_all(base.join("left/workspace")).unwrap();
        fs::write(base.join("left/workspace/secret"), "x").unwrap();
        drop(reserve_dir(&base, "live", &store).unwrap());
        let _state = store.reserve("live").unwrap();
        let held = reserve_dir(&base, "held", &store).unwrap();
        drop(reserve_dir(&base, "theirs", &other).unwrap());
        fs::create_dir_all(base.join(".mcp")).unwrap();
        let mut swept: Vec<String> = sweep_orphans(&base, &store)
            .into_iter()
            .map(|s| match s {
                Swept::Removed(n) => format!("removed {n}"),
                Swept::Live(n) => format!("live {n}"),
                Swept::Failed(n, e) => format!("failed {n}: {e}"),
            })
            .collect();
        swept.sort();
        assert_eq!(swept, ["live held", "live live", "removed left"]);
        assert!(!base.join("left").exists());
        for n in ["live", "held", "theirs", ".mcp"] {
            assert!(base.join(n).exists(), "{n} was swept");
        }
        drop(held);
    }
}

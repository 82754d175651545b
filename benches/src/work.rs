//! The bench's scratch space and everything it must undo: a tmpfs work dir
//! (bundles and every runtime's `--root`), the read-only tmpfs holding the
//! "installed" phantom, containers not yet deleted, and their cgroups.
//!
//! The state is global so that cleanup also runs from the panic hook (the
//! workspace builds release binaries with `panic = "abort"`: no unwinding,
//! no `Drop`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

use crate::exec;

#[derive(Default)]
struct State {
    /// Mount points, in mount order.
    mounts: Vec<PathBuf>,
    /// Directories to remove at the end (after unmounting).
    dirs: Vec<PathBuf>,
    /// Containers that may exist: id -> argv that force-deletes it.
    live: BTreeMap<String, Vec<String>>,
    /// Every container id starts with this: finds leftover cgroups.
    prefix: String,
    cleaned: bool,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> R {
    let mut g = STATE.lock().unwrap_or_else(|e| e.into_inner());
    f(g.get_or_insert_with(State::default))
}

pub struct Work {
    pub dir: PathBuf,
    /// Prefix of every container id (and so of every cgroup) of this run.
    pub prefix: String,
}

impl Work {
    /// `/tmp/phantom-bench.PID` with a tmpfs on it (runtimes keep their
    /// state on tmpfs in /run normally; this machine's /run is not one).
    pub fn create() -> Result<Work> {
        let pid = std::process::id();
        let dir = PathBuf::from(format!("/tmp/phantom-bench.{pid}"));
        std::fs::create_dir(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
        let prefix = format!("pb{pid}");
        with_state(|s| {
            s.dirs.push(dir.clone());
            s.prefix = prefix.clone();
        });
        mount_tmpfs(&dir, "512m")?;
        Ok(Work { dir, prefix })
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }
}

fn mount_tmpfs(dir: &Path, size: &str) -> Result<()> {
    exec::quiet(&argv(&[
        "mount",
        "-t",
        "tmpfs",
        "-o",
        &format!("size={size},mode=0755"),
        "phantom-bench",
        &dir.to_string_lossy(),
    ]))
    .map_err(anyhow::Error::msg)?;
    with_state(|s| s.mounts.push(dir.to_path_buf()));
    Ok(())
}

/// Copy `binary` onto a fresh tmpfs at `dir` and remount it read-only, as
/// an install under a read-only /usr would be. Returns the copy's path.
pub fn read_only_copy(binary: &Path, dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    // phantom-server goes along: `phantom daemon` and the egress proxy
    // run the one beside the phantom that calls them.
    let server = binary.with_file_name("phantom-server");
    let server = server.is_file().then_some(server);
    let size = std::fs::metadata(binary)?.len()
        + server
            .as_ref()
            .and_then(|s| std::fs::metadata(s).ok())
            .map_or(0, |m| m.len());
    mount_tmpfs(dir, &format!("{}k", size / 1024 * 2 + 1024))?;
    let name = binary.file_name().context("binary has no file name")?;
    let copy = dir.join(name);
    std::fs::copy(binary, &copy)
        .with_context(|| format!("copy {} to {}", binary.display(), copy.display()))?;
    if let Some(s) = &server {
        let to = dir.join("phantom-server");
        std::fs::copy(s, &to)
            .with_context(|| format!("copy {} to {}", s.display(), to.display()))?;
    }
    exec::quiet(&argv(&[
        "mount",
        "-o",
        "remount,ro",
        &dir.to_string_lossy(),
    ]))
    .map_err(anyhow::Error::msg)?;
    let st = nix::sys::statvfs::statvfs(&copy)?;
    if !st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY) {
        bail!("{} is not on a read-only mount", copy.display());
    }
    Ok(copy)
}

/// A container that exists until [`untrack`]: cleanup force-deletes it.
pub fn track(id: &str, delete_force: Vec<String>) {
    with_state(|s| s.live.insert(id.to_string(), delete_force));
}

pub fn untrack(id: &str) {
    with_state(|s| s.live.remove(id));
}

/// Force-delete one tracked container now (after a failed command).
pub fn force_delete(id: &str) {
    if let Some(argv) = with_state(|s| s.live.remove(id)) {
        let _ = exec::quiet(&argv);
    }
}

fn argv(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// Undo everything; idempotent. Returns what could not be undone.
pub fn cleanup() -> Vec<String> {
    let state = {
        let mut g = match STATE.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            // Held by the panicking thread itself: nothing safe to do.
            Err(std::sync::TryLockError::WouldBlock) => return vec!["state locked".into()],
        };
        match g.as_mut() {
            Some(s) if !s.cleaned => {
                s.cleaned = true;
                std::mem::take(s)
            }
            _ => return Vec::new(),
        }
    };
    let mut problems = Vec::new();
    for (id, delete) in &state.live {
        if let Err(e) = exec::quiet(delete) {
            problems.push(format!("container {id}: {e}"));
        }
    }
    exec::reap_zombies();
    if !state.prefix.is_empty() {
        problems.extend(sweep_cgroups(Path::new("/sys/fs/cgroup"), &state.prefix));
    }
    for m in state.mounts.iter().rev() {
        let p = m.to_string_lossy();
        if exec::quiet(&argv(&["umount", &p])).is_err() {
            if let Err(e) = exec::quiet(&argv(&["umount", "-l", &p])) {
                problems.push(format!("umount {p}: {e}"));
            }
        }
    }
    for d in state.dirs.iter().rev() {
        if d.exists() {
            if let Err(e) = std::fs::remove_dir_all(d) {
                problems.push(format!("rm -r {}: {e}", d.display()));
            }
        }
    }
    problems
}

/// Remove cgroups named `prefix*` up to two levels below each hierarchy
/// (runtimes put a container without `cgroupsPath` at `/<id>` or
/// `/<runtime>/<id>`), killing anything left in them first.
fn sweep_cgroups(base: &Path, prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut level: Vec<PathBuf> = subdirs(base);
    // Level 0 is the hierarchies themselves, then two levels below.
    for _ in 0..3 {
        let mut next = Vec::new();
        for d in level {
            let matches = d
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix));
            if matches {
                found.push(d);
            } else {
                next.extend(subdirs(&d));
            }
        }
        level = next;
    }
    let mut problems = Vec::new();
    for cg in found {
        // Children first.
        let mut all = vec![cg.clone()];
        let mut i = 0;
        while i < all.len() {
            let kids = subdirs(&all[i]);
            all.extend(kids);
            i += 1;
        }
        for d in all.iter().rev() {
            if let Ok(procs) = std::fs::read_to_string(d.join("cgroup.procs")) {
                for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    // SAFETY: kill with integer arguments; the pid is in a
                    // cgroup named after one of this run's containers.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
            let mut ok = false;
            for _ in 0..50 {
                exec::reap_zombies();
                if std::fs::remove_dir(d).is_ok() {
                    ok = true;
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            if !ok {
                problems.push(format!("cgroup {} left behind", d.display()));
            }
        }
    }
    problems
}

fn subdirs(d: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(d)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_finds_prefixed_dirs_two_levels_down() {
        let base = std::env::temp_dir().join(format!("pb-sweep-{}", std::process::id()));
        for d in [
            "cpu/pbX-1/sub",
            "cpu/other",
            "memory/youki/pbX-2",
            "pids/a/b/pbX-3",
        ] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        let problems = sweep_cgroups(&base, "pbX-");
        assert!(problems.is_empty(), "{problems:?}");
        assert!(!base.join("cpu/pbX-1").exists());
        assert!(!base.join("memory/youki/pbX-2").exists());
        assert!(base.join("cpu/other").exists());
        // Three levels down is out of reach (and not where runtimes go).
        assert!(base.join("pids/a/b/pbX-3").exists());
        std::fs::remove_dir_all(&base).unwrap();
    }
}

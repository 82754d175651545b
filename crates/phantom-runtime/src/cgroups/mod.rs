//! The container's cgroup: a cgroupfs driver (no systemd) for cgroup v1,
//! cgroup v2 and hybrid hosts.
//!
//! ```text
//! let layout = Layout::detect()?;                       // /proc/self/mountinfo
//! let cg = Cgroup::resolve(&layout, linux.cgroups_path, id)?;  // store cg in state.json
//! cg.create()?;                                         // mkdir in every hierarchy
//! cg.apply(&resources_with_devices)?;                   // limits (see container_device_rules)
//! cg.add_pid(init_pid)?;                                // cgroup.procs everywhere
//! cg.freeze()? / cg.thaw()? / cg.pids()? / cg.stats()? / cg.oom_kill_count()
//! cg.destroy()?;                                        // rmdir everywhere, idempotent
//! ```
//!
//! **Layouts.** [`Layout::V2`]: one cgroup2 hierarchy. [`Layout::V1`]: one
//! hierarchy per v1 controller (plus named ones such as `name=systemd`),
//! and on a hybrid host the cgroup2 mount too. The hybrid rule: every
//! controller mounted as v1 is driven through v1; whatever is only on the
//! cgroup2 mount (hugetlb on some hosts, the freezer's `cgroup.freeze` if
//! no v1 freezer) is driven there; a setting whose controller is on
//! neither fails with an error naming the field and the missing file, and
//! a setting the kernel deprecated or cgroup v2 lacks and that changes no
//! isolation (kernel memory, swappiness on v2, ...) only logs a warning.
//!
//! **Paths** follow runc's cgroupfs driver: an absolute `linux.cgroupsPath`
//! is taken from each hierarchy's root; a relative one is taken from the
//! caller's own cgroup (v1: per hierarchy; pure v2: its parent, since the
//! caller's own cgroup holds processes and cannot delegate controllers);
//! with no `cgroupsPath` the container id is used as a relative path, as
//! runc does. ".." is rejected, and so is a path naming the root cgroup or
//! the caller's own.
//!
//! **Why plain file I/O and not `cgroups-rs`** (which DESIGN.md names):
//! cgroups-rs 0.5 hard-codes the v2 root to `/sys/fs/cgroup` (so no private
//! cgroup2 mount, no fixture directory, no `/sys/fs/cgroup/unified` on a
//! hybrid host), decides v1-or-v2 for the whole host where this host needs
//! both at once, has no eBPF device filter for v2, and pulls zbus (an async
//! D-Bus stack) and a second `nix` into a crate that must stay
//! single-threaded and small. Cgroup files are plain files: writing them
//! directly is a few hundred lines, each write maps to one config field,
//! and every error can name the file and the field.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

mod apply;
mod devices;
mod error;
mod fsio;
pub(crate) mod layout;
mod stats;
pub mod systemd;

pub use devices::{attached_device_programs, container_device_rules};
pub use error::{CgroupError, Result};
pub use layout::{Layout, Mount};

/// A container's cgroup, resolved to one directory per hierarchy. It is
/// plain data: store it in state.json and later commands (kill, pause,
/// events, delete) reopen the same directories without detecting again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cgroup {
    /// The normalised `cgroupsPath` (absolute, or relative to the
    /// runtime's own cgroup), for messages.
    pub path: String,
    /// cgroup v1: controller (or `name=X`) → directory. Co-mounted
    /// controllers map to the same directory. Empty on a pure v2 host.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub v1: BTreeMap<String, PathBuf>,
    /// The cgroup2 directory: the only one on a v2 host, the one in the
    /// unified mount on a hybrid host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unified: Option<PathBuf>,
    /// Where that cgroup2 hierarchy is mounted: `create` enables
    /// controllers from here down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unified_mount: Option<PathBuf>,
    /// The systemd unit that owns the cgroup (`--systemd-cgroup`); None
    /// for the cgroupfs driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systemd: Option<systemd::Unit>,
}

/// Where a controller's files are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target<'a> {
    V1(&'a Path),
    V2(&'a Path),
}

impl Cgroup {
    /// Resolve `linux.cgroupsPath` (None or "" → the container id, as runc)
    /// in every hierarchy of `layout`, relative to this process's cgroups.
    pub fn resolve(layout: &Layout, cgroups_path: Option<&str>, id: &str) -> Result<Cgroup> {
        let own = Path::new("/proc/self/cgroup");
        let text = fs::read_to_string(own)
            .map_err(|e| CgroupError::io("linux.cgroupsPath", "read", own, e))?;
        Cgroup::resolve_with(layout, &text, cgroups_path, id)
    }

    /// The systemd driver's cgroup: `cgroups_path` is `slice:prefix:name`
    /// (None or "": `system.slice:phantom:ID`), and the directories are
    /// where systemd puts that unit in every hierarchy.
    pub fn resolve_systemd(
        layout: &Layout,
        cgroups_path: Option<&str>,
        id: &str,
    ) -> Result<Cgroup> {
        let (unit, path) = systemd::parse(cgroups_path, id)?;
        let mut cg = Cgroup::resolve_with(layout, "", Some(&path), id)?;
        cg.path = cgroups_path
            .filter(|p| !p.is_empty())
            .unwrap_or(&path)
            .to_string();
        cg.systemd = Some(unit);
        Ok(cg)
    }

    /// Whether systemd owns this cgroup.
    pub fn uses_systemd(&self) -> bool {
        self.systemd.is_some()
    }

    /// systemd driver: ask systemd for the unit with `pid` (init, which
    /// has not run anything of the container yet) in it and the limits of
    /// `r` it has properties for, and wait until it is up. Then
    /// [`Cgroup::create`], [`Cgroup::apply`] and [`Cgroup::add_pid`] do
    /// the rest as for cgroupfs (controllers on the way down, the files
    /// systemd has no property for, hierarchies systemd does not manage).
    /// A no-op for the cgroupfs driver.
    pub fn start_unit(&self, pid: i32, r: &oci_spec::runtime::LinuxResources) -> Result<()> {
        let Some(unit) = &self.systemd else {
            return Ok(());
        };
        let mgr = systemd::manager::Manager::connect("start the systemd unit")?;
        let mut props = systemd::props::unit_props(unit, pid);
        props.extend(systemd::props::resource_props(r));
        mgr.start(&unit.name, &props)
    }

    /// `update`: the unit's properties first (systemd would otherwise put
    /// its own values back the next time it touches the cgroup), then the
    /// files, as [`Cgroup::apply`].
    pub fn update(&self, r: &oci_spec::runtime::LinuxResources) -> Result<()> {
        if let Some(unit) = &self.systemd {
            let props = systemd::props::resource_props(r);
            if !props.is_empty() {
                systemd::manager::Manager::connect("update the systemd unit")?
                    .set(&unit.name, &props)?;
            }
        }
        self.apply(r)
    }

    /// [`Cgroup::resolve`] with the text of /proc/self/cgroup given.
    pub fn resolve_with(
        layout: &Layout,
        proc_self_cgroup: &str,
        cgroups_path: Option<&str>,
        id: &str,
    ) -> Result<Cgroup> {
        let path = layout::normalise(cgroups_path, id)?;
        let own = layout::own_cgroups(proc_self_cgroup);
        let absolute = path.starts_with('/');
        let place = |mount: &Mount, own_path: Option<&String>, use_parent: bool| -> PathBuf {
            if absolute {
                return mount.path.join(path.trim_start_matches('/'));
            }
            let base = own_path.map_or("/".to_string(), |p| {
                if use_parent {
                    layout::parent(p)
                } else {
                    p.clone()
                }
            });
            let full = format!("{}/{}", base.trim_end_matches('/'), path);
            layout::in_mount(mount, &full)
        };
        let cg = match layout {
            Layout::V1 { mounts, unified } => Cgroup {
                systemd: None,
                v1: mounts
                    .iter()
                    .map(|(c, m)| (c.clone(), place(m, own.get(c), false)))
                    .collect(),
                unified: unified.as_ref().map(|m| place(m, own.get(""), false)),
                unified_mount: unified.as_ref().map(|m| m.path.clone()),
                path,
            },
            Layout::V2 { mount } => Cgroup {
                systemd: None,
                v1: BTreeMap::new(),
                unified: Some(place(mount, own.get(""), true)),
                unified_mount: Some(mount.path.clone()),
                path,
            },
        };
        Ok(cg)
    }

    /// True on a pure cgroup v2 host.
    pub fn is_v2(&self) -> bool {
        self.v1.is_empty()
    }

    /// Every directory of this cgroup, once each.
    pub fn dirs(&self) -> Vec<&Path> {
        let mut set: BTreeSet<&Path> = self.v1.values().map(PathBuf::as_path).collect();
        if let Some(u) = &self.unified {
            set.insert(u);
        }
        set.into_iter().collect()
    }

    /// Create the directory in every hierarchy. v1: a new cpuset cgroup
    /// gets its parent's cpus and mems (it starts empty and would refuse
    /// processes). v2: every controller the parents offer is enabled in
    /// their `cgroup.subtree_control` on the way down (as runc); one that
    /// cannot be enabled makes the settings that need it fail in `apply`.
    pub fn create(&self) -> Result<()> {
        let mut made: Vec<PathBuf> = Vec::new();
        let r = self.create_inner(&mut made);
        if r.is_err() {
            for d in made.iter().rev() {
                let _ = fs::remove_dir(d);
            }
        }
        r
    }

    fn create_inner(&self, made: &mut Vec<PathBuf>) -> Result<()> {
        let cpuset = self.v1.get("cpuset");
        for dir in self.v1.values().collect::<BTreeSet<_>>() {
            mkdir_p(dir, made)?;
            if Some(dir) == cpuset {
                // Every level, not only the ones we made: a concurrent
                // create may have made a parent and not filled it in yet,
                // and a child of an empty cpuset takes no task (ENOSPC).
                let mut chain = Vec::new();
                let mut cur = dir.as_path();
                while let Some(parent) = cur.parent().filter(|p| p.join("cpuset.cpus").exists()) {
                    chain.push(cur);
                    cur = parent;
                }
                for d in chain.into_iter().rev() {
                    inherit_cpuset(d)?;
                }
            }
        }
        match (&self.unified, &self.unified_mount) {
            // Pure v2: ancestors from the mount down to the parent, then
            // the cgroup, enabling every controller offered (as runc).
            (Some(dir), Some(mount)) if self.is_v2() => {
                let rel = dir.strip_prefix(mount).unwrap_or(Path::new(""));
                let mut cur = mount.clone();
                for comp in rel.components() {
                    enable_controllers(&cur, None);
                    cur.push(comp);
                    mkdir_p(&cur, made)?;
                }
            }
            // Hybrid: the cgroup2 directory only places the process, as in
            // runc's and crun's hybrid mode; nothing is enabled here. A
            // controller enabled in the cgroup2 root's subtree_control stays
            // bound to cgroup v2 (mounting it as v1 then fails with EBUSY)
            // and outlives every container, so only a setting that needs one
            // enables it, that one only ([`Cgroup::enable_v2`]).
            (Some(dir), _) => {
                mkdir_p(dir, made)?;
            }
            (None, _) => {}
        }
        Ok(())
    }

    /// On a hybrid host, enable the cgroup2 `controller` from the mount
    /// down to this cgroup, for a setting that is only possible there
    /// (hugetlb when it is not mounted as v1). False if it cannot be.
    pub(crate) fn enable_v2(&self, controller: &str) -> bool {
        let (Some(dir), Some(mount)) = (&self.unified, &self.unified_mount) else {
            return false;
        };
        let rel = dir.strip_prefix(mount).unwrap_or(Path::new(""));
        let mut cur = mount.clone();
        for comp in rel.components() {
            enable_controllers(&cur, Some(controller));
            cur.push(comp);
        }
        fsio::read_opt(&dir.join("cgroup.controllers"))
            .is_some_and(|c| c.split_whitespace().any(|c| c == controller))
    }

    /// Set the limits of `r` (only the fields that are present). The device
    /// list, if present, is the complete allowlist: build it with
    /// [`container_device_rules`] at create time; pass `devices: None` to
    /// leave device access alone (as `update` does). Call before
    /// [`Cgroup::add_pid`] so limits hold from the first instruction.
    pub fn apply(&self, r: &oci_spec::runtime::LinuxResources) -> Result<()> {
        apply::apply(self, r)
    }

    /// Move `pid` (all its threads) into the cgroup in every hierarchy.
    pub fn add_pid(&self, pid: i32) -> Result<()> {
        let field = format!("add pid {pid} to the cgroup");
        for dir in self.dirs() {
            let path = dir.join("cgroup.procs");
            let mut tries = 0;
            loop {
                match fsio::write_raw(&path, &pid.to_string()) {
                    Ok(()) => break,
                    // EINVAL: a task still being forked (TASK_NEW); retry as runc.
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) && tries < 5 => {
                        tries += 1;
                        sleep(Duration::from_millis(30));
                    }
                    Err(source) => {
                        return Err(CgroupError::Write {
                            hint: fsio::hint_for(&path, &source),
                            field,
                            path,
                            value: pid.to_string(),
                            source,
                        })
                    }
                }
            }
        }
        Ok(())
    }

    /// Every process in the cgroup and its sub-cgroups, sorted.
    pub fn pids(&self) -> Result<Vec<i32>> {
        let dir = ["pids", "freezer", "memory", "devices", "cpu"]
            .iter()
            .find_map(|c| self.v1.get(*c))
            .or(self.unified.as_ref())
            .or_else(|| self.v1.values().next())
            .ok_or_else(|| {
                CgroupError::invalid("list processes", &self.path, "the cgroup has no directory")
            })?;
        let mut out = BTreeSet::new();
        match collect_pids(dir, &mut out) {
            // Gone: systemd removes a transient scope once its last
            // process has exited (the systemd driver), so a `kill --all`
            // after the task's exit finds no directory, and no process.
            Err(CgroupError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            r => r?,
        }
        Ok(out.into_iter().collect())
    }

    fn freezer(&self, field: &str) -> Result<Target<'_>> {
        if let Some(d) = self.v1.get("freezer") {
            return Ok(Target::V1(d));
        }
        match &self.unified {
            Some(d) if fsio::exists(&d.join("cgroup.freeze")) => Ok(Target::V2(d)),
            Some(d) => Err(CgroupError::unsupported(
                field,
                d.join("cgroup.freeze"),
                "no v1 freezer is mounted and this kernel's cgroup2 has no cgroup.freeze (Linux < 5.2)",
            )),
            None => Err(CgroupError::unsupported(field, &self.path, "no freezer: neither a v1 freezer nor cgroup2")),
        }
    }

    /// Freeze every process (pause). v1: write FROZEN and wait while the
    /// state reads FREEZING (retrying as runc does); v2: write 1 to
    /// cgroup.freeze and wait for "frozen 1" in cgroup.events. A failed
    /// freeze is thawed back before the error is returned.
    pub fn freeze(&self) -> Result<()> {
        const FIELD: &str = "pause";
        match self.freezer(FIELD)? {
            Target::V1(d) => {
                let r = freeze_v1(d);
                if r.is_err() {
                    let _ = fsio::write_raw(&d.join("freezer.state"), "THAWED");
                }
                r
            }
            Target::V2(d) => {
                fsio::write(FIELD, d, "cgroup.freeze", "1")?;
                let events = d.join("cgroup.events");
                let start = Instant::now();
                loop {
                    let frozen = fsio::key_value(&events, "frozen");
                    if frozen == Some(1) {
                        return Ok(());
                    }
                    if start.elapsed() > FREEZE_TIMEOUT {
                        let _ = fsio::write_raw(&d.join("cgroup.freeze"), "0");
                        return Err(CgroupError::Timeout {
                            field: FIELD.into(),
                            path: events,
                            want: "frozen 1",
                            last: format!(
                                "frozen {}",
                                frozen.map_or("?".into(), |v| v.to_string())
                            ),
                            waited_ms: start.elapsed().as_millis() as u64,
                        });
                    }
                    sleep(Duration::from_millis(1));
                }
            }
        }
    }

    /// Thaw every process (resume).
    pub fn thaw(&self) -> Result<()> {
        const FIELD: &str = "resume";
        match self.freezer(FIELD)? {
            Target::V1(d) => fsio::write(FIELD, d, "freezer.state", "THAWED"),
            Target::V2(d) => fsio::write(FIELD, d, "cgroup.freeze", "0"),
        }
    }

    /// Whether the cgroup is frozen (or freezing) by us.
    pub fn is_frozen(&self) -> bool {
        match self.freezer("state") {
            Ok(Target::V1(d)) => fsio::read_opt(&d.join("freezer.state"))
                .is_some_and(|s| matches!(s.trim(), "FROZEN" | "FREEZING")),
            Ok(Target::V2(d)) => {
                fsio::read_opt(&d.join("cgroup.freeze")).is_some_and(|s| s.trim() == "1")
            }
            Err(_) => false,
        }
    }

    /// The `data` object of runc's `events --stats` (runc's types.Stats).
    pub fn stats(&self) -> Result<serde_json::Value> {
        stats::stats(self)
    }

    /// How many processes the OOM killer killed in this cgroup: v1
    /// memory.oom_control `oom_kill`, v2 memory.events `oom_kill`; 0 if
    /// unknown.
    pub fn oom_kill_count(&self) -> u64 {
        if let Some(d) = self.v1.get("memory") {
            return fsio::key_value(&d.join("memory.oom_control"), "oom_kill").unwrap_or(0);
        }
        self.unified
            .as_ref()
            .and_then(|d| fsio::key_value(&d.join("memory.events"), "oom_kill"))
            .unwrap_or(0)
    }

    /// Remove the directory (and any sub-cgroups the container made) in
    /// every hierarchy. The caller kills the processes first; EBUSY from
    /// exiting processes is retried for about a second. Directories that
    /// are already gone are fine, so this can run again after a failure.
    pub fn destroy(&self) -> Result<()> {
        let mut first_err = None;
        // systemd driver: stop the unit first (its processes get SIGTERM,
        // then SIGKILL, from systemd; ours are dead already), then remove
        // what systemd leaves of the delegated subtree.
        if let Some(unit) = &self.systemd {
            if let Err(e) = systemd::manager::Manager::connect("stop the systemd unit")
                .and_then(|m| m.stop(&unit.name))
            {
                first_err = Some(e);
            }
        }
        // One budget for all hierarchies: a cgroup that stays busy costs
        // about a second in total, not a second per hierarchy.
        let deadline = Instant::now() + Duration::from_secs(1);
        for dir in self.dirs() {
            if let Err(e) = remove_tree(dir, deadline) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

fn freeze_v1(d: &Path) -> Result<()> {
    const FIELD: &str = "pause";
    let state = d.join("freezer.state");
    let start = Instant::now();
    let mut last = String::new();
    // New processes appearing (fork, exec joining) can keep a v1 cgroup
    // FREEZING; an occasional thaw and sleep helps, as in runc.
    for i in 0..1000 {
        if i % 50 == 49 {
            let _ = fsio::write_raw(&state, "THAWED");
            sleep(Duration::from_millis(10));
        }
        fsio::write(FIELD, d, "freezer.state", "FROZEN")?;
        if i % 25 == 24 {
            sleep(Duration::from_micros(10));
        }
        last = fsio::read(FIELD, &state)?.trim().to_string();
        match last.as_str() {
            "FROZEN" => return Ok(()),
            "FREEZING" => continue,
            other => {
                return Err(CgroupError::invalid(
                    FIELD,
                    state,
                    format!("unexpected freezer state {other:?} after writing FROZEN"),
                ))
            }
        }
    }
    Err(CgroupError::Timeout {
        field: FIELD.into(),
        path: state,
        want: "FROZEN",
        last,
        waited_ms: start.elapsed().as_millis() as u64,
    })
}

/// mkdir -p; returns the directories it made, outermost first.
fn mkdir_p(dir: &Path, made: &mut Vec<PathBuf>) -> Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut cur = dir;
    while !cur.exists() {
        missing.push(cur.to_path_buf());
        match cur.parent() {
            Some(p) => cur = p,
            None => break,
        }
    }
    let mut new = Vec::new();
    for d in missing.into_iter().rev() {
        match fs::create_dir(&d) {
            Ok(()) => {
                made.push(d.clone());
                new.push(d);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(CgroupError::io("linux.cgroupsPath", "create cgroup", d, e)),
        }
    }
    Ok(new)
}

/// A new v1 cpuset cgroup has empty cpus and mems: copy the parent's.
fn inherit_cpuset(dir: &Path) -> Result<()> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let own = fsio::read_opt(&dir.join(file)).unwrap_or_default();
        if !own.trim().is_empty() {
            continue;
        }
        let from = fsio::read("linux.resources.cpu", &parent.join(file))?;
        if !from.trim().is_empty() {
            fsio::write("linux.resources.cpu", dir, file, from.trim())?;
        }
    }
    Ok(())
}

/// Enable in `dir/cgroup.subtree_control` every controller `dir` has (or
/// only `only`). Failures are left for `apply` to report against the field
/// that needs the controller.
fn enable_controllers(dir: &Path, only: Option<&str>) {
    let Some(avail) = fsio::read_opt(&dir.join("cgroup.controllers")) else {
        return;
    };
    let on = fsio::read_opt(&dir.join("cgroup.subtree_control")).unwrap_or_default();
    let on: BTreeSet<&str> = on.split_whitespace().collect();
    let want: Vec<&str> = avail
        .split_whitespace()
        .filter(|c| !on.contains(c) && only.is_none_or(|o| o == *c))
        .collect();
    if want.is_empty() {
        return;
    }
    let path = dir.join("cgroup.subtree_control");
    let all = want
        .iter()
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(" ");
    if fsio::write_raw(&path, &all).is_err() {
        for c in want {
            if let Err(e) = fsio::write_raw(&path, &format!("+{c}")) {
                tracing::debug!(path = %path.display(), controller = c, error = %e, "cannot enable controller");
            }
        }
    }
}

fn collect_pids(dir: &Path, out: &mut BTreeSet<i32>) -> Result<()> {
    const FIELD: &str = "list processes";
    let procs = dir.join("cgroup.procs");
    let text = fsio::read(FIELD, &procs)?;
    out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => return Err(CgroupError::io(FIELD, "read directory", dir, e)),
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            match collect_pids(&e.path(), out) {
                // A sub-cgroup removed meanwhile.
                Err(CgroupError::Read { source, .. })
                    if source.kind() == io::ErrorKind::NotFound => {}
                r => r?,
            }
        }
    }
    Ok(())
}

/// rmdir of `dir` and its sub-cgroups, deepest first; EBUSY is retried
/// until `deadline`.
fn remove_tree(dir: &Path, deadline: Instant) -> Result<()> {
    const FIELD: &str = "delete the cgroup";
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path(), deadline)?;
            }
        }
    }
    let mut delay = Duration::from_millis(5);
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(100));
            }
            Err(e) => {
                let what = if e.raw_os_error() == Some(libc::EBUSY) {
                    "remove (processes are still inside)"
                } else {
                    "remove"
                };
                return Err(CgroupError::io(FIELD, what, dir, e));
            }
        }
    }
}

#[cfg(test)]
mod tests;

//! The systemd cgroup driver (`--systemd-cgroup`): the container's cgroup
//! is a transient systemd unit, as with runc's and crun's systemd drivers.
//!
//! `linux.cgroupsPath` is `slice:prefix:name` (an empty slice is
//! `system.slice`; no `cgroupsPath` at all is `system.slice:phantom:ID`).
//! The unit is `prefix-name.scope` (`name.scope` without a prefix), or
//! `name` itself when it ends in `.slice`. Its cgroup is where systemd
//! puts it: the slice expanded as systemd does (`a-b.slice` is
//! `a.slice/a-b.slice`), then the unit, e.g.
//! `kubepods-burstable-pod1.slice:cri-containerd:abc` is
//! `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-abc.scope`.
//!
//! Lifecycle (following runc, whose limits sit on the scope itself, rather
//! than crun 1.8, which moves the process one level down into a
//! `container` sub-cgroup): `create` clones init first (it waits on the
//! sync channel, so nothing of the container has run), then asks systemd
//! for the unit with `StartTransientUnit` (`Delegate=yes`, the init pid,
//! the resources systemd has properties for), waits for the job, and then
//! writes every resource into the delegated cgroup's files as the cgroupfs
//! driver does, so settings systemd has no property for hold too. `update`
//! sets the unit's properties, then the files; `delete` stops the unit.
//! Pause, resume, events and ps read and write the unit's cgroup directly.
//!
//! D-Bus: [`manager`] through `zbus`, one connection per command, always
//! in the runtime's own process after init was cloned (zbus starts helper
//! threads, and nothing forks Rust code from that process afterwards).

use serde::{Deserialize, Serialize};

use super::error::{CgroupError, Result};

pub(crate) mod manager;
pub(crate) mod props;

/// The slice a container goes in when `cgroupsPath` names none.
pub const DEFAULT_SLICE: &str = "system.slice";
/// The unit prefix when the container has no `cgroupsPath`.
pub const DEFAULT_PREFIX: &str = "phantom";

/// The slice sandboxes and warm zygotes go in when systemd runs.
pub const SANDBOX_SLICE: &str = "phantom.slice";

/// Whether systemd is PID 1 here (sd_booted(3): /run/systemd/system is a
/// directory). Sandboxes and zygotes use the systemd driver when it is.
pub fn booted() -> bool {
    std::path::Path::new("/run/systemd/system").is_dir()
}

/// `cgroupsPath` of a sandbox or zygote under the systemd driver.
pub fn sandbox_cgroups_path(id: &str) -> String {
    format!("{SANDBOX_SLICE}:{DEFAULT_PREFIX}:{id}")
}

/// A container's systemd unit, kept in state.json with its cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Unit {
    /// `prefix-name.scope`, or a slice when the config names one.
    pub name: String,
    /// The slice the unit goes in (`system.slice`).
    pub slice: String,
}

impl Unit {
    /// True when the unit is a slice (no processes of its own: init joins
    /// it through `cgroup.procs`).
    pub fn is_slice(&self) -> bool {
        self.name.ends_with(".slice")
    }
}

/// The unit for `cgroupsPath` (or the container id) and its cgroup path
/// from the hierarchy root.
pub fn parse(cgroups_path: Option<&str>, id: &str) -> Result<(Unit, String)> {
    let raw = cgroups_path.unwrap_or("");
    let (slice, prefix, name) = if raw.is_empty() {
        (DEFAULT_SLICE, DEFAULT_PREFIX, id)
    } else {
        let parts: Vec<&str> = raw.split(':').collect();
        let [slice, prefix, name] = parts[..] else {
            return Err(invalid(
                raw,
                "expected cgroupsPath to be of format \"slice:prefix:name\" for systemd cgroups",
            ));
        };
        (slice, prefix, name)
    };
    let slice = if slice.is_empty() {
        DEFAULT_SLICE
    } else {
        slice
    };
    let slice_path = expand_slice(slice).map_err(|r| invalid(raw, &r))?;
    if name.is_empty() {
        return Err(invalid(
            raw,
            "the name part (after the second ':') is empty",
        ));
    }
    let unit = if name.ends_with(".slice") {
        // A slice of its own: it must be a valid slice name too.
        expand_slice(name).map_err(|r| invalid(raw, &r))?;
        name.to_string()
    } else if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    check_unit_name(&unit).map_err(|r| invalid(raw, &r))?;
    let path = format!("{}/{unit}", slice_path.trim_end_matches('/'));
    Ok((
        Unit {
            name: unit,
            slice: slice.to_string(),
        },
        path,
    ))
}

/// A slice's cgroup path as systemd makes it: each `-` opens a level.
/// `-.slice` is the root slice.
pub fn expand_slice(slice: &str) -> std::result::Result<String, String> {
    let Some(base) = slice.strip_suffix(".slice") else {
        return Err(format!("slice {slice:?} does not end in \".slice\""));
    };
    if slice.contains('/') {
        return Err(format!("slice {slice:?} contains '/'"));
    }
    if base == "-" {
        return Ok("/".to_string());
    }
    if base.is_empty() || base.starts_with('-') || base.ends_with('-') || base.contains("--") {
        return Err(format!(
            "slice {slice:?} is not a valid slice name (empty part between '-')"
        ));
    }
    let mut path = String::new();
    let mut prefix = String::new();
    for part in base.split('-') {
        path.push('/');
        path.push_str(&prefix);
        path.push_str(part);
        path.push_str(".slice");
        prefix.push_str(part);
        prefix.push('-');
    }
    check_unit_name(slice)?;
    Ok(path)
}

/// systemd's unit name rules: at most 255 bytes of `[A-Za-z0-9:_.\-@\\]`.
fn check_unit_name(name: &str) -> std::result::Result<(), String> {
    if name.len() > 255 {
        return Err(format!(
            "unit name {name:?} is longer than systemd's 255 bytes"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || ":_.-@\\".contains(*c)))
    {
        return Err(format!(
            "unit name {name:?} has {c:?}, which systemd does not allow in unit names"
        ));
    }
    Ok(())
}

fn invalid(path: &str, reason: &str) -> CgroupError {
    CgroupError::InvalidPath {
        path: path.to_string(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_expand_as_systemd_does() {
        assert_eq!(expand_slice("system.slice").unwrap(), "/system.slice");
        assert_eq!(expand_slice("-.slice").unwrap(), "/");
        assert_eq!(
            expand_slice("kubepods-burstable-podx.slice").unwrap(),
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podx.slice"
        );
        for bad in [
            "system",
            "a--b.slice",
            "-a.slice",
            "a-.slice",
            "a/b.slice",
            ".slice",
        ] {
            assert!(expand_slice(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cgroups_path_names_the_unit() {
        let (u, p) = parse(None, "abc").unwrap();
        assert_eq!(u.name, "phantom-abc.scope");
        assert_eq!(u.slice, "system.slice");
        assert_eq!(p, "/system.slice/phantom-abc.scope");

        let (u, p) = parse(
            Some("kubepods-burstable-pod1.slice:cri-containerd:abc"),
            "x",
        )
        .unwrap();
        assert_eq!(u.name, "cri-containerd-abc.scope");
        assert_eq!(
            p,
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-abc.scope"
        );

        // Podman: "machine.slice:libpod:ID"; empty slice and prefix.
        let (u, p) = parse(Some("::abc"), "x").unwrap();
        assert_eq!(
            (u.name.as_str(), p.as_str()),
            ("abc.scope", "/system.slice/abc.scope")
        );

        // A name ending in .slice makes a slice under the given one.
        let (u, p) = parse(Some("a.slice:p:a-b.slice"), "x").unwrap();
        assert!(u.is_slice());
        assert_eq!(p, "/a.slice/a-b.slice");
        let (_, p) = parse(Some("-.slice:p:x"), "x").unwrap();
        assert_eq!(p, "/p-x.scope");
    }

    #[test]
    fn bad_cgroups_paths_are_named() {
        for bad in [
            "/a/b",
            "a:b",
            "a.slice:b:c:d",
            "nope:p:n",
            "a.slice:p:",
            "a.slice:p:n/m",
            "a.slice:p:bad--.slice",
        ] {
            let e = parse(Some(bad), "x").unwrap_err().to_string();
            assert!(e.contains(bad), "{bad}: {e}");
        }
        let e = parse(Some("/a/b"), "x").unwrap_err().to_string();
        assert!(e.contains("slice:prefix:name"), "{e}");
    }
}

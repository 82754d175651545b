//! Checks of the container's filesystem: mounts, root, propagation, masked
//! and read-only paths, device nodes and the device cgroup.

use std::fs;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};

use serde_json::Value;

use super::Env;
use crate::outcome::Outcome;
use crate::procfs::{self, MountInfo};

/// Per-mount flags that show in mountinfo's per-mount options, with the
/// recursive (`r`-prefixed) spellings of the same flag.
const FLAGS: &[(&str, &str)] = &[
    ("ro", "ro"),
    ("rro", "ro"),
    ("rw", "rw"),
    ("nosuid", "nosuid"),
    ("rnosuid", "nosuid"),
    ("nodev", "nodev"),
    ("rnodev", "nodev"),
    ("noexec", "noexec"),
    ("rnoexec", "noexec"),
    ("noatime", "noatime"),
    ("rnoatime", "noatime"),
    ("nodiratime", "nodiratime"),
    ("rnodiratime", "nodiratime"),
    ("relatime", "relatime"),
    ("rrelatime", "relatime"),
    ("nosymfollow", "nosymfollow"),
    ("rnosymfollow", "nosymfollow"),
];

struct ConfigMount {
    destination: String,
    kind: String,
    options: Vec<String>,
}

impl ConfigMount {
    fn is_bind(&self) -> bool {
        self.kind == "bind" || self.options.iter().any(|o| o == "bind" || o == "rbind")
    }
}

fn config_mounts(env: &Env) -> Vec<ConfigMount> {
    env.spec_at("/mounts")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|m| {
                    Some(ConfigMount {
                        destination: m.get("destination")?.as_str()?.to_owned(),
                        kind: m
                            .get("type")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                        options: m
                            .get("options")
                            .and_then(Value::as_array)
                            .map(|o| {
                                o.iter()
                                    .filter_map(Value::as_str)
                                    .map(str::to_owned)
                                    .collect()
                            })
                            .unwrap_or_default(),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a mount of fstype `got` satisfies config type `want`.
fn type_matches(want: &str, got: &str) -> bool {
    match want {
        // On cgroup v1 and hybrid hosts runtimes put a tmpfs at the mount
        // point and one cgroup mount per hierarchy below it.
        "cgroup" => matches!(got, "cgroup" | "cgroup2" | "tmpfs"),
        _ => want == got,
    }
}

/// Every `mounts[]` destination is a mount point of the configured type.
pub fn mounts_exist(env: &Env) -> Outcome {
    let table = match env.mounts() {
        Ok(t) => t,
        Err(e) => return Outcome::Fail(e),
    };
    let wanted = config_mounts(env);
    if wanted.is_empty() {
        return Outcome::Skip("no mounts in config.json".into());
    }
    let mut problems = Vec::new();
    for m in &wanted {
        match procfs::mount_at(table, &m.destination) {
            None => problems.push(format!("{}: not a mount point", m.destination)),
            Some(got)
                if !m.is_bind() && !m.kind.is_empty() && !type_matches(&m.kind, &got.fstype) =>
            {
                problems.push(format!(
                    "{}: type {}, want {}",
                    m.destination, got.fstype, m.kind
                ));
            }
            Some(_) => {}
        }
    }
    Outcome::from_problems(problems)
}

fn parse_mode(s: &str) -> Option<u32> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8).ok()
}

/// Mount flags (ro, nosuid, nodev, noexec, atime flags) and the data
/// options mode/ptmxmode/uid/gid that mountinfo shows.
pub fn mounts_options(env: &Env) -> Outcome {
    let table = match env.mounts() {
        Ok(t) => t,
        Err(e) => return Outcome::Fail(e),
    };
    let mut problems = Vec::new();
    let mut checked = 0;
    for m in config_mounts(env) {
        let Some(got) = procfs::mount_at(table, &m.destination) else {
            continue; // reported by mounts.exist
        };
        let dest = &m.destination;
        for o in &m.options {
            checked += 1;
            if let Some((_, flag)) = FLAGS.iter().find(|(name, _)| name == o) {
                if !got.has_option(flag) {
                    problems.push(format!(
                        "{dest}: {o} asked, mounted {}",
                        got.options.join(",")
                    ));
                }
            } else if o == "strictatime" {
                if got.has_option("relatime") || got.has_option("noatime") {
                    problems.push(format!(
                        "{dest}: strictatime asked, mounted {}",
                        got.options.join(",")
                    ));
                }
            } else if let Some((key, value)) = o.split_once('=') {
                check_data_option(dest, got, key, value, &mut problems);
            }
        }
    }
    if checked == 0 {
        return Outcome::Skip("no mount options in config.json".into());
    }
    Outcome::from_problems(problems)
}

fn check_data_option(
    dest: &str,
    got: &MountInfo,
    key: &str,
    value: &str,
    problems: &mut Vec<String>,
) {
    match (key, got.fstype.as_str()) {
        // tmpfs omits mode= from mountinfo when it is the default; the
        // mount point's own mode is the reliable witness.
        ("mode", "tmpfs") => {
            let Some(want) = parse_mode(value) else {
                return;
            };
            match fs::metadata(dest) {
                Ok(md) if md.mode() & 0o7777 == want => {}
                Ok(md) => problems.push(format!(
                    "{dest}: mode={value} asked, directory mode is {:04o}",
                    md.mode() & 0o7777
                )),
                Err(e) => problems.push(format!("{dest}: stat: {e}")),
            }
        }
        ("mode" | "ptmxmode", _) => {
            let Some(want) = parse_mode(value) else {
                return;
            };
            if let Some(have) = got.super_option(key) {
                if parse_mode(have) != Some(want) {
                    problems.push(format!("{dest}: {key}={value} asked, mounted {key}={have}"));
                }
            }
        }
        ("uid" | "gid", _) => {
            if let Some(have) = got.super_option(key) {
                if have != value {
                    problems.push(format!("{dest}: {key}={value} asked, mounted {key}={have}"));
                }
            }
        }
        _ => {}
    }
}

/// `root.readonly`: `/` is mounted read-only (and writing fails with EROFS)
/// or read-write.
pub fn root_readonly(env: &Env) -> Outcome {
    let want = env
        .spec_at("/root/readonly")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let table = match env.mounts() {
        Ok(t) => t,
        Err(e) => return Outcome::Fail(e),
    };
    let Some(root) = procfs::mount_at(table, "/") else {
        return Outcome::Fail("no mount at / in mountinfo".into());
    };
    let ro = root.has_option("ro");
    if ro != want {
        return Outcome::Fail(format!(
            "/ is mounted {}, want {}",
            root.options.join(","),
            if want { "ro" } else { "rw" }
        ));
    }
    if want {
        let probe = format!("/.rst-probe-{}", std::process::id());
        match fs::create_dir(&probe) {
            Ok(()) => {
                let _ = fs::remove_dir(&probe);
                return Outcome::Fail("mkdir on / succeeded although / is read-only".into());
            }
            Err(e) if e.raw_os_error() == Some(libc::EROFS) => {}
            Err(e) => return Outcome::Fail(format!("mkdir on /: {e}, want EROFS")),
        }
    }
    Outcome::Pass
}

pub fn rootfs_propagation(env: &Env) -> Outcome {
    let Some(want) = env
        .spec_at("/linux/rootfsPropagation")
        .and_then(Value::as_str)
    else {
        return Outcome::Skip("linux.rootfsPropagation is not set in config.json".into());
    };
    let table = match env.mounts() {
        Ok(t) => t,
        Err(e) => return Outcome::Fail(e),
    };
    let Some(root) = procfs::mount_at(table, "/") else {
        return Outcome::Fail("no mount at / in mountinfo".into());
    };
    let has = |p: &str| root.optional.iter().any(|o| o.starts_with(p));
    let desc = if root.optional.is_empty() {
        "private".to_owned()
    } else {
        root.optional.join(" ")
    };
    let ok = match want.trim_start_matches('r') {
        "shared" => has("shared:"),
        "slave" => {
            let source_shared = env
                .host
                .get("rootfs_source_shared")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if !source_shared {
                return Outcome::Skip(
                    "the bundle's host mount is not shared, so a slave of it shows no master"
                        .into(),
                );
            }
            has("master:") && !has("shared:")
        }
        "private" => !has("shared:") && !has("master:") && !has("unbindable"),
        "unbindable" => has("unbindable"),
        other => return Outcome::Fail(format!("unknown propagation {other}")),
    };
    Outcome::check(ok, || format!("/ propagation is {desc}, want {want}"))
}

/// Masked paths cannot be read: a file reads as empty (or cannot be
/// opened), a directory is empty. A path that does not exist is fine.
pub fn masked_paths(env: &Env) -> Outcome {
    let Some(paths) = env.spec_at("/linux/maskedPaths").and_then(Value::as_array) else {
        return Outcome::Skip("linux.maskedPaths is not set in config.json".into());
    };
    let mut problems = Vec::new();
    for p in paths.iter().filter_map(Value::as_str) {
        let md = match fs::metadata(p) {
            Ok(md) => md,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)) => continue,
            Err(e) => {
                problems.push(format!("{p}: stat: {e}"));
                continue;
            }
        };
        if md.is_dir() {
            match fs::read_dir(p) {
                Ok(mut it) => {
                    if let Some(Ok(e)) = it.next() {
                        problems.push(format!(
                            "{p}: directory is readable (has {:?})",
                            e.file_name()
                        ));
                    }
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)) => {}
                Err(e) => problems.push(format!("{p}: readdir: {e}")),
            }
        } else {
            let f = fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(p);
            match f {
                Ok(mut f) => {
                    let mut buf = [0u8; 1];
                    match f.read(&mut buf) {
                        Ok(0) => {}
                        Ok(_) => problems.push(format!("{p}: file is readable")),
                        Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)) => {}
                        Err(e) => problems.push(format!("{p}: read: {e}")),
                    }
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)) => {}
                Err(e) => problems.push(format!("{p}: open: {e}")),
            }
        }
    }
    Outcome::from_problems(problems)
}

/// Read-only paths sit on a read-only mount; the suite's own paths (under
/// `/rst-`) are also probed with a write.
pub fn readonly_paths(env: &Env) -> Outcome {
    let Some(paths) = env
        .spec_at("/linux/readonlyPaths")
        .and_then(Value::as_array)
    else {
        return Outcome::Skip("linux.readonlyPaths is not set in config.json".into());
    };
    let table = match env.mounts() {
        Ok(t) => t,
        Err(e) => return Outcome::Fail(e),
    };
    let mut problems = Vec::new();
    for p in paths.iter().filter_map(Value::as_str) {
        let md = match fs::metadata(p) {
            Ok(md) => md,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => {
                problems.push(format!("{p}: stat: {e}"));
                continue;
            }
        };
        match procfs::mount_containing(table, p) {
            Some(m) if m.has_option("ro") => {}
            Some(m) => problems.push(format!(
                "{p}: on mount {} ({})",
                m.mount_point,
                m.options.join(",")
            )),
            None => problems.push(format!("{p}: no mount contains it")),
        }
        if p.starts_with("/rst-") {
            let r = if md.is_dir() {
                let probe = format!("{p}/.rst-probe");
                fs::write(&probe, b"x").inspect(|_| {
                    let _ = fs::remove_file(&probe);
                })
            } else {
                fs::OpenOptions::new().write(true).open(p).map(drop)
            };
            match r {
                Err(e) if e.raw_os_error() == Some(libc::EROFS) => {}
                Err(e) => problems.push(format!("{p}: write failed with {e}, want EROFS")),
                Ok(()) => problems.push(format!("{p}: writable")),
            }
        }
    }
    Outcome::from_problems(problems)
}

fn file_kind(ft: &fs::FileType) -> &'static str {
    if ft.is_char_device() {
        "c"
    } else if ft.is_block_device() {
        "b"
    } else if ft.is_fifo() {
        "p"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_dir() {
        "dir"
    } else {
        "file"
    }
}

/// Each `linux.devices` entry exists with its type, numbers, mode and owner.
pub fn devices(env: &Env) -> Outcome {
    let Some(list) = env.spec_at("/linux/devices").and_then(Value::as_array) else {
        return Outcome::Skip("linux.devices is not set in config.json".into());
    };
    let mut problems = Vec::new();
    for d in list {
        let path = d.get("path").and_then(Value::as_str).unwrap_or("?");
        let md = match fs::symlink_metadata(path) {
            Ok(md) => md,
            Err(e) => {
                problems.push(format!("{path}: {e}"));
                continue;
            }
        };
        let want_kind = match d.get("type").and_then(Value::as_str) {
            Some("u") => "c",
            Some(k) => k,
            None => "?",
        };
        let kind = file_kind(&md.file_type());
        if kind != want_kind {
            problems.push(format!("{path}: is {kind}, want {want_kind}"));
            continue;
        }
        if kind != "p" {
            let want = (
                d.get("major").and_then(Value::as_u64).unwrap_or(0),
                d.get("minor").and_then(Value::as_u64).unwrap_or(0),
            );
            let got = procfs::major_minor(md.rdev());
            if got != want {
                problems.push(format!("{path}: device {got:?}, want {want:?}"));
            }
        }
        if let Some(mode) = d.get("fileMode").and_then(Value::as_u64) {
            let got = u64::from(md.mode() & 0o7777);
            if got != mode & 0o7777 {
                problems.push(format!(
                    "{path}: mode {got:04o}, want {:04o}",
                    mode & 0o7777
                ));
            }
        }
        for (key, got) in [("uid", md.uid()), ("gid", md.gid())] {
            if let Some(want) = d.get(key).and_then(Value::as_u64) {
                if u64::from(got) != want {
                    problems.push(format!("{path}: {key} {got}, want {want}"));
                }
            }
        }
    }
    Outcome::from_problems(problems)
}

/// The devices config-linux.md requires in every container.
const DEFAULT_DEVICES: &[(&str, u64, u64)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

pub fn default_devices(_env: &Env) -> Outcome {
    let mut problems = Vec::new();
    for (path, major, minor) in DEFAULT_DEVICES {
        match fs::symlink_metadata(path) {
            Ok(md) if md.file_type().is_char_device() => {
                let got = procfs::major_minor(md.rdev());
                if got != (*major, *minor) {
                    problems.push(format!("{path}: device {got:?}, want ({major}, {minor})"));
                }
            }
            Ok(md) => problems.push(format!("{path}: is {}, want c", file_kind(&md.file_type()))),
            Err(e) => problems.push(format!("{path}: {e}")),
        }
    }
    // /dev/ptmx: "a bind-mount or symlink of the container's /dev/pts/ptmx".
    match (fs::metadata("/dev/ptmx"), fs::metadata("/dev/pts/ptmx")) {
        (Ok(a), Ok(b)) if a.dev() == b.dev() && a.ino() == b.ino() => {}
        (Ok(a), Ok(b)) => problems.push(format!(
            "/dev/ptmx is not the container's /dev/pts/ptmx (dev {:?} ino {} vs dev {:?} ino {})",
            procfs::major_minor(a.dev()),
            a.ino(),
            procfs::major_minor(b.dev()),
            b.ino()
        )),
        (Err(e), _) => problems.push(format!("/dev/ptmx: {e}")),
        (_, Err(e)) => problems.push(format!("/dev/pts/ptmx: {e}")),
    }
    Outcome::from_problems(problems)
}

/// runtime-linux.md, "Dev symbolic links".
pub fn dev_symlinks(_env: &Env) -> Outcome {
    let mut problems = Vec::new();
    for (link, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        match fs::read_link(link) {
            Ok(t) if t.as_os_str() == target => {}
            Ok(t) => problems.push(format!("{link} -> {}, want {target}", t.display())),
            Err(e) => problems.push(format!("{link}: {e}")),
        }
    }
    Outcome::from_problems(problems)
}

/// Whether `linux.resources.devices` allows reading a device, applying the
/// rules in order (the last match wins); no match means the parent's
/// default, which allows.
fn cgroup_allows(rules: &[Value], kind: &str, major: u64, minor: u64) -> bool {
    let mut allowed = true;
    for r in rules {
        let t = r.get("type").and_then(Value::as_str).unwrap_or("a");
        let access = r.get("access").and_then(Value::as_str).unwrap_or("rwm");
        let num = |k: &str, v: u64| match r.get(k).and_then(Value::as_i64) {
            None | Some(-1) => true,
            Some(n) => u64::try_from(n) == Ok(v),
        };
        if (t == "a" || t == kind)
            && num("major", major)
            && num("minor", minor)
            && access.contains('r')
        {
            allowed = r.get("allow").and_then(Value::as_bool).unwrap_or(false);
        }
    }
    allowed
}

/// The device cgroup: opening a configured node that the rules deny fails
/// with EPERM, one they allow does not. Default devices are skipped (every
/// runtime adds allow rules for them).
pub fn device_cgroup(env: &Env) -> Outcome {
    let rules = env
        .spec_at("/linux/resources/devices")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let Some(nodes) = env.spec_at("/linux/devices").and_then(Value::as_array) else {
        return Outcome::Skip("linux.devices is not set in config.json".into());
    };
    let mut problems = Vec::new();
    let mut tested = 0;
    for d in nodes {
        let path = d.get("path").and_then(Value::as_str).unwrap_or("?");
        let kind = d.get("type").and_then(Value::as_str).unwrap_or("?");
        let major = d.get("major").and_then(Value::as_u64).unwrap_or(0);
        let minor = d.get("minor").and_then(Value::as_u64).unwrap_or(0);
        let is_default = kind == "c"
            && (DEFAULT_DEVICES
                .iter()
                .any(|(_, a, b)| (*a, *b) == (major, minor))
                || major == 136
                || (major == 5 && minor <= 2));
        if is_default || !(kind == "c" || kind == "b") {
            continue;
        }
        tested += 1;
        let allowed = cgroup_allows(&rules, kind, major, minor);
        let r = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path);
        let eperm = matches!(&r, Err(e) if e.raw_os_error() == Some(libc::EPERM));
        if allowed && eperm {
            problems.push(format!(
                "{path}: allowed by the rules, open failed with EPERM"
            ));
        } else if !allowed && !eperm {
            problems.push(format!(
                "{path}: denied by the rules, open gave {}",
                match r {
                    Ok(_) => "success".to_owned(),
                    Err(e) => e.to_string(),
                }
            ));
        }
    }
    if tested == 0 {
        return Outcome::Skip("no non-default char/block device in linux.devices".into());
    }
    Outcome::from_problems(problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn device_rules_last_match_wins() {
        let rules = vec![
            json!({"allow": false, "access": "rwm"}),
            json!({"allow": true, "type": "b", "major": 7, "minor": 0, "access": "m"}),
            json!({"allow": true, "type": "c", "major": 1, "access": "r"}),
        ];
        assert!(!cgroup_allows(&rules, "b", 7, 0));
        assert!(cgroup_allows(&rules, "c", 1, 9));
        assert!(!cgroup_allows(&rules, "c", 2, 9));
        assert!(cgroup_allows(&[], "c", 2, 9));
    }
}

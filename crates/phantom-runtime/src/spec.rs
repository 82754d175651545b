//! Loading and checking a bundle's config.json. Every error names the
//! field that is wrong (`linux.namespaces[2].type`) so that a user, or the
//! containerd shim that shows the last error line, can fix it.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{Error, Result};

/// Read and parse `<bundle>/config.json`.
pub fn load(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    let data = std::fs::read(&path).map_err(|e| Error::io("cannot read", &path, e))?;
    parse(&data)
}

/// Parse config.json bytes; a parse error carries the JSON path of the
/// field that failed and the line and column.
pub fn parse(data: &[u8]) -> Result<Spec> {
    let spec = parse_json(data, "")?;
    let raw: serde_json::Value =
        serde_json::from_slice(data).map_err(|e| Error::config("(syntax)", e.to_string()))?;
    check_required(&raw)?;
    Ok(spec)
}

/// Fields the spec marks REQUIRED that oci-spec fills with a default when
/// they are missing (a missing `rlimits[0].soft` would silently become 0
/// and fail later as "Too many open files"): each is named when absent.
fn check_required(raw: &serde_json::Value) -> Result<()> {
    use serde_json::Value;
    fn each<'a>(v: &'a Value, at: &str) -> impl Iterator<Item = (String, &'a Value)> + 'a {
        let at = at.to_string();
        v.as_array()
            .into_iter()
            .flatten()
            .enumerate()
            .map(move |(i, e)| (format!("{at}[{i}]"), e))
    }
    fn need(v: &Value, at: &str, fields: &[&str], section: &str) -> Result<()> {
        if !v.is_object() {
            return Ok(());
        }
        for f in fields {
            if v.get(f).is_none_or(Value::is_null) {
                return Err(Error::config(
                    format!("{at}.{f}"),
                    format!("missing (REQUIRED by the runtime spec, {section})"),
                ));
            }
        }
        Ok(())
    }
    let process = &raw["process"];
    need(process, "process", &["cwd"], "config.md \"Process\"")?;
    need(
        &process["user"],
        "process.user",
        &["uid", "gid"],
        "config.md \"User\"",
    )?;
    for (at, r) in each(&process["rlimits"], "process.rlimits") {
        need(r, &at, &["type", "soft", "hard"], "config.md \"Process\"")?;
    }
    need(&raw["root"], "root", &["path"], "config.md \"Root\"")?;
    for (at, m) in each(&raw["mounts"], "mounts") {
        need(m, &at, &["destination"], "config.md \"Mounts\"")?;
    }
    if let Some(hooks) = raw["hooks"].as_object() {
        for (kind, list) in hooks {
            for (at, h) in each(list, &format!("hooks.{kind}")) {
                need(h, &at, &["path"], "config.md \"POSIX-platform Hooks\"")?;
            }
        }
    }
    let linux = &raw["linux"];
    for (at, n) in each(&linux["namespaces"], "linux.namespaces") {
        need(n, &at, &["type"], "config-linux.md \"Namespaces\"")?;
    }
    for field in ["uidMappings", "gidMappings"] {
        for (at, m) in each(&linux[field], &format!("linux.{field}")) {
            let section = "config-linux.md \"User namespace mappings\"";
            need(m, &at, &["containerID", "hostID", "size"], section)?;
        }
    }
    for (at, d) in each(&linux["devices"], "linux.devices") {
        need(d, &at, &["type", "path"], "config-linux.md \"Devices\"")?;
    }
    let resources = &linux["resources"];
    for (at, d) in each(&resources["devices"], "linux.resources.devices") {
        need(
            d,
            &at,
            &["allow"],
            "config-linux.md \"Allowed Device list\"",
        )?;
    }
    for (at, h) in each(
        &resources["hugepageLimits"],
        "linux.resources.hugepageLimits",
    ) {
        need(
            h,
            &at,
            &["pageSize", "limit"],
            "config-linux.md \"Huge page limits\"",
        )?;
    }
    let seccomp = &linux["seccomp"];
    need(
        seccomp,
        "linux.seccomp",
        &["defaultAction"],
        "config-linux.md \"Seccomp\"",
    )?;
    for (at, sc) in each(&seccomp["syscalls"], "linux.seccomp.syscalls") {
        need(sc, &at, &["names", "action"], "config-linux.md \"Seccomp\"")?;
    }
    Ok(())
}

/// Deserialise JSON, naming the field that failed (prefixed by `what`).
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(data: &[u8], what: &str) -> Result<T> {
    let de = &mut serde_json::Deserializer::from_slice(data);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = match e.path().to_string() {
            p if p == "." || p == "?" => "(syntax)".to_string(),
            p => p,
        };
        Error::config(format!("{what}{field}"), e.into_inner().to_string())
    })
}

/// Parse a process.json (`exec --process`), naming the failing field.
pub fn parse_process(data: &[u8]) -> Result<oci_spec::runtime::Process> {
    parse_json(data, "process.json: ")
}

/// The bundle as an absolute path, checked to be a directory.
pub fn bundle_dir(bundle: &Path) -> Result<PathBuf> {
    let abs =
        std::fs::canonicalize(bundle).map_err(|e| Error::io("bundle does not exist", bundle, e))?;
    if !abs.is_dir() {
        return Err(Error::io(
            "bundle is not a directory",
            abs,
            std::io::Error::from_raw_os_error(libc::ENOTDIR),
        ));
    }
    Ok(abs)
}

/// Checks the spec requires of a config beyond its JSON shape.
pub fn validate(spec: &Spec, bundle: &Path) -> Result<PathBuf> {
    let root = spec.root().as_ref().ok_or_else(|| {
        Error::config("root", "missing: a Linux container needs a root filesystem")
    })?;
    if root.path().as_os_str().is_empty() {
        return Err(Error::config(
            "root.path",
            "empty: it must name the container's root filesystem",
        ));
    }
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };
    let rootfs = std::fs::canonicalize(&rootfs)
        .map_err(|e| Error::config("root.path", format!("rootfs {}: {e}", rootfs.display())))?;
    if !rootfs.is_dir() {
        return Err(Error::config(
            "root.path",
            format!("rootfs {} is not a directory", rootfs.display()),
        ));
    }

    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::config("process", "missing: nothing to run"))?;
    match process.args() {
        Some(a) if !a.is_empty() => {}
        _ => return Err(Error::config("process.args", "must name a program to run")),
    }
    if !process.cwd().is_absolute() {
        return Err(Error::config(
            "process.cwd",
            format!("{} is not an absolute path", process.cwd().display()),
        ));
    }

    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| Error::config("linux", "missing: phantom runs Linux containers"))?;
    let namespaces = linux.namespaces().clone().unwrap_or_default();
    let mut seen = Vec::new();
    for (i, ns) in namespaces.iter().enumerate() {
        if seen.contains(&ns.typ()) {
            return Err(Error::config(
                format!("linux.namespaces[{i}].type"),
                format!("namespace {} listed twice", ns.typ()),
            ));
        }
        seen.push(ns.typ());
        if let Some(p) = ns.path() {
            if !p.is_absolute() {
                return Err(Error::config(
                    format!("linux.namespaces[{i}].path"),
                    format!("{} is not an absolute path", p.display()),
                ));
            }
        }
    }
    let has = |t: LinuxNamespaceType| namespaces.iter().any(|n| n.typ() == t);
    // config.md "Hostname": a hostname needs a UTS namespace of its own.
    if spec.hostname().as_deref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts) {
        return Err(Error::config(
            "hostname",
            "setting a hostname requires a uts namespace in linux.namespaces",
        ));
    }
    if spec.domainname().as_deref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts)
    {
        return Err(Error::config(
            "domainname",
            "setting a domainname requires a uts namespace in linux.namespaces",
        ));
    }
    let maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if maps && !has(LinuxNamespaceType::User) {
        return Err(Error::config(
            "linux.uidMappings",
            "id mappings require a user namespace in linux.namespaces",
        ));
    }
    if has(LinuxNamespaceType::User)
        && namespaces
            .iter()
            .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none())
        && !maps
    {
        return Err(Error::config(
            "linux.uidMappings",
            "a new user namespace needs uidMappings and gidMappings",
        ));
    }
    if let Some(sysctl) = linux.sysctl() {
        for key in sysctl.keys() {
            if key.contains("..") || key.contains('/') && key.contains('.') {
                return Err(Error::config(
                    format!("linux.sysctl.{key}"),
                    "not a valid sysctl name",
                ));
            }
        }
    }
    for (i, m) in spec.mounts().clone().unwrap_or_default().iter().enumerate() {
        if !m.destination().is_absolute() {
            return Err(Error::config(
                format!("mounts[{i}].destination"),
                format!("{} is not an absolute path", m.destination().display()),
            ));
        }
    }
    Ok(rootfs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_error_names_field() {
        let bad = br#"{"ociVersion":"1.0.2","process":{"cwd":"/","user":{"uid":"x","gid":0}}}"#;
        let e = parse(bad).unwrap_err().to_string();
        assert!(e.contains("process.user.uid"), "{e}");
        let e = parse(b"{not json").unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn missing_required_fields_are_named() {
        let base = |process: &str, extra: &str| {
            format!(
                r#"{{"ociVersion":"1.0.2","root":{{"path":"rootfs"}},
                "process":{{"cwd":"/","args":["sh"],"user":{{"uid":0,"gid":0}}{process}}}{extra}}}"#
            )
        };
        for (process, extra, field) in [
            (
                r#","rlimits":[{"type":"RLIMIT_NOFILE","hard":1024}]"#,
                "",
                "process.rlimits[0].soft",
            ),
            (
                r#","rlimits":[{"type":"RLIMIT_NOFILE","soft":1}]"#,
                "",
                "process.rlimits[0].hard",
            ),
            (
                "",
                r#","mounts":[{"type":"tmpfs","source":"tmpfs"}]"#,
                "mounts[0].destination",
            ),
            (
                "",
                r#","linux":{"namespaces":[{"path":"/proc/1/ns/net"}]}"#,
                "linux.namespaces[0].type",
            ),
            (
                "",
                r#","hooks":{"prestart":[{"args":["x"]}]}"#,
                "hooks.prestart[0].path",
            ),
            (
                "",
                r#","linux":{"seccomp":{"syscalls":[]}}"#,
                "linux.seccomp.defaultAction",
            ),
        ] {
            let text = base(process, extra);
            let e = parse(text.as_bytes()).unwrap_err().to_string();
            // Either ours, or oci-spec's own for fields it has no default for.
            let (parent, leaf) = field.rsplit_once('.').unwrap();
            let theirs = format!("{parent}: missing field `{leaf}`");
            assert!(e.contains(field) || e.contains(&theirs), "{field}: {e}");
        }
        let e = parse(
            br#"{"ociVersion":"1.0.2","root":{},"process":{"cwd":"/","user":{"uid":0,"gid":0}}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("root.path"), "{e}");
        assert!(parse(base("", "").as_bytes()).is_ok());
    }

    #[test]
    fn unknown_capability_is_rejected() {
        let bad = br#"{"ociVersion":"1.0.2","process":{"cwd":"/","user":{"uid":0,"gid":0},
            "capabilities":{"bounding":["CAP_CHOWN","CAP_BOGUS"]}}}"#;
        let e = parse(bad).unwrap_err().to_string();
        assert!(e.contains("process.capabilities.bounding[1]"), "{e}");
        assert!(e.contains("CAP_BOGUS"), "{e}");
    }

    #[test]
    fn validate_checks_rootfs_and_namespaces() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = |extra: &str| {
            format!(
                r#"{{"ociVersion":"1.0.2","root":{{"path":"rootfs"}},
                "process":{{"cwd":"/","args":["sh"],"user":{{"uid":0,"gid":0}}}},
                "linux":{{"namespaces":[{{"type":"pid"}}]}}{extra}}}"#
            )
        };
        let spec = parse(cfg("").as_bytes()).unwrap();
        let e = validate(&spec, tmp.path()).unwrap_err().to_string();
        assert!(e.contains("root.path"), "{e}");
        std::fs::create_dir(tmp.path().join("rootfs")).unwrap();
        assert!(validate(&spec, tmp.path()).is_ok());
        let spec = parse(cfg(r#","hostname":"h""#).as_bytes()).unwrap();
        let e = validate(&spec, tmp.path()).unwrap_err().to_string();
        assert!(e.contains("hostname"), "{e}");
    }
}

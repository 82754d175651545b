//! The bundles every runtime runs: one busybox rootfs (hack/make-rootfs.sh)
//! shared by several config.json files that `phantom spec` starts from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::seccomp;

/// The bundles a row template may name as `{bundle:NAME}`: the busybox ones
/// ([`variants`]), then python-dev's config as a bundle ([`python_dev`]).
pub const NAMES: [&str; 7] = [
    "plain",
    "netns",
    "seccomp",
    "sleep",
    "pydev-true",
    "pydev-python",
    "egress-profiles",
];

pub struct Bundles {
    pub dirs: BTreeMap<&'static str, PathBuf>,
    /// Rules in the converted seccomp section (for the report).
    pub seccomp_rules: usize,
}

impl Bundles {
    pub fn path(&self, name: &str) -> Option<String> {
        self.dirs
            .get(name)
            .map(|p| p.to_string_lossy().into_owned())
    }
}

/// Build the rootfs under `dir/base`, then one bundle per name in [`NAMES`].
/// Copies of the configs go to `keep` for the record.
pub fn build(
    dir: &Path,
    keep: &Path,
    repo: &Path,
    phantom: &Path,
    seccomp_profile: &Path,
) -> Result<Bundles> {
    let base = dir.join("base");
    std::fs::create_dir_all(&base)?;
    let script = repo.join("hack/make-rootfs.sh");
    let out = Command::new(&script)
        .arg(&base)
        .output()
        .with_context(|| format!("run {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let out = Command::new(phantom)
        .arg("spec")
        .current_dir(&base)
        .output()
        .with_context(|| format!("run {} spec", phantom.display()))?;
    if !out.status.success() {
        bail!(
            "phantom spec failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let spec: Value = serde_json::from_str(&std::fs::read_to_string(base.join("config.json"))?)
        .context("parse the config.json phantom spec wrote")?;

    let profile: Value = serde_json::from_str(
        &std::fs::read_to_string(seccomp_profile)
            .with_context(|| format!("read {}", seccomp_profile.display()))?,
    )
    .with_context(|| format!("parse {}", seccomp_profile.display()))?;
    let mut configs = variants(
        &spec,
        &base.join("rootfs"),
        &profile,
        seccomp::native_arch()?,
        seccomp::kernel_version(),
    )?;

    // python-dev's config.json: the host's /usr, /lib... bound into an
    // empty read-only rootfs, its seccomp filter, a workspace of its own.
    let out = Command::new(phantom)
        .args(["spec", "--profile", "python-dev"])
        .output()
        .with_context(|| format!("run {} spec --profile python-dev", phantom.display()))?;
    if !out.status.success() {
        bail!(
            "phantom spec --profile python-dev failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let pydev: Value = serde_json::from_slice(&out.stdout)
        .context("parse the config.json of `phantom spec --profile python-dev`")?;
    let pydev_dir = dir.join("pydev");
    for d in ["rootfs", "workspace"] {
        std::fs::create_dir_all(pydev_dir.join(d))?;
    }
    configs.extend(python_dev(
        &pydev,
        &pydev_dir.join("rootfs"),
        &pydev_dir.join("workspace"),
    )?);
    let seccomp_rules = configs["seccomp"]["linux"]["seccomp"]["syscalls"]
        .as_array()
        .map_or(0, Vec::len);

    std::fs::create_dir_all(keep)?;
    let mut dirs = BTreeMap::new();
    for (name, config) in configs {
        let d = dir.join(name);
        std::fs::create_dir_all(&d)?;
        let text = serde_json::to_string_pretty(&config)?;
        std::fs::write(d.join("config.json"), &text)?;
        std::fs::write(keep.join(format!("{name}.json")), &text)?;
        dirs.insert(name, d);
    }
    // `{bundle:egress-profiles}` is a --profile-path, not a bundle: python-dev
    // with the host's network as `egress-bench`, which `--network none` and
    // `--network egress` narrow (the egress rows, docs/egress.md).
    let pd = dir.join("egress-profiles");
    std::fs::create_dir_all(&pd)?;
    let yaml = repo.join("profiles/python-dev.yaml");
    let text = std::fs::read_to_string(&yaml)
        .with_context(|| format!("read {}", yaml.display()))?
        .replacen("profile: python-dev", "profile: egress-bench", 1)
        .replacen("network: { mode: loopback }", "network: { mode: host }", 1);
    std::fs::write(pd.join("egress-bench.yaml"), text)?;
    dirs.insert("egress-profiles", pd);
    Ok(Bundles {
        dirs,
        seccomp_rules,
    })
}

/// The config.json of each bundle, from `phantom spec`'s.
pub fn variants(
    spec: &Value,
    rootfs: &Path,
    seccomp_profile: &Value,
    arch: (&str, &str),
    kernel: Option<(u64, u64)>,
) -> Result<BTreeMap<&'static str, Value>> {
    let mut netns = spec.clone();
    netns["process"]["terminal"] = json!(false);
    netns["process"]["args"] = json!(["/bin/true"]);
    netns["root"]["path"] = json!(rootfs.to_string_lossy());
    let namespaces = netns["linux"]["namespaces"]
        .as_array_mut()
        .context("spec has no linux.namespaces")?;
    if !namespaces.iter().any(|n| n["type"] == "network") {
        namespaces.push(json!({"type": "network"}));
    }

    let mut plain = netns.clone();
    if let Some(ns) = plain["linux"]["namespaces"].as_array_mut() {
        ns.retain(|n| n["type"] != "network");
    }

    let caps: Vec<String> = plain["process"]["capabilities"]["bounding"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let mut with_seccomp = plain.clone();
    with_seccomp["linux"]["seccomp"] =
        seccomp::podman_to_oci(seccomp_profile, &caps, arch, kernel)?;

    let mut sleep = plain.clone();
    sleep["process"]["args"] = json!(["sleep", "3600"]);

    Ok(NAMES
        .iter()
        .copied()
        .zip([plain, netns, with_seccomp, sleep])
        .collect())
}

/// `pydev-true` and `pydev-python`: `phantom spec --profile python-dev`'s
/// config with `rootfs` (empty: crun makes the mount points) and
/// `workspace` filled in, running `/bin/true` and `python3 -c pass`.
pub fn python_dev(
    spec: &Value,
    rootfs: &Path,
    workspace: &Path,
) -> Result<BTreeMap<&'static str, Value>> {
    let mut base = spec.clone();
    base["process"]["terminal"] = json!(false);
    base["root"]["path"] = json!(rootfs.to_string_lossy());
    let ws = base["mounts"]
        .as_array_mut()
        .context("python-dev's config has no mounts")?
        .iter_mut()
        .find(|m| m["destination"] == "/workspace")
        .context("python-dev's config mounts no /workspace")?;
    ws["source"] = json!(workspace.to_string_lossy());
    let mut t = base.clone();
    t["process"]["args"] = json!(["/bin/true"]);
    let mut py = base;
    py["process"]["args"] = json!(["python3", "-c", "pass"]);
    Ok([("pydev-true", t), ("pydev-python", py)]
        .into_iter()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_differ_only_where_they_should() {
        let spec = json!({
            "ociVersion": "1.0.2",
            "process": {"terminal": true, "args": ["sh"],
                        "capabilities": {"bounding": ["CAP_KILL"]}},
            "root": {"path": "rootfs", "readonly": true},
            "linux": {"namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "mount"}]}
        });
        let profile = json!({"defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]});
        let v = variants(
            &spec,
            Path::new("/b/rootfs"),
            &profile,
            ("amd64", "SCMP_ARCH_X86_64"),
            None,
        )
        .unwrap();
        assert_eq!(v.keys().copied().collect::<Vec<_>>().len(), 4);
        for n in &NAMES[..4] {
            let c = &v[n];
            assert_eq!(c["process"]["terminal"], false);
            assert_eq!(c["root"]["path"], "/b/rootfs");
            assert_eq!(c["ociVersion"], "1.0.2");
        }
        let has_net = |n: &str| {
            v[n]["linux"]["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["type"] == "network")
        };
        assert!(has_net("netns"));
        assert!(!has_net("plain") && !has_net("seccomp") && !has_net("sleep"));
        assert_eq!(v["plain"]["process"]["args"], json!(["/bin/true"]));
        assert_eq!(v["sleep"]["process"]["args"], json!(["sleep", "3600"]));
        assert!(v["plain"]["linux"].get("seccomp").is_none());
        assert_eq!(
            v["seccomp"]["linux"]["seccomp"]["syscalls"][0]["names"][0],
            "read"
        );
    }

    #[test]
    fn python_dev_bundles_fill_rootfs_workspace_and_args() {
        let spec = json!({
            "process": {"terminal": true, "args": ["python3"]},
            "root": {"path": "rootfs", "readonly": true},
            "mounts": [{"destination": "/usr", "source": "/usr"},
                       {"destination": "/workspace", "source": "/path/to/workspace"}]
        });
        let v = python_dev(&spec, Path::new("/p/rootfs"), Path::new("/p/ws")).unwrap();
        assert_eq!(
            v.keys().copied().collect::<Vec<_>>(),
            ["pydev-python", "pydev-true"]
        );
        for c in v.values() {
            assert_eq!(c["root"]["path"], "/p/rootfs");
            assert_eq!(c["mounts"][1]["source"], "/p/ws");
            assert_eq!(c["mounts"][0]["source"], "/usr");
            assert_eq!(c["process"]["terminal"], false);
        }
        assert_eq!(v["pydev-true"]["process"]["args"], json!(["/bin/true"]));
        assert_eq!(
            v["pydev-python"]["process"]["args"],
            json!(["python3", "-c", "pass"])
        );
    }
}

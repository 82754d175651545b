//! Shared by the integration tests: Podman's default profile, turned into the
//! `linux.seccomp` section Podman writes into config.json.

#![allow(dead_code)] // each test binary uses a part

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxSeccomp;
use phantom_policy::TargetArch;
use serde_json::{json, Value};

/// Podman's default capabilities (containers.conf `default_capabilities`).
pub const PODMAN_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
];

/// The copy of `/usr/share/containers/seccomp.json` (golang-github-containers-common
/// 0.50.1+ds1-4, Debian 12) committed with the tests.
pub fn committed_podman_profile() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/podman-seccomp.json")
}

pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What containers/common does to its profile for a container: keep the rules whose
/// `includes`/`excludes` (arches, caps) fit `arch` and `caps`, and list the arch with its
/// sub-arches from `archMap`.
pub fn podman_to_oci(profile: &Value, arch: TargetArch, caps: &[&str]) -> LinuxSeccomp {
    let (go_arch, scmp_arch) = match arch {
        TargetArch::X86_64 => ("amd64", "SCMP_ARCH_X86_64"),
        TargetArch::Aarch64 => ("arm64", "SCMP_ARCH_AARCH64"),
    };
    let strings = |v: &Value, key: &str| -> Vec<String> {
        v.get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut architectures = vec![scmp_arch.to_owned()];
    for m in profile["archMap"].as_array().unwrap() {
        if m["architecture"] == scmp_arch {
            architectures.extend(strings(m, "subArchitectures"));
        }
    }
    let mut syscalls = Vec::new();
    for rule in profile["syscalls"].as_array().unwrap() {
        let inc = &rule["includes"];
        let exc = &rule["excludes"];
        let inc_arches = strings(inc, "arches");
        let inc_caps = strings(inc, "caps");
        if !inc_arches.is_empty() && !inc_arches.iter().any(|a| a == go_arch) {
            continue;
        }
        if strings(exc, "arches").iter().any(|a| a == go_arch) {
            continue;
        }
        if !inc_caps.iter().all(|c| caps.contains(&c.as_str())) {
            continue;
        }
        if strings(exc, "caps")
            .iter()
            .any(|c| caps.contains(&c.as_str()))
        {
            continue;
        }
        let mut r = json!({"names": rule["names"], "action": rule["action"]});
        for key in ["errnoRet", "args"] {
            if let Some(v) = rule.get(key).filter(|v| !v.is_null()) {
                r[key] = v.clone();
            }
        }
        syscalls.push(r);
    }
    let mut oci = json!({
        "defaultAction": profile["defaultAction"],
        "architectures": architectures,
        "syscalls": syscalls,
    });
    if let Some(e) = profile.get("defaultErrnoRet") {
        oci["defaultErrnoRet"] = e.clone();
    }
    serde_json::from_value(oci).expect("valid linux.seccomp")
}

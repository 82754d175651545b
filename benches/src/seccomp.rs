//! Podman's default seccomp profile (`/usr/share/containers/seccomp.json`,
//! containers-common's format) turned into an OCI `linux.seccomp` section the
//! way Podman does it (containers/common `pkg/seccomp/seccomp_linux.go`,
//! `setupSeccomp`): the native arch and its sub-arches from `archMap`; a rule
//! is kept when every `includes.caps` is in the container's bounding set and
//! `includes.arches` names the native arch, and dropped when any
//! `excludes.caps` is in the bounding set or `excludes.arches` names the
//! native arch; `minKernel` compares with the running kernel.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Map, Value};

/// The native arch as the profile names it: (Go arch, libseccomp arch).
pub fn native_arch() -> Result<(&'static str, &'static str)> {
    match std::env::consts::ARCH {
        "x86_64" => Ok(("amd64", "SCMP_ARCH_X86_64")),
        "aarch64" => Ok(("arm64", "SCMP_ARCH_AARCH64")),
        other => bail!("no seccomp arch mapping for {other}"),
    }
}

/// The running kernel's (major, minor), for `minKernel`.
pub fn kernel_version() -> Option<(u64, u64)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    parse_kernel(&release)
}

fn parse_kernel(s: &str) -> Option<(u64, u64)> {
    let mut it = s.trim().split(['.', '-']);
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

fn strings(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Convert `profile` for a container whose bounding set is `caps`.
pub fn podman_to_oci(
    profile: &Value,
    caps: &[String],
    (go_arch, scmp_arch): (&str, &str),
    kernel: Option<(u64, u64)>,
) -> Result<Value> {
    let has_cap = |c: &str| caps.iter().any(|k| k == c);
    let min_kernel_ok = |v: Option<&Value>| -> Result<Option<bool>> {
        let Some(s) = v.and_then(Value::as_str).filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let want = parse_kernel(s).ok_or_else(|| anyhow!("bad minKernel {s:?}"))?;
        let have = kernel.ok_or_else(|| anyhow!("minKernel {s:?} but kernel version unknown"))?;
        Ok(Some(have >= want))
    };

    let mut out = Map::new();
    let listed = strings(profile.get("architectures"));
    let arch_map = profile.get("archMap").and_then(Value::as_array);
    if !listed.is_empty() && arch_map.is_some_and(|m| !m.is_empty()) {
        bail!("both 'architectures' and 'archMap' are specified in the seccomp profile");
    }
    let mut arches: Vec<String> = listed.iter().map(|s| s.to_string()).collect();
    for entry in arch_map.into_iter().flatten() {
        if entry.get("architecture").and_then(Value::as_str) == Some(scmp_arch) {
            arches.push(scmp_arch.to_string());
            arches.extend(
                strings(entry.get("subArchitectures"))
                    .into_iter()
                    .map(String::from),
            );
            break;
        }
    }
    out.insert(
        "defaultAction".into(),
        profile
            .get("defaultAction")
            .cloned()
            .context("profile has no defaultAction")?,
    );
    if let Some(e) = profile.get("defaultErrnoRet") {
        out.insert("defaultErrnoRet".into(), e.clone());
    }
    if !arches.is_empty() {
        out.insert("architectures".into(), json!(arches));
    }

    let mut syscalls = Vec::new();
    for (i, call) in profile
        .get("syscalls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let inc = call.get("includes").unwrap_or(&Value::Null);
        let exc = call.get("excludes").unwrap_or(&Value::Null);
        let ctx = || format!("syscalls[{i}]");
        if strings(exc.get("arches")).contains(&go_arch)
            || strings(exc.get("caps")).iter().any(|c| has_cap(c))
            || min_kernel_ok(exc.get("minKernel")).with_context(ctx)? == Some(true)
        {
            continue;
        }
        let inc_arches = strings(inc.get("arches"));
        if (!inc_arches.is_empty() && !inc_arches.contains(&go_arch))
            || !strings(inc.get("caps")).iter().all(|c| has_cap(c))
            || min_kernel_ok(inc.get("minKernel")).with_context(ctx)? == Some(false)
        {
            continue;
        }
        let mut rule = Map::new();
        rule.insert(
            "names".into(),
            call.get("names").cloned().unwrap_or(json!([])),
        );
        rule.insert(
            "action".into(),
            call.get("action").cloned().with_context(ctx)?,
        );
        let args: Vec<Value> = call
            .get("args")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|a| {
                let mut arg = Map::new();
                for k in ["index", "value"] {
                    arg.insert(k.into(), a.get(k).cloned().unwrap_or(json!(0)));
                }
                // runtime-spec's valueTwo is `omitempty`.
                if let Some(v2) = a.get("valueTwo").filter(|v| v.as_u64() != Some(0)) {
                    arg.insert("valueTwo".into(), v2.clone());
                }
                arg.insert("op".into(), a.get("op").cloned().unwrap_or(Value::Null));
                Value::Object(arg)
            })
            .collect();
        if !args.is_empty() {
            rule.insert("args".into(), Value::Array(args));
        }
        if let Some(e) = call.get("errnoRet") {
            rule.insert("errnoRet".into(), e.clone());
        }
        syscalls.push(Value::Object(rule));
    }
    out.insert("syscalls".into(), Value::Array(syscalls));
    if let Some(flags) = profile.get("flags").filter(|f| !f.is_null()) {
        out.insert("flags".into(), flags.clone());
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testdata(name: &str) -> Value {
        let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    /// Podman 4.3.1 wrote `podman-run-config.json` on this machine from the
    /// same profile: the conversion must give exactly its seccomp section.
    #[test]
    fn matches_what_podman_wrote() {
        let podman = testdata("podman-run-config.json");
        let caps: Vec<String> =
            serde_json::from_value(podman["process"]["capabilities"]["bounding"].clone()).unwrap();
        let got = podman_to_oci(
            &testdata("containers-seccomp.json"),
            &caps,
            ("amd64", "SCMP_ARCH_X86_64"),
            Some((6, 1)),
        )
        .unwrap();
        assert_eq!(got, podman["linux"]["seccomp"]);
    }

    #[test]
    fn caps_and_arches_select_rules() {
        let profile = json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "archMap": [{"architecture": "SCMP_ARCH_X86_64",
                         "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}],
            "syscalls": [
                {"names": ["a"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["b"], "action": "SCMP_ACT_ERRNO", "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["c"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm64"]}},
                {"names": ["d"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["amd64"]}},
                {"names": ["e"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
                {"names": ["f"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "7.0"}},
            ]
        });
        let got = podman_to_oci(
            &profile,
            &["CAP_KILL".into()],
            ("amd64", "SCMP_ARCH_X86_64"),
            Some((6, 18)),
        )
        .unwrap();
        let names: Vec<&str> = got["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["names"][0].as_str().unwrap())
            .collect();
        assert_eq!(names, ["b", "e"]);
        assert_eq!(
            got["architectures"],
            json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
        );
    }

    #[test]
    fn kernel_release_parses() {
        assert_eq!(parse_kernel("6.18.0-rc1\n"), Some((6, 18)));
        assert_eq!(parse_kernel("5.10"), Some((5, 10)));
    }
}

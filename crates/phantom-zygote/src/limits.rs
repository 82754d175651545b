//! Limits of one sandbox or request (memory, CPUs, pids), checked the same
//! way whether they come from `phantom run` flags or the REST API.

use anyhow::{anyhow, bail, Context, Result};
use phantom_policy::profile::Resources;

/// A memory size: `512MiB`, `1.5G`, `64m`, `1048576` (phantom_policy::units).
pub fn parse_memory(s: &str) -> Result<u64> {
    Ok(phantom_policy::units::parse_size(s)?)
}

/// The limits given (unset ones stay `None`: the profile's own apply).
/// Errors name the field as `{prefix}memory` etc. (`--` for flags).
pub fn check(
    memory: Option<&str>,
    cpus: Option<f64>,
    pids: Option<i64>,
    prefix: &str,
) -> Result<Resources> {
    let mut r = Resources::default();
    if let Some(m) = memory {
        r.memory = Some(parse_memory(m).with_context(|| format!("{prefix}memory"))?);
    }
    if let Some(c) = cpus {
        if !(c > 0.0 && c.is_finite()) {
            bail!("{prefix}cpus {c}: must be a positive number of CPUs");
        }
        r.cpu = Some(c);
    }
    if let Some(p) = pids {
        if p < 1 {
            bail!("{prefix}pids {p}: must be at least 1");
        }
        r.pids = Some(p);
    }
    Ok(r)
}

/// A workspace size (`workspace_size` in a body, `--workspace-size`): the
/// profile parser's sizes, at least a page (a smaller tmpfs holds nothing).
pub fn check_workspace(size: Option<&str>, prefix: &str) -> Result<Option<u64>> {
    let Some(text) = size else {
        return Ok(None);
    };
    let field = format!(
        "{prefix}workspace{}size",
        if prefix == "--" { "-" } else { "_" }
    );
    let n =
        phantom_policy::profile::parse_size(text).map_err(|e| anyhow!("{field} {text:?}: {e}"))?;
    if n < 4096 {
        bail!("{field} {text:?}: smaller than one page (4KiB)");
    }
    Ok(Some(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_limits() {
        assert_eq!(parse_memory("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_memory("2g").unwrap(), 2 << 30);
        assert_eq!(parse_memory("1.5K").unwrap(), 1536);
        assert!(parse_memory("lots").is_err());
        assert!(parse_memory("5 parsecs").is_err());
        assert!(parse_memory("0").is_err());
        let e = check(Some("x"), None, None, "--").unwrap_err();
        assert!(format!("{e:#}").starts_with("--memory: "), "{e:#}");
        let e = check(None, Some(0.0), None, "").unwrap_err();
        assert_eq!(e.to_string(), "cpus 0: must be a positive number of CPUs");
        assert!(check(None, None, Some(0), "--").is_err());
        assert_eq!(check_workspace(Some("8MiB"), "").unwrap(), Some(8 << 20));
        assert_eq!(check_workspace(None, "").unwrap(), None);
        let e = check_workspace(Some("100"), "").unwrap_err();
        assert!(e.to_string().starts_with("workspace_size \"100\""), "{e}");
        assert!(check_workspace(Some("lots"), "--").is_err());
        let r = check(Some("64m"), Some(1.5), Some(10), "").unwrap();
        assert_eq!(
            (r.memory, r.cpu, r.pids),
            (Some(64 << 20), Some(1.5), Some(10))
        );
    }
}

//! API keys for network listeners (the daemon's REST API, MCP over HTTP).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// Which API key a request came with (its line number, never the key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyId(pub String);

/// Reads the API keys file: one key per line, `#` comments; the file must
/// not be readable or writable by group or others.
pub fn load_keys(path: &Path) -> Result<Vec<(String, KeyId)>> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("--api-keys {}: cannot read", path.display()))?;
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "--api-keys {}: mode is {mode:04o}; it holds secrets, so it must be 0600 (chmod 600 {})",
            path.display(),
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--api-keys {}: cannot read", path.display()))?;
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let k = line.trim();
        if k.is_empty() || k.starts_with('#') {
            continue;
        }
        if k.len() < 16 {
            bail!(
                "--api-keys {}: the key on line {} is shorter than 16 characters",
                path.display(),
                i + 1
            );
        }
        keys.push((k.to_string(), KeyId(format!("key@line{}", i + 1))));
    }
    if keys.is_empty() {
        bail!("--api-keys {}: no keys in the file", path.display());
    }
    Ok(keys)
}

/// Compares in time independent of where the inputs differ.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The key among `keys` that `presented` is, if any (every key is compared).
pub fn find<'a>(keys: &'a [(String, KeyId)], presented: &str) -> Option<&'a KeyId> {
    let mut found = None;
    for (k, id) in keys {
        if ct_eq(k.as_bytes(), presented.as_bytes()) {
            found = Some(id);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_file_mode() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("keys");
        std::fs::write(&p, "# comment\nabcdefghijklmnopqrstuvwxyz\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load_keys(&p).unwrap_err().to_string().contains("0600"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let k = load_keys(&p).unwrap();
        assert_eq!(k.len(), 1);
        assert_eq!(k[0].1, KeyId("key@line2".into()));
        assert_eq!(find(&k, "abcdefghijklmnopqrstuvwxyz"), Some(&k[0].1));
        assert_eq!(find(&k, "abcdefghijklmnopqrstuvwxyZ"), None);
    }
}

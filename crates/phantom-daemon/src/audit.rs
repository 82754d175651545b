//! The audit log: one JSON object per API request, appended.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result};
use serde_json::Value;

pub struct Audit {
    file: Mutex<std::fs::File>,
}

impl Audit {
    pub fn open(path: &Path) -> Result<Audit> {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)
                .with_context(|| format!("--audit-log: create {}", d.display()))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("--audit-log {}: cannot open", path.display()))?;
        Ok(Audit {
            file: Mutex::new(file),
        })
    }

    /// Appends `entry` as one line. One write per line, so concurrent
    /// requests never interleave within a line.
    pub fn record(&self, entry: &Value) {
        let mut line = entry.to_string();
        line.push('\n');
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = f.write_all(line.as_bytes()) {
            tracing::error!("audit log: {e}");
        }
    }
}

/// Now as RFC 3339 UTC with milliseconds: the runtime's timestamp (the
/// one `state` prints, with nanoseconds) cut to three digits.
pub fn now_rfc3339() -> String {
    let mut t = phantom_runtime::state::rfc3339_now();
    // "...SS.nnnnnnnnnZ": drop the last six digits and the Z, put Z back.
    t.truncate(t.len() - 7);
    t.push('Z');
    t
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamp_shape() {
        let t = super::now_rfc3339();
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'), "{t}");
    }
}

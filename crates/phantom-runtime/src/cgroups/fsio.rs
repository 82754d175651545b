//! Cgroup files are plain files: one `write(2)` per value, no O_CREAT (a
//! missing file means a missing controller or kernel feature, never a file
//! to create), read whole. Unit tests record every write in order.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::error::{CgroupError, Result};

#[cfg(test)]
thread_local! {
    /// Every successful write of this test thread: (file, value).
    pub(crate) static WRITES: std::cell::RefCell<Vec<(std::path::PathBuf, String)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Take the writes recorded so far on this thread (tests only).
#[cfg(test)]
pub(crate) fn take_writes() -> Vec<(std::path::PathBuf, String)> {
    WRITES.with(|w| std::mem::take(&mut *w.borrow_mut()))
}

pub(crate) fn write_raw(path: &Path, value: &str) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)?;
    f.write_all(value.as_bytes())?;
    #[cfg(test)]
    WRITES.with(|w| w.borrow_mut().push((path.to_path_buf(), value.to_string())));
    Ok(())
}

/// Write `value` to `dir/file` for config field `field`.
pub(crate) fn write(field: &str, dir: &Path, file: &str, value: &str) -> Result<()> {
    let path = dir.join(file);
    write_raw(&path, value).map_err(|source| CgroupError::Write {
        field: field.to_string(),
        hint: hint_for(&path, &source),
        path,
        value: value.to_string(),
        source,
    })
}

/// A short explanation for the usual errno values of cgroup files.
pub(crate) fn hint_for(path: &Path, e: &io::Error) -> String {
    let file = path.file_name().and_then(|f| f.to_str()).unwrap_or("");
    match e.raw_os_error() {
        Some(libc::ENOENT) if path.parent().is_some_and(|d| !d.exists()) => {
            "; the cgroup directory does not exist".to_string()
        }
        Some(libc::ENOENT) => {
            let ctrl = file.split('.').next().unwrap_or(file);
            format!("; the kernel offers no {file} here (is the {ctrl} controller enabled for this cgroup?)")
        }
        Some(libc::EINVAL) => "; the kernel rejected the value".to_string(),
        Some(libc::EBUSY) => {
            "; the cgroup is busy (value below current usage, or the cgroup has children)"
                .to_string()
        }
        Some(libc::EACCES) | Some(libc::EPERM) => {
            "; permission denied by the kernel or the parent cgroup".to_string()
        }
        _ => String::new(),
    }
}

pub(crate) fn read(field: &str, path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|source| CgroupError::Read {
        field: field.to_string(),
        path: path.to_path_buf(),
        source,
    })
}

/// Read a file, `None` if it does not exist or cannot be read.
pub(crate) fn read_opt(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok()
}

/// Parse a cgroup number; "max" is `u64::MAX`, "-1" (v1 unlimited) too.
pub(crate) fn parse_u64(s: &str) -> Option<u64> {
    let s = s.trim();
    match s {
        "max" | "-1" => Some(u64::MAX),
        _ => s.parse().ok(),
    }
}

/// A single number file, `None` if missing or unparsable.
pub(crate) fn read_u64(path: &Path) -> Option<u64> {
    read_opt(path).as_deref().and_then(parse_u64)
}

/// "key value" lines (memory.stat, cpu.stat, memory.events, cgroup.events).
pub(crate) fn key_values(text: &str) -> Vec<(&str, u64)> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let k = it.next()?;
            let v = parse_u64(it.next()?)?;
            Some((k, v))
        })
        .collect()
}

/// The value of `key` in a "key value" file.
pub(crate) fn key_value(path: &Path, key: &str) -> Option<u64> {
    let text = read_opt(path)?;
    key_values(&text)
        .into_iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

pub(crate) fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

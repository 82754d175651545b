//! Files of a sandbox's workspace, reached from the host without trusting
//! anything the sandbox wrote: every path is relative, has no `..`, and is
//! resolved with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` from an
//! fd of the workspace directory, so a symlink the sandbox planted (even
//! one swapped in between two calls) is refused by the kernel.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, mkdirat, Mode, SFlag};

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("path {0:?}: {1}")]
    BadPath(String, &'static str),
    #[error("path {0:?}: a symlink or a path outside the workspace (refused)")]
    Escapes(String),
    #[error("path {0:?}: no such file or directory")]
    NotFound(String),
    #[error("path {0:?}: {1}")]
    Kind(String, &'static str),
    #[error("path {0:?}: the file is {1} bytes, more than the limit of {2}")]
    TooBig(String, u64, u64),
    #[error("path {0:?}: {1}")]
    Io(String, std::io::Error),
}

/// Checks a caller's path: relative, normal components only.
pub fn check_path(p: &str) -> Result<Vec<String>, FileError> {
    if p.is_empty() {
        return Err(FileError::BadPath(p.into(), "empty path"));
    }
    if p.contains('\0') {
        return Err(FileError::BadPath(p.into(), "contains a NUL byte"));
    }
    let path = Path::new(p);
    if path.is_absolute() {
        return Err(FileError::BadPath(
            p.into(),
            "absolute paths are refused; give a path relative to the workspace",
        ));
    }
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(FileError::BadPath(
                    p.into(),
                    "`..` is refused: paths stay inside the workspace",
                ))
            }
            _ => return Err(FileError::BadPath(p.into(), "not a relative path")),
        }
    }
    Ok(parts)
}

fn how(flags: OFlag, mode: Mode) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .mode(mode)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS)
}

fn map(p: &str, e: Errno) -> FileError {
    match e {
        Errno::EXDEV | Errno::ELOOP => FileError::Escapes(p.into()),
        Errno::ENOENT => FileError::NotFound(p.into()),
        Errno::ENOTDIR => FileError::Kind(p.into(), "a component is not a directory"),
        Errno::EISDIR => FileError::Kind(p.into(), "is a directory"),
        e => FileError::Io(p.into(), std::io::Error::from(e)),
    }
}

fn open_root(root: &Path) -> Result<OwnedFd, FileError> {
    let f = File::open(root).map_err(|e| FileError::Io(root.display().to_string(), e))?;
    Ok(f.into())
}

fn open_beneath<Fd: AsFd>(
    dir: Fd,
    rel: &str,
    shown: &str,
    flags: OFlag,
    mode: Mode,
) -> Result<OwnedFd, FileError> {
    openat2(dir, rel, how(flags, mode)).map_err(|e| map(shown, e))
}

/// Writes `data` to `rel` under `root`, creating parent directories.
pub fn write(root: &Path, rel: &str, data: &[u8]) -> Result<(), FileError> {
    let parts = check_path(rel)?;
    let Some((last, parents)) = parts.split_last() else {
        return Err(FileError::BadPath(rel.into(), "names the workspace itself"));
    };
    let mut dir = open_root(root)?;
    for comp in parents {
        match mkdirat(&dir, comp.as_str(), Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(map(rel, e)),
        }
        dir = open_beneath(
            &dir,
            comp,
            rel,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY,
            Mode::empty(),
        )?;
    }
    let fd = open_beneath(
        &dir,
        last,
        rel,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_NONBLOCK,
        Mode::from_bits_truncate(0o644),
    )?;
    let st = fstat(&fd).map_err(|e| map(rel, e))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(FileError::Kind(rel.into(), "not a regular file"));
    }
    let mut f = File::from(fd);
    f.write_all(data).map_err(|e| FileError::Io(rel.into(), e))
}

/// Reads at most `max` bytes of the regular file `rel` under `root`.
pub fn read(root: &Path, rel: &str, max: u64) -> Result<Vec<u8>, FileError> {
    check_path(rel)?;
    let dir = open_root(root)?;
    let fd = open_beneath(
        &dir,
        rel,
        rel,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK,
        Mode::empty(),
    )?;
    let st = fstat(&fd).map_err(|e| map(rel, e))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(FileError::Kind(rel.into(), "not a regular file"));
    }
    let size = u64::try_from(st.st_size).unwrap_or(0);
    if size > max {
        return Err(FileError::TooBig(rel.into(), size, max));
    }
    let mut buf = Vec::new();
    File::from(fd)
        .take(max)
        .read_to_end(&mut buf)
        .map_err(|e| FileError::Io(rel.into(), e))?;
    Ok(buf)
}

#[derive(Debug, serde::Serialize)]
pub struct Entry {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub size: u64,
}

/// Lists `rel` (a directory under `root`; "" or "." is the workspace),
/// recursively up to `depth` levels, at most `limit` entries. Symlinks are
/// listed as such and never followed.
pub fn list(root: &Path, rel: &str, depth: usize, limit: usize) -> Result<Vec<Entry>, FileError> {
    let base = open_root(root)?;
    let (dir, prefix) = if rel.is_empty() || rel == "." {
        (base, PathBuf::new())
    } else {
        check_path(rel)?;
        let d = open_beneath(
            &base,
            rel,
            rel,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY,
            Mode::empty(),
        )?;
        (d, PathBuf::from(rel))
    };
    let mut out = Vec::new();
    walk(dir, &prefix, depth, limit, &mut out).map_err(|e| map(rel, e))?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn walk(
    dir: OwnedFd,
    prefix: &Path,
    depth: usize,
    limit: usize,
    out: &mut Vec<Entry>,
) -> Result<(), Errno> {
    let listing = nix::dir::Dir::from_fd(dir.try_clone().map_err(|_| Errno::EMFILE)?)?;
    let mut names = Vec::new();
    for e in listing {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name != "." && name != ".." {
            names.push(name);
        }
    }
    names.sort();
    let mut subdirs = Vec::new();
    for name in names {
        if out.len() >= limit {
            return Ok(());
        }
        let st = nix::sys::stat::fstatat(
            &dir,
            name.as_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        );
        let (kind, size) = match st {
            Ok(st) => {
                let kind = match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
                    SFlag::S_IFREG => "file",
                    SFlag::S_IFDIR => "dir",
                    SFlag::S_IFLNK => "symlink",
                    _ => "other",
                };
                (kind, u64::try_from(st.st_size).unwrap_or(0))
            }
            Err(_) => ("other", 0),
        };
        if kind == "dir" {
            subdirs.push(name.clone());
        }
        out.push(Entry {
            path: prefix.join(&name).to_string_lossy().into_owned(),
            kind,
            size,
        });
    }
    if depth > 1 {
        for name in subdirs {
            if out.len() >= limit {
                break;
            }
            let fd = openat2(
                &dir,
                name.as_str(),
                how(OFlag::O_DIRECTORY | OFlag::O_RDONLY, Mode::empty()),
            )?;
            walk(fd, &prefix.join(&name), depth - 1, limit, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_checked() {
        assert!(check_path("a/b.py").is_ok());
        assert!(check_path("./a").is_ok());
        assert!(check_path("../x").is_err());
        assert!(check_path("a/../../x").is_err());
        assert!(check_path("/etc/passwd").is_err());
        assert!(check_path("").is_err());
    }

    #[test]
    fn symlinks_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), d.path().join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path(), d.path().join("dirlink")).unwrap();
        assert!(matches!(
            read(d.path(), "link", 100),
            Err(FileError::Escapes(_))
        ));
        assert!(matches!(
            read(d.path(), "dirlink/secret", 100),
            Err(FileError::Escapes(_))
        ));
        assert!(matches!(
            write(d.path(), "dirlink/new", b"x"),
            Err(FileError::Escapes(_))
        ));
        assert!(!outside.path().join("new").exists());
        write(d.path(), "sub/dir/f.txt", b"hello").unwrap();
        assert_eq!(read(d.path(), "sub/dir/f.txt", 100).unwrap(), b"hello");
        assert!(matches!(
            read(d.path(), "sub/dir/f.txt", 2),
            Err(FileError::TooBig(..))
        ));
        let l = list(d.path(), "", 5, 100).unwrap();
        let names: Vec<_> = l.iter().map(|e| (e.path.as_str(), e.kind)).collect();
        assert!(names.contains(&("link", "symlink")));
        assert!(names.contains(&("sub/dir/f.txt", "file")));
    }
}

//! The content-addressed AOT cache of compiled seccomp filters.
//!
//! **Key**: sha256 of a canonical binary encoding of the `linux.seccomp` section (every
//! field, in a fixed order, enums by their kernel/libseccomp values), the target arch,
//! the phantom-policy version and the cache format. Two configs that differ in any
//! input the compiler reads get different keys; the JSON's formatting, key order and
//! `null` vs absent lists do not matter.
//!
//! **Entry** `<dir>/seccomp-<key hex>.bpf`: `b"PHCE"`, format (u32 LE), the 32-byte key,
//! payload length (u32 LE), sha256 of the payload, then the payload
//! ([`CompiledFilter::to_bytes`], warnings included, so a hit repeats them). Written to
//! a temporary file in the same directory and renamed over the entry: readers see the
//! old entry or the new one, never half of one, and concurrent writers (threads or
//! processes) each rename a complete file. No fsync: an entry torn by a crash fails its
//! checksum and is recompiled.
//!
//! **Trust**: an entry is loaded only if its magic, format, key, length and checksum
//! match and [`CompiledFilter::from_bytes`] accepts the program; otherwise it is
//! recompiled and replaced ([`CacheOutcome::Recompiled`]). The checksum catches damage,
//! not an attacker, so the directory must not be writable by anyone else: a directory
//! that is not owned by the caller or root, or is group/other-writable, disables the
//! cache.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag};
use sha2::{Digest, Sha256};

use crate::seccomp::{compile_oci_for, CompiledFilter, SeccompError, TargetArch};

/// Environment variable that overrides the default cache directory.
pub const CACHE_DIR_ENV: &str = "PHANTOM_CACHE_DIR";
/// The default cache directory.
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/phantom/cache";

const ENTRY_MAGIC: &[u8; 4] = b"PHCE";
const ENTRY_FORMAT: u32 = 1;
const ENTRY_HEADER: usize = 4 + 4 + 32 + 4 + 32;
/// No compiled filter comes near this (4096 instructions are 32 KiB); a bigger file
/// is not read.
const MAX_ENTRY: u64 = 1 << 20;
/// Bumped whenever the canonical encoding changes.
const KEY_FORMAT: &[u8] = b"phantom-seccomp-key/1";

/// What the cache did for one lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from the cache.
    Hit,
    /// Not cached: compiled (and stored, if the directory allowed it).
    Miss,
    /// No usable cache directory: compiled.
    Disabled,
    /// An entry existed but could not be trusted (the reason): compiled and replaced.
    Recompiled(String),
}

impl fmt::Display for CacheOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheOutcome::Hit => f.write_str("hit"),
            CacheOutcome::Miss => f.write_str("miss"),
            CacheOutcome::Disabled => f.write_str("disabled"),
            CacheOutcome::Recompiled(why) => write!(f, "recompiled ({why})"),
        }
    }
}

/// A cache key: sha256 of the canonical policy, arch and version.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            s.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
        }
        s
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", self.hex())
    }
}

/// The cache key of `s` compiled for `arch`.
pub fn seccomp_key(s: &LinuxSeccomp, arch: TargetArch) -> CacheKey {
    let mut buf = Vec::with_capacity(8192);
    canonical(s, arch, &mut buf);
    CacheKey(Sha256::digest(&buf).into())
}

fn put_u32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(b: &mut Vec<u8>, s: &[u8]) {
    put_u64(b, s.len() as u64);
    b.extend_from_slice(s);
}

fn put_opt_u32(b: &mut Vec<u8>, v: Option<u32>) {
    match v {
        Some(v) => {
            b.push(1);
            put_u32(b, v);
        }
        None => b.push(0),
    }
}

fn action_code(a: LinuxSeccompAction) -> u32 {
    // The kernel's SECCOMP_RET_* values (oci-spec's own table); KILL and KILL_THREAD
    // share one, as they share one meaning.
    a.as_u32(None)
}

fn flag_code(f: LinuxSeccompFilterFlag) -> u32 {
    match f {
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync => 1,
        LinuxSeccompFilterFlag::SeccompFilterFlagLog => 2,
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => 4,
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => 32,
    }
}

/// The canonical encoding: every field the compiler reads, in a fixed order, lengths
/// before contents. `None` and an empty list encode alike (the compiler treats them
/// alike).
fn canonical(s: &LinuxSeccomp, arch: TargetArch, b: &mut Vec<u8>) {
    put_bytes(b, KEY_FORMAT);
    put_bytes(b, env!("CARGO_PKG_VERSION").as_bytes());
    put_bytes(b, arch.name().as_bytes());
    put_u32(b, action_code(s.default_action()));
    put_opt_u32(b, s.default_errno_ret());
    let arches = s.architectures().as_deref().unwrap_or_default();
    put_u32(b, arches.len() as u32);
    for a in arches {
        put_u32(b, *a as u32);
    }
    let flags = s.flags().as_deref().unwrap_or_default();
    put_u32(b, flags.len() as u32);
    for f in flags {
        put_u32(b, flag_code(*f));
    }
    match s.listener_path() {
        Some(p) => {
            b.push(1);
            put_bytes(b, p.as_os_str().as_encoded_bytes());
        }
        None => b.push(0),
    }
    match s.listener_metadata() {
        Some(m) => {
            b.push(1);
            put_bytes(b, m.as_bytes());
        }
        None => b.push(0),
    }
    let syscalls = s.syscalls().as_deref().unwrap_or_default();
    put_u32(b, syscalls.len() as u32);
    for rule in syscalls {
        put_u32(b, rule.names().len() as u32);
        for n in rule.names() {
            put_bytes(b, n.as_bytes());
        }
        put_u32(b, action_code(rule.action()));
        put_opt_u32(b, rule.errno_ret());
        let args = rule.args().as_deref().unwrap_or_default();
        put_u32(b, args.len() as u32);
        for a in args {
            put_u64(b, a.index() as u64);
            put_u64(b, a.value());
            match a.value_two() {
                Some(v) => {
                    b.push(1);
                    put_u64(b, v);
                }
                None => b.push(0),
            }
            put_u32(b, a.op() as u32);
        }
    }
}

/// The cache of compiled seccomp filters. Single-threaded use per instance; any number
/// of instances and processes may share a directory.
#[derive(Clone, Debug)]
pub struct PolicyCache {
    dir: Option<PathBuf>,
    arch: Option<TargetArch>,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl PolicyCache {
    /// `PHANTOM_CACHE_DIR`, else `/var/lib/phantom/cache`. Never fails: a directory that
    /// cannot be created or is unsafe means no cache (every lookup compiles), with a
    /// debug log.
    pub fn open_default() -> PolicyCache {
        let dir = std::env::var_os(CACHE_DIR_ENV)
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CACHE_DIR));
        Self::open(dir)
    }

    /// A cache in `dir`, created (mode 0700, parents too) if missing. Never fails; see
    /// [`open_default`](Self::open_default).
    pub fn open(dir: impl Into<PathBuf>) -> PolicyCache {
        let dir = dir.into();
        let arch = TargetArch::native();
        let dir = match usable_dir(&dir) {
            Ok(()) => Some(dir),
            Err(why) => {
                tracing::debug!("policy cache {} disabled: {why}", dir.display());
                None
            }
        };
        PolicyCache { dir, arch }
    }

    /// A cache that never stores anything.
    pub fn disabled() -> PolicyCache {
        PolicyCache {
            dir: None,
            arch: TargetArch::native(),
        }
    }

    /// The directory in use, if the cache is enabled.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The key of `s` on this host's arch.
    pub fn key(&self, s: &LinuxSeccomp) -> Result<CacheKey, SeccompError> {
        let arch = self.native()?;
        Ok(seccomp_key(s, arch))
    }

    /// Where the entry for `key` lives.
    pub fn entry_path(&self, key: &CacheKey) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("seccomp-{}.bpf", key.hex())))
    }

    fn native(&self) -> Result<TargetArch, SeccompError> {
        self.arch
            .ok_or(SeccompError::UnsupportedArch(std::env::consts::ARCH))
    }

    /// The compiled filter of `s`: from the cache when a trusted entry exists, else
    /// compiled and stored. Compile errors are returned as they are; cache trouble never
    /// is (it only shows in the outcome and a debug log).
    pub fn seccomp(
        &self,
        s: &LinuxSeccomp,
    ) -> Result<(CompiledFilter, CacheOutcome), SeccompError> {
        let arch = self.native()?;
        let Some(dir) = &self.dir else {
            return Ok((compile_oci_for(s, arch)?, CacheOutcome::Disabled));
        };
        let key = seccomp_key(s, arch);
        let path = dir.join(format!("seccomp-{}.bpf", key.hex()));
        let outcome = match read_entry(&path, &key) {
            Ok(f) => return Ok((f, CacheOutcome::Hit)),
            Err(EntryError::Missing) => CacheOutcome::Miss,
            Err(EntryError::Bad(why)) => {
                tracing::debug!("policy cache {}: {why}; recompiling", path.display());
                CacheOutcome::Recompiled(why)
            }
        };
        let filter = compile_oci_for(s, arch)?;
        if let Err(e) = write_entry(dir, &path, &key, &filter) {
            tracing::debug!("policy cache {}: not stored: {e}", path.display());
        }
        Ok((filter, outcome))
    }
}

/// Creates `dir` if needed and checks that nobody else can write to it.
fn usable_dir(dir: &Path) -> Result<(), String> {
    match fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) => return Err(format!("create: {e}")),
    }
    let md = fs::metadata(dir).map_err(|e| format!("stat: {e}"))?;
    if !md.is_dir() {
        return Err("not a directory".into());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if md.uid() != euid && md.uid() != 0 {
        return Err(format!(
            "owned by uid {}, not by us ({euid}) or root",
            md.uid()
        ));
    }
    if md.mode() & 0o022 != 0 {
        return Err(format!(
            "mode {:o}: writable by group or others, so an entry could be planted",
            md.mode() & 0o7777
        ));
    }
    // The entries are written by us: the directory must let us.
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| "path contains a NUL byte".to_string())?;
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        return Err(format!("not writable: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

enum EntryError {
    Missing,
    Bad(String),
}

fn read_entry(path: &Path, key: &CacheKey) -> Result<CompiledFilter, EntryError> {
    let mut file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(EntryError::Missing),
        Err(e) => return Err(EntryError::Bad(format!("open: {e}"))),
    };
    let len = file
        .metadata()
        .map_err(|e| EntryError::Bad(format!("stat: {e}")))?
        .len();
    if len > MAX_ENTRY {
        return Err(EntryError::Bad(format!("{len} bytes, too big")));
    }
    let mut buf = Vec::with_capacity(len as usize);
    file.read_to_end(&mut buf)
        .map_err(|e| EntryError::Bad(format!("read: {e}")))?;
    decode_entry(&buf, key).map_err(EntryError::Bad)
}

fn decode_entry(buf: &[u8], key: &CacheKey) -> Result<CompiledFilter, String> {
    if buf.len() < ENTRY_HEADER {
        return Err(format!("truncated: {} bytes", buf.len()));
    }
    if &buf[0..4] != ENTRY_MAGIC {
        return Err("bad magic".into());
    }
    let format = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    if format != ENTRY_FORMAT {
        return Err(format!("format {format}, expected {ENTRY_FORMAT}"));
    }
    if &buf[8..40] != key.bytes() {
        return Err("the entry is for another key".into());
    }
    let len = u32::from_le_bytes(buf[40..44].try_into().expect("4 bytes")) as usize;
    let payload = &buf[ENTRY_HEADER..];
    if payload.len() != len {
        return Err(format!(
            "truncated: payload of {} bytes, header says {len}",
            payload.len()
        ));
    }
    let sum: [u8; 32] = Sha256::digest(payload).into();
    if sum[..] != buf[44..76] {
        return Err("checksum mismatch".into());
    }
    CompiledFilter::from_bytes(payload).map_err(|e| e.to_string())
}

fn encode_entry(key: &CacheKey, filter: &CompiledFilter) -> Vec<u8> {
    let payload = filter.to_bytes();
    let mut out = Vec::with_capacity(ENTRY_HEADER + payload.len());
    out.extend_from_slice(ENTRY_MAGIC);
    out.extend_from_slice(&ENTRY_FORMAT.to_le_bytes());
    out.extend_from_slice(key.bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&Sha256::digest(&payload));
    out.extend_from_slice(&payload);
    out
}

fn write_entry(
    dir: &Path,
    path: &Path,
    key: &CacheKey,
    filter: &CompiledFilter,
) -> std::io::Result<()> {
    let bytes = encode_entry(key, filter);
    let tmp = dir.join(format!(
        ".tmp-{}-{}-{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed),
        key.hex()
    ));
    let result = (|| {
        let mut f: File = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(&bytes)?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests;

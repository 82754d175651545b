//! `phantom profile list|show`, `phantom policy compile|explain` and
//! `phantom spec --profile`: plain functions over phantom-policy, printing to stdout.
//! Each `*_to` variant writes to any `Write` (for tests).
//!
//! `profile_path` is the `--profile-path` directories; `PHANTOM_PROFILE_PATH` is added
//! by [`phantom_policy::Catalog::search_dirs`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use oci_spec::runtime::LinuxSeccomp;
use phantom_policy::profile::{load_file, CatalogEntry};
use phantom_policy::{
    to_oci_spec, Catalog, CompiledFilter, PolicyCache, Profile, SandboxOptions, TargetArch,
};

/// What `policy compile` and `policy explain` work on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicySource {
    /// An OCI config.json (its `linux.seccomp`), a bare `linux.seccomp` JSON (such as
    /// containers' seccomp.json), or a profile YAML.
    File(PathBuf),
    /// A profile by name (built-in or from the profile path).
    Profile(String),
}

/// Placeholders `phantom spec --profile` prints when no rootfs or workspace is given.
pub const ROOTFS_PLACEHOLDER: &str = "rootfs";
pub const WORKSPACE_PLACEHOLDER: &str = "/path/to/workspace";

fn catalog(profile_path: &[PathBuf]) -> Catalog {
    let c = Catalog::load(&Catalog::search_dirs(profile_path));
    for e in &c.errors {
        eprintln!("phantom: skipping a profile: {e}");
    }
    c
}

fn native() -> Result<TargetArch> {
    TargetArch::native().with_context(|| {
        format!(
            "no seccomp support for this architecture ({})",
            std::env::consts::ARCH
        )
    })
}

/// A policy ready to compile: its `linux.seccomp` and a description.
struct Loaded {
    label: String,
    profile: Option<Profile>,
    seccomp: Option<LinuxSeccomp>,
}

fn load(profile_path: &[PathBuf], source: &PolicySource) -> Result<Loaded> {
    let arch = native()?;
    match source {
        PolicySource::Profile(name) => {
            let c = catalog(profile_path);
            let e = c.get(name)?;
            Ok(from_entry(e, arch))
        }
        PolicySource::File(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("read {}", path.display()))?;
            let is_json =
                path.extension().is_some_and(|e| e == "json") || text.trim_start().starts_with('{');
            if !is_json {
                let e = load_file(path)?;
                return Ok(from_entry(&e, arch));
            }
            let v: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{}: not valid JSON", path.display()))?;
            let (label, section) = if v.get("defaultAction").is_some() {
                (format!("{} (linux.seccomp)", path.display()), v)
            } else {
                let s = v
                    .get("linux")
                    .and_then(|l| l.get("seccomp"))
                    .cloned()
                    .unwrap_or(serde_json::Value::Null);
                (format!("{} (OCI config, linux.seccomp)", path.display()), s)
            };
            let seccomp = if section.is_null() {
                None
            } else {
                Some(
                    serde_json::from_value::<LinuxSeccomp>(section)
                        .with_context(|| format!("{}: linux.seccomp", path.display()))?,
                )
            };
            Ok(Loaded {
                label,
                profile: None,
                seccomp,
            })
        }
    }
}

fn from_entry(e: &CatalogEntry, arch: TargetArch) -> Loaded {
    Loaded {
        label: format!(
            "{} (profile {}, mode {})",
            e.source.display_name(&e.profile.name),
            e.profile.name,
            e.profile.mode
        ),
        seccomp: e.profile.linux_seccomp(arch),
        profile: Some(e.profile.clone()),
    }
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Compile time (median of `runs`), BPF length, cache-hit load time (median, from a
/// private temporary cache).
fn measure(s: &LinuxSeccomp, runs: usize) -> Result<(Duration, usize, Duration)> {
    let mut compile = Vec::with_capacity(runs);
    let mut filter: Option<CompiledFilter> = None;
    for _ in 0..runs {
        let t = Instant::now();
        filter = Some(phantom_policy::compile_oci(s)?);
        compile.push(t.elapsed());
    }
    let dir = tempfile::tempdir().context("a temporary cache directory")?;
    let cache = PolicyCache::open(dir.path());
    cache.seccomp(s)?;
    let mut hit = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        cache.seccomp(s)?;
        hit.push(t.elapsed());
    }
    Ok((median(compile), filter.map_or(0, |f| f.len()), median(hit)))
}

/// `phantom profile list [--benchmark]`.
pub fn profile_list(profile_path: &[PathBuf], benchmark: bool) -> Result<i32> {
    profile_list_to(&mut std::io::stdout().lock(), profile_path, benchmark)
}

pub fn profile_list_to(
    out: &mut dyn Write,
    profile_path: &[PathBuf],
    benchmark: bool,
) -> Result<i32> {
    let c = catalog(profile_path);
    let arch = native()?;
    if benchmark {
        writeln!(
            out,
            "{:<12} {:<9} {:<9} {:>5} {:>10} {:>10}  START",
            "NAME", "MODE", "NETWORK", "BPF", "COMPILE", "CACHE HIT"
        )?;
    } else {
        writeln!(
            out,
            "{:<12} {:<9} {:<9} {:<9} FILESYSTEM",
            "NAME", "MODE", "NETWORK", "SOURCE"
        )?;
    }
    for e in c.entries() {
        let p = &e.profile;
        if benchmark {
            let (compile, len, hit) = match p.linux_seccomp(arch) {
                Some(s) => {
                    let (c, l, h) = measure(&s, 50)?;
                    (micros(c), l.to_string(), micros(h))
                }
                None => ("-".into(), "-".into(), "-".into()),
            };
            let start = start_time(&p.name, p.host_system);
            writeln!(
                out,
                "{:<12} {:<9} {:<9} {:>5} {:>10} {:>10}  {start}",
                p.name, p.mode, p.network, len, compile, hit
            )?;
        } else {
            let source = match &e.source {
                phantom_policy::profile::ProfileSource::Builtin => "built-in".to_string(),
                phantom_policy::profile::ProfileSource::File(f) => f.display().to_string(),
            };
            writeln!(
                out,
                "{:<12} {:<9} {:<9} {:<9} {}",
                p.name,
                p.mode,
                p.network,
                source,
                p.filesystem_summary()
            )?;
        }
    }
    if benchmark {
        writeln!(
            out,
            "\nCOMPILE: compile_oci, median of 50; CACHE HIT: PolicyCache::seccomp on a \
             cached entry (key + read + checksum + decode), median of 50; START: \
             `phantom run --no-daemon --profile NAME -- true` (cold), median of 5"
        )?;
    }
    Ok(0)
}

/// Median wall time of a cold `phantom run --profile NAME -- true`, run
/// with a state root and sandbox directory of its own.
fn start_time(name: &str, host_system: bool) -> String {
    if !host_system {
        return "n/a (no host /bin)".into();
    }
    if !nix::unistd::geteuid().is_root() {
        return "needs root".into();
    }
    let Ok(exe) = std::env::current_exe() else {
        return "n/a".into();
    };
    let Ok(tmp) = tempfile::tempdir() else {
        return "n/a".into();
    };
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let ok = std::process::Command::new(&exe)
            .arg("--root")
            .arg(tmp.path().join("state"))
            .args(["run", "--no-daemon", "--profile", name, "--", "true"])
            .env("PHANTOM_SANDBOX_DIR", tmp.path().join("sandboxes"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return "failed".into();
        }
        times.push(t.elapsed());
    }
    times.sort();
    format!("{:.1} ms", times[2].as_secs_f64() * 1000.0)
}

/// `phantom profile show NAME`: the profile's YAML.
pub fn profile_show(profile_path: &[PathBuf], name: &str) -> Result<i32> {
    profile_show_to(&mut std::io::stdout().lock(), profile_path, name)
}

pub fn profile_show_to(out: &mut dyn Write, profile_path: &[PathBuf], name: &str) -> Result<i32> {
    let c = catalog(profile_path);
    let e = c.get(name)?;
    out.write_all(e.text.as_bytes())?;
    if !e.text.ends_with('\n') {
        writeln!(out)?;
    }
    Ok(0)
}

/// `phantom policy compile FILE|--profile NAME`: compiles through the cache
/// (`cache_dir`, else `PHANTOM_CACHE_DIR` or /var/lib/phantom/cache) and reports.
pub fn policy_compile(
    profile_path: &[PathBuf],
    source: &PolicySource,
    cache_dir: Option<&Path>,
) -> Result<i32> {
    policy_compile_to(
        &mut std::io::stdout().lock(),
        profile_path,
        source,
        cache_dir,
    )
}

pub fn policy_compile_to(
    out: &mut dyn Write,
    profile_path: &[PathBuf],
    source: &PolicySource,
    cache_dir: Option<&Path>,
) -> Result<i32> {
    let loaded = load(profile_path, source)?;
    let Some(s) = &loaded.seccomp else {
        bail!("{}: has no seccomp section to compile", loaded.label);
    };
    let cache = match cache_dir {
        Some(d) => PolicyCache::open(d),
        None => PolicyCache::open_default(),
    };
    let t = Instant::now();
    let filter = phantom_policy::compile_oci(s)?;
    let compile = t.elapsed();
    let key = cache.key(s)?;
    let t = Instant::now();
    let (_, outcome) = cache.seccomp(s)?;
    let lookup = t.elapsed();
    writeln!(out, "policy:       {}", loaded.label)?;
    writeln!(out, "arch:         {}", native()?)?;
    writeln!(out, "cache key:    {key}")?;
    match (cache.dir(), cache.entry_path(&key)) {
        (Some(d), Some(p)) => writeln!(
            out,
            "cache:        {} ({})",
            d.display(),
            p.file_name().unwrap_or_default().to_string_lossy()
        )?,
        _ => writeln!(out, "cache:        disabled (directory unusable)")?,
    }
    writeln!(out, "cache lookup: {outcome} in {}", micros(lookup))?;
    writeln!(out, "instructions: {} BPF", filter.len())?;
    writeln!(out, "compile time: {}", micros(compile))?;
    writeln!(out, "warnings:     {}", filter.warnings().len())?;
    for w in filter.warnings() {
        writeln!(out, "  {w}")?;
    }
    Ok(0)
}

/// `phantom policy explain FILE|--profile NAME`.
pub fn policy_explain(profile_path: &[PathBuf], source: &PolicySource) -> Result<i32> {
    policy_explain_to(&mut std::io::stdout().lock(), profile_path, source)
}

pub fn policy_explain_to(
    out: &mut dyn Write,
    profile_path: &[PathBuf],
    source: &PolicySource,
) -> Result<i32> {
    let loaded = load(profile_path, source)?;
    writeln!(out, "policy: {}", loaded.label)?;
    if let Some(p) = &loaded.profile {
        writeln!(out, "network: {}", p.network)?;
        writeln!(out, "filesystem (Landlock): {}", p.filesystem_summary())?;
        for r in &p.landlock.ports {
            writeln!(out, "tcp port {}: {}", r.port, r.access)?;
        }
    }
    match &loaded.seccomp {
        Some(s) => {
            let e = phantom_policy::explain(s, native()?)?;
            write!(out, "{e}")?;
        }
        None => writeln!(out, "seccomp: none (every syscall allowed)")?,
    }
    Ok(0)
}

/// `phantom spec --profile NAME [--rootfs DIR] [--workspace DIR]`: the config.json the
/// profile produces. Without them, `rootfs` (relative to the bundle, as runc's spec)
/// and `/path/to/workspace` are printed as placeholders to replace.
pub fn spec_profile(
    profile_path: &[PathBuf],
    name: &str,
    rootfs: Option<&Path>,
    workspace: Option<&Path>,
    args: &[String],
) -> Result<i32> {
    spec_profile_to(
        &mut std::io::stdout().lock(),
        profile_path,
        name,
        rootfs,
        workspace,
        args,
    )
}

pub fn spec_profile_to(
    out: &mut dyn Write,
    profile_path: &[PathBuf],
    name: &str,
    rootfs: Option<&Path>,
    workspace: Option<&Path>,
    args: &[String],
) -> Result<i32> {
    let c = catalog(profile_path);
    let e = c.get(name)?;
    let mut opts = SandboxOptions::new(
        rootfs.unwrap_or(Path::new(ROOTFS_PLACEHOLDER)),
        workspace.unwrap_or(Path::new(WORKSPACE_PLACEHOLDER)),
    );
    opts.args = args.to_vec();
    let spec = to_oci_spec(&e.profile, &opts);
    serde_json::to_writer_pretty(&mut *out, &spec)?;
    writeln!(out)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>) -> Result<i32>) -> String {
        let mut buf = Vec::new();
        assert_eq!(f(&mut buf).unwrap(), 0);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn list_and_show() {
        let s = text(|o| profile_list_to(o, &[], false));
        for name in [
            "python-dev",
            "node-dev",
            "go-dev",
            "rust-dev",
            "java-dev",
            "strict",
            "minimal",
        ] {
            assert!(s.contains(name), "{s}");
        }
        assert!(s.contains("hardened"));
        let s = text(|o| profile_list_to(o, &[], true));
        assert!(s.contains("START"), "{s}");
        let s = text(|o| profile_show_to(o, &[], "strict"));
        assert!(s.contains("profile: strict"));
        assert!(profile_show_to(&mut Vec::new(), &[], "nope").is_err());
    }

    #[test]
    fn compile_profile_and_oci_files_through_the_cache() {
        let d = tempfile::tempdir().unwrap();
        let cache = d.path().join("cache");
        let src = PolicySource::Profile("python-dev".into());
        let s = text(|o| policy_compile_to(o, &[], &src, Some(&cache)));
        assert!(s.contains("cache lookup: miss"), "{s}");
        assert!(s.contains("instructions:"), "{s}");
        let s = text(|o| policy_compile_to(o, &[], &src, Some(&cache)));
        assert!(s.contains("cache lookup: hit"), "{s}");

        // A config.json, and the Podman profile file itself.
        let podman = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../phantom-policy/tests/data/podman-seccomp.json");
        let s =
            text(|o| policy_compile_to(o, &[], &PolicySource::File(podman.clone()), Some(&cache)));
        assert!(s.contains("(linux.seccomp)"), "{s}");
        let seccomp: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&podman).unwrap()).unwrap();
        let config = d.path().join("config.json");
        std::fs::write(
            &config,
            serde_json::json!({"ociVersion": "1.0.2", "linux": {"seccomp": seccomp}}).to_string(),
        )
        .unwrap();
        let s =
            text(|o| policy_compile_to(o, &[], &PolicySource::File(config.clone()), Some(&cache)));
        assert!(s.contains("OCI config"), "{s}");
        assert!(
            s.contains("cache lookup: hit"),
            "same linux.seccomp as the file: {s}"
        );

        // A profile YAML file; a broken one names its line.
        let yaml = d.path().join("mine.yaml");
        std::fs::write(
            &yaml,
            "profile: mine\nsecurity:\n  seccomp: { allow: [read] }\n",
        )
        .unwrap();
        let s =
            text(|o| policy_compile_to(o, &[], &PolicySource::File(yaml.clone()), Some(&cache)));
        assert!(s.contains("profile mine"), "{s}");
        std::fs::write(
            &yaml,
            "profile: mine\nsecurity:\n  seccomp: { allow: [reed] }\n",
        )
        .unwrap();
        let e = policy_compile_to(
            &mut Vec::new(),
            &[],
            &PolicySource::File(yaml),
            Some(&cache),
        )
        .unwrap_err();
        assert!(e.to_string().contains("mine.yaml:3:22"), "{e}");
    }

    #[test]
    fn explain_lists_conditions_and_default() {
        let s = text(|o| policy_explain_to(o, &[], &PolicySource::Profile("python-dev".into())));
        assert!(
            s.contains("default (any syscall not listed): errno ENOSYS (38)"),
            "{s}"
        );
        assert!(s.contains("personality: arg0 == 8 -> allow"), "{s}");
        assert!(s.contains("clone: arg0 & 0x7e020000 == 0 -> allow"), "{s}");
        assert!(s.contains("errno EPERM (1)"), "{s}");
        assert!(s.contains("filesystem (Landlock): rw /workspace(x)"), "{s}");
    }

    #[test]
    fn spec_profile_is_a_config_the_runtime_accepts() {
        for name in ["python-dev", "strict", "minimal"] {
            let s = text(|o| spec_profile_to(o, &[], name, None, None, &[]));
            let spec = phantom_runtime::spec::parse(s.as_bytes())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                spec.root().as_ref().unwrap().path(),
                Path::new(ROOTFS_PLACEHOLDER)
            );
            assert!(s.contains(WORKSPACE_PLACEHOLDER));
        }
    }
}

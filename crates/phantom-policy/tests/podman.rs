//! Podman's default seccomp profile, our main real-world input, compiled and checked in
//! the BPF interpreter. `cargo test -p phantom-policy --test podman -- --nocapture`
//! prints the compile time (add `--release` for the number that matters).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{committed_podman_profile, podman_to_oci, read_json, PODMAN_CAPS};
use oci_spec::runtime::LinuxSeccomp;
use phantom_policy::{compile_oci_for, CompiledFilter, TargetArch};

const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;

fn verdict(f: &CompiledFilter, arch: TargetArch, name: &str, args: [u64; 6]) -> u32 {
    let nr = arch.syscall_nr(name).expect(name);
    f.simulate(arch.audit_arch(), nr, args)
}

#[test]
fn podman_default_profile_compiles_for_both_arches() {
    let profile = read_json(&committed_podman_profile());
    for arch in [TargetArch::X86_64, TargetArch::Aarch64] {
        let oci = podman_to_oci(&profile, arch, PODMAN_CAPS);
        let f = compile_oci_for(&oci, arch).unwrap();
        println!(
            "{arch}: {} instructions, {} warnings",
            f.len(),
            f.warnings().len()
        );
        assert!(f.len() < 1000, "{arch}: {} instructions", f.len());
        // Names of other arches are skipped with a warning, never an error. The one
        // other warning: this profile allows setns unconditionally and later denies it
        // without CAP_SYS_ADMIN; libseccomp (so crun and runc) keeps the first rule.
        assert!(f
            .warnings()
            .iter()
            .any(|w| w.contains("\"_llseek\" is not a syscall")));
        let other: Vec<_> = f
            .warnings()
            .iter()
            .filter(|w| !w.contains("is not a syscall on"))
            .collect();
        assert_eq!(other.len(), 1, "{arch}: {other:#?}");
        assert!(other[0].contains("setns already has a rule without arguments"));

        let v = |name, a0| verdict(&f, arch, name, [a0, 0, 0, 0, 0, 0]);
        assert_eq!(v("read", 0), ALLOW);
        assert_eq!(v("clone3", 0), ALLOW);
        assert_eq!(v("setns", 0), ALLOW, "first rule wins, as with libseccomp");
        assert_eq!(v("kexec_load", 0), EPERM, "{arch}");
        assert_eq!(v("open_by_handle_at", 0), EPERM, "no CAP_DAC_READ_SEARCH");
        assert_eq!(v("bpf", 0), EPERM, "no CAP_SYS_ADMIN");
        assert_eq!(v("chroot", 0), ALLOW, "CAP_SYS_CHROOT is a default cap");
        assert_eq!(v("personality", 0), ALLOW);
        assert_eq!(v("personality", 0xffff_ffff), ALLOW);
        assert_eq!(v("personality", 0x1234), ENOSYS);
        // Not in the profile (and unknown to it): ENOSYS, so that libcs fall back.
        assert_eq!(f.simulate(arch.audit_arch(), 1000, [0; 6]), ENOSYS);
    }
    let x86 = podman_to_oci(&profile, TargetArch::X86_64, PODMAN_CAPS);
    let f = compile_oci_for(&x86, TargetArch::X86_64).unwrap();
    assert_eq!(verdict(&f, TargetArch::X86_64, "arch_prctl", [0; 6]), ALLOW);
    // x86 and x32 are listed through archMap and the default denies: ENOSYS.
    assert_eq!(f.simulate(0x4000_0003, 20, [0; 6]), ENOSYS);
    assert_eq!(f.simulate(0xc000_003e, 0x4000_0000 | 39, [0; 6]), ENOSYS);
}

/// The file as it is (not the engine's output): oci-spec ignores `archMap` and the
/// `includes`/`excludes`, so every rule applies; the worst case for size.
#[test]
fn podman_profile_file_parses_as_linux_seccomp() {
    let text = std::fs::read_to_string(committed_podman_profile()).unwrap();
    let raw: LinuxSeccomp = serde_json::from_str(&text).unwrap();
    for arch in [TargetArch::X86_64, TargetArch::Aarch64] {
        let f = compile_oci_for(&raw, arch).unwrap();
        // libseccomp merging: setns and friends are allowed by the big allow list
        // first, so the later CAP_SYS_ADMIN-less ERRNO rules are shadowed (warned).
        assert_eq!(verdict(&f, arch, "setns", [0; 6]), ALLOW);
        assert!(f
            .warnings()
            .iter()
            .any(|w| w.contains("setns already has a rule")));
    }
}

/// The system's copy, when golang-github-containers-common is installed.
#[test]
fn system_podman_profile_compiles_if_present() {
    let path = Path::new("/usr/share/containers/seccomp.json");
    if !path.exists() {
        eprintln!(
            "{} absent; the committed copy is tested instead",
            path.display()
        );
        return;
    }
    let arch = TargetArch::native().unwrap();
    let oci = podman_to_oci(&read_json(path), arch, PODMAN_CAPS);
    compile_oci_for(&oci, arch).unwrap();
}

/// Not an assertion: timing never decides a unit test. Prints the figures quoted in
/// docs/seccomp.md.
#[test]
fn podman_profile_compile_time() {
    let profile = read_json(&committed_podman_profile());
    let arch = TargetArch::native().unwrap();
    let oci = podman_to_oci(&profile, arch, PODMAN_CAPS);
    let json = serde_json::to_string(&oci).unwrap();

    // First call in this process: cold caches, as in a one-shot `phantom create`.
    let t = Instant::now();
    phantom_policy::compile_oci(&oci).unwrap();
    let first = t.elapsed();

    let runs = 200;
    let mut compile = Vec::with_capacity(runs);
    let mut parse_and_compile = Vec::with_capacity(runs);
    let mut decode = Vec::with_capacity(runs);
    let mut filter = None;
    for _ in 0..runs {
        let t = Instant::now();
        let f = phantom_policy::compile_oci(&oci).unwrap();
        compile.push(t.elapsed());

        let t = Instant::now();
        let parsed: LinuxSeccomp = serde_json::from_str(&json).unwrap();
        phantom_policy::compile_oci(&parsed).unwrap();
        parse_and_compile.push(t.elapsed());

        let bytes = f.to_bytes();
        let t = Instant::now();
        CompiledFilter::from_bytes(&bytes).unwrap();
        decode.push(t.elapsed());
        filter = Some(f);
    }
    let f = filter.unwrap();
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    println!(
        "podman profile on {arch} ({} build): {} BPF instructions, {} warnings, {} bytes \
         serialised; first compile_oci {first:?}; median of {runs}: compile_oci {:?}, \
         parse JSON + compile {:?}, from_bytes {:?}",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        f.len(),
        f.warnings().len(),
        f.to_bytes().len(),
        median(&mut compile),
        median(&mut parse_and_compile),
        median(&mut decode),
    );
}

/// Not an assertion: prints the cache figures quoted in docs/policies.md. The hit is
/// what the runtime's create path pays: canonical encoding + sha256 + one file read +
/// checksum + `from_bytes`. `cargo test --release -p phantom-policy --test podman
/// podman_profile_cache_timing -- --nocapture`.
#[test]
fn podman_profile_cache_timing() {
    use phantom_policy::{CacheOutcome, PolicyCache};
    let profile = read_json(&committed_podman_profile());
    let arch = TargetArch::native().unwrap();
    let oci = podman_to_oci(&profile, arch, PODMAN_CAPS);
    let d = tempfile::tempdir().unwrap();
    let cache = PolicyCache::open(d.path());

    let t = Instant::now();
    let (_, o) = cache.seccomp(&oci).unwrap();
    let miss = t.elapsed();
    assert_eq!(o, CacheOutcome::Miss);

    let runs = 500;
    let mut hit = Vec::with_capacity(runs);
    let mut key = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let (_, o) = cache.seccomp(&oci).unwrap();
        hit.push(t.elapsed());
        assert_eq!(o, CacheOutcome::Hit);
        let t = Instant::now();
        std::hint::black_box(cache.key(&oci).unwrap());
        key.push(t.elapsed());
    }
    let mut fresh = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let c = PolicyCache::open(d.path());
        let (_, o) = c.seccomp(&oci).unwrap();
        fresh.push(t.elapsed());
        assert_eq!(o, CacheOutcome::Hit);
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let entry_len = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum::<u64>();
    println!(
        "podman profile cache on {arch} ({} build): miss (compile + store) {miss:?}; median of \
         {runs}: hit {:?} (of which key {:?}), open + hit {:?}; entry {entry_len} bytes",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        median(&mut hit),
        median(&mut key),
        median(&mut fresh),
    );
}

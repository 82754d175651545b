use std::os::unix::fs::PermissionsExt;

use super::*;

fn seccomp(v: serde_json::Value) -> LinuxSeccomp {
    serde_json::from_value(v).unwrap()
}

fn sample() -> LinuxSeccomp {
    seccomp(serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 38,
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            {"names": ["read", "write", "exit_group", "no_such_call"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}
        ]
    }))
}

fn the_entry(dir: &Path) -> PathBuf {
    let entries: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "bpf"))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries[0].clone()
}

#[test]
fn miss_then_hit_with_warnings_kept() {
    let d = tempfile::tempdir().unwrap();
    let cache = PolicyCache::open(d.path().join("cache"));
    assert!(cache.dir().is_some());
    let s = sample();
    let (f1, o1) = cache.seccomp(&s).unwrap();
    assert_eq!(o1, CacheOutcome::Miss);
    let (f2, o2) = cache.seccomp(&s).unwrap();
    assert_eq!(o2, CacheOutcome::Hit);
    assert_eq!(f1, f2);
    assert_eq!(
        f2,
        compile_oci_for(&s, TargetArch::native().unwrap()).unwrap()
    );
    assert!(f2.warnings().iter().any(|w| w.contains("no_such_call")));
    let entry = the_entry(cache.dir().unwrap());
    assert!(entry
        .file_name()
        .unwrap()
        .to_string_lossy()
        .contains(&cache.key(&s).unwrap().hex()));
    // Created private, entry private.
    let mode = fs::metadata(cache.dir().unwrap()).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert_eq!(fs::metadata(&entry).unwrap().mode() & 0o777, 0o600);
    // No temporary files left.
    assert_eq!(fs::read_dir(cache.dir().unwrap()).unwrap().count(), 1);
}

#[test]
fn keys_cover_every_input() {
    let arch = TargetArch::X86_64;
    let base = sample();
    let k = seccomp_key(&base, arch);
    assert_eq!(k, seccomp_key(&sample(), arch), "stable");
    assert_ne!(k, seccomp_key(&base, TargetArch::Aarch64), "arch");
    let mut variants = Vec::new();
    let mut v = serde_json::to_value(&base).unwrap();
    v["defaultErrnoRet"] = 1.into();
    variants.push(v);
    let mut v = serde_json::to_value(&base).unwrap();
    v["defaultAction"] = "SCMP_ACT_KILL_PROCESS".into();
    v.as_object_mut().unwrap().remove("defaultErrnoRet");
    variants.push(v);
    let mut v = serde_json::to_value(&base).unwrap();
    v["architectures"] = serde_json::json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]);
    variants.push(v);
    let mut v = serde_json::to_value(&base).unwrap();
    v["flags"] = serde_json::json!(["SECCOMP_FILTER_FLAG_LOG"]);
    variants.push(v);
    let mut v = serde_json::to_value(&base).unwrap();
    v["syscalls"][0]["names"][0] = "readv".into();
    variants.push(v);
    let mut v = serde_json::to_value(&base).unwrap();
    v["syscalls"][1]["args"][0]["value"] = 9.into();
    variants.push(v);
    let mut v = serde_json::to_value(&base).unwrap();
    v["syscalls"][1]["args"][0]["valueTwo"] = 0.into();
    variants.push(v);
    let mut v = serde_json::to_value(&base).unwrap();
    v["syscalls"][1]["args"][0]["op"] = "SCMP_CMP_NE".into();
    variants.push(v);
    let mut v = serde_json::to_value(&base).unwrap();
    v["syscalls"][1]["args"][0]["index"] = 1.into();
    variants.push(v);
    let mut v = serde_json::to_value(&base).unwrap();
    v["syscalls"][1]["errnoRet"] = 5.into();
    v["syscalls"][1]["action"] = "SCMP_ACT_ERRNO".into();
    variants.push(v);
    // Moving a name from one rule to the next is a different input.
    let mut v = serde_json::to_value(&base).unwrap();
    v["syscalls"][0]["names"] = serde_json::json!(["read", "write"]);
    v["syscalls"][1]["names"] = serde_json::json!(["exit_group", "personality"]);
    variants.push(v);
    let mut keys = vec![k];
    for v in variants {
        let key = seccomp_key(&seccomp(v.clone()), arch);
        assert!(!keys.contains(&key), "{v}");
        keys.push(key);
    }
    // Formatting and `null` lists do not matter.
    let text = serde_json::to_string_pretty(&base).unwrap();
    assert_eq!(seccomp_key(&serde_json::from_str(&text).unwrap(), arch), k);
    let mut v = serde_json::to_value(&base).unwrap();
    v["flags"] = serde_json::json!([]);
    assert_eq!(seccomp_key(&seccomp(v), arch), k);
}

/// Damaged entries are recompiled and replaced, never loaded.
#[test]
fn corrupt_truncated_and_foreign_entries_are_recompiled() {
    let d = tempfile::tempdir().unwrap();
    let cache = PolicyCache::open(d.path());
    let s = sample();
    let (good, _) = cache.seccomp(&s).unwrap();
    let entry = the_entry(d.path());
    let bytes = fs::read(&entry).unwrap();

    type Damage = fn(&mut Vec<u8>);
    let cases: &[(&str, Damage, &str)] = &[
        (
            "flip a program byte",
            |b| {
                let i = b.len() / 2;
                b[i] ^= 0x40
            },
            "checksum mismatch",
        ),
        ("truncate", |b| b.truncate(b.len() - 7), "truncated"),
        ("truncate to the header", |b| b.truncate(20), "truncated"),
        ("empty file", |b| b.clear(), "truncated"),
        ("bad magic", |b| b[0] = b'X', "bad magic"),
        ("other format", |b| b[4] = 9, "format 9"),
        ("other key", |b| b[8] ^= 1, "another key"),
        ("checksum damaged", |b| b[50] ^= 1, "checksum mismatch"),
        (
            "trailing garbage",
            |b| b.extend_from_slice(b"xx"),
            "truncated",
        ),
    ];
    for (what, damage, reason) in cases {
        let mut b = bytes.clone();
        damage(&mut b);
        fs::write(&entry, &b).unwrap();
        let (f, o) = cache.seccomp(&s).unwrap();
        assert_eq!(f, good, "{what}");
        match &o {
            CacheOutcome::Recompiled(why) => assert!(why.contains(reason), "{what}: {why}"),
            o => panic!("{what}: {o:?}"),
        }
        assert_eq!(fs::read(&entry).unwrap(), bytes, "{what}: entry replaced");
        assert_eq!(cache.seccomp(&s).unwrap().1, CacheOutcome::Hit, "{what}");
    }

    // A valid checksum over a payload that is not a filter: refused by from_bytes.
    let mut evil = bytes[..ENTRY_HEADER].to_vec();
    let payload = b"PHSF not a filter at all".to_vec();
    evil[40..44].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    evil[44..76].copy_from_slice(&Sha256::digest(&payload));
    evil.extend_from_slice(&payload);
    fs::write(&entry, &evil).unwrap();
    let (f, o) = cache.seccomp(&s).unwrap();
    assert_eq!(f, good);
    assert!(
        matches!(o, CacheOutcome::Recompiled(ref w) if w.contains("compiled seccomp filter")),
        "{o:?}"
    );

    // A symlink in place of the entry is not followed.
    fs::remove_file(&entry).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", &entry).unwrap();
    let (_, o) = cache.seccomp(&s).unwrap();
    assert!(matches!(o, CacheOutcome::Recompiled(_)), "{o:?}");
    assert!(!fs::symlink_metadata(&entry)
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn unusable_directories_disable_the_cache() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("file");
    fs::write(&file, "").unwrap();
    let s = sample();
    for dir in [file.clone(), file.join("sub")] {
        let c = PolicyCache::open(&dir);
        assert!(c.dir().is_none(), "{}", dir.display());
        assert_eq!(c.seccomp(&s).unwrap().1, CacheOutcome::Disabled);
    }
    let open = d.path().join("world-writable");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    assert!(PolicyCache::open(&open).dir().is_none());
    assert!(PolicyCache::disabled().dir().is_none());
    // Compile errors still surface.
    let bad = seccomp(serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY"}));
    assert!(PolicyCache::open(d.path().join("ok"))
        .seccomp(&bad)
        .is_err());
}

#[test]
fn concurrent_writers_threads() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_path_buf();
    let s = sample();
    let expected = compile_oci_for(&s, TargetArch::native().unwrap()).unwrap();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let dir = dir.clone();
            let s = s.clone();
            std::thread::spawn(move || {
                let cache = PolicyCache::open(&dir);
                (0..50)
                    .map(|_| cache.seccomp(&s).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for h in handles {
        for (f, o) in h.join().unwrap() {
            assert_eq!(f, expected);
            assert!(matches!(o, CacheOutcome::Hit | CacheOutcome::Miss), "{o:?}");
        }
    }
    the_entry(&dir);
    assert_eq!(
        fs::read_dir(&dir).unwrap().count(),
        1,
        "no temporary file left"
    );
}

/// Helper for `concurrent_writers_processes`: hammers the cache named by the
/// environment, exits non-zero on any untrusted outcome.
#[test]
#[ignore = "run by concurrent_writers_processes"]
fn cache_writer_child() {
    let Some(dir) = std::env::var_os("PHANTOM_TEST_CACHE_CHILD") else {
        return;
    };
    let cache = PolicyCache::open(PathBuf::from(dir));
    let s = sample();
    let expected = compile_oci_for(&s, TargetArch::native().unwrap()).unwrap();
    for i in 0..200 {
        // Half the time, start from a missing entry so that writers race.
        if i % 2 == 0 {
            if let Some(p) = cache.entry_path(&cache.key(&s).unwrap()) {
                let _ = fs::remove_file(p);
            }
        }
        let (f, o) = cache.seccomp(&s).unwrap();
        assert_eq!(f, expected);
        assert!(matches!(o, CacheOutcome::Hit | CacheOutcome::Miss), "{o:?}");
    }
}

#[test]
fn concurrent_writers_processes() {
    let d = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "cache::tests::cache_writer_child",
                    "--ignored",
                    "--test-threads=1",
                ])
                .env("PHANTOM_TEST_CACHE_CHILD", d.path())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    assert_eq!(
        fs::read_dir(d.path()).unwrap().count(),
        1,
        "one entry, no temporary file"
    );
}

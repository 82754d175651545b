//! Landlock rules applied for real, in a fresh child process (this test binary run
//! again with one ignored helper test selected), so that the restriction never touches
//! the test harness. Skipped when the kernel has no Landlock.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;

use phantom_policy::landlock::{
    apply, kernel_abi, Enforcement, FsAccess, LandlockRules, NetAccess, PathRule, PortRule,
};
use phantom_policy::Mode;

const DIR_ENV: &str = "PHANTOM_TEST_LANDLOCK_DIR";
const PORT: u16 = 47_311;

fn rules(dir: &Path) -> LandlockRules {
    LandlockRules {
        paths: vec![
            PathRule {
                path: dir.join("rw"),
                access: FsAccess::ReadWrite,
            },
            PathRule {
                path: dir.join("ro"),
                access: FsAccess::ReadOnly,
            },
            PathRule {
                path: dir.join("file.txt"),
                access: FsAccess::ReadWrite,
            },
            PathRule {
                path: dir.join("missing"),
                access: FsAccess::ReadOnly,
            },
        ],
        ports: vec![PortRule {
            port: PORT,
            access: NetAccess::Bind,
        }],
    }
}

fn expect_denied(what: &str, r: std::io::Result<impl std::fmt::Debug>) {
    match r {
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {}
        other => panic!("{what}: expected EACCES, got {other:?}"),
    }
}

/// The child: applies the rules (through the annotation, as the runtime will) and
/// probes. Panics (so exits non-zero) on the first surprise.
#[test]
#[ignore = "run by landlock_restricts_a_child"]
fn landlock_child() {
    let Some(dir) = std::env::var_os(DIR_ENV).map(PathBuf::from) else {
        return;
    };
    let mode = match std::env::var("PHANTOM_TEST_LANDLOCK_MODE").as_deref() {
        Ok("hardened") => Mode::Hardened,
        _ => Mode::Sandbox,
    };
    let annotation = rules(&dir).to_annotation();
    let parsed = LandlockRules::from_annotation(&annotation).unwrap();
    let status = apply(&parsed, mode).unwrap();
    println!("{status}");
    assert_eq!(status.enforcement, Enforcement::Full, "{status}");
    assert_eq!(status.skipped.len(), 1, "{status}");
    assert!(status.skipped[0].contains("missing"));

    // Inside the read-write directory: create, write, read, rename, remove.
    std::fs::write(dir.join("rw/new"), b"x").unwrap();
    assert_eq!(std::fs::read(dir.join("rw/new")).unwrap(), b"x");
    std::fs::create_dir(dir.join("rw/sub")).unwrap();
    std::fs::rename(dir.join("rw/new"), dir.join("rw/sub/new")).unwrap();
    std::fs::remove_file(dir.join("rw/sub/new")).unwrap();
    // A read-write file rule: write it, but not its siblings.
    std::fs::write(dir.join("file.txt"), b"y").unwrap();
    // Read-only: read yes, write no.
    assert_eq!(std::fs::read(dir.join("ro/data")).unwrap(), b"data");
    expect_denied("write in ro", std::fs::write(dir.join("ro/new"), b"x"));
    expect_denied("truncate in ro", std::fs::write(dir.join("ro/data"), b""));
    // Outside every rule: nothing, not even read.
    expect_denied("write outside", std::fs::write(dir.join("outside"), b"x"));
    expect_denied("read outside", std::fs::read("/etc/hostname"));
    expect_denied("list outside", std::fs::read_dir("/"));
    expect_denied("exec outside", Command::new("/bin/true").status());
    // TCP: only the listed port may be bound (ABI 4).
    if kernel_abi() >= 4 {
        let other: SocketAddr = ([127, 0, 0, 1], PORT + 1).into();
        expect_denied("bind another port", TcpListener::bind(other));
        let ours: SocketAddr = ([127, 0, 0, 1], PORT).into();
        match TcpListener::bind(ours) {
            Ok(_) => {}
            Err(e) => assert_ne!(e.kind(), ErrorKind::PermissionDenied, "bind {PORT}: {e}"),
        }
    }
    println!("landlock child: all probes passed");
}

fn run_child(mode: &str) {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("rw")).unwrap();
    std::fs::create_dir(d.path().join("ro")).unwrap();
    std::fs::write(d.path().join("ro/data"), b"data").unwrap();
    std::fs::write(d.path().join("file.txt"), b"").unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "landlock_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_ENV, d.path())
        .env("PHANTOM_TEST_LANDLOCK_MODE", mode)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("all probes passed"),
        "{mode}: {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // The parent is not restricted, and the child did write where it could.
    assert_eq!(std::fs::read(d.path().join("file.txt")).unwrap(), b"y");
    assert!(d.path().join("rw/sub").is_dir());
    std::fs::write(d.path().join("outside"), b"parent").unwrap();
}

#[test]
fn landlock_restricts_a_child() {
    let abi = kernel_abi();
    if abi == 0 {
        eprintln!("SKIP: this kernel has no Landlock");
        return;
    }
    run_child("sandbox");
}

#[test]
fn hardened_mode_applies_when_the_kernel_has_abi_6() {
    let abi = kernel_abi();
    if abi < 6 {
        eprintln!("SKIP: Landlock ABI {abi} < 6 (hardened mode would refuse, as unit-tested)");
        return;
    }
    run_child("hardened");
}

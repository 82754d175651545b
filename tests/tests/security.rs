//! Container-breakout regression tests. Each reproduces the setup of a known
//! runc CVE and asserts that the host is unaffected; the runtime may refuse
//! the container or run it confined, but nothing may leak out.

use std::fs::{self, File};
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use phantom_tests::{
    assert_success, describe, host_mount_points, key_values, output, pass_fd, pid_alive,
    require_root, stdout, wait_until, Bundle, Runtime,
};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

/// A host directory holding a marker file the container must never see.
fn host_dir() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("phantom-host-")
        .tempdir()
        .unwrap();
    fs::write(d.path().join("HOST-MARKER"), "host\n").unwrap();
    d
}

/// Marks the container's root so that reaching it can be recognised.
fn mark_rootfs(b: &Bundle) {
    fs::write(b.rootfs().join("ROOTFS-MARKER"), "").unwrap();
}

/// `../` enough times to reach the top of any path in the test.
const CLIMB: &str = "../../../../../../../../../../../../../../../..";

/// CVE-2024-21626 part 1: descriptors the caller leaks into the runtime
/// (here host directories, not close-on-exec in the runtime process) must
/// not reach the container, neither through `run` nor `create`+`start`.
#[test]
fn leaked_caller_fds_do_not_reach_container() {
    require_root!();
    let rt = Runtime::new();
    let host = host_dir();
    let script = "echo fds=$(ls /proc/self/fd); ls -l /proc/self/fd";
    // The fds are passed only to the runtime's child (pass_fd clears
    // close-on-exec there), so parallel tests never inherit them.
    let leak = |cmd: &mut std::process::Command| {
        let dir = File::open(host.path()).unwrap();
        for fd in [3, 5, 9] {
            pass_fd(cmd, &dir, fd);
        }
    };
    let check = |text: &str| {
        assert_eq!(
            key_values(text)["fds"],
            "0 1 2 3",
            "leaked fds visible:\n{text}"
        );
        assert!(!text.contains(host.path().to_str().unwrap()), "{text}");
    };

    // run
    let b = Bundle::sh(script);
    let id = rt.id("leakrun");
    rt.prepare(&id, &b);
    let mut cmd = rt.command(&[
        "run".as_ref(),
        "--bundle".as_ref(),
        b.path().as_os_str(),
        id.as_ref(),
    ]);
    leak(&mut cmd);
    let out = output(cmd);
    assert_success(&out, "run with leaked fds");
    check(&stdout(&out));

    // create + start, leaking into both.
    let b = Bundle::sh(&format!("{{ {script}; }} > /tmp/out 2>&1"));
    let id = rt.id("leakcreate");
    rt.prepare(&id, &b);
    let mut cmd = rt.command(&[
        "create".as_ref(),
        "--bundle".as_ref(),
        b.path().as_os_str(),
        id.as_ref(),
    ]);
    leak(&mut cmd);
    assert_success(&output(cmd), "create with leaked fds");
    let mut cmd = rt.command(&["start", &id]);
    leak(&mut cmd);
    assert_success(&output(cmd), "start with leaked fds");
    rt.wait_status(&id, "stopped", WAIT);
    check(&b.read_rootfs_file("tmp/out").unwrap());
}

/// CVE-2024-21626 part 2: `process.cwd` of the form /proc/self/fd/N must
/// not resolve through a descriptor open in the runtime (runc leaked one
/// to the host's /sys/fs/cgroup). Whatever N is, the container must either
/// fail or have its cwd inside its own root.
///
/// crun 1.8.1 fails this: it chdirs into the caller-leaked host directory
/// (fd 3) before closing extra descriptors, and `..` then climbs to the
/// host's /. runc 1.1.5+deb12u1 (with the CVE-2024-21626 fix) refuses.
#[test]
fn cwd_through_proc_self_fd_stays_inside() {
    require_root!();
    let rt = Runtime::new();
    let host = host_dir();
    let script = format!("ls -a; echo ---; ls {CLIMB}; echo cwd=$(readlink /proc/self/cwd)");
    for n in 3..=12 {
        let b =
            Bundle::sh(&script).with(|c| c["process"]["cwd"] = json!(format!("/proc/self/fd/{n}")));
        mark_rootfs(&b);
        let id = rt.id("cwdfd");
        rt.prepare(&id, &b);
        let mut cmd = rt.command(&[
            "run".as_ref(),
            "--bundle".as_ref(),
            b.path().as_os_str(),
            id.as_ref(),
        ]);
        let dir = File::open(host.path()).unwrap();
        for fd in [3, 4, 5, 6] {
            pass_fd(&mut cmd, &dir, fd);
        }
        let out = output(cmd);
        if !out.status.success() {
            continue; // refusing is fine
        }
        let text = stdout(&out);
        let (cwd_listing, climbed) = text.split_once("---").unwrap_or((&text, ""));
        assert!(
            !cwd_listing.contains("HOST-MARKER"),
            "cwd=/proc/self/fd/{n} is the host directory:\n{}",
            describe(&out)
        );
        assert!(
            climbed.contains("ROOTFS-MARKER"),
            "cwd=/proc/self/fd/{n} climbs to a root that is not the container's:\n{}",
            describe(&out)
        );
        let cwd = key_values(&text)["cwd"].clone();
        assert!(
            cwd.starts_with('/') && !cwd.contains("unreachable"),
            "cwd=/proc/self/fd/{n} is outside the root: {cwd}"
        );
    }
}

/// The container's cwd and everything reachable from it is the
/// container's own tree.
#[test]
fn cwd_is_inside_container_root() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::sh(&format!(
        "echo cwd=$(readlink /proc/self/cwd); echo root=$(readlink /proc/self/root); ls {CLIMB}"
    ))
    .with(|c| c["process"]["cwd"] = json!("/home/user"));
    mark_rootfs(&b);
    let text = rt.run_ok(&b);
    let kv = key_values(&text);
    assert_eq!(kv["cwd"], "/home/user");
    assert_eq!(kv["root"], "/");
    assert!(text.contains("ROOTFS-MARKER"), "{text}");
}

/// The whole content of a file, for before/after comparison.
fn snapshot(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// CVE-2019-5736: a process in the container must not get a writable
/// handle on the host runtime binary through /proc/PID/exe of a runtime
/// process in the container's pid namespace. While container A is
/// "created", its pid 1 is the runtime's init; container B joins A's pid
/// namespace and tries to open /proc/1/exe for writing, and to re-open a
/// read-only handle for writing after A's init exec'd the user process
/// (when the binary is no longer busy). Nothing is ever written: a
/// successful open is reported and fails the test.
#[test]
fn runtime_binary_not_writable_from_container() {
    require_root!();
    let rt = Runtime::new();
    let before = snapshot(rt.bin());

    let a = rt.id("victim");
    let a_bundle = Bundle::sh("sleep 1000");
    rt.create(&a, &a_bundle);
    let init = rt.state(&a)["pid"].as_i64().unwrap();

    let b_bundle = Bundle::sh(
        "exec > /tmp/out 2>&1; \
         echo exe=$(readlink /proc/1/exe); \
         if cat /proc/1/exe > /dev/null 2>&1; then exec 3</proc/1/exe; echo ro-open-ok; \
         else echo ro-open-denied; fi; \
         if (exec 4>>/proc/1/exe) 2>/dev/null; then echo WRITE-OPEN-OK; fi; \
         if (exec 4<>/proc/1/exe) 2>/dev/null; then echo RDWR-OPEN-OK; fi; \
         touch /tmp/step1; \
         while [ ! -e /tmp/go ]; do sleep 0.05; done; \
         if [ -e /proc/self/fd/3 ]; then \
           if (exec 5>>/proc/self/fd/3) 2>/dev/null; then echo WRITE-REOPEN-OK; fi; \
         fi; \
         echo finished",
    )
    .with(|c| {
        c["linux"]["namespaces"] = json!([
            { "type": "pid", "path": format!("/proc/{init}/ns/pid") },
            { "type": "network" }, { "type": "ipc" }, { "type": "uts" }, { "type": "mount" }
        ]);
    });
    let b = rt.id("attacker");
    rt.create(&b, &b_bundle);
    rt.start(&b);
    assert!(
        wait_until(WAIT, || b_bundle.rootfs().join("tmp/step1").exists()),
        "attacker did not get going: {:?}",
        b_bundle.read_rootfs_file("tmp/out")
    );

    // Let A's init exec its process: the runtime binary is then idle.
    rt.start(&a);
    assert!(
        wait_until(WAIT, || fs::read_link(format!("/proc/{init}/exe"))
            .is_ok_and(|e| e.ends_with("busybox"))),
        "container A did not exec its process"
    );
    fs::write(b_bundle.rootfs().join("tmp/go"), "").unwrap();
    rt.wait_status(&b, "stopped", WAIT);

    let report = b_bundle.read_rootfs_file("tmp/out").unwrap_or_default();
    eprintln!("attacker report:\n{report}");
    assert!(
        report.contains("finished"),
        "attack script did not complete:\n{report}"
    );
    for bad in ["WRITE-OPEN-OK", "RDWR-OPEN-OK", "WRITE-REOPEN-OK"] {
        assert!(
            !report.contains(bad),
            "{bad}: container can write the runtime binary\n{report}"
        );
    }
    assert!(pid_alive(init));
    assert!(snapshot(rt.bin()) == before, "the runtime binary changed");
}

/// The simple form: in a running container /proc/1/exe is readable but not
/// writable, and the host binary is unchanged.
#[test]
fn proc_exe_of_running_container_not_writable() {
    require_root!();
    let rt = Runtime::new();
    let before = snapshot(rt.bin());
    let b = Bundle::sh(
        "cat /proc/1/exe > /dev/null && echo read-ok; \
         (exec 3>>/proc/1/exe) 2>/dev/null && echo WRITE-OK; \
         dd if=/dev/zero of=/proc/self/exe bs=1 count=1 conv=notrunc 2>/dev/null && echo DD-OK; \
         true",
    );
    assert_eq!(rt.run_ok(&b), "read-ok\n");
    assert!(snapshot(rt.bin()) == before, "the runtime binary changed");
}

fn host_untouched(host: &Path) {
    let entries: Vec<String> = fs::read_dir(host)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries, ["HOST-MARKER"], "the host directory was modified");
    let mounts: Vec<_> = host_mount_points()
        .into_iter()
        .filter(|m| m.starts_with(host))
        .collect();
    assert!(mounts.is_empty(), "host directory got mounts: {mounts:?}");
}

/// CVE-2021-30465 (and the older symlink-destination bugs): mount
/// destinations are resolved inside the rootfs. Symlinks in the rootfs that
/// point at a host directory, relatively or absolutely, must not make the
/// runtime create or mount anything there.
#[test]
fn mount_destination_symlinks_stay_in_rootfs() {
    require_root!();
    let rt = Runtime::new();
    let host = host_dir();
    let b = Bundle::sh("ls /evil-rel /evil-abs; cat /proc/self/mounts").with(|c| {
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.push(json!({ "destination": "/evil-rel/x", "type": "tmpfs", "source": "tmpfs" }));
        mounts.push(json!({ "destination": "/evil-abs/y", "type": "tmpfs", "source": "tmpfs" }));
        mounts.push(json!({ "destination": "/evil-abs/z", "type": "bind",
            "source": "/etc", "options": ["rbind", "ro"] }));
    });
    let host_str = host.path().to_str().unwrap().trim_start_matches('/');
    symlink(format!("{CLIMB}/{host_str}"), b.rootfs().join("evil-rel")).unwrap();
    symlink(host.path(), b.rootfs().join("evil-abs")).unwrap();
    let out = rt.run_bundle(&b);
    host_untouched(host.path());
    // Accepting is fine as long as the mounts landed inside the rootfs
    // (runc resolves the symlinks within it: the mount points appear at
    // ROOTFS/<host path>/x and so on).
    if out.status.success() {
        let text = stdout(&out);
        assert!(text.contains("/evil-rel:\nx\ny\nz"), "{}", describe(&out));
    }
}

/// CVE-2019-16884/19921 family: if the rootfs's /proc is a symlink to a
/// host path, procfs must not be mounted there.
#[test]
fn proc_symlink_in_rootfs() {
    require_root!();
    let rt = Runtime::new();
    let host = host_dir();
    let b = Bundle::sh("ls /proc/self/ > /dev/null; echo ran");
    fs::remove_dir(b.rootfs().join("proc")).unwrap();
    symlink(host.path(), b.rootfs().join("proc")).unwrap();
    let out = rt.run_bundle(&b);
    host_untouched(host.path());
    // runc and crun refuse this; a runtime that accepts it must really
    // have run the container (with procfs inside the rootfs).
    if out.status.success() {
        assert_eq!(stdout(&out), "ran\n", "{}", describe(&out));
    }
}

/// maskedPaths and readonlyPaths that are symlinks in the rootfs pointing
/// towards the host must not mask or remount host paths; /proc/keys (a
/// default masked path) still reads as empty.
#[test]
fn masked_and_readonly_symlinks_stay_in_rootfs() {
    require_root!();
    let rt = Runtime::new();
    let host = host_dir();
    let target = host.path().join("HOST-MARKER");
    let b = Bundle::sh("echo keys=$(cat /proc/keys 2>/dev/null | wc -c)").with(|c| {
        c["linux"]["maskedPaths"]
            .as_array_mut()
            .unwrap()
            .push(json!("/etc/evil-mask"));
        c["linux"]["readonlyPaths"]
            .as_array_mut()
            .unwrap()
            .push(json!("/etc/evil-ro"));
    });
    let host_str = target.to_str().unwrap().trim_start_matches('/');
    symlink(
        format!("{CLIMB}/{host_str}"),
        b.rootfs().join("etc/evil-mask"),
    )
    .unwrap();
    symlink(host.path(), b.rootfs().join("etc/evil-ro")).unwrap();
    let out = rt.run_bundle(&b);
    host_untouched(host.path());
    assert_eq!(fs::read_to_string(&target).unwrap(), "host\n");
    // The host directory is still writable from the host.
    let probe = host.path().join("probe");
    fs::write(&probe, "").expect("host directory became read-only");
    fs::remove_file(&probe).unwrap();
    if out.status.success() {
        assert_eq!(key_values(&stdout(&out))["keys"], "0", "{}", describe(&out));
    }
}

/// A sandbox's caller-given workspace is bound without following symlinks
/// even if the path is swapped for one after `phantom run` checked it: the
/// container's init opens the annotated workspace itself with
/// RESOLVE_NO_SYMLINKS and binds that fd.
#[test]
fn annotated_workspace_bind_does_not_follow_a_symlink() {
    require_root!();
    if !phantom_tests::runtime_binary().ends_with("phantom") {
        eprintln!("skipped: run.phantom.workspace is phantom's");
        return;
    }
    let rt = Runtime::new();
    let host = tempfile::tempdir().unwrap();
    let proj = tempfile::tempdir().unwrap();
    let link = proj.path().join("out");
    symlink(host.path(), &link).unwrap();
    let ws = link.display().to_string();
    let b = Bundle::sh("touch /workspace/x").with(|c| {
        c["annotations"] = json!({
            "run.phantom.workspace": ws,
            "run.phantom.workspace-owned": "false",
        });
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/workspace", "type": "bind", "source": ws,
            "options": ["rbind", "rw"],
        }));
    });
    let out = rt.run_bundle(&b);
    assert!(
        !out.status.success(),
        "the symlinked workspace was bound\n{}",
        describe(&out)
    );
    assert!(!host.path().join("x").exists(), "wrote through the symlink");
}

//! config.json features, each observed from inside the container.

use std::collections::BTreeSet;
use std::fs;
use std::time::Duration;

use phantom_tests::{
    assert_success, cap_mask, cgroup_dirs, host_mount_points, key_values, require_root,
    status_caps, status_field, stdout, wait_until, Bundle, Runtime,
};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn hostname() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::sh("hostname; cat /proc/sys/kernel/hostname")
        .with(|c| c["hostname"] = json!("phantom-host"));
    assert_eq!(rt.run_ok(&b), "phantom-host\nphantom-host\n");
    // The host's names are untouched (the container has its own UTS ns).
    assert_ne!(
        fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim(),
        "phantom-host"
    );
}

/// `domainname` is in runtime-spec 1.0.2, but runc 1.1.5 ignores it (it
/// arrived in runc 1.2), so this cannot pass on the reference runc.
#[test]
#[ignore = "runc 1.1.5 does not implement domainname; run with --ignored"]
fn domainname() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::sh("cat /proc/sys/kernel/domainname")
        .with(|c| c["domainname"] = json!("phantom.example"));
    assert_eq!(rt.run_ok(&b), "phantom.example\n");
}

#[test]
fn env_is_exactly_configured() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::sh(
        "echo foo=$FOO; echo spaced=$SPACED; echo empty=[$EMPTY]; echo leak=[$PHANTOM_TEST_LEAK]",
    )
    .with(|c| {
        let env = c["process"]["env"].as_array_mut().unwrap();
        env.push(json!("FOO=bar"));
        env.push(json!("SPACED=a b=c"));
        env.push(json!("EMPTY="));
    });
    let id = rt.id("env");
    rt.prepare(&id, &b);
    let mut cmd = rt.command(&[
        "run".as_ref(),
        "--bundle".as_ref(),
        b.path().as_os_str(),
        id.as_ref(),
    ]);
    // The runtime's own environment must not leak into the container.
    cmd.env("PHANTOM_TEST_LEAK", "leaked");
    let out = phantom_tests::output(cmd);
    assert_success(&out, "run");
    let kv = key_values(&stdout(&out));
    assert_eq!(kv["foo"], "bar");
    assert_eq!(kv["spaced"], "a b=c");
    assert_eq!(kv["empty"], "[]");
    assert_eq!(
        kv["leak"], "[]",
        "host environment leaked into the container"
    );
}

#[test]
fn cwd() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::sh("pwd; readlink /proc/self/cwd")
        .with(|c| c["process"]["cwd"] = json!("/home/user"));
    assert_eq!(rt.run_ok(&b), "/home/user\n/home/user\n");
}

#[test]
fn user_uid_gid_additional_gids() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::sh(
        "echo uid=$(id -u); echo gid=$(id -g); grep -E '^(Uid|Gid|Groups):' /proc/self/status",
    )
    .with(|c| {
        c["process"]["user"] = json!({ "uid": 1000, "gid": 1000, "additionalGids": [100, 65534] });
    });
    let out = rt.run_ok(&b);
    let kv = key_values(&out);
    assert_eq!(kv["uid"], "1000", "{out}");
    assert_eq!(kv["gid"], "1000", "{out}");
    // real, effective, saved and filesystem ids are all switched.
    assert_eq!(
        status_field(&out, "Uid")
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["1000"; 4]
    );
    assert_eq!(
        status_field(&out, "Gid")
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["1000"; 4]
    );
    // Supplementary groups are exactly additionalGids (root's groups dropped).
    let groups: BTreeSet<&str> = status_field(&out, "Groups")
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(groups, BTreeSet::from(["100", "65534"]), "{out}");
}

#[test]
fn umask() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::sh("umask; touch /tmp/f; stat -c %a /tmp/f")
        .with(|c| c["process"]["user"]["umask"] = json!(0o027));
    assert_eq!(rt.run_ok(&b), "0027\n640\n");
}

#[test]
fn rlimits() {
    require_root!();
    let rt = Runtime::new();
    // Only lower limits: raising above the host's hard limit would need
    // CAP_SYS_RESOURCE, which this host's bounding set lacks.
    let b = Bundle::sh("echo soft=$(ulimit -n); echo hard=$(ulimit -Hn); echo core=$(ulimit -c); grep -E 'Max (open files|core file size)' /proc/self/limits")
        .with(|c| {
            c["process"]["rlimits"] = json!([
                { "type": "RLIMIT_NOFILE", "soft": 512, "hard": 1000 },
                { "type": "RLIMIT_CORE", "soft": 0, "hard": 0 }
            ]);
        });
    let out = rt.run_ok(&b);
    let kv = key_values(&out);
    assert_eq!(kv["soft"], "512", "{out}");
    assert_eq!(kv["hard"], "1000", "{out}");
    assert_eq!(kv["core"], "0", "{out}");
    let files = out
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let nums: Vec<&str> = files.split_whitespace().skip(3).take(2).collect();
    assert_eq!(nums, ["512", "1000"], "{files}");
}

fn status_of(rt: &Runtime, f: impl FnOnce(&mut Value)) -> String {
    rt.run_ok(&Bundle::sh("cat /proc/self/status").with(f))
}

#[test]
fn capabilities_exact_sets() {
    require_root!();
    let rt = Runtime::new();
    let caps = ["CAP_CHOWN", "CAP_KILL", "CAP_SETUID", "CAP_NET_RAW"];
    let status = status_of(&rt, |c| {
        c["process"]["capabilities"] = json!({
            "bounding": caps, "effective": caps, "permitted": caps
        });
    });
    let want = cap_mask(&caps);
    assert_eq!(status_caps(&status, "CapBnd"), want, "{status}");
    assert_eq!(status_caps(&status, "CapEff"), want, "{status}");
    assert_eq!(status_caps(&status, "CapPrm"), want, "{status}");
    assert_eq!(status_caps(&status, "CapInh"), 0, "{status}");
    assert_eq!(status_caps(&status, "CapAmb"), 0, "{status}");

    // The default set (what `runc spec` generates).
    let status = status_of(&rt, |_| {});
    let want = cap_mask(&["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    assert_eq!(status_caps(&status, "CapBnd"), want, "{status}");
    assert_eq!(status_caps(&status, "CapEff"), want, "{status}");
}

/// Ambient capabilities let a non-root user keep a capability across exec.
#[test]
fn ambient_capabilities_for_non_root() {
    require_root!();
    let rt = Runtime::new();
    let caps = ["CAP_NET_BIND_SERVICE"];
    let status = status_of(&rt, |c| {
        c["process"]["user"] = json!({ "uid": 1000, "gid": 1000 });
        c["process"]["capabilities"] = json!({
            "bounding": caps, "effective": caps, "permitted": caps,
            "inheritable": caps, "ambient": caps
        });
    });
    let want = cap_mask(&caps);
    for field in ["CapBnd", "CapEff", "CapPrm", "CapInh", "CapAmb"] {
        assert_eq!(status_caps(&status, field), want, "{field}\n{status}");
    }
    assert_eq!(
        status_field(&status, "Uid")
            .unwrap()
            .split_whitespace()
            .next(),
        Some("1000")
    );
}

#[test]
fn no_new_privileges() {
    require_root!();
    let rt = Runtime::new();
    for (nnp, want) in [(true, "1"), (false, "0")] {
        let status = status_of(&rt, |c| c["process"]["noNewPrivileges"] = json!(nnp));
        assert_eq!(
            status_field(&status, "NoNewPrivs"),
            Some(want),
            "noNewPrivileges={nnp}"
        );
    }
}

#[test]
fn readonly_root() {
    require_root!();
    let rt = Runtime::new();
    let script = "touch /x && echo root-writable; touch /tmp/x && echo tmp-writable; \
                  touch /dev/shm/x && echo shm-writable; true";
    let ro = rt.run_ok(&Bundle::sh(script).with(|c| c["root"]["readonly"] = json!(true)));
    assert_eq!(ro, "shm-writable\n", "read-only root");
    let rw = rt.run_ok(&Bundle::sh(script));
    assert_eq!(
        rw, "root-writable\ntmp-writable\nshm-writable\n",
        "writable root"
    );
}

#[test]
fn masked_paths() {
    require_root!();
    let rt = Runtime::new();
    // /proc/kcore does not exist on this kernel: a masked path that does
    // not exist must simply be skipped (it is in the default list).
    let b = Bundle::sh(
        "echo keys=$(cat /proc/keys 2>/dev/null | wc -c); \
         echo timer=$(cat /proc/timer_list 2>/dev/null | wc -c); \
         echo firmware=$(ls -A /sys/firmware 2>/dev/null | wc -l); \
         echo etc=$(cat /etc/passwd 2>/dev/null | wc -c); \
         echo home=$(ls -A /home 2>/dev/null | wc -l); \
         echo group=$(cat /etc/group | wc -c)",
    )
    .with(|c| {
        let masked = c["linux"]["maskedPaths"].as_array_mut().unwrap();
        masked.push(json!("/etc/passwd"));
        masked.push(json!("/home"));
        masked.push(json!("/no/such/path"));
    });
    let kv = key_values(&rt.run_ok(&b));
    for k in ["keys", "timer", "firmware", "etc", "home"] {
        assert_eq!(kv[k], "0", "{k} is not masked: {kv:?}");
    }
    // Control: unmasked siblings are readable, so the zeros above mean
    // something.
    assert_ne!(kv["group"], "0");
}

#[test]
fn readonly_paths() {
    require_root!();
    let rt = Runtime::new();
    let script = "echo changed > /proc/sys/kernel/hostname 2>/dev/null && echo sys-writable; \
                  touch /home/x 2>/dev/null && echo home-writable; \
                  touch /tmp/x && echo tmp-writable; true";
    // The default readonlyPaths include /proc/sys.
    let ro = rt.run_ok(&Bundle::sh(script).with(|c| {
        c["linux"]["readonlyPaths"]
            .as_array_mut()
            .unwrap()
            .push(json!("/home"));
    }));
    assert_eq!(ro, "tmp-writable\n");
    // Control: without readonlyPaths both writes work, so the failures
    // above come from readonlyPaths and not from missing privileges.
    let rw = rt.run_ok(&Bundle::sh(script).with(|c| c["linux"]["readonlyPaths"] = json!([])));
    assert_eq!(rw, "sys-writable\nhome-writable\ntmp-writable\n");
}

#[test]
fn bind_and_tmpfs_mounts() {
    require_root!();
    let rt = Runtime::new();
    let host = tempfile::tempdir().unwrap();
    fs::write(host.path().join("hello.txt"), "from-host\n").unwrap();
    let ro_host = tempfile::tempdir().unwrap();
    fs::write(ro_host.path().join("ro.txt"), "read-only\n").unwrap();
    let b = Bundle::sh(
        "cat /mnt/rw/hello.txt; echo from-container > /mnt/rw/out.txt; \
         cat /mnt/ro/ro.txt; touch /mnt/ro/x 2>/dev/null && echo ro-writable; \
         grep ' /mnt/tmp ' /proc/self/mounts; stat -c %a /mnt/tmp",
    )
    .with(|c| {
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.push(json!({ "destination": "/mnt/rw", "type": "bind",
            "source": host.path(), "options": ["rbind", "rw"] }));
        mounts.push(json!({ "destination": "/mnt/ro", "type": "bind",
            "source": ro_host.path(), "options": ["bind", "ro"] }));
        mounts.push(json!({ "destination": "/mnt/tmp", "type": "tmpfs",
            "source": "tmpfs", "options": ["nosuid", "nodev", "size=1m", "mode=750"] }));
    });
    let out = rt.run_ok(&b);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "from-host", "{out}");
    assert_eq!(lines[1], "read-only", "{out}");
    let tmpfs = lines[2];
    assert!(tmpfs.starts_with("tmpfs /mnt/tmp tmpfs "), "{out}");
    for opt in ["rw", "nosuid", "nodev", "size=1024k"] {
        assert!(
            tmpfs.split([' ', ',']).any(|o| o == opt),
            "{opt} missing: {tmpfs}"
        );
    }
    assert_eq!(lines[3], "750", "{out}");
    assert_eq!(lines.len(), 4, "ro bind mount was writable: {out}");
    assert_eq!(
        fs::read_to_string(host.path().join("out.txt")).unwrap(),
        "from-container\n"
    );
    assert!(!ro_host.path().join("x").exists());
    // The bundle's rootfs only got the mount point directories.
    assert!(!b.rootfs().join("mnt/rw/hello.txt").exists());
}

#[test]
fn devices() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::sh(
        "for d in null zero full random urandom tty; do stat -c \"$d %F %t:%T\" /dev/$d; done; \
         [ -e /dev/ptmx ] && echo ptmx; \
         stat -c 'fuse %F %t:%T %a %u:%g' /dev/fuse; \
         for l in fd stdin stdout stderr; do echo $l=$(readlink /dev/$l); done; \
         echo zero=$(head -c 3 /dev/zero | wc -c); echo null=$(cat /dev/null | wc -c)",
    )
    .with(|c| {
        c["linux"]["devices"] = json!([{
            "path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
            "fileMode": 0o640, "uid": 0, "gid": 100
        }]);
    });
    let out = rt.run_ok(&b);
    // stat prints major:minor in hex.
    for want in [
        "null character special file 1:3",
        "zero character special file 1:5",
        "full character special file 1:7",
        "random character special file 1:8",
        "urandom character special file 1:9",
        "tty character special file 5:0",
        "ptmx",
        "fuse character special file a:e5 640 0:100",
    ] {
        assert!(out.lines().any(|l| l == want), "missing {want:?} in\n{out}");
    }
    let kv = key_values(&out);
    assert_eq!(kv["fd"], "/proc/self/fd");
    assert_eq!(kv["stdin"], "/proc/self/fd/0");
    assert_eq!(kv["stdout"], "/proc/self/fd/1");
    assert_eq!(kv["stderr"], "/proc/self/fd/2");
    assert_eq!(kv["zero"], "3");
    assert_eq!(kv["null"], "0");
}

#[test]
fn sysctl_in_network_namespace() {
    require_root!();
    let rt = Runtime::new();
    let host_before = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let b = Bundle::sh("cat /proc/sys/net/ipv4/ip_forward").with(|c| {
        c["linux"]["sysctl"] = json!({ "net.ipv4.ip_forward": "1" });
    });
    assert_eq!(rt.run_ok(&b), "1\n");
    assert_eq!(
        fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_before,
        "the host's sysctl changed"
    );
}

#[test]
fn oom_score_adj() {
    require_root!();
    let rt = Runtime::new();
    // Positive only: lowering it needs CAP_SYS_RESOURCE.
    let b = Bundle::sh("cat /proc/self/oom_score_adj")
        .with(|c| c["process"]["oomScoreAdj"] = json!(100));
    assert_eq!(rt.run_ok(&b), "100\n");
}

const NAMESPACES: [&str; 5] = ["pid", "net", "ipc", "uts", "mnt"];

fn host_ns(kind: &str) -> String {
    fs::read_link(format!("/proc/self/ns/{kind}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn new_namespaces() {
    require_root!();
    let rt = Runtime::new();
    let script = format!(
        "echo pid1=$$; for n in {}; do echo $n=$(readlink /proc/self/ns/$n); done",
        NAMESPACES.join(" ")
    );
    let kv = key_values(&rt.run_ok(&Bundle::sh(&script)));
    assert_eq!(kv["pid1"], "1", "the process is not pid 1 of a new pid ns");
    for n in NAMESPACES {
        assert!(kv[n].starts_with(&format!("{n}:[")), "{n}: {kv:?}");
        assert_ne!(kv[n], host_ns(n), "{n} namespace is the host's");
    }
}

#[test]
fn join_namespace_by_path() {
    require_root!();
    let rt = Runtime::new();
    let a = rt.id("nsowner");
    rt.create(&a, &Bundle::sh("sleep 1000"));
    rt.start(&a);
    let pid = rt.state(&a)["pid"].as_i64().unwrap();
    let net = fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    let uts = fs::read_link(format!("/proc/{pid}/ns/uts")).unwrap();

    let b = Bundle::sh("readlink /proc/self/ns/net; readlink /proc/self/ns/uts").with(|c| {
        c["linux"]["namespaces"] = json!([
            { "type": "pid" }, { "type": "ipc" }, { "type": "uts" }, { "type": "mount" },
            { "type": "network", "path": format!("/proc/{pid}/ns/net") }
        ]);
    });
    let out = rt.run_ok(&b);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        net.to_str().unwrap(),
        "did not join the network namespace"
    );
    assert_ne!(
        lines[1],
        uts.to_str().unwrap(),
        "joined a namespace it was not told to"
    );
}

#[test]
fn user_namespace_mappings() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::sh(
        "cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g; readlink /proc/self/ns/user",
    )
    .with(|c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({ "type": "user" }));
        c["linux"]["uidMappings"] = json!([{ "containerID": 0, "hostID": 100000, "size": 65536 }]);
        c["linux"]["gidMappings"] = json!([{ "containerID": 0, "hostID": 200000, "size": 65536 }]);
    });
    let out = rt.run_ok(&b);
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["0", "100000", "65536"], "{out}");
    assert_eq!(lines[1], ["0", "200000", "65536"], "{out}");
    assert_eq!(lines[2], ["0"], "{out}");
    assert_eq!(lines[3], ["0"], "{out}");
    assert_ne!(lines[4][0], host_ns("user"), "no new user namespace");
}

/// linux.cgroupsPath places the container in that cgroup, and delete
/// removes what create made.
#[test]
fn cgroups_path_honoured_and_removed() {
    require_root!();
    let rt = Runtime::new();
    let id = rt.id("cgroup");
    let path = format!("{}/{id}", phantom_tests::CGROUP_PARENT);
    let b = Bundle::sh("sleep 1000").with(|c| c["linux"]["cgroupsPath"] = json!(path));
    rt.create(&id, &b);
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        cgroups.lines().any(|l| l.ends_with(&format!(":{path}"))),
        "{pid} is not in {path}:\n{cgroups}"
    );
    assert!(!cgroup_dirs(&path).is_empty());
    rt.start(&id);
    rt.kill(&id, "KILL");
    rt.wait_status(&id, "stopped", WAIT);
    rt.delete(&id);
    let mut left = Vec::new();
    assert!(
        wait_until(WAIT, || {
            left = cgroup_dirs(&path);
            left.is_empty()
        }),
        "cgroups left after delete: {left:?}"
    );
}

/// Hooks run on the host with the container state on stdin.
#[test]
fn hooks_receive_state() {
    require_root!();
    let rt = Runtime::new();
    let out_dir = tempfile::tempdir().unwrap();
    let hook = |name: &str| {
        json!({
            "path": "/bin/sh",
            "args": ["sh", "-c", format!("cat > {}/{name}.json", out_dir.path().display())]
        })
    };
    let b = Bundle::sh("echo container-ran").with(|c| {
        c["hooks"] = json!({
            "createRuntime": [hook("createRuntime")],
            "poststart": [hook("poststart")],
            "poststop": [hook("poststop")],
        });
    });
    let id = rt.id("hooks");
    let out = rt.run(&id, &b);
    assert_success(&out, "run with hooks");
    assert_eq!(stdout(&out), "container-ran\n");
    // `run` deletes the container itself once it exits.
    let read = |name: &str| -> Value {
        let path = out_dir.path().join(format!("{name}.json"));
        let text =
            fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name} hook did not run: {e}"));
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{name} stdin is not state JSON ({e}): {text}"))
    };
    for name in ["createRuntime", "poststart", "poststop"] {
        let st = read(name);
        assert_eq!(st["id"], id.as_str(), "{name}: {st}");
        assert!(st["bundle"].is_string(), "{name}: {st}");
    }
    // The spec leaves the exact status seen by createRuntime open (runc
    // says "creating", crun "created"), but the process must exist by then.
    let st = read("createRuntime");
    assert!(
        matches!(st["status"].as_str(), Some("creating" | "created")),
        "{st}"
    );
    assert!(st["pid"].as_i64().is_some_and(|p| p > 0), "{st}");
    // poststart may race with a fast container's exit, so only poststop's
    // status is fixed.
    assert_eq!(read("poststop")["status"], "stopped");
}

/// `tmpcopyup` (Podman's `--read-only` puts it on /tmp, /var/tmp, /run):
/// the tmpfs starts with what the image had there, and is writable while
/// the root is read-only.
#[test]
fn tmpfs_tmpcopyup_keeps_the_image_contents() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::sh("cat /etc/passwd | head -1; echo x > /etc/new && echo writable; touch /x 2>/dev/null || echo root-ro")
        .with(|c| {
            c["root"]["readonly"] = json!(true);
            c["mounts"].as_array_mut().unwrap().push(json!({"destination": "/etc", "type": "tmpfs",
                "source": "tmpfs", "options": ["rw", "nosuid", "nodev", "tmpcopyup"]}));
        });
    let out = rt.run_bundle(&b);
    let text = stdout(&out);
    assert!(
        text.starts_with("root:x:0:0"),
        "{}",
        phantom_tests::describe(&out)
    );
    assert!(
        text.contains("writable\n") && text.contains("root-ro\n"),
        "{}",
        phantom_tests::describe(&out)
    );
    assert!(
        !b.rootfs().join("etc/new").exists(),
        "the write reached the image"
    );
}

#[test]
fn loopback_is_up_in_a_new_network_namespace() {
    require_root!();
    let rt = Runtime::new();
    // IFF_UP is bit 0 of the interface flags; with lo up a connection to
    // a closed port on 127.0.0.1 is refused (with lo down: unreachable).
    let out = rt.run_ok(&Bundle::sh(
        "cat /sys/class/net/lo/flags; nc 127.0.0.1 1 </dev/null 2>&1 | grep -q refused && echo reachable; true",
    ));
    let mut lines = out.lines();
    let flags = lines.next().unwrap_or_default();
    let flags = i64::from_str_radix(flags.trim_start_matches("0x"), 16)
        .unwrap_or_else(|e| panic!("lo flags {flags:?}: {e}"));
    assert_eq!(flags & 1, 1, "lo is down: flags {flags:#x}\n{out}");
    assert_eq!(lines.next(), Some("reachable"), "{out}");
}

/// config-linux.md "Rootfs Mount Propagation": the value (shared, slave,
/// private or unbindable) applies to the container's `/`, unbindable too
/// (it cannot be set before the rootfs is bound in place, nor before the
/// masked paths are bound from /dev/null).
#[test]
fn rootfs_propagation_every_value() {
    require_root!();
    let rt = Runtime::new();
    for (value, tag) in [
        ("private", ""),
        // A slave of the host's `/` shows `master:N` only where the host's
        // mount is shared (systemd hosts); here it may be private.
        ("slave", "-"),
        ("shared", "shared:"),
        ("unbindable", "unbindable"),
    ] {
        let b = Bundle::sh("awk '$5 == \"/\" { print }' /proc/self/mountinfo")
            .with(|c| c["linux"]["rootfsPropagation"] = json!(value));
        let out = rt.run_bundle(&b);
        assert_success(&out, &format!("rootfsPropagation {value}"));
        let line = stdout(&out);
        assert!(!line.is_empty(), "{value}: no mountinfo line for /");
        if tag == "-" {
            for other in ["shared:", "unbindable"] {
                assert!(!line.contains(other), "{value}: / is {other}\n{line}");
            }
        } else if tag.is_empty() {
            for other in ["shared:", "master:", "unbindable"] {
                assert!(!line.contains(other), "{value}: / is {other}\n{line}");
            }
        } else {
            assert!(line.contains(tag), "{value}: / is not {tag}\n{line}");
        }
    }
}

/// Big configs work: a 512 KiB annotation (it travels in the state that
/// init and hooks get) and a 100 KiB environment variable.
#[test]
fn big_annotation_and_environment() {
    require_root!();
    let rt = Runtime::new();
    let id = rt.id("big");
    let b = Bundle::sh("echo ${#BIG}").with(|c| {
        c["annotations"] = json!({ "org.example.big": "a".repeat(512 * 1024) });
        c["process"]["env"]
            .as_array_mut()
            .unwrap()
            .push(json!(format!("BIG={}", "b".repeat(100 * 1024))));
    });
    rt.create(&id, &b);
    let state = rt.state(&id);
    assert_eq!(
        state["annotations"]["org.example.big"]
            .as_str()
            .map(str::len),
        Some(512 * 1024)
    );
    rt.start(&id);
    rt.wait_status(&id, "stopped", WAIT);
    rt.delete(&id);
    assert_eq!(rt.run_ok(&b), "102400\n");
}

/// config-linux.md "Namespaces": a namespace type missing from the list is
/// inherited from the runtime. Without `mount` the container shares the
/// host's mount namespace, yet sees its own rootfs (read-only if asked),
/// `exec` enters that rootfs too, and once deleted it leaves no mount
/// behind in the host's namespace.
#[test]
fn missing_mount_namespace_is_inherited_and_leaves_no_mounts() {
    require_root!();
    let rt = Runtime::new();
    let id = rt.id("nomntns");
    let b = Bundle::new(&["sleep", "30"]).with(|c| {
        c["linux"]["namespaces"] = json!([{ "type": "pid" }, { "type": "uts" }, { "type": "ipc" }]);
        c["root"]["readonly"] = json!(true);
    });
    let under_bundle = || -> Vec<_> {
        host_mount_points()
            .into_iter()
            .filter(|p| p.starts_with(b.path()))
            .collect()
    };
    assert!(
        under_bundle().is_empty(),
        "mounts under the bundle before: {:?}",
        under_bundle()
    );
    // Written only where the container's root really is its rootfs.
    fs::write(b.rootfs().join(".rootfs-marker"), "").unwrap();
    rt.create(&id, &b);
    rt.start(&id);
    // exec lands in the container's root (busybox, /proc of its pid
    // namespace), read-only, in the host's mount namespace.
    let exec = rt.cmd(&[
        "exec",
        &id,
        "sh",
        "-c",
        "echo mnt=$(readlink /proc/self/ns/mnt); echo init=$(cat /proc/1/comm); \
         test -e /.rootfs-marker && echo own-root && (touch /x 2>/dev/null || echo read-only)",
    ]);
    assert_success(&exec, "exec into a container without a mount namespace");
    let text = stdout(&exec);
    let kv = key_values(&text);
    assert_eq!(
        kv["mnt"],
        host_ns("mnt"),
        "not the host's mount namespace\n{text}"
    );
    assert_eq!(kv["init"], "sleep", "{text}");
    assert!(
        text.contains("own-root") && text.contains("read-only"),
        "{text}"
    );
    rt.kill(&id, "KILL");
    rt.wait_status(&id, "stopped", WAIT);
    rt.delete(&id);
    let left = under_bundle();
    assert!(
        left.is_empty(),
        "mounts left in the host's namespace: {left:?}"
    );
}

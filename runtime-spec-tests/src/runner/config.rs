//! Every Linux config field, checked from inside the container by
//! `rst-checker`. One container per group of fields that can share it;
//! each group claims the checker lines it reports, named
//! `config.<checker check>[@variant]`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use super::console::Console;
use super::exec::describe;
use super::{Bundle, Ctx, Group, Rec, STOP_TIMEOUT};
use crate::outcome::{parse_line, Outcome};
use crate::procfs;

const CAPS5: [&str; 5] = [
    "bounding",
    "effective",
    "permitted",
    "inheritable",
    "ambient",
];

/// What a container definition decided before running.
#[derive(Default)]
struct Prep {
    /// Report every claim as skipped, without running a container.
    skip_all: Option<String>,
    /// Results decided by the runner (host limits), overriding the checker.
    overrides: Vec<(String, Outcome)>,
    /// Run with `process.terminal` and a console socket.
    terminal: bool,
    /// After delete, report under this name whether any mount under the
    /// bundle is left in the runner's (the runtime's) mount namespace.
    mounts_left_check: Option<&'static str>,
}

type PrepareFn = fn(&mut Ctx, &mut Bundle, &mut Prep) -> Result<(), String>;

struct Def {
    group: &'static str,
    /// (checker check, variant) pairs this container reports.
    claims: Vec<(String, &'static str)>,
    prepare: PrepareFn,
}

fn report_name(check: &str, variant: &str) -> String {
    if variant.is_empty() {
        format!("config.{check}")
    } else {
        format!("config.{check}@{variant}")
    }
}

fn claims(list: &[&str], variant: &'static str) -> Vec<(String, &'static str)> {
    list.iter().map(|c| ((*c).to_owned(), variant)).collect()
}

fn caps_claims(variant: &'static str) -> Vec<(String, &'static str)> {
    CAPS5
        .iter()
        .map(|s| (format!("process.capabilities.{s}"), variant))
        .collect()
}

fn defs() -> Vec<Def> {
    let mut process = claims(
        &[
            "hostname",
            "domainname",
            "process.args",
            "process.env",
            "process.cwd",
            "process.user.uid",
            "process.user.gid",
            "process.user.additionalGids",
            "process.user.umask",
        ],
        "",
    );
    process.extend(caps_claims(""));
    process.extend(claims(
        &[
            "process.noNewPrivileges",
            "process.rlimits",
            "process.oomScoreAdj",
            "process.terminal",
            "linux.sysctl",
        ],
        "",
    ));
    process.extend(
        procfs::NAMESPACES
            .iter()
            .map(|(t, _)| (format!("linux.namespaces.{t}"), "")),
    );
    process.extend(claims(
        &["linux.devices.default", "linux.devices.symlinks"],
        "",
    ));

    let mut fs_claims = claims(
        &[
            "process.user.uid",
            "process.user.gid",
            "process.noNewPrivileges",
        ],
        "root",
    );
    fs_claims.extend(caps_claims("root"));
    fs_claims.extend(claims(
        &[
            "mounts.exist",
            "mounts.options",
            "root.readonly",
            "linux.rootfsPropagation",
            "linux.maskedPaths",
            "linux.readonlyPaths",
            "linux.devices",
            "linux.resources.devices",
        ],
        "",
    ));

    let cgroup_checks: Vec<(String, &'static str)> = [
        "memory.limit",
        "memory.reservation",
        "memory.swap",
        "pids.limit",
        "cpu.shares",
        "cpu.quota",
        "cpu.period",
        "cpu.cpus",
        "cpu.mems",
        "blockIO.weight",
        "network.classID",
    ]
    .iter()
    .map(|c| (format!("linux.resources.{c}"), ""))
    .collect();

    vec![
        Def {
            group: "config.process",
            claims: process,
            prepare: prep_process,
        },
        Def {
            group: "config.fs",
            claims: fs_claims,
            prepare: prep_fs,
        },
        Def {
            group: "config.readonly-root",
            claims: claims(
                &["root.readonly", "linux.rootfsPropagation", "mounts.exist"],
                "readonly",
            ),
            prepare: prep_readonly_root,
        },
        Def {
            group: "config.terminal",
            claims: vec![
                ("process.terminal".into(), "terminal"),
                ("process.console".into(), ""),
            ],
            prepare: prep_terminal,
        },
        Def {
            group: "config.userns",
            claims: vec![
                ("linux.uidMappings".into(), ""),
                ("linux.gidMappings".into(), ""),
                ("linux.namespaces.user".into(), "userns"),
                ("process.user.uid".into(), "userns"),
                ("mounts.exist".into(), "userns"),
            ],
            prepare: prep_userns,
        },
        Def {
            group: "config.nsjoin",
            claims: ["network", "ipc", "uts"]
                .iter()
                .map(|t| (format!("linux.namespaces.{t}"), "path"))
                .collect(),
            prepare: prep_nsjoin,
        },
        Def {
            group: "config.seccomp",
            claims: claims(&["linux.seccomp.errno", "linux.seccomp.errnoRet"], ""),
            prepare: prep_seccomp,
        },
        Def {
            group: "config.cgroups",
            claims: cgroup_checks,
            prepare: prep_cgroups,
        },
        Def {
            group: "config.seccomp-allowlist",
            claims: vec![
                ("linux.seccomp.defaultAction".into(), ""),
                ("process.cwd".into(), "seccomp-allowlist"),
                ("process.user.uid".into(), "seccomp-allowlist"),
                ("process.args".into(), "seccomp-allowlist"),
            ],
            prepare: prep_seccomp_allowlist,
        },
        Def {
            group: "config.unbindable",
            claims: claims(&["linux.rootfsPropagation", "mounts.exist"], "unbindable"),
            prepare: prep_unbindable,
        },
        Def {
            group: "config.no-namespaces",
            claims: ["pid", "network", "mount", "ipc", "uts", "cgroup"]
                .iter()
                .map(|t| (format!("linux.namespaces.{t}"), "none"))
                .chain([("process.args".to_owned(), "none")])
                .collect(),
            prepare: prep_no_namespaces,
        },
        Def {
            group: "config.rlimits-above-hard",
            claims: claims(&["process.rlimits"], "above-hard-limit"),
            prepare: prep_rlimit_above_hard,
        },
        Def {
            group: "config.oom-negative",
            claims: claims(&["process.oomScoreAdj"], "negative"),
            prepare: prep_oom_negative,
        },
    ]
}

/// Checks a group's runner decides on the host, besides its checker claims.
fn runner_checks(group: &str) -> &'static [&'static str] {
    match group {
        "config.no-namespaces" => &[NO_MOUNT_NS_LEFT],
        _ => &[],
    }
}

/// runtime.md "Delete": "Deleting a container MUST delete the resources
/// that were created during the `create` step." Without a mount namespace
/// the container's mounts are made in the runtime's namespace, so they are
/// such resources.
const NO_MOUNT_NS_LEFT: &str = "config.linux.namespaces.mount@none-delete";

/// The config groups, plus the LSM fields this suite can only skip.
pub fn groups() -> Vec<Group> {
    let mut out: Vec<Group> = defs()
        .into_iter()
        .map(|d| {
            let mut checks: Vec<String> = d.claims.iter().map(|(c, v)| report_name(c, v)).collect();
            checks.extend(runner_checks(d.group).iter().map(|c| (*c).to_owned()));
            let Def {
                group,
                claims,
                prepare,
            } = d;
            Group {
                name: group,
                checks,
                run: Box::new(move |ctx: &mut Ctx, rec: &mut Rec| {
                    run_def(ctx, rec, group, &claims, prepare)
                }),
            }
        })
        .collect();
    out.push(Group {
        name: "config.lsm",
        checks: vec![
            "config.process.apparmorProfile".into(),
            "config.process.selinuxLabel".into(),
        ],
        run: Box::new(|ctx: &mut Ctx, rec: &mut Rec| {
            let why = |on: bool, what: &str| {
                if on {
                    format!("{what} is enabled on this host, but the suite does not load profiles")
                } else {
                    format!("{what} is not enabled on this host")
                }
            };
            rec.set(
                "config.process.apparmorProfile",
                Outcome::Skip(why(ctx.host.apparmor, "AppArmor")),
            );
            rec.set(
                "config.process.selinuxLabel",
                Outcome::Skip(why(ctx.host.selinux, "SELinux")),
            );
        }),
    });
    out
}

fn run_def(
    ctx: &mut Ctx,
    rec: &mut Rec,
    group: &str,
    claims: &[(String, &'static str)],
    prepare: PrepareFn,
) {
    let fail_all = |rec: &mut Rec, why: &str| {
        for (c, v) in claims {
            let n = report_name(c, v);
            if rec.get(&n).is_none() {
                rec.set(n, Outcome::Fail(why.to_owned()));
            }
        }
    };
    let name = group.trim_start_matches("config.");
    let mut b = match Bundle::new(ctx, name) {
        Ok(b) => b,
        Err(e) => return fail_all(rec, &e),
    };
    let mut prep = Prep::default();
    if let Err(e) = prepare(ctx, &mut b, &mut prep) {
        return fail_all(rec, &format!("setup: {e}"));
    }
    for (n, o) in std::mem::take(&mut prep.overrides) {
        rec.set(n, o);
    }
    if let Some(why) = prep.skip_all {
        for (c, v) in claims {
            rec.set(report_name(c, v), Outcome::Skip(why.clone()));
        }
        return;
    }
    let output = if prep.terminal {
        run_with_terminal(ctx, &b, name)
    } else {
        ctx.run_to_end(&b, name)
    };
    if let Some(name) = prep.mounts_left_check {
        rec.set(name, mounts_left(&b, output.is_ok()));
    }
    let output = match output {
        Ok(o) => o,
        Err(e) => return fail_all(rec, &e),
    };
    let lines: Vec<(String, Outcome)> = output.lines().filter_map(parse_line).collect();
    for (c, v) in claims {
        let n = report_name(c, v);
        if rec.get(&n).is_some() {
            continue; // decided by the runner
        }
        match lines.iter().find(|(name, _)| name == c) {
            Some((_, o)) => rec.set(n, o.clone()),
            None => {
                let stderr = fs::read_to_string(b.dir.join("stderr")).unwrap_or_default();
                let tail: Vec<&str> = output.lines().chain(stderr.lines()).rev().take(3).collect();
                rec.set(
                    n,
                    Outcome::Fail(format!(
                        "the checker did not report {c}; output ends: {tail:?}"
                    )),
                );
            }
        }
    }
}

/// Mounts under the bundle left in the runner's mount namespace after the
/// container was deleted; unmounts them (deepest first) so that the work
/// directory can be removed.
fn mounts_left(b: &Bundle, ran: bool) -> Outcome {
    let dir = b.dir.to_string_lossy().into_owned();
    let left: Vec<String> = procfs::mountinfo()
        .unwrap_or_default()
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| p.starts_with(&format!("{dir}/")))
        .collect();
    for p in left.iter().rev() {
        let _ = nix::mount::umount2(p.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
    if !ran {
        return Outcome::Fail("the container did not run to the end".into());
    }
    Outcome::check(left.is_empty(), || {
        format!(
            "{} mounts under the bundle left in the runtime's mount namespace after delete: {}",
            left.len(),
            left.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
        )
    })
}

/// create with `--console-socket`, start, wait; returns the terminal output.
fn run_with_terminal(ctx: &mut Ctx, b: &Bundle, what: &str) -> Result<String, String> {
    let sock = b.dir.join("console.sock");
    let console = Console::listen(&sock)?;
    let id = ctx.id(what);
    let sock_s = sock.to_string_lossy().into_owned();
    let out = ctx.create_with(&id, b, &["--console-socket", &sock_s]);
    let result = if !out.status.success() {
        Err(format!("create failed: {}", describe(&out)))
    } else {
        let s = ctx.start(&id);
        if s.status.success() {
            ctx.wait_status(&id, "stopped", STOP_TIMEOUT)
        } else {
            Err(format!("start failed: {}", describe(&s)))
        }
    };
    let text = console.finish();
    let del = ctx.delete(&id);
    if !del.status.success() {
        ctx.destroy(&id);
    }
    result?;
    text
}

fn set_caps(b: &mut Bundle, bounding: &[&str], others: &[&str], inheritable: &[&str]) {
    b.config["process"]["capabilities"] = json!({
        "bounding": bounding,
        "effective": others,
        "permitted": others,
        "inheritable": inheritable,
        "ambient": inheritable,
    });
}

/// A non-root process with every process field set.
fn prep_process(_ctx: &mut Ctx, b: &mut Bundle, _p: &mut Prep) -> Result<(), String> {
    let c = &mut b.config;
    c["hostname"] = json!("rst-process");
    c["domainname"] = json!("rst.example.org");
    c["process"]["user"] =
        json!({"uid": 1000, "gid": 1000, "additionalGids": [100, 5000], "umask": 0o027});
    c["process"]["cwd"] = json!("/home/user");
    c["process"]["env"] = json!([
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME=/home/user",
        "RST_SPACES=a b  c",
        "RST_EMPTY=",
        "RST_EQUALS=x=y"
    ]);
    c["process"]["noNewPrivileges"] = json!(true);
    c["process"]["rlimits"] = json!([
        {"type": "RLIMIT_NOFILE", "soft": 1000, "hard": 1001},
        {"type": "RLIMIT_MSGQUEUE", "soft": 4096, "hard": 8192},
        {"type": "RLIMIT_CORE", "soft": 1024, "hard": 2048}
    ]);
    c["process"]["oomScoreAdj"] = json!(500);
    c["linux"]["sysctl"] = json!({
        "net.ipv4.ip_forward": "1",
        "net.core.somaxconn": "1000",
        "kernel.msgmax": "12345"
    });
    if let Some(ns) = c["linux"]["namespaces"].as_array_mut() {
        ns.push(json!({"type": "cgroup"}));
    }
    set_caps(
        b,
        &[
            "CAP_CHOWN",
            "CAP_DAC_OVERRIDE",
            "CAP_FOWNER",
            "CAP_KILL",
            "CAP_NET_BIND_SERVICE",
            "CAP_NET_RAW",
            "CAP_SETUID",
            "CAP_SETGID",
            "CAP_AUDIT_WRITE",
        ],
        &["CAP_KILL", "CAP_NET_BIND_SERVICE"],
        &["CAP_KILL", "CAP_NET_BIND_SERVICE"],
    );
    Ok(())
}

/// Root process; mounts, masked and read-only paths, devices.
fn prep_fs(ctx: &mut Ctx, b: &mut Bundle, _p: &mut Prep) -> Result<(), String> {
    let io = |e: std::io::Error| e.to_string();
    fs::write(b.in_rootfs("rst-masked-file"), "secret").map_err(io)?;
    fs::create_dir_all(b.in_rootfs("rst-masked-dir")).map_err(io)?;
    fs::write(b.in_rootfs("rst-masked-dir/secret"), "secret").map_err(io)?;
    fs::create_dir_all(b.in_rootfs("rst-ro-dir")).map_err(io)?;
    let _ = fs::set_permissions(b.in_rootfs("rst-ro-dir"), fs::Permissions::from_mode(0o777));
    let src = b.dir.join("bind-src");
    fs::create_dir_all(&src).map_err(io)?;
    fs::write(src.join("file"), "from the host").map_err(io)?;

    // The bounding set is also what the process holds (effective, permitted).
    const HELD: &[&str] = &[
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FOWNER",
        "CAP_FSETID",
        "CAP_KILL",
        "CAP_MKNOD",
        "CAP_NET_BIND_SERVICE",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETPCAP",
        "CAP_SYS_CHROOT",
        "CAP_AUDIT_WRITE",
    ];
    set_caps(b, HELD, HELD, &["CAP_KILL"]);
    let c = &mut b.config;
    c["process"]["noNewPrivileges"] = json!(false);
    if let Some(m) = c["mounts"].as_array_mut() {
        m.push(
            json!({"destination": "/rst-tmpfs", "type": "tmpfs", "source": "tmpfs",
                      "options": ["nosuid", "nodev", "noexec", "mode=0710", "size=1m"]}),
        );
        m.push(
            json!({"destination": "/rst-tmpfs-ro", "type": "tmpfs", "source": "tmpfs",
                      "options": ["ro", "noatime", "nodiratime"]}),
        );
        m.push(
            json!({"destination": "/rst-bind", "type": "bind", "source": src,
                      "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]}),
        );
    }
    if let Some(p) = c["linux"]["maskedPaths"].as_array_mut() {
        p.push(json!("/rst-masked-file"));
        p.push(json!("/rst-masked-dir"));
    }
    if let Some(p) = c["linux"]["readonlyPaths"].as_array_mut() {
        p.push(json!("/rst-ro-dir"));
    }
    c["linux"]["devices"] = json!([
        {"path": "/dev/rst-null", "type": "c", "major": 1, "minor": 3,
         "fileMode": 0o640, "uid": 1000, "gid": 1000},
        {"path": "/dev/rst-loop", "type": "b", "major": 7, "minor": 0,
         "fileMode": 0o600, "uid": 0, "gid": 0}
    ]);
    c["linux"]["resources"]["devices"] = json!([
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "b", "major": 7, "minor": 0, "access": "m"}
    ]);
    c["linux"]["rootfsPropagation"] = json!("shared");
    let _ = ctx;
    Ok(())
}

fn prep_readonly_root(_ctx: &mut Ctx, b: &mut Bundle, _p: &mut Prep) -> Result<(), String> {
    b.config["root"]["readonly"] = json!(true);
    b.config["linux"]["rootfsPropagation"] = json!("private");
    Ok(())
}

fn prep_terminal(_ctx: &mut Ctx, b: &mut Bundle, p: &mut Prep) -> Result<(), String> {
    b.config["process"]["terminal"] = json!(true);
    p.terminal = true;
    Ok(())
}

fn prep_userns(_ctx: &mut Ctx, b: &mut Bundle, _p: &mut Prep) -> Result<(), String> {
    let c = &mut b.config;
    if let Some(ns) = c["linux"]["namespaces"].as_array_mut() {
        ns.push(json!({"type": "user"}));
    }
    c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    Ok(())
}

/// Joins network, ipc and uts namespaces held by a `sleep` the runner
/// started in new namespaces.
fn prep_nsjoin(ctx: &mut Ctx, b: &mut Bundle, _p: &mut Prep) -> Result<(), String> {
    let mut cmd = Command::new("sleep");
    cmd.arg("600")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: unshare(2) is async-signal-safe and touches no memory of the
    // parent; it runs in the forked child before exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWNET | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("spawn a namespace holder: {e}"))?;
    let pid = child.id();
    ctx.hold(child);
    let mut namespaces = vec![json!({"type": "pid"}), json!({"type": "mount"})];
    let mut inodes = serde_json::Map::new();
    for (t, f) in [("network", "net"), ("ipc", "ipc"), ("uts", "uts")] {
        let path = format!("/proc/{pid}/ns/{f}");
        let ino = procfs::ns_inode(&path).ok_or_else(|| format!("stat {path}"))?;
        inodes.insert(t.to_owned(), json!(ino));
        namespaces.push(json!({"type": t, "path": path}));
    }
    b.config["linux"]["namespaces"] = Value::Array(namespaces);
    // The holder's UTS namespace keeps its host name: do not set one.
    if let Some(o) = b.config.as_object_mut() {
        o.remove("hostname");
    }
    b.host_extra["ns_paths"] = Value::Object(inodes);
    Ok(())
}

fn prep_seccomp(_ctx: &mut Ctx, b: &mut Bundle, _p: &mut Prep) -> Result<(), String> {
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 77},
            {"names": ["getsid"], "action": "SCMP_ACT_ERRNO"}
        ]
    });
    Ok(())
}

/// Resource limits, with a cgroup namespace and a cgroup mount so that the
/// checker can read them. Fields whose files this host lacks are left out
/// of the config and reported as skipped, with the reason.
fn prep_cgroups(ctx: &mut Ctx, b: &mut Bundle, p: &mut Prep) -> Result<(), String> {
    let c = &mut b.config;
    if let Some(ns) = c["linux"]["namespaces"].as_array_mut() {
        ns.push(json!({"type": "cgroup"}));
    }
    if let Some(m) = c["mounts"].as_array_mut() {
        m.push(
            json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                      "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
        );
    }
    let mut memory = json!({"limit": 64 << 20, "reservation": 32 << 20});
    if ctx
        .host
        .cgroup_file(
            "memory",
            &["memory.memsw.limit_in_bytes", "memory.swap.max"],
        )
        .is_some()
    {
        memory["swap"] = json!(128 << 20);
    } else {
        p.overrides.push((
            "config.linux.resources.memory.swap".into(),
            Outcome::Skip(
                "the host has no memory.memsw.limit_in_bytes (swap accounting off)".into(),
            ),
        ));
    }
    let mut resources = json!({
        "devices": c["linux"]["resources"]["devices"].clone(),
        "memory": memory,
        "pids": {"limit": 123},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
    });
    if ctx
        .host
        .cgroup_file(
            "blkio",
            &[
                "blkio.weight",
                "blkio.bfq.weight",
                "io.bfq.weight",
                "io.weight",
            ],
        )
        .is_some()
    {
        resources["blockIO"] = json!({"weight": 300});
    } else {
        p.overrides.push((
            "config.linux.resources.blockIO.weight".into(),
            Outcome::Skip(
                "the host has no blkio.weight or blkio.bfq.weight file (no BFQ scheduler)".into(),
            ),
        ));
    }
    if ctx
        .host
        .controllers
        .get("net_cls")
        .copied()
        .unwrap_or(false)
    {
        resources["network"] = json!({"classID": 1_048_577});
    } else {
        p.overrides.push((
            "config.linux.resources.network.classID".into(),
            Outcome::Skip("the host has no net_cls cgroup hierarchy".into()),
        ));
    }
    c["linux"]["resources"] = resources;
    Ok(())
}

/// What a static program (the checker) and the OCI contract need: the
/// program's own calls, the identity and capability switch (which comes
/// after the filter when `noNewPrivileges` is false: the filter must be
/// loaded while the runtime still has CAP_SYS_ADMIN), and execve.
/// Deliberately absent, as in container profiles written before 2020
/// (Docker's among them): `openat2`, `close_range`, `faccessat2`, which a
/// program need not make; a runtime that makes them after loading the
/// user's filter cannot start the program. `getpgid`, `getsid` and
/// `getpgrp` are absent as probes for `linux.seccomp.defaultAction`
/// (`getppid` stays: runc's init calls it after the filter, to check that
/// its parent is still there).
#[rustfmt::skip]
const SECCOMP_ALLOW: &[&str] = &[
    "access", "arch_prctl", "brk", "capget", "capset", "chdir", "chmod", "chown", "clock_getres",
    "clock_gettime", "clock_nanosleep", "clone", "clone3", "close", "dup", "dup2", "dup3",
    "epoll_create1", "epoll_ctl", "epoll_pwait", "epoll_wait", "execve", "execveat", "exit",
    "exit_group", "faccessat", "fchdir", "fchmod", "fchmodat", "fchown", "fchownat", "fcntl",
    "flock", "fork", "fstat", "fstatfs", "fsync", "ftruncate", "futex", "getcwd", "getdents64",
    "getegid", "geteuid", "getgid", "getgroups", "getpid", "getppid", "getpriority", "getrandom",
    "getresgid", "getresuid", "getrlimit", "getrusage", "gettid", "gettimeofday", "getuid",
    "ioctl", "kill", "lseek", "lstat", "madvise", "mkdir", "mkdirat", "mmap", "mprotect", "mremap",
    "munmap", "nanosleep", "newfstatat", "open", "openat", "pipe", "pipe2", "poll", "ppoll",
    "prctl", "pread64", "prlimit64", "pselect6", "pwrite64", "read", "readlink", "readlinkat",
    "readv", "rename", "renameat", "renameat2", "rmdir", "rseq", "rt_sigaction", "rt_sigprocmask",
    "rt_sigreturn", "rt_sigsuspend", "sched_getaffinity", "sched_yield", "select",
    "set_robust_list", "set_tid_address", "setfsgid", "setfsuid", "setgid", "setgroups", "setpgid",
    "setregid", "setresgid", "setresuid", "setreuid", "setsid", "setuid", "sigaltstack", "stat",
    "statfs", "statx", "sysinfo", "tgkill", "umask", "uname", "unlink", "unlinkat", "vfork",
    "wait4", "waitid", "write", "writev",
];

/// config-linux.md "Seccomp" with `defaultAction: SCMP_ACT_ERRNO` and an
/// allow list of what the program needs (the shape of every real
/// container profile), `noNewPrivileges: false` and a non-root user, so
/// that the filter is loaded before the identity switch. The program must
/// run, in its `cwd`, as its user, and an unlisted syscall gets EPERM.
fn prep_seccomp_allowlist(_ctx: &mut Ctx, b: &mut Bundle, _p: &mut Prep) -> Result<(), String> {
    let c = &mut b.config;
    c["process"]["noNewPrivileges"] = json!(false);
    c["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    c["process"]["cwd"] = json!("/home/user");
    c["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": SECCOMP_ALLOW, "action": "SCMP_ACT_ALLOW"}]
    });
    Ok(())
}

/// config-linux.md "Rootfs Mount Propagation": `unbindable`, "the rootfs
/// mount is a private mount that cannot be bind-mounted". The default
/// masked paths (bind mounts of /dev/null) and mounts must still be there.
fn prep_unbindable(_ctx: &mut Ctx, b: &mut Bundle, _p: &mut Prep) -> Result<(), String> {
    b.config["linux"]["rootfsPropagation"] = json!("unbindable");
    Ok(())
}

/// config-linux.md "Namespaces": "If a namespace type is not specified in
/// the `namespaces` array, the container MUST inherit the runtime namespace
/// of that type." An empty list: every namespace is the runtime's, the
/// mount namespace included; after delete none of the container's mounts
/// may stay in it (runtime.md "Delete").
fn prep_no_namespaces(_ctx: &mut Ctx, b: &mut Bundle, p: &mut Prep) -> Result<(), String> {
    let c = &mut b.config;
    c["linux"]["namespaces"] = json!([]);
    // Masked and read-only paths need a mount namespace of the container's
    // own (runc refuses them without one); they are not what this checks.
    for k in ["maskedPaths", "readonlyPaths"] {
        if let Some(l) = c["linux"].as_object_mut() {
            l.remove(k);
        }
    }
    // Without a UTS namespace of its own the container may not set names.
    if let Some(o) = c.as_object_mut() {
        o.remove("hostname");
        o.remove("domainname");
    }
    p.mounts_left_check = Some(NO_MOUNT_NS_LEFT);
    Ok(())
}

fn lacks_sys_resource(ctx: &Ctx) -> Option<String> {
    (!ctx.host.has_cap("CAP_SYS_RESOURCE")).then(|| {
        "the host's capability bounding set lacks CAP_SYS_RESOURCE, so no runtime here can do this"
            .to_owned()
    })
}

fn prep_rlimit_above_hard(ctx: &mut Ctx, b: &mut Bundle, p: &mut Prep) -> Result<(), String> {
    let hard = ctx.host.nofile_hard + 1024;
    b.config["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": hard, "hard": hard}]);
    p.skip_all = lacks_sys_resource(ctx).map(|w| {
        format!(
            "raising RLIMIT_NOFILE above the hard limit {}: {w}",
            ctx.host.nofile_hard
        )
    });
    Ok(())
}

fn prep_oom_negative(ctx: &mut Ctx, b: &mut Bundle, p: &mut Prep) -> Result<(), String> {
    b.config["process"]["oomScoreAdj"] = json!(-500);
    p.skip_all = lacks_sys_resource(ctx).map(|w| format!("lowering oom_score_adj: {w}"));
    Ok(())
}

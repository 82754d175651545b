use super::*;
use crate::landlock::{FsAccess, NetAccess};

const MINI: &str = "profile: t\n";

fn ok(text: &str) -> Profile {
    Profile::parse(text, "t.yaml").unwrap_or_else(|e| panic!("{e}"))
}

/// (line, column, message) of the error `text` gives.
fn err(text: &str) -> (usize, usize, String) {
    let e = Profile::parse(text, "t.yaml").expect_err(text);
    let s = e.to_string();
    assert!(s.starts_with("t.yaml:"), "{s}");
    let (line, column) = e.location().unwrap_or_else(|| panic!("unlocated: {s}"));
    (line, column, e.message())
}

fn assert_err(text: &str, line: usize, column: usize, needle: &str) {
    let (l, c, m) = err(text);
    assert!(
        m.contains(needle),
        "{text:?}: message {m:?} lacks {needle:?}"
    );
    assert_eq!((l, c), (line, column), "{text:?}: {m}");
}

#[test]
fn the_issue_example_parses() {
    let p = ok("profile: python-dev
mode: sandbox
security:
  seccomp: { default: errno, allow: [read, write, openat, close, mmap, exit_group] }
  landlock:
    - { path: /workspace, access: read-write }
    - { path: /usr, access: read-execute }
resources: { memory: 512MiB, cpu: 1.0, pids: 256 }
network: { mode: none }
");
    assert_eq!(p.name, "python-dev");
    assert_eq!(p.mode, Mode::Sandbox);
    let s = p.seccomp.as_ref().unwrap();
    assert_eq!(s.default, Action::Errno(libc::EPERM as u16));
    assert_eq!(s.allow.len(), 6);
    assert_eq!(p.landlock.paths.len(), 2);
    assert_eq!(p.landlock.paths[0].access, FsAccess::ReadWrite);
    assert_eq!(p.resources.memory, Some(512 << 20));
    assert_eq!(p.resources.cpu, Some(1.0));
    assert_eq!(p.resources.pids, Some(256));
    assert_eq!(p.network, NetworkMode::None);
    assert!(p.host_system);
}

#[test]
fn every_key() {
    let p = ok(r#"
profile: full.1
description: everything
mode: hardened
command: [python3, -q]
cwd: /workspace/src
host-system: false
security:
  seccomp:
    default: kill-process
    allow: [read]
    deny: [ptrace]
    deny-action: errno
    deny-errno: EACCES
    rules:
      - { syscall: clone, action: allow, args: [{ index: 0, op: masked-eq, mask: 0x7E020000, value: 0 }] }
      - syscalls: [personality]
        action: errno
        errno: 22
        args:
          - { index: 0, op: ne, value: 0 }
          - { index: 0, op: lt, value: 0o777 }
  landlock:
    - { path: /workspace, access: read-write-execute }
    - { port: 443, access: connect }
  capabilities: []
resources: { memory: 1.5GiB, cpu: 0.5, pids: 10, tmp: 16M, shm: 1000KB }
network: { mode: loopback }
mounts:
  - { source: /data, target: /data }
  - { source: /out, target: /out, access: read-write, optional: true }
  - { target: /cache, size: 8MiB }
  - { target: /scratch, type: tmpfs }
env:
  A: "1"
  B: two words
  EMPTY:
rlimits:
  nofile: 1024
  core: 0
  stack: { soft: 8MiB, hard: unlimited }
"#);
    assert_eq!(p.mode, Mode::Hardened);
    assert_eq!(
        p.command.as_deref(),
        Some(&["python3".to_string(), "-q".into()][..])
    );
    assert_eq!(
        p.cwd.as_deref(),
        Some(std::path::Path::new("/workspace/src"))
    );
    assert!(!p.host_system);
    let s = p.seccomp.as_ref().unwrap();
    assert_eq!(s.default, Action::KillProcess);
    assert_eq!(s.deny_action, Action::Errno(libc::EACCES as u16));
    assert_eq!(s.rules.len(), 2);
    assert_eq!(s.rules[0].args[0].op, ArgOp::MaskedEq(0x7E02_0000));
    assert_eq!(s.rules[1].action, Action::Errno(22));
    assert_eq!(s.rules[1].args[1].value, 0o777);
    assert_eq!(p.landlock.ports[0].access, NetAccess::Connect);
    assert_eq!(p.resources.memory, Some(3 << 29));
    assert_eq!(p.resources.tmp, Some(16 << 20));
    assert_eq!(p.resources.shm, Some(1_000_000));
    assert_eq!(p.network, NetworkMode::Loopback);
    let e = ok("profile: t\nnetwork: { mode: egress, allow: [pypi.org, '*.pythonhosted.org', 'api.x.com:8443'], allow-cidr: [203.0.113.0/24] }\n");
    assert_eq!(e.network, NetworkMode::Egress);
    assert_eq!(e.egress.allow.len(), 3);
    assert_eq!(e.egress.allow_cidr[0].to_string(), "203.0.113.0/24");
    assert_eq!(p.mounts.len(), 4);
    assert_eq!(
        p.mounts[0].kind,
        MountKind::Bind {
            source: "/data".into(),
            writable: false
        }
    );
    assert!(p.mounts[1].optional);
    assert_eq!(
        p.mounts[2].kind,
        MountKind::Tmpfs {
            size: Some(8 << 20)
        }
    );
    assert_eq!(p.mounts[3].kind, MountKind::Tmpfs { size: None });
    assert_eq!(
        p.env,
        vec![
            ("A".to_string(), "1".to_string()),
            ("B".into(), "two words".into()),
            ("EMPTY".into(), String::new())
        ]
    );
    assert_eq!(p.rlimits.len(), 3);
    assert_eq!(p.rlimits[2].soft, 8 << 20);
    assert_eq!(p.rlimits[2].hard, u64::MAX);
}

#[test]
fn syntax_and_structure_errors() {
    assert_err("", 1, 1, "the profile is empty");
    assert_err("profile: [a\n", 2, 1, "");
    assert_err("- a\n- b\n", 1, 1, "expected a mapping, found a list");
    assert_err("description: x\n", 1, 1, "needs the key `profile`");
    assert_err("profile: t\nprofile: u\n", 2, 1, "duplicate key `profile`");
    assert_err("profile: t\n---\nprofile: u\n", 2, 1, "one YAML document");
    assert_err("profile: !!str t\n", 1, 16, "tags");
    assert_err("profile: t\nb: *nothing\n", 2, 4, "");
}

#[test]
fn unknown_keys() {
    assert_err(
        "profile: t\nmemory: 1G\n",
        2,
        1,
        "unknown key `memory` in the top level",
    );
    assert_err(
        "profile: t\nresources:\n  memory: 1G\n  disk: 2G\n",
        4,
        3,
        "unknown key `disk` in `resources` (expected one of: memory, cpu, pids, tmp, shm, workspace)",
    );
    assert_err(
        "profile: t\nsecurity:\n  seccomp: { default: allow, alow: [read] }\n",
        3,
        30,
        "unknown key `alow` in `security.seccomp`",
    );
    assert_err(
        "profile: t\nsecurity:\n  landlock:\n    - { path: /x, access: read-only, recursive: true }\n",
        4,
        38,
        "unknown key `recursive` in `security.landlock[0]`",
    );
    assert_err(
        "profile: t\nsecurity: { apparmor: x }\n",
        2,
        13,
        "unknown key `apparmor`",
    );
    assert_err(
        "profile: t\nnetwork: { mode: none, egress: [] }\n",
        2,
        24,
        "unknown key `egress`",
    );
    assert_err(
        "profile: t\nmounts: [{ target: /x, readonly: true }]\n",
        2,
        24,
        "unknown key `readonly` in `mounts[0]`",
    );
    assert_err(
        "profile: t\nsecurity:\n  seccomp:\n    rules: [{ syscall: read, action: allow, when: 1 }]\n",
        4,
        45,
        "unknown key `when`",
    );
    assert_err(
        "profile: t\nsecurity:\n  seccomp:\n    rules: [{ syscall: read, action: allow, args: [{ index: 0, op: eq, value: 1, size: 4 }] }]\n",
        4,
        82,
        "unknown key `size`",
    );
    assert_err(
        "profile: t\nrlimits: { files: 10 }\n",
        2,
        12,
        "unknown resource `files`",
    );
    assert_err(
        "profile: t\nrlimits: { nofile: { soft: 1, hard: 2, max: 3 } }\n",
        2,
        40,
        "unknown key `max`",
    );
}

#[test]
fn wrong_types() {
    assert_err(
        "profile: [a]\n",
        1,
        10,
        "profile: expected a string, found a list",
    );
    assert_err("profile:\n", 1, 1, "needs the key `profile`");
    assert_err(
        "profile: t\nmode: { a: 1 }\n",
        2,
        7,
        "mode: expected a string, found a mapping",
    );
    assert_err(
        "profile: t\ncommand: python3\n",
        2,
        10,
        "command: expected a list",
    );
    assert_err(
        "profile: t\ncommand: []\n",
        2,
        10,
        "command: must name a program",
    );
    assert_err(
        "profile: t\ncommand: [[a]]\n",
        2,
        11,
        "command[0]: expected a string",
    );
    assert_err(
        "profile: t\nsecurity: [seccomp]\n",
        2,
        11,
        "security: expected a mapping",
    );
    assert_err(
        "profile: t\nsecurity:\n  seccomp: { allow: read }\n",
        3,
        21,
        "security.seccomp.allow: expected a list",
    );
    assert_err(
        "profile: t\nsecurity:\n  landlock: { path: /x }\n",
        3,
        13,
        "security.landlock: expected a list",
    );
    assert_err(
        "profile: t\nresources: { pids: many }\n",
        2,
        20,
        "resources.pids: expected a non-negative integer",
    );
    assert_err(
        "profile: t\nresources: { pids: '10' }\n",
        2,
        20,
        "found the quoted string \"10\"",
    );
    assert_err(
        "profile: t\nresources: { cpu: fast }\n",
        2,
        19,
        "resources.cpu: expected a number of CPUs",
    );
    assert_err(
        "profile: t\nresources: { memory: [1] }\n",
        2,
        22,
        "resources.memory: expected a string",
    );
    assert_err("profile: t\nenv: [A=1]\n", 2, 6, "env: expected a mapping");
    assert_err(
        "profile: t\nenv: { A: [1] }\n",
        2,
        11,
        "env.A: expected a string",
    );
    assert_err(
        "profile: t\nrlimits: [nofile]\n",
        2,
        10,
        "rlimits: expected a mapping",
    );
    assert_err(
        "profile: t\nmounts: [{ target: /x, optional: yes }]\n",
        2,
        34,
        "mounts[0].optional: expected true or false",
    );
    assert_err(
        "profile: t\nmounts: { target: /x }\n",
        2,
        9,
        "mounts: expected a list",
    );
}

#[test]
fn impossible_values() {
    assert_err("profile: Bad Name\n", 1, 10, "not a profile name");
    assert_err(
        "profile: t\nmode: fast\n",
        2,
        7,
        "\"fast\" is not one of: direct, sandbox, hardened",
    );
    assert_err(
        "profile: t\ncwd: relative/dir\n",
        2,
        6,
        "not an absolute path",
    );
    assert_err("profile: t\ncwd: /a/../b\n", 2, 6, "contains `.` or `..`");
    assert_err(
        "profile: t\nresources: { memory: 0 }\n",
        2,
        22,
        "a size of zero",
    );
    assert_err(
        "profile: t\nresources: { memory: 512 }\n",
        2,
        22,
        "too little",
    );
    assert_err(
        "profile: t\nresources: { memory: 1PB }\n",
        2,
        22,
        "unknown unit \"PB\"",
    );
    assert_err(
        "profile: t\nresources: { memory: lots }\n",
        2,
        22,
        "unknown unit",
    );
    assert_err(
        "profile: t\nresources: { cpu: 0 }\n",
        2,
        19,
        "not a possible CPU share",
    );
    assert_err(
        "profile: t\nresources: { cpu: -1 }\n",
        2,
        19,
        "not a possible CPU share",
    );
    assert_err("profile: t\nresources: { cpu: .nan }\n", 2, 19, "");
    assert_err(
        "profile: t\nresources: { pids: 0 }\n",
        2,
        20,
        "not a possible process count",
    );
    assert_err(
        "profile: t\nresources: { pids: -5 }\n",
        2,
        20,
        "non-negative integer",
    );
    assert_err(
        "profile: t\nresources: { tmp: 100 }\n",
        2,
        19,
        "smaller than one page",
    );
    assert_err(
        "profile: t\nnetwork: { mode: wifi }\n",
        2,
        18,
        "\"wifi\" is not one of: none, loopback, egress, host",
    );
    assert_err(
        "profile: t\nnetwork: { mode: loopback, allow: [a.b] }\n",
        2,
        35,
        "only `mode: egress` takes allowlists",
    );
    assert_err(
        "profile: t\nnetwork: { mode: egress, allow-cidr: [10.0.0.1/8] }\n",
        2,
        39,
        "host bits are set",
    );
    assert_err(
        "profile: t\nnetwork: {}\n",
        2,
        10,
        "`network` needs the key `mode`",
    );
    assert_err(
        "profile: t\nrlimits: { nofile: { soft: 10, hard: 5 } }\n",
        2,
        28,
        "soft limit 10 is above the hard limit 5",
    );
    assert_err(
        "profile: t\nrlimits: { nofile: lots }\n",
        2,
        20,
        "expected a number",
    );
    assert_err(
        "profile: t\nenv: { \"A=B\": 1 }\n",
        2,
        8,
        "not a variable name",
    );
}

#[test]
fn seccomp_errors() {
    let sec = |body: &str| format!("profile: t\nsecurity:\n  seccomp:\n{body}");
    assert_err(
        &sec("    allow: [read, wrte]\n"),
        4,
        19,
        "\"wrte\" is not a syscall on x86_64 or aarch64",
    );
    assert_err(
        &sec("    allow: [read, read]\n"),
        4,
        19,
        "read is already in the allow list (line 4, column 13)",
    );
    assert_err(
        &sec("    allow: [read]\n    deny: [read]\n"),
        5,
        12,
        "already in the allow list",
    );
    assert_err(
        &sec("    default: deny\n"),
        4,
        14,
        "\"deny\" is not an action",
    );
    assert_err(
        &sec("    default: allow\n    errno: EPERM\n"),
        5,
        12,
        "only the errno action takes an errno, not allow",
    );
    assert_err(&sec("    errno: EWHAT\n"), 4, 12, "not an errno name");
    assert_err(&sec("    errno: 0\n"), 4, 12, "out of range");
    assert_err(&sec("    errno: 5000\n"), 4, 12, "out of range");
    assert_err(
        &sec("    deny-action: trap\n    deny-errno: EPERM\n"),
        5,
        17,
        "only the errno action",
    );
    assert_err(
        &sec("    rules: [{ action: allow }]\n"),
        4,
        13,
        "a rule needs `syscall: NAME`",
    );
    assert_err(
        &sec("    rules: [{ syscall: read, syscalls: [write], action: allow }]\n"),
        4,
        40,
        "either `syscall` or `syscalls`",
    );
    assert_err(
        &sec("    rules: [{ syscalls: [], action: allow }]\n"),
        4,
        25,
        "names no syscall",
    );
    assert_err(
        &sec("    rules: [{ syscalls: [read, read], action: allow }]\n"),
        4,
        32,
        "listed twice",
    );
    assert_err(
        &sec("    rules: [{ syscall: read }]\n"),
        4,
        13,
        "needs the key `action`",
    );
    assert_err(
        &sec("    allow: [read]\n    rules: [{ syscall: read, action: errno }]\n"),
        5,
        13,
        "which would override this rule",
    );
    assert_err(
        &sec("    rules:\n      - { syscall: read, action: errno }\n      - { syscall: read, action: allow, args: [{ index: 0, op: eq, value: 1 }] }\n"),
        6,
        9,
        "read already has a rule at line 5, column 9",
    );
    let args = |a: &str| {
        sec(&format!(
            "    rules: [{{ syscall: read, action: allow, args: [{a}] }}]\n"
        ))
    };
    assert_err(
        &args("{ index: 6, op: eq, value: 1 }"),
        4,
        61,
        "out of range (a syscall has arguments 0 to 5)",
    );
    assert_err(
        &args("{ index: 0, op: like, value: 1 }"),
        4,
        68,
        "\"like\" is not an operator",
    );
    assert_err(
        &args("{ index: 0, op: masked-eq, value: 1 }"),
        4,
        52,
        "op masked-eq needs a `mask`",
    );
    assert_err(
        &args("{ index: 0, op: eq, value: 1, mask: 1 }"),
        4,
        88,
        "only op masked-eq takes a mask",
    );
    assert_err(
        &args("{ index: 0, op: masked-eq, mask: 0xf0, value: 1 }"),
        4,
        98,
        "can never match",
    );
    assert_err(
        &args("{ index: 0, op: eq, value: -1 }"),
        4,
        79,
        "non-negative integer",
    );
    assert_err(
        &args("{ index: 0, op: eq }"),
        4,
        52,
        "needs the key `value`",
    );
    assert_err(
        &sec("    rules: [{ syscall: read, action: allow, args: [] }]\n"),
        4,
        51,
        "is empty",
    );
}

#[test]
fn landlock_capabilities_mounts_and_mode_errors() {
    let ll = |rule: &str| format!("profile: t\nsecurity:\n  landlock:\n    - {rule}\n");
    assert_err(
        &ll("{ path: /x, access: everything }"),
        4,
        27,
        "\"everything\" is not one of: read-only",
    );
    assert_err(
        &ll("{ path: x, access: read-only }"),
        4,
        15,
        "not an absolute path",
    );
    assert_err(&ll("{ path: /x }"), 4, 7, "needs the key `access`");
    assert_err(&ll("{ access: read-only }"), 4, 7, "a rule needs `path`");
    assert_err(
        &ll("{ port: 70000, access: bind }"),
        4,
        15,
        "not a TCP port",
    );
    assert_err(
        &ll("{ port: 80, access: read-only }"),
        4,
        27,
        "is not one of: bind, connect, bind-connect",
    );
    assert_err(
        &ll("{ path: /x, port: 80, access: bind }"),
        4,
        25,
        "not both",
    );
    assert_err(
        "profile: t\nsecurity:\n  landlock:\n    - { path: /x, access: read-only }\n    - { path: /x, access: read-write }\n",
        5,
        15,
        "/x already has a rule (line 4, column 15)",
    );
    assert_err(
        "profile: t\nsecurity: { capabilities: [CAP_FLY] }\n",
        2,
        28,
        "\"CAP_FLY\" is not a capability",
    );
    assert_err(
        "profile: t\nsecurity: { capabilities: [chown, CAP_CHOWN] }\n",
        2,
        35,
        "CAP_CHOWN is listed twice",
    );
    let p = ok("profile: t\nsecurity: { capabilities: [net_bind_service, CAP_KILL] }\n");
    assert_eq!(p.capabilities.len(), 2);
    assert_err(
        "profile: t\nmode: hardened\nsecurity:\n  seccomp: { allow: [read] }\n  capabilities: [CAP_KILL]\n",
        5,
        17,
        "a hardened profile keeps no capabilities",
    );
    assert_err(
        "profile: t\nmode: hardened\n",
        1,
        1,
        "mode hardened needs a `security.seccomp` section",
    );
    assert_err(
        "profile: t\nmode: hardened\nsecurity: { seccomp: { allow: [read] } }\nnetwork: { mode: host }\n",
        4,
        10,
        "cannot use the host's network",
    );
    assert_err(
        "profile: t\nmode: direct\n",
        1,
        1,
        "direct mode has no network namespace",
    );
    assert_err(
        "profile: t\nmode: direct\nnetwork: { mode: host }\nmounts: [{ target: /x }]\n",
        4,
        9,
        "direct mode has no mount namespace",
    );
    assert_err(
        "profile: t\nmode: direct\nnetwork: { mode: host }\nhost-system: false\n",
        4,
        14,
        "direct mode always sees the host's filesystem",
    );
    assert_err(
        "profile: t\nmounts: [{ target: / }]\n",
        2,
        20,
        "cannot mount over /",
    );
    assert_err(
        "profile: t\nmounts: [{ type: bind, target: /x }]\n",
        2,
        10,
        "needs the key `source`",
    );
    assert_err(
        "profile: t\nmounts: [{ type: overlay, target: /x }]\n",
        2,
        18,
        "not a mount type",
    );
    assert_err(
        "profile: t\nmounts: [{ source: /a, target: /x, size: 1M }]\n",
        2,
        42,
        "only a tmpfs mount has a size",
    );
    assert_err(
        "profile: t\nmounts: [{ source: /a, target: /x, access: read-execute }]\n",
        2,
        44,
        "not one of: read-only, read-write",
    );
    assert_err(
        "profile: t\nmounts: [{ type: tmpfs, target: /x, access: read-only }]\n",
        2,
        45,
        "takes no source or access",
    );
    assert_err(
        "profile: t\nmounts:\n  - { target: /x }\n  - { target: /x }\n",
        4,
        15,
        "/x is already mounted (line 3, column 15)",
    );
    let p = ok("profile: t\nmode: direct\nnetwork: { mode: host }\n");
    assert_eq!(p.mode, Mode::Direct);
    let _ = ok(MINI);
}

#[test]
fn errors_name_the_file() {
    let e = Profile::parse("profile: t\nx: 1\n", "/etc/phantom/profiles/t.yaml").unwrap_err();
    assert_eq!(
        e.to_string(),
        "/etc/phantom/profiles/t.yaml:2:1: unknown key `x` in the top level (expected one of: \
         profile, description, mode, command, cwd, host-system, security, resources, network, \
         mounts, env, rlimits)"
    );
}

#[test]
fn to_oci_orders_deny_rules_allow_and_drops_foreign_names() {
    let p = ok("profile: t
security:
  seccomp:
    default: errno
    errno: ENOSYS
    deny: [ptrace]
    rules: [{ syscall: personality, action: allow, args: [{ index: 0, op: eq, value: 0 }] }]
    allow: [read, arch_prctl]
");
    let s = p.linux_seccomp(TargetArch::X86_64).unwrap();
    let rules = s.syscalls().as_ref().unwrap();
    assert_eq!(rules.len(), 3);
    assert_eq!(rules[0].names(), &["ptrace".to_string()]);
    assert_eq!(rules[0].errno_ret(), Some(1));
    assert_eq!(rules[1].names(), &["personality".to_string()]);
    assert_eq!(rules[2].names(), &["read".to_string(), "arch_prctl".into()]);
    assert_eq!(s.default_errno_ret(), Some(libc::ENOSYS as u32));
    let a = p.linux_seccomp(TargetArch::Aarch64).unwrap();
    let rules = a.syscalls().as_ref().unwrap();
    assert_eq!(rules[0].names(), &["ptrace".to_string()]);
    // arch_prctl exists on x86_64 only.
    assert_eq!(rules[2].names(), &["read".to_string()]);
    // Compiles without warnings.
    let f = crate::compile_oci_for(&s, TargetArch::X86_64).unwrap();
    assert!(f.warnings().is_empty(), "{:?}", f.warnings());
}

#[test]
fn builtin_profiles_parse_and_compile_without_warnings() {
    let c = Catalog::builtin();
    assert_eq!(c.entries().len(), BUILTIN.len());
    for e in c.entries() {
        for arch in [TargetArch::X86_64, TargetArch::Aarch64] {
            let s = e
                .profile
                .linux_seccomp(arch)
                .expect("every built-in has seccomp");
            let f = crate::compile_oci_for(&s, arch)
                .unwrap_or_else(|err| panic!("{} on {arch}: {err}", e.profile.name));
            assert!(
                f.warnings().is_empty(),
                "{} on {arch}: {:?}",
                e.profile.name,
                f.warnings()
            );
        }
    }
    assert!(c.get("nope").is_err());
    assert_eq!(c.get("strict").unwrap().profile.mode, Mode::Hardened);
}

#[test]
fn catalog_loads_user_dirs_and_overrides() {
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    std::fs::write(d1.path().join("mine.yaml"), "profile: mine\n").unwrap();
    std::fs::write(
        d1.path().join("strict.yml"),
        "profile: strict\nmode: sandbox\n",
    )
    .unwrap();
    std::fs::write(
        d2.path().join("mine.yaml"),
        "profile: mine\nmode: direct\nnetwork: { mode: host }\n",
    )
    .unwrap();
    std::fs::write(d2.path().join("broken.yaml"), "profile: broken\nbad: 1\n").unwrap();
    std::fs::write(d2.path().join("notes.txt"), "ignored").unwrap();
    let c = Catalog::load(&[d1.path().to_path_buf(), d2.path().to_path_buf()]);
    assert_eq!(
        c.get("mine").unwrap().profile.mode,
        Mode::Sandbox,
        "d1 wins"
    );
    let strict = c.get("strict").unwrap();
    assert_eq!(
        strict.profile.mode,
        Mode::Sandbox,
        "a user profile replaces a built-in"
    );
    assert!(matches!(strict.source, ProfileSource::File(_)));
    assert_eq!(c.errors.len(), 1, "{:?}", c.errors);
    assert!(
        c.errors[0].to_string().contains("broken.yaml:2:1"),
        "{:?}",
        c.errors
    );
    assert_eq!(c.entries().len(), BUILTIN.len() + 1);
}

#[test]
fn sizes() {
    use super::parse::parse_size;
    assert_eq!(parse_size("512MiB"), Ok(512 << 20));
    assert_eq!(parse_size("1G"), Ok(1 << 30));
    assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
    assert_eq!(parse_size("100k"), Ok(102_400));
    assert_eq!(parse_size("2MB"), Ok(2_000_000));
    assert_eq!(parse_size("4096"), Ok(4096));
    assert!(parse_size("0").is_err());
    assert!(parse_size("99999999999999999999").is_err());
    assert!(parse_size("20000000T").is_err());
    assert!(parse_size("1 GiB").is_ok());
    assert!(parse_size("G").is_err());
}

#[test]
fn resources_workspace_is_a_size() {
    // Absent: no limit (the workspace is a plain host directory).
    assert_eq!(ok(MINI).resources.workspace, None);
    let p = ok("profile: t\nresources: { workspace: 256MiB }\n");
    assert_eq!(p.resources.workspace, Some(256 << 20));
    let p = ok("profile: t\nresources:\n  workspace: 1G\n");
    assert_eq!(p.resources.workspace, Some(1 << 30));
    // Errors name the field and point at the value.
    assert_err(
        "profile: t\nresources: { workspace: 100 }\n",
        2,
        25,
        "smaller than one page",
    );
    assert_err(
        "profile: t\nresources: { workspace: lots }\n",
        2,
        25,
        "resources.workspace: \"lots\": unknown unit",
    );
    // The CLI's --workspace-size reads sizes with this same parser.
    assert_eq!(parse_size("8MiB"), Ok(8 << 20));
    let e = Profile::parse("profile: t\nresources: { workspace: 100 }\n", "t.yaml").unwrap_err();
    assert!(e.to_string().contains("resources.workspace"), "{e}");
}

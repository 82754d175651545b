//! Filters loaded into the kernel. Each test spawns a child whose `pre_exec` hook sets
//! no_new_privs, installs the filter, runs a probe of raw syscalls and `_exit`s with a
//! code the test checks; the child never execs. Works as root and unprivileged.

mod common;

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};

use common::{committed_podman_profile, podman_to_oci, read_json, PODMAN_CAPS};
use oci_spec::runtime::LinuxSeccomp;
use phantom_policy::{compile_oci, CompiledFilter, TargetArch};
use serde_json::json;

/// Exit codes of the hook itself.
const NNP_FAILED: i32 = 250;
const INSTALL_FAILED: i32 = 251;
const NOT_ONE_FILTER: i32 = 252;

fn filter(v: serde_json::Value) -> CompiledFilter {
    let seccomp: LinuxSeccomp = serde_json::from_value(v).unwrap();
    compile_oci(&seccomp).unwrap()
}

/// Runs `probe` in a child under `filter` (none: no filter) and returns how it ended.
fn run(filter: Option<CompiledFilter>, probe: fn() -> i32) -> ExitStatus {
    let mut cmd = Command::new("/bin/true");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let hook = move || {
        // SAFETY: raw syscalls on valid arguments; `install` and the probes neither
        // allocate nor lock, as a child forked from a multi-threaded parent requires;
        // `_exit` never returns, so the child never reaches exec.
        unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                libc::_exit(NNP_FAILED);
            }
            if let Some(f) = &filter {
                if f.install().is_err() {
                    libc::_exit(INSTALL_FAILED);
                }
                if seccomp_filters() != Some(1) {
                    libc::_exit(NOT_ONE_FILTER);
                }
            }
            libc::_exit(probe())
        }
    };
    // SAFETY: the hook only makes raw syscalls (see above).
    unsafe { cmd.pre_exec(hook) };
    cmd.status().expect("spawn the probe child")
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// 0 if the syscall succeeded, else its errno.
fn outcome(rc: libc::c_long) -> i32 {
    if rc == -1 {
        errno()
    } else {
        0
    }
}

/// `Seccomp_filters:` of /proc/self/status, read with raw syscalls into a stack buffer.
fn seccomp_filters() -> Option<u32> {
    let mut buf = [0u8; 4096];
    // SAFETY: a NUL-terminated path; `read` writes at most `buf.len()` bytes into `buf`.
    let n = unsafe {
        let fd = libc::open(
            c"/proc/self/status".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return None;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        usize::try_from(n).ok()?
    };
    let key = b"Seccomp_filters:\t";
    let text = &buf[..n];
    let at = text.windows(key.len()).position(|w| w == key)? + key.len();
    let mut count = 0u32;
    for &c in text[at..].iter().take_while(|c| c.is_ascii_digit()) {
        count = count * 10 + u32::from(c - b'0');
    }
    Some(count)
}

fn mkdirat_probe() -> i32 {
    // SAFETY: a NUL-terminated path.
    outcome(unsafe {
        libc::syscall(
            libc::SYS_mkdirat,
            libc::AT_FDCWD,
            c"/nonexistent-phantom-dir/x".as_ptr(),
            0o700,
        )
    })
}

fn personality(persona: u64) -> i32 {
    // SAFETY: personality takes any value; the child exits right after.
    outcome(unsafe { libc::syscall(libc::SYS_personality, persona) })
}

fn getpriority(which: u64) -> i32 {
    // SAFETY: getpriority only reads its arguments.
    outcome(unsafe { libc::syscall(libc::SYS_getpriority, which, 0) })
}

fn raw(nr: libc::c_long) -> i32 {
    // SAFETY: used with getpid/getppid-like syscalls without arguments.
    outcome(unsafe { libc::syscall(nr) })
}

#[test]
fn errno_rule_returns_its_errno() {
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 123}]
    }));
    assert_eq!(
        run(None, mkdirat_probe).code(),
        Some(libc::ENOENT),
        "control"
    );
    assert_eq!(run(Some(f), mkdirat_probe).code(), Some(123));
}

#[test]
fn argument_rules_deny_only_matching_values() {
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 77,
             "args": [{"index": 0, "value": 0xffff_ffffu64, "op": "SCMP_CMP_EQ"}]},
            // PRIO_USER is 2: deny when (which & 3) == 2
            {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 78,
             "args": [{"index": 0, "value": 3, "valueTwo": 2, "op": "SCMP_CMP_MASKED_EQ"}]}
        ]
    }));
    assert_eq!(
        run(None, || personality(0xffff_ffff)).code(),
        Some(0),
        "control"
    );
    assert_eq!(
        run(Some(f.clone()), || personality(0xffff_ffff)).code(),
        Some(77)
    );
    assert_eq!(run(Some(f.clone()), || personality(0)).code(), Some(0));
    assert_eq!(
        run(Some(f.clone()), || getpriority(libc::PRIO_USER as u64)).code(),
        Some(78)
    );
    assert_eq!(
        run(Some(f), || getpriority(libc::PRIO_PROCESS as u64)).code(),
        Some(0)
    );
}

#[test]
fn kill_process_dies_by_sigsys() {
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"}]
    }));
    assert_eq!(
        run(None, || raw(libc::SYS_getppid)).code(),
        Some(0),
        "control"
    );
    let status = run(Some(f), || raw(libc::SYS_getppid));
    assert_eq!(status.signal(), Some(libc::SIGSYS), "{status:?}");
}

#[test]
fn default_errno_with_an_allow_list() {
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 99,
        // open/read/close: the hook checks /proc/self/status after installing
        "syscalls": [{"names": ["exit_group", "exit", "getpid", "open", "openat", "read",
                                "close"],
                      "action": "SCMP_ACT_ALLOW"}]
    }));
    let probe = || {
        if raw(libc::SYS_getpid) != 0 {
            return 1;
        }
        raw(libc::SYS_getppid)
    };
    assert_eq!(run(None, probe).code(), Some(0), "control");
    assert_eq!(run(Some(f), probe).code(), Some(99));
}

#[cfg(target_arch = "x86_64")]
#[test]
fn x32_syscalls_do_not_bypass_the_filter() {
    const X32_GETPID: libc::c_long = 0x4000_0000 | libc::SYS_getpid;
    // Default allow, getpid denied, x32 not listed: an x32 getpid is killed.
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 55}]
    }));
    assert_eq!(
        run(Some(f.clone()), || raw(libc::SYS_getpid)).code(),
        Some(55)
    );
    let status = run(Some(f), || raw(X32_GETPID));
    assert_eq!(status.signal(), Some(libc::SIGSYS), "{status:?}");
    // Default deny with x32 listed: the default action.
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 66,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["getpid", "exit_group", "openat", "read", "close"],
                      "action": "SCMP_ACT_ALLOW"}]
    }));
    assert_eq!(run(Some(f), || raw(X32_GETPID)).code(), Some(66));
}

#[test]
fn flags_are_accepted_by_the_kernel() {
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                  "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
        "syscalls": [{"names": ["mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 124}]
    }));
    assert_eq!(f.flags(), 0b111);
    assert_eq!(run(Some(f), mkdirat_probe).code(), Some(124));
}

#[test]
fn podman_default_profile_loads_and_behaves() {
    let arch = TargetArch::native().unwrap();
    let oci = podman_to_oci(&read_json(&committed_podman_profile()), arch, PODMAN_CAPS);
    let f = compile_oci(&oci).unwrap();
    let probe = || {
        if raw(libc::SYS_getpid) != 0 {
            return 1;
        }
        if mkdirat_probe() != libc::ENOENT {
            return 2; // allowed, so the kernel's answer
        }
        if personality(0xffff_ffff) != 0 {
            return 3; // allowed by an argument rule
        }
        // SAFETY: kexec_load with no segments; denied before it runs.
        let kexec = outcome(unsafe { libc::syscall(libc::SYS_kexec_load, 0, 0, 0, 0) });
        if kexec != libc::EPERM {
            return 4;
        }
        personality(0x1234) // not allowed: the default, ENOSYS
    };
    assert_eq!(run(Some(f), probe).code(), Some(libc::ENOSYS));
}

/// The filter survives a round trip through bytes and still loads.
#[test]
fn deserialised_filter_loads() {
    let f = filter(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 125}]
    }));
    let back = CompiledFilter::from_bytes(&f.to_bytes()).unwrap();
    assert_eq!(run(Some(back), mkdirat_probe).code(), Some(125));
}

//! Unit tests: compile small profiles and run the programs in the BPF interpreter.
//! Loading into the kernel is tested in `tests/load.rs`.

use super::*;
use serde_json::json;

const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const KILL_PROCESS: u32 = libc::SECCOMP_RET_KILL_PROCESS;
const X86_64: TargetArch = TargetArch::X86_64;
const AARCH64: TargetArch = TargetArch::Aarch64;

fn errno(e: u32) -> u32 {
    libc::SECCOMP_RET_ERRNO | e
}

fn profile(v: serde_json::Value) -> LinuxSeccomp {
    serde_json::from_value(v).expect("valid linux.seccomp")
}

fn compile(v: serde_json::Value, arch: TargetArch) -> CompiledFilter {
    compile_oci_for(&profile(v), arch).expect("compiles")
}

fn nr(arch: TargetArch, name: &str) -> u32 {
    arch.syscall_nr(name).expect(name)
}

/// The filter's verdict for syscall `name` on `arch` itself.
fn verdict(f: &CompiledFilter, arch: TargetArch, name: &str, args: [u64; 6]) -> u32 {
    f.simulate(arch.audit_arch(), nr(arch, name), args)
}

fn error_of(v: serde_json::Value) -> String {
    compile_oci_for(&profile(v), X86_64)
        .expect_err("must not compile")
        .to_string()
}

#[test]
fn default_errno_with_allow_list_and_errno_rule() {
    for arch in [X86_64, AARCH64] {
        let f = compile(
            json!({
                "defaultAction": "SCMP_ACT_ERRNO",
                "defaultErrnoRet": 38,
                "syscalls": [
                    {"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"},
                    {"names": ["mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 123},
                    {"names": ["getppid"], "action": "SCMP_ACT_ERRNO"},
                    {"names": ["kill"], "action": "SCMP_ACT_KILL_PROCESS"},
                    {"names": ["tkill"], "action": "SCMP_ACT_KILL"},
                    {"names": ["tgkill"], "action": "SCMP_ACT_KILL_THREAD"},
                    {"names": ["getpid"], "action": "SCMP_ACT_TRAP"},
                    {"names": ["gettid"], "action": "SCMP_ACT_TRACE", "errnoRet": 7},
                    {"names": ["getuid"], "action": "SCMP_ACT_LOG"},
                ]
            }),
            arch,
        );
        let v = |name| verdict(&f, arch, name, [0; 6]);
        assert_eq!(v("read"), ALLOW, "{arch}");
        assert_eq!(v("write"), ALLOW);
        assert_eq!(v("exit_group"), ALLOW);
        assert_eq!(v("mkdirat"), errno(123));
        assert_eq!(
            v("getppid"),
            errno(libc::EPERM as u32),
            "errnoRet defaults to EPERM"
        );
        assert_eq!(v("kill"), KILL_PROCESS);
        assert_eq!(v("tkill"), libc::SECCOMP_RET_KILL_THREAD);
        assert_eq!(v("tgkill"), libc::SECCOMP_RET_KILL_THREAD);
        assert_eq!(v("getpid"), libc::SECCOMP_RET_TRAP);
        assert_eq!(v("gettid"), libc::SECCOMP_RET_TRACE | 7);
        assert_eq!(v("getuid"), libc::SECCOMP_RET_LOG);
        assert_eq!(v("openat"), errno(38), "not listed: default");
        assert_eq!(f.simulate(arch.audit_arch(), 4000, [0; 6]), errno(38));
        assert!(f.warnings().is_empty(), "{:?}", f.warnings());
        assert_eq!(f.flags(), 0);
    }
}

#[test]
fn default_errno_without_errno_ret_is_eperm() {
    let f = compile(json!({"defaultAction": "SCMP_ACT_ERRNO"}), X86_64);
    assert_eq!(verdict(&f, X86_64, "read", [0; 6]), errno(1));
    let f = compile(json!({"defaultAction": "SCMP_ACT_TRACE"}), X86_64);
    assert_eq!(
        verdict(&f, X86_64, "read", [0; 6]),
        libc::SECCOMP_RET_TRACE | 1
    );
}

#[test]
fn notify_is_refused_naming_the_field() {
    let rule = |action: &str| json!({"names": ["read"], "action": action});
    let msg = error_of(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [rule("SCMP_ACT_ERRNO"), rule("SCMP_ACT_LOG"), rule("SCMP_ACT_KILL"),
                     rule("SCMP_ACT_NOTIFY")]
    }));
    assert_eq!(
        msg,
        "linux.seccomp.syscalls[3].action: SCMP_ACT_NOTIFY is not supported yet \
         (seccomp user notification)"
    );
    let msg = error_of(json!({"defaultAction": "SCMP_ACT_NOTIFY"}));
    assert!(
        msg.starts_with("linux.seccomp.defaultAction: SCMP_ACT_NOTIFY is not supported"),
        "{msg}"
    );
    let msg = error_of(json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/a.sock"}));
    assert!(msg.starts_with("linux.seccomp.listenerPath: "), "{msg}");
    let msg = error_of(json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "x"}));
    assert!(msg.starts_with("linux.seccomp.listenerMetadata: "), "{msg}");
}

#[test]
fn bad_fields_are_named() {
    let msg = error_of(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["write"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                      {"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}
        ]
    }));
    assert_eq!(
        msg,
        "linux.seccomp.syscalls[1].args[1].index: argument index 6 is out of range \
         (a syscall has arguments 0 to 5)"
    );

    let msg = error_of(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "errnoRet": 1}]
    }));
    assert_eq!(
        msg,
        "linux.seccomp.syscalls[0].errnoRet: SCMP_ACT_ALLOW takes no errno \
         (only SCMP_ACT_ERRNO and SCMP_ACT_TRACE do)"
    );

    let msg = error_of(json!({"defaultAction": "SCMP_ACT_KILL", "defaultErrnoRet": 1}));
    assert!(
        msg.starts_with("linux.seccomp.defaultErrnoRet: SCMP_ACT_KILL takes"),
        "{msg}"
    );

    let msg = error_of(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 65536}]
    }));
    assert_eq!(
        msg,
        "linux.seccomp.syscalls[0].errnoRet: 65536 does not fit in the 16 bits of \
         SECCOMP_RET_DATA"
    );

    // Unknown operators and actions are refused by the parser already.
    assert!(serde_json::from_value::<LinuxSeccomp>(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                      "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_APPROX"}]}]
    }))
    .is_err());
}

#[test]
fn unknown_names_become_warnings() {
    let f = compile(
        json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                {"names": ["read", "_llseek", "no_such_call", "write"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW"}
            ]
        }),
        AARCH64,
    );
    assert_eq!(
        f.warnings(),
        [
            "linux.seccomp.syscalls[0].names[1]: \"_llseek\" is not a syscall on aarch64; ignored",
            "linux.seccomp.syscalls[0].names[2]: \"no_such_call\" is not a syscall on aarch64; \
             ignored",
            "linux.seccomp.syscalls[1].names[0]: \"arch_prctl\" is not a syscall on aarch64; \
             ignored",
        ]
    );
    assert_eq!(verdict(&f, AARCH64, "write", [0; 6]), ALLOW);
    assert_eq!(verdict(&f, AARCH64, "openat", [0; 6]), errno(1));
}

/// Every operator, on values around the boundaries of both 32-bit halves, against a
/// plain Rust evaluation.
#[test]
fn operators_compare_all_64_bits() {
    type Eval = fn(u64, u64, u64) -> bool;
    let ops: [(&str, Eval); 7] = [
        ("SCMP_CMP_NE", |a, v, _| a != v),
        ("SCMP_CMP_LT", |a, v, _| a < v),
        ("SCMP_CMP_LE", |a, v, _| a <= v),
        ("SCMP_CMP_EQ", |a, v, _| a == v),
        ("SCMP_CMP_GE", |a, v, _| a >= v),
        ("SCMP_CMP_GT", |a, v, _| a > v),
        // libseccomp (and seccompiler) mask valueTwo too: bits outside the mask are ignored.
        ("SCMP_CMP_MASKED_EQ", |a, v, v2| a & v == v2 & v),
    ];
    let values: Vec<u64> = [0u64, 1, 2, 0xffff_fffe, 0xffff_ffff, 1 << 32, (1 << 32) + 1]
        .into_iter()
        .chain([0x1_ffff_ffff, 0x8000_0000_0000_0000, u64::MAX - 1, u64::MAX])
        .collect();
    let value_two = 0x1_0000_0001u64;
    for (op, eval) in ops {
        for &value in &values {
            for index in [0usize, 3, 5] {
                let f = compile(
                    json!({
                        "defaultAction": "SCMP_ACT_ALLOW",
                        "syscalls": [{
                            "names": ["ioctl"], "action": "SCMP_ACT_ERRNO", "errnoRet": 99,
                            "args": [{"index": index, "value": value, "valueTwo": value_two,
                                      "op": op}]
                        }]
                    }),
                    X86_64,
                );
                for &arg in values.iter().chain(&[value_two, value & value_two]) {
                    let mut args = [0x5555_5555_5555_5555; 6];
                    args[index] = arg;
                    let want = if eval(arg, value, value_two) {
                        errno(99)
                    } else {
                        ALLOW
                    };
                    assert_eq!(
                        verdict(&f, X86_64, "ioctl", args),
                        want,
                        "{op} value {value:#x} arg{index} {arg:#x}"
                    );
                }
            }
        }
    }
}

#[test]
fn args_in_one_rule_are_anded_and_rules_are_ored() {
    let f = compile(
        json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 38,
            "syscalls": [
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 4294967295u64, "op": "SCMP_CMP_EQ"}]},
                {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 16, "op": "SCMP_CMP_EQ"},
                          {"index": 2, "value": 9, "op": "SCMP_CMP_NE"}]},
                {"names": ["read"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 10, "op": "SCMP_CMP_GE"},
                          {"index": 0, "value": 20, "op": "SCMP_CMP_LT"}]}
            ]
        }),
        X86_64,
    );
    let v = |name, a0, a2| verdict(&f, X86_64, name, [a0, 0, a2, 0, 0, 0]);
    assert_eq!(v("personality", 0, 0), ALLOW);
    assert_eq!(v("personality", 0xffff_ffff, 0), ALLOW);
    assert_eq!(v("personality", 8, 0), errno(38));
    assert_eq!(
        v("personality", 0xffff_ffff_ffff_ffff, 0),
        errno(38),
        "64-bit compare"
    );
    assert_eq!(v("socket", 16, 0), ALLOW);
    assert_eq!(v("socket", 16, 9), errno(38));
    assert_eq!(v("socket", 2, 0), errno(38));
    assert_eq!(v("read", 9, 0), errno(38));
    assert_eq!(v("read", 10, 0), ALLOW);
    assert_eq!(v("read", 19, 0), ALLOW);
    assert_eq!(v("read", 20, 0), errno(38), "same index twice is ANDed");
}

#[test]
fn first_matching_rule_wins_and_libseccomp_merging_applies() {
    let f = compile(
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                // conditional rules, different actions: first match wins
                {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22,
                 "args": [{"index": 0, "value": 16, "op": "SCMP_CMP_EQ"},
                          {"index": 2, "value": 9, "op": "SCMP_CMP_EQ"}]},
                {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97,
                 "args": [{"index": 0, "value": 16, "op": "SCMP_CMP_EQ"}]},
                // unconditional first: later rules for the syscall are ignored
                {"names": ["mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5},
                {"names": ["mkdirat"], "action": "SCMP_ACT_KILL_PROCESS"},
                {"names": ["mkdirat"], "action": "SCMP_ACT_TRAP",
                 "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
                // unconditional after conditional: replaces it
                {"names": ["ioctl"], "action": "SCMP_ACT_TRAP",
                 "args": [{"index": 1, "value": 1, "op": "SCMP_CMP_EQ"}]},
                {"names": ["ioctl"], "action": "SCMP_ACT_ERRNO", "errnoRet": 6},
                // a rule with the default action is dropped, not "first match"
                {"names": ["unlinkat"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["unlinkat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}
            ]
        }),
        X86_64,
    );
    let v = |name, a0, a1, a2| verdict(&f, X86_64, name, [a0, a1, a2, 0, 0, 0]);
    assert_eq!(v("socket", 16, 0, 9), errno(22));
    assert_eq!(v("socket", 16, 0, 0), errno(97));
    assert_eq!(v("socket", 2, 0, 9), ALLOW);
    assert_eq!(v("mkdirat", 1, 0, 0), errno(5));
    assert_eq!(v("ioctl", 0, 1, 0), errno(6));
    assert_eq!(v("unlinkat", 0, 0, 0), errno(13));
    let w = f.warnings();
    assert_eq!(w.len(), 3, "{w:?}");
    assert!(w[0].starts_with("linux.seccomp.syscalls[3].names[0]: mkdirat already has a rule"));
    assert!(w[1].starts_with("linux.seccomp.syscalls[4].names[0]: mkdirat already has"));
    assert!(w[2].starts_with("linux.seccomp.syscalls[6].names[0]: this SCMP_ACT_ERRNO rule"));
}

#[test]
fn foreign_arches_and_x32_never_bypass() {
    let x32_getpid = X32_SYSCALL_BIT | nr(X86_64, "getpid");
    // Default deny, x86 and x32 listed: their syscalls get the default action.
    let f = compile(
        json!({
            "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}]
        }),
        X86_64,
    );
    assert_eq!(verdict(&f, X86_64, "getpid", [0; 6]), ALLOW);
    assert_eq!(f.simulate(AUDIT_ARCH_X86_64, x32_getpid, [0; 6]), errno(38));
    assert_eq!(f.simulate(AUDIT_ARCH_I386, 20, [0; 6]), errno(38));
    assert_eq!(f.simulate(AUDIT_ARCH_AARCH64, 172, [0; 6]), KILL_PROCESS);
    assert!(f.warnings().is_empty());

    // Not listed: killed.
    let f = compile(
        json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}]
        }),
        X86_64,
    );
    assert_eq!(
        f.simulate(AUDIT_ARCH_X86_64, x32_getpid, [0; 6]),
        KILL_PROCESS
    );
    assert_eq!(f.simulate(AUDIT_ARCH_I386, 20, [0; 6]), KILL_PROCESS);

    // Default allow with a deny list: listed or not, foreign syscalls are killed.
    let f = compile(
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_X86"],
            "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_ERRNO"}]
        }),
        X86_64,
    );
    assert_eq!(verdict(&f, X86_64, "mount", [0; 6]), errno(1));
    let x32_mount = X32_SYSCALL_BIT | nr(X86_64, "mount");
    assert_eq!(
        f.simulate(AUDIT_ARCH_X86_64, x32_mount, [0; 6]),
        KILL_PROCESS
    );
    assert_eq!(f.simulate(AUDIT_ARCH_I386, 21, [0; 6]), KILL_PROCESS);
    assert_eq!(f.warnings().len(), 2, "{:?}", f.warnings());

    // aarch64: arm is the compat arch, there is no x32.
    let f = compile(
        json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
            "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}]
        }),
        AARCH64,
    );
    assert_eq!(verdict(&f, AARCH64, "getpid", [0; 6]), ALLOW);
    assert_eq!(f.simulate(AUDIT_ARCH_ARM, 20, [0; 6]), errno(1));
    assert_eq!(f.simulate(AUDIT_ARCH_X86_64, 39, [0; 6]), KILL_PROCESS);
    assert_eq!(
        f.simulate(AUDIT_ARCH_AARCH64, X32_SYSCALL_BIT | 172, [0; 6]),
        errno(1)
    );
}

#[test]
fn flags_become_seccomp_bits() {
    let f = compile(
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                      "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
        }),
        X86_64,
    );
    assert_eq!(f.flags(), 0b111);
    assert_eq!(f.warnings().len(), 1);
    assert!(f.warnings()[0].starts_with("linux.seccomp.flags[3]: "));
}

/// Long jumps: more than 255 syscalls with one action, and one syscall whose rules
/// take more than 255 instructions.
#[test]
fn long_programs_keep_their_jumps_in_range() {
    let all: Vec<&str> = syscalls::X86_64
        .iter()
        .map(|(_, n, _)| *n)
        .filter(|n| *n != "ioctl")
        .collect();
    let many_rules: Vec<_> = (0..60u64)
        .map(|i| {
            json!({"names": ["ioctl"], "action": "SCMP_ACT_ERRNO", "errnoRet": 100 + i,
                   "args": [{"index": 1, "value": i, "op": "SCMP_CMP_EQ"}]})
        })
        .collect();
    let mut rules = vec![json!({"names": all, "action": "SCMP_ACT_ERRNO", "errnoRet": 5})];
    rules.extend(many_rules);
    let f = compile(
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}),
        X86_64,
    );
    assert!(f.len() > 300 + 60 * 6, "{}", f.len());
    assert!(f.warnings().is_empty(), "{:?}", f.warnings());
    for (_, name, nr) in syscalls::X86_64 {
        let want = if *name == "ioctl" { ALLOW } else { errno(5) };
        let args = [0, 1000, 0, 0, 0, 0];
        assert_eq!(f.simulate(AUDIT_ARCH_X86_64, *nr, args), want, "{name}");
    }
    for i in 0..60u64 {
        let args = [0, i, 0, 0, 0, 0];
        assert_eq!(verdict(&f, X86_64, "ioctl", args), errno(100 + i as u32));
    }
    assert_eq!(verdict(&f, X86_64, "ioctl", [0, 60, 0, 0, 0, 0]), ALLOW);
    assert_eq!(f.simulate(AUDIT_ARCH_X86_64, 4000, [0; 6]), ALLOW);
}

#[test]
fn too_large_is_refused() {
    let rules: Vec<_> = (0..800u64)
        .map(|i| {
            json!({"names": ["ioctl"], "action": "SCMP_ACT_ERRNO",
                   "args": [{"index": 1, "value": i, "op": "SCMP_CMP_EQ"}]})
        })
        .collect();
    let msg = error_of(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}));
    assert!(
        msg.starts_with("linux.seccomp: the compiled filter has "),
        "{msg}"
    );
    assert!(msg.contains("limit of 4096"), "{msg}");
}

#[test]
fn bytes_roundtrip_and_corruption_is_rejected() {
    let f = compile(
        json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [
                {"names": ["read", "bogus"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["write"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 2, "op": "SCMP_CMP_LE"}]}
            ]
        }),
        X86_64,
    );
    assert_eq!(f.warnings().len(), 1);
    let bytes = f.to_bytes();
    assert_eq!(bytes.len(), 20 + 8 * f.len() + 4 + f.warnings()[0].len());
    let back = CompiledFilter::from_bytes(&bytes).unwrap();
    assert_eq!(back, f);
    assert_eq!(back.flags(), libc::SECCOMP_FILTER_FLAG_LOG as u32);

    for cut in 0..bytes.len() {
        let err = CompiledFilter::from_bytes(&bytes[..cut]).unwrap_err();
        assert!(matches!(err, SeccompError::Corrupt(_)), "cut {cut}: {err}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(CompiledFilter::from_bytes(&longer)
        .unwrap_err()
        .to_string()
        .contains("1 trailing bytes"));

    let mut bad = bytes.clone();
    bad[0] = b'X';
    assert!(CompiledFilter::from_bytes(&bad).is_err(), "magic");
    let mut bad = bytes.clone();
    bad[8] |= 0x20; // WAIT_KILLABLE_RECV is never passed
    assert!(CompiledFilter::from_bytes(&bad).is_err(), "flags");
    let mut bad = bytes.clone();
    let last = HEADER_LEN + 8 * (f.len() - 1);
    bad[last] = 0x05; // the final RET becomes a JA past the end
    assert!(CompiledFilter::from_bytes(&bad)
        .unwrap_err()
        .to_string()
        .contains("past the end"));
}

/// `generate` relies on seccompiler's rule block layout: fall through when the rule
/// matches, else skip the one instruction that follows the block.
#[test]
fn seccompiler_rule_block_layout() {
    let rule = SeccompRule::new(vec![seccompiler::SeccompCondition::new(
        0,
        SeccompCmpArgLen::Qword,
        SeccompCmpOp::Eq,
        7,
    )
    .unwrap()])
    .unwrap();
    let mut prog = BpfProgram::from(rule);
    let block = prog.len();
    prog.push(ret(1)); // match
    prog.push(ret(2)); // mismatch
    prog.push(ret(3)); // seccompiler's unused helper jump may point here
    bpf::validate(&prog).unwrap();
    assert_eq!(bpf::run(&prog, 0, 0, &[7, 0, 0, 0, 0, 0]), 1);
    assert_eq!(bpf::run(&prog, 0, 0, &[8, 0, 0, 0, 0, 0]), 2);
    assert_eq!(bpf::run(&prog, 0, 0, &[7 | 1 << 32, 0, 0, 0, 0, 0]), 2);
    assert!(block <= 8);
}

#[test]
fn syscall_tables_are_sorted_and_complete() {
    for table in [syscalls::X86_64, syscalls::AARCH64] {
        assert!(table.windows(2).all(|w| w[0].0 < w[1].0));
        for (hash, name, nr) in table {
            assert_eq!(*hash, syscalls::fnv1a(name.as_bytes()), "{name}");
            assert_eq!(syscalls::lookup(table, name), Some(*nr));
        }
        assert_eq!(syscalls::lookup(table, "not_a_syscall"), None);
    }
    assert_eq!(X86_64.syscall_nr("read"), Some(0));
    assert_eq!(X86_64.syscall_nr("io_pgetevents"), Some(333));
    assert_eq!(X86_64.syscall_nr("open"), Some(2));
    assert_eq!(AARCH64.syscall_nr("read"), Some(63));
    assert_eq!(AARCH64.syscall_nr("open"), None);
    assert_eq!(AARCH64.syscall_nr("openat"), Some(56));
    assert_eq!(AARCH64.syscall_nr("clone3"), Some(435));
}

#[test]
fn install_errors_explain_eacces() {
    let err = SeccompError::Install {
        flags: 0,
        cause: std::io::Error::from_raw_os_error(libc::EACCES),
    };
    let msg = err.to_string();
    assert!(
        msg.starts_with("seccomp(SECCOMP_SET_MODE_FILTER, flags 0x0): "),
        "{msg}"
    );
    assert!(msg.contains("needs no_new_privs"), "{msg}");
    assert!(msg.contains("CAP_SYS_ADMIN"), "{msg}");
}

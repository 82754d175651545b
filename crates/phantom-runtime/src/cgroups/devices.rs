//! Device access rules (`linux.resources.devices`).
//!
//! The rule list is the whole allowlist, applied from "deny everything"
//! (as runc does): v1 writes `a *:* rwm` to `devices.deny` and then each
//! rule, in order, to `devices.allow` or `devices.deny`; v2 has no device
//! files, so the rules become a `BPF_PROG_TYPE_CGROUP_DEVICE` program
//! attached to the cgroup directory.
//!
//! Program semantics (v2): for each access bit asked for (read, write,
//! mknod) the last rule that matches the device and names that bit
//! decides; a rule of type "a" (or no type) resets everything to its
//! verdict, as writing "a" does on v1. v1 differs in one corner, which is
//! the kernel's: a deny rule cannot punch a hole into a wildcard allow
//! (`allow c *:* rwm` then `deny c 1:3 rwm` still allows 1:3 on v1).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::{Linux, LinuxDeviceCgroup, LinuxDeviceType};

use super::error::{CgroupError, Result};
use super::fsio;

const FIELD: &str = "linux.resources.devices";

/// A checked rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rule {
    pub allow: bool,
    /// b'a', b'b' or b'c'.
    pub typ: u8,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// ACC_* bits.
    pub access: u32,
}

pub(crate) const ACC_MKNOD: u32 = 1;
pub(crate) const ACC_READ: u32 = 2;
pub(crate) const ACC_WRITE: u32 = 4;
pub(crate) const DEV_BLOCK: i32 = 1;
pub(crate) const DEV_CHAR: i32 = 2;

impl Rule {
    fn parse(i: usize, r: &LinuxDeviceCgroup) -> Result<Rule> {
        let field = format!("{FIELD}[{i}]");
        let bad = |what: &str, reason: String| {
            CgroupError::invalid(format!("{field}.{what}"), "devices", reason)
        };
        let typ = match r.typ() {
            None | Some(LinuxDeviceType::A) => b'a',
            Some(LinuxDeviceType::B) => b'b',
            Some(LinuxDeviceType::C) => b'c',
            Some(t) => {
                return Err(bad(
                    "type",
                    format!("{:?} is not a cgroup device type (a, b or c)", t.as_str()),
                ))
            }
        };
        let num = |what: &str, v: Option<i64>| -> Result<Option<u32>> {
            match v {
                None => Ok(None),
                Some(n) if n < 0 => Ok(None),
                Some(n) => u32::try_from(n)
                    .ok()
                    .filter(|n| *n <= i32::MAX as u32)
                    .map(Some)
                    .ok_or_else(|| bad(what, format!("{n} is out of range"))),
            }
        };
        let major = num("major", r.major())?;
        let minor = num("minor", r.minor())?;
        let acc = r.access().as_deref().unwrap_or("");
        if acc.is_empty() {
            return Err(bad(
                "access",
                "must not be empty (use a combination of r, w and m)".into(),
            ));
        }
        let mut access = 0;
        for c in acc.chars() {
            access |= match c {
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                'm' => ACC_MKNOD,
                _ => {
                    return Err(bad(
                        "access",
                        format!("{acc:?} may only contain r, w and m"),
                    ))
                }
            };
        }
        Ok(Rule {
            allow: r.allow(),
            typ,
            major,
            minor,
            access,
        })
    }

    /// The v1 file line: "c 1:3 rwm", "a *:* rwm".
    pub(crate) fn v1_line(&self) -> String {
        let n = |v: Option<u32>| v.map_or("*".to_string(), |v| v.to_string());
        let mut acc = String::new();
        for (bit, c) in [(ACC_READ, 'r'), (ACC_WRITE, 'w'), (ACC_MKNOD, 'm')] {
            if self.access & bit != 0 {
                acc.push(c);
            }
        }
        format!(
            "{} {}:{} {}",
            self.typ as char,
            n(self.major),
            n(self.minor),
            acc
        )
    }

    fn is_reset(&self) -> bool {
        self.typ == b'a'
    }
}

pub(crate) fn parse_rules(rules: &[LinuxDeviceCgroup]) -> Result<Vec<Rule>> {
    rules
        .iter()
        .enumerate()
        .map(|(i, r)| Rule::parse(i, r))
        .collect()
}

/// v1: deny everything, then every rule in order.
pub(crate) fn apply_v1(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    let rules = parse_rules(rules)?;
    if !rules.first().is_some_and(Rule::is_reset) {
        fsio::write(FIELD, dir, "devices.deny", "a *:* rwm")?;
    }
    for (i, r) in rules.iter().enumerate() {
        let file = if r.allow {
            "devices.allow"
        } else {
            "devices.deny"
        };
        fsio::write(&format!("{FIELD}[{i}]"), dir, file, &r.v1_line())?;
    }
    Ok(())
}

fn rule(
    allow: bool,
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(allow);
    r.set_typ(Some(typ));
    r.set_major(major);
    r.set_minor(minor);
    r.set_access(Some(access.to_string()));
    r
}

/// The rules a container gets at create time, as runc computes them: the
/// config's `linux.resources.devices`, then runc's always-allowed devices
/// (mknod of any device; /dev/null, zero, full, random, urandom, tty,
/// ptmx, pts/*, net/tun). `linux.devices` entries get no rule of their
/// own: as with runc, the config's rules decide access to them (engines
/// add an allow rule with each device), so a rule that allows only `m`
/// keeps them unreadable. Pass the result as `resources.devices` to
/// [`super::Cgroup::apply`].
pub fn container_device_rules(linux: &Linux) -> Vec<LinuxDeviceCgroup> {
    use LinuxDeviceType::{B, C};
    let mut out: Vec<LinuxDeviceCgroup> = linux
        .resources()
        .as_ref()
        .and_then(|r| r.devices().clone())
        .unwrap_or_default();
    out.extend([
        rule(true, C, None, None, "m"),
        rule(true, B, None, None, "m"),
        rule(true, C, Some(1), Some(3), "rwm"),
        rule(true, C, Some(1), Some(8), "rwm"),
        rule(true, C, Some(1), Some(7), "rwm"),
        rule(true, C, Some(5), Some(0), "rwm"),
        rule(true, C, Some(1), Some(5), "rwm"),
        rule(true, C, Some(1), Some(9), "rwm"),
        rule(true, C, Some(136), None, "rwm"),
        rule(true, C, Some(5), Some(2), "rwm"),
        rule(true, C, Some(10), Some(200), "rwm"),
    ]);
    out
}

// ---------------------------------------------------------------------------
// eBPF device filter (cgroup v2)

/// One eBPF instruction (struct bpf_insn).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    pub code: u8,
    /// dst in the low nibble, src in the high one.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

// Opcodes (class | op | source).
pub(crate) const LDXW: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
pub(crate) const AND32_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
pub(crate) const RSH32_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
pub(crate) const MOV32_K: u8 = 0xb4; // BPF_ALU | BPF_MOV | BPF_K
pub(crate) const MOV32_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
pub(crate) const JEQ_K: u8 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
pub(crate) const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
pub(crate) const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

fn ins(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0xf),
        off,
        imm,
    }
}

/// Registers: r1 = ctx (struct bpf_cgroup_dev_ctx { u32 access_type;
/// u32 major; u32 minor; }), r2 = device type, r3 = access bits still to
/// be decided, r4 = major, r5 = minor, r0 = verdict.
pub(crate) fn device_filter(rules: &[Rule]) -> Vec<Insn> {
    let mut p = vec![
        ins(LDXW, 2, 1, 0, 0),
        ins(AND32_K, 2, 0, 0, 0xffff),
        ins(LDXW, 3, 1, 0, 0),
        ins(RSH32_K, 3, 0, 0, 16),
        ins(LDXW, 4, 1, 4, 0),
        ins(LDXW, 5, 1, 8, 0),
    ];
    // Only the rules after the last reset matter; the reset sets the default.
    let start = rules.iter().rposition(Rule::is_reset);
    let default_allow = start.is_some_and(|i| rules[i].allow);
    let tail = &rules[start.map_or(0, |i| i + 1)..];
    // Last rule first: the first block that decides wins.
    for r in tail.iter().rev() {
        let mut block: Vec<Insn> = Vec::new();
        // Jumps to the end of the block are patched below (off = i16::MIN marks them).
        let typ = if r.typ == b'b' { DEV_BLOCK } else { DEV_CHAR };
        block.push(ins(JNE_K, 2, 0, i16::MIN, typ));
        if let Some(m) = r.major {
            block.push(ins(JNE_K, 4, 0, i16::MIN, m as i32));
        }
        if let Some(m) = r.minor {
            block.push(ins(JNE_K, 5, 0, i16::MIN, m as i32));
        }
        if r.allow {
            // r3 &= ~access; if r3 != 0 the remaining bits go on to older rules.
            block.push(ins(AND32_K, 3, 0, 0, (!r.access & 0xffff) as i32));
            block.push(ins(JNE_K, 3, 0, i16::MIN, 0));
            block.push(ins(MOV32_K, 0, 0, 0, 1));
        } else {
            // Deny if any bit still asked for is one this rule denies.
            block.push(ins(MOV32_X, 1, 3, 0, 0));
            block.push(ins(AND32_K, 1, 0, 0, r.access as i32));
            block.push(ins(JEQ_K, 1, 0, i16::MIN, 0));
            block.push(ins(MOV32_K, 0, 0, 0, 0));
        }
        block.push(ins(EXIT, 0, 0, 0, 0));
        let len = block.len();
        for (i, insn) in block.iter_mut().enumerate() {
            if insn.off == i16::MIN {
                insn.off = (len - i - 1) as i16;
            }
        }
        p.extend(block);
    }
    p.push(ins(MOV32_K, 0, 0, 0, i32::from(default_allow)));
    p.push(ins(EXIT, 0, 0, 0, 0));
    p
}

// bpf(2) commands, types and flags (linux/bpf.h).
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// bpf(2) with `attr`; returns the non-negative result.
///
/// # Safety
/// `attr` must be the attribute struct the kernel expects for `cmd`, and
/// every pointer inside it must be valid for the kernel to read or write
/// (as that command defines) for the duration of the call.
unsafe fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> nix::Result<i64> {
    // SAFETY: the caller guarantees `attr` matches `cmd` and that the
    // pointers it holds are valid; the size passed is that of `T`.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
    if r < 0 {
        Err(nix::errno::Errno::last())
    } else {
        Ok(r)
    }
}

fn bpf_err(what: &'static str, dir: &Path, log: String, source: nix::errno::Errno) -> CgroupError {
    CgroupError::Bpf {
        field: FIELD.to_string(),
        what,
        path: dir.to_path_buf(),
        log,
        source,
    }
}

/// Load the program and attach it to `dir`, then detach the programs that
/// were attached before (an update replaces the filter). With
/// BPF_F_ALLOW_MULTI every attached program must allow an access, so the
/// new filter is in force before the old ones go.
pub(crate) fn apply_v2(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    let rules = parse_rules(rules)?;
    let insns = device_filter(&rules);
    let cg = std::fs::File::open(dir)
        .map_err(|e| CgroupError::io(FIELD, "open cgroup directory", dir, e))?;

    let old = query(cg.as_raw_fd(), dir)?;

    let prog = match load(&insns, None) {
        Ok(fd) => fd,
        Err(e) => {
            // Load again with the verifier log, only to explain the failure.
            let mut log = vec![0u8; 64 * 1024];
            let _ = load(&insns, Some(&mut log));
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]).trim().to_string();
            let text = if text.is_empty() {
                String::new()
            } else {
                format!("; verifier: {text}")
            };
            return Err(bpf_err(
                "load the device filter program (BPF_PROG_LOAD)",
                dir,
                text,
                e,
            ));
        }
    };

    let mut attach = AttachAttr {
        target_fd: cg.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..Default::default()
    };
    // SAFETY: attr is a BPF_PROG_ATTACH attribute with no pointers.
    unsafe { bpf(BPF_PROG_ATTACH, &mut attach) }.map_err(|e| {
        let hint = if old.is_empty() {
            String::new()
        } else {
            format!(
                "; {} program(s) already attached, perhaps without BPF_F_ALLOW_MULTI",
                old.len()
            )
        };
        bpf_err("attach the device filter (BPF_PROG_ATTACH)", dir, hint, e)
    })?;

    for id in old {
        let mut get = GetIdAttr {
            prog_id: id,
            ..Default::default()
        };
        // SAFETY: attr is a BPF_PROG_GET_FD_BY_ID attribute with no pointers.
        let fd = match unsafe { bpf(BPF_PROG_GET_FD_BY_ID, &mut get) } {
            // SAFETY: a new fd that nothing else owns.
            Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd as i32) },
            // Gone meanwhile: nothing to detach.
            Err(nix::errno::Errno::ENOENT) => continue,
            Err(e) => {
                return Err(bpf_err(
                    "open an old device filter (BPF_PROG_GET_FD_BY_ID)",
                    dir,
                    String::new(),
                    e,
                ))
            }
        };
        let mut detach = AttachAttr {
            target_fd: cg.as_raw_fd() as u32,
            attach_bpf_fd: fd.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            ..Default::default()
        };
        // SAFETY: attr is a BPF_PROG_DETACH attribute with no pointers.
        match unsafe { bpf(BPF_PROG_DETACH, &mut detach) } {
            Ok(_) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => {
                return Err(bpf_err(
                    "detach an old device filter (BPF_PROG_DETACH)",
                    dir,
                    String::new(),
                    e,
                ))
            }
        }
    }
    Ok(())
}

/// BPF_PROG_LOAD of a cgroup device program, with the verifier log in
/// `log` if given.
fn load(insns: &[Insn], log: Option<&mut Vec<u8>>) -> nix::Result<OwnedFd> {
    let license = c"Apache";
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..Default::default()
    };
    attr.prog_name[..11].copy_from_slice(b"phantom_dev");
    if let Some(log) = log {
        attr.log_level = 1;
        attr.log_size = log.len() as u32;
        attr.log_buf = log.as_mut_ptr() as u64;
    }
    // SAFETY: attr is a BPF_PROG_LOAD attribute; insns and license (and
    // log, whose length is log_size) outlive the call.
    let fd = unsafe { bpf(BPF_PROG_LOAD, &mut attr) }?;
    // SAFETY: BPF_PROG_LOAD returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Ids of the device programs attached to the cgroup `fd` itself.
fn query(fd: i32, dir: &Path) -> Result<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    let mut attr = QueryAttr {
        target_fd: fd as u32,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    // SAFETY: attr is a BPF_PROG_QUERY attribute; prog_ids points to
    // prog_cnt u32 slots that outlive the call.
    match unsafe { bpf(BPF_PROG_QUERY, &mut attr) } {
        Ok(_) => {
            ids.truncate(attr.prog_cnt as usize);
            Ok(ids)
        }
        Err(e) => Err(bpf_err(
            "list attached device filters (BPF_PROG_QUERY)",
            dir,
            String::new(),
            e,
        )),
    }
}

/// Ids of the device programs attached to `dir` (tests and diagnostics).
pub fn attached_device_programs(dir: &Path) -> Result<Vec<u32>> {
    let cg = std::fs::File::open(dir)
        .map_err(|e| CgroupError::io(FIELD, "open cgroup directory", dir, e))?;
    query(cg.as_raw_fd(), dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(json: &str) -> Vec<Rule> {
        let r: Vec<LinuxDeviceCgroup> = serde_json::from_str(json).unwrap();
        parse_rules(&r).unwrap()
    }

    /// A tiny interpreter for the instructions `device_filter` emits.
    fn run(p: &[Insn], typ: i32, access: u32, major: u32, minor: u32) -> u32 {
        let ctx = [(access << 16) | typ as u32, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDXW => {
                    assert_eq!(src, 1);
                    r[dst] = u64::from(ctx[(i.off / 4) as usize]);
                }
                AND32_K => r[dst] = u64::from(r[dst] as u32 & i.imm as u32),
                RSH32_K => r[dst] = u64::from((r[dst] as u32) >> i.imm),
                MOV32_K => r[dst] = u64::from(i.imm as u32),
                MOV32_X => r[dst] = u64::from(r[src] as u32),
                JEQ_K => {
                    if r[dst] == i.imm as i64 as u64 {
                        pc += i.off as usize;
                    }
                }
                JNE_K => {
                    if r[dst] != i.imm as i64 as u64 {
                        pc += i.off as usize;
                    }
                }
                EXIT => return r[0] as u32,
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    const RW: u32 = ACC_READ | ACC_WRITE;

    #[test]
    fn deny_all_then_allow() {
        let p = device_filter(&rules(
            r#"[{"allow":false,"access":"rwm"},
                {"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"},
                {"allow":true,"type":"c","major":136,"access":"rw"},
                {"allow":true,"type":"b","access":"m"}]"#,
        ));
        assert_eq!(run(&p, DEV_CHAR, RW, 1, 3), 1);
        assert_eq!(run(&p, DEV_CHAR, RW, 1, 5), 0);
        assert_eq!(run(&p, DEV_BLOCK, RW, 1, 3), 0, "type must match");
        assert_eq!(run(&p, DEV_CHAR, ACC_WRITE, 136, 7), 1);
        assert_eq!(
            run(&p, DEV_CHAR, ACC_MKNOD, 136, 7),
            0,
            "access must be covered"
        );
        assert_eq!(run(&p, DEV_BLOCK, ACC_MKNOD, 8, 0), 1);
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 8, 0), 0);
    }

    #[test]
    fn no_rules_denies_everything() {
        let p = device_filter(&[]);
        assert_eq!(p.len(), 8);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 3), 0);
    }

    #[test]
    fn allow_all_with_deny_and_last_rule_wins() {
        let p = device_filter(&rules(
            r#"[{"allow":true,"access":"rwm"},
                {"allow":false,"type":"c","major":1,"minor":3,"access":"w"},
                {"allow":false,"type":"c","major":5,"access":"rwm"},
                {"allow":true,"type":"c","major":5,"minor":1,"access":"r"}]"#,
        ));
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 3), 1);
        assert_eq!(run(&p, DEV_CHAR, RW, 1, 3), 0, "write is denied");
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 5, 0), 0);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 5, 1), 1, "the later allow wins");
        assert_eq!(
            run(&p, DEV_CHAR, RW, 5, 1),
            0,
            "write still denied by the earlier rule"
        );
        assert_eq!(run(&p, DEV_BLOCK, RW, 8, 0), 1);
    }

    #[test]
    fn bits_add_up_and_reset_forgets() {
        let p = device_filter(&rules(
            r#"[{"allow":true,"type":"c","major":9,"minor":9,"access":"rwm"},
                {"allow":false,"access":"rwm"},
                {"allow":true,"type":"c","major":1,"minor":3,"access":"r"},
                {"allow":true,"type":"c","major":1,"minor":3,"access":"w"}]"#,
        ));
        assert_eq!(run(&p, DEV_CHAR, RW, 1, 3), 1, "r and w from two rules");
        assert_eq!(
            run(&p, DEV_CHAR, ACC_READ, 9, 9),
            0,
            "rules before the reset are gone"
        );
    }

    #[test]
    fn checks_rules() {
        let bad = |json: &str| {
            let r: Vec<LinuxDeviceCgroup> = serde_json::from_str(json).unwrap();
            parse_rules(&r).unwrap_err().to_string()
        };
        assert!(bad(r#"[{"allow":true,"type":"c","access":""}]"#).contains("devices[0].access"));
        assert!(bad(r#"[{"allow":true,"type":"c"}]"#).contains("must not be empty"));
        assert!(bad(r#"[{"allow":true,"access":"rwx"}]"#).contains("r, w and m"));
        assert!(bad(r#"[{"allow":true,"type":"p","access":"r"}]"#).contains("devices[0].type"));
        let r = rules(r#"[{"allow":true,"type":"c","major":-1,"minor":4,"access":"mwr"}]"#);
        assert_eq!(r[0].v1_line(), "c *:4 rwm");
    }

    #[test]
    fn container_rules_follow_runc() {
        let linux: Linux = serde_json::from_str(
            r#"{"resources":{"devices":[{"allow":false,"access":"rwm"}]},
                "devices":[{"path":"/dev/fuse","type":"c","major":10,"minor":229},
                           {"path":"/dev/p","type":"p","major":0,"minor":0}]}"#,
        )
        .unwrap();
        let r = container_device_rules(&linux);
        let lines: Vec<String> = parse_rules(&r).unwrap().iter().map(Rule::v1_line).collect();
        assert_eq!(lines[0], "a *:* rwm");
        assert_eq!(lines[1], "c *:* m");
        assert!(lines.contains(&"c 136:* rwm".to_string()));
        assert_eq!(lines.last().unwrap(), "c 10:200 rwm");
        assert_eq!(lines.len(), 12);
        let p = device_filter(&parse_rules(&r).unwrap());
        assert_eq!(run(&p, DEV_CHAR, RW, 1, 3), 1);
        // /dev/fuse is in linux.devices but no rule allows it.
        assert_eq!(run(&p, DEV_CHAR, RW, 10, 229), 0);
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 8, 0), 0);
        assert_eq!(run(&p, DEV_BLOCK, ACC_MKNOD, 8, 0), 1);
    }
}

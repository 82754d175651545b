//! Classic BPF as seccomp uses it: the few opcodes phantom emits, a structural check of a
//! program (the one the kernel would do, stricter), and an interpreter for tests and
//! diagnostics (`CompiledFilter::simulate`).

use seccompiler::sock_filter;

/// `BPF_LD | BPF_W | BPF_ABS` (`BPF_LD` and `BPF_W` are 0).
pub(crate) const BPF_LD_W_ABS: u16 = 0x20;
pub(crate) const BPF_ALU_AND_K: u16 = 0x04 | 0x50;
pub(crate) const BPF_JMP_JA: u16 = 0x05;
pub(crate) const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
pub(crate) const BPF_JMP_JGT_K: u16 = 0x05 | 0x20;
pub(crate) const BPF_JMP_JGE_K: u16 = 0x05 | 0x30;
pub(crate) const BPF_RET_K: u16 = 0x06;

/// The kernel's limit on a classic BPF program (`BPF_MAXINSNS`).
pub const MAX_INSNS: usize = 4096;

/// Offsets in `struct seccomp_data`.
pub(crate) const DATA_NR: u32 = 0;
pub(crate) const DATA_ARCH: u32 = 4;
/// `sizeof(struct seccomp_data)`: nr, arch, instruction_pointer, args[6].
const DATA_LEN: u32 = 64;

pub(crate) fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

pub(crate) fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

pub(crate) fn ret(action: u32) -> sock_filter {
    stmt(BPF_RET_K, action)
}

/// Checks that `prog` only uses the opcodes phantom emits, loads aligned words inside
/// `seccomp_data`, jumps forward inside the program, and cannot run off its end.
/// Returns a description of the first problem.
pub(crate) fn validate(prog: &[sock_filter]) -> Result<(), String> {
    if prog.is_empty() {
        return Err("the program is empty".into());
    }
    if prog.len() > MAX_INSNS {
        return Err(format!(
            "{} instructions, more than the kernel's limit of {MAX_INSNS}",
            prog.len()
        ));
    }
    let len = prog.len();
    for (pc, insn) in prog.iter().enumerate() {
        let rest = len - pc - 1; // instructions after this one
        let in_range = |off: usize| off < rest;
        match insn.code {
            BPF_LD_W_ABS => {
                if insn.k & 3 != 0 || insn.k >= DATA_LEN {
                    return Err(format!("instruction {pc}: load from offset {}", insn.k));
                }
            }
            BPF_ALU_AND_K | BPF_RET_K => {}
            BPF_JMP_JA => {
                if !in_range(insn.k as usize) {
                    return Err(format!("instruction {pc}: jump past the end"));
                }
            }
            BPF_JMP_JEQ_K | BPF_JMP_JGT_K | BPF_JMP_JGE_K => {
                if !in_range(insn.jt.into()) || !in_range(insn.jf.into()) {
                    return Err(format!("instruction {pc}: jump past the end"));
                }
            }
            code => return Err(format!("instruction {pc}: unexpected opcode {code:#06x}")),
        }
    }
    if prog[len - 1].code != BPF_RET_K {
        return Err("the last instruction is not a return".into());
    }
    Ok(())
}

/// Runs a program that [`validate`] accepted on one `seccomp_data` and returns the
/// `SECCOMP_RET_*` value it produces.
pub(crate) fn run(prog: &[sock_filter], nr: u32, arch: u32, args: &[u64; 6]) -> u32 {
    let word = |off: u32| -> u32 {
        match off {
            DATA_NR => nr,
            DATA_ARCH => arch,
            8 | 12 => 0, // instruction_pointer
            _ => {
                let i = ((off - 16) / 8) as usize;
                let v = args[i];
                // seccomp_data is in native byte order; both supported arches are
                // little-endian, so the low word comes first.
                if off & 4 == 0 {
                    v as u32
                } else {
                    (v >> 32) as u32
                }
            }
        }
    };
    let mut acc = 0u32;
    let mut pc = 0usize;
    loop {
        let insn = &prog[pc];
        let k = insn.k;
        let cond = |taken: bool| usize::from(if taken { insn.jt } else { insn.jf });
        pc += 1 + match insn.code {
            BPF_LD_W_ABS => {
                acc = word(k);
                0
            }
            BPF_ALU_AND_K => {
                acc &= k;
                0
            }
            BPF_JMP_JA => k as usize,
            BPF_JMP_JEQ_K => cond(acc == k),
            BPF_JMP_JGT_K => cond(acc > k),
            BPF_JMP_JGE_K => cond(acc >= k),
            BPF_RET_K => return k,
            code => unreachable!("opcode {code:#x} passed validate()"),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_rejects_bad_programs() {
        assert!(validate(&[]).is_err());
        assert!(validate(&[stmt(BPF_LD_W_ABS, 0)]).is_err(), "no return");
        assert!(
            validate(&[stmt(BPF_LD_W_ABS, 2), ret(0)]).is_err(),
            "unaligned"
        );
        assert!(
            validate(&[stmt(BPF_LD_W_ABS, 64), ret(0)]).is_err(),
            "outside"
        );
        assert!(
            validate(&[stmt(BPF_JMP_JA, 1), ret(0)]).is_err(),
            "ja past end"
        );
        assert!(validate(&[jump(BPF_JMP_JEQ_K, 0, 0, 1), ret(0)]).is_err());
        assert!(
            validate(&[stmt(0x07, 0), ret(0)]).is_err(),
            "TAX not emitted"
        );
        assert!(validate(&vec![ret(0); MAX_INSNS + 1]).is_err());
        assert!(validate(&[jump(BPF_JMP_JEQ_K, 0, 0, 1), ret(1), ret(2)]).is_ok());
    }

    #[test]
    fn run_reads_seccomp_data_words() {
        let prog = [
            stmt(BPF_LD_W_ABS, 16 + 8 + 4), // args[1] high word
            jump(BPF_JMP_JEQ_K, 7, 0, 1),
            ret(1),
            stmt(BPF_LD_W_ABS, 16 + 8), // args[1] low word
            stmt(BPF_ALU_AND_K, 0xf0),
            jump(BPF_JMP_JGE_K, 0x20, 0, 1),
            ret(2),
            ret(3),
        ];
        validate(&prog).unwrap();
        assert_eq!(run(&prog, 0, 0, &[0, 7 << 32, 0, 0, 0, 0]), 1);
        assert_eq!(run(&prog, 0, 0, &[0, 0x35, 0, 0, 0, 0]), 2);
        assert_eq!(run(&prog, 0, 0, &[0, 0x1f, 0, 0, 0, 0]), 3);
    }
}

//! Linux capability names and the masks of `/proc/PID/status`.

/// Capability names in kernel bit order (bit N = `CAPABILITIES[N]`).
pub const CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The bit of one capability name, if known.
pub fn bit(name: &str) -> Option<u64> {
    CAPABILITIES
        .iter()
        .position(|c| *c == name)
        .map(|i| 1u64 << i)
}

/// The mask of a list of names; unknown names are returned separately.
pub fn mask<'a>(names: impl IntoIterator<Item = &'a str>) -> (u64, Vec<String>) {
    let mut m = 0;
    let mut unknown = Vec::new();
    for n in names {
        match bit(n) {
            Some(b) => m |= b,
            None => unknown.push(n.to_owned()),
        }
    }
    (m, unknown)
}

/// The names set in `mask` (unknown high bits as `CAP_<N>`).
pub fn names(mask: u64) -> Vec<String> {
    (0..64)
        .filter(|i| mask & (1u64 << i) != 0)
        .map(|i| {
            CAPABILITIES
                .get(i)
                .map_or_else(|| format!("CAP_{i}"), |s| (*s).to_owned())
        })
        .collect()
}

/// Describes how `got` differs from `want`.
pub fn diff(want: u64, got: u64) -> String {
    let missing = names(want & !got);
    let extra = names(got & !want);
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("missing {}", missing.join(",")));
    }
    if !extra.is_empty() {
        parts.push(format!("unexpected {}", extra.join(",")));
    }
    parts.join(", ")
}

/// The five sets a process ends up with after `execve` of a plain binary
/// (no file capabilities, not set-id), given the sets the runtime set up
/// before the exec as config.json asked. This is the kernel's rule
/// (capabilities(7), "Transformation of capabilities during execve()"):
///
/// * ambient survives only as far as it is a subset of permitted and
///   inheritable;
/// * for root (uid 0 in its user namespace), permitted becomes
///   bounding | inheritable (limited to the old permitted set when
///   `no_new_privs` would otherwise gain capabilities), and effective
///   becomes permitted;
/// * for any other uid, permitted and effective become the ambient set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sets {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

impl Sets {
    pub fn after_exec(&self, uid: u32, no_new_privs: bool) -> Sets {
        let ambient = self.ambient & self.permitted & self.inheritable;
        let (permitted, effective) = if uid == 0 {
            let mut p = self.bounding | self.inheritable;
            if no_new_privs && p & !self.permitted != 0 {
                p &= self.permitted;
            }
            p |= ambient;
            (p, p)
        } else {
            (ambient, ambient)
        };
        Sets {
            bounding: self.bounding,
            effective,
            permitted,
            inheritable: self.inheritable,
            ambient,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_masks() {
        assert_eq!(bit("CAP_CHOWN"), Some(1));
        assert_eq!(bit("CAP_SYS_RESOURCE"), Some(1 << 24));
        let (m, unknown) = mask(["CAP_KILL", "CAP_BOGUS"]);
        assert_eq!(m, 1 << 5);
        assert_eq!(unknown, vec!["CAP_BOGUS".to_owned()]);
        assert_eq!(names(m), vec!["CAP_KILL".to_owned()]);
        assert_eq!(
            diff(0b11, 0b110),
            "missing CAP_CHOWN, unexpected CAP_DAC_READ_SEARCH"
        );
    }

    #[test]
    fn exec_rules() {
        let s = Sets {
            bounding: 0b1111,
            effective: 0b0001,
            permitted: 0b0011,
            inheritable: 0b0010,
            ambient: 0b0010,
        };
        // Non-root: only the ambient set survives into permitted/effective.
        let n = s.after_exec(1000, true);
        assert_eq!((n.permitted, n.effective, n.ambient), (0b10, 0b10, 0b10));
        // Root without no_new_privs: bounding | inheritable.
        let r = s.after_exec(0, false);
        assert_eq!((r.permitted, r.effective), (0b1111, 0b1111));
        // Root with no_new_privs cannot gain beyond the old permitted set.
        let r = s.after_exec(0, true);
        assert_eq!((r.permitted, r.effective), (0b0011, 0b0011));
    }
}

//! Capabilities (config.md "capabilities"): five sets, applied in the order
//! the kernel allows: bounding set drops first (needs CAP_SETPCAP), then,
//! after the uid change, effective/permitted/inheritable in one capset, then
//! ambient raises.

use std::str::FromStr;

use caps::{CapSet, Capability};
use oci_spec::runtime::{Capabilities, LinuxCapabilities};

use crate::error::{Error, Result};

/// The five sets as bit masks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapSets {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

fn mask(set: &Option<Capabilities>, field: &str) -> Result<u64> {
    let mut m = 0u64;
    for c in set.iter().flatten() {
        let name = format!("CAP_{c}");
        let cap = Capability::from_str(&name).map_err(|_| {
            Error::config(
                format!("process.capabilities.{field}"),
                format!("unknown capability {name}"),
            )
        })?;
        m |= 1u64 << cap.index();
    }
    Ok(m)
}

pub fn resolve(c: &Option<LinuxCapabilities>) -> Result<CapSets> {
    let Some(c) = c else {
        return Ok(CapSets::default());
    };
    Ok(CapSets {
        bounding: mask(c.bounding(), "bounding")?,
        effective: mask(c.effective(), "effective")?,
        permitted: mask(c.permitted(), "permitted")?,
        inheritable: mask(c.inheritable(), "inheritable")?,
        ambient: mask(c.ambient(), "ambient")?,
    })
}

/// Drop every capability not in the bounding set.
pub fn drop_bounding(sets: &CapSets) -> Result<()> {
    for cap in caps::all() {
        if sets.bounding & (1u64 << cap.index()) == 0 {
            match caps::drop(None, CapSet::Bounding, cap) {
                Ok(()) => {}
                // A capability this kernel does not know is not held anyway.
                Err(_)
                    if !caps::runtime::procfs_all_supported(None)
                        .map(|s| s.contains(&cap))
                        .unwrap_or(true) => {}
                Err(e) => {
                    return Err(Error::Init(format!(
                        "drop {cap} from the bounding set: {e}"
                    )))
                }
            }
        }
    }
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Effective, permitted and inheritable in one capset(2), then ambient.
pub fn apply(sets: &CapSets) -> Result<()> {
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: sets.effective as u32,
            permitted: sets.permitted as u32,
            inheritable: sets.inheritable as u32,
        },
        CapData {
            effective: (sets.effective >> 32) as u32,
            permitted: (sets.permitted >> 32) as u32,
            inheritable: (sets.inheritable >> 32) as u32,
        },
    ];
    // SAFETY: header and the two-element data array have the layout the
    // v3 capset ABI defines and live for the call.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) };
    if rc != 0 {
        return Err(Error::Init(format!(
            "set capabilities (effective {:#x}, permitted {:#x}, inheritable {:#x}): {}{}",
            sets.effective,
            sets.permitted,
            sets.inheritable,
            std::io::Error::last_os_error(),
            if sets.effective & !sets.permitted != 0 {
                " (effective must be a subset of permitted)"
            } else {
                ""
            }
        )));
    }
    // An ambient capability must be permitted and inheritable; runc's own
    // default spec lists ambient caps without inheritable ones, so like
    // runc we warn and go on rather than refuse such a config.
    for cap in caps::all() {
        if sets.ambient & (1u64 << cap.index()) != 0 {
            if let Err(e) = caps::raise(None, CapSet::Ambient, cap) {
                tracing::debug!(
                    "cannot raise ambient {cap} (it must also be permitted and inheritable): {e}"
                );
            }
        }
    }
    Ok(())
}

/// Whether this process may still use `cap` (for error messages that name
/// the cause, like a missing CAP_SYS_RESOURCE in the host's bounding set).
pub fn in_bounding_set(cap: Capability) -> bool {
    caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_from_spec() {
        let spec = crate::spec::parse(
            br#"{"ociVersion":"1.0.2","process":{"cwd":"/","user":{"uid":0,"gid":0},
            "capabilities":{"bounding":["CAP_CHOWN","CAP_KILL"],"effective":["CAP_KILL"]}}}"#,
        )
        .unwrap();
        let s = resolve(spec.process().as_ref().unwrap().capabilities()).unwrap();
        assert_eq!(s.bounding, (1 << 0) | (1 << 5));
        assert_eq!(s.effective, 1 << 5);
        assert_eq!(s.ambient, 0);
    }
}

//! rlimits and oom_score_adj (config.md "POSIX process": rlimits; config-linux
//! `process.oomScoreAdj`).

use oci_spec::runtime::{PosixRlimit, PosixRlimitType};

use crate::error::{Error, Result};

pub fn resource(t: PosixRlimitType) -> libc::__rlimit_resource_t {
    match t {
        PosixRlimitType::RlimitCpu => libc::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => libc::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => libc::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => libc::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => libc::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => libc::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => libc::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => libc::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => libc::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => libc::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => libc::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => libc::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

fn name(t: PosixRlimitType) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{t:?}"))
}

pub fn apply_rlimits(rlimits: &[PosixRlimit]) -> Result<()> {
    for (i, r) in rlimits.iter().enumerate() {
        let lim = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        // SAFETY: `lim` is a valid rlimit that lives for the call.
        if unsafe { libc::setrlimit(resource(r.typ()), &lim) } != 0 {
            let err = std::io::Error::last_os_error();
            let hint = if err.raw_os_error() == Some(libc::EPERM)
                && !super::caps::in_bounding_set(caps::Capability::CAP_SYS_RESOURCE)
            {
                " (raising a hard limit needs CAP_SYS_RESOURCE, which is not in this host's capability bounding set)"
            } else {
                ""
            };
            return Err(Error::Init(format!(
                "process.rlimits[{i}]: set {} to soft {} hard {}: {err}{hint}",
                name(r.typ()),
                r.soft(),
                r.hard()
            )));
        }
    }
    Ok(())
}

pub fn apply_oom_score_adj(value: i32) -> Result<()> {
    super::procfs::write("self/oom_score_adj", &value.to_string()).map_err(|e| {
        let hint = if matches!(&e, Error::Io { cause, .. } if cause.raw_os_error() == Some(libc::EACCES) || cause.raw_os_error() == Some(libc::EPERM))
            && !super::caps::in_bounding_set(caps::Capability::CAP_SYS_RESOURCE)
        {
            " (lowering oom_score_adj needs CAP_SYS_RESOURCE, which is not in this host's capability bounding set)"
        } else {
            ""
        };
        Error::Init(format!("process.oomScoreAdj: set {value}: {e}{hint}"))
    })
}

//! The container user: supplementary groups, gid, uid (config.md "User").

use nix::unistd::{Gid, Uid};
use oci_spec::runtime::User;

use crate::error::{Result, SysContext};

/// Switch to the configured user. Capabilities are kept across the switch
/// (PR_SET_KEEPCAPS) so the caller can set the configured sets afterwards.
pub fn switch(user: &User, setgroups_allowed: bool) -> Result<()> {
    // SAFETY: prctl with integer arguments only.
    nix::errno::Errno::result(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) })
        .ctx(|| "prctl(PR_SET_KEEPCAPS)".into())?;
    if setgroups_allowed {
        let groups: Vec<Gid> = user
            .additional_gids()
            .iter()
            .flatten()
            .map(|g| Gid::from_raw(*g))
            .collect();
        nix::unistd::setgroups(&groups)
            .ctx(|| format!("process.user.additionalGids: setgroups {groups:?}"))?;
    }
    let gid = Gid::from_raw(user.gid());
    nix::unistd::setresgid(gid, gid, gid).ctx(|| format!("process.user.gid: setresgid {gid}"))?;
    let uid = Uid::from_raw(user.uid());
    nix::unistd::setresuid(uid, uid, uid).ctx(|| format!("process.user.uid: setresuid {uid}"))?;
    // SAFETY: prctl with integer arguments only.
    nix::errno::Errno::result(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) })
        .ctx(|| "prctl(PR_SET_KEEPCAPS)".into())?;
    Ok(())
}

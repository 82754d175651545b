use std::cell::RefCell;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

use super::Sys;

/// One recorded privileged call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Mount {
        source: Option<PathBuf>,
        target: PathBuf,
        fstype: Option<String>,
        flags: MsFlags,
        data: Option<String>,
    },
    Umount(PathBuf, MntFlags),
    PivotRoot(PathBuf, PathBuf),
    Chroot(PathBuf),
    Setns(RawFd, CloneFlags),
    Unshare(CloneFlags),
    Sethostname(String),
    Setdomainname(String),
    Mknodat(String, libc::mode_t, libc::dev_t),
}

/// Records every call instead of making it, for unit tests without root.
#[derive(Debug, Default)]
pub struct RecordingSys {
    calls: RefCell<Vec<Call>>,
}

impl RecordingSys {
    pub fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }

    fn push(&self, call: Call) -> nix::Result<()> {
        self.calls.borrow_mut().push(call);
        Ok(())
    }
}

impl Sys for RecordingSys {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        self.push(Call::Mount {
            source: source.map(Path::to_path_buf),
            target: target.to_path_buf(),
            fstype: fstype.map(str::to_string),
            flags,
            data: data.map(str::to_string),
        })
    }
    fn umount2(&self, target: &Path, flags: MntFlags) -> nix::Result<()> {
        self.push(Call::Umount(target.to_path_buf(), flags))
    }
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> nix::Result<()> {
        self.push(Call::PivotRoot(
            new_root.to_path_buf(),
            put_old.to_path_buf(),
        ))
    }
    fn chroot(&self, path: &Path) -> nix::Result<()> {
        self.push(Call::Chroot(path.to_path_buf()))
    }
    fn setns(&self, fd: RawFd, nstype: CloneFlags) -> nix::Result<()> {
        self.push(Call::Setns(fd, nstype))
    }
    fn unshare(&self, flags: CloneFlags) -> nix::Result<()> {
        self.push(Call::Unshare(flags))
    }
    fn sethostname(&self, name: &str) -> nix::Result<()> {
        self.push(Call::Sethostname(name.to_string()))
    }
    fn setdomainname(&self, name: &str) -> nix::Result<()> {
        self.push(Call::Setdomainname(name.to_string()))
    }
    fn mknodat(
        &self,
        _dirfd: RawFd,
        name: &str,
        mode: libc::mode_t,
        dev: libc::dev_t,
    ) -> nix::Result<()> {
        self.push(Call::Mknodat(name.to_string(), mode, dev))
    }
}

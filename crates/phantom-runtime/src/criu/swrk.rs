//! One `criu swrk` session: spawn CRIU with one end of a SOCK_SEQPACKET
//! socketpair, send a request, answer its notifications, read the reply.
//! Each datagram is one protobuf message (criu/cr-service.c).

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use nix::sys::socket::{
    recvmsg, socketpair, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType,
};
use protobuf::Message;
use rust_criu::rust_criu_protobuf::rpc::{
    Criu_notify, Criu_opts, Criu_req, Criu_req_type, Criu_resp,
};

use super::CriuError;

/// A running `criu swrk`.
pub struct Swrk {
    path: PathBuf,
    child: Child,
    sock: OwnedFd,
}

impl Swrk {
    /// Starts `criu swrk`. `keep` are fds (without O_CLOEXEC cleared yet)
    /// that CRIU must inherit under the same numbers (images/work dirs,
    /// inherit_fd). CRIU's stdio is ours: inherit_fd of 0..2 needs it.
    pub fn spawn(path: &Path, keep: &[RawFd]) -> Result<Swrk, CriuError> {
        let rpc = |what: String| CriuError::Rpc {
            path: path.to_path_buf(),
            what,
        };
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| rpc(format!("socketpair: {e}")))?;
        let mut inherit: Vec<RawFd> = keep.to_vec();
        inherit.push(theirs.as_raw_fd());
        let mut cmd = Command::new(path);
        cmd.arg("swrk").arg(theirs.as_raw_fd().to_string());
        // SAFETY: the closure only calls fcntl(2), which is
        // async-signal-safe, on fds that are open in the parent (so in the
        // child); it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                for &fd in &inherit {
                    let flags = libc::fcntl(fd, libc::F_GETFD);
                    if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|cause| CriuError::Spawn {
            path: path.to_path_buf(),
            cause,
        })?;
        drop(theirs);
        Ok(Swrk {
            path: path.to_path_buf(),
            child,
            sock: ours,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn rpc(&self, what: impl Into<String>) -> CriuError {
        CriuError::Rpc {
            path: self.path.clone(),
            what: what.into(),
        }
    }

    fn send(&self, req: &Criu_req) -> Result<(), CriuError> {
        let bytes = req
            .write_to_bytes()
            .map_err(|e| self.rpc(format!("encode request: {e}")))?;
        let n = nix::unistd::write(&self.sock, &bytes)
            .map_err(|e| self.rpc(format!("send request: {e}")))?;
        if n != bytes.len() {
            return Err(self.rpc("short write of a request"));
        }
        Ok(())
    }

    /// One reply datagram and the fd passed with it, if any.
    fn recv(&self) -> Result<(Criu_resp, Option<OwnedFd>), CriuError> {
        let mut buf = vec![0u8; 1 << 16];
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        let (n, fd) = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = recvmsg::<()>(
                self.sock.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC,
            )
            .map_err(|e| self.rpc(format!("receive reply: {e}")))?;
            let mut fd = None;
            for c in msg
                .cmsgs()
                .map_err(|e| self.rpc(format!("control message: {e}")))?
            {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    for f in fds {
                        // SAFETY: SCM_RIGHTS installed `f` in our fd table
                        // just now; nothing else owns it.
                        let owned = unsafe { OwnedFd::from_raw_fd(f) };
                        fd.get_or_insert(owned);
                    }
                }
            }
            (msg.bytes, fd)
        };
        if n == 0 {
            return Err(self.rpc("CRIU closed the socket without a reply (see its log)"));
        }
        let resp = Criu_resp::parse_from_bytes(&buf[..n])
            .map_err(|e| self.rpc(format!("decode reply: {e}")))?;
        Ok((resp, fd))
    }

    /// Sends a request and answers notifications with `notify` until the
    /// final reply, which is returned whether or not it reports success.
    pub fn call(
        mut self,
        kind: Criu_req_type,
        opts: Option<Criu_opts>,
        mut notify: impl FnMut(&Criu_notify, Option<OwnedFd>) -> Result<(), String>,
    ) -> Result<Criu_resp, CriuError> {
        let mut req = Criu_req::new();
        req.set_type(kind);
        if let Some(o) = opts {
            req.opts = protobuf::MessageField::some(o);
        }
        self.send(&req)?;
        let result = loop {
            let (resp, fd) = match self.recv() {
                Ok(r) => r,
                Err(e) => break Err(e),
            };
            if resp.type_() == Criu_req_type::NOTIFY && resp.success() {
                let ok = notify(&resp.notify, fd);
                if let Err(e) = &ok {
                    tracing::warn!("CRIU notification {:?}: {e}", resp.notify.script());
                }
                let mut ack = Criu_req::new();
                ack.set_type(Criu_req_type::NOTIFY);
                ack.set_notify_success(ok.is_ok());
                if let Err(e) = self.send(&ack) {
                    break Err(e);
                }
                continue;
            }
            if resp.type_() != kind && resp.success() {
                break Err(self.rpc(format!("unexpected reply {:?} to {kind:?}", resp.type_())));
            }
            break Ok(resp);
        };
        drop(self.sock);
        if result.is_err() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        result
    }
}

/// CRIU's version, as major * 10000 + minor * 100 + sublevel. A build from
/// git counts as the next minor release, as runc counts it.
pub fn version(path: &Path) -> Result<u32, CriuError> {
    let resp = Swrk::spawn(path, &[])?.call(Criu_req_type::VERSION, None, |_, _| Ok(()))?;
    if !resp.success() || resp.version.is_none() {
        return Err(CriuError::Rpc {
            path: path.to_path_buf(),
            what: "VERSION request failed (CRIU older than 3.0?)".into(),
        });
    }
    let v = &resp.version;
    let mut n = u32::try_from(v.major_number()).unwrap_or(0) * 10000
        + u32::try_from(v.minor_number()).unwrap_or(0) * 100
        + u32::try_from(v.sublevel()).unwrap_or(0);
    if v.has_gitid() {
        n = n - n % 100 + 100;
    }
    Ok(n)
}

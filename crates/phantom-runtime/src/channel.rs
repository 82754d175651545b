//! The sync socket between `phantom create` (parent) and the container's
//! init (child): a SOCK_SEQPACKET pair, so each message arrives whole.
//!
//! child -> parent: `Hooks` (namespaces and mounts are ready: run prestart
//! and createRuntime hooks now), `Ready` (init is blocked on exec.fifo),
//! `Error(text)`.
//! parent -> child: `Go(state)` (uid/gid maps written, or runtime hooks
//! done; carries the OCI state JSON that container hooks get on stdin).

use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

use crate::error::{Error, Result, SysContext};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    Go(String),
    Hooks,
    /// Stage one of a two-stage init: the pid of the real init.
    Pid(i32),
    /// To a zygote: the request to run (JSON `ExecRequest`), with the
    /// caller's stdin, stdout and stderr attached.
    Exec(String),
    Ready,
    Error(String),
}

impl Msg {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Msg::Go(s) => {
                let mut v = b"G".to_vec();
                v.extend_from_slice(s.as_bytes());
                v
            }
            Msg::Hooks => b"H".to_vec(),
            Msg::Pid(p) => format!("P{p}").into_bytes(),
            Msg::Exec(s) => {
                let mut v = b"X".to_vec();
                v.extend_from_slice(s.as_bytes());
                v
            }
            Msg::Ready => b"R".to_vec(),
            Msg::Error(e) => {
                let mut v = b"E".to_vec();
                v.extend_from_slice(e.as_bytes());
                v
            }
        }
    }

    pub fn decode(b: &[u8]) -> Option<Msg> {
        match b.first()? {
            b'G' => Some(Msg::Go(String::from_utf8_lossy(&b[1..]).into_owned())),
            b'H' => Some(Msg::Hooks),
            b'P' => std::str::from_utf8(&b[1..])
                .ok()?
                .parse()
                .ok()
                .map(Msg::Pid),
            b'R' => Some(Msg::Ready),
            b'X' => Some(Msg::Exec(String::from_utf8_lossy(&b[1..]).into_owned())),
            b'E' => Some(Msg::Error(String::from_utf8_lossy(&b[1..]).into_owned())),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

pub fn pair() -> Result<(Channel, Channel)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .ctx(|| "socketpair for the init sync channel".into())?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    pub fn raw(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    pub fn send(&self, m: &Msg) -> Result<()> {
        let b = m.encode();
        nix::sys::socket::send(
            self.fd.as_raw_fd(),
            &b,
            nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
        )
        .ctx(|| "send on the init sync channel".into())?;
        Ok(())
    }

    /// Send a message with file descriptors attached (SCM_RIGHTS).
    pub fn send_with_fds(&self, m: &Msg, fds: &[i32]) -> Result<()> {
        send_with_fds(self.fd.as_raw_fd(), m, fds)
    }

    /// Next message and the fds that came with it (close-on-exec).
    pub fn recv_with_fds(&self) -> Result<Option<(Msg, Vec<OwnedFd>)>> {
        recv_with_fds(self.fd.as_raw_fd())
    }

    /// Next message; `None` when the other side closed without a word.
    pub fn recv(&self) -> Result<Option<Msg>> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match nix::sys::socket::recv(
                self.fd.as_raw_fd(),
                &mut buf,
                nix::sys::socket::MsgFlags::empty(),
            ) {
                Ok(0) => return Ok(None),
                Ok(n) => {
                    return Msg::decode(&buf[..n]).map(Some).ok_or_else(|| {
                        Error::Init("garbled message on the init sync channel".into())
                    })
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::sys("receive on the init sync channel", e)),
            }
        }
    }
}

/// recvmsg on any socket: one message and the fds that came with it
/// (close-on-exec). `None` at end of stream.
pub fn recv_with_fds(fd: std::os::fd::RawFd) -> Result<Option<(Msg, Vec<OwnedFd>)>> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::FromRawFd;
    let mut buf = vec![0u8; 256 * 1024];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 8]);
    let (n, fds) = loop {
        match recvmsg::<()>(fd, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC) {
            Ok(msg) => {
                let mut fds = Vec::new();
                for c in msg.cmsgs().ctx(|| "read control messages".into())? {
                    if let ControlMessageOwned::ScmRights(list) = c {
                        // SAFETY: the kernel installed these fds for us.
                        fds.extend(
                            list.into_iter()
                                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                        );
                    }
                }
                break (msg.bytes, fds);
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::sys("receive a message with fds", e)),
        }
    };
    if n == 0 {
        return Ok(None);
    }
    let msg = Msg::decode(&buf[..n]).ok_or_else(|| Error::Init("garbled message".into()))?;
    Ok(Some((msg, fds)))
}

/// sendmsg on any socket: one message with fds attached.
pub fn send_with_fds(fd: std::os::fd::RawFd, m: &Msg, fds: &[i32]) -> Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let b = m.encode();
    let iov = [std::io::IoSlice::new(&b)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
    sendmsg::<()>(fd, &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None)
        .ctx(|| "send a message with fds".into())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let (a, b) = pair().unwrap();
        a.send(&Msg::Go("{}".into())).unwrap();
        a.send(&Msg::Error("boom: x".into())).unwrap();
        assert_eq!(b.recv().unwrap(), Some(Msg::Go("{}".into())));
        assert_eq!(b.recv().unwrap(), Some(Msg::Error("boom: x".into())));
        drop(a);
        assert_eq!(b.recv().unwrap(), None);
    }
}

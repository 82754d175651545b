//! The sync socket between `phantom create` (parent) and the container's
//! init (child): a SOCK_SEQPACKET pair, so each message arrives whole.
//!
//! child -> parent: `Hooks` (namespaces and mounts are ready: run prestart
//! and createRuntime hooks now), `Ready` (init is blocked on exec.fifo),
//! `Error(text)`, `ExecFailed(errno, text)` (the program could not be
//! executed).
//! parent -> child: `Go(state)` (uid/gid maps written, or runtime hooks
//! done; carries the OCI state JSON that container hooks get on stdin).
//!
//! A SOCK_SEQPACKET message is bounded by the socket's send buffer (about
//! 208 KiB here), and the state carries every annotation of config.json:
//! a message longer than [`PIECE`] goes as pieces, each but the last
//! tagged `+`, the last `=`; the receiver joins them. Short messages (all
//! but big states and requests) go as one packet, as before.

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
    /// The program could not be executed: execve's (or the lookup's)
    /// errno and the message.
    ExecFailed {
        errno: i32,
        message: String,
    },
}

impl Msg {
    /// The error init reported, if this is an error message.
    pub fn into_error(self) -> Option<Error> {
        match self {
            Msg::Error(e) => Some(Error::Init(e)),
            Msg::ExecFailed { errno, message } => Some(Error::ExecFailed { errno, message }),
            _ => None,
        }
    }

    /// The message that reports `err` (its errno kept for a program that
    /// could not be executed).
    pub fn from_error(err: &Error) -> Msg {
        match err {
            Error::ExecFailed { errno, message } => Msg::ExecFailed {
                errno: *errno,
                message: message.clone(),
            },
            e => Msg::Error(e.to_string()),
        }
    }

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
            Msg::ExecFailed { errno, message } => format!("F{errno} {message}").into_bytes(),
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
            b'F' => {
                let text = String::from_utf8_lossy(&b[1..]);
                let (errno, message) = text.split_once(' ')?;
                Some(Msg::ExecFailed {
                    errno: errno.parse().ok()?,
                    message: message.to_string(),
                })
            }
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
        send_with_fds(self.fd.as_raw_fd(), m, &[])
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
        Ok(self.recv_with_fds()?.map(|(m, _)| m))
    }
}

/// The longest packet sent whole; longer messages go in pieces this long.
pub const PIECE: usize = 32 * 1024;
/// The most a message may grow to from its pieces (a config.json is at
/// most this long in practice; runc caps none).
const MAX_MESSAGE: usize = 64 << 20;

/// recvmsg on any socket: one message (joined from its pieces) and the
/// fds that came with it (close-on-exec). `None` at end of stream.
pub fn recv_with_fds(fd: std::os::fd::RawFd) -> Result<Option<(Msg, Vec<OwnedFd>)>> {
    let mut fds = Vec::new();
    let mut joined: Vec<u8> = Vec::new();
    loop {
        let Some(packet) = recv_packet(fd, &mut fds)? else {
            if joined.is_empty() {
                return Ok(None);
            }
            return Err(Error::Init(
                "the sync channel closed in the middle of a message".into(),
            ));
        };
        let last = match packet.first() {
            Some(b'+') => false,
            Some(b'=') => true,
            _ if joined.is_empty() => {
                let msg = Msg::decode(&packet)
                    .ok_or_else(|| Error::Init("garbled message on the sync channel".into()))?;
                return Ok(Some((msg, fds)));
            }
            _ => return Err(Error::Init("garbled piece on the sync channel".into())),
        };
        if joined.len() + packet.len() > MAX_MESSAGE {
            return Err(Error::Init(format!(
                "a message on the sync channel is longer than {MAX_MESSAGE} bytes"
            )));
        }
        joined.extend_from_slice(&packet[1..]);
        if last {
            let msg = Msg::decode(&joined)
                .ok_or_else(|| Error::Init("garbled message on the sync channel".into()))?;
            return Ok(Some((msg, fds)));
        }
    }
}

/// One packet; fds that came with it are added to `fds`. `None` at end of
/// stream.
fn recv_packet(fd: std::os::fd::RawFd, fds: &mut Vec<OwnedFd>) -> Result<Option<Vec<u8>>> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::FromRawFd;
    // A whole packet is at most PIECE + 1 bytes from us; other senders
    // (the Python fork server) send short ones.
    let mut buf = vec![0u8; 256 * 1024];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 8]);
    let n = loop {
        match recvmsg::<()>(fd, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC) {
            Ok(msg) => {
                for c in msg.cmsgs().ctx(|| "read control messages".into())? {
                    if let ControlMessageOwned::ScmRights(list) = c {
                        // SAFETY: the kernel installed these fds for us.
                        fds.extend(
                            list.into_iter()
                                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                        );
                    }
                }
                break msg.bytes;
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::sys("receive on the sync channel", e)),
        }
    };
    if n == 0 {
        return Ok(None);
    }
    buf.truncate(n);
    Ok(Some(buf))
}

/// sendmsg on any socket: one message with fds attached (to its first
/// piece, when it is long enough to go in pieces).
pub fn send_with_fds(fd: std::os::fd::RawFd, m: &Msg, fds: &[i32]) -> Result<()> {
    let b = m.encode();
    if b.len() <= PIECE {
        return send_packet(fd, &[&b], fds);
    }
    let mut pieces = b.chunks(PIECE).peekable();
    let mut first = true;
    while let Some(piece) = pieces.next() {
        let tag: &[u8] = if pieces.peek().is_some() { b"+" } else { b"=" };
        send_packet(fd, &[tag, piece], if first { fds } else { &[] })?;
        first = false;
    }
    Ok(())
}

fn send_packet(fd: std::os::fd::RawFd, parts: &[&[u8]], fds: &[i32]) -> Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let iov: Vec<std::io::IoSlice> = parts.iter().map(|p| std::io::IoSlice::new(p)).collect();
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
    loop {
        match sendmsg::<()>(fd, &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::sys("send on the sync channel", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let (a, b) = pair().unwrap();
        a.send(&Msg::Go("{}".into())).unwrap();
        a.send(&Msg::Error("boom: x".into())).unwrap();
        let failed = Msg::ExecFailed {
            errno: libc::ENOENT,
            message: "exec: \"nope\": executable file not found in $PATH".into(),
        };
        a.send(&failed).unwrap();
        assert_eq!(b.recv().unwrap(), Some(Msg::Go("{}".into())));
        assert_eq!(b.recv().unwrap(), Some(Msg::Error("boom: x".into())));
        assert_eq!(b.recv().unwrap(), Some(failed));
        drop(a);
        assert_eq!(b.recv().unwrap(), None);
    }

    #[test]
    fn long_messages_go_in_pieces_and_arrive_whole() {
        let (a, b) = pair().unwrap();
        // Far beyond one SOCK_SEQPACKET packet (EMSGSIZE above ~208 KiB);
        // the reader keeps reading while the writer sends.
        let big = "x".repeat(3 * 1024 * 1024 + 7);
        let expected = Msg::Go(big.clone());
        let reader = std::thread::spawn(move || (b.recv().unwrap(), b.recv().unwrap()));
        a.send(&Msg::Go(big)).unwrap();
        a.send(&Msg::Ready).unwrap();
        let (first, second) = reader.join().unwrap();
        assert_eq!(first, Some(expected));
        assert_eq!(second, Some(Msg::Ready));
    }

    #[test]
    fn fds_of_a_long_message_arrive_with_it() {
        let (a, b) = pair().unwrap();
        let (r, _w) = nix::unistd::pipe().unwrap();
        let text = "y".repeat(PIECE * 2 + 1);
        let reader = std::thread::spawn(move || b.recv_with_fds().unwrap().unwrap());
        a.send_with_fds(&Msg::Exec(text.clone()), &[r.as_raw_fd()])
            .unwrap();
        let (msg, fds) = reader.join().unwrap();
        assert_eq!(msg, Msg::Exec(text));
        assert_eq!(fds.len(), 1);
    }
}

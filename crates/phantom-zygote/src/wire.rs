//! Socket helpers shared by runners, clients and the daemon.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use nix::sys::socket::{
    bind, connect, listen, recv, send, socket, AddressFamily, Backlog, MsgFlags, SockFlag,
    SockType, UnixAddr,
};
use serde_json::Value;

pub fn seqpacket() -> Result<OwnedFd> {
    socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context("create a unix socket")
}

/// A listening SEQPACKET socket at `path` (replacing a stale one), mode
/// 0600: only root, the daemon's user, may ask for sandboxes.
pub fn listen_at(path: &Path) -> Result<OwnedFd> {
    let _ = std::fs::remove_file(path);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let fd = seqpacket()?;
    bind(fd.as_raw_fd(), &UnixAddr::new(path)?)
        .with_context(|| format!("bind {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    listen(&fd, Backlog::new(64)?).with_context(|| format!("listen on {}", path.display()))?;
    Ok(fd)
}

pub fn connect_to(path: &Path) -> Result<OwnedFd> {
    let fd = seqpacket()?;
    connect(fd.as_raw_fd(), &UnixAddr::new(path)?)
        .with_context(|| format!("connect to {}", path.display()))?;
    Ok(fd)
}

pub fn send_json(fd: RawFd, v: &Value) -> Result<()> {
    send(fd, v.to_string().as_bytes(), MsgFlags::MSG_NOSIGNAL).context("send")?;
    Ok(())
}

/// `msg` with `fds` attached as one SEQPACKET message however long it is
/// (up to the fork server's 8 MiB): the Python fork server reads a request
/// in one `recvmsg`, where Rust peers join the channel's pieces. A unix
/// socket's message must fit the sender's buffer, so that is raised to fit
/// (SO_SNDBUFFORCE: the warm path runs as root).
pub fn send_whole_with_fds(fd: RawFd, msg: &[u8], fds: &[RawFd]) -> Result<()> {
    use nix::sys::socket::{sendmsg, setsockopt, sockopt, ControlMessage};
    const MAX: usize = 8 << 20;
    if msg.len() > MAX {
        anyhow::bail!(
            "a request of {} bytes is longer than the {MAX} a fork server takes",
            msg.len()
        );
    }
    // SAFETY: fd is a socket the caller owns for the duration of the call.
    let sock = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    // The kernel doubles the value and keeps some for its own bookkeeping.
    setsockopt(&sock, sockopt::SndBufForce, &(msg.len() + (64 << 10)))
        .context("raise the socket's send buffer for a long request")?;
    let iov = [std::io::IoSlice::new(msg)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    loop {
        match sendmsg::<()>(fd, &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).context("send the request"),
        }
    }
}

/// A runner's reply (crate::proto) as one message.
pub fn send_reply(fd: RawFd, reply: &crate::proto::RunReply) -> Result<()> {
    send_json(fd, &serde_json::to_value(reply).expect("replies serialise"))
}

/// One message; `None` at the end of the stream.
pub fn recv_json(fd: RawFd) -> Result<Option<Value>> {
    let mut buf = vec![0u8; 64 * 1024];
    let n = loop {
        match recv(fd, &mut buf, MsgFlags::empty()) {
            Ok(n) => break n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).context("receive"),
        }
    };
    if n == 0 {
        return Ok(None);
    }
    Ok(Some(
        serde_json::from_slice(&buf[..n]).context("malformed message")?,
    ))
}

/// A pidfd for `pid`: readable once the process has exited.
pub fn pidfd_open(pid: i32) -> Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("pidfd_open {pid}"));
    }
    // SAFETY: the kernel returned a new fd that only we own.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as RawFd) })
}

//! The receiving end of `--console-socket`: accept the runtime's
//! connection, take the pseudoterminal master it sends (SCM_RIGHTS) and
//! collect what the container writes to its terminal.

use std::fs::File;
use std::io::{IoSliceMut, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

pub struct Console {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Result<String, String>>,
}

fn recv_fd(sock: RawFd) -> Result<OwnedFd, String> {
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(|e| format!("recvmsg on the console socket: {e}"))?;
    for c in msg.cmsgs().map_err(|e| format!("cmsgs: {e}"))? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                // SAFETY: SCM_RIGHTS just gave us this descriptor; nothing
                // else owns it.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    Err("the runtime sent no file descriptor on the console socket".into())
}

impl Console {
    /// Listens on `path` in a background thread until [`Console::finish`].
    pub fn listen(path: &Path) -> Result<Console, String> {
        let listener =
            UnixListener::bind(path).map_err(|e| format!("bind {}: {e}", path.display()))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("nonblocking: {e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let handle = thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            let stream = loop {
                match listener.accept() {
                    Ok((s, _)) => break s,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if stop2.load(Ordering::SeqCst) || Instant::now() > deadline {
                            return Err("the runtime never connected to the console socket".into());
                        }
                        thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => return Err(format!("accept: {e}")),
                }
            };
            let _ = stream.set_nonblocking(false);
            let master = recv_fd(stream.as_raw_fd())?;
            // Read until the slave side is closed (EIO) or we are told to
            // stop; poll so that stop is noticed.
            let mut f = File::from(master);
            let mut out = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let mut pfd = libc::pollfd {
                    fd: f.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd for the duration of the call.
                let n = unsafe { libc::poll(&mut pfd, 1, 50) };
                if n > 0 {
                    match f.read(&mut buf) {
                        Ok(0) => break,
                        Ok(k) => out.extend_from_slice(&buf[..k]),
                        Err(_) => break, // EIO: every slave fd is closed
                    }
                } else if stop2.load(Ordering::SeqCst) || Instant::now() > deadline {
                    break;
                }
            }
            Ok(String::from_utf8_lossy(&out).replace('\r', ""))
        });
        Ok(Console { stop, handle })
    }

    /// Stops waiting and returns what the terminal showed.
    pub fn finish(self) -> Result<String, String> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle
            .join()
            .unwrap_or_else(|_| Err("console thread panicked".into()))
    }
}

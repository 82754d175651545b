//! A terminal for the container (`process.terminal`): init opens a pty in
//! the container's devpts, sends the master over `--console-socket` with
//! SCM_RIGHTS, binds the slave onto `/dev/console` and makes it its
//! controlling terminal and stdio.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

use crate::error::{Error, Result, SysContext};
use crate::rootfs::safe_path::{fstat, open_in_root};
use crate::sys::{fd_path, Sys};

/// Connect to the console socket (in the caller, before the fork: the path
/// is a host path).
pub fn connect(path: &Path) -> Result<OwnedFd> {
    use nix::sys::socket::{connect as sconnect, socket, SockFlag, SockType, UnixAddr};
    let fd = socket(
        nix::sys::socket::AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .ctx(|| "create console socket".into())?;
    let addr = UnixAddr::new(path).ctx(|| format!("console socket path {}", path.display()))?;
    sconnect(fd.as_raw_fd(), &addr)
        .ctx(|| format!("connect to console socket {}", path.display()))?;
    Ok(fd)
}

/// In init, after pivot_root: open the pty, send the master, set up the
/// slave. Returns nothing; stdio now is the terminal.
/// `bind_console`: also bind the slave onto /dev/console (init does; exec
/// must not touch the container's console).
pub fn setup(
    sys: &dyn Sys,
    socket: RawFd,
    size: Option<(u16, u16)>,
    bind_console: bool,
) -> Result<()> {
    let master = nix::fcntl::open(
        "/dev/ptmx",
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_NOCTTY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ctx(|| "open /dev/ptmx in the container".into())?;
    // SAFETY: unlockpt and the TIOCGPTPEER ioctl act on the master fd we own.
    unsafe {
        let unlock: libc::c_int = 0;
        Errno::result(libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock))
            .ctx(|| "unlock pty".into())?;
    }
    // TIOCGPTPEER opens the slave from the master, with no path lookup.
    // SAFETY: ioctl on our master fd; returns a new fd or -1.
    let slave = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    let slave = Errno::result(slave).ctx(|| "open pty slave".into())?;
    // SAFETY: fresh fd from the kernel.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    if let Some((rows, cols)) = size {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize that lives for the call.
        unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }

    if bind_console {
        bind_dev_console(sys, &slave)?;
    }

    // Send the master: runc's protocol, the fd with its name as payload.
    let iov = [IoSlice::new(b"/dev/ptmx")];
    let fds = [master.as_raw_fd()];
    sendmsg::<()>(
        socket,
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .ctx(|| "send the pty master over the console socket".into())?;
    drop(master);

    nix::unistd::setsid().ctx(|| "setsid".into())?;
    // SAFETY: TIOCSCTTY on our slave fd with an integer argument.
    Errno::result(unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) })
        .ctx(|| "make the pty the controlling terminal".into())?;
    for target in 0..3 {
        // SAFETY: dup2 onto the stdio numbers; both fds are valid.
        Errno::result(unsafe { libc::dup2(slave.as_raw_fd(), target) })
            .ctx(|| format!("dup the pty onto fd {target}"))?;
    }
    Ok(())
}

/// /dev/console: bind the slave only onto a verified inode: a regular file
/// (or an existing console char device) opened inside the root without
/// following symlinks (CVE-2025-52565).
fn bind_dev_console(sys: &dyn Sys, slave: &OwnedFd) -> Result<()> {
    let root = nix::fcntl::open(
        "/",
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ctx(|| "open /".into())?;
    let console = match open_in_root(
        root.as_raw_fd(),
        Path::new("/dev/console"),
        libc::O_PATH | libc::O_NOFOLLOW,
    ) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => {
            let dev = open_in_root(
                root.as_raw_fd(),
                Path::new("/dev"),
                libc::O_DIRECTORY | libc::O_RDONLY,
            )
            .ctx(|| "open /dev".into())?;
            // SAFETY: valid dir fd and name; O_EXCL|O_NOFOLLOW create a new file only.
            let fd = unsafe {
                libc::openat(
                    dev.as_raw_fd(),
                    c"console".as_ptr(),
                    libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_NOFOLLOW
                        | libc::O_CLOEXEC
                        | libc::O_RDONLY,
                    0o600,
                )
            };
            let fd = Errno::result(fd).ctx(|| "create /dev/console".into())?;
            // SAFETY: fresh fd from the kernel.
            unsafe { OwnedFd::from_raw_fd(fd) }
        }
        Err(e) => return Err(Error::sys("open /dev/console", e)),
    };
    let st = fstat(console.as_raw_fd()).ctx(|| "stat /dev/console".into())?;
    let kind = st.st_mode & libc::S_IFMT;
    if kind != libc::S_IFREG && !(kind == libc::S_IFCHR && st.st_rdev == libc::makedev(5, 1)) {
        return Err(Error::Init(
            "/dev/console in the container is neither a regular file nor the console device: refusing to mount the terminal on it".into(),
        ));
    }
    sys.mount(
        Some(&fd_path(slave.as_raw_fd())),
        &fd_path(console.as_raw_fd()),
        None,
        MsFlags::MS_BIND,
        None,
    )
    .ctx(|| "bind the pty onto /dev/console".into())?;
    Ok(())
}

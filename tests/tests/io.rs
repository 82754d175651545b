//! Process I/O: stdio, exit status, extra file descriptors and terminals.

use std::fs::{self, File};
use std::io::{IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use phantom_tests::{
    assert_success, describe, key_values, output, pass_fd, require_root, stderr, stdout, Bundle,
    Runtime,
};
use serde_json::json;

#[test]
fn run_separates_stdout_stderr_and_exit_status() {
    require_root!();
    let rt = Runtime::new();
    let out = rt.run_bundle(&Bundle::sh("echo out; echo err >&2; exit 3"));
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert_eq!(stdout(&out), "out\n");
    // runc/crun may log to stderr too; the container's line must be there.
    assert!(
        stderr(&out).lines().any(|l| l == "err"),
        "{}",
        describe(&out)
    );
}

#[test]
fn run_forwards_stdin() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::sh("wc -c");
    let input = b.path().join("stdin.txt");
    fs::write(&input, "0123456789").unwrap();
    let id = rt.id("stdin");
    rt.prepare(&id, &b);
    let mut cmd = rt.command(&[
        "run".as_ref(),
        "--bundle".as_ref(),
        b.path().as_os_str(),
        id.as_ref(),
    ]);
    cmd.stdin(File::open(&input).unwrap());
    let out = output(cmd);
    assert_success(&out, "run with stdin");
    assert_eq!(stdout(&out).trim(), "10");
}

/// A pipe whose read end is returned with the write end: the container
/// writes through fd 3, the test reads here.
fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe2")
}

fn read_to_end(fd: OwnedFd) -> String {
    let mut s = String::new();
    File::from(fd).read_to_string(&mut s).expect("read pipe");
    s
}

fn fd_list(out: &str, key: &str) -> Vec<u32> {
    let kv = key_values(out);
    let mut fds: Vec<u32> = kv[key]
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    fds.sort_unstable();
    fds
}

#[test]
fn preserve_fds_passes_extra_descriptors() {
    require_root!();
    let rt = Runtime::new();
    // `ls` opens /proc/self/fd itself, so the listing includes one more
    // descriptor than the shell has.
    let b = Bundle::sh(
        "echo fds=$(ls /proc/self/fd); echo via-fd3 >&3; read line <&4; echo fd4=$line; \
         echo listen=[$LISTEN_FDS]",
    );
    let extra = b.path().join("fd4.txt");
    fs::write(&extra, "fd4-content\n").unwrap();
    let id = rt.id("preserve");
    rt.prepare(&id, &b);
    let (r, w) = pipe();
    let mut cmd = rt.command(&[
        "run".as_ref(),
        "--preserve-fds".as_ref(),
        "2".as_ref(),
        "--bundle".as_ref(),
        b.path().as_os_str(),
        id.as_ref(),
    ]);
    pass_fd(&mut cmd, &w, 3);
    pass_fd(&mut cmd, &File::open(&extra).unwrap(), 4);
    let out = output(cmd);
    // The command (and its copy of the write end) is gone; drop ours so
    // the pipe reaches EOF.
    drop(w);
    assert_success(&out, "run --preserve-fds 2");
    let text = stdout(&out);
    assert_eq!(fd_list(&text, "fds"), [0, 1, 2, 3, 4, 5], "{text}");
    assert_eq!(key_values(&text)["fd4"], "fd4-content");
    // runc sets LISTEN_FDS only for socket activation (below), not for
    // --preserve-fds.
    assert_eq!(key_values(&text)["listen"], "[]");
    assert_eq!(read_to_end(r), "via-fd3\n");
}

#[test]
fn extra_fds_closed_without_preserve_fds() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::sh("echo fds=$(ls /proc/self/fd)");
    let id = rt.id("nopreserve");
    rt.prepare(&id, &b);
    let (_r, w) = pipe();
    let mut cmd = rt.command(&[
        "run".as_ref(),
        "--bundle".as_ref(),
        b.path().as_os_str(),
        id.as_ref(),
    ]);
    pass_fd(&mut cmd, &w, 3);
    pass_fd(&mut cmd, &w, 4);
    let out = output(cmd);
    assert_success(&out, "run");
    assert_eq!(
        fd_list(&stdout(&out), "fds"),
        [0, 1, 2, 3],
        "{}",
        stdout(&out)
    );
}

/// systemd socket activation: with LISTEN_FDS=N (and LISTEN_PID naming the
/// runtime) in the caller's environment, runc passes fds 3..3+N and sets
/// LISTEN_FDS=N, LISTEN_PID=1 inside. crun 1.8.1 passes the fds and sets
/// LISTEN_PID but not LISTEN_FDS, so it fails this test.
#[test]
fn listen_fds_socket_activation() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::sh(
        "echo fds=$(ls /proc/self/fd); echo LISTEN_FDS=$LISTEN_FDS; echo LISTEN_PID=$LISTEN_PID; \
         echo activated >&3",
    );
    let id = rt.id("listen");
    rt.prepare(&id, &b);
    let (r, w) = pipe();
    // LISTEN_PID must be the runtime's own pid, known only after fork:
    // a shell sets it to $$ and then execs the runtime in place.
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "LISTEN_PID=$$ LISTEN_FDS=1 exec \"$@\"", "sh"])
        .arg(rt.bin())
        .arg("--root")
        .arg(rt.root())
        .args(["run", "--bundle"])
        .arg(b.path())
        .arg(&id)
        .stdin(std::process::Stdio::null());
    pass_fd(&mut cmd, &w, 3);
    let out = output(cmd);
    drop(w);
    assert_success(&out, "run with LISTEN_FDS=1");
    let text = stdout(&out);
    assert_eq!(fd_list(&text, "fds"), [0, 1, 2, 3, 4], "{text}");
    let kv = key_values(&text);
    assert_eq!(kv["LISTEN_PID"], "1", "{text}");
    assert_eq!(kv["LISTEN_FDS"], "1", "{text}");
    assert_eq!(read_to_end(r), "activated\n");
}

/// Receives the pty master a runtime sends over `--console-socket`.
fn receive_master(listener: &UnixListener) -> OwnedFd {
    listener.set_nonblocking(true).unwrap();
    // The runtime has already connected and sent by the time create
    // returns; the message waits in the socket.
    let (stream, _) = listener
        .accept()
        .expect("runtime did not connect to the console socket");
    stream.set_nonblocking(false).unwrap();
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .expect("recvmsg on console socket");
    let mut fds = Vec::new();
    for c in msg.cmsgs().expect("control messages") {
        if let ControlMessageOwned::ScmRights(rights) = c {
            fds.extend(rights);
        }
    }
    assert_eq!(fds.len(), 1, "expected exactly one fd, got {fds:?}");
    // SAFETY: SCM_RIGHTS just installed this descriptor in our table and
    // nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fds[0]) }
}

/// Reads from the pty master until `needle` shows up, EOF/EIO, or timeout.
fn read_pty_until(master: &OwnedFd, needle: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    let mut text = Vec::new();
    while !String::from_utf8_lossy(&text).contains(needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let mut pfd = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        match poll(&mut pfd, PollTimeout::from(ms)) {
            Ok(0) => break,
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => panic!("poll pty: {e}"),
        }
        let mut buf = [0u8; 1024];
        match nix::unistd::read(master, &mut buf) {
            Ok(0) | Err(Errno::EIO) => break, // the slave side is closed
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            Err(e) => panic!("read pty: {e}"),
        }
    }
    String::from_utf8_lossy(&text).into_owned()
}

#[test]
fn console_socket_terminal() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::sh(
        "read line; echo \"got:$line\"; tty; [ -c /dev/console ] && echo console-ok; \
         [ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo stdio-tty; echo done",
    )
    .with(|c| c["process"]["terminal"] = json!(true));
    let sock = b.path().join("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let id = rt.id("console");
    let out = rt.try_create(&id, &b, &["--console-socket", sock.to_str().unwrap()]);
    assert_success(&out, "create --console-socket");
    let master = receive_master(&listener);
    rt.start(&id);

    File::from(master.try_clone().unwrap())
        .write_all(b"ping\n")
        .unwrap();
    let text = read_pty_until(&master, "done", Duration::from_secs(10));
    let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    assert!(lines.contains(&"got:ping"), "{text:?}");
    assert!(
        lines.contains(&"console-ok"),
        "/dev/console missing: {text:?}"
    );
    assert!(
        lines.contains(&"stdio-tty"),
        "stdio is not the terminal: {text:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("/dev/")),
        "tty printed no device: {text:?}"
    );
    // The pty converts \n to \r\n: proof this really is a terminal.
    assert!(text.contains("got:ping\r\n"), "{text:?}");
    rt.wait_status(&id, "stopped", Duration::from_secs(10));
}

/// terminal:true without --console-socket cannot work detached.
#[test]
fn terminal_without_console_socket_fails_create() {
    require_root!();
    let rt = Runtime::new();
    let b = Bundle::sh("true").with(|c| c["process"]["terminal"] = json!(true));
    let id = rt.id("noconsole");
    let out = rt.try_create(&id, &b, &[]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(!rt.try_state(&id).status.success());
}

/// `run` in the foreground with `terminal: true` and no console socket
/// gives the program a terminal of its own (runc proxies one too) and
/// passes its exit status through. runc only does this when its caller
/// has a terminal (it opens /dev/tty), so this is checked for phantom only.
#[test]
fn run_foreground_proxies_a_terminal() {
    require_root!();
    if !phantom_tests::runtime_binary().ends_with("phantom") {
        eprintln!("skipped: phantom-specific (runc needs a controlling terminal)");
        return;
    }
    let rt = Runtime::new();
    let b = Bundle::sh("tty; test -t 0 && echo stdin-is-tty; exit 4")
        .with(|c| c["process"]["terminal"] = json!(true));
    let out = rt.run_bundle(&b);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/dev/pts/"), "{}", describe(&out));
    assert!(text.contains("stdin-is-tty"), "{}", describe(&out));
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
}

//! The Python fork server (`src/python/forkserver.py`) against its contract.
//!
//! Each test starts the server as a real process, the way the runner does:
//! fd 0 is a SOCK_SEQPACKET socketpair end, fd 1 a pipe, the first message
//! on fd 0 is `L` + a listening SOCK_SEQPACKET socket bound in a temp dir.
//! The tests then act as clients: connect, send `X{json}` with three pipe
//! fds, read the `{"status": N}` reply and the pipes.
//!
//! The last test runs the same server inside a real `python-dev` sandbox
//! (root only) to prove the profile's seccomp filter and Landlock let it work.

use std::io::{BufRead, BufReader, IoSlice, PipeReader, PipeWriter, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::sys::socket::{
    bind, connect, listen, recv, sendmsg, setsockopt, socket, socketpair, sockopt, AddressFamily,
    Backlog, ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr,
};
use nix::sys::time::{TimeVal, TimeValLike};
use nix::unistd::Pid;
use serde_json::{json, Value};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/python/forkserver.py");
/// Debian 12's interpreter, the one the python-dev sandbox has.
const PYTHON: &str = "/usr/bin/python3";
const UNSUPPORTED: &str =
    "the Python fork server runs only python3 [-c CODE | -m MOD | FILE | -]; \
                           use a plain zygote for other programs";

fn script_source() -> String {
    std::fs::read_to_string(SCRIPT).expect("read forkserver.py")
}

fn seqpacket() -> OwnedFd {
    socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("socket(AF_UNIX, SOCK_SEQPACKET)")
}

/// Whether this kernel offers Landlock (ABI version >= 1).
fn kernel_has_landlock() -> bool {
    // SAFETY: landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)
    // only returns the ABI version; it reads no memory and creates no fd.
    let abi = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_landlock_create_ruleset,
            std::ptr::null::<nix::libc::c_void>(),
            0usize,
            1u32,
        )
    };
    abi >= 1
}

/// Waits until `pid` no longer exists (killed and reaped), up to `within`.
fn wait_pid_gone(pid: i32, within: Duration) -> bool {
    let end = Instant::now() + within;
    loop {
        if kill(Pid::from_raw(pid), None) == Err(Errno::ESRCH) {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// A running fork server; dropping it closes fd 0 (the server must then kill
/// its children and exit) and kills it if it does not.
struct Server {
    child: Child,
    runner: Option<OwnedFd>,
    sock: PathBuf,
    /// How long from spawn to `ready`.
    startup: Duration,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(modules: &str) -> Server {
        let mut cmd = Command::new(PYTHON);
        cmd.arg("-c")
            .arg(script_source())
            .env("PHANTOM_PY_MODULES", modules);
        Server::start_cmd(cmd)
    }

    /// Spawns `cmd` as the runner does and waits for `ready`.
    fn start_cmd(mut cmd: Command) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("fork.sock");
        let listener = seqpacket();
        bind(listener.as_raw_fd(), &UnixAddr::new(&sock).expect("addr")).expect("bind");
        listen(&listener, Backlog::new(64).expect("backlog")).expect("listen");
        let (runner, server_end) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .expect("socketpair");
        let started = Instant::now();
        let mut child = cmd
            .stdin(Stdio::from(server_end))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the fork server");
        let stdout = child.stdout.take().expect("stdout");
        let mut server = Server {
            child,
            runner: Some(runner),
            sock,
            startup: Duration::ZERO,
            _dir: dir,
        };
        server.send_listener(&listener);
        drop(listener);
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read ready");
        assert_eq!(line, "ready\n", "the fork server did not get ready");
        server.startup = started.elapsed();
        server
    }

    fn send_listener(&self, listener: &OwnedFd) {
        let runner = self.runner.as_ref().expect("runner socket");
        let fds = [listener.as_raw_fd()];
        sendmsg::<UnixAddr>(
            runner.as_raw_fd(),
            &[IoSlice::new(b"L")],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .expect("send L + listener");
    }

    fn connect(&self) -> OwnedFd {
        let conn = seqpacket();
        connect(conn.as_raw_fd(), &UnixAddr::new(&self.sock).expect("addr")).expect("connect");
        setsockopt(&conn, sockopt::ReceiveTimeout, &TimeVal::seconds(60)).expect("SO_RCVTIMEO");
        conn
    }

    /// Sends one request and returns while the child runs.
    fn spawn(&self, request: &Value) -> Pending {
        let payload = format!("X{request}");
        self.spawn_raw(payload.as_bytes())
    }

    fn spawn_raw(&self, payload: &[u8]) -> Pending {
        let (stdin_r, stdin_w) = std::io::pipe().expect("pipe");
        let (stdout_r, stdout_w) = std::io::pipe().expect("pipe");
        let (stderr_r, stderr_w) = std::io::pipe().expect("pipe");
        let conn = self.connect();
        let fds = [
            stdin_r.as_raw_fd(),
            stdout_w.as_raw_fd(),
            stderr_w.as_raw_fd(),
        ];
        send_request(&conn, payload, &fds);
        // Only the child may hold these ends now, so EOF means it is done.
        drop((stdin_r, stdout_w, stderr_w));
        Pending {
            conn,
            stdin: Some(stdin_w),
            stdout: BufReader::new(stdout_r),
            stderr: stderr_r,
        }
    }

    fn run(&self, request: &Value, stdin: &[u8]) -> Outcome {
        self.spawn(request).finish(stdin)
    }

    /// Closes fd 0 and waits for the server to exit.
    fn close_runner(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        self.runner = None;
        let end = Instant::now() + within;
        while Instant::now() < end {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.close_runner(Duration::from_secs(5)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn send_request(conn: &OwnedFd, payload: &[u8], fds: &[RawFd]) {
    let cmsgs = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsgs };
    sendmsg::<UnixAddr>(
        conn.as_raw_fd(),
        &[IoSlice::new(payload)],
        cmsgs,
        MsgFlags::empty(),
        None,
    )
    .expect("send the request");
}

fn read_reply(conn: &OwnedFd) -> Value {
    let mut buf = vec![0u8; 65536];
    loop {
        let n = recv(conn.as_raw_fd(), &mut buf, MsgFlags::empty()).expect("receive the reply");
        assert!(n > 0, "connection closed without a reply");
        let v: Value = serde_json::from_slice(&buf[..n]).expect("reply is JSON");
        // `{"started": true}` comes first once the child is forked.
        if v != json!({"started": true}) {
            return v;
        }
    }
}

/// A request whose child is running.
struct Pending {
    conn: OwnedFd,
    stdin: Option<PipeWriter>,
    stdout: BufReader<PipeReader>,
    stderr: PipeReader,
}

#[derive(Debug)]
struct Outcome {
    reply: Value,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn status(&self) -> i64 {
        self.reply["status"]
            .as_i64()
            .unwrap_or_else(|| panic!("no status in {}", self.reply))
    }
}

impl Pending {
    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("read a line of stdout");
        line.trim_end().to_owned()
    }

    fn finish(mut self, stdin: &[u8]) -> Outcome {
        let mut writer = self.stdin.take().expect("stdin");
        let data = stdin.to_vec();
        let feeder = thread::spawn(move || {
            let _ = writer.write_all(&data);
        });
        let out = drain(self.stdout);
        let err = drain(self.stderr);
        let reply = read_reply(&self.conn);
        let _ = feeder.join();
        Outcome {
            reply,
            stdout: out.join().expect("stdout"),
            stderr: err.join().expect("stderr"),
        }
    }
}

fn drain(mut r: impl Read + Send + 'static) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

fn py(code: &str) -> Value {
    json!({"args": ["python3", "-c", code], "env": [], "cwd": null})
}

fn py_args(args: &[&str]) -> Value {
    json!({"args": args, "env": [], "cwd": null})
}

#[test]
fn c_code_output_status_argv_and_env() {
    let s = Server::start("");
    let code = r#"
import os, sys
print("hello", sys.argv, os.environ["FOO"])
print(os.getcwd() == os.environ["HOME"] == os.environ["TMPDIR"], os.getcwd().startswith("/tmp/req-"))
print(sorted(globals()))
"#;
    let mut req =
        json!({"args": ["python3", "-c", code, "a", "b"], "env": ["FOO=bar"], "cwd": null});
    let o = s.run(&req, b"");
    assert_eq!(o.status(), 0, "{o:?}");
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines[0], "hello ['-c', 'a', 'b'] bar");
    assert_eq!(lines[1], "True True");
    assert_eq!(
        lines[2],
        "['__annotations__', '__builtins__', '__doc__', '__loader__', '__name__', '__package__', \
         '__spec__', 'os', 'sys']"
    );
    // Every spelling of the interpreter is accepted.
    for argv0 in ["python", "/usr/bin/python3"] {
        req["args"] = json!([argv0, "-c", "print(1)"]);
        let o = s.run(&req, b"");
        assert_eq!(
            (o.status(), o.stdout.as_str()),
            (0, "1\n"),
            "{argv0}: {o:?}"
        );
    }
}

#[test]
fn exit_codes_and_tracebacks() {
    let s = Server::start("");
    let o = s.run(&py("import sys\nsys.exit(3)"), b"");
    assert_eq!(o.status(), 3, "{o:?}");
    let o = s.run(&py("raise SystemExit('bye')"), b"");
    assert_eq!((o.status(), o.stderr.as_str()), (1, "bye\n"));

    let o = s.run(&py("print('before', flush=True)\n1/0"), b"");
    assert_eq!(o.status(), 1, "{o:?}");
    assert_eq!(o.stdout, "before\n");
    // Exactly what python3 -c prints: no frame of the fork server itself.
    assert_eq!(
        o.stderr,
        "Traceback (most recent call last):\n  File \"<string>\", line 2, in <module>\n\
         ZeroDivisionError: division by zero\n",
    );

    let o = s.run(
        &py("import os, signal\nos.kill(os.getpid(), signal.SIGTERM)"),
        b"",
    );
    assert_eq!(o.status(), 128 + 15, "{o:?}");
    let o = s.run(&py("raise KeyboardInterrupt"), b"");
    assert_eq!(o.status(), 130, "{o:?}");
    // atexit handlers run and buffered output is flushed, as at interpreter exit.
    let o = s.run(
        &py("import atexit, sys\natexit.register(print, 'atexit')\nsys.stdout.write('x')"),
        b"",
    );
    assert_eq!((o.status(), o.stdout.as_str()), (0, "xatexit\n"));
}

#[test]
fn program_on_stdin() {
    let s = Server::start("");
    let prog = b"import sys\nprint('from stdin', sys.argv)\nsys.exit(5)\n";
    let o = s.run(&py_args(&["python3"]), prog);
    assert_eq!(
        (o.status(), o.stdout.as_str()),
        (5, "from stdin ['']\n"),
        "{o:?}"
    );
    let o = s.run(&py_args(&["python3", "-", "x"]), prog);
    assert_eq!(
        (o.status(), o.stdout.as_str()),
        (5, "from stdin ['-', 'x']\n"),
        "{o:?}"
    );
}

#[test]
fn module_mode() {
    let s = Server::start("");
    let o = s.run(
        &py_args(&["python3", "-m", "json.tool", "--sort-keys"]),
        br#"{"b": 1, "a": 2}"#,
    );
    assert_eq!(o.status(), 0, "{o:?}");
    assert_eq!(o.stdout, "{\n    \"a\": 2,\n    \"b\": 1\n}\n");
    let o = s.run(&py_args(&["python3", "-m", "no_such_module_xyz"]), b"");
    assert_eq!(o.status(), 1, "{o:?}");
    assert!(
        o.stderr.contains("No module named no_such_module_xyz"),
        "{o:?}"
    );
}

#[test]
fn script_file_relative_to_cwd() {
    let s = Server::start("");
    // Outside /tmp: an explicit cwd in /tmp is never granted by Landlock.
    // (The checkout itself may be under /tmp: use /var/tmp.)
    std::fs::create_dir_all("/var/tmp").expect("/var/tmp");
    let dir = tempfile::tempdir_in("/var/tmp").expect("tempdir");
    let cwd = std::fs::canonicalize(dir.path()).expect("canonicalize");
    std::fs::write(
        cwd.join("script.py"),
        "import os, sys\nprint(sys.argv, __file__, __name__, sys.path[0] == os.getcwd())\n\
         open('out.txt', 'w').write('written')\nsys.exit(len(sys.argv))\n",
    )
    .expect("write script");
    let req = json!({"args": ["python3", "script.py", "one"], "env": [], "cwd": cwd});
    let o = s.run(&req, b"");
    assert_eq!(o.status(), 2, "{o:?}");
    assert_eq!(o.stdout, "['script.py', 'one'] script.py __main__ True\n");
    assert_eq!(
        std::fs::read_to_string(cwd.join("out.txt")).expect("out.txt"),
        "written"
    );

    let req = json!({"args": ["python3", "missing.py"], "env": [], "cwd": cwd});
    let o = s.run(&req, b"");
    assert_eq!(o.status(), 2, "{o:?}");
    assert!(o.stderr.contains("can't open file"), "{o:?}");
}

#[test]
fn nothing_leaks_between_requests() {
    let s = Server::start("json");
    let first = r#"
import builtins, json, os, sys
builtins.LEAK = 1
json.LEAK = 1
LEAK_GLOBAL = 1
sys.modules["leaky"] = json
sys.path.append("/leak")
os.environ["LEAK"] = "1"
print("set")
"#;
    assert_eq!(s.run(&py(first), b"").stdout, "set\n");
    let second = r#"
import builtins, json, os, sys
print(hasattr(builtins, "LEAK"), hasattr(json, "LEAK"), "LEAK_GLOBAL" in globals(),
      "leaky" in sys.modules, "/leak" in sys.path, "LEAK" in os.environ)
"#;
    let o = s.run(&py(second), b"");
    assert_eq!(o.stdout, "False False False False False False\n", "{o:?}");
}

#[test]
fn random_is_reseeded_per_request() {
    let s = Server::start("random");
    let code =
        "import random, os\nprint(random.random(), random.getrandbits(64), os.urandom(8).hex())";
    let a = s.run(&py(code), b"").stdout;
    let b = s.run(&py(code), b"").stdout;
    assert!(!a.is_empty() && !b.is_empty());
    let (a, b): (Vec<&str>, Vec<&str>) = (a.split(' ').collect(), b.split(' ').collect());
    for i in 0..3 {
        assert_ne!(a[i], b[i], "value {i} repeated across requests");
    }
}

#[test]
fn private_directories_are_isolated() {
    let s = Server::start("");
    let first = r#"
import os, time
d = os.getcwd()
open("secret.txt", "w").write("s3cret")
try:
    open("/tmp/phantom-forkserver-leak", "w").write("x")
    print("tmp-writable")
except PermissionError:
    print("tmp-denied")
print(d, flush=True)
time.sleep(30)
"#;
    let mut one = s.spawn(&py(first));
    let tmp = one.line();
    let dir = one.line();
    assert!(dir.starts_with("/tmp/req-"), "{dir}");
    assert!(Path::new(&dir).join("secret.txt").exists());
    let mode = std::fs::metadata(&dir).expect("stat").permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o700
    );

    let second = r#"
import os, sys
d = sys.argv[1]
def probe(what, f):
    try:
        f()
        print(what, "READABLE")
    except PermissionError:
        print(what, "denied")
    except FileNotFoundError:
        print(what, "missing")
probe("file", lambda: open(os.path.join(d, "secret.txt")).read())
probe("dir", lambda: os.listdir(d))
probe("tmp", lambda: os.listdir("/tmp"))
print(os.getcwd() != d)
"#;
    let o = s.run(
        &json!({"args": ["python3", "-c", second, dir], "env": [], "cwd": null}),
        b"",
    );
    assert_eq!(o.status(), 0, "{o:?}");
    if kernel_has_landlock() {
        assert_eq!(tmp, "tmp-denied");
        assert_eq!(o.stdout, "file denied\ndir denied\ntmp denied\nTrue\n");
    } else {
        eprintln!(
            "NOTE: this kernel has no Landlock; the cross-request permission checks are skipped"
        );
        let _ = std::fs::remove_file("/tmp/phantom-forkserver-leak");
    }

    // Hang up on the first request: its child dies and its directory goes.
    drop(one);
    let end = Instant::now() + Duration::from_secs(2);
    while Path::new(&dir).exists() && Instant::now() < end {
        thread::sleep(Duration::from_millis(10));
    }
    assert!(!Path::new(&dir).exists(), "{dir} was not removed");
}

#[test]
fn other_programs_and_flags_are_refused() {
    let s = Server::start("");
    for args in [
        vec!["ls", "-l"],
        vec!["/bin/sh", "-c", "echo hi"],
        vec!["python3", "-u", "-c", "print(1)"],
        vec!["python3", "-c"],
    ] {
        let o = s.run(&py_args(&args), b"");
        assert_eq!(
            o.reply,
            json!({"status": 126, "error": UNSUPPORTED}),
            "{args:?}"
        );
        assert_eq!(o.stdout, "");
    }
}

#[test]
fn timeout_kills_the_process_group() {
    let s = Server::start("");
    let code = r#"
import os, time
pid = os.fork()
if pid == 0:
    time.sleep(60)
    os._exit(0)
print(os.getpid(), pid, flush=True)
time.sleep(60)
"#;
    let started = Instant::now();
    let mut p = s.spawn(
        &json!({"args": ["python3", "-c", code], "env": [], "cwd": null, "timeout_ms": 300}),
    );
    let pids: Vec<i32> = p
        .line()
        .split(' ')
        .map(|x| x.parse().expect("pid"))
        .collect();
    let o = p.finish(b"");
    assert_eq!(o.status(), 124, "{o:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    for pid in pids {
        assert!(
            wait_pid_gone(pid, Duration::from_secs(2)),
            "pid {pid} survived the timeout"
        );
    }
}

#[test]
fn leftovers_are_killed_when_the_request_ends() {
    let s = Server::start("");
    // A background process that closes its stdio so the request can end.
    let code = r#"
import os, time
pid = os.fork()
if pid == 0:
    for fd in (0, 1, 2):
        os.close(fd)
    time.sleep(60)
    os._exit(0)
print(pid)
"#;
    let o = s.run(&py(code), b"");
    assert_eq!(o.status(), 0, "{o:?}");
    let pid: i32 = o.stdout.trim().parse().expect("pid");
    assert!(
        wait_pid_gone(pid, Duration::from_secs(2)),
        "background pid {pid} outlived its request"
    );
}

#[test]
fn client_hang_up_kills_the_child() {
    let s = Server::start("");
    let mut p = s.spawn(&py(
        "import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(60)",
    ));
    let pid: i32 = p.line().parse().expect("pid");
    assert_eq!(kill(Pid::from_raw(pid), None), Ok(()));
    drop(p.conn);
    assert!(
        wait_pid_gone(pid, Duration::from_secs(2)),
        "child {pid} survived the hang-up"
    );
    // And the server carries on.
    assert_eq!(
        s.run(&py("print('still here')"), b"").stdout,
        "still here\n"
    );
}

#[test]
fn concurrent_requests_both_complete() {
    let s = Server::start("");
    let started = Instant::now();
    let a = s.spawn(&py("import time\ntime.sleep(1)\nprint('a')"));
    let b = s.spawn(&py("import time\ntime.sleep(1)\nprint('b')"));
    let (oa, ob) = (a.finish(b""), b.finish(b""));
    assert_eq!((oa.status(), oa.stdout.as_str()), (0, "a\n"));
    assert_eq!((ob.status(), ob.stdout.as_str()), (0, "b\n"));
    assert!(
        started.elapsed() < Duration::from_millis(1900),
        "not concurrent: {:?}",
        started.elapsed()
    );
}

#[test]
fn malformed_requests_get_126_and_the_server_keeps_serving() {
    let s = Server::start("");
    let malformed: [&[u8]; 6] = [
        b"X{not json",
        b"Y{\"args\": [\"python3\"]}",
        b"X[1, 2]",
        b"X{\"args\": \"python3\"}",
        b"X{\"args\": [\"python3\"], \"env\": [\"NOEQUALS\"]}",
        b"X{\"args\": [\"python3\"], \"timeout_ms\": \"soon\"}",
    ];
    for payload in malformed {
        let o = s.spawn_raw(payload).finish(b"");
        assert_eq!(o.status(), 126, "{payload:?}: {o:?}");
        assert!(
            o.reply["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{o:?}"
        );
    }
    // Wrong number of fds: none, and one.
    for nfds in [0usize, 1] {
        let conn = s.connect();
        let (r, _w) = std::io::pipe().expect("pipe");
        let fds = vec![r.as_raw_fd(); nfds];
        send_request(&conn, br#"X{"args": ["python3", "-c", "pass"]}"#, &fds);
        let reply = read_reply(&conn);
        assert_eq!(reply["status"], 126, "{nfds} fds: {reply}");
    }
    // A client that connects and leaves without a request.
    drop(s.connect());
    let o = s.run(&py("print('ok')"), b"");
    assert_eq!((o.status(), o.stdout.as_str()), (0, "ok\n"));
}

#[test]
fn preloaded_modules_are_imported() {
    let s = Server::start("json, decimal,xml.dom.minidom");
    let o = s.run(
        &py("import sys\nprint(all(m in sys.modules for m in ('decimal', 'xml.dom.minidom')))"),
        b"",
    );
    assert_eq!(o.stdout, "True\n", "{o:?}");
    let o = s.run(
        &py("import decimal\nprint(decimal.Decimal('1.5') * 2)"),
        b"",
    );
    assert_eq!(o.stdout, "3.0\n", "{o:?}");
}

#[test]
fn a_bad_module_makes_the_server_exit_1() {
    let (_runner, server_end) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .expect("socketpair");
    let out = Command::new(PYTHON)
        .arg("-c")
        .arg(script_source())
        .env("PHANTOM_PY_MODULES", "json,no_such_module_xyz")
        .stdin(Stdio::from(server_end))
        .stderr(Stdio::inherit())
        .output()
        .expect("run the fork server");
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("error import no_such_module_xyz: "),
        "{stdout}"
    );
}

#[test]
fn runner_eof_kills_children_and_exits() {
    let mut s = Server::start("");
    let mut p = s.spawn(&py(
        "import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(60)",
    ));
    let pid: i32 = p.line().parse().expect("pid");
    let status = s
        .close_runner(Duration::from_secs(3))
        .expect("the server did not exit on EOF");
    assert!(status.success(), "{status:?}");
    assert!(
        wait_pid_gone(pid, Duration::from_secs(2)),
        "child {pid} survived the runner"
    );
}

/// Numbers for the lead: startup with `json,re` and the connect-to-reply
/// latency of `pass` (median of 50).
/// Median connect-to-reply time of 50 sequential `pass` requests.
fn pass_latency(s: &Server) -> (Duration, Duration, Duration) {
    let mut samples = Vec::new();
    for _ in 0..50 {
        let (stdin_r, stdin_w) = std::io::pipe().expect("pipe");
        let (stdout_r, stdout_w) = std::io::pipe().expect("pipe");
        let (stderr_r, stderr_w) = std::io::pipe().expect("pipe");
        let payload = format!("X{}", py("pass"));
        let t = Instant::now();
        let conn = s.connect();
        send_request(
            &conn,
            payload.as_bytes(),
            &[
                stdin_r.as_raw_fd(),
                stdout_w.as_raw_fd(),
                stderr_w.as_raw_fd(),
            ],
        );
        let reply = read_reply(&conn);
        samples.push(t.elapsed());
        assert_eq!(reply, json!({"status": 0}));
        drop((stdin_r, stdin_w, stdout_r, stdout_w, stderr_r, stderr_w));
    }
    samples.sort();
    (
        samples[samples.len() / 2],
        samples[0],
        samples[samples.len() - 1],
    )
}

#[test]
fn startup_and_latency() {
    let s = Server::start("json,re");
    let (median, min, max) = pass_latency(&s);
    eprintln!(
        "forkserver: startup with json,re {:?}; `pass` connect->reply median {median:?} (min {min:?}, max {max:?})",
        s.startup
    );
    assert!(median < Duration::from_millis(250), "median {median:?}");
}

/// The same server inside a real python-dev sandbox: seccomp filter,
/// Landlock, pid namespace (the server is PID 1 there).
#[test]
fn runs_inside_the_python_dev_sandbox() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP runs_inside_the_python_dev_sandbox: needs root");
        return;
    }
    let phantom = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/phantom");
    if !phantom.exists() {
        eprintln!(
            "SKIP runs_inside_the_python_dev_sandbox: {} missing (cargo build -p phantom)",
            phantom.display()
        );
        return;
    }
    let root = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(&phantom);
    cmd.arg("--root")
        .arg(root.path())
        .args([
            "run",
            "--profile",
            "python-dev",
            "--no-daemon",
            "-e",
            "PHANTOM_PY_MODULES=json,re",
            "--",
        ])
        .args(["python3", "-c"])
        .arg(script_source());
    let s = Server::start_cmd(cmd);
    eprintln!("sandboxed forkserver ready in {:?}", s.startup);

    let o = s.run(
        &py("import os, sys\nprint(os.getpid() != 1, 're' in sys.modules, sys.argv)"),
        b"",
    );
    assert_eq!(
        (o.status(), o.stdout.as_str()),
        (0, "True True ['-c']\n"),
        "{o:?}"
    );
    let o = s.run(&py("1/0"), b"");
    assert_eq!(o.status(), 1, "{o:?}");
    assert!(
        o.stderr.ends_with("ZeroDivisionError: division by zero\n"),
        "{o:?}"
    );
    let o = s.run(&py_args(&["python3", "-m", "json.tool"]), b"[1]");
    assert_eq!(
        (o.status(), o.stdout.as_str()),
        (0, "[\n    1\n]\n"),
        "{o:?}"
    );

    // Private directories: request 2 cannot read request 1's.
    let mut one = s.spawn(&py("import os, time\nopen('s', 'w').write('x')\nprint(os.getcwd(), flush=True)\ntime.sleep(30)"));
    let dir = one.line();
    let probe = "import sys\ntry:\n    open(sys.argv[1] + '/s').read()\n    print('READABLE')\nexcept PermissionError:\n    print('denied')";
    let o = s.run(
        &json!({"args": ["python3", "-c", probe, dir], "env": [], "cwd": null}),
        b"",
    );
    assert_eq!(o.stdout, "denied\n", "{o:?}");
    drop(one);

    // Timeout kills the whole group, grandchildren included.
    let code = "import os, subprocess, time\nsubprocess.Popen(['sleep', '60'])\nprint('up', flush=True)\ntime.sleep(60)";
    let mut p = s.spawn(
        &json!({"args": ["python3", "-c", code], "env": [], "cwd": null, "timeout_ms": 500}),
    );
    assert_eq!(p.line(), "up");
    let o = p.finish(b"");
    assert_eq!(o.status(), 124, "{o:?}");

    let a = s
        .run(&py("import random\nprint(random.random())"), b"")
        .stdout;
    let b = s
        .run(&py("import random\nprint(random.random())"), b"")
        .stdout;
    assert_ne!(a, b);

    let (median, min, max) = pass_latency(&s);
    eprintln!(
        "sandboxed forkserver: `pass` connect->reply median {median:?} (min {min:?}, max {max:?})"
    );
}

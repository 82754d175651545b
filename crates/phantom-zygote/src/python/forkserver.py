# Phantom's Python fork server (docs/daemon.md).
#
# Runs as `python3 -c <this source>` inside a warm "python-dev" sandbox. It pays
# the interpreter start and the imports of $PHANTOM_PY_MODULES once, then forks
# one child per request: the child is a copy of this pristine process, so the
# warm state is shared and nothing a request does can reach the next one.
#
# Contract with the runner (crates/phantom-zygote, the Rust side):
#   fd 0   SOCK_SEQPACKET to the runner. First message: b"L" + one fd
#          (SCM_RIGHTS), the listening SOCK_SEQPACKET socket clients connect
#          to. EOF on fd 0 = the runner died: kill every child and exit.
#   fd 1   pipe: exactly b"ready\n" once the imports are done and the listener
#          is here, or b"error import NAME: ...\n" and exit status 1. Then fds
#          1 and 2 become /dev/null.
#   each connection: one message b"X" + UTF-8 JSON (proto.rs's RunRequest;
#          "v", the protocol version, and "resources" are the Rust side's)
#          {"args": [...], "env": ["K=V"], "cwd": null|"/p", "timeout_ms": N}
#          with exactly 3 fds (stdin, stdout, stderr). Reply: one message
#          {"status": N} (or {"status": 126, "error": "..."} without forking),
#          then close. Any readability on the connection before the child has
#          exited is a hang-up: the child's process group is killed.
#
# The server only uses the standard library and never runs user code or
# imports anything a user could have put on disk ('' is removed from sys.path
# before the imports). It is single-threaded: one epoll loop over fd 0, the
# listener, every connection and a SIGCHLD self-pipe.

import atexit
import builtins
import ctypes
import errno
import gc
import importlib.machinery
import io
import json
import os
import runpy
import selectors
import shutil
import signal
import socket
import stat
import sys
import tempfile
import time
import traceback
import types

# Never resolve the preloaded modules (nor anything later) against the
# server's working directory: it may be the user's /workspace.
sys.path[:] = [p for p in sys.path if p not in ("", ".", os.getcwd())]

UNSUPPORTED = ("the Python fork server runs only python3 [-c CODE | -m MOD | FILE | -]; "
               "use a plain zygote for other programs")
PYTHON_NAMES = {"python", "python3", "/usr/bin/python3", sys.executable,
                "python%d.%d" % sys.version_info[:2]}
MAX_REQUEST = 8 << 20       # bytes of one request message (JSON + code)
PENDING_TIMEOUT = 30.0      # seconds a client may take to send its request

# ---------------------------------------------------------------- Landlock --
# Numbers are the same on x86_64 and aarch64 (generic syscall table).
SYS_LANDLOCK_CREATE_RULESET = 444
SYS_LANDLOCK_ADD_RULE = 445
SYS_LANDLOCK_RESTRICT_SELF = 446
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36

FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_TRUNCATE = 1 << 14       # ABI 3
FS_IOCTL_DEV = 1 << 15      # ABI 5
# Filesystem rights each ABI handles: v1 bits 0-12, v2 +REFER, v3 +TRUNCATE,
# v4 adds only network rights, v5 +IOCTL_DEV; later ABIs add no fs right yet.
FS_ALL_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1}
FS_ALL_LATEST = (1 << 16) - 1
# Rights that make sense on a non-directory (others give EINVAL there).
FS_FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV

# Devices a request may open for writing (and reading).
WRITABLE_DEVICES = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random", "/dev/tty")
# Top-level entries never granted: /tmp holds every request's private
# directory; /workspace is the sandbox's shared, persistent directory.
HIDDEN_TOP = ("tmp", "workspace")
# Used when / itself cannot be listed (the sandbox's Landlock domain does not
# grant reading /): every usual top-level name; missing ones are skipped.
USUAL_TOP = ("bin", "boot", "dev", "etc", "home", "lib", "lib32", "lib64", "libx32", "media",
             "mnt", "nix", "opt", "proc", "root", "run", "sbin", "snap", "srv", "sys", "usr",
             "var")


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


# Loaded once in the server so that children do not dlopen anything.
_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_prctl = _libc.prctl
_prctl.restype = ctypes.c_int


def _top_level_entries():
    """Names under / that a request may read, computed once by the server."""
    try:
        names = os.listdir("/")
    except OSError:
        names = [n for n in USUAL_TOP if os.path.lexists("/" + n)]
    return sorted(n for n in names if n not in HIDDEN_TOP)


def _landlock(private_dir, extra_dirs):
    """Confine this child: read/execute everywhere except /tmp and /workspace,
    read-write in its own directory (and extra_dirs), write on a few devices.

    Best effort: without Landlock (old kernel, disabled, or the seccomp filter
    refusing the syscalls) it silently does nothing; the sandbox's own
    Landlock domain still applies. It never writes to the user's streams."""
    abi = _syscall(ctypes.c_long(SYS_LANDLOCK_CREATE_RULESET), None, ctypes.c_size_t(0),
                   ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION))
    if abi < 1:
        return False
    handled = FS_ALL_BY_ABI.get(abi, FS_ALL_LATEST)
    # struct landlock_ruleset_attr: only handled_access_fs (the kernel accepts
    # a shorter struct; network and scope rights stay unhandled).
    attr = ctypes.c_uint64(handled)
    ruleset = _syscall(ctypes.c_long(SYS_LANDLOCK_CREATE_RULESET), ctypes.byref(attr),
                       ctypes.c_size_t(8), ctypes.c_uint32(0))
    if ruleset < 0:
        return False
    try:
        read_exec = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR
        device = FS_READ_FILE | FS_WRITE_FILE | FS_TRUNCATE | FS_IOCTL_DEV
        rules = [("/" + name, read_exec) for name in TOP_LEVEL]
        rules += [(dev, device) for dev in WRITABLE_DEVICES]
        rules += [(d, handled) for d in [private_dir] + extra_dirs]
        for path, access in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                if not stat.S_ISDIR(os.fstat(fd).st_mode):
                    access &= FS_FILE_RIGHTS
                rule = _PathBeneath(access & handled, fd)
                # A rule the kernel refuses (odd file type) only loses access.
                _syscall(ctypes.c_long(SYS_LANDLOCK_ADD_RULE), ctypes.c_int(ruleset),
                         ctypes.c_int(LANDLOCK_RULE_PATH_BENEATH), ctypes.byref(rule),
                         ctypes.c_uint32(0))
            finally:
                os.close(fd)
        # Needed by restrict_self without CAP_SYS_ADMIN; already set in the
        # sandbox, harmless to repeat.
        _prctl(PR_SET_NO_NEW_PRIVS, ctypes.c_ulong(1), ctypes.c_ulong(0),
               ctypes.c_ulong(0), ctypes.c_ulong(0))
        return _syscall(ctypes.c_long(SYS_LANDLOCK_RESTRICT_SELF), ctypes.c_int(ruleset),
                        ctypes.c_uint32(0)) == 0
    finally:
        os.close(ruleset)


# -------------------------------------------------------------- the child --

class _Exit(Exception):
    """Raised inside the child's setup to end it with a status."""

    def __init__(self, status, message=None):
        super().__init__(status)
        self.status = status
        self.message = message


def _parse_argv(args):
    """python3's command line -> (kind, target, sys.argv); None if unsupported.

    kind is "c" (code), "m" (module), "file" or "stdin"."""
    if not args or args[0] not in PYTHON_NAMES:
        return None
    rest = args[1:]
    if rest and rest[0] == "--":          # end of options: a file must follow
        rest = rest[1:]
        if not rest:
            return ("stdin", None, [""])
        return ("file", rest[0], rest)
    if not rest:
        return ("stdin", None, [""])
    first = rest[0]
    if first == "-":
        return ("stdin", None, rest)
    for flag, kind in (("-c", "c"), ("-m", "m")):
        if first == flag:
            if len(rest) < 2:
                return None
            return (kind, rest[1], [flag] + rest[2:])
        if first.startswith(flag):        # -cCODE / -mMODULE
            return (kind, first[2:], [flag] + rest[1:])
    if first.startswith("-"):
        return None
    return ("file", first, rest)


def _make_stdio(env, encoding, errors):
    """Fresh sys.stdin/stdout/stderr over fds 0-2, built the way CPython's
    create_stdio does (the server's own objects point at its old fds and may
    hold buffered state)."""
    unbuffered = bool(env.get("PYTHONUNBUFFERED")) or sys.flags.unbuffered
    enc, errs = encoding, errors
    pyio = env.get("PYTHONIOENCODING")
    if pyio:
        name, _, handler = pyio.partition(":")
        enc = name or enc
        errs = handler or errs

    def make(fd, mode, err):
        if mode == "r":
            buf = io.open(fd, "rb", -1, closefd=False)
        else:
            buf = io.open(fd, "wb", 0 if unbuffered else -1, closefd=False)
        try:
            tty = os.isatty(fd)
        except OSError:
            tty = False
        line = not unbuffered and mode == "w" and (fd == 2 or tty)
        text = io.TextIOWrapper(buf, encoding=enc, errors=err, newline="\n",
                                line_buffering=line, write_through=unbuffered and mode == "w")
        text.mode = mode
        return text

    sys.stdin = sys.__stdin__ = make(0, "r", errs)
    sys.stdout = sys.__stdout__ = make(1, "w", errs)
    sys.stderr = sys.__stderr__ = make(2, "w", "backslashreplace")


def _fresh_main():
    """A brand-new __main__ module, as the interpreter makes at startup."""
    main = types.ModuleType("__main__")
    main.__dict__.update({"__annotations__": {}, "__builtins__": builtins,
                          "__loader__": importlib.machinery.BuiltinImporter,
                          "__spec__": None, "__package__": None})
    sys.modules["__main__"] = main
    return main


def _strip_frames(tb):
    """Drop the fork server's own (and runpy's) frames from a traceback."""
    while tb is not None and (tb.tb_frame.f_code in _OWN_CODES
                              or tb.tb_frame.f_code.co_filename in (runpy.__file__, "<frozen runpy>")):
        tb = tb.tb_next
    return tb


def _exit_status(exc):
    """The status `python3` exits with for SystemExit(exc.code)."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        sys.stderr.write(str(code) + "\n")
    except Exception:
        pass
    return 1


def _run_user(kind, target, argv, args):
    """Run the request's program as python3 would, in a fresh __main__."""
    sys.argv = list(argv)
    sys.orig_argv = list(args)
    main = _fresh_main()
    g = main.__dict__
    if kind == "c":
        sys.path.insert(0, "")
        code = compile(target, "<string>", "exec", dont_inherit=True)
        exec(code, g)
    elif kind == "stdin":
        sys.path.insert(0, "")
        if not argv[0] and os.isatty(0):
            import code as _code
            try:
                import readline  # noqa: F401  (line editing, as python3 has)
            except ImportError:
                pass
            _code.interact(banner="Python %s on %s" % (sys.version, sys.platform),
                           local=g, exitmsg="")
            return
        source = sys.stdin.buffer.read()
        exec(compile(source, "<stdin>", "exec", dont_inherit=True), g)
    elif kind == "m":
        sys.path.insert(0, os.getcwd())
        # Exactly what `python3 -m` does: argv[0] becomes the module's path,
        # "No module named X" exits 1 with python3's message.
        runpy._run_module_as_main(target, alter_argv=True)
    else:
        path = target
        try:
            st = os.stat(path)
        except OSError as e:
            raise _Exit(2, "%s: can't open file %r: [Errno %d] %s"
                        % (sys.executable, os.path.abspath(path), e.errno, e.strerror))
        if stat.S_ISDIR(st.st_mode) or _is_zip(path):
            runpy.run_path(path, run_name="__main__")
            return
        sys.path.insert(0, os.path.dirname(os.path.realpath(path)))
        with io.open_code(path) as f:
            source = f.read()
        g["__file__"] = path
        g["__cached__"] = None
        exec(compile(source, path, "exec", dont_inherit=True), g)


def _is_zip(path):
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def _child(req, fds, private_dir):
    """Body of a forked child. Never returns: always ends in os._exit."""
    status = 1
    try:
        os.setsid()  # own session and process group: the server kills it whole
        # Python-level handlers and the wakeup fd belong to the server.
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        encoding, errors = sys.stdout.encoding, sys.stdout.errors
        # Close the server's fds through their objects first (so no stale
        # object closes a number user code reuses later; this includes fd 0,
        # the runner socket), then install the request's stdio, then close
        # everything else.
        _SERVER.close_in_child()
        for i, fd in enumerate(fds):
            os.dup2(fd, i)
        os.closerange(3, max(os.sysconf("SC_OPEN_MAX"), 65536))  # close_range(2)

        env = os.environ
        server_pythonpath = env.get("PYTHONPATH")
        for item in req["env"]:
            key, _, value = item.partition("=")
            env[key] = value
        # The private directory is the only writable place: always HOME/TMPDIR.
        env["HOME"] = env["TMPDIR"] = private_dir
        tempfile.tempdir = None
        extra = []
        cwd = req.get("cwd")
        if cwd:
            try:
                os.chdir(cwd)
            except OSError as e:
                raise _Exit(126, "%s: can't change directory to %r: %s"
                            % (sys.executable, cwd, e.strerror))
            real = os.path.realpath(cwd)
            # An explicit cwd is granted read-write, unless it would expose
            # other requests' directories (/, /tmp or anything in /tmp).
            if real != "/" and real != "/tmp" and not real.startswith("/tmp/"):
                extra.append(real)
        else:
            os.chdir(private_dir)
        _landlock(private_dir, extra)

        # random reseeds itself after fork (os.register_at_fork); do it again
        # explicitly, and for numpy's legacy global generator if preloaded.
        if "random" in sys.modules:
            sys.modules["random"].seed()
        np_random = sys.modules.get("numpy.random")
        if np_random is not None:
            try:
                np_random.seed()
            except Exception:
                pass

        _make_stdio(env, encoding, errors)
        pythonpath = env.get("PYTHONPATH")
        if pythonpath and pythonpath != server_pythonpath:
            sys.path[0:0] = [p for p in pythonpath.split(os.pathsep) if p]

        kind, target, argv = _parse_argv(req["args"])
        try:
            _run_user(kind, target, argv, req["args"])
            status = 0
        except SystemExit as e:
            status = _exit_status(e)
        except _Exit:
            raise
        except BaseException as e:
            # The default hook prints e.__traceback__, not its tb argument.
            tb = _strip_frames(e.__traceback__)
            e.__traceback__ = tb
            try:
                sys.excepthook(type(e), e, tb)
            except BaseException:
                traceback.print_exception(type(e), e, tb)
            status = 1
            if isinstance(e, KeyboardInterrupt):
                status = -signal.SIGINT
        status = _finalize(status)
    except _Exit as e:
        status = e.status
        if e.message:
            try:
                os.write(2, (e.message + "\n").encode("utf-8", "backslashreplace"))
            except OSError:
                pass
    except BaseException:
        # A bug in the fork server itself: say so on the request's stderr.
        try:
            os.write(2, traceback.format_exc().encode("utf-8", "backslashreplace"))
        except OSError:
            pass
        status = 1
    finally:
        if status < 0:
            # Uncaught KeyboardInterrupt: die by SIGINT like python3 (130).
            signal.signal(-status, signal.SIG_DFL)
            os.kill(os.getpid(), -status)
        os._exit(status if status >= 0 else 1)


def _finalize(status):
    """Interpreter shutdown as Py_FinalizeEx does it: join non-daemon
    threads, run atexit handlers, flush the streams (120 if stdout fails)."""
    threading = sys.modules.get("threading")
    if threading is not None:
        try:
            threading._shutdown()
        except BaseException:
            pass
    atexit._run_exitfuncs()
    # Like flush_std_files(): a stream the program closed is skipped.
    for stream, failed in ((sys.stdout, 120), (sys.stderr, None)):
        try:
            if stream is not None and not stream.closed:
                stream.flush()
        except Exception:
            if failed is not None and status == 0:
                status = failed
    return status


# ------------------------------------------------------------- the server --

class _Request:
    __slots__ = ("conn", "pid", "dir", "deadline", "timed_out", "hung_up")

    def __init__(self, conn, pid, private_dir, deadline):
        self.conn, self.pid, self.dir, self.deadline = conn, pid, private_dir, deadline
        self.timed_out = self.hung_up = False


def _kill_group(pid):
    """SIGKILL the request's process group; the pid itself too, in case the
    child has not reached setsid yet."""
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _remove_tree(path):
    def retry(func, p, _exc):
        # A directory the user made read-only: open it up and try again.
        try:
            os.chmod(os.path.dirname(p), 0o700)
            func(p)
        except OSError:
            pass
    shutil.rmtree(path, onerror=retry)


class _Server:
    def __init__(self, runner, listener):
        self.runner = runner
        self.listener = listener
        self.sel = selectors.DefaultSelector()
        self.pending = {}      # conn fd -> (socket, deadline): request not received yet
        self.running = {}      # child pid -> _Request
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        listener.setblocking(False)
        runner.setblocking(False)
        self.sel.register(runner, selectors.EVENT_READ, "runner")
        self.sel.register(listener, selectors.EVENT_READ, "listener")
        self.sel.register(self.wake_r, selectors.EVENT_READ, "sigchld")

    def close_in_child(self):
        """In a forked child: drop every fd the server owns."""
        self.sel.close()
        for s in [self.runner, self.listener] + [p[0] for p in self.pending.values()] \
                + [r.conn for r in self.running.values()]:
            s.close()
        os.close(self.wake_r)
        os.close(self.wake_w)

    # -- main loop --
    def serve(self):
        # SIGCHLD only wakes the loop (wakeup fd); reaping happens in _reap.
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        while True:
            for key, _ in self.sel.select(self._next_timeout()):
                what = key.data
                if what == "runner":
                    if not self._runner_readable():
                        return
                elif what == "listener":
                    self._accept()
                elif what == "sigchld":
                    self._drain_wakeup()
                elif isinstance(what, _Request):
                    self._hang_up(what)
                else:
                    self._read_request(key.fileobj)
            self._reap()
            self._expire()

    def _next_timeout(self):
        deadlines = [r.deadline for r in self.running.values()
                     if r.deadline is not None and not r.timed_out]
        deadlines += [d for _, d in self.pending.values()]
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    def _runner_readable(self):
        try:
            data = self.runner.recv(4096)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        return bool(data)   # b"" = EOF: the runner is gone

    def _drain_wakeup(self):
        try:
            while os.read(self.wake_r, 4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    return  # retried on the next event; never die
                return
            conn.setblocking(False)
            self.pending[conn.fileno()] = (conn, time.monotonic() + PENDING_TIMEOUT)
            self.sel.register(conn, selectors.EVENT_READ, None)

    def _read_request(self, conn):
        self.pending.pop(conn.fileno(), None)
        self.sel.unregister(conn)
        fds = []
        try:
            try:
                msg, fds, flags, _ = socket.recv_fds(conn, MAX_REQUEST, 8, socket.MSG_CMSG_CLOEXEC)
            except (BlockingIOError, InterruptedError):
                self.pending[conn.fileno()] = (conn, time.monotonic() + PENDING_TIMEOUT)
                self.sel.register(conn, selectors.EVENT_READ, None)
                return
            except OSError as e:
                raise ValueError("cannot receive the request: %s" % e.strerror)
            if not msg:
                conn.close()
                return
            req = self._validate(msg, fds, flags)
            if _parse_argv(req["args"]) is None:
                raise ValueError(UNSUPPORTED)
        except ValueError as e:
            for fd in fds:
                os.close(fd)
            self._reply(conn, {"status": 126, "error": str(e)})
            conn.close()
            return
        self._start(conn, req, fds)

    @staticmethod
    def _validate(msg, fds, flags):
        if flags & socket.MSG_TRUNC:
            raise ValueError("request larger than %d bytes" % MAX_REQUEST)
        if flags & socket.MSG_CTRUNC or len(fds) != 3:
            raise ValueError("a request carries exactly 3 fds (stdin, stdout, stderr), got %d"
                             % len(fds))
        if msg[:1] != b"X":
            raise ValueError("a request starts with 'X'")
        try:
            req = json.loads(msg[1:].decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise ValueError("malformed request JSON: %s" % e)
        if not isinstance(req, dict):
            raise ValueError("the request is not a JSON object")
        args = req.get("args")
        if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
            raise ValueError("args must be a non-empty list of strings")
        env = req.get("env", [])
        if env is None:
            env = []
        if not isinstance(env, list) or not all(isinstance(e, str) and "=" in e and e[0] != "="
                                                 for e in env):
            raise ValueError("env must be a list of K=V strings")
        req["env"] = env
        cwd = req.get("cwd")
        if cwd is not None and (not isinstance(cwd, str) or not cwd or "\0" in cwd):
            raise ValueError("cwd must be null or a path")
        if any("\0" in a for a in args + env):
            raise ValueError("args and env may not contain NUL")
        timeout = req.get("timeout_ms")
        if timeout is not None and (isinstance(timeout, bool)
                                    or not isinstance(timeout, (int, float)) or timeout < 0):
            raise ValueError("timeout_ms must be a non-negative number")
        return req

    def _start(self, conn, req, fds):
        try:
            private_dir = tempfile.mkdtemp(prefix="req-", dir="/tmp")  # mode 0700
        except OSError as e:
            for fd in fds:
                os.close(fd)
            self._reply(conn, {"status": 126, "error": "cannot create the request directory: %s"
                               % e.strerror})
            conn.close()
            return
        try:
            pid = os.fork()
        except OSError as e:
            for fd in fds:
                os.close(fd)
            _remove_tree(private_dir)
            self._reply(conn, {"status": 126, "error": "fork failed: %s" % e.strerror})
            conn.close()
            return
        if pid == 0:
            _child(req, fds, private_dir)   # never returns
            os._exit(1)
        for fd in fds:          # the child has them; their EOF is the client's
            os.close(fd)
        # As plain zygotes do: the program is under way (the daemon's spawn
        # latency metric ends here).
        self._reply(conn, {"started": True})
        timeout = req.get("timeout_ms")
        deadline = None if timeout is None else time.monotonic() + timeout / 1000.0
        r = _Request(conn, pid, private_dir, deadline)
        self.running[pid] = r
        # The client sends nothing after the request: readability = hang-up.
        self.sel.register(conn, selectors.EVENT_READ, r)

    def _hang_up(self, r):
        r.hung_up = True
        self.sel.unregister(r.conn)
        _kill_group(r.pid)

    def _expire(self):
        now = time.monotonic()
        for r in self.running.values():
            if r.deadline is not None and not r.timed_out and now >= r.deadline:
                r.timed_out = True
                _kill_group(r.pid)
        for fd, (conn, deadline) in list(self.pending.items()):
            if now >= deadline:
                del self.pending[fd]
                self.sel.unregister(conn)
                conn.close()

    def _reap(self):
        """Reap every exited child, ours or orphans (we are PID 1 of the
        sandbox, or at least a child subreaper)."""
        while True:
            try:
                # WNOWAIT: the exited child stays a zombie, so its pid (and
                # process group id) cannot be reused while we kill the group.
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            except InterruptedError:
                continue
            if info is None:
                return
            pid = info.si_pid
            r = self.running.pop(pid, None)
            if r is not None:
                _kill_group(pid)    # whatever the request left behind
            try:
                _, wstatus = os.waitpid(pid, 0)
            except ChildProcessError:
                continue
            if r is not None:
                self._finish(r, wstatus)

    def _finish(self, r, wstatus):
        if r.timed_out:
            status = 124
        else:
            code = os.waitstatus_to_exitcode(wstatus)
            status = code if code >= 0 else 128 - code
        if not r.hung_up:
            self.sel.unregister(r.conn)
            self._reply(r.conn, {"status": status})
        r.conn.close()
        _remove_tree(r.dir)

    @staticmethod
    def _reply(conn, obj):
        try:
            conn.send(json.dumps(obj).encode())
        except OSError:
            pass    # the client is gone; nothing to tell

    def shutdown(self):
        """The runner is gone (or we were told to stop): kill and reap all."""
        for r in self.running.values():
            _kill_group(r.pid)
        for r in list(self.running.values()):
            try:
                os.waitpid(r.pid, 0)
            except ChildProcessError:
                pass
            _kill_group(r.pid)
            r.conn.close()
            _remove_tree(r.dir)
        self.running.clear()


def _import_modules():
    names = [n.strip() for n in os.environ.get("PHANTOM_PY_MODULES", "").split(",") if n.strip()]
    for name in names:
        try:
            __import__(name)
        except BaseException as e:
            os.write(1, ("error import %s: %s: %s\n" % (name, type(e).__name__, e))
                     .encode("utf-8", "backslashreplace"))
            os._exit(1)


def _receive_listener(runner):
    """Wait for b"L" + the listening socket; None if the runner went away."""
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(runner, 16, 4, socket.MSG_CMSG_CLOEXEC)
        except InterruptedError:
            continue
        if not msg:
            for fd in fds:
                os.close(fd)
            return None
        if msg == b"L" and len(fds) == 1:
            return socket.socket(fileno=fds[0])
        for fd in fds:      # anything else before the listener: ignore
            os.close(fd)


def main():
    _import_modules()
    runner = socket.socket(fileno=0)
    listener = _receive_listener(runner)
    if listener is None:
        os._exit(0)
    # Outside a pid namespace (tests, direct mode) orphans of requests come
    # back to us instead of the host's init, so they are reaped here too.
    _prctl(PR_SET_CHILD_SUBREAPER, ctypes.c_ulong(1), ctypes.c_ulong(0),
           ctypes.c_ulong(0), ctypes.c_ulong(0))
    global _SERVER
    _SERVER = _Server(runner, listener)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(0))
    os.write(1, b"ready\n")
    devnull = os.open("/dev/null", os.O_RDWR)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)
    # Everything allocated so far is shared by all children: keep the cyclic
    # GC from touching (and so copying) those pages after each fork.
    gc.freeze()
    try:
        _SERVER.serve()
    finally:
        _SERVER.shutdown()
    os._exit(0)


TOP_LEVEL = _top_level_entries()
_SERVER = None
_OWN_CODES = {f.__code__ for f in (_run_user, _child)}

if __name__ == "__main__":
    main()

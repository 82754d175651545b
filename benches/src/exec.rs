//! Running one command and measuring it: wall time on the monotonic clock
//! around spawn + wait, and the peak RSS the kernel reports for it through
//! `wait4` (`ru_maxrss`: the process itself, across its exec()s, and the
//! children it reaped; not processes it left running, such as a container's
//! init after `create`).

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Longest a single runtime command may take before it is killed.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Ctrl-C, SIGTERM and SIGHUP set a flag that the loops check, so the bench
/// stops between commands and still cleans up. (Children get the default
/// dispositions back at exec.)
pub fn catch_interrupts() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe; `signal` has no other preconditions.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Containers' inits outlive `create`; as a subreaper (like containerd's
/// shim and conmon) the bench inherits and reaps them, so a killed container
/// reaches "stopped" without help from this machine's PID 1.
pub fn become_subreaper() -> std::io::Result<()> {
    // SAFETY: prctl with integer arguments; no memory is passed.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Reap every exited child without blocking. Call only when no command is
/// being waited for (it would steal that command's exit status).
pub fn reap_zombies() {
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid pointer to a local int.
        let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if r <= 0 {
            break;
        }
    }
}

/// Wait for `pid` (a child of ours, or an orphan we inherited) to exit, up to
/// `timeout`; reaps it when it is ours. Not timed: it polls.
pub fn wait_gone(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid pointer to a local int.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return true;
        }
        // SAFETY: kill with signal 0 only checks that the pid exists.
        if r == -1 && unsafe { libc::kill(pid, 0) } != 0 {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// What the watchdog did to one running command.
#[derive(Debug, Clone, Copy)]
struct Watch {
    start: Instant,
    /// Sent SIGCHLD: it sat waiting on an exited child.
    nudged: bool,
    /// Sent SIGKILL: it overran [`COMMAND_TIMEOUT`].
    killed: bool,
}

/// Watches every running command from one thread:
/// - a command that has waited [`LOST_SIGCHLD_AFTER`] while all its
///   children are zombies missed their SIGCHLD (youki 0.7.0's `run` blocks
///   signals only after starting the container, so a container that exits
///   first leaves it in sigwait forever; fixed upstream after 0.7.0). It
///   gets a SIGCHLD, finishes, and its sample is dropped and counted.
/// - a command that overruns [`COMMAND_TIMEOUT`] is killed: its row fails
///   instead of hanging `make bench`.
struct Watchdog {
    running: Mutex<HashMap<i32, Watch>>,
}

/// How long a command may wait on an already exited child.
pub const LOST_SIGCHLD_AFTER: Duration = Duration::from_secs(2);

fn watchdog() -> &'static Watchdog {
    static W: OnceLock<Watchdog> = OnceLock::new();
    W.get_or_init(|| {
        std::thread::spawn(|| loop {
            std::thread::sleep(Duration::from_millis(250));
            let w = watchdog();
            let mut running = w.running.lock().unwrap_or_else(|e| e.into_inner());
            for (&pid, watch) in running.iter_mut() {
                let age = watch.start.elapsed();
                // A registered pid is not reaped yet (its waiter deregisters
                // it before reaping), so it cannot have been reused.
                if age > COMMAND_TIMEOUT && !watch.killed {
                    // SAFETY: kill with integer arguments, on a live pid.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    watch.killed = true;
                } else if age > LOST_SIGCHLD_AFTER && !watch.nudged && waits_on_exited_child(pid) {
                    // SAFETY: as above; SIGCHLD is harmless to any process.
                    unsafe { libc::kill(pid, libc::SIGCHLD) };
                    watch.nudged = true;
                }
            }
        });
        Watchdog {
            running: Mutex::new(HashMap::new()),
        }
    })
}

/// `pid` has children and every one of them is a zombie.
fn waits_on_exited_child(pid: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    let mut children = Vec::new();
    for t in tasks.flatten() {
        if let Ok(c) = std::fs::read_to_string(t.path().join("children")) {
            children.extend(c.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
        }
    }
    !children.is_empty()
        && children.iter().all(|c| {
            std::fs::read_to_string(format!("/proc/{c}/stat"))
                .ok()
                .and_then(|st| {
                    st.rsplit_once(')')
                        .and_then(|(_, rest)| rest.split_whitespace().next().map(|x| x == "Z"))
                })
                .unwrap_or(false)
        })
}

#[derive(Debug, Clone, Copy)]
pub struct Measured {
    pub wall: Duration,
    pub maxrss_kib: u64,
    /// It hung on a lost SIGCHLD until the watchdog nudged it: the time is
    /// the watchdog's, not the runtime's. Callers drop the sample.
    pub nudged: bool,
}

impl Measured {
    pub fn ms(&self) -> f64 {
        self.wall.as_secs_f64() * 1e3
    }
}

/// Run `argv` with stdin and stdout on /dev/null and stderr into
/// `stderr_file`; time spawn to reap. A non-zero exit is an error carrying
/// the end of stderr.
/// The socket of the bench's own `phantom daemon`, for the warm rows.
pub static DAEMON_SOCKET: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

pub fn timed(argv: &[String], stderr_file: &Path) -> Result<Measured, String> {
    let err_out = File::create(stderr_file)
        .map_err(|e| format!("cannot create {}: {e}", stderr_file.display()))?;
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err_out);
    if let Some(sock) = DAEMON_SOCKET.get() {
        cmd.env("PHANTOM_DAEMON_SOCKET", sock);
    }
    let w = watchdog();

    let start = Instant::now();
    let child = cmd
        .spawn()
        .map_err(|e| format!("`{}`: cannot run: {e}", argv.join(" ")))?;
    let pid = child.id() as i32;
    // Registering takes a lock; it is uncontended except every 250 ms for
    // the watchdog's few microseconds.
    w.running.lock().unwrap_or_else(|e| e.into_inner()).insert(
        pid,
        Watch {
            start,
            nudged: false,
            killed: false,
        },
    );
    // Wait for the exit without reaping (WNOWAIT), stop the clock, forget
    // the pid in the watchdog, and only then reap: the watchdog can never
    // signal a reused pid.
    let waited = loop {
        // SAFETY: all-zero is a valid `siginfo_t` (plain data).
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid on our own child with a valid pointer to a local.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break r;
    };
    let wall = start.elapsed();
    let watch = w
        .running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&pid);
    let mut status = 0;
    // SAFETY: all-zero is a valid `rusage` (plain integers and timevals).
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = loop {
        // SAFETY: wait4 on our own child with valid pointers to locals.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break r;
    };
    // The child is reaped: `Child` must not wait for it again (dropping a
    // `Child` never waits).
    drop(child);
    let (nudged, killed) = watch.map_or((false, false), |w| (w.nudged, w.killed));

    if waited != 0 || r != pid {
        return Err(format!(
            "`{}`: wait: {}",
            argv.join(" "),
            std::io::Error::last_os_error()
        ));
    }
    let outcome = if killed {
        Some(format!("timed out after {}s", COMMAND_TIMEOUT.as_secs()))
    } else if libc::WIFEXITED(status) {
        match libc::WEXITSTATUS(status) {
            0 => None,
            code => Some(format!("exit status {code}")),
        }
    } else if libc::WIFSIGNALED(status) {
        Some(format!("killed by signal {}", libc::WTERMSIG(status)))
    } else {
        Some(format!("wait status {status:#x}"))
    };
    match outcome {
        None => Ok(Measured {
            wall,
            maxrss_kib: u64::try_from(ru.ru_maxrss).unwrap_or(0),
            nudged,
        }),
        Some(why) => Err(format!(
            "`{}`: {why}{}{}",
            argv.join(" "),
            if nudged {
                " (after hanging on an exited child and being sent SIGCHLD)"
            } else {
                ""
            },
            stderr_tail(stderr_file)
        )),
    }
}

/// Run a command outside any measurement; Ok if it exits 0.
pub fn quiet(argv: &[String]) -> Result<(), String> {
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("`{}`: cannot run: {e}", argv.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}`: {}: {}",
            argv.join(" "),
            out.status,
            last_lines(&String::from_utf8_lossy(&out.stderr))
        ))
    }
}

/// First line of a command's stdout (for `--version`).
pub fn first_line(argv: &[&str]) -> Option<String> {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(|l| l.trim().to_string())
}

fn stderr_tail(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => format!(": {}", last_lines(&s)),
        _ => String::new(),
    }
}

/// The last two non-empty lines, at most 300 characters.
pub fn last_lines(s: &str) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(2)..].join(" | ");
    if tail.chars().count() > 300 {
        tail.chars().take(300).chain("…".chars()).collect()
    } else {
        tail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn times_a_command_and_reports_failure() {
        let dir = std::env::temp_dir().join(format!("phantom-bench-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = dir.join("stderr");
        let m = timed(&argv(&["/bin/true"]), &err).unwrap();
        assert!(m.wall > Duration::ZERO);
        assert!(m.maxrss_kib > 0);
        let e = timed(&argv(&["/bin/sh", "-c", "echo boom >&2; exit 3"]), &err).unwrap_err();
        assert!(e.contains("exit status 3") && e.contains("boom"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A parent that misses its child's SIGCHLD (blocks it only after the
    /// child exited, then sigwaits) is nudged, finishes, and is flagged.
    #[test]
    fn lost_sigchld_is_nudged_and_flagged() {
        let dir = std::env::temp_dir().join(format!("phantom-bench-nudge-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = "import os, signal, time\n\
            pid = os.fork()\n\
            if pid == 0: os._exit(0)\n\
            time.sleep(0.2)\n\
            signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGCHLD])\n\
            signal.sigwait([signal.SIGCHLD])\n\
            os.waitpid(pid, 0)\n";
        let Some(py) = crate::runtimes::which("python3") else {
            return;
        };
        let argv = vec![
            py.to_string_lossy().into_owned(),
            "-c".into(),
            script.into(),
        ];
        let m = timed(&argv, &dir.join("stderr")).unwrap();
        assert!(m.nudged);
        assert!(m.wall >= LOST_SIGCHLD_AFTER);
        let m = timed(
            &argv[..1]
                .iter()
                .cloned()
                .chain(["-c".into(), "pass".into()])
                .collect::<Vec<_>>(),
            &dir.join("stderr"),
        )
        .unwrap();
        assert!(!m.nudged);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn last_lines_keeps_the_end() {
        assert_eq!(last_lines("a\n\nb\nc\n"), "b | c");
        assert_eq!(last_lines(""), "");
    }
}

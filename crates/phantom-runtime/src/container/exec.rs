//! `exec`: run another process in a running container. It joins every
//! namespace of the container's init (a pid namespace applies to children,
//! so phantom enters it and forks), then goes through the same process
//! setup as init: terminal, limits, identity and capabilities, cwd, the fd
//! table, and the same /proc/PID/exe defence (non-dumpable until exec).

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::{Capability, LinuxCapabilities, Process, UserBuilder};

use crate::channel::{self, Channel, Msg};
use crate::error::{words, Error, Result, SysContext};
use crate::process::setup::ProcessPlan;
use crate::state::{StateStore, Status};
use crate::sys::{LinuxSys, Sys};

/// The command-line form of `exec` (when no `--process` file is given).
#[derive(Debug, Clone, Default)]
pub struct ExecArgs {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    pub user: Option<(u32, Option<u32>)>,
    pub additional_gids: Vec<u32>,
    pub tty: bool,
    pub caps: Vec<String>,
    pub no_new_privs: bool,
}

/// The process to exec: the container's own `process` with the command
/// line's changes, as runc does.
pub fn exec_process(base: Option<&Process>, a: &ExecArgs) -> Result<Process> {
    if a.args.is_empty() {
        return Err(Error::config(
            "exec",
            "no command given (pass one after the id, or --process FILE)",
        ));
    }
    let mut p = base.cloned().unwrap_or_default();
    p.set_args(Some(a.args.clone()));
    let mut env = p.env().clone().unwrap_or_default();
    for (k, v) in &a.env {
        env.retain(|e| e.split_once('=').map(|(ek, _)| ek) != Some(k.as_str()));
        env.push(format!("{k}={v}"));
    }
    p.set_env(Some(env));
    if let Some(cwd) = &a.cwd {
        p.set_cwd(cwd.clone());
    }
    if let Some((uid, gid)) = a.user {
        let mut u = UserBuilder::default()
            .uid(uid)
            .gid(gid.unwrap_or(0))
            .build()
            .map_err(|e| Error::config("exec --user", e.to_string()))?;
        if !a.additional_gids.is_empty() {
            u.set_additional_gids(Some(a.additional_gids.clone()));
        }
        p.set_user(u);
    } else if !a.additional_gids.is_empty() {
        let mut u = p.user().clone();
        u.set_additional_gids(Some(a.additional_gids.clone()));
        p.set_user(u);
    }
    p.set_terminal(Some(a.tty));
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if !a.caps.is_empty() {
        let mut c: LinuxCapabilities = p.capabilities().clone().unwrap_or_default();
        for name in &a.caps {
            let cap: Capability = name
                .trim_start_matches("CAP_")
                .parse()
                .map_err(|_| Error::config("exec --cap", format!("unknown capability {name}")))?;
            // runc adds --cap to these four sets (not inheritable).
            let add = |set: &Option<oci_spec::runtime::Capabilities>| {
                let mut s = set.clone().unwrap_or_default();
                s.insert(cap);
                Some(s)
            };
            c.set_bounding(add(c.bounding()));
            c.set_effective(add(c.effective()));
            c.set_permitted(add(c.permitted()));
            c.set_ambient(add(c.ambient()));
        }
        p.set_capabilities(Some(c));
    }
    Ok(p)
}

#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub id: String,
    pub process: Process,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub detach: bool,
    pub preserve_fds: i32,
    pub ignore_paused: bool,
}

/// Namespace kinds in the order they are joined: the user namespace first
/// (it grants the rights to join the others), the mount namespace last.
const ORDER: [(&str, CloneFlags); 7] = [
    ("user", CloneFlags::CLONE_NEWUSER),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// Open the namespaces of `pid` that differ from ours.
fn target_namespaces(pid: i32) -> Result<Vec<(CloneFlags, OwnedFd)>> {
    let mut out = Vec::new();
    for (name, flag) in ORDER {
        let theirs = format!("/proc/{pid}/ns/{name}");
        let same = match (
            std::fs::read_link(&theirs),
            std::fs::read_link(format!("/proc/self/ns/{name}")),
        ) {
            (Ok(a), Ok(b)) => a == b,
            (Err(e), _) => return Err(Error::io("cannot read", theirs, e)),
            _ => false,
        };
        if !same {
            out.push((flag, crate::namespaces::open_ns(Path::new(&theirs))?));
        }
    }
    Ok(out)
}

/// Returns the exit status to exit with (0 for `--detach`).
pub fn exec(store: &StateStore, opts: &ExecOptions) -> Result<i32> {
    let mut set = SigSet::empty();
    if !opts.detach {
        for s in super::run::FORWARDED {
            set.add(s);
        }
        set.add(Signal::SIGCHLD);
        set.thread_block().ctx(|| "block signals".into())?;
    }
    let (child, parent_end, _console) = launch(store, opts, false)?;
    match parent_end.recv()? {
        // The sync socket is close-on-exec: EOF means the program runs.
        None => {}
        Some(m @ (Msg::Error(_) | Msg::ExecFailed { .. })) => {
            let _ = waitpid(Pid::from_raw(child), None);
            return Err(m.into_error().expect("an error message"));
        }
        Some(other) => return Err(Error::Init(format!("exec: unexpected {other:?}"))),
    }
    if let Some(pf) = &opts.pid_file {
        super::create::write_pid_file(pf, child)?;
    }
    if opts.detach {
        return Ok(0);
    }
    let waiting = super::run::Waiting {
        deadline: None,
        interrupt_kills: false,
        kill_all: Box::new(|| {}),
    };
    super::run::wait_forwarding(&set, child, &waiting)
}

/// A process joined to a running container (namespaces, cgroup, user and
/// capabilities of `opts.process`) that waits for one request: a warm
/// `exec`. Its parent (the caller) must reap it.
pub struct ExecZygote {
    pub pid: i32,
    chan: Channel,
}

/// Start an exec zygote in container `opts.id`. Returns once it waits.
pub fn spawn_zygote(store: &StateStore, opts: &ExecOptions) -> Result<ExecZygote> {
    if opts.detach || opts.console_socket.is_some() || opts.preserve_fds > 0 {
        return Err(Error::config(
            "exec",
            "a warm exec takes no --detach, --console-socket or --preserve-fds",
        ));
    }
    let (pid, chan, _) = launch(store, opts, true)?;
    match chan.recv()? {
        Some(Msg::Ready) => Ok(ExecZygote { pid, chan }),
        other => {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(pid), None);
            Err(other
                .and_then(Msg::into_error)
                .unwrap_or_else(|| Error::Init("the exec zygote ended before it was ready".into())))
        }
    }
}

impl ExecZygote {
    /// Run `req` with `stdio`; returns once the program executes, or the
    /// error that stopped it.
    pub fn exec(&self, req: &crate::process::init::ExecRequest, stdio: [i32; 3]) -> Result<()> {
        let json = serde_json::to_string(req).expect("request serialises");
        self.chan.send_with_fds(&Msg::Exec(json), &stdio)?;
        match self.chan.recv()? {
            None => Ok(()),
            Some(m @ (Msg::Error(_) | Msg::ExecFailed { .. })) => {
                Err(m.into_error().expect("an error message"))
            }
            Some(other) => Err(Error::Init(format!(
                "exec zygote sent {other:?} out of turn"
            ))),
        }
    }
}

/// Fork a process into the container's namespaces and cgroup and tell it
/// to go on; returns its pid, our end of the sync channel and the console
/// connection (kept open until the process has it).
fn launch(
    store: &StateStore,
    opts: &ExecOptions,
    zygote: bool,
) -> Result<(i32, Channel, Option<OwnedFd>)> {
    let mut st = store.load(&opts.id)?;
    store.refresh(&mut st);
    match st.status {
        Status::Running | Status::Created => {}
        Status::Paused if opts.ignore_paused => {}
        other => {
            let (words, action) = match other {
                Status::Paused => (
                    words::EXEC_PAUSED,
                    "exec needs a created or running container (use --ignore-paused to override)",
                ),
                Status::Stopped => (
                    words::EXEC_STOPPED,
                    "exec needs a created or running container",
                ),
                _ => (
                    words::NOT_RUNNING,
                    "exec needs a created or running container",
                ),
            };
            return Err(Error::wrong_state(&opts.id, other, words, action));
        }
    }
    let pid = st.pid.unwrap_or(0);
    let p = &opts.process;
    if p.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(Error::config("process.args", "must name a program to run"));
    }
    if p.terminal().unwrap_or(false) && opts.console_socket.is_none() {
        return Err(Error::config(
            "process.terminal",
            "true, but no --console-socket was given to receive the terminal",
        ));
    }
    let namespaces = target_namespaces(pid)?;
    // A container without a mount namespace of its own (it shares the
    // host's) has its root only as init's root directory: after joining
    // that namespace, enter it by chroot.
    let root = if !st.host_mount_ns {
        None
    } else {
        let path = format!("/proc/{pid}/root");
        Some(
            nix::fcntl::open(
                path.as_str(),
                nix::fcntl::OFlag::O_PATH
                    | nix::fcntl::OFlag::O_DIRECTORY
                    | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .ctx(|| format!("open {path}"))?,
        )
    };
    let plan = ProcessPlan {
        process: p.clone(),
        env: p.env().clone().unwrap_or_default(),
        caps: crate::process::caps::resolve(p.capabilities())?,
        console_socket: None,
        extra_fds: opts.preserve_fds,
        bind_console: false,
        seccomp: super::create::compile_seccomp(st.seccomp.as_ref())?,
        // The same Landlock ruleset as the container's init: an equal
        // domain (a process cannot join another's).
        landlock: super::create::landlock_of(Some(&st.annotations.clone().into_iter().collect()))?,
    };
    let console = match &opts.console_socket {
        Some(path) => Some(crate::console::connect(path)?),
        None => None,
    };
    let plan = ProcessPlan {
        console_socket: console.as_ref().map(|c| c.as_raw_fd()),
        ..plan
    };

    let (parent_end, child_end) = channel::pair()?;
    // The pid namespace applies to our children: enter it for the fork.
    let own_pid = crate::namespaces::open_ns(Path::new("/proc/self/ns/pid_for_children"))?;
    if let Some((_, fd)) = namespaces
        .iter()
        .find(|(f, _)| *f == CloneFlags::CLONE_NEWPID)
    {
        nix::sched::setns(fd, CloneFlags::CLONE_NEWPID)
            .ctx(|| format!("join the pid namespace of container {:?}", opts.id))?;
    }
    // SAFETY: a raw clone without CLONE_VM is a fork of this
    // single-threaded process; the child only runs `child` and execs or
    // exits.
    let child = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::SIGCHLD as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if child == 0 {
        drop(parent_end);
        child_main(
            &LinuxSys,
            &plan,
            (&namespaces, root.as_ref()),
            &child_end,
            zygote,
        );
    }
    let clone_err = std::io::Error::last_os_error();
    let _ = nix::sched::setns(&own_pid, CloneFlags::CLONE_NEWPID);
    drop(child_end);
    if child < 0 {
        return Err(Error::Init(format!("fork for exec: {clone_err}")));
    }
    let child = child as i32;
    // The container's limits apply to what runs in it (and `ps`, `kill
    // --all`, pause see it) from before its first instruction.
    if let Some(cg) = &st.cgroup {
        if let Err(e) = cg.add_pid(child) {
            let _ = nix::sys::signal::kill(Pid::from_raw(child), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(child), None);
            return Err(e.into());
        }
    }
    parent_end.send(&Msg::Go(String::new()))?;
    Ok((child, parent_end, console))
}

fn child_main(
    sys: &dyn Sys,
    plan: &ProcessPlan,
    ns: (&[(CloneFlags, OwnedFd)], Option<&OwnedFd>),
    chan: &Channel,
    zygote: bool,
) -> ! {
    let setup = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        child_setup(sys, plan, ns, chan, zygote)
    }));
    let err = match setup {
        Ok(Ok(never)) => match never {},
        Ok(Err(e)) => e,
        Err(panic) => Error::Init(format!(
            "exec: the process panicked during setup: {}",
            crate::process::init::panic_text(&panic)
        )),
    };
    crate::process::init::report(chan, &err);
    // SAFETY: _exit ends this copy of phantom without running its
    // destructors or atexit handlers.
    unsafe { libc::_exit(1) }
}

fn child_setup(
    sys: &dyn Sys,
    plan: &ProcessPlan,
    (ns, root): (&[(CloneFlags, OwnedFd)], Option<&OwnedFd>),
    chan: &Channel,
    zygote: bool,
) -> Result<std::convert::Infallible> {
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
    match chan.recv()? {
        Some(Msg::Go(_)) => {}
        // SAFETY: the parent gave up; leave without running destructors.
        _ => unsafe { libc::_exit(1) },
    }
    for (flag, fd) in ns {
        if *flag == CloneFlags::CLONE_NEWPID {
            continue; // entered by the parent for the fork
        }
        sys.setns(fd.as_raw_fd(), *flag)
            .ctx(|| format!("join the container's {flag:?} namespace"))?;
    }
    if let Some(root) = root {
        nix::unistd::fchdir(root).ctx(|| "enter the container's root".into())?;
        sys.chroot(Path::new("."))
            .ctx(|| "chroot into the container's root".into())?;
    }
    nix::unistd::chdir("/").ctx(|| "chdir / in the container".into())?;
    if zygote {
        // PDEATHSIG stays: an exec zygote never outlives its runner.
        return crate::process::init::serve_request(sys, plan, chan, &[chan.raw()]);
    }
    let program = crate::process::setup::prepare(sys, plan)?;
    let args = plan.process.args().clone().unwrap_or_default();
    crate::process::setup::seal_fds(plan, &[chan.raw()])?;
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) };
    // Last but for execve: a filter loaded here without no_new_privs must
    // only see the identity switch and execve (see `switch_is_late`).
    crate::process::setup::switch_identity(plan)?;
    crate::process::setup::exec(plan, &program, &args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_overrides_the_container_process() {
        let spec = crate::spec::parse(
            br#"{"ociVersion":"1.0.2","process":{"cwd":"/","args":["sh"],"env":["PATH=/bin","A=1"],
            "user":{"uid":0,"gid":0},"capabilities":{"bounding":["CAP_KILL"]}}}"#,
        )
        .unwrap();
        let a = ExecArgs {
            args: vec!["id".into()],
            env: vec![("A".into(), "2".into()), ("B".into(), "3".into())],
            cwd: Some("/tmp".into()),
            user: Some((1000, Some(100))),
            caps: vec!["CAP_CHOWN".into()],
            tty: true,
            ..Default::default()
        };
        let p = exec_process(spec.process().as_ref(), &a).unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &vec!["id".to_string()]);
        assert_eq!(
            p.env().as_ref().unwrap(),
            &vec!["PATH=/bin".to_string(), "A=2".into(), "B=3".into()]
        );
        assert_eq!(p.cwd(), Path::new("/tmp"));
        assert_eq!((p.user().uid(), p.user().gid()), (1000, 100));
        assert_eq!(p.terminal(), Some(true));
        let bounding = p
            .capabilities()
            .as_ref()
            .unwrap()
            .bounding()
            .clone()
            .unwrap();
        assert!(bounding.contains(&Capability::Chown) && bounding.contains(&Capability::Kill));
        assert!(exec_process(None, &ExecArgs::default()).is_err());
        let bad = ExecArgs {
            args: vec!["x".into()],
            caps: vec!["CAP_BOGUS".into()],
            ..Default::default()
        };
        assert!(exec_process(None, &bad)
            .unwrap_err()
            .to_string()
            .contains("CAP_BOGUS"));
    }
}

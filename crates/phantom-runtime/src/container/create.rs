//! `create`: resolve the bundle into a plan, clone the container's init
//! into its new namespaces (a copy of this process: no re-exec), wait
//! until it is set up and blocked on exec.fifo, and record its state.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::channel::{self, Msg};
use crate::error::{Error, Result, SysContext};
use crate::namespaces;
use crate::process::init::InitPlan;
use crate::process::setup::ProcessPlan;
use crate::rootfs::{self, RootfsPlan};
use crate::state::{rfc3339_now, ContainerState, StateStore, Status, OCI_VERSION};
use crate::sys::LinuxSys;

#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub id: String,
    pub bundle: PathBuf,
    pub console_socket: Option<PathBuf>,
    /// An already connected console socket (`run` keeps the other end and
    /// proxies the terminal itself); used instead of `console_socket`.
    pub console_fd: Option<std::os::fd::RawFd>,
    pub pid_file: Option<PathBuf>,
    pub no_pivot: bool,
    pub preserve_fds: i32,
    /// Keep the caller's session keyring (runc's --no-new-keyring).
    pub no_new_keyring: bool,
    /// Make a zygote: init waits for a request on the sync channel instead
    /// of exec.fifo (see `container::zygote`).
    pub zygote: bool,
    /// The systemd cgroup driver (`--systemd-cgroup`): the cgroup is a
    /// transient unit and `cgroupsPath` is `slice:prefix:name`.
    pub systemd_cgroup: bool,
}

/// Annotation a sandbox profile sets to choose its mode (`direct`,
/// `sandbox`, `hardened`).
pub const MODE_ANNOTATION: &str = "run.phantom.mode";
/// A sandbox's network: `none`, `loopback` (lo is brought up), `host`.
pub const NETWORK_ANNOTATION: &str = "run.phantom.network";

/// Socket-activation fds handed to us (systemd's LISTEN_FDS protocol):
/// passed on to the container as runc does.
fn listen_fds() -> i32 {
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_none_or(|p| p == std::process::id());
    match std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<i32>().ok())
    {
        Some(n) if n > 0 && ours => n,
        _ => 0,
    }
}

/// Features of config.json that phantom does not implement yet: refuse
/// them by name rather than run a container without them.
fn refuse_unsupported(spec: &Spec) -> Result<()> {
    let no = |field: &str, what: &str| {
        Err(Error::Unsupported(format!(
            "{field}: {what} is not implemented yet"
        )))
    };
    let linux = spec.linux().as_ref().expect("validated");
    if linux.time_offsets().is_some() {
        return no("linux.timeOffsets", "time namespace offsets");
    }
    if linux.personality().is_some() {
        return no("linux.personality", "setting the execution domain");
    }
    if linux.intel_rdt().is_some() {
        return no("linux.intelRdt", "Intel RDT");
    }
    let p = spec.process().as_ref().expect("validated");
    if p.apparmor_profile()
        .as_deref()
        .is_some_and(|s| !s.is_empty())
    {
        return no("process.apparmorProfile", "AppArmor");
    }
    if p.selinux_label().as_deref().is_some_and(|s| !s.is_empty()) {
        return no("process.selinuxLabel", "SELinux");
    }
    if p.io_priority().is_some() {
        return no("process.ioPriority", "setting the I/O priority");
    }
    if p.scheduler().is_some() {
        return no("process.scheduler", "setting the scheduler");
    }
    Ok(())
}

/// The Landlock rules and mode a sandbox profile put in the annotations.
pub(crate) fn landlock_of(
    annotations: Option<&std::collections::HashMap<String, String>>,
) -> Result<Option<(phantom_policy::LandlockRules, phantom_policy::Mode)>> {
    let Some(a) = annotations else {
        return Ok(None);
    };
    let Some(text) = a.get(phantom_policy::landlock::ANNOTATION) else {
        return Ok(None);
    };
    let rules = phantom_policy::LandlockRules::from_annotation(text).map_err(|e| {
        Error::config(
            format!("annotations.{}", phantom_policy::landlock::ANNOTATION),
            e.to_string(),
        )
    })?;
    let mode = a
        .get(MODE_ANNOTATION)
        .and_then(|m| phantom_policy::Mode::from_name(m))
        .unwrap_or_default();
    Ok(Some((rules, mode)))
}

/// A sandbox's caller-given workspace (annotation run.phantom.workspace,
/// not owned by phantom): its bind is opened without following symlinks.
fn caller_workspace(spec: &Spec) -> Option<PathBuf> {
    let a = spec.annotations().as_ref()?;
    let ws = a.get(crate::sandbox::WORKSPACE)?;
    (a.get(crate::sandbox::WORKSPACE_OWNED).map(String::as_str) != Some("true"))
        .then(|| PathBuf::from(ws))
}

/// Compile `linux.seccomp` to BPF through the policy cache (no libseccomp).
pub(crate) fn compile_seccomp(
    s: Option<&oci_spec::runtime::LinuxSeccomp>,
) -> Result<Option<phantom_policy::CompiledFilter>> {
    let Some(s) = s else { return Ok(None) };
    // The AOT cache: a second container with the same profile reads the
    // compiled filter back (tens of microseconds) instead of compiling it.
    let (f, outcome) = phantom_policy::PolicyCache::open_default()
        .seccomp(s)
        .map_err(|e| Error::Seccomp(e.to_string()))?;
    tracing::debug!(
        "linux.seccomp: policy cache {outcome:?}, {} instructions",
        f.len()
    );
    for w in f.warnings() {
        tracing::debug!("linux.seccomp: {w}");
    }
    Ok(Some(f))
}

/// The parts of the plan that need no fds: built before any state exists,
/// so bad input leaves nothing behind.
fn resolve(spec: &Spec, bundle: &Path, rootfs: &Path, opts: &CreateOptions) -> Result<InitPlan> {
    refuse_unsupported(spec)?;
    let linux = spec.linux().as_ref().expect("validated");
    let process = spec.process().clone().expect("validated");
    let ns_list = linux.namespaces().clone().unwrap_or_default();
    let mut ns = namespaces::plan(&ns_list)?;
    // `direct` mode (annotation run.phantom.mode, set by sandbox profiles)
    // keeps the host's filesystem and namespaces: no rootfs is set up.
    let direct = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(MODE_ANNOTATION))
        .is_some_and(|m| m == "direct");
    if direct && !ns.clone_flags.is_empty() {
        return Err(Error::config(
            "annotations.run.phantom.mode",
            "direct mode takes no new namespaces",
        ));
    }
    // Without a mount namespace the container inherits ours (config-linux.md
    // "Namespaces"): its rootfs is set up in the host's, under a private
    // bind, and unmounted by `delete` (docs/security.md says what it costs).
    let host_mount_ns = !direct && !ns.has(LinuxNamespaceType::Mount);
    if host_mount_ns {
        // The runtime's namespace is our caller's, not the private one the
        // CVE-2019-5736 guard runs us in (the guard's read-only mapping of
        // the binary stays what init runs from).
        if let Some(fd) = crate::exe_guard::host_mount_ns() {
            ns.join.push(namespaces::Join {
                kind: LinuxNamespaceType::Mount,
                path: PathBuf::from(format!("/proc/self/fd/{fd}")),
            });
        }
    }
    // The cgroup namespace is unshared by init once it sits in its cgroup.
    let new_cgroupns = ns.clone_flags.contains(CloneFlags::CLONE_NEWCGROUP);
    ns.clone_flags.remove(CloneFlags::CLONE_NEWCGROUP);
    let new_userns = ns.clone_flags.contains(CloneFlags::CLONE_NEWUSER);
    let new_netns = ns.clone_flags.contains(CloneFlags::CLONE_NEWNET);

    if process.terminal().unwrap_or(false)
        && opts.console_socket.is_none()
        && opts.console_fd.is_none()
    {
        return Err(Error::config(
            "process.terminal",
            "true, but no --console-socket was given to receive the terminal",
        ));
    }
    if opts.preserve_fds < 0 {
        return Err(Error::Unsupported(format!(
            "--preserve-fds {} is negative",
            opts.preserve_fds
        )));
    }
    let caps = crate::process::caps::resolve(process.capabilities())?;
    let listen = listen_fds();
    let mut env = process.env().clone().unwrap_or_default();
    if listen > 0 {
        env.push(format!("LISTEN_FDS={listen}"));
        env.push("LISTEN_PID=1".to_string());
    }
    let propagation = linux
        .rootfs_propagation()
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(rootfs::rootfs_propagation)
        .transpose()?;
    let mut sysctl: Vec<(String, String)> = linux
        .sysctl()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    sysctl.sort();
    Ok(InitPlan {
        new_cgroupns,
        new_userns,
        rootfs: (!direct).then(|| RootfsPlan {
            rootfs: rootfs.to_path_buf(),
            bundle: bundle.to_path_buf(),
            mounts: spec.mounts().clone().unwrap_or_default(),
            devices: linux.devices().clone().unwrap_or_default(),
            readonly: spec
                .root()
                .as_ref()
                .and_then(|r| r.readonly())
                .unwrap_or(false),
            propagation,
            no_pivot: opts.no_pivot,
            userns: new_userns || ns.join_user.is_some(),
            new_cgroupns,
            masked_paths: linux.masked_paths().clone().unwrap_or_default(),
            readonly_paths: linux.readonly_paths().clone().unwrap_or_default(),
            host_ns: host_mount_ns,
            nofollow_sources: caller_workspace(spec).into_iter().collect(),
        }),
        hostname: spec.hostname().clone().filter(|h| !h.is_empty()),
        domainname: spec.domainname().clone().filter(|h| !h.is_empty()),
        sysctl,
        namespaces: ns,
        process: ProcessPlan {
            process,
            env,
            caps,
            console_socket: None,
            extra_fds: listen + opts.preserve_fds,
            bind_console: true,
            seccomp: compile_seccomp(linux.seccomp().as_ref())?,
            landlock: landlock_of(spec.annotations().as_ref())?,
        },
        state_dir: -1,
        runtime_hooks: spec.hooks().as_ref().is_some_and(|h| {
            h.prestart().as_ref().is_some_and(|v| !v.is_empty())
                || h.create_runtime().as_ref().is_some_and(|v| !v.is_empty())
        }),
        hooks: spec.hooks().clone(),
        session_keyring: (!opts.no_new_keyring).then(|| format!("_ses.{}", opts.id)),
        zygote: opts.zygote,
        // runc and crun bring up `lo` in every new network namespace; only
        // a sandbox whose network is `none` keeps it down.
        loopback_up: new_netns
            && spec
                .annotations()
                .as_ref()
                .and_then(|a| a.get(NETWORK_ANNOTATION))
                .is_none_or(|n| n != "none"),
    })
}

/// Create the container; returns its state (status `created`).
pub fn create(store: &StateStore, opts: &CreateOptions) -> Result<ContainerState> {
    create_with_channel(store, opts).map(|(st, _)| st)
}

/// `create`, keeping our end of the sync channel (a zygote's runner sends
/// the request over it).
pub(crate) fn create_with_channel(
    store: &StateStore,
    opts: &CreateOptions,
) -> Result<(ContainerState, channel::Channel)> {
    let mut phases = crate::phase::Phases::start("create");
    crate::state::validate_id(&opts.id)?;
    let bundle = crate::spec::bundle_dir(&opts.bundle)?;
    let spec = crate::spec::load(&bundle)?;
    let rootfs = crate::spec::validate(&spec, &bundle)?;
    let plan = resolve(&spec, &bundle, &rootfs, opts)?;
    phases.mark("parse");

    // The cgroup is resolved (not created) before anything exists, so a
    // bad cgroupsPath leaves nothing behind either.
    let linux = spec.linux().as_ref().expect("validated");
    let layout = crate::cgroups::Layout::detect()?;
    let cgroups_path = linux.cgroups_path().as_deref().and_then(Path::to_str);
    let cgroup = if opts.systemd_cgroup {
        crate::cgroups::Cgroup::resolve_systemd(&layout, cgroups_path, &opts.id)?
    } else {
        crate::cgroups::Cgroup::resolve(&layout, cgroups_path, &opts.id)?
    };
    let mut resources = linux.resources().clone().unwrap_or_default();
    resources.set_devices(Some(crate::cgroups::container_device_rules(linux)));

    let plan_host_mounts = plan.rootfs.as_ref().is_some_and(|r| r.host_ns);
    let lock = store.reserve(&opts.id)?;
    let mut child: Option<i32> = None;
    let res = create_reserved(
        store,
        opts,
        &spec,
        (&bundle, &rootfs),
        (&cgroup, &resources),
        plan,
        &mut child,
    );
    if res.is_err() {
        // Leave nothing behind: no process, no state directory.
        if let Some(pid) = child {
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
            // A container that existed is stopped and deleted: poststop
            // hooks run as for any delete (runtime.md "Lifecycle").
            if let (Ok(st), Some(h)) = (store.load(&opts.id), spec.hooks().as_ref()) {
                if let Some(post) = h.poststop() {
                    crate::hooks::run_all_warn(post, "poststop", &st.hook_state(Status::Stopped));
                }
            }
        }
        if plan_host_mounts {
            crate::rootfs::unmount_under_in_host_ns(&LinuxSys, &rootfs);
        }
        let _ = cgroup.destroy();
        let _ = store.remove(&opts.id);
    }
    phases.mark("setup");
    drop(lock);
    res
}

fn create_reserved(
    store: &StateStore,
    opts: &CreateOptions,
    spec: &Spec,
    (bundle, rootfs): (&Path, &Path),
    (cgroup, resources): (&crate::cgroups::Cgroup, &oci_spec::runtime::LinuxResources),
    mut plan: InitPlan,
    child: &mut Option<i32>,
) -> Result<(ContainerState, channel::Channel)> {
    let dir = store.dir(&opts.id);
    let fifo = store.fifo_path(&opts.id);
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o622))
        .ctx(|| format!("mkfifo {}", fifo.display()))?;
    // mkfifo applies the umask; the container user must be able to write.
    std::fs::set_permissions(&fifo, std::os::unix::fs::PermissionsExt::from_mode(0o622))
        .map_err(|e| Error::io("cannot chmod", &fifo, e))?;
    let state_dir: OwnedFd = nix::fcntl::open(
        &dir,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ctx(|| format!("open {}", dir.display()))?;
    plan.state_dir = state_dir.as_raw_fd();

    let mut state = ContainerState {
        oci_version: OCI_VERSION.to_string(),
        id: opts.id.clone(),
        status: Status::Creating,
        pid: None,
        bundle: bundle.to_path_buf(),
        annotations: spec
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        rootfs: rootfs.to_path_buf(),
        created: rfc3339_now(),
        owner: owner(),
        init_start_time: None,
        own_pid_ns: plan
            .namespaces
            .clone_flags
            .contains(CloneFlags::CLONE_NEWPID),
        host_mount_ns: plan.rootfs.as_ref().is_some_and(|r| r.host_ns),
        hooks: spec.hooks().clone(),
        process: spec.process().clone(),
        seccomp: linux_seccomp(spec),
        cgroup: Some(cgroup.clone()),
    };
    store.save(&state)?;
    // Limits are in place before init runs its first instruction in there.
    // systemd's unit needs init's pid, so with that driver the cgroup is
    // made after the clone, while init still waits for its first message.
    if !cgroup.uses_systemd() {
        cgroup.create()?;
        cgroup.apply(resources)?;
    }

    let console = match &opts.console_socket {
        Some(p) => Some(crate::console::connect(p)?),
        None => None,
    };
    plan.process.console_socket = console.as_ref().map(|c| c.as_raw_fd()).or(opts.console_fd);

    let (parent_end, child_end) = channel::pair()?;
    tracing::debug!("clone");
    // Pure cgroup v2 with the cgroupfs driver: init is born in its cgroup
    // (clone3 CLONE_INTO_CGROUP, as crun does), so the parent writes no
    // cgroup.procs and the kernel migrates nothing.
    let cgroup_fd = if cgroup.is_v2() && !cgroup.uses_systemd() {
        cgroup.unified.as_ref().and_then(|d| {
            nix::fcntl::open(
                d,
                nix::fcntl::OFlag::O_RDONLY
                    | nix::fcntl::OFlag::O_DIRECTORY
                    | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .ok()
        })
    } else {
        None
    };
    let (mut pid, born_in_cgroup) =
        spawn_init(&plan, parent_end, child_end, child, cgroup_fd.as_ref())?;
    drop(cgroup_fd);
    tracing::debug!("cloned");
    if plan.namespaces.join_user.is_some() {
        // Two stages: stage one reports the real init and leaves.
        match pid.1.recv()? {
            Some(Msg::Pid(init)) => {
                if init != pid.0 {
                    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid.0), None);
                    *child = Some(init);
                }
                pid.0 = init;
            }
            Some(m @ (Msg::Error(_) | Msg::ExecFailed { .. })) => {
                return Err(m.into_error().expect("an error message"))
            }
            other => {
                return Err(Error::Init(format!(
                    "container init stage one ended without a pid ({other:?})"
                )))
            }
        }
    }

    state.pid = Some(pid.0);
    state.init_start_time = crate::proc_info::start_time(pid.0);
    store.save(&state)?;

    let parent_end = pid.1;
    if cgroup.uses_systemd() {
        cgroup.start_unit(pid.0, resources)?;
        cgroup.create()?;
        cgroup.apply(resources)?;
    }
    // (With a joined user namespace the real init is forked by stage one,
    // so it starts in stage one's cgroup as well.)
    if !born_in_cgroup {
        cgroup.add_pid(pid.0)?;
    }
    if plan.new_userns {
        write_id_maps(pid.0, spec)?;
    }
    // The state hooks of the create phase get: runtime.md "State" says
    // `creating` is step 2 of the lifecycle (building the environment) and
    // `created` comes after it; prestart, createRuntime and createContainer
    // are steps 3 to 5, so they see `created`, which is also what
    // runtime-tools' validation (hooks_stdin) and crun expect.
    let hook_state = String::from_utf8(state.hook_state(Status::Created)).expect("json is utf-8");
    parent_end.send(&Msg::Go(hook_state.clone()))?;
    let mut msg = parent_end.recv()?;
    if msg == Some(Msg::Hooks) {
        let hooks = spec.hooks().clone().unwrap_or_default();
        // prestart is deprecated but still run, before createRuntime.
        if let Some(h) = hooks.prestart() {
            crate::hooks::run_all(h, "prestart", hook_state.as_bytes())?;
        }
        if let Some(h) = hooks.create_runtime() {
            crate::hooks::run_all(h, "createRuntime", hook_state.as_bytes())?;
        }
        parent_end.send(&Msg::Go(String::new()))?;
        msg = parent_end.recv()?;
    }
    match msg {
        Some(Msg::Ready) => {}
        Some(m @ (Msg::Error(_) | Msg::ExecFailed { .. })) => {
            return Err(m.into_error().expect("an error message"))
        }
        Some(other) => {
            return Err(Error::Init(format!(
                "container init sent {other:?} out of turn"
            )))
        }
        None => {
            let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid.0), None);
            *child = None;
            return Err(Error::Init(init_gone(status)));
        }
    }
    state.status = Status::Created;
    store.save(&state)?;
    if let Some(p) = &opts.pid_file {
        write_pid_file(p, pid.0)?;
    }
    Ok((state, parent_end))
}

/// What to say when init ended during setup without a word on the channel.
fn init_gone(status: nix::Result<nix::sys::wait::WaitStatus>) -> String {
    use nix::sys::wait::WaitStatus;
    match status {
        Ok(WaitStatus::Exited(_, code)) => format!(
            "container init exited with status {code} during setup without reporting an error \
             (see the runtime's stderr or --log)"
        ),
        Ok(WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGSYS, _)) => {
            "container init was killed by SIGSYS during setup: linux.seccomp killed one of \
             the runtime's own syscalls"
                .to_string()
        }
        Ok(WaitStatus::Signaled(_, sig, _)) => {
            format!("container init was killed by {sig} during setup")
        }
        Ok(other) => format!("container init ended during setup ({other:?})"),
        Err(e) => format!("container init ended during setup (waitpid: {e})"),
    }
}

/// Clone init into its new namespaces (and into the cgroup `cgroup_fd`
/// names, if given and the kernel can). Returns its pid (in our pid
/// namespace), our end of the sync channel, and whether init was born in
/// that cgroup.
fn spawn_init(
    plan: &InitPlan,
    parent_end: channel::Channel,
    child_end: channel::Channel,
    child: &mut Option<i32>,
    cgroup_fd: Option<&OwnedFd>,
) -> Result<((i32, channel::Channel), bool)> {
    // A joined pid namespace applies to our children: enter it for the
    // clone, then go back (hooks and `run` stay in ours).
    let restore_pid = match &plan.namespaces.join_pid {
        Some(path) => {
            let own = namespaces::open_ns(Path::new("/proc/self/ns/pid_for_children"))?;
            let target = namespaces::open_ns(path)?;
            nix::sched::setns(&target, CloneFlags::CLONE_NEWPID)
                .ctx(|| format!("join pid namespace {}", path.display()))?;
            Some(own)
        }
        None => None,
    };
    let restore_time = if plan.namespaces.new_time {
        let own = namespaces::open_ns(Path::new("/proc/self/ns/time_for_children"))?;
        nix::sched::unshare(CloneFlags::from_bits_retain(libc::CLONE_NEWTIME))
            .ctx(|| "unshare the time namespace".into())?;
        Some(own)
    } else {
        None
    };

    // With a joined user namespace, init creates the new namespaces itself
    // after joining it (see process::init).
    let ns_flags = if plan.namespaces.join_user.is_some() {
        CloneFlags::empty()
    } else {
        plan.namespaces.clone_flags
    };
    let mut born_in_cgroup = false;
    let mut pid = -1;
    if let Some(fd) = cgroup_fd {
        pid = clone3_into_cgroup(ns_flags.bits() as u64, fd.as_raw_fd());
        born_in_cgroup = pid >= 0;
        if pid < 0 {
            let e = std::io::Error::last_os_error();
            // Older kernels (< 5.7) or a seccomp filter around us: a plain
            // clone and a cgroup.procs write do the same.
            tracing::debug!(error = %e, "clone3 CLONE_INTO_CGROUP failed, using clone");
        }
    }
    if pid < 0 {
        let flags = ns_flags.bits() as libc::c_ulong | libc::SIGCHLD as libc::c_ulong;
        // SAFETY: a raw clone without CLONE_VM is a fork: the child gets a
        // copy of this single-threaded process and continues on the same
        // stack. Nothing is shared, so no lock can be held by another thread.
        pid = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    }
    if pid == 0 {
        drop(parent_end);
        crate::process::init::main(&LinuxSys, plan, &child_end);
    }
    let clone_err = std::io::Error::last_os_error();
    if let Some(own) = restore_pid {
        let _ = nix::sched::setns(&own, CloneFlags::CLONE_NEWPID);
    }
    if let Some(own) = restore_time {
        let _ = nix::sched::setns(&own, CloneFlags::from_bits_retain(libc::CLONE_NEWTIME));
    }
    if pid < 0 {
        return Err(Error::Init(format!(
            "clone the container init with namespaces {:?}: {clone_err}",
            plan.namespaces.clone_flags
        )));
    }
    *child = Some(pid as i32);
    drop(child_end);
    Ok(((pid as i32, parent_end), born_in_cgroup))
}

/// clone3(2) as a fork (no CLONE_VM, no new stack) with CLONE_INTO_CGROUP.
/// Returns the pid, 0 in the child, or -1 with errno set.
fn clone3_into_cgroup(ns_flags: u64, cgroup_fd: i32) -> libc::c_long {
    /// `struct clone_args` up to `cgroup` (CLONE_ARGS_SIZE_VER2, Linux 5.7).
    #[repr(C)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    let args = CloneArgs {
        flags: ns_flags | CLONE_INTO_CGROUP,
        pidfd: 0,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: libc::SIGCHLD as u64,
        stack: 0,
        stack_size: 0,
        tls: 0,
        set_tid: 0,
        set_tid_size: 0,
        cgroup: cgroup_fd as u64,
    };
    // SAFETY: clone3 without CLONE_VM and without a stack is a fork, as the
    // raw clone in `spawn_init`: the child gets a copy of this
    // single-threaded process and continues on the same stack. `args` is a
    // valid clone_args of the size passed and outlives the call.
    unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    }
}

fn write_id_maps(pid: i32, spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref().expect("validated");
    let fmt = |maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
        maps.iter()
            .flatten()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect::<String>()
    };
    for (file, field, data) in [
        ("uid_map", "linux.uidMappings", fmt(linux.uid_mappings())),
        ("gid_map", "linux.gidMappings", fmt(linux.gid_mappings())),
    ] {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, data.as_bytes())
            .map_err(|e| Error::config(field, format!("write {path}: {e}")))?;
    }
    Ok(())
}

pub(crate) fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.phantom-tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(|e| Error::io("cannot write pid file", &tmp, e))?;
    f.write_all(pid.to_string().as_bytes())
        .map_err(|e| Error::io("cannot write pid file", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("cannot write pid file", path, e))
}

fn linux_seccomp(spec: &Spec) -> Option<oci_spec::runtime::LinuxSeccomp> {
    spec.linux().as_ref().and_then(|l| l.seccomp().clone())
}

/// The state's `owner`: the caller's user name, or its uid without one.
pub(crate) fn owner() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| nix::unistd::geteuid().to_string())
}

#[cfg(test)]
mod tests {
    use super::init_gone;
    use nix::sys::signal::Signal;
    use nix::sys::wait::WaitStatus;
    use nix::unistd::Pid;

    #[test]
    fn a_silent_init_end_is_described() {
        let pid = Pid::from_raw(42);
        let e = init_gone(Ok(WaitStatus::Exited(pid, 1)));
        assert!(e.contains("exited with status 1"), "{e}");
        let e = init_gone(Ok(WaitStatus::Signaled(pid, Signal::SIGSYS, false)));
        assert!(e.contains("SIGSYS") && e.contains("linux.seccomp"), "{e}");
        let e = init_gone(Ok(WaitStatus::Signaled(pid, Signal::SIGKILL, false)));
        assert!(e.contains("SIGKILL"), "{e}");
    }
}

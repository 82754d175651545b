//! `phantom run --profile`, `phantom create --profile`: a container made
//! from a profile instead of a bundle. phantom writes the bundle (an empty
//! rootfs directory and the profile's config.json) under the sandbox
//! directory, and the same runtime runs it: every OCI command works on it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use phantom_policy::{Catalog, Mode, NetworkMode, SandboxOptions};
use phantom_runtime::cgroups::systemd;
use phantom_runtime::container::{self, CreateOptions, RunOptions};
use phantom_runtime::sandbox;
use phantom_runtime::state::StateStore;

use crate::cli::SandboxArgs;

/// `--timeout`: the tree's one reading of a duration (phantom_policy::units).
pub fn parse_duration(s: &str) -> Result<Duration> {
    phantom_policy::units::parse_duration(s).with_context(|| format!("--timeout {s:?}"))
}

/// Twelve random hex digits.
pub fn random_suffix() -> String {
    let mut b = [0u8; 6];
    // getrandom never blocks here (the pool is initialised after boot).
    // SAFETY: the buffer is valid for its length.
    unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn random_id() -> String {
    format!("sbx-{}", random_suffix())
}

/// A sandbox written to disk, ready for `create`.
pub struct Prepared {
    pub id: String,
    pub bundle: PathBuf,
    pub annotations: std::collections::BTreeMap<String, String>,
    /// The workspace was given by the caller (never removed).
    pub own_workspace: bool,
    /// The sandbox directory, held until the container exists.
    _reserved: sandbox::SandboxDir,
    /// Network egress: the host side (veth, nft, proxy), removed on drop,
    /// after the container.
    egress: Option<phantom_egress::host::Egress>,
}

/// Resolve the profile, apply the flags, make the workspace and bundle.
pub fn prepare(
    store: &StateStore,
    args: &SandboxArgs,
    id: Option<String>,
    command: Vec<String>,
    terminal: bool,
    // Ok(persistent) where egress may be set up; else why not.
    egress_ok: Result<bool, &'static str>,
) -> Result<Prepared> {
    let name = args.profile.as_deref().expect("caller checked --profile");
    let extra: Vec<PathBuf> = args.profile_path.iter().cloned().collect();
    let catalog = Catalog::load(&Catalog::search_dirs(&extra));
    let mut profile = catalog
        .get(name)
        .map_err(|e| anyhow!("--profile: {e}"))?
        .profile
        .clone();
    let mode = match &args.mode {
        Some(m) => Some(
            Mode::from_name(m)
                .ok_or_else(|| anyhow!("--mode {m:?}: expected direct, sandbox or hardened"))?,
        ),
        None => None,
    };
    let network =
        match &args.network {
            Some(n) => Some(NetworkMode::from_name(n).ok_or_else(|| {
                anyhow!("--network {n:?}: expected none, loopback, egress or host")
            })?),
            None => None,
        };
    let limits = limits(args)?;
    // Checked against the profile as its file states it, before anything
    // of the request touches it.
    narrowed(&profile, mode, network, &limits, &raised(args)?)?;
    let egress_rules = egress_rules(&profile, network, args)?;
    let persistent = match (&egress_rules, egress_ok) {
        (Some(_), Err(why)) => bail!("--network egress: {why}"),
        (_, ok) => ok.unwrap_or(false),
    };
    if let Some(m) = mode {
        profile.mode = m;
    }
    profile.resources.memory = limits.memory.or(profile.resources.memory);
    profile.resources.cpu = limits.cpu.or(profile.resources.cpu);
    profile.resources.pids = limits.pids.or(profile.resources.pids);
    profile.resources.workspace = workspace_size(args, profile.resources.workspace)?;
    for kv in &args.env {
        if !kv.contains('=') || kv.starts_with('=') {
            bail!("--env {kv:?}: expected KEY=VALUE");
        }
    }

    // Opened without following symlinks in any component.
    let given_workspace = match &args.workspace {
        Some(w) => Some(sandbox::open_workspace(w)?),
        None => None,
    };
    let id = id.unwrap_or_else(random_id);
    // Reserve first, then check: a concurrent create of the same id fails
    // here with "already exists" and touches nothing of the winner's.
    let reserved = sandbox::reserve_dir(&sandbox::base_dir(), &id, store)?;
    let dir = reserved.path.clone();
    let egress = match &egress_rules {
        Some(rules) => Some(phantom_egress::host::Egress::setup(
            &id,
            rules,
            &crate::server::server_bin()?,
            std::env::var_os("PHANTOM_EGRESS_LOG")
                .map(PathBuf::from)
                .as_deref(),
            persistent,
        )?),
        None => None,
    };
    // Checked here for a clear early error; the container's init opens it
    // again the same way in its own mount namespace and mounts that fd
    // (`RootfsPlan::nofollow_sources`), so it cannot be swapped in between.
    let (workspace, own_workspace) = match given_workspace {
        Some((_fd, w)) => (w, true),
        None => (dir.join("workspace"), false),
    };
    let bundle = dir.join("bundle");
    let made = (|| -> Result<()> {
        std::fs::create_dir_all(bundle.join("rootfs"))
            .with_context(|| format!("cannot create {}", bundle.display()))?;
        if !own_workspace {
            std::fs::create_dir_all(&workspace)
                .with_context(|| format!("cannot create {}", workspace.display()))?;
            if let Some(bytes) = profile.resources.workspace {
                sandbox::limit_workspace(&phantom_runtime::sys::LinuxSys, &workspace, bytes)?;
            }
        }
        let mut opts = SandboxOptions::new(bundle.join("rootfs"), &workspace);
        opts.args = command;
        opts.env = args.env.clone();
        opts.network = network;
        opts.egress_net = egress.as_ref().map(|e| e.net());
        opts.terminal = terminal;
        let spec = phantom_policy::to_oci_spec(&profile, &opts);
        let mut v = serde_json::to_value(&spec)?;
        let ann = &mut v["annotations"];
        ann[sandbox::WORKSPACE] = serde_json::json!(workspace);
        ann[sandbox::WORKSPACE_OWNED] = serde_json::json!((!own_workspace).to_string());
        ann[sandbox::SANDBOX_DIR] = serde_json::json!(dir);
        // Where systemd runs, it owns the cgroup tree: the sandbox is a
        // scope in phantom.slice.
        if systemd::booted() {
            v["linux"]["cgroupsPath"] = serde_json::json!(systemd::sandbox_cgroups_path(&id));
        }
        std::fs::write(bundle.join("config.json"), serde_json::to_vec_pretty(&v)?)
            .with_context(|| format!("cannot write {}/config.json", bundle.display()))?;
        Ok(())
    })();
    let annotations: std::collections::BTreeMap<String, String> = [
        (sandbox::PROFILE, profile.name.clone()),
        (sandbox::WORKSPACE, workspace.display().to_string()),
        (sandbox::WORKSPACE_OWNED, (!own_workspace).to_string()),
        (sandbox::SANDBOX_DIR, dir.display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Err(e) = made {
        let _ = sandbox::remove_dirs(&annotations, false);
        return Err(e);
    }
    Ok(Prepared {
        id,
        bundle,
        annotations,
        own_workspace,
        _reserved: reserved,
        egress,
    })
}

/// The allowlists of an egress sandbox (none: not egress). `--allow` and
/// `--allow-cidr` may only narrow an egress profile's lists.
fn egress_rules(
    profile: &phantom_policy::Profile,
    network: Option<NetworkMode>,
    args: &SandboxArgs,
) -> Result<Option<phantom_policy::EgressRules>> {
    let effective = if profile.mode == Mode::Direct {
        NetworkMode::Host
    } else {
        network.unwrap_or(profile.network)
    };
    let asked = phantom_policy::EgressRules::parse(&args.allow, &args.allow_cidr)
        .map_err(|e| anyhow!("--{e}"))?;
    if effective != NetworkMode::Egress {
        if !asked.is_empty() {
            bail!("--allow and --allow-cidr need --network egress (the network is {effective})");
        }
        return Ok(None);
    }
    Ok(Some(phantom_policy::egress_rules(
        profile,
        Some(&asked),
        "--",
    )?))
}

/// Exit status for a program that could not be started, as a shell has it:
/// 127 when it does not exist, 126 when it cannot be executed; None for
/// any other failure. From init's errno, never from the message.
fn exec_failure_status(e: &phantom_runtime::Error) -> Option<i32> {
    match e {
        phantom_runtime::Error::ExecFailed { errno, .. } if *errno == libc::ENOENT => Some(127),
        phantom_runtime::Error::ExecFailed { .. } => Some(126),
        _ => None,
    }
}

/// The profile's ceilings: `network` and `limits` may only narrow
/// `profile` (phantom_policy::narrow). The typed error makes the exit
/// status 2 (main.rs), whatever the text.
fn narrowed(
    profile: &phantom_policy::Profile,
    mode: Option<Mode>,
    network: Option<NetworkMode>,
    limits: &phantom_policy::profile::Resources,
    raised: &phantom_policy::Raised,
) -> Result<()> {
    let asked = phantom_policy::Narrowing {
        mode,
        network,
        resources: *limits,
    };
    phantom_policy::check_narrowing_raised(profile, &asked, "--", raised)?;
    Ok(())
}

/// The hidden `--raise-*` flags the daemon passes for a key its operator
/// let exceed the profile.
fn raised(args: &SandboxArgs) -> Result<phantom_policy::Raised> {
    let network = match &args.raise_network {
        Some(n) => Some(NetworkMode::from_name(n).ok_or_else(|| {
            anyhow!("--raise-network {n:?}: expected none, loopback, egress or host")
        })?),
        None => None,
    };
    Ok(phantom_policy::Raised {
        network,
        memory: args.raise_memory,
        pids: args.raise_pids,
        cpus: args.raise_cpus,
    })
}

/// `--workspace-size` was refused; exit status 2 (a request may only
/// narrow its profile).
#[derive(Debug)]
pub enum WorkspaceSizeError {
    /// Not a size.
    Invalid { given: String, why: String },
    /// More than the profile's `resources.workspace`.
    AboveProfile { given: u64, profile: u64 },
}

impl std::fmt::Display for WorkspaceSizeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Invalid { given, why } => write!(f, "--workspace-size {given:?}: {why}"),
            Self::AboveProfile { given, profile } => write!(
                f,
                "--workspace-size {}: above the profile's resources.workspace ({}); a request \
                 may only narrow its profile",
                phantom_policy::narrow::Bytes(*given),
                phantom_policy::narrow::Bytes(*profile)
            ),
        }
    }
}

impl std::error::Error for WorkspaceSizeError {}

/// The workspace limit: `--workspace-size` if given (never above the
/// profile's), else the profile's `resources.workspace`.
fn workspace_size(
    args: &SandboxArgs,
    profile: Option<u64>,
) -> std::result::Result<Option<u64>, WorkspaceSizeError> {
    let Some(text) = &args.workspace_size else {
        return Ok(profile);
    };
    let invalid = |why: String| WorkspaceSizeError::Invalid {
        given: text.clone(),
        why,
    };
    let given = phantom_policy::profile::parse_size(text).map_err(invalid)?;
    // As the profile field: a tmpfs of less than a page holds nothing.
    if given < 4096 {
        return Err(invalid(format!(
            "{given} bytes is smaller than one page (4KiB)"
        )));
    }
    match profile {
        Some(p) if given > p => Err(WorkspaceSizeError::AboveProfile { given, profile: p }),
        _ => Ok(Some(given)),
    }
}

/// `--memory`, `--cpus` and `--pids`, checked.
fn limits(args: &SandboxArgs) -> Result<phantom_policy::profile::Resources> {
    phantom_zygote::limits::check(args.memory.as_deref(), args.cpus, args.pids, "--")
}

fn stdin_is_tty() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal()
}

/// `phantom run --profile NAME [ID] [--] CMD...`
pub fn run(store: &StateStore, a: &crate::cli::Run) -> Result<i32> {
    let (id, command) = split_id_and_command(&a.args, &a.command)?;
    let timeout = a.timeout.as_deref().map(parse_duration).transpose()?;
    let s = &a.sandbox;
    let warm_ok = crate::warm_or_cold::run(a, id.is_some(), !command.is_empty(), stdin_is_tty())
        .log("this run")
        == crate::warm_or_cold::Route::Warm;
    if warm_ok {
        let socket = phantom_zygote::socket_path(s.daemon_socket.as_deref());
        let profile = s.profile.as_deref().expect("caller checked --profile");
        let copy = |ws: &Path| match &s.copy_in {
            Some(dir) => copy_into(dir, ws),
            None => Ok(()),
        };
        let copy_in: Option<&phantom_zygote::client::CopyIn<'_>> =
            s.copy_in.as_ref().map(|_| &copy as _);
        let limits = limits(s)?;
        if limits != Default::default() {
            // The warm path sends the limits to the daemon as they are:
            // check them against the profile here first, as prepare()
            // does on the cold path. Only then: the catalog costs a load
            // the common request (no limits) does not pay.
            let catalog = Catalog::load(&Catalog::search_dirs(&[]));
            let p = catalog
                .get(profile)
                .map_err(|e| anyhow!("--profile: {e}"))?;
            narrowed(&p.profile, None, None, &limits, &raised(s)?)?;
        }
        let resources = (limits != Default::default())
            .then(|| phantom_policy::policy::resources_to_oci(&limits));
        if let Some(code) = phantom_zygote::client::run_warm(
            &socket,
            profile,
            &command,
            &s.env,
            timeout,
            resources.as_ref(),
            copy_in,
        )? {
            return Ok(code);
        }
    }
    phantom_runtime::exe_guard::ensure_sealed()?;
    let egress_ok = if a.detach || a.keep {
        Err("not yet with --detach or --keep (the proxy lives as long as this command)")
    } else {
        Ok(false)
    };
    let p = prepare(store, &a.sandbox, id, command, stdin_is_tty(), egress_ok)?;
    if let Some(dir) = &a.sandbox.copy_in {
        let ws = p
            .annotations
            .get(sandbox::WORKSPACE)
            .expect("prepare sets it");
        if let Err(e) = copy_into(dir, Path::new(ws)) {
            let _ = sandbox::remove_dirs(&p.annotations, p.own_workspace);
            return Err(e);
        }
    }
    let res = container::run(
        store,
        &RunOptions {
            create: CreateOptions {
                id: p.id.clone(),
                bundle: p.bundle.clone(),
                console_socket: a.console_socket.clone(),
                pid_file: a.pid_file.clone(),
                no_pivot: a.no_pivot,
                preserve_fds: a.preserve_fds,
                no_new_keyring: a.no_new_keyring,
                console_fd: None,
                zygote: false,
                systemd_cgroup: systemd::booted(),
            },
            detach: a.detach,
            // Kept until we looked at its cgroup: an OOM kill is said so.
            keep: true,
            timeout,
            interrupt_kills: true,
        },
    );
    if let Ok(137) = res {
        if let Some(note) = oom_note(store, &p.id, &p.bundle) {
            eprintln!("phantom: {note}");
        }
    }
    // A detached or kept sandbox stays (destroy removes it); otherwise
    // nothing is left: container, bundle, and a workspace we made. An id
    // taken in the state root (an OCI container of that name) is not ours
    // to delete: only our sandbox directory goes.
    if !(a.detach || a.keep) || res.is_err() {
        if !matches!(res, Err(phantom_runtime::Error::AlreadyExists(_))) {
            let _ = container::delete(store, &p.id, true);
        }
        sandbox::remove_dirs(&p.annotations, p.own_workspace)?;
    }
    drop(p);
    match res {
        Ok(code) => Ok(code),
        Err(e) => match exec_failure_status(&e) {
            Some(code) => {
                eprintln!("phantom: {e}");
                Ok(code)
            }
            None => Err(e.into()),
        },
    }
}

/// The OOM note of a finished cold run: the container's cgroup and the
/// memory limit its bundle set.
fn oom_note(store: &StateStore, id: &str, bundle: &Path) -> Option<String> {
    let cg = store.load(id).ok()?.cgroup?;
    sandbox::oom_note(&cg, sandbox::memory_limit_of(bundle))
}

/// `phantom create --profile NAME ID`: a long-lived sandbox whose init
/// sleeps; commands run in it with `phantom exec ID -- CMD`.
pub fn create(store: &StateStore, a: &crate::cli::Create) -> Result<i32> {
    let id = match (&a.name, &a.container_id) {
        (Some(n), None) | (None, Some(n)) => n.clone(),
        (Some(n), Some(c)) if n == c => n.clone(),
        (Some(_), Some(_)) => bail!("give the sandbox's name once: --name ID or ID"),
        (None, None) => bail!("a persistent sandbox needs a name: phantom create --profile P ID"),
    };
    let p = prepare(
        store,
        &a.sandbox,
        Some(id.clone()),
        vec!["sleep".into(), "infinity".into()],
        false,
        Ok(true),
    )?;
    // The sandbox outlives this command: its init must not hold our
    // stdio (a caller waiting for our output would wait forever).
    let saved = detach_stdio()?;
    let created = container::create(
        store,
        &CreateOptions {
            id: id.clone(),
            bundle: p.bundle.clone(),
            console_socket: None,
            pid_file: a.pid_file.clone(),
            no_pivot: a.no_pivot,
            preserve_fds: 0,
            no_new_keyring: a.no_new_keyring,
            console_fd: None,
            zygote: false,
            systemd_cgroup: systemd::booted(),
        },
    )
    .map_err(|e| (e, false))
    .and_then(|st| {
        container::start(store, &id)
            .map(|_| st)
            .map_err(|e| (e, true))
    });
    restore_stdio(saved);
    if let Err((e, ours)) = created {
        // A failed create cleaned up after itself; and when the id was
        // taken in the state root the container is someone else's. Only
        // a container we created and could not start is ours to delete.
        if ours {
            let _ = container::delete(store, &id, true);
        }
        let _ = sandbox::remove_dirs(&p.annotations, p.own_workspace);
        return Err(e.into());
    }
    let mut p = p;
    if let (Some(egress), Ok(st)) = (p.egress.take(), &created) {
        // The network lives as long as the sandbox (destroy removes it).
        egress.hand_over(st.pid.unwrap_or(0))?;
    }
    drop(p);
    println!("{id}");
    Ok(0)
}

/// `phantom network ID [--allow R]... [--allow-cidr C]... | --clear`.
pub fn network(store: &StateStore, a: &crate::cli::NetworkCmd) -> Result<i32> {
    let st = container::state(store, &a.container_id)?;
    let Some((allow, cidr)) = phantom_egress::host::current_rules(&a.container_id) else {
        bail!(
            "{:?} has no egress network (only sandboxes made with --network egress have one)",
            a.container_id
        );
    };
    if a.allow.is_empty() && a.allow_cidr.is_empty() && !a.clear {
        println!(
            "{}",
            serde_json::json!({"allow": allow, "allow-cidr": cidr})
        );
        return Ok(0);
    }
    let asked = phantom_policy::EgressRules::parse(&a.allow, &a.allow_cidr)
        .map_err(|e| anyhow!("--{e}"))?;
    if a.clear {
        // Empty lists narrow every profile.
        phantom_egress::host::update(&a.container_id, &asked)?;
        println!("{}", serde_json::json!({"allow": [], "allow-cidr": []}));
        return Ok(0);
    }
    // Within the sandbox's profile, as at create.
    let name = st
        .annotations
        .get(sandbox::PROFILE)
        .ok_or_else(|| anyhow!("{:?} is not a sandbox of a profile", a.container_id))?;
    let extra: Vec<PathBuf> = a.profile_path.iter().cloned().collect();
    let catalog = Catalog::load(&Catalog::search_dirs(&extra));
    let profile = &catalog
        .get(name)
        .map_err(|e| anyhow!("the sandbox's profile: {e} (give --profile-path)"))?
        .profile;
    phantom_policy::egress_rules(profile, Some(&asked), "--")?;
    phantom_egress::host::update(&a.container_id, &asked)?;
    let (allow, cidr) = asked.texts();
    println!(
        "{}",
        serde_json::json!({"allow": allow, "allow-cidr": cidr})
    );
    Ok(0)
}

/// `--copy-in DIR`: DIR's files into a sandbox's fresh workspace.
pub fn copy_into(from: &Path, workspace: &Path) -> Result<()> {
    let open = |p: &Path| {
        nix::fcntl::open(
            p,
            nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .with_context(|| format!("--copy-in: open {}", p.display()))
    };
    let (src, dst) = (open(from)?, open(workspace)?);
    phantom_runtime::rootfs::copy::copy_tree(
        std::os::fd::AsRawFd::as_raw_fd(&src),
        std::os::fd::AsRawFd::as_raw_fd(&dst),
    )
    .with_context(|| {
        format!(
            "--copy-in: copy {} into {}",
            from.display(),
            workspace.display()
        )
    })
}

/// Point fds 0-2 at /dev/null; returns copies of the old ones.
fn detach_stdio() -> Result<[i32; 3]> {
    let mut saved = [-1; 3];
    // SAFETY: plain fd calls on stdio and a freshly opened /dev/null.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if null < 0 {
            bail!("cannot open /dev/null: {}", std::io::Error::last_os_error());
        }
        for (fd, slot) in saved.iter_mut().enumerate() {
            *slot = libc::fcntl(fd as i32, libc::F_DUPFD_CLOEXEC, 10);
            libc::dup2(null, fd as i32);
        }
        libc::close(null);
    }
    Ok(saved)
}

fn restore_stdio(saved: [i32; 3]) {
    for (fd, old) in saved.iter().enumerate() {
        if *old >= 0 {
            // SAFETY: `old` is a descriptor we duplicated; put it back.
            unsafe {
                libc::dup2(*old, fd as i32);
                libc::close(*old);
            }
        }
    }
}

/// Before `--`: `[ID]` when a command follows `--`, else the command itself.
fn split_id_and_command(
    before: &[String],
    after: &[String],
) -> Result<(Option<String>, Vec<String>)> {
    if !after.is_empty() {
        return match before {
            [] => Ok((None, after.to_vec())),
            [id] => Ok((Some(id.clone()), after.to_vec())),
            _ => bail!(
                "expected [ID] -- CMD..., got {} words before --",
                before.len()
            ),
        };
    }
    Ok((None, before.to_vec()))
}

/// `phantom zygote-serve` (started by the daemon): one warm sandbox of
/// `--profile`, served on `--socket` until used or told to stop.
pub fn zygote_serve(store: &StateStore, a: &crate::cli::ZygoteServe) -> Result<i32> {
    use phantom_zygote::runner;
    let sfd = runner::become_runner()?;
    if let Some(cid) = &a.exec {
        let st = container::state(store, cid)?;
        if !st.annotations.contains_key(sandbox::PROFILE) {
            bail!(
                "--exec {cid:?}: warm exec is for phantom's sandboxes; {cid:?} is an OCI container"
            );
        }
        let process = container::exec_process(
            st.process.as_ref(),
            &container::ExecArgs {
                args: vec!["true".into()],
                ..Default::default()
            },
        )?;
        let opts = container::ExecOptions {
            id: cid.clone(),
            process,
            ..Default::default()
        };
        return runner::serve_exec(store, &sfd, &opts, &a.socket);
    }
    let (Some(profile), Some(id)) = (&a.profile, &a.id) else {
        bail!("zygote-serve needs --profile and --id, or --exec");
    };
    if !id.starts_with(phantom_zygote::ZYGOTE_PREFIX) {
        bail!(
            "--id {id:?}: zygote ids start with {:?}",
            phantom_zygote::ZYGOTE_PREFIX
        );
    }
    let args = SandboxArgs {
        profile: Some(profile.clone()),
        profile_path: a.profile_path.clone(),
        ..Default::default()
    };
    // The command comes with the request; the config needs one meanwhile.
    let p = prepare(
        store,
        &args,
        Some(id.clone()),
        vec!["true".into()],
        false,
        Err("not yet for warm zygotes"),
    )?;
    let kind = if a.python {
        runner::Kind::Python {
            modules: a
                .modules
                .split(',')
                .filter(|m| !m.is_empty())
                .map(str::to_string)
                .collect(),
        }
    } else {
        runner::Kind::Plain
    };
    runner::serve(
        store,
        &sfd,
        &runner::Prepared {
            id: p.id.clone(),
            bundle: p.bundle.clone(),
            annotations: p.annotations.clone(),
        },
        &a.socket,
        &kind,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("-1").is_err());
    }

    #[test]
    fn id_and_command() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            split_id_and_command(&s(&["python3", "-V"]), &[]).unwrap(),
            (None, s(&["python3", "-V"]))
        );
        assert_eq!(
            split_id_and_command(&s(&["box"]), &s(&["true"])).unwrap(),
            (Some("box".into()), s(&["true"]))
        );
        assert!(split_id_and_command(&s(&["a", "b"]), &s(&["true"])).is_err());
    }
}

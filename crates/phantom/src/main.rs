//! `phantom`: the runc command line wired to phantom-runtime.

#![cfg_attr(not(test), no_main)]

mod cli;
mod default_spec;
mod features;
mod logging;
mod policy_cmd;
mod sandbox_cmd;
mod server;
mod warm_or_cold;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::CommandFactory;
use phantom_runtime::container::{self, CreateOptions, ExecArgs, ExecOptions, RunOptions};
use phantom_runtime::state::{StateStore, DEFAULT_ROOT};

use cli::{Cli, Command, PolicyCmd, ProfileCmd};

// `main` is ours, not std's: std's start-up finds the main thread's stack
// bounds for its overflow guard (pthread_getattr_np, which parses
// /proc/self/maps: a tenth of `phantom --version`'s instructions), and
// every runtime verb pays that twice (the CVE-2019-5736 guard re-exec).
// What else it does is done in `start`: standard fds that are closed are
// opened on /dev/null, and SIGPIPE is ignored.
#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    start();
    phantom_main();
    // std's runtime would flush stdout on return; do it here.
    let _ = std::io::stdout().flush();
    0
}

/// std's start-up duties that phantom relies on (see `main`).
#[cfg_attr(test, allow(dead_code))]
fn start() {
    for fd in 0..=2 {
        // SAFETY: fcntl and open on small integer fds; no memory is passed
        // but a NUL-terminated literal.
        unsafe {
            if libc::fcntl(fd, libc::F_GETFD) == -1
                && std::io::Error::last_os_error().raw_os_error() == Some(libc::EBADF)
                && libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) == -1
            {
                libc::abort();
            }
        }
    }
    // SAFETY: setting a signal's disposition to SIG_IGN has no handler
    // code to be unsafe about; writes to a closed pipe then fail with EPIPE.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

#[cfg_attr(test, allow(dead_code))]
fn phantom_main() {
    let cli = parse_cli();
    if cli.version {
        print!("{}", cli::version_text());
        return;
    }
    let format = match logging::parse_format(cli.global.log_format.as_deref()) {
        Ok(f) => f,
        Err(e) => fail(&e, false),
    };
    let to_file = match logging::init(cli.global.log.as_deref(), format, cli.global.debug) {
        Ok(t) => t,
        Err(e) => fail(&e, false),
    };
    let verb = Verb::of(&cli);
    match dispatch(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            tracing::error!("{e:#}");
            let code = verb.exit_code(&e);
            fail_with(&e, to_file, code)
        }
    }
}

/// Parse the command line. The command tree is leaked: freeing clap's
/// structures took as long as building them, and the process is short.
#[cfg_attr(test, allow(dead_code))]
fn parse_cli() -> Cli {
    use clap::FromArgMatches;
    let cmd: &'static mut clap::Command = Box::leak(Box::new(Cli::command()));
    let mut matches = cmd
        .try_get_matches_from_mut(go_runc_spellings(std::env::args_os()))
        .unwrap_or_else(|e| e.exit());
    let cli = Cli::from_arg_matches_mut(&mut matches).unwrap_or_else(|e| e.format(cmd).exit());
    std::mem::forget(matches);
    cli
}

/// containerd's shim (go-runc `Restore`) passes `-no-subreaper` with one
/// dash, which runc's flag parser (urfave/cli) accepts and clap does not.
fn go_runc_spellings(
    args: impl Iterator<Item = std::ffi::OsString>,
) -> impl Iterator<Item = std::ffi::OsString> {
    args.map(|a| {
        if a == "-no-subreaper" {
            "--no-subreaper".into()
        } else {
            a
        }
    })
}

/// Exit status of a request that would loosen its profile
/// (`phantom_policy::NarrowingError`): clap's status for a usage error.
const EXIT_LOOSENS_PROFILE: i32 = 2;

/// What decides the exit status of a failed command.
enum Verb {
    /// runc 1.1 exits 255 when `exec` fails (`fatalWithCode(..., 255)`),
    /// so that a caller can tell it from the program's own status.
    Exec,
    /// `create --profile`: the daemon's backend tells "already exists"
    /// (HTTP 409) from other failures by the exit status, not the text.
    SandboxCreate,
    Other,
}

impl Verb {
    fn of(cli: &Cli) -> Verb {
        match &cli.command {
            Some(Command::Exec(_)) => Verb::Exec,
            Some(Command::Create(a)) if a.sandbox.profile.is_some() => Verb::SandboxCreate,
            _ => Verb::Other,
        }
    }

    fn exit_code(&self, e: &anyhow::Error) -> i32 {
        let exists = e.chain().any(|c| {
            matches!(
                c.downcast_ref::<phantom_runtime::Error>(),
                Some(phantom_runtime::Error::AlreadyExists(_))
            )
        });
        // A request that would loosen its profile is refused like a usage
        // error (clap's 2), whichever verb made it: told by the type.
        let loosens = e.chain().any(|c| {
            c.downcast_ref::<phantom_policy::NarrowingError>().is_some()
                || c.is::<phantom_policy::EgressNarrowingError>()
                || c.is::<sandbox_cmd::WorkspaceSizeError>()
                || c.is::<phantom_zygote::client::Refused>()
        });
        match self {
            _ if loosens => EXIT_LOOSENS_PROFILE,
            Verb::Exec => 255,
            Verb::SandboxCreate if exists => phantom_zygote::backend::EXIT_ALREADY_EXISTS,
            _ => 1,
        }
    }
}

fn fail(e: &anyhow::Error, also_stderr: bool) -> ! {
    fail_with(e, also_stderr, 1)
}

fn fail_with(e: &anyhow::Error, also_stderr: bool, code: i32) -> ! {
    if also_stderr || !tracing::dispatcher::has_been_set() {
        eprintln!("phantom: {e:#}");
    }
    std::process::exit(code)
}

fn paths(p: &Option<PathBuf>) -> Vec<PathBuf> {
    p.iter().cloned().collect()
}

fn policy_source(
    file: &Option<PathBuf>,
    profile: &Option<String>,
) -> Result<policy_cmd::PolicySource> {
    match (file, profile) {
        (Some(f), None) => Ok(policy_cmd::PolicySource::File(f.clone())),
        (None, Some(p)) => Ok(policy_cmd::PolicySource::Profile(p.clone())),
        _ => bail!("give either a FILE or --profile NAME"),
    }
}

/// Sandbox flags without --profile are a mistake worth naming.
fn no_sandbox_flags(s: &cli::SandboxArgs, name: bool) -> Result<()> {
    if s.workspace.is_some()
        || s.mode.is_some()
        || s.network.is_some()
        || s.memory.is_some()
        || s.cpus.is_some()
        || s.pids.is_some()
        || !s.env.is_empty()
        || s.profile_path.is_some()
        || s.copy_in.is_some()
        || name
    {
        bail!("--workspace, --copy-in, --mode, --network, --memory, --cpus, --pids, --env and --name go with --profile");
    }
    Ok(())
}

fn check_global(cli: &Cli) -> Result<()> {
    if cli.global.systemd_cgroup && !Path::new("/run/systemd/system").exists() {
        bail!(
            "--systemd-cgroup: systemd is not PID 1 on this host, so it cannot manage cgroups; \
             use the cgroupfs driver instead (drop --systemd-cgroup; in Podman set cgroup_manager = \"cgroupfs\")"
        );
    }
    match cli.rootless.as_deref() {
        None | Some("false") | Some("auto") if nix::unistd::geteuid().is_root() => Ok(()),
        None | Some("auto") | Some("true") => {
            bail!(
                "rootless containers (running phantom as a non-root user) are not implemented yet"
            )
        }
        Some("false") => bail!("phantom must run as root (rootless mode is not implemented yet)"),
        Some(other) => bail!("--rootless: {other:?} is not one of true, false, auto"),
    }
}

fn dispatch(cli: Cli) -> Result<i32> {
    let Some(command) = cli.command.as_ref() else {
        Cli::command().print_help()?;
        return Ok(1);
    };
    let store = StateStore::new(
        cli.global
            .root
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT)),
    );
    // Commands that only read or print need neither root nor the guard.
    if !matches!(
        command,
        Command::Spec(_) | Command::Features(_) | Command::Profile(_) | Command::Policy(_)
    ) {
        check_global(&cli)?;
    }
    match command {
        Command::Create(a) if a.sandbox.profile.is_some() => {
            phantom_runtime::exe_guard::ensure_sealed()?;
            sandbox_cmd::create(&store, a)
        }
        Command::Create(a) => {
            phantom_runtime::exe_guard::ensure_sealed()?;
            no_sandbox_flags(&a.sandbox, a.name.is_some())?;
            container::create(
                &store,
                &CreateOptions {
                    id: a
                        .container_id
                        .clone()
                        .ok_or_else(|| anyhow!("create: the container id is missing"))?,
                    bundle: a.bundle.clone(),
                    console_socket: a.console_socket.clone(),
                    pid_file: a.pid_file.clone(),
                    no_pivot: a.no_pivot,
                    preserve_fds: a.preserve_fds,
                    console_fd: None,
                    zygote: false,
                    no_new_keyring: a.no_new_keyring,
                    systemd_cgroup: cli.global.systemd_cgroup,
                },
            )?;
            Ok(0)
        }
        Command::Start(a) => {
            container::start(&store, &a.container_id)?;
            Ok(0)
        }
        Command::State(a) => {
            let st = container::state(&store, &a.container_id)?;
            println!("{}", serde_json::to_string_pretty(&st.oci_json())?);
            Ok(0)
        }
        Command::Kill(a) => {
            let sig = container::parse_signal(&a.signal)?;
            container::kill(&store, &a.container_id, sig, a.all)?;
            Ok(0)
        }
        Command::Delete(a) => {
            container::delete(&store, &a.container_id, a.force)?;
            Ok(0)
        }
        // The binary guard is the cold path's business (sandbox_cmd::run):
        // the warm path forks nothing.
        Command::Run(a) if a.sandbox.profile.is_some() => sandbox_cmd::run(&store, a),
        Command::Run(a) => {
            phantom_runtime::exe_guard::ensure_sealed()?;
            no_sandbox_flags(&a.sandbox, false)?;
            if !a.command.is_empty() || a.args.len() != 1 {
                bail!("run: expected one container id (a command after -- needs --profile)");
            }
            let code = container::run(
                &store,
                &RunOptions {
                    create: CreateOptions {
                        id: a.args[0].clone(),
                        bundle: a.bundle.clone(),
                        console_socket: a.console_socket.clone(),
                        pid_file: a.pid_file.clone(),
                        no_pivot: a.no_pivot,
                        preserve_fds: a.preserve_fds,
                        console_fd: None,
                        zygote: false,
                        no_new_keyring: a.no_new_keyring,
                        systemd_cgroup: cli.global.systemd_cgroup,
                    },
                    detach: a.detach,
                    keep: a.keep,
                    timeout: a
                        .timeout
                        .as_deref()
                        .map(sandbox_cmd::parse_duration)
                        .transpose()?,
                    interrupt_kills: false,
                },
            )?;
            Ok(code)
        }
        Command::List(a) => list(&store, &a.format, a.quiet),
        Command::Spec(a) => match &a.profile {
            Some(name) => policy_cmd::spec_profile(&paths(&a.profile_path), name, None, None, &[]),
            None => spec(a.bundle.as_deref(), a.rootless),
        },
        Command::Monitor(a) => {
            if !(a.interval > 0.0 && a.interval.is_finite()) {
                bail!(
                    "--interval {}: must be a positive number of seconds",
                    a.interval
                );
            }
            phantom_runtime::sandbox::monitor::monitor(
                &store,
                &a.container_id,
                std::time::Duration::from_secs_f64(a.interval),
                phantom_runtime::sandbox::monitor::Format::auto(a.metrics),
                a.count,
                &mut std::io::stdout().lock(),
            )?;
            Ok(0)
        }
        Command::Daemon(a) => server::exec("daemon", &cli.global, store.root(), &a.args),
        Command::ZygoteServe(a) => {
            phantom_runtime::exe_guard::ensure_sealed()?;
            sandbox_cmd::zygote_serve(&store, a)
        }
        Command::Destroy(a) => {
            let res = phantom_runtime::sandbox::destroy(&store, &a.container_id, a.keep_workspace);
            // Its egress network goes whatever became of the container.
            phantom_egress::host::remove_sandbox(&a.container_id)?;
            res?;
            Ok(0)
        }
        Command::Network(a) => sandbox_cmd::network(&store, a),
        Command::Profile(ProfileCmd::List {
            benchmark,
            profile_path,
        }) => policy_cmd::profile_list(&paths(profile_path), *benchmark),
        Command::Profile(ProfileCmd::Show { name, profile_path }) => {
            policy_cmd::profile_show(&paths(profile_path), name)
        }
        Command::Policy(PolicyCmd::Compile {
            file,
            profile,
            profile_path,
        }) => {
            policy_cmd::policy_compile(&paths(profile_path), &policy_source(file, profile)?, None)
        }
        Command::Policy(PolicyCmd::Explain {
            file,
            profile,
            profile_path,
        }) => policy_cmd::policy_explain(&paths(profile_path), &policy_source(file, profile)?),
        Command::Features(_) => {
            println!("{}", serde_json::to_string_pretty(&features::features())?);
            Ok(0)
        }
        Command::Exec(a) => exec(&store, a),
        Command::Ps(a) => ps(&store, a),
        Command::Pause(a) => {
            container::pause(&store, &a.container_id)?;
            Ok(0)
        }
        Command::Resume(a) => {
            container::resume(&store, &a.container_id)?;
            Ok(0)
        }
        Command::Update(a) => update(&store, a),
        Command::Events(a) => {
            container::events::stream(
                &store,
                &a.container_id,
                std::time::Duration::from_secs(u64::from(a.interval.max(1))),
                a.stats,
                &mut std::io::stdout().lock(),
            )?;
            Ok(0)
        }
        Command::Checkpoint(a) => {
            container::checkpoint(
                &store,
                &container::CheckpointOptions {
                    id: a.container_id.clone(),
                    image_path: a.image_path.clone(),
                    work_path: a.work_path.clone(),
                    parent_path: a.parent_path.clone(),
                    leave_running: a.leave_running,
                    tcp_established: a.tcp_established,
                    ext_unix_sk: a.ext_unix_sk,
                    shell_job: a.shell_job,
                    file_locks: a.file_locks,
                    link_remap: a.link_remap,
                    manage_cgroups_mode: a.manage_cgroups_mode.clone(),
                    empty_ns: a.empty_ns.clone(),
                    pre_dump: a.pre_dump,
                    auto_dedup: a.auto_dedup,
                    status_fd: a.status_fd,
                    criu: cli.criu.clone(),
                },
            )?;
            Ok(0)
        }
        Command::Restore(a) => {
            let (_, code) = container::restore(
                &store,
                &container::RestoreOptions {
                    id: a.container_id.clone(),
                    bundle: a.bundle.clone(),
                    image_path: a.image_path.clone(),
                    work_path: a.work_path.clone(),
                    detach: a.detach,
                    pid_file: a.pid_file.clone(),
                    console_socket: a.console_socket.clone(),
                    no_pivot: a.no_pivot,
                    tcp_established: a.tcp_established,
                    ext_unix_sk: a.ext_unix_sk,
                    shell_job: a.shell_job,
                    file_locks: a.file_locks,
                    manage_cgroups_mode: a.manage_cgroups_mode.clone(),
                    empty_ns: a.empty_ns.clone(),
                    auto_dedup: a.auto_dedup,
                    lazy_pages: a.lazy_pages,
                    criu: cli.criu.clone(),
                },
            )?;
            Ok(code.unwrap_or(0))
        }
        Command::Mcp(a) => server::exec("mcp", &cli.global, store.root(), &a.args),
    }
}

/// A warm exec: the daemon has (or starts, for next time) a process already
/// joined to the sandbox. Only for phantom's own sandboxes and plain
/// invocations: what engines pass (--process, --detach, --pid-file, a
/// terminal) always takes the cold path, so their process stays theirs.
fn exec_warm(store: &StateStore, c: &cli::ExecCmd) -> Result<Option<i32>> {
    let a = &c.oci;
    if warm_or_cold::exec(c).log("this exec") != warm_or_cold::Route::Warm {
        return Ok(None);
    }
    let Ok(st) = container::state(store, &a.container_id) else {
        return Ok(None);
    };
    // A paused sandbox's warm exec is frozen with it: the cold path says
    // what is wrong (or honours --ignore-paused).
    if st.status != phantom_runtime::state::Status::Running
        || !st
            .annotations
            .contains_key(phantom_runtime::sandbox::PROFILE)
    {
        return Ok(None);
    }
    let socket = phantom_zygote::socket_path(c.daemon_socket.as_deref());
    let lease = match phantom_zygote::client::acquire_exec(&socket, store.root(), &a.container_id) {
        Ok(l) => l,
        Err(why) => {
            tracing::debug!("no warm exec ({why}); cold path");
            return Ok(None);
        }
    };
    tracing::debug!("warm path: exec zygote {}", lease.socket.display());
    let env: Vec<String> = a.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let f = lease.run_in(&a.command, &env, a.cwd.as_deref(), None, [0, 1, 2])?;
    if let Some(e) = &f.error {
        eprintln!("phantom: {e}");
    }
    Ok(Some(f.status))
}

fn exec(store: &StateStore, c: &cli::ExecCmd) -> Result<i32> {
    if let Some(code) = exec_warm(store, c)? {
        return Ok(code);
    }
    let a = &c.oci;
    if a.process_label.as_deref().is_some_and(|s| !s.is_empty()) {
        bail!("exec --process-label: SELinux is not implemented yet");
    }
    if a.apparmor.as_deref().is_some_and(|s| !s.is_empty()) {
        bail!("exec --apparmor: AppArmor is not implemented yet");
    }
    if a.cgroup.is_some() {
        bail!("exec --cgroup: choosing a sub-cgroup is not implemented yet");
    }
    phantom_runtime::exe_guard::ensure_sealed()?;
    let process = match &a.process {
        Some(path) => {
            let data = std::fs::read(path)
                .with_context(|| format!("--process: cannot read {}", path.display()))?;
            phantom_runtime::spec::parse_process(&data)?
        }
        None => {
            let st = container::state(store, &a.container_id)?;
            container::exec_process(
                st.process.as_ref(),
                &ExecArgs {
                    args: a.command.clone(),
                    env: a.env.clone(),
                    cwd: a.cwd.clone(),
                    user: a.user,
                    additional_gids: a.additional_gids.clone(),
                    tty: a.tty,
                    caps: a.cap.clone(),
                    no_new_privs: a.no_new_privs,
                },
            )?
        }
    };
    let code = container::exec(
        store,
        &ExecOptions {
            id: a.container_id.clone(),
            process,
            console_socket: a.console_socket.clone(),
            pid_file: a.pid_file.clone(),
            detach: a.detach,
            preserve_fds: a.preserve_fds,
            ignore_paused: a.ignore_paused,
        },
    )?;
    Ok(code)
}

fn ps(store: &StateStore, a: &liboci_cli::Ps) -> Result<i32> {
    let pids = container::ps::pids(store, &a.container_id)?;
    match a.format.as_str() {
        "json" => println!("{}", serde_json::to_string(&pids)?),
        "table" => {
            let args: Vec<String> = if a.ps_options.is_empty() {
                vec!["-ef".into()]
            } else {
                a.ps_options.clone()
            };
            let out = std::process::Command::new("ps")
                .args(&args)
                .output()
                .context("ps: cannot run ps")?;
            if !out.status.success() {
                bail!(
                    "ps {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            let text = String::from_utf8_lossy(&out.stdout);
            print!("{}", container::ps::filter_ps_output(&text, &pids)?);
        }
        other => bail!("--format: unknown format {other:?} (table or json)"),
    }
    Ok(0)
}

fn update(store: &StateStore, a: &liboci_cli::Update) -> Result<i32> {
    use serde_json::{json, Map, Value};
    if a.l3_cache_schema.is_some() || a.mem_bw_schema.is_some() {
        bail!("update: Intel RDT (--l3-cache-schema, --mem-bw-schema) is not implemented yet");
    }
    let mut r: Value = match &a.resources {
        Some(p) => {
            let data = if p.as_os_str() == "-" {
                let mut v = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut v)
                    .context("--resources -: cannot read stdin")?;
                v
            } else {
                std::fs::read(p)
                    .with_context(|| format!("--resources: cannot read {}", p.display()))?
            };
            serde_json::from_slice(&data).context("--resources: not JSON")?
        }
        None => json!({}),
    };
    // The flag forms override the file, as in runc.
    let mut set = |section: &str, key: &str, v: Value| {
        let obj = r.as_object_mut().expect("resources is an object");
        obj.entry(section)
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .map(|o| o.insert(key.to_string(), v));
    };
    if let Some(v) = a.memory {
        set("memory", "limit", json!(v));
    }
    if let Some(v) = a.memory_reservation {
        set("memory", "reservation", json!(v));
    }
    if let Some(v) = a.memory_swap {
        set("memory", "swap", json!(v));
    }
    if let Some(v) = a.cpu_share {
        set("cpu", "shares", json!(v));
    }
    if let Some(v) = a.cpu_quota {
        set("cpu", "quota", json!(v));
    }
    if let Some(v) = a.cpu_period {
        set("cpu", "period", json!(v));
    }
    if let Some(v) = a.cpu_rt_period {
        set("cpu", "realtimePeriod", json!(v));
    }
    if let Some(v) = a.cpu_rt_runtime {
        set("cpu", "realtimeRuntime", json!(v));
    }
    if let Some(v) = &a.cpuset_cpus {
        set("cpu", "cpus", json!(v));
    }
    if let Some(v) = &a.cpuset_mems {
        set("cpu", "mems", json!(v));
    }
    if let Some(v) = a.pids_limit {
        set("pids", "limit", json!(v));
    }
    if let Some(v) = a.blkio_weight {
        set("blockIO", "weight", json!(v));
    }
    let resources = container::parse_resources(&serde_json::to_vec(&r)?)?;
    container::update(store, &a.container_id, &resources)?;
    Ok(0)
}

fn list(store: &StateStore, format: &str, quiet: bool) -> Result<i32> {
    let all = container::list(store)?;
    let mut out = std::io::stdout().lock();
    if quiet {
        for st in &all {
            writeln!(out, "{}", st.id)?;
        }
        return Ok(0);
    }
    match format {
        "json" => {
            let v: Vec<_> = all.iter().map(|s| s.oci_json()).collect();
            writeln!(out, "{}", serde_json::to_string(&v)?)?;
        }
        "table" => {
            let rows: Vec<[String; 7]> = all
                .iter()
                .map(|s| {
                    [
                        s.id.clone(),
                        s.pid.unwrap_or(0).to_string(),
                        s.status.to_string(),
                        s.bundle.display().to_string(),
                        s.created.clone(),
                        s.owner.clone(),
                        // Sandboxes made from a profile say which; OCI containers "-".
                        s.annotations
                            .get(phantom_runtime::sandbox::PROFILE)
                            .cloned()
                            .unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            let head = [
                "ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER", "PROFILE",
            ]
            .map(String::from);
            let mut w = [0usize; 7];
            for r in std::iter::once(&head).chain(rows.iter()) {
                for (i, c) in r.iter().enumerate() {
                    w[i] = w[i].max(c.len());
                }
            }
            for r in std::iter::once(&head).chain(rows.iter()) {
                let line: Vec<String> = r
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!("{c:<width$}", width = w[i]))
                    .collect();
                writeln!(out, "{}", line.join("   ").trim_end())?;
            }
        }
        other => bail!("--format: unknown format {other:?} (table or json)"),
    }
    Ok(0)
}

fn spec(bundle: Option<&Path>, rootless: bool) -> Result<i32> {
    let dir = bundle.unwrap_or(Path::new("."));
    let path = dir.join("config.json");
    if path.exists() {
        bail!("{} exists already: remove it first", path.display());
    }
    let data = serde_json::to_string_pretty(&default_spec::default_spec(rootless))?;
    std::fs::write(&path, data + "\n")
        .with_context(|| format!("cannot write {}", path.display()))
        .map_err(|e| anyhow!("{e:#}"))?;
    Ok(0)
}

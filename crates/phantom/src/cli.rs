//! The command line: runc's, from liboci-cli, plus phantom's global flags.

use clap::{Args, Parser, Subcommand};
use liboci_cli::GlobalOpts;

#[derive(Parser, Debug)]
#[command(
    name = "phantom",
    about = "A runc-compatible OCI container runtime with warm zygotes and AOT-compiled policies",
    disable_version_flag = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,

    /// Ignore cgroup permission errors: true, false or auto (as runc)
    #[arg(long, value_name = "true|false|auto")]
    pub rootless: Option<String>,

    /// Print the version
    #[arg(short = 'v', long)]
    pub version: bool,

    /// The CRIU binary for checkpoint/restore (as runc's --criu; default
    /// $PHANTOM_CRIU, /opt/phantom-criu/bin/criu, then criu on PATH)
    #[arg(long, value_name = "PATH")]
    pub criu: Option<std::path::PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// runc's commands (liboci-cli's definitions, except `kill`, whose signal
/// is optional as in runc, and `create`, `run` and `spec`, which also take
/// a profile instead of a bundle), and phantom's sandbox commands.
#[derive(Subcommand, Debug)]
// Each subcommand's arguments are built only when it is the one invoked:
// building all of them was a third of `phantom --version`'s instructions.
#[command(defer = true)]
pub enum Command {
    Create(Box<Create>),
    Start(liboci_cli::Start),
    State(liboci_cli::State),
    Kill(Kill),
    Delete(liboci_cli::Delete),
    Run(Box<Run>),
    List(liboci_cli::List),
    Spec(Spec),
    Features(liboci_cli::Features),
    Exec(Box<ExecCmd>),
    Ps(liboci_cli::Ps),
    Pause(liboci_cli::Pause),
    Resume(liboci_cli::Resume),
    Update(liboci_cli::Update),
    Events(liboci_cli::Events),
    /// Checkpoint a running container with CRIU
    Checkpoint(Box<Checkpoint>),
    /// Restore a container from a CRIU checkpoint
    Restore(Box<Restore>),
    /// Live CPU, memory, pids and I/O of a sandbox or container
    Monitor(Monitor),
    /// Remove a sandbox: its container, bundle and (unless kept) workspace
    Destroy(Destroy),
    /// Show or replace the egress allowlists of a running sandbox
    Network(NetworkCmd),
    /// Built-in and user profiles
    #[command(subcommand)]
    Profile(ProfileCmd),
    /// Compile or explain a policy
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Serve the Model Context Protocol (stdio or streamable HTTP) for agents
    /// (run by phantom-server; `phantom mcp --help` lists its flags)
    #[command(disable_help_flag = true)]
    Mcp(ServerVerb),
    /// Keep warm zygote pools for `phantom run --profile` (run by
    /// phantom-server; `phantom daemon --help` lists its flags)
    #[command(disable_help_flag = true)]
    Daemon(ServerVerb),
    #[command(hide = true)]
    ZygoteServe(ZygoteServe),
}

/// The arguments of a verb that `phantom-server` runs, passed to it as they
/// came: the runtime binary an engine executes carries no server code.
#[derive(Args, Debug)]
pub struct ServerVerb {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<std::ffi::OsString>,
}

/// runc's `exec`, and the daemon flags of phantom's warm exec.
#[derive(Args, Debug)]
pub struct ExecCmd {
    /// The daemon's socket for a warm exec in a sandbox (default
    /// $PHANTOM_DAEMON_SOCKET or /run/phantom/daemon.sock)
    #[arg(long)]
    pub daemon_socket: Option<std::path::PathBuf>,
    /// Never use the daemon: always the cold path
    #[arg(long)]
    pub no_daemon: bool,
    #[command(flatten)]
    pub oci: liboci_cli::Exec,
}

/// What turns a profile into a sandbox (shared by `run` and `create`).
#[derive(Args, Debug, Clone, Default)]
pub struct SandboxArgs {
    /// Run from a profile (built-in or from --profile-path) instead of a bundle
    #[arg(long)]
    pub profile: Option<String>,
    /// Extra directory of profile YAML files (also $PHANTOM_PROFILE_PATH)
    #[arg(long)]
    pub profile_path: Option<std::path::PathBuf>,
    /// Host directory mounted read-write at /workspace (default: a fresh one)
    #[arg(long)]
    pub workspace: Option<std::path::PathBuf>,
    /// direct, sandbox or hardened (default: the profile's)
    #[arg(long)]
    pub mode: Option<String>,
    /// none, loopback, egress or host (default: the profile's)
    #[arg(long)]
    pub network: Option<String>,
    /// With --network egress: a name, '*.suffix' or name:port the sandbox
    /// may reach (repeatable; within the profile's allowlist if it has one)
    #[arg(long)]
    pub allow: Vec<String>,
    /// With --network egress: an address range the sandbox may reach on
    /// any TCP port (repeatable), e.g. 203.0.113.0/24
    #[arg(long)]
    pub allow_cidr: Vec<String>,
    /// Memory limit, e.g. 512MiB
    #[arg(long)]
    pub memory: Option<String>,
    /// CPU limit in cores, e.g. 1.5
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Maximum number of processes
    #[arg(long)]
    pub pids: Option<i64>,
    /// Most bytes the fresh workspace may hold, e.g. 256MiB (at most the
    /// profile's resources.workspace); a caller's --workspace directory
    /// cannot be limited
    #[arg(long, conflicts_with = "workspace")]
    pub workspace_size: Option<String>,
    /// Environment variable K=V for the command (repeatable)
    #[arg(long = "env", short = 'e')]
    pub env: Vec<String>,
    /// The daemon's socket for the warm path (default $PHANTOM_DAEMON_SOCKET
    /// or /run/phantom/daemon.sock)
    #[arg(long)]
    pub daemon_socket: Option<std::path::PathBuf>,
    /// Never use the daemon: always the cold path
    #[arg(long)]
    pub no_daemon: bool,
    /// Copy this directory's files into the sandbox's fresh workspace
    /// (unlike --workspace, this works on the warm path too)
    #[arg(long, conflicts_with = "workspace")]
    pub copy_in: Option<std::path::PathBuf>,
    /// The daemon's operator ceilings for the key it serves
    /// (`phantom daemon --allow-host-network`, `--max-memory`, `--max-pids`,
    /// `--max-cpus`, per key or not): --network, --memory, --pids, --cpus
    /// may go up to them beyond the profile's.
    /// Hidden: the daemon passes them after its own check; a local caller
    /// who runs phantom is the host's operator already.
    #[arg(long, hide = true)]
    pub raise_network: Option<String>,
    #[arg(long, hide = true)]
    pub raise_memory: Option<u64>,
    #[arg(long, hide = true)]
    pub raise_pids: Option<i64>,
    #[arg(long, hide = true)]
    pub raise_cpus: Option<f64>,
}

/// One zygote serving one request (started by the daemon)
#[derive(Args, Debug)]
pub struct ZygoteServe {
    #[arg(long, required_unless_present = "exec")]
    pub profile: Option<String>,
    #[arg(long)]
    pub socket: std::path::PathBuf,
    /// The zygote sandbox's id (chosen by the daemon, so it can remove it)
    #[arg(long, required_unless_present = "exec")]
    pub id: Option<String>,
    /// Instead: a process joined to this running sandbox, for a warm exec
    #[arg(long, conflicts_with_all = ["profile", "python"])]
    pub exec: Option<String>,
    #[arg(long)]
    pub profile_path: Option<std::path::PathBuf>,
    /// Run the Python fork server in the zygote
    #[arg(long)]
    pub python: bool,
    /// Modules the fork server imports up front (comma-separated)
    #[arg(long, default_value = "")]
    pub modules: String,
}

/// Create a container from a bundle, or a persistent sandbox from a profile
#[derive(Args, Debug)]
pub struct Create {
    /// Path to the bundle directory, containing config.json and root filesystem
    #[arg(short, long, default_value = ".")]
    pub bundle: std::path::PathBuf,
    /// Unix socket that receives the pty master of a terminal
    #[arg(long)]
    pub console_socket: Option<std::path::PathBuf>,
    /// File to write the container's pid to
    #[arg(long)]
    pub pid_file: Option<std::path::PathBuf>,
    /// Do not use pivot_root to jail the process inside the rootfs
    #[arg(long)]
    pub no_pivot: bool,
    /// Do not create a new session keyring for the container
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass N additional file descriptors to the container (stdio + $LISTEN_FDS + N in total)
    #[arg(long, default_value = "0")]
    pub preserve_fds: i32,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    /// The sandbox's name (with --profile), instead of the positional id
    #[arg(long)]
    pub name: Option<String>,
    /// Container id
    pub container_id: Option<String>,
}

/// Create and start a container from a bundle, or run a command in a sandbox
#[derive(Args, Debug)]
pub struct Run {
    /// Path to the bundle directory, containing config.json and root filesystem
    #[arg(short, long, default_value = ".")]
    pub bundle: std::path::PathBuf,
    /// Unix socket that receives the pty master of a terminal
    #[arg(long)]
    pub console_socket: Option<std::path::PathBuf>,
    /// File to write the container's pid to
    #[arg(long)]
    pub pid_file: Option<std::path::PathBuf>,
    /// Accepted for runc compatibility (phantom is always the subreaper)
    #[arg(long)]
    pub no_subreaper: bool,
    /// Do not use pivot_root to jail the process inside the rootfs
    #[arg(long)]
    pub no_pivot: bool,
    /// Do not create a new session keyring for the container
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass N additional file descriptors to the container (stdio + $LISTEN_FDS + N in total)
    #[arg(long, default_value = "0")]
    pub preserve_fds: i32,
    /// Keep the container's state directory and cgroup after it exits
    #[arg(long)]
    pub keep: bool,
    /// Detach from the container's process
    #[arg(short, long)]
    pub detach: bool,
    /// Kill everything after this long (e.g. 30s, 5m) and exit 124, like timeout(1)
    #[arg(long)]
    pub timeout: Option<String>,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    /// Container id; with --profile: [ID] CMD..., or [ID] -- CMD...
    pub args: Vec<String>,
    /// The command (after --)
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// Write a starting config.json (runc's defaults), or print a profile's
#[derive(Args, Debug)]
pub struct Spec {
    /// Directory to write config.json in (default: the current one)
    #[arg(long, short)]
    pub bundle: Option<std::path::PathBuf>,
    /// A config for a rootless container
    #[arg(long)]
    pub rootless: bool,
    /// Print the config.json this profile produces instead
    #[arg(long)]
    pub profile: Option<String>,
    /// Extra directory of profile YAML files (also $PHANTOM_PROFILE_PATH)
    #[arg(long)]
    pub profile_path: Option<std::path::PathBuf>,
}

#[derive(Args, Debug)]
pub struct Monitor {
    pub container_id: String,
    /// Prometheus text instead of a table or JSON lines
    #[arg(long)]
    pub metrics: bool,
    /// Seconds between samples
    #[arg(long, default_value = "1")]
    pub interval: f64,
    /// Stop after N samples (default: until the sandbox stops)
    #[arg(long)]
    pub count: Option<u64>,
}

/// `phantom network ID [--allow R]... [--allow-cidr C]...`: with no
/// list, print the lists; with lists, they replace the sandbox's (live,
/// within its profile's).
#[derive(Args, Debug)]
pub struct NetworkCmd {
    pub container_id: String,
    /// A name, '*.suffix' or name:port (repeatable; replaces the list)
    #[arg(long)]
    pub allow: Vec<String>,
    /// An address range (repeatable; replaces the list)
    #[arg(long)]
    pub allow_cidr: Vec<String>,
    /// Close everything: empty lists
    #[arg(long, conflicts_with_all = ["allow", "allow_cidr"])]
    pub clear: bool,
    /// Extra directory of profile YAML files (to find the sandbox's profile)
    #[arg(long)]
    pub profile_path: Option<std::path::PathBuf>,
}

#[derive(Args, Debug)]
pub struct Destroy {
    pub container_id: String,
    /// Keep the workspace directory
    #[arg(long)]
    pub keep_workspace: bool,
}

#[derive(Subcommand, Debug)]
pub enum ProfileCmd {
    /// Built-in and user profiles with their mode, network and filesystem
    List {
        /// Also measure the start of `true` under each profile
        #[arg(long)]
        benchmark: bool,
        #[arg(long)]
        profile_path: Option<std::path::PathBuf>,
    },
    /// Print a profile's YAML
    Show {
        name: String,
        #[arg(long)]
        profile_path: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum PolicyCmd {
    /// Compile a profile or an OCI config's seccomp, print key, size and time
    Compile {
        /// A profile YAML or an OCI config.json
        file: Option<std::path::PathBuf>,
        #[arg(long)]
        profile: Option<String>,
        #[arg(long)]
        profile_path: Option<std::path::PathBuf>,
    },
    /// Which syscalls a policy allows, with which conditions
    Explain {
        file: Option<std::path::PathBuf>,
        #[arg(long)]
        profile: Option<String>,
        #[arg(long)]
        profile_path: Option<std::path::PathBuf>,
    },
}

/// Send a signal to the container's init (or, with --all, every process)
#[derive(Args, Debug)]
pub struct Kill {
    /// Container identifier
    #[arg(value_parser = clap::builder::NonEmptyStringValueParser::new(), required = true)]
    pub container_id: String,
    /// Signal by name (TERM, SIGTERM) or number (15)
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
    /// Send the signal to all processes inside the container
    #[arg(short, long)]
    pub all: bool,
}

pub fn version_text() -> String {
    format!(
        "phantom version {}\nspec: {}\n",
        env!("CARGO_PKG_VERSION"),
        phantom_runtime::state::OCI_VERSION
    )
}

/// runc's `checkpoint` flags (runc-checkpoint.8).
#[derive(Args, Debug)]
pub struct Checkpoint {
    /// Path for saving CRIU image files
    #[arg(long, default_value = "checkpoint")]
    pub image_path: std::path::PathBuf,
    /// Path for saving work files and logs (default: the image path)
    #[arg(long)]
    pub work_path: Option<std::path::PathBuf>,
    /// Path of a previous image (a pre-dump), relative to the image path
    #[arg(long)]
    pub parent_path: Option<std::path::PathBuf>,
    /// Leave the process running after checkpointing
    #[arg(long)]
    pub leave_running: bool,
    /// Allow open TCP connections
    #[arg(long)]
    pub tcp_established: bool,
    /// Allow external unix sockets
    #[arg(long)]
    pub ext_unix_sk: bool,
    /// Allow shell jobs (a terminal)
    #[arg(long)]
    pub shell_job: bool,
    /// Link unlinked files back when possible
    #[arg(long)]
    pub link_remap: bool,
    /// Allow file locks
    #[arg(long)]
    pub file_locks: bool,
    /// Cgroups mode: soft (default), full, strict or ignore
    #[arg(long)]
    pub manage_cgroups_mode: Option<String>,
    /// Create a namespace, but do not restore its properties (network)
    #[arg(long)]
    pub empty_ns: Vec<String>,
    /// Dump the memory only, leave the container running (for a later
    /// dump with --parent-path)
    #[arg(long)]
    pub pre_dump: bool,
    /// Deduplicate the parent's image pages as they are dumped
    #[arg(long)]
    pub auto_dedup: bool,
    /// CRIU writes \0 to this fd when it is ready for lazy migration
    #[arg(long)]
    pub status_fd: Option<i32>,
    pub container_id: String,
}

/// runc's `restore` flags (runc-restore.8).
#[derive(Args, Debug)]
pub struct Restore {
    /// Path of the CRIU image files
    #[arg(long, default_value = "checkpoint")]
    pub image_path: std::path::PathBuf,
    /// Path for work files and logs (default: the image path)
    #[arg(long)]
    pub work_path: Option<std::path::PathBuf>,
    /// The bundle (default: the current directory)
    #[arg(short, long, default_value = ".")]
    pub bundle: std::path::PathBuf,
    /// Detach from the restored container
    #[arg(short, long)]
    pub detach: bool,
    /// File to write the restored init's pid to
    #[arg(long)]
    pub pid_file: Option<std::path::PathBuf>,
    /// Unix socket to send the new pty master to (a terminal container)
    #[arg(long)]
    pub console_socket: Option<std::path::PathBuf>,
    /// Accepted for runc compatibility (CRIU sets up the root itself)
    #[arg(long)]
    pub no_pivot: bool,
    /// Accepted for runc compatibility: restore sets no subreaper (the
    /// restored init is our child and is reaped by the waiting restore)
    #[arg(long)]
    pub no_subreaper: bool,
    /// Allow open TCP connections
    #[arg(long)]
    pub tcp_established: bool,
    /// Allow external unix sockets
    #[arg(long)]
    pub ext_unix_sk: bool,
    /// Allow shell jobs (a terminal)
    #[arg(long)]
    pub shell_job: bool,
    /// Allow file locks
    #[arg(long)]
    pub file_locks: bool,
    /// Cgroups mode: soft (default), full, strict or ignore
    #[arg(long)]
    pub manage_cgroups_mode: Option<String>,
    /// Namespaces restored empty (network)
    #[arg(long)]
    pub empty_ns: Vec<String>,
    /// Deduplicate image pages as they are restored
    #[arg(long)]
    pub auto_dedup: bool,
    /// Restore memory lazily (needs a running `criu lazy-pages`)
    #[arg(long)]
    pub lazy_pages: bool,
    pub container_id: String,
}

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

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// runc's commands. liboci-cli's definitions, except `kill`, whose signal
/// is optional (SIGTERM) as in runc.
#[derive(Subcommand, Debug)]
pub enum Command {
    Create(liboci_cli::Create),
    Start(liboci_cli::Start),
    State(liboci_cli::State),
    Kill(Kill),
    Delete(liboci_cli::Delete),
    Run(liboci_cli::Run),
    List(liboci_cli::List),
    Spec(liboci_cli::Spec),
    Features(liboci_cli::Features),
    Exec(Box<liboci_cli::Exec>),
    Ps(liboci_cli::Ps),
    Pause(liboci_cli::Pause),
    Resume(liboci_cli::Resume),
    Update(liboci_cli::Update),
    Events(liboci_cli::Events),
    Checkpoint(liboci_cli::Checkpoint),
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

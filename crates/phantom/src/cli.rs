//! The command line: runc's, from liboci-cli, plus phantom's global flags.

use clap::{Parser, Subcommand};
use liboci_cli::{CommonCmd, GlobalOpts, StandardCmd};

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

#[derive(Subcommand, Debug)]
pub enum Command {
    #[command(flatten)]
    Standard(Box<StandardCmd>),
    #[command(flatten)]
    Common(Box<CommonCmd>),
}

pub fn version_text() -> String {
    format!(
        "phantom version {}\nspec: {}\n",
        env!("CARGO_PKG_VERSION"),
        phantom_runtime::state::OCI_VERSION
    )
}

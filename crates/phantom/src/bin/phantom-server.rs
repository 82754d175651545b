//! `phantom-server`: the daemon (warm pools, REST API, metrics) and the MCP
//! server, apart from the runtime binary (see `phantom`'s server module).
//! Users call it as `phantom daemon ...` and `phantom mcp ...`; `phantom`
//! passes its global flags and the verb's arguments through unchanged.

#[path = "../logging.rs"]
mod logging;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use phantom_runtime::state::DEFAULT_ROOT;

#[derive(Parser, Debug)]
#[command(
    name = "phantom",
    bin_name = "phantom",
    about = "Phantom's daemon and MCP server (called as `phantom daemon` and `phantom mcp`)"
)]
struct ServerCli {
    /// State directory of the containers and sandboxes
    #[arg(long)]
    root: Option<PathBuf>,
    /// Log to this file instead of stderr
    #[arg(long)]
    log: Option<PathBuf>,
    /// Log format: text or json
    #[arg(long)]
    log_format: Option<String>,
    /// Debug logging
    #[arg(long)]
    debug: bool,
    #[command(subcommand)]
    command: ServerCmd,
}

#[derive(Subcommand, Debug)]
enum ServerCmd {
    /// Serve the Model Context Protocol (stdio or streamable HTTP) for agents
    Mcp(phantom_mcp::cli::McpArgs),
    /// Keep warm zygote pools for `phantom run --profile`
    Daemon(phantom_daemon::DaemonArgs),
    /// The egress proxy and resolver of one sandbox (started by phantom)
    #[command(hide = true)]
    Egress {
        /// The proxy's configuration (written by phantom)
        #[arg(long)]
        config: PathBuf,
    },
}

fn main() {
    let cli = ServerCli::parse();
    let to_file = match logging::parse_format(cli.log_format.as_deref())
        .and_then(|f| logging::init(cli.log.as_deref(), f, cli.debug))
    {
        Ok(to_file) => to_file,
        Err(e) => {
            eprintln!("phantom: {e:#}");
            std::process::exit(1)
        }
    };
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            tracing::error!("{e:#}");
            // A log file gets the line; the caller still sees why.
            if to_file || !tracing::dispatcher::has_been_set() {
                eprintln!("phantom: {e:#}");
            }
            std::process::exit(1)
        }
    }
}

fn run(cli: ServerCli) -> anyhow::Result<i32> {
    let root = cli.root.unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT));
    match cli.command {
        ServerCmd::Daemon(a) => {
            // The daemon forks and runs sandboxes' programs: like every
            // verb that makes processes, it runs from a read-only binary.
            if !a.status {
                phantom_runtime::exe_guard::ensure_sealed()?;
            }
            phantom_daemon::run(&root, &a)
        }
        ServerCmd::Mcp(a) => phantom_mcp::main(&a),
        ServerCmd::Egress { config } => phantom_egress::proxy::main(&config),
    }
}

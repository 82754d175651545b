//! `phantom mcp` options.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// JSON-RPC lines on stdin/stdout (one client: the process that started us)
    Stdio,
    /// MCP streamable HTTP on --listen (many clients, API keys required)
    Http,
}

/// Serve the Model Context Protocol: agents run code in phantom sandboxes
#[derive(Args, Debug, Clone)]
pub struct McpArgs {
    /// stdio or http
    #[arg(long, value_enum, default_value = "stdio")]
    pub transport: Transport,
    /// Address for --transport http (loopback unless you mean otherwise)
    #[arg(long, default_value = "127.0.0.1:8808")]
    pub listen: SocketAddr,
    /// File of API keys, one per line (mode 0600); required for http
    #[arg(long)]
    pub api_keys: Option<PathBuf>,
    /// An Origin browsers may call from, e.g. https://app.example.com:443
    /// (repeatable; default: only localhost origins)
    #[arg(long = "allow-origin")]
    pub allow_origin: Vec<String>,
    /// Write logs to FILE instead of stderr (never stdout)
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Log at debug level
    #[arg(long)]
    pub debug: bool,
    /// State directory for the sandboxes (passed to phantom as --root)
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// The phantom binary that runs sandboxes (default: this one)
    #[arg(long)]
    pub phantom_bin: Option<PathBuf>,
    /// Cap on each of stdout and stderr returned by a tool, e.g. 64KiB
    #[arg(long, default_value = "64KiB")]
    pub max_output: String,
    /// Timeout of a run when the caller gives none
    #[arg(long, default_value = "30s")]
    pub default_timeout: String,
    /// Largest timeout a caller may ask for
    #[arg(long, default_value = "10m")]
    pub max_timeout: String,
    /// Sandboxes (persistent ones plus runs in progress) one API key, or
    /// the stdio client, may have at once
    #[arg(long, default_value_t = 8)]
    pub max_sandboxes: usize,
    /// Largest HTTP request body, e.g. 4MiB
    #[arg(long, default_value = "4MiB")]
    pub max_body: String,
}

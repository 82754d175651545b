//! `phantom daemon` and `phantom mcp` run in `phantom-server`, a binary of
//! its own beside `phantom`. The runtime binary is what engines execute on
//! every container start (twice: the CVE-2019-5736 guard re-executes it),
//! so it carries no async runtime, HTTP stack or MCP code: every byte of
//! those costs relocations and page faults at each start. The verbs stay
//! where users know them; this module hands them over.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use liboci_cli::GlobalOpts;

/// Names the server binary to run instead of the one beside `phantom`.
pub const SERVER_BIN_ENV: &str = "PHANTOM_SERVER_BIN";

/// The `phantom-server` binary: `$PHANTOM_SERVER_BIN`, else the one beside
/// this `phantom`.
pub fn server_bin() -> Result<PathBuf> {
    let me = std::env::current_exe().context("locate the phantom binary")?;
    Ok(std::env::var_os(SERVER_BIN_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| me.with_file_name("phantom-server")))
}

/// Replace this process with `phantom-server [global flags] VERB ARGS...`.
/// Returns only on failure.
pub fn exec(verb: &str, g: &GlobalOpts, root: &Path, args: &[OsString]) -> Result<i32> {
    let me = std::env::current_exe().context("locate the phantom binary")?;
    let server = std::env::var_os(SERVER_BIN_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| me.with_file_name("phantom-server"));
    let mut cmd = std::process::Command::new(&server);
    cmd.arg("--root").arg(root);
    if let Some(log) = &g.log {
        cmd.arg("--log").arg(log);
    }
    if let Some(format) = &g.log_format {
        cmd.arg("--log-format").arg(format);
    }
    if g.debug {
        cmd.arg("--debug");
    }
    cmd.arg(verb)
        .args(args)
        .env(phantom_zygote::RUNTIME_BIN_ENV, &me);
    let e = cmd.exec();
    if e.kind() == std::io::ErrorKind::NotFound {
        bail!(
            "phantom {verb} is served by phantom-server, which is not at {}: install it beside \
             phantom (make install does), or name it with {SERVER_BIN_ENV}",
            server.display()
        );
    }
    Err(e).with_context(|| format!("run {}", server.display()))
}

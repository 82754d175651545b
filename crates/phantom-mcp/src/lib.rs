//! `phantom mcp`: a Model Context Protocol server (the official Rust SDK,
//! rmcp) over stdio or streamable HTTP. Agents run code in phantom
//! sandboxes through its tools; see docs/mcp.md.
//!
//! The server is multi-threaded (tokio), so it never forks a container
//! itself: every sandbox is made by running the phantom binary as a
//! subprocess ([`backend::Subprocess`], the cold path).

pub mod cli;
pub mod http;
pub mod server;

pub use phantom_zygote::{backend, files, parse_size, random_hex};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rmcp::ServiceExt;
use tokio_util::sync::CancellationToken;

use cli::{McpArgs, Transport};
use server::{PhantomMcp, Shared};

/// Durations: the tree's one reading (phantom_policy::units).
pub use phantom_policy::units::parse_duration;

fn log_dispatch(args: &McpArgs) -> Result<tracing::Dispatch> {
    let level = if args.debug {
        tracing::Level::DEBUG
    } else {
        tracing::Level::INFO
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .with_target(false);
    let d = match &args.log {
        Some(p) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("--log {}: cannot open", p.display()))?;
            tracing::Dispatch::new(builder.with_writer(Arc::new(f)).finish())
        }
        None => tracing::Dispatch::new(builder.with_writer(std::io::stderr).finish()),
    };
    Ok(d)
}

/// Runs the server until the client goes away (stdio) or SIGINT/SIGTERM.
pub fn main(args: &McpArgs) -> Result<i32> {
    let dispatch = log_dispatch(args)?;
    // The binary may have installed a global subscriber already; ours is
    // the default on every thread of this runtime (logs never go to
    // stdout, which carries the protocol on stdio).
    let _main_guard = tracing::dispatcher::set_default(&dispatch);
    let d2 = dispatch.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("phantom-mcp")
        .on_thread_start(move || {
            std::mem::forget(tracing::dispatcher::set_default(&d2));
        })
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(serve(args))?;
    // Do not wait for stray blocking tasks (a client stuck on a pipe).
    rt.shutdown_timeout(Duration::from_secs(2));
    Ok(0)
}

fn shared_from(args: &McpArgs) -> Result<Arc<Shared>> {
    let bin: PathBuf = match &args.phantom_bin {
        Some(b) => b.clone(),
        None => phantom_zygote::runtime_binary().context("cannot find the phantom binary")?,
    };
    let max_output = usize::try_from(parse_size(&args.max_output).context("--max-output")?)?;
    let default_timeout = parse_duration(&args.default_timeout).context("--default-timeout")?;
    let max_timeout = parse_duration(&args.max_timeout).context("--max-timeout")?;
    if args.max_sandboxes == 0 {
        bail!("--max-sandboxes must be at least 1");
    }
    let backend = backend::Subprocess {
        bin,
        root: args.root.clone(),
        max_output,
        sandbox_dir: None,
        profile_dirs: Vec::new(),
    };
    Ok(Shared::new(
        Arc::new(backend),
        max_output,
        default_timeout,
        max_timeout.max(default_timeout),
        args.max_sandboxes,
    ))
}

async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

async fn serve(args: &McpArgs) -> Result<()> {
    let shared = shared_from(args)?;
    match args.transport {
        Transport::Stdio => {
            tracing::info!("MCP over stdio");
            let handler = PhantomMcp::new(shared.clone());
            let running = handler
                .clone()
                .serve(rmcp::transport::stdio())
                .await
                .context("MCP handshake on stdio")?;
            tokio::select! {
                r = running.waiting() => {
                    if let Err(e) = r {
                        tracing::warn!("stdio session ended: {e}");
                    }
                }
                _ = stop_signal() => tracing::info!("signal: shutting down"),
            }
            server::end_session(&handler).await;
            shared.destroy_all().await;
            tracing::info!("stdio session closed");
        }
        Transport::Http => {
            let Some(keys_file) = &args.api_keys else {
                bail!("--transport http needs --api-keys FILE (one key per line, mode 0600)");
            };
            let keys = http::load_keys(keys_file)?;
            if !args.listen.ip().is_loopback() {
                tracing::warn!(
                    "listening on {} (not loopback): anyone who can reach it and holds a key can run code",
                    args.listen
                );
            }
            let max_body = parse_size(&args.max_body).context("--max-body")?;
            let stop = CancellationToken::new();
            let s2 = stop.clone();
            tokio::spawn(async move {
                stop_signal().await;
                tracing::info!("signal: shutting down");
                s2.cancel();
            });
            let res = http::serve(
                shared.clone(),
                args.listen,
                keys,
                &args.allow_origin,
                max_body,
                stop,
            )
            .await;
            shared.destroy_all().await;
            res?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("64KiB").unwrap(), 65536);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("12XB").is_err());
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("0").is_err());
    }
}

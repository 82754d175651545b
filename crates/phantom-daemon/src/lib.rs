//! `phantom daemon`: the supervisor of the warm path. It keeps per-profile
//! pools of zygotes (each owned by a `phantom zygote-serve` runner
//! process, so no container init is ever a child of this multi-threaded
//! process), answers `phantom run --profile` on its unix socket, and
//! serves the REST API with metrics, API keys, rate limits and an audit
//! log on `--listen`.

pub mod api;
pub mod audit;
pub mod config;
pub mod limit;
pub mod metrics;
pub mod pool;
pub mod pressure;
pub mod unix;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
pub use config::{Config, DaemonArgs};
use phantom_zygote::backend::Subprocess;

use crate::metrics::{Metrics, ProfileLabels};
use crate::pool::Pools;

pub use phantom_zygote::parse_size;

/// `phantom daemon`: runs until SIGTERM or SIGINT, then drains.
pub fn run(root: &Path, args: &DaemonArgs) -> Result<i32> {
    if args.status {
        // The socket from --socket, else --config's, else the default.
        let socket = match (&args.socket, &args.config) {
            (None, Some(_)) => Config::new(root, args)?.socket,
            _ => phantom_zygote::socket_path(args.socket.as_deref()),
        };
        let v = phantom_zygote::client::daemon_request(
            &socket,
            &phantom_zygote::proto::DaemonRequest::Pools,
        )?;
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    let cfg = Arc::new(Config::new(root, args)?);
    let metrics = Arc::new(Metrics::new());
    let profile_dirs =
        phantom_policy::Catalog::search_dirs(&cfg.profile_path.iter().cloned().collect::<Vec<_>>());
    // Every pool's profile must exist; compiling its policy now fills the
    // AOT cache before the first zygote needs it.
    let catalog = phantom_policy::Catalog::load(&profile_dirs);
    let cache = phantom_policy::PolicyCache::open_default();
    for p in &cfg.pools {
        let entry = catalog
            .get(&p.profile)
            .map_err(|e| anyhow!("pool {}: {e}", p.profile))?;
        let t0 = Instant::now();
        phantom_policy::compile_profile(&entry.profile, &cache)
            .map_err(|e| anyhow!("pool {}: policy: {e}", p.profile))?;
        metrics
            .policy_compile
            .get_or_create(&ProfileLabels {
                profile: p.profile.clone(),
            })
            .observe(t0.elapsed().as_secs_f64());
    }
    let keys = match (&cfg.listen, &cfg.api_keys) {
        (Some(_), Some(k)) => phantom_zygote::keys::load_keys(k)?,
        _ => Vec::new(),
    };
    let audit = match cfg.listen {
        Some(_) => Some(audit::Audit::open(&cfg.audit_log)?),
        None => None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start the async runtime")?;
    rt.block_on(serve(cfg, metrics, keys, audit, profile_dirs))
}

async fn serve(
    cfg: Arc<Config>,
    metrics: Arc<Metrics>,
    keys: Vec<(String, phantom_zygote::keys::KeyId)>,
    audit: Option<audit::Audit>,
    profile_dirs: Vec<std::path::PathBuf>,
) -> Result<i32> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let listener = unix::bind(&cfg.socket)?;
    let pools = Pools::new(Arc::clone(&cfg), Arc::clone(&metrics))?;
    let api = match audit {
        Some(audit) => Some(Arc::new(api::Api {
            pools: Arc::clone(&pools),
            metrics: Arc::clone(&metrics),
            keys,
            limit: limit::RateLimit::new(cfg.rate_limit),
            audit,
            backend: Subprocess {
                bin: phantom_zygote::runtime_binary().context("locate the phantom binary")?,
                root: Some(cfg.root.clone()),
                max_output: cfg.max_output,
                sandbox_dir: None,
                profile_dirs: profile_dirs.clone(),
            },
            max_output: cfg.max_output,
            profile_dirs,
            raises: cfg.raises.clone(),
            owned: Mutex::new(BTreeMap::new()),
            registry: registry_path(&cfg),
            draining: AtomicBool::new(false),
            inflight: std::sync::atomic::AtomicUsize::new(0),
            runs: tokio::sync::Semaphore::new(api::MAX_RUNS),
        })),
        None => None,
    };
    remove_left_sandboxes(&cfg).await;
    sweep_orphans(&cfg.root);
    let manager = tokio::spawn(Arc::clone(&pools).manage());
    let unix_task = tokio::spawn(unix::serve(listener, Arc::clone(&pools)));
    let shutdown = tokio_util::sync::CancellationToken::new();
    let http_task = match (&api, cfg.listen) {
        (Some(api), Some(addr)) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("--listen {addr}"))?;
            eprintln!("phantom daemon: REST API on http://{}", l.local_addr()?);
            let app = api::router(Arc::clone(api));
            let stop = shutdown.clone();
            Some(tokio::spawn(async move {
                axum::serve(l, app)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await
            }))
        }
        _ => None,
    };
    eprintln!("phantom daemon: listening on {}", cfg.socket.display());
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    eprintln!("phantom daemon: draining");
    // No new requests: the socket goes, the API answers 503, and running
    // requests get up to --drain-timeout.
    unix_task.abort();
    let _ = std::fs::remove_file(&cfg.socket);
    if let Some(api) = &api {
        // New requests get 503 while running ones finish.
        api.draining.store(true, Ordering::SeqCst);
        let until = Instant::now() + cfg.drain_timeout;
        while api.inflight.load(Ordering::SeqCst) > 0 && Instant::now() < until {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        if api.inflight.load(Ordering::SeqCst) > 0 {
            eprintln!(
                "phantom daemon: requests still running after {} s; stopping them",
                cfg.drain_timeout.as_secs()
            );
        }
    }
    shutdown.cancel();
    if let Some(t) = http_task {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), t).await;
    }
    if let Some(api) = &api {
        api.destroy_all().await;
    }
    manager.abort();
    pools.drain(cfg.drain_timeout).await;
    if let Some(dir) = cfg.socket.parent() {
        let _ = std::fs::remove_dir(dir.join("zygotes"));
    }
    eprintln!("phantom daemon: stopped");
    Ok(0)
}

fn registry_path(cfg: &Config) -> std::path::PathBuf {
    cfg.socket
        .parent()
        .unwrap_or(Path::new("/run/phantom"))
        .join("api-sandboxes.json")
}

/// Sandboxes a daemon killed with -9 made through the API: nobody can
/// reach them any more (their keys' ownership died with it).
async fn remove_left_sandboxes(cfg: &Config) {
    let registry = registry_path(cfg);
    let Ok(text) = std::fs::read_to_string(&registry) else {
        return;
    };
    let Ok(bin) = phantom_zygote::runtime_binary() else {
        return;
    };
    let backend = Subprocess {
        bin,
        root: Some(cfg.root.clone()),
        max_output: 0,
        sandbox_dir: None,
        profile_dirs: Vec::new(),
    };
    let left: BTreeMap<String, api::Owned> = serde_json::from_str(&text).unwrap_or_default();
    if left.is_empty() {
        return;
    }
    use phantom_zygote::backend::Backend;
    for id in left.keys() {
        eprintln!("phantom daemon: removing sandbox {id} left by a previous daemon");
        let _ = backend.destroy(id).await;
    }
    let _ = std::fs::remove_file(&registry);
}

/// The sweep at start: sandbox directories of this daemon's `--root` that
/// no live sandbox holds (a create killed midway, a sandbox `phantom
/// delete`d instead of destroyed) are removed, so that no later sandbox of
/// that id starts in what they left (issue 14 item 3).
pub fn sweep_orphans(root: &Path) {
    use phantom_runtime::sandbox::{self, Swept};
    let store = phantom_runtime::state::StateStore::new(root);
    for s in sandbox::sweep_orphans(&sandbox::base_dir(), &store) {
        match s {
            Swept::Removed(id) => {
                eprintln!("phantom daemon: removed the leftover sandbox directory of {id}")
            }
            Swept::Live(_) => {}
            Swept::Failed(id, e) => {
                eprintln!(
                    "phantom daemon: cannot remove the leftover sandbox directory of {id}: {e}"
                )
            }
        }
    }
}

/// After a failed create of `id`: what it may have left (its directory,
/// if nobody holds it and no container of that id exists) goes.
pub fn remove_orphan(root: &Path, id: &str) {
    use phantom_runtime::sandbox;
    let store = phantom_runtime::state::StateStore::new(root);
    match sandbox::remove_orphan(&sandbox::base_dir(), id, &store) {
        Ok(true) => tracing::info!("removed what the failed create of {id} left"),
        Ok(false) | Err(phantom_runtime::Error::AlreadyExists(_)) => {}
        Err(e) => tracing::warn!("after the failed create of {id}: {e}"),
    }
}

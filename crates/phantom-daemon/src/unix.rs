//! The daemon's unix socket: `phantom run --profile` asks it for a zygote
//! (one JSON line each way; the protocol is in `phantom_zygote`).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use phantom_zygote::proto::{self, DaemonReply, DaemonRequest};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::config::PoolKind;
use crate::pool::Pools;

/// Bind `path`, unless another daemon answers there.
pub fn bind(path: &Path) -> Result<UnixListener> {
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        bail!(
            "a daemon is already listening on {}; stop it first or give --socket",
            path.display()
        );
    }
    let _ = std::fs::remove_file(path);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let l = UnixListener::bind(path).with_context(|| format!("bind {}", path.display()))?;
    // Only root, the daemon's user, may ask for sandboxes.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod {}", path.display()))?;
    Ok(l)
}

pub async fn serve(listener: UnixListener, pools: Arc<Pools>) {
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            continue;
        };
        let pools = Arc::clone(&pools);
        tokio::spawn(async move {
            if let Err(e) = handle(conn, &pools).await {
                tracing::debug!("daemon socket: {e:#}");
            }
        });
    }
}

async fn handle(conn: UnixStream, pools: &Arc<Pools>) -> Result<()> {
    let (r, mut w) = conn.into_split();
    let mut line = String::new();
    let mut r = BufReader::new(r.take(64 * 1024));
    r.read_line(&mut line).await?;
    let reply = match proto::from_text::<DaemonRequest>(&line) {
        Ok(req) => answer(req, pools).await,
        Err(e) => serde_json::to_value(DaemonReply::error(e.to_string())).expect("serialises"),
    };
    w.write_all(format!("{reply}\n").as_bytes()).await?;
    Ok(())
}

async fn answer(req: DaemonRequest, pools: &Arc<Pools>) -> Value {
    let reply = match req {
        DaemonRequest::Acquire {
            profile,
            python,
            resources,
        } => {
            // The limits the client will send with its request, checked
            // here against the profile rather than trusted (`phantom run`
            // checks before sending; a hand-written client must meet the
            // same refusal). The zygote's runner checks them again.
            if let Some(Err(refusal)) = resources
                .as_ref()
                .map(|r| check_resources(pools, &profile, r))
            {
                refusal
            } else {
                match pools.acquire_waiting(&profile, python).await {
                    Some(z) => DaemonReply::Zygote {
                        zygote: z.socket,
                        kind: z.kind.name().to_string(),
                        workspace: (!z.workspace.is_empty()).then(|| z.workspace.into()),
                    },
                    None => DaemonReply::error(format!("no warm zygote for profile {profile:?}")),
                }
            }
        }
        DaemonRequest::AcquireExec { id, root } => {
            // The sandbox must live under the daemon's --root.
            let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
            if canon(&root) != canon(pools.root()) {
                DaemonReply::error("the daemon serves another --root")
            } else {
                match pools.acquire_exec(&id) {
                    Some(z) => DaemonReply::Zygote {
                        zygote: z.socket,
                        kind: "exec".into(),
                        workspace: None,
                    },
                    None => DaemonReply::error(format!(
                        "no warm exec ready for {id:?} (one is starting)"
                    )),
                }
            }
        }
        DaemonRequest::Pools => return status(&pools.report()),
    };
    serde_json::to_value(reply).expect("replies serialise")
}

/// A refusal when `resources` (as a warm request carries them) are above
/// the profile's: the local socket has no operator raises (those are per
/// API key), so the profile is the ceiling.
fn check_resources(
    pools: &Pools,
    profile: &str,
    asked: &oci_spec::runtime::LinuxResources,
) -> Result<(), DaemonReply> {
    let p = pools
        .profile(profile)
        .map_err(|_| DaemonReply::error(format!("no warm zygote for profile {profile:?}")))?;
    phantom_policy::check_limits(
        &p.name,
        &p.resources,
        &phantom_policy::policy::resources_from_oci(asked),
        "--",
        &phantom_policy::Raised::default(),
    )
    .map_err(|e| DaemonReply::refused(e.to_string()))
}

/// `daemon --status`: pools keyed by profile (Python fork servers as
/// `PROFILE:python`), with the rest of the report under `_daemon`.
fn status(report: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for p in report["pools"].as_array().into_iter().flatten() {
        let profile = p["profile"].as_str().unwrap_or_default();
        let key = if p["kind"] == PoolKind::Python.name() {
            format!("{profile}:python")
        } else {
            profile.to_string()
        };
        out.insert(key, p.clone());
    }
    let mut rest = report.clone();
    if let Some(o) = rest.as_object_mut() {
        o.remove("pools");
    }
    out.insert("_daemon".into(), rest);
    Value::Object(out)
}

//! Streamable HTTP transport with the guards a network listener needs:
//! API keys, an Origin allowlist (against DNS rebinding from browsers), a
//! body size limit, and sessions bound to the key that opened them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use crate::server::{PhantomMcp, Shared};

pub use phantom_zygote::keys::{ct_eq, load_keys, KeyId};

struct Guard {
    keys: Vec<(String, KeyId)>,
    origins: Vec<String>,
    max_body: u64,
    /// Mcp-Session-Id -> the key that opened it.
    sessions: Mutex<HashMap<String, KeyId>>,
    /// rmcp's sessions: entries of ours whose session it ended (idle,
    /// initialize never sent) are dropped when a new one is recorded.
    manager: Arc<LocalSessionManager>,
}

fn presented_key(h: &HeaderMap) -> Option<String> {
    if let Some(v) = h.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(v.trim().to_string());
    }
    let auth = h.get("authorization")?.to_str().ok()?;
    let (scheme, rest) = auth.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim().to_string())
}

/// `scheme://host[:port]`, lower-cased, without a trailing slash.
fn normalize_origin(o: &str) -> String {
    o.trim().trim_end_matches('/').to_ascii_lowercase()
}

fn is_localhost_origin(o: &str) -> bool {
    let Some(rest) = o
        .strip_prefix("http://")
        .or_else(|| o.strip_prefix("https://"))
    else {
        return false;
    };
    let host = if let Some(v6) = rest.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        rest.split(':').next().unwrap_or_default()
    };
    matches!(host, "localhost" | "127.0.0.1" | "::1")
}

impl Guard {
    fn origin_ok(&self, origin: &str) -> bool {
        let o = normalize_origin(origin);
        if self.origins.is_empty() {
            is_localhost_origin(&o)
        } else {
            self.origins.contains(&o)
        }
    }

    fn key(&self, presented: &str) -> Option<KeyId> {
        let mut found = None;
        for (k, id) in &self.keys {
            if ct_eq(k.as_bytes(), presented.as_bytes()) {
                found = Some(id.clone());
            }
        }
        found
    }
}

/// The longest too-large body read (and dropped) before the 413.
const DRAIN_MAX: u64 = 8 << 20;

fn reject(status: StatusCode, msg: &str) -> Response {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {"code": -32600, "message": msg},
    });
    let mut r = (status, axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            "www-authenticate",
            HeaderValue::from_static("Bearer realm=\"phantom-mcp\""),
        );
    }
    r
}

async fn guard(State(g): State<Arc<Guard>>, mut req: Request, next: Next) -> Response {
    let h = req.headers();
    if let Some(origin) = h.get("origin") {
        let o = origin.to_str().unwrap_or("");
        if !g.origin_ok(o) {
            tracing::warn!(origin = %o, "refused: Origin not allowed");
            return reject(
                StatusCode::FORBIDDEN,
                &format!("Origin {o:?} is not allowed (see phantom mcp --allow-origin)"),
            );
        }
    }
    let Some(presented) = presented_key(h) else {
        return reject(
            StatusCode::UNAUTHORIZED,
            "an API key is required: Authorization: Bearer KEY or X-API-Key: KEY",
        );
    };
    let Some(key) = g.key(&presented) else {
        tracing::warn!("refused: unknown API key");
        return reject(StatusCode::UNAUTHORIZED, "unknown API key");
    };
    if let Some(len) = h
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > g.max_body {
            let msg = format!(
                "request body of {len} bytes is over the limit of {}",
                g.max_body
            );
            // Read what the client is sending (up to a bound, briefly)
            // before answering: closing with its body unread resets the
            // connection, and the client never sees the 413.
            if len <= DRAIN_MAX {
                let body = req.into_body();
                let _ = tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    axum::body::to_bytes(body, DRAIN_MAX as usize),
                )
                .await;
            }
            let mut r = reject(StatusCode::PAYLOAD_TOO_LARGE, &msg);
            r.headers_mut()
                .insert("connection", HeaderValue::from_static("close"));
            return r;
        }
    }
    let session = h
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(s) = &session {
        let owner = g
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(s)
            .cloned();
        if let Some(owner) = owner {
            if owner != key {
                tracing::warn!(key = %key.0, "refused: session opened with another key");
                return reject(StatusCode::NOT_FOUND, "session not found");
            }
        }
    }
    // Without a session, only `initialize` may come. rmcp would serve any
    // other request statelessly (as protocol 2026-07-28 does, when its
    // `_meta` names that version): with a server made for that one
    // request, whose sandboxes die with it as soon as it answers. Refused,
    // as the 2025-06-18 transport tells session servers to do (400).
    if session.is_none() && req.method() == Method::POST {
        let (parts, body) = req.into_parts();
        let bytes = match axum::body::to_bytes(body, g.max_body as usize).await {
            Ok(b) => b,
            Err(_) => {
                return reject(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("request body over the limit of {} bytes", g.max_body),
                )
            }
        };
        if let Some(method) = sessionless_method(&bytes) {
            tracing::warn!(key = %key.0, %method, "refused: no Mcp-Session-Id");
            return reject(
                StatusCode::BAD_REQUEST,
                &format!(
                    "Bad Request: {method} without an Mcp-Session-Id header: this server keeps \
                     sandboxes per session; send initialize first (protocol versions up to \
                     2025-11-25) and the session id it returns"
                ),
            );
        }
        req = Request::from_parts(parts, Body::from(bytes));
    }
    let is_delete = req.method() == Method::DELETE;
    req.extensions_mut().insert(key.clone());
    let resp = next.run(req).await;
    let new_sid = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .filter(|sid| session.as_ref() != Some(sid));
    // The sessions rmcp still has, read before our lock (an async lock).
    let live: Option<std::collections::HashSet<String>> = match &new_sid {
        Some(_) => Some(
            g.manager
                .sessions
                .read()
                .await
                .keys()
                .map(|k| k.to_string())
                .collect(),
        ),
        None => None,
    };
    let mut sessions = g.sessions.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(sid) = new_sid {
        if let Some(live) = live {
            sessions.retain(|s, _| live.contains(s));
        }
        sessions.entry(sid).or_insert(key);
    }
    if is_delete && resp.status().is_success() {
        if let Some(s) = session {
            sessions.remove(&s);
        }
    }
    resp
}

/// The method of a session-less POST body that is not `initialize` (a
/// notification or response counts by its method, or as "a message"); None
/// for `initialize`, and for a body that is no JSON-RPC message at all,
/// which rmcp answers with its own parse error.
fn sessionless_method(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let method = match &v {
        serde_json::Value::Object(m) => m.get("method").and_then(|m| m.as_str()),
        // Batches are gone from the protocol since 2025-06-18; rmcp
        // refuses them.
        _ => return None,
    };
    match method {
        Some("initialize") => None,
        Some(m) => Some(m.to_string()),
        None => Some("a message".to_string()),
    }
}

/// How long an HTTP session may go without an event: rmcp's five minutes,
/// or the longest allowed call and a minute more when that is longer.
fn session_keep_alive(max_timeout: std::time::Duration) -> std::time::Duration {
    let default =
        rmcp::transport::streamable_http_server::session::local::SessionConfig::DEFAULT_KEEP_ALIVE;
    default.max(max_timeout + std::time::Duration::from_secs(60))
}

/// Serves MCP over streamable HTTP at `http://LISTEN/mcp` until `stop`.
pub async fn serve(
    shared: Arc<Shared>,
    listen: SocketAddr,
    keys: Vec<(String, KeyId)>,
    origins: &[String],
    max_body: u64,
    stop: CancellationToken,
) -> Result<()> {
    let mut hosts = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if !listen.ip().is_unspecified() {
        hosts.push(listen.ip().to_string());
    }
    let config = StreamableHttpServerConfig::default()
        .with_cancellation_token(stop.child_token())
        .with_allowed_hosts(hosts)
        .with_max_request_body_bytes(usize::try_from(max_body).unwrap_or(usize::MAX));
    // rmcp ends a session after `keep_alive` without an event on it, and a
    // running tools/call without a progress token sends none: the limit
    // must outlast the longest call the server allows (--max-timeout),
    // or a long run loses its result and its session's sandboxes.
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = Some(session_keep_alive(shared.max_timeout));
    let manager = Arc::new(sessions);
    let factory_shared = shared.clone();
    let service = StreamableHttpService::new(
        move || Ok(PhantomMcp::new(factory_shared.clone())),
        Arc::clone(&manager),
        config,
    );
    let g = Arc::new(Guard {
        keys,
        origins: origins.iter().map(|o| normalize_origin(o)).collect(),
        max_body,
        sessions: Mutex::new(HashMap::new()),
        manager,
    });
    let app = axum::Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn_with_state(g, guard))
        .fallback(|| async { (StatusCode::NOT_FOUND, Body::from("MCP is served at /mcp\n")) });
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("--listen {listen}: cannot bind"))?;
    tracing::info!("MCP over streamable HTTP at http://{listen}/mcp");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
        .context("HTTP server")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only `initialize` may come without a session; a 2026-style
    /// request with its `_meta` is refused, not served statelessly.
    #[test]
    fn only_initialize_comes_without_a_session() {
        let init = br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#;
        assert_eq!(sessionless_method(init), None);
        let call = br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"create_sandbox","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
        assert_eq!(sessionless_method(call).as_deref(), Some("tools/call"));
        let reply = br#"{"jsonrpc":"2.0","id":2,"result":{}}"#;
        assert_eq!(sessionless_method(reply).as_deref(), Some("a message"));
        assert_eq!(sessionless_method(b"not json"), None);
    }

    /// A call may run as long as --max-timeout allows without its session
    /// timing out under it (it was 300 s against a 600 s maximum).
    #[test]
    fn a_session_outlasts_the_longest_call() {
        use std::time::Duration;
        assert_eq!(
            session_keep_alive(Duration::from_secs(600)),
            Duration::from_secs(660)
        );
        assert_eq!(
            session_keep_alive(Duration::from_secs(30)),
            Duration::from_secs(300)
        );
    }

    #[test]
    fn origins() {
        assert!(is_localhost_origin("http://localhost:3000"));
        assert!(is_localhost_origin("http://127.0.0.1"));
        assert!(is_localhost_origin("http://[::1]:8080"));
        assert!(!is_localhost_origin("http://localhost.evil.com"));
        assert!(!is_localhost_origin("https://evil.com"));
        assert!(!is_localhost_origin("null"));
    }
}

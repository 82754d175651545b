//! The REST API (axum). Every request but `GET /health` needs an API key;
//! each key has a rate limit, sees only the sandboxes it made, and every
//! request is written to the audit log. `docs/openapi.yaml` describes it.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use phantom_policy::{
    check_narrowing_raised, Narrowing, NarrowingError, NetworkMode, Profile, Raised,
};
use phantom_zygote::backend::{Backend, BackendError, Limits, Subprocess};
use phantom_zygote::client::Lease;
use phantom_zygote::files::{self, FileError};
use phantom_zygote::keys::KeyId;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::audit::Audit;
use crate::limit::RateLimit;
use crate::metrics::{EndpointLabels, Metrics, RequestLabels, SpawnLabels};
use crate::pool::{Pools, Ready};

/// Largest request body (files are put in one piece).
pub const MAX_BODY: usize = 16 << 20;
/// Largest file `GET .../files/PATH` returns.
const MAX_FILE: u64 = 64 << 20;
/// Time limit of a run or exec that names none, and the most it may name.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// A sandbox made through the API, and the key that made it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Owned {
    pub key: String,
    pub profile: String,
    /// Not in the registry: a restarted daemon only destroys what it finds.
    #[serde(skip)]
    pub workspace: phantom_zygote::backend::WorkspaceDir,
}

pub struct Api {
    pub pools: Arc<Pools>,
    pub metrics: Arc<Metrics>,
    pub keys: Vec<(String, KeyId)>,
    pub limit: RateLimit,
    pub audit: Audit,
    pub backend: Subprocess,
    pub max_output: usize,
    pub profile_dirs: Vec<PathBuf>,
    /// What the operator lets keys have beyond their profiles.
    pub raises: crate::config::Raises,
    /// Sandboxes made through the API, kept in `registry` too so a daemon
    /// restarted after `kill -9` removes them.
    pub owned: Mutex<BTreeMap<String, Owned>>,
    pub registry: PathBuf,
    pub draining: AtomicBool,
    /// Requests being served (a drain waits for them).
    pub inflight: AtomicUsize,
    /// Runs at once (`/v1/run`): each holds a sandbox, and a run that finds
    /// the pool empty makes one.
    pub runs: tokio::sync::Semaphore,
}

/// How many `/v1/run` requests may hold a sandbox at once.
pub const MAX_RUNS: usize = 64;

/// An error answer: `{"error": ...}` with a message for the client. A
/// failure of the backend (phantom's own messages, which name host paths:
/// the state root, cgroup files, the sandboxes directory) never reaches
/// the body: the client gets what failed, for which sandbox, and a
/// reference; the daemon's log and the audit line get the detail under
/// that reference (issue 14 item 4).
pub struct ApiError {
    status: StatusCode,
    msg: String,
    /// Set for backend failures: the detail is logged under it.
    hidden: Option<Hidden>,
}

/// What the daemon logs and audits for a backend failure.
#[derive(Clone, Debug)]
pub struct Hidden {
    pub reference: String,
    pub detail: String,
}

impl ApiError {
    fn new(status: StatusCode, msg: impl Into<String>) -> ApiError {
        ApiError {
            status,
            msg: msg.into(),
            hidden: None,
        }
    }

    /// A backend failure: `what` ("create of sandbox \"x\"") is for the
    /// client; `detail` goes to the daemon's log under a fresh reference.
    fn backend(status: StatusCode, what: &str, detail: impl std::fmt::Display) -> ApiError {
        let reference = format!("err-{}", phantom_zygote::random_hex(6));
        let detail = detail.to_string();
        eprintln!("phantom daemon: [{reference}] {what} failed: {detail}");
        ApiError {
            status,
            msg: format!("{what} failed (reference {reference}; the daemon's log has the details)"),
            hidden: Some(Hidden { reference, detail }),
        }
    }

    /// A backend error of `what`: its kind gives the status, its text goes
    /// to the log only.
    fn of_backend(what: &str, e: BackendError) -> ApiError {
        match e {
            // Our own words: the id is the client's.
            BackendError::AlreadyExists(_) => ApiError::new(
                StatusCode::CONFLICT,
                format!("{what}: a sandbox of that id already exists"),
            ),
            BackendError::Invalid(m) => ApiError::backend(StatusCode::BAD_REQUEST, what, m),
            BackendError::Failed(m) => {
                ApiError::backend(StatusCode::INTERNAL_SERVER_ERROR, what, m)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.msg});
        if let Some(h) = &self.hidden {
            body["reference"] = json!(h.reference);
        }
        let mut r = (self.status, Json(body)).into_response();
        if let Some(h) = self.hidden {
            r.extensions_mut().insert(h);
        }
        r
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, msg)
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no sandbox {id:?}"))
}

/// A request that would loosen its profile: the key is not allowed what
/// it asked for (403), whatever else is right with the request.
impl From<NarrowingError> for ApiError {
    fn from(e: NarrowingError) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, e.to_string())
    }
}

impl From<FileError> for ApiError {
    fn from(e: FileError) -> Self {
        let code = match &e {
            FileError::NotFound(_) => StatusCode::NOT_FOUND,
            FileError::TooBig(..) => StatusCode::PAYLOAD_TOO_LARGE,
            // A full workspace (its size limit) is the client's to know.
            FileError::Io(path, io)
                if matches!(io.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) =>
            {
                return ApiError::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    format!("path {path:?}: the workspace is full (its size limit)"),
                )
            }
            // May name the workspace's host side: the log's, not the client's.
            FileError::Io(..) => {
                return ApiError::backend(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the file access in the workspace",
                    e,
                )
            }
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(code, e.to_string())
    }
}

type ApiResult<T> = Result<T, ApiError>;

pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/pools", get(pools))
        .route("/v1/run", post(run))
        .route("/v1/sandboxes", post(create).get(list))
        .route("/v1/sandboxes/{id}", get(show).delete(destroy))
        .route("/v1/sandboxes/{id}/exec", post(exec))
        .route("/v1/sandboxes/{id}/files", get(list_files))
        .route(
            "/v1/sandboxes/{id}/files/{*path}",
            get(get_file).put(put_file),
        )
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(axum::middleware::from_fn_with_state(api.clone(), guard))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(api)
}

fn presented_key(h: &HeaderMap) -> Option<String> {
    if let Some(v) = h.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(v.trim().to_string());
    }
    let auth = h.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = auth.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim().to_string())
}

/// Status the audit log and the metrics give a request whose client hung
/// up before the answer (nginx's "client closed request"): never sent.
const DISCONNECTED: u16 = 499;

/// One request's accounting: the in-flight count, the metrics and the
/// audit line. It runs on drop because hyper drops the request's future
/// when the client disconnects; code after an `.await` in the guard would
/// then never run, leaving the count up (every later drain waiting its
/// full timeout) and the request without an audit line.
struct Accounting {
    api: Arc<Api>,
    t0: Instant,
    method: String,
    path: String,
    endpoint: String,
    key: Option<KeyId>,
    /// Counted in `inflight` (past auth, rate limit and draining).
    counted: bool,
    /// The status answered; None until the response is ready, so a drop
    /// before it is a disconnect.
    status: Option<u16>,
    /// A backend failure's reference and detail (never in the body).
    hidden: Option<Hidden>,
}

impl Accounting {
    fn count_in(&mut self) {
        self.api.inflight.fetch_add(1, Ordering::SeqCst);
        self.api.metrics.requests_in_flight.inc();
        self.counted = true;
    }
}

impl Drop for Accounting {
    fn drop(&mut self) {
        let api = &self.api;
        if self.counted {
            api.inflight.fetch_sub(1, Ordering::SeqCst);
            api.metrics.requests_in_flight.dec();
        }
        let disconnected = self.status.is_none();
        let code = self.status.unwrap_or(DISCONNECTED);
        api.metrics
            .requests
            .get_or_create(&RequestLabels {
                endpoint: self.endpoint.clone(),
                code: code.to_string(),
            })
            .inc();
        if code >= 400 {
            api.metrics
                .request_errors
                .get_or_create(&EndpointLabels {
                    endpoint: self.endpoint.clone(),
                })
                .inc();
        }
        let mut entry = json!({
            "time": crate::audit::now_rfc3339(),
            "key": self.key.as_ref().map(|k| k.0.clone()),
            "method": self.method,
            "path": self.path,
            "status": code,
            "duration_ms": self.t0.elapsed().as_millis() as u64,
        });
        if disconnected {
            entry["disconnected"] = json!(true);
        }
        if let Some(h) = &self.hidden {
            entry["reference"] = json!(h.reference);
            entry["error_detail"] = json!(h.detail);
        }
        if let Some(id) = self
            .path
            .strip_prefix("/v1/sandboxes/")
            .and_then(|r| r.split('/').next())
            .filter(|s| !s.is_empty())
        {
            entry["sandbox"] = json!(id);
        }
        api.audit.record(&entry);
    }
}

/// Whether the request carries a body (hyper's framing: a non-zero
/// Content-Length, or Transfer-Encoding).
fn has_body(h: &HeaderMap) -> bool {
    if h.contains_key(header::TRANSFER_ENCODING) {
        return true;
    }
    match h.get(header::CONTENT_LENGTH) {
        // An unparsable length is hyper's to refuse; assume a body.
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_none_or(|n| n > 0),
        None => false,
    }
}

/// A refusal answered before the body is read. hyper then cannot reuse the
/// connection (the unread body is still on it) and closes it, but says
/// nothing, so a keep-alive client writes its next request into a closed
/// socket (EPIPE). Saying `Connection: close` lets it reconnect instead;
/// reading the body would let anyone without a key make us read 16 MiB.
fn refuse_unread(mut r: Response, with_body: bool) -> Response {
    if with_body {
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

/// Auth, rate limit, draining, metrics and the audit line, around every
/// request.
async fn guard(State(api): State<Arc<Api>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| endpoint_of(&path));
    let key = presented_key(req.headers())
        .and_then(|k| phantom_zygote::keys::find(&api.keys, &k).cloned());
    let with_body = has_body(req.headers());
    let mut acct = Accounting {
        api: Arc::clone(&api),
        t0: Instant::now(),
        method: req.method().to_string(),
        path: path.clone(),
        endpoint,
        key: key.clone(),
        counted: false,
        status: None,
        hidden: None,
    };
    let resp = if path == "/health" {
        next.run(req).await
    } else if let Some(k) = &key {
        if api.draining.load(Ordering::SeqCst) {
            refuse_unread(
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping")
                    .into_response(),
                with_body,
            )
        } else if let Err(wait) = api.limit.check(&k.0) {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            let mut r = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "rate limit of {} requests per second reached",
                    api.limit_rate()
                ),
            )
            .into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            refuse_unread(r, with_body)
        } else {
            req.extensions_mut().insert(k.clone());
            acct.count_in();
            next.run(req).await
        }
    } else {
        let mut r = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or unknown API key (send X-API-Key or Authorization: Bearer)",
        )
        .into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"phantom\""),
        );
        refuse_unread(r, with_body)
    };
    // axum's own rejections (e.g. the body limit) are plain text: every
    // error of this API is JSON.
    let resp = if resp.status().as_u16() >= 400
        && resp
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/plain"))
    {
        let status = resp.status();
        let text = axum::body::to_bytes(resp.into_body(), 64 * 1024)
            .await
            .unwrap_or_default();
        let mut msg = String::from_utf8_lossy(&text).into_owned();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            msg = format!("request body larger than the limit of {MAX_BODY} bytes");
        }
        ApiError::new(status, msg).into_response()
    } else {
        resp
    };
    acct.status = Some(resp.status().as_u16());
    acct.hidden = resp.extensions().get::<Hidden>().cloned();
    resp
}

/// The route an unmatched path would have, for the metrics' labels (never
/// the raw path: its cardinality is the client's choice).
fn endpoint_of(path: &str) -> String {
    if path.starts_with("/v1/sandboxes/") {
        "/v1/sandboxes/{id}/...".into()
    } else if [
        "/health",
        "/metrics",
        "/v1/pools",
        "/v1/run",
        "/v1/sandboxes",
    ]
    .contains(&path)
    {
        path.to_string()
    } else {
        "unmatched".into()
    }
}

impl Api {
    fn limit_rate(&self) -> String {
        self.limit.rate().to_string()
    }

    fn owner_check(&self, id: &str, key: &KeyId) -> ApiResult<Owned> {
        let owned = self.owned.lock().unwrap_or_else(|e| e.into_inner());
        match owned.get(id) {
            Some(o) if o.key == key.0 => Ok(o.clone()),
            // Another key's sandbox does not exist, as far as this key knows.
            _ => Err(not_found(id)),
        }
    }

    fn save_registry(&self) {
        let owned = self.owned.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let tmp = self.registry.with_extension("tmp");
        let text = serde_json::to_string(&owned).unwrap_or_default();
        if std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, &self.registry))
            .is_err()
        {
            tracing::error!("cannot write {}", self.registry.display());
        }
    }

    /// The profile `name`, as the request's ceiling.
    fn check_profile(&self, name: &str) -> ApiResult<Profile> {
        use phantom_policy::ProfileError;
        phantom_policy::Catalog::load(&self.profile_dirs)
            .get(name)
            .map(|e| e.profile.clone())
            .map_err(|e| match e {
                // Without the directories searched: they are the host's.
                ProfileError::NotFound { name, builtin, .. } => bad(format!(
                    "profile {name:?}: no such profile (built in: {})",
                    builtin.join(", ")
                )),
                e => ApiError::backend(
                    StatusCode::BAD_REQUEST,
                    &format!("loading the profile {name:?}"),
                    e,
                ),
            })
    }

    /// Destroy every sandbox made through the API (SIGTERM).
    pub async fn destroy_all(&self) {
        let ids: Vec<String> = self
            .owned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        for id in ids {
            let _ = self.backend.destroy(&id).await;
        }
        self.owned.lock().unwrap_or_else(|e| e.into_inner()).clear();
        let _ = std::fs::remove_file(&self.registry);
        // Scratch space of `exec` (pid files); empty once they are done.
        let _ = std::fs::remove_dir(self.backend.scratch_dir());
    }
}

async fn health(State(api): State<Arc<Api>>) -> Json<Value> {
    Json(json!({
        "status": if api.draining.load(Ordering::SeqCst) { "draining" } else { "ok" },
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

async fn metrics(State(api): State<Arc<Api>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        api.metrics.encode(),
    )
        .into_response()
}

async fn pools(State(api): State<Arc<Api>>) -> Json<Value> {
    Json(api.pools.report())
}

/// Bodies are JSON whatever the content type says; errors say what is
/// wrong with them.
fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|e| bad(format!("malformed request body: {e}")))
}

fn timeout_of(ms: Option<u64>) -> ApiResult<Duration> {
    match ms {
        None => Ok(DEFAULT_TIMEOUT),
        Some(0) => Err(bad("timeout_ms must be positive")),
        Some(ms) if Duration::from_millis(ms) > MAX_TIMEOUT => Err(bad(format!(
            "timeout_ms {ms} is more than the limit of {} ms",
            MAX_TIMEOUT.as_millis()
        ))),
        Some(ms) => Ok(Duration::from_millis(ms)),
    }
}

fn check_env(env: &[String]) -> ApiResult<()> {
    for kv in env {
        if !kv.contains('=') || kv.starts_with('=') {
            return Err(bad(format!("env {kv:?}: expected KEY=VALUE")));
        }
        if kv.contains('\0') {
            return Err(bad(format!("env {kv:?}: contains a NUL byte")));
        }
    }
    Ok(())
}

/// A program to run: not empty, no NUL (execve cannot pass one; it used
/// to come back as a 200 with exit status 126).
fn check_argv(argv: &[String]) -> ApiResult<()> {
    if argv.is_empty() {
        return Err(bad("argv must name a program"));
    }
    if let Some((i, a)) = argv.iter().enumerate().find(|(_, a)| a.contains('\0')) {
        return Err(bad(format!("argv[{i}] {a:?}: contains a NUL byte")));
    }
    Ok(())
}

/// The most a sandbox id may be over the API.
const MAX_API_ID: usize = 64;

/// A sandbox id a client may choose: the OCI id rules, at most 64 bytes,
/// and no leading `-` or `.`. Ids reach the CLI the backend runs as
/// arguments (`--help` came back as clap's usage) and name directories
/// beside the daemon's own (`.mcp` is its exec scratch directory).
fn check_api_id(id: &str) -> ApiResult<()> {
    if id.len() > MAX_API_ID {
        return Err(bad(format!(
            "id: {} bytes long, at most {MAX_API_ID}",
            id.len()
        )));
    }
    if id.starts_with('-') || id.starts_with('.') {
        return Err(bad(format!("id {id:?}: must not start with '-' or '.'")));
    }
    phantom_runtime::state::validate_id(id).map_err(|e| bad(format!("id: {e}")))?;
    if id.starts_with(phantom_zygote::ZYGOTE_PREFIX) {
        return Err(bad(format!(
            "id {id:?}: ids starting with {:?} are the daemon's",
            phantom_zygote::ZYGOTE_PREFIX
        )));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunReq {
    profile: String,
    argv: Vec<String>,
    #[serde(default)]
    env: Vec<String>,
    stdin: Option<String>,
    timeout_ms: Option<u64>,
    memory: Option<String>,
    cpus: Option<f64>,
    pids: Option<i64>,
    /// Most bytes the run's fresh workspace may hold (at most the profile's
    /// `resources.workspace`).
    workspace_size: Option<String>,
}

/// Limits of one run, as the zygote's cgroup takes them (`None`: the
/// profile's own); refused (403) above `profile`'s.
fn run_limits(
    r: &RunReq,
    profile: &Profile,
    raised: &Raised,
) -> ApiResult<Option<oci_spec::runtime::LinuxResources>> {
    let mut res = phantom_zygote::limits::check(r.memory.as_deref(), r.cpus, r.pids, "")
        .map_err(|e| bad(format!("{e:#}")))?;
    res.workspace = phantom_zygote::limits::check_workspace(r.workspace_size.as_deref(), "")
        .map_err(|e| bad(format!("{e:#}")))?;
    check_narrowing_raised(
        profile,
        &Narrowing {
            mode: None,
            network: None,
            resources: res,
        },
        "",
        raised,
    )?;
    // The workspace is made with the sandbox, not set on its cgroup.
    res.workspace = None;
    if res == Default::default() {
        return Ok(None);
    }
    Ok(Some(phantom_policy::policy::resources_to_oci(&res)))
}

/// Whether the run's limits are above its profile's own (allowed by an
/// operator's raise, or `run_limits` would have refused them).
fn beyond_profile(r: &RunReq, profile: &Profile) -> bool {
    let Ok(res) = phantom_zygote::limits::check(r.memory.as_deref(), r.cpus, r.pids, "") else {
        return false;
    };
    phantom_policy::check_limits(
        &profile.name,
        &profile.resources,
        &res,
        "",
        &Raised::default(),
    )
    .is_err()
}

#[derive(Serialize)]
struct RunOut {
    exit_code: i32,
    stdout: String,
    stderr: String,
    stdout_truncated_bytes: u64,
    stderr_truncated_bytes: u64,
    duration_ms: u64,
    timed_out: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Active-sandbox gauge for the lifetime of a value.
struct Active(Arc<Metrics>);

impl Active {
    fn new(m: &Arc<Metrics>) -> Active {
        m.sandboxes_active.inc();
        Active(Arc::clone(m))
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.sandboxes_active.dec();
    }
}

async fn run(
    State(api): State<Arc<Api>>,
    axum::Extension(key): axum::Extension<KeyId>,
    body: Bytes,
) -> ApiResult<Json<RunOut>> {
    let r: RunReq = parse(&body)?;
    check_argv(&r.argv)?;
    check_env(&r.env)?;
    let timeout = timeout_of(r.timeout_ms)?;
    let profile = api.check_profile(&r.profile)?;
    let raised = api.raises.for_key(&key.0);
    let resources = run_limits(&r, &profile, &raised)?;
    let _slot = api.runs.try_acquire().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_RUNS} runs are under way; try again when one ends"),
        )
    })?;
    let t0 = Instant::now();
    if r.workspace_size.is_some() || beyond_profile(&r, &profile) {
        // A workspace of its own size needs a sandbox made for it (a
        // zygote's was made with the profile's), and so do limits the
        // operator raised beyond the profile: a zygote's runner takes no
        // more than the limits it was made with.
        return run_cold(&api, r, timeout, raised, t0).await;
    }
    let own = resources.is_some();
    let python = phantom_zygote::python_serves(&r.argv) && !own;
    let (zygote, path) = match api.pools.acquire_waiting(&r.profile, python).await {
        Some(z) => (z, "warm"),
        None => (
            api.pools.on_demand(&r.profile).await.map_err(|e| {
                ApiError::backend(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("making a sandbox of the profile {:?}", r.profile),
                    format!("{e:#}"),
                )
            })?,
            "cold",
        ),
    };
    let _active = Active::new(&api.metrics);
    // Until the zygote is ours: the acquisition, or making one (cold).
    let before = t0.elapsed();
    let mut out = run_in(&api, zygote, r.argv, r.env, r.stdin, timeout, resources).await?;
    if let Some(after) = out.1 {
        api.metrics
            .spawn
            .get_or_create(&SpawnLabels {
                profile: r.profile.clone(),
                path: path.into(),
            })
            .observe((before + after).as_secs_f64());
    }
    out.0.path = Some(path);
    out.0.duration_ms = t0.elapsed().as_millis() as u64;
    Ok(Json(out.0))
}

/// A run in a sandbox made for it (`phantom run --profile` with the
/// request's limits), for what a warm zygote cannot give.
async fn run_cold(
    api: &Api,
    r: RunReq,
    timeout: Duration,
    raised: Raised,
    t0: Instant,
) -> ApiResult<Json<RunOut>> {
    let _active = Active::new(&api.metrics);
    let spec = phantom_zygote::backend::RunSpec {
        id: format!("api-run-{}", phantom_zygote::random_hex(6)),
        profile: r.profile.clone(),
        argv: r.argv,
        workspace: None,
        stdin: r.stdin,
        timeout,
        limits: Limits {
            memory: r.memory,
            cpus: r.cpus,
            pids: r.pids,
            network: None,
            workspace_size: r.workspace_size,
            raised,
        },
        env: r.env,
    };
    // A client that goes away cancels: the run is killed.
    let cancel = CancellationToken::new();
    let _on_drop = cancel.clone().drop_guard();
    let o = api
        .backend
        .run(spec, cancel)
        .await
        .map_err(|e| ApiError::of_backend(&format!("the run of profile {:?}", r.profile), e))?;
    Ok(Json(RunOut {
        exit_code: o.exit_code.unwrap_or(-1),
        stdout: o.stdout,
        stderr: o.stderr,
        stdout_truncated_bytes: o.stdout_truncated_bytes,
        stderr_truncated_bytes: o.stderr_truncated_bytes,
        duration_ms: t0.elapsed().as_millis() as u64,
        timed_out: o.timed_out,
        path: Some("cold"),
        error: None,
    }))
}

/// Runs argv in a zygote with pipes for its stdio. Returns the outcome,
/// how long after the request the program was running, and how long the
/// request itself took (from the hand-over to the end).
async fn run_in(
    api: &Api,
    z: Ready,
    argv: Vec<String>,
    env: Vec<String>,
    stdin: Option<String>,
    timeout: Duration,
    resources: Option<oci_spec::runtime::LinuxResources>,
) -> ApiResult<(RunOut, Option<Duration>, Duration)> {
    let fail = |e: anyhow::Error| {
        ApiError::backend(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the run in a warm sandbox",
            format!("{e:#}"),
        )
    };
    let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| fail(e.into()));
    let (in_r, in_w) = pipe()?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let reader = |fd: OwnedFd| {
        tokio::net::unix::pipe::Receiver::from_owned_fd(fd).map_err(|e| fail(e.into()))
    };
    let out_task = tokio::spawn(phantom_zygote::backend::capture(
        Some(reader(out_r)?),
        api.max_output,
    ));
    let err_task = tokio::spawn(phantom_zygote::backend::capture(
        Some(reader(err_r)?),
        api.max_output,
    ));
    let kind = z.kind.name().to_string();
    let handed = Instant::now();
    let waited = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let lease = Lease::connect(&z.socket, &kind, None)?;
        let t0 = lease.start_with(
            &argv,
            &env,
            None,
            Some(timeout),
            resources.as_ref(),
            [in_r.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()],
        )?;
        drop((in_r, out_w, err_w));
        Ok((lease, t0))
    })
    .await
    .map_err(|e| fail(e.into()))?
    .map_err(fail)?;
    if let Some(data) = stdin {
        let w = tokio::net::unix::pipe::Sender::from_owned_fd(in_w).map_err(|e| fail(e.into()))?;
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let mut w = w;
            let _ = w.write_all(data.as_bytes()).await;
        });
    } else {
        drop(in_w);
    }
    let (lease, t0) = waited;
    // A client that hangs up drops this future, not the blocked thread
    // that owns the lease: this ends the connection on drop, so the
    // runner kills the program instead of letting it run to its end.
    let _hang_up = lease.hang_up_handle().map_err(fail)?;
    let finished = tokio::task::spawn_blocking(move || lease.wait(t0))
        .await
        .map_err(|e| fail(e.into()))?
        .map_err(fail)?;
    let total = handed.elapsed();
    if let Some(detail) = &finished.detail {
        // The runner could not set the sandbox up (its limits): a backend
        // failure, whose detail names host cgroup files.
        let what = finished.error.as_deref().unwrap_or("the run");
        return Err(ApiError::backend(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the run ({what})"),
            detail,
        ));
    }
    // The program has exited; its output ends when the last holder of the
    // pipes does. A process that left the request's group (setsid in a
    // fork server's request) may keep them open: do not wait for it.
    let collect = |task: tokio::task::JoinHandle<phantom_zygote::backend::Captured>| async move {
        let abort = task.abort_handle();
        match tokio::time::timeout(Duration::from_secs(2), task).await {
            Ok(Ok(c)) => c,
            Ok(Err(_)) => phantom_zygote::backend::empty(),
            Err(_) => {
                abort.abort();
                phantom_zygote::backend::Captured {
                    text: "[phantom: output not collected: a process left behind by the program still holds it open]".into(),
                    truncated_bytes: 0,
                }
            }
        }
    };
    let out = collect(out_task).await;
    let err = collect(err_task).await;
    Ok((
        RunOut {
            exit_code: finished.status,
            stdout: out.text,
            stderr: err.text,
            stdout_truncated_bytes: out.truncated_bytes,
            stderr_truncated_bytes: err.truncated_bytes,
            duration_ms: total.as_millis() as u64,
            timed_out: finished.status == 124,
            path: None,
            error: finished.error,
        },
        finished.started_after,
        total,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateReq {
    profile: String,
    id: Option<String>,
    memory: Option<String>,
    cpus: Option<f64>,
    pids: Option<i64>,
    network: Option<String>,
    /// Most bytes the sandbox's workspace may hold (at most the profile's
    /// `resources.workspace`).
    workspace_size: Option<String>,
}

fn info(id: &str, o: &Owned, status: &str) -> Value {
    json!({"id": id, "profile": o.profile, "status": status})
}

async fn create(
    State(api): State<Arc<Api>>,
    axum::Extension(key): axum::Extension<KeyId>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let r: CreateReq = parse(&body)?;
    let profile = api.check_profile(&r.profile)?;
    // Checked here, typed, before anything is made: a request may only
    // narrow its profile (403 otherwise). The CLI the backend runs checks
    // again, but its refusal would come back as an exit status.
    let network = r
        .network
        .as_deref()
        .map(|n| {
            NetworkMode::from_name(n).ok_or_else(|| {
                bad(format!(
                    "network {n:?}: expected none, loopback, egress or host"
                ))
            })
        })
        .transpose()?;
    let mut resources = phantom_zygote::limits::check(r.memory.as_deref(), r.cpus, r.pids, "")
        .map_err(|e| bad(format!("{e:#}")))?;
    resources.workspace = phantom_zygote::limits::check_workspace(r.workspace_size.as_deref(), "")
        .map_err(|e| bad(format!("{e:#}")))?;
    let raised = api.raises.for_key(&key.0);
    check_narrowing_raised(
        &profile,
        &Narrowing {
            mode: None,
            network,
            resources,
        },
        "",
        &raised,
    )?;
    let id =
        r.id.unwrap_or_else(|| format!("api-{}", phantom_zygote::random_hex(6)));
    check_api_id(&id)?;
    let limits = Limits {
        memory: r.memory,
        cpus: r.cpus,
        pids: r.pids,
        network: r.network,
        workspace_size: r.workspace_size,
        raised,
    };
    let made = match api.backend.create(&id, &r.profile, &limits).await {
        Ok(m) => m,
        Err(e) => {
            if !matches!(e, BackendError::AlreadyExists(_)) {
                // A create that failed midway may leave its directory.
                let root = api.backend.root.clone().unwrap_or_default();
                let id = id.clone();
                let _ = tokio::task::spawn_blocking(move || crate::remove_orphan(&root, &id)).await;
            }
            return Err(ApiError::of_backend(
                &format!("create of sandbox {id:?}"),
                e,
            ));
        }
    };
    let o = Owned {
        key: key.0,
        profile: r.profile,
        workspace: made.workspace,
    };
    api.owned
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id.clone(), o.clone());
    api.save_registry();
    api.metrics.sandboxes_active.inc();
    Ok((StatusCode::CREATED, Json(info(&id, &o, &made.status))))
}

async fn list(
    State(api): State<Arc<Api>>,
    axum::Extension(key): axum::Extension<KeyId>,
) -> Json<Value> {
    let mine: Vec<(String, Owned)> = api
        .owned
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|(_, o)| o.key == key.0)
        .map(|(i, o)| (i.clone(), o.clone()))
        .collect();
    let ids: Vec<String> = mine.iter().map(|(i, _)| i.clone()).collect();
    let status: BTreeMap<String, String> = api.backend.status(&ids).await.into_iter().collect();
    let items: Vec<Value> = mine
        .iter()
        .map(|(i, o)| info(i, o, status.get(i).map_or("gone", String::as_str)))
        .collect();
    Json(json!({ "sandboxes": items }))
}

async fn show(
    State(api): State<Arc<Api>>,
    axum::Extension(key): axum::Extension<KeyId>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let o = api.owner_check(&id, &key)?;
    let status = api.backend.status(std::slice::from_ref(&id)).await;
    let s = status.first().map_or("gone", |(_, s)| s.as_str());
    Ok(Json(info(&id, &o, s)))
}

async fn destroy(
    State(api): State<Arc<Api>>,
    axum::Extension(key): axum::Extension<KeyId>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    api.owner_check(&id, &key)?;
    api.backend
        .destroy(&id)
        .await
        .map_err(|e| ApiError::of_backend(&format!("destroy of sandbox {id:?}"), e))?;
    api.owned
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id);
    api.save_registry();
    api.metrics.sandboxes_active.dec();
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecReq {
    argv: Vec<String>,
    #[serde(default)]
    env: Vec<String>,
    stdin: Option<String>,
    timeout_ms: Option<u64>,
}

async fn exec(
    State(api): State<Arc<Api>>,
    axum::Extension(key): axum::Extension<KeyId>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<RunOut>> {
    api.owner_check(&id, &key)?;
    let r: ExecReq = parse(&body)?;
    check_argv(&r.argv)?;
    check_env(&r.env)?;
    let timeout = timeout_of(r.timeout_ms)?;
    // A client that goes away cancels: the exec'd process is killed.
    let cancel = CancellationToken::new();
    let _on_drop = cancel.clone().drop_guard();
    let o = api
        .backend
        .exec(&id, &r.argv, &r.env, r.stdin, timeout, cancel)
        .await
        .map_err(|e| ApiError::of_backend(&format!("exec in sandbox {id:?}"), e))?;
    Ok(Json(RunOut {
        exit_code: o.exit_code.unwrap_or(-1),
        stdout: o.stdout,
        stderr: o.stderr,
        stdout_truncated_bytes: o.stdout_truncated_bytes,
        stderr_truncated_bytes: o.stderr_truncated_bytes,
        duration_ms: o.duration_ms,
        timed_out: o.timed_out,
        path: None,
        error: None,
    }))
}

#[derive(Deserialize)]
struct ListQuery {
    path: Option<String>,
    depth: Option<usize>,
}

async fn list_files(
    State(api): State<Arc<Api>>,
    axum::Extension(key): axum::Extension<KeyId>,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let o = api.owner_check(&id, &key)?;
    let rel = q.path.unwrap_or_default();
    let depth = q.depth.unwrap_or(1).clamp(1, 16);
    let entries =
        tokio::task::spawn_blocking(move || files::list(&o.workspace, &rel, depth, 10_000))
            .await
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(Json(json!({ "entries": entries })))
}

async fn get_file(
    State(api): State<Arc<Api>>,
    axum::Extension(key): axum::Extension<KeyId>,
    Path((id, path)): Path<(String, String)>,
) -> ApiResult<Response> {
    let o = api.owner_check(&id, &key)?;
    let data = tokio::task::spawn_blocking(move || files::read(&o.workspace, &path, MAX_FILE))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Body::from(data),
    )
        .into_response())
}

async fn put_file(
    State(api): State<Arc<Api>>,
    axum::Extension(key): axum::Extension<KeyId>,
    Path((id, path)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let o = api.owner_check(&id, &key)?;
    tokio::task::spawn_blocking(move || files::write(&o.workspace, &path, &body))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(StatusCode::NO_CONTENT)
}

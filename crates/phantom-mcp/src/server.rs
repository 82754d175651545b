//! The MCP tools and resources. One [`PhantomMcp`] serves one MCP session:
//! the sandboxes it creates belong to it, no other session can name them,
//! and they are destroyed when the session ends.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListResourcesResult, ListToolsResult, PaginatedRequestParams, ProgressNotificationParam,
    ProtocolVersion, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Resource,
    ResourceContents, ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::backend::{Backend, BackendError, Limits, Outcome, RunSpec};
use crate::files;

/// Server-wide settings and state shared by every session.
pub struct Shared {
    pub backend: Arc<dyn Backend>,
    pub max_output: usize,
    pub default_timeout: Duration,
    pub max_timeout: Duration,
    pub max_sandboxes: usize,
    /// Sandboxes (persistent and running) per owner (API key or "stdio").
    quota: Mutex<HashMap<String, usize>>,
    /// Every live persistent sandbox, for clean-up at shutdown.
    live: Mutex<HashMap<String, ()>>,
}

impl Shared {
    pub fn new(
        backend: Arc<dyn Backend>,
        max_output: usize,
        default_timeout: Duration,
        max_timeout: Duration,
        max_sandboxes: usize,
    ) -> Arc<Shared> {
        Arc::new(Shared {
            backend,
            max_output,
            default_timeout,
            max_timeout,
            max_sandboxes,
            quota: Mutex::new(HashMap::new()),
            live: Mutex::new(HashMap::new()),
        })
    }

    fn acquire(self: &Arc<Self>, owner: &str) -> Result<Permit, String> {
        let mut q = self.quota.lock().unwrap_or_else(|e| e.into_inner());
        let n = q.entry(owner.to_string()).or_insert(0);
        if *n >= self.max_sandboxes {
            return Err(format!(
                "too many sandboxes: this client already has {n} (persistent sandboxes plus runs in progress; limit {}). Destroy one or wait for a run to finish.",
                self.max_sandboxes
            ));
        }
        *n += 1;
        Ok(Permit {
            shared: self.clone(),
            owner: owner.to_string(),
        })
    }

    /// Destroys every persistent sandbox still alive (server shutdown).
    pub async fn destroy_all(&self) {
        let ids: Vec<String> = self
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(k, _)| k)
            .collect();
        for id in ids {
            tracing::info!(sandbox = %id, "destroying sandbox at shutdown");
            if let Err(e) = self.backend.destroy(&id).await {
                tracing::warn!(sandbox = %id, "destroy failed: {e}");
            }
        }
    }
}

/// One unit of an owner's sandbox quota.
struct Permit {
    shared: Arc<Shared>,
    owner: String,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut q = self.shared.quota.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = q.get_mut(&self.owner) {
            *n = n.saturating_sub(1);
        }
    }
}

struct Owned {
    profile: String,
    workspace: phantom_zygote::backend::WorkspaceDir,
    created: Instant,
    _permit: Permit,
}

struct Session {
    shared: Arc<Shared>,
    sandboxes: Mutex<BTreeMap<String, Owned>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        let ids: Vec<String> =
            std::mem::take(&mut *self.sandboxes.lock().unwrap_or_else(|e| e.into_inner()))
                .into_keys()
                .collect();
        if ids.is_empty() {
            return;
        }
        {
            let mut live = self.shared.live.lock().unwrap_or_else(|e| e.into_inner());
            for id in &ids {
                live.remove(id);
            }
        }
        let backend = self.shared.backend.clone();
        // Drop cannot await; phantom destroy is a short blocking command.
        std::thread::spawn(move || {
            for id in ids {
                tracing::info!(sandbox = %id, "session ended: destroying its sandbox");
                backend.destroy_blocking(&id);
            }
        });
    }
}

/// The MCP handler of one session.
#[derive(Clone)]
pub struct PhantomMcp {
    session: Arc<Session>,
}

/// Explicit clean-up of a session (stdio: when the client goes away).
pub async fn end_session(s: &PhantomMcp) {
    let ids: Vec<String> = std::mem::take(
        &mut *s
            .session
            .sandboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner()),
    )
    .into_keys()
    .collect();
    for id in ids {
        s.session
            .shared
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        tracing::info!(sandbox = %id, "session ended: destroying its sandbox");
        if let Err(e) = s.session.shared.backend.destroy(&id).await {
            tracing::warn!(sandbox = %id, "destroy failed: {e}");
        }
    }
}

// ---- tool parameters ----

/// Limits shared by the tools that make a sandbox.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitArgs {
    /// Memory limit, e.g. "512MiB" (default: the profile's)
    #[serde(default)]
    pub memory: Option<String>,
    /// CPU limit in cores, e.g. 1.5 (default: the profile's)
    #[serde(default)]
    pub cpus: Option<f64>,
    /// Maximum number of processes (default: the profile's)
    #[serde(default)]
    pub pids: Option<i64>,
    /// Network: "none", "loopback" or "host" (default: the profile's, usually none)
    #[serde(default)]
    pub network: Option<String>,
    /// Most bytes the sandbox's workspace may hold, e.g. "64MiB" (default and
    /// ceiling: the profile's resources.workspace)
    #[serde(default)]
    pub workspace_size: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunCodeArgs {
    /// Language of `code`: python, javascript (node), go, rust, java or shell.
    /// Optional when `profile` implies it (python-dev, node-dev, go-dev, rust-dev, java-dev).
    #[serde(default)]
    pub language: Option<String>,
    /// Sandbox profile (see list_profiles); default: the language's *-dev profile
    #[serde(default)]
    pub profile: Option<String>,
    /// The program's source code (written to main.py / main.js / main.go / main.rs / Main.java / main.sh)
    pub code: String,
    /// Text fed to the program's standard input
    #[serde(default)]
    pub stdin: Option<String>,
    /// Extra files written into the workspace first: {"relative/path": "content"}
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// Time limit in seconds (default 30); the sandbox is killed after it (exit code 124)
    #[serde(default)]
    pub timeout_seconds: Option<f64>,
    #[serde(flatten)]
    pub limits: LimitArgs,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunCommandArgs {
    /// Program and arguments, e.g. ["sh", "-c", "ls -la"] (no shell unless you run one)
    pub command: Vec<String>,
    /// Sandbox profile (see list_profiles), e.g. "python-dev" or "minimal"
    pub profile: String,
    /// Text fed to the command's standard input
    #[serde(default)]
    pub stdin: Option<String>,
    /// Files written into the workspace first: {"relative/path": "content"}
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// Time limit in seconds (default 30); exit code 124 when reached
    #[serde(default)]
    pub timeout_seconds: Option<f64>,
    #[serde(flatten)]
    pub limits: LimitArgs,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSandboxArgs {
    /// Sandbox profile (see list_profiles), e.g. "python-dev"
    pub profile: String,
    #[serde(flatten)]
    pub limits: LimitArgs,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecArgs {
    /// Sandbox id returned by create_sandbox
    pub id: String,
    /// Program and arguments, e.g. ["python3", "main.py"]; runs in /workspace
    pub command: Vec<String>,
    /// Text fed to the command's standard input
    #[serde(default)]
    pub stdin: Option<String>,
    /// Time limit in seconds (default 30); the command is killed after it (exit code 124)
    #[serde(default)]
    pub timeout_seconds: Option<f64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteFileArgs {
    /// Sandbox id returned by create_sandbox
    pub id: String,
    /// Path relative to the workspace (/workspace in the sandbox); no "..", not absolute
    pub path: String,
    /// The file's new content (UTF-8 text); parent directories are created
    pub content: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadFileArgs {
    /// Sandbox id returned by create_sandbox
    pub id: String,
    /// Path relative to the workspace (/workspace in the sandbox)
    pub path: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListFilesArgs {
    /// Sandbox id returned by create_sandbox
    pub id: String,
    /// Directory relative to the workspace (default: the workspace itself)
    #[serde(default)]
    pub path: Option<String>,
    /// How many directory levels to descend (default 3)
    #[serde(default)]
    pub depth: Option<usize>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdArgs {
    /// Sandbox id returned by create_sandbox
    pub id: String,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

const MAX_FILE_READ: u64 = 1024 * 1024;

struct Lang {
    names: &'static [&'static str],
    profile: &'static str,
    file: &'static str,
    argv: &'static [&'static str],
}

const LANGS: &[Lang] = &[
    Lang {
        names: &["python", "python3", "py"],
        profile: "python-dev",
        file: "main.py",
        argv: &["python3", "main.py"],
    },
    Lang {
        names: &["javascript", "js", "node", "nodejs"],
        profile: "node-dev",
        file: "main.js",
        argv: &["node", "main.js"],
    },
    Lang {
        names: &["go", "golang"],
        profile: "go-dev",
        file: "main.go",
        argv: &["go", "run", "main.go"],
    },
    Lang {
        names: &["rust", "rs"],
        profile: "rust-dev",
        file: "main.rs",
        argv: &["sh", "-c", "rustc -o /tmp/main main.rs && exec /tmp/main"],
    },
    Lang {
        names: &["java"],
        profile: "java-dev",
        file: "Main.java",
        argv: &["java", "Main.java"],
    },
    Lang {
        names: &["shell", "sh", "bash"],
        profile: "python-dev",
        file: "main.sh",
        argv: &["sh", "main.sh"],
    },
];

/// Python code up to this size runs as `python3 -c CODE`: well below the
/// kernel's limit for one argument (MAX_ARG_STRLEN, 128 KiB).
const INLINE_CODE_MAX: usize = 64 << 10;

/// `python3 -c CODE` for Python code with no other files: no file to copy
/// in, so the daemon's Python fork server (or any warm zygote) can serve
/// it. Longer code, or code that comes with files, is written to `main.py`.
fn inline_python(lang: &Lang, files: &[(String, String)], code: &str) -> Option<Vec<String>> {
    (lang.file == "main.py"
        && files.is_empty()
        && code.len() <= INLINE_CODE_MAX
        && !code.contains('\0'))
    .then(|| vec!["python3".to_string(), "-c".to_string(), code.to_string()])
}

fn lang_by_name(n: &str) -> Option<&'static Lang> {
    let n = n.to_ascii_lowercase();
    LANGS.iter().find(|l| l.names.contains(&n.as_str()))
}

fn lang_by_profile(p: &str) -> Option<&'static Lang> {
    LANGS
        .iter()
        .find(|l| l.profile == p && l.profile != "minimal")
}

/// A tool failure the caller should read (`isError: true`).
#[derive(Debug)]
struct ToolError(String);

impl From<String> for ToolError {
    fn from(s: String) -> Self {
        ToolError(s)
    }
}

impl From<&str> for ToolError {
    fn from(s: &str) -> Self {
        ToolError(s.to_string())
    }
}

impl From<BackendError> for ToolError {
    fn from(e: BackendError) -> Self {
        ToolError(e.to_string())
    }
}

impl From<files::FileError> for ToolError {
    fn from(e: files::FileError) -> Self {
        ToolError(e.to_string())
    }
}

type ToolResult = Result<CallToolResult, ToolError>;

fn ok_json(v: serde_json::Value) -> ToolResult {
    let text = serde_json::to_string_pretty(&v).unwrap_or_default();
    let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
    r.structured_content = None;
    Ok(r)
}

fn parse<T: DeserializeOwned>(
    tool: &str,
    args: Option<rmcp::model::JsonObject>,
) -> Result<T, ToolError> {
    serde_json::from_value(serde_json::Value::Object(args.unwrap_or_default()))
        .map_err(|e| ToolError(format!("{tool}: invalid arguments: {e}")))
}

fn check_profile(name: &str) -> Result<phantom_policy::Profile, ToolError> {
    let catalog = phantom_policy::Catalog::load(&phantom_policy::Catalog::search_dirs(&[]));
    let known: Vec<String> = catalog
        .entries()
        .iter()
        .map(|e| e.profile.name.clone())
        .collect();
    if let Ok(e) = catalog.get(name) {
        Ok(e.profile.clone())
    } else {
        Err(ToolError(format!(
            "unknown profile {name:?}; known profiles: {}",
            known.join(", ")
        )))
    }
}

/// The tool's limits, checked; a request may only narrow `profile`
/// (phantom_policy::narrow), else a tool error naming the rule.
fn check_limits(l: &LimitArgs, profile: &phantom_policy::Profile) -> Result<Limits, ToolError> {
    let network = match &l.network {
        Some(n) => Some(
            phantom_policy::NetworkMode::from_name(n)
                .ok_or_else(|| format!("network {n:?}: expected none, loopback, egress or host"))?,
        ),
        None => None,
    };
    if let Some(c) = l.cpus {
        if !(c > 0.0 && c.is_finite()) {
            return Err(format!("cpus {c}: must be a positive number").into());
        }
    }
    if let Some(p) = l.pids {
        if p < 1 {
            return Err(format!("pids {p}: must be at least 1").into());
        }
    }
    if let Some(m) = &l.memory {
        let ok = m.chars().next().is_some_and(|c| c.is_ascii_digit())
            && m.chars().all(|c| c.is_ascii_alphanumeric() || c == '.');
        if !ok {
            return Err(format!("memory {m:?}: expected a size such as 512MiB").into());
        }
    }
    // One parser for sizes, the one phantom's flags use.
    let mut resources = phantom_zygote::limits::check(l.memory.as_deref(), l.cpus, l.pids, "")
        .map_err(|e| ToolError(format!("{e:#}")))?;
    resources.workspace = phantom_zygote::limits::check_workspace(l.workspace_size.as_deref(), "")
        .map_err(|e| ToolError(format!("{e:#}")))?;
    phantom_policy::check_narrowing(
        profile,
        &phantom_policy::Narrowing {
            mode: None,
            network,
            resources,
        },
        "",
    )
    .map_err(|e| ToolError(e.to_string()))?;
    Ok(Limits {
        memory: l.memory.clone(),
        cpus: l.cpus,
        pids: l.pids,
        network: l.network.clone(),
        workspace_size: l.workspace_size.clone(),
        raised: Default::default(),
    })
}

fn check_command(c: &[String]) -> Result<(), ToolError> {
    if c.is_empty() || c[0].is_empty() {
        return Err("command: give the program and its arguments, e.g. [\"ls\", \"-la\"]".into());
    }
    if c.iter().any(|a| a.contains('\0')) {
        return Err("command: arguments must not contain NUL bytes".into());
    }
    Ok(())
}

fn outcome_json(o: &Outcome, extra: serde_json::Value) -> serde_json::Value {
    let mut v = serde_json::to_value(o).unwrap_or_default();
    if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        for (k, val) in e {
            m.insert(k.clone(), val.clone());
        }
    }
    v
}

/// A run in a fresh sandbox.
struct Fresh {
    profile: String,
    argv: Vec<String>,
    files: Vec<(String, String)>,
    stdin: Option<String>,
    timeout: Duration,
    limits: Limits,
    extra: serde_json::Value,
}

/// Removes a run's workspace when the run ends or is abandoned.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tool<T: JsonSchema + 'static>(
    name: &'static str,
    desc: &'static str,
    ann: ToolAnnotations,
) -> Tool {
    Tool::new(
        name,
        desc,
        rmcp::handler::server::common::schema_for_type::<T>(),
    )
    .with_annotations(ann)
}

fn tools() -> Vec<Tool> {
    let ro = || ToolAnnotations::new().read_only(true);
    let rw = || ToolAnnotations::new().read_only(false).destructive(false);
    vec![
        tool::<RunCodeArgs>(
            "run_code",
            "Run a program in a fresh, isolated Linux sandbox and return its stdout, stderr, exit_code and duration_ms. \
             Give `code` and `language` (python, javascript, go, rust, java, shell) or a `profile`. \
             The code is saved as main.<ext> in /workspace (the working directory) with any extra `files`; nothing persists afterwards. \
             No network unless the profile allows it. timed_out=true (exit 124) means the time limit was hit; \
             killed_for_memory=true (exit 137) means the memory limit was hit. A non-zero exit_code is the program's own status, not a tool failure. \
             Output beyond the cap is cut with a marker.",
            rw(),
        ),
        tool::<RunCommandArgs>(
            "run_command",
            "Run one command (argv list, no shell unless you call sh -c) in a fresh, isolated sandbox of the given profile, \
             in an empty /workspace plus any `files` you give. Returns stdout, stderr, exit_code, duration_ms, timed_out, killed_for_memory. Nothing persists.",
            rw(),
        ),
        tool::<CreateSandboxArgs>(
            "create_sandbox",
            "Create a persistent sandbox from a profile and return its id. Use it with exec, write_file, read_file, list_files; \
             its /workspace keeps files between calls. It belongs to this session only and is destroyed by destroy_sandbox or when the session ends.",
            rw(),
        ),
        tool::<ExecArgs>(
            "exec",
            "Run a command (argv list) inside a persistent sandbox made by create_sandbox, in /workspace. \
             Returns stdout, stderr, exit_code, duration_ms, timed_out.",
            rw(),
        ),
        tool::<WriteFileArgs>(
            "write_file",
            "Write a text file into a persistent sandbox's /workspace. The path is relative to /workspace; \"..\", absolute paths and symlinks are refused.",
            rw(),
        ),
        tool::<ReadFileArgs>(
            "read_file",
            "Read a text file (up to 1 MiB) from a persistent sandbox's /workspace. The path is relative to /workspace; \"..\", absolute paths and symlinks are refused.",
            ro(),
        ),
        tool::<ListFilesArgs>(
            "list_files",
            "List files under a directory of a persistent sandbox's /workspace (recursive to `depth`), with type (file, dir, symlink) and size.",
            ro(),
        ),
        tool::<IdArgs>(
            "destroy_sandbox",
            "Destroy a persistent sandbox: kill its processes and delete its workspace.",
            ToolAnnotations::new().read_only(false).destructive(true),
        ),
        tool::<NoArgs>(
            "list_sandboxes",
            "List this session's persistent sandboxes with their profile, status and age.",
            ro(),
        ),
        tool::<NoArgs>(
            "list_profiles",
            "List the sandbox profiles (name and description). Each profile's full YAML is the resource phantom://profiles/NAME.",
            ro(),
        ),
    ]
}

const INSTRUCTIONS: &str = "Phantom runs code in isolated Linux sandboxes. For one-off code use run_code \
(language + code) or run_command (profile + argv). For multi-step work use create_sandbox, then exec / \
write_file / read_file / list_files with its id, and destroy_sandbox when done. Profiles: list_profiles; \
their YAML: resources phantom://profiles/NAME.";

impl PhantomMcp {
    pub fn new(shared: Arc<Shared>) -> PhantomMcp {
        PhantomMcp {
            session: Arc::new(Session {
                shared,
                sandboxes: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.session.shared
    }

    fn timeout(&self, t: Option<f64>) -> Result<Duration, ToolError> {
        match t {
            None => Ok(self.shared().default_timeout),
            Some(s) if !(s > 0.0 && s.is_finite()) => {
                Err(format!("timeout_seconds {s}: must be a positive number").into())
            }
            Some(s) => {
                let d = Duration::from_secs_f64(s);
                if d > self.shared().max_timeout {
                    Err(format!(
                        "timeout_seconds {s}: more than this server's limit of {}s",
                        self.shared().max_timeout.as_secs()
                    )
                    .into())
                } else {
                    Ok(d)
                }
            }
        }
    }

    /// The workspace of a sandbox of this session.
    fn workspace(&self, id: &str) -> Result<phantom_zygote::backend::WorkspaceDir, ToolError> {
        self.session
            .sandboxes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .map(|o| o.workspace.clone())
            .ok_or_else(|| ToolError(format!("no such sandbox: {id:?} (use create_sandbox, or list_sandboxes for this session's ids)")))
    }

    async fn run_fresh(&self, owner: &str, f: Fresh, ct: CancellationToken) -> ToolResult {
        let Fresh {
            profile,
            argv,
            files,
            stdin,
            timeout,
            limits,
            extra,
        } = f;
        let _permit = self.shared().acquire(owner)?;
        let id = format!("mcp-run-{}", crate::random_hex(6));
        // Files go into a scratch directory that is copied into the
        // sandbox's fresh workspace; without files there is nothing to
        // copy, and the run may take any warm zygote (a fork server too).
        let mut scratch = None;
        if !files.is_empty() {
            let dir = self.shared().backend.scratch_dir().join(&id);
            std::fs::create_dir_all(&dir)
                .map_err(|e| ToolError(format!("cannot create a workspace: {e}")))?;
            scratch = Some(Scratch(dir.clone()));
            for (path, content) in &files {
                files::write(&dir, path, content.as_bytes())?;
            }
        }
        let spec = RunSpec {
            id,
            profile,
            argv,
            workspace: scratch.as_ref().map(|s| s.0.clone()),
            stdin,
            timeout,
            limits,
            env: Vec::new(),
        };
        let o = self.shared().backend.run(spec, ct).await?;
        drop(scratch);
        ok_json(outcome_json(&o, extra))
    }

    async fn dispatch(
        &self,
        name: &str,
        args: Option<rmcp::model::JsonObject>,
        ctx: &RequestContext<RoleServer>,
    ) -> ToolResult {
        let owner = owner_of(ctx);
        match name {
            "run_code" => {
                let a: RunCodeArgs = parse(name, args)?;
                let lang = match (&a.language, &a.profile) {
                    (Some(l), _) => lang_by_name(l).ok_or_else(|| {
                        ToolError(format!(
                            "unknown language {l:?}; use python, javascript, go, rust, java or shell"
                        ))
                    })?,
                    (None, Some(p)) => lang_by_profile(p).ok_or_else(|| {
                        ToolError(format!(
                            "profile {p:?} does not imply a language: give `language` too"
                        ))
                    })?,
                    (None, None) => {
                        return Err("give `language` (e.g. \"python\") or a `profile`".into())
                    }
                };
                let profile = a
                    .profile
                    .clone()
                    .unwrap_or_else(|| lang.profile.to_string());
                let p = check_profile(&profile)?;
                let limits = check_limits(&a.limits, &p)?;
                let timeout = self.timeout(a.timeout_seconds)?;
                if a.files.contains_key(lang.file) {
                    return Err(format!(
                        "files: {:?} is where `code` goes; use another name",
                        lang.file
                    )
                    .into());
                }
                let mut files: Vec<(String, String)> = a.files.into_iter().collect();
                let argv = match inline_python(lang, &files, &a.code) {
                    Some(argv) => argv,
                    None => {
                        files.push((lang.file.to_string(), a.code));
                        lang.argv.iter().map(|s| s.to_string()).collect()
                    }
                };
                let extra = serde_json::json!({"profile": profile, "language": lang.names[0]});
                let f = Fresh {
                    profile,
                    argv,
                    files,
                    stdin: a.stdin,
                    timeout,
                    limits,
                    extra,
                };
                self.run_fresh(&owner, f, ctx.ct.clone()).await
            }
            "run_command" => {
                let a: RunCommandArgs = parse(name, args)?;
                check_command(&a.command)?;
                let p = check_profile(&a.profile)?;
                let limits = check_limits(&a.limits, &p)?;
                let timeout = self.timeout(a.timeout_seconds)?;
                let files = a.files.into_iter().collect();
                let extra = serde_json::json!({"profile": a.profile});
                let f = Fresh {
                    profile: a.profile,
                    argv: a.command,
                    files,
                    stdin: a.stdin,
                    timeout,
                    limits,
                    extra,
                };
                self.run_fresh(&owner, f, ctx.ct.clone()).await
            }
            "create_sandbox" => {
                let a: CreateSandboxArgs = parse(name, args)?;
                let p = check_profile(&a.profile)?;
                let limits = check_limits(&a.limits, &p)?;
                let permit = self.shared().acquire(&owner)?;
                let id = format!("mcp-{}", crate::random_hex(6));
                let info = self
                    .shared()
                    .backend
                    .create(&id, &a.profile, &limits)
                    .await?;
                self.shared()
                    .live
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id.clone(), ());
                self.session
                    .sandboxes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(
                        id.clone(),
                        Owned {
                            profile: a.profile.clone(),
                            workspace: info.workspace.clone(),
                            created: Instant::now(),
                            _permit: permit,
                        },
                    );
                tracing::info!(sandbox = %id, profile = %a.profile, "created sandbox");
                ok_json(
                    serde_json::json!({"id": id, "profile": a.profile, "status": info.status, "workspace": "/workspace"}),
                )
            }
            "exec" => {
                let a: ExecArgs = parse(name, args)?;
                check_command(&a.command)?;
                self.workspace(&a.id)?;
                let timeout = self.timeout(a.timeout_seconds)?;
                let o = self
                    .shared()
                    .backend
                    .exec(&a.id, &a.command, &[], a.stdin, timeout, ctx.ct.clone())
                    .await?;
                ok_json(outcome_json(&o, serde_json::json!({"id": a.id})))
            }
            "write_file" => {
                let a: WriteFileArgs = parse(name, args)?;
                let ws = self.workspace(&a.id)?;
                let n = a.content.len();
                tokio::task::spawn_blocking(move || {
                    files::write(&ws, &a.path, a.content.as_bytes())
                })
                .await
                .map_err(|e| ToolError(e.to_string()))??;
                ok_json(serde_json::json!({"written_bytes": n}))
            }
            "read_file" => {
                let a: ReadFileArgs = parse(name, args)?;
                let ws = self.workspace(&a.id)?;
                let path = a.path.clone();
                let data =
                    tokio::task::spawn_blocking(move || files::read(&ws, &a.path, MAX_FILE_READ))
                        .await
                        .map_err(|e| ToolError(e.to_string()))??;
                match String::from_utf8(data) {
                    Ok(s) => Ok(CallToolResult::success(vec![ContentBlock::text(s)])),
                    Err(_) => Err(format!("path {path:?}: not UTF-8 text").into()),
                }
            }
            "list_files" => {
                let a: ListFilesArgs = parse(name, args)?;
                let ws = self.workspace(&a.id)?;
                let depth = a.depth.unwrap_or(3).clamp(1, 32);
                let rel = a.path.unwrap_or_default();
                let entries =
                    tokio::task::spawn_blocking(move || files::list(&ws, &rel, depth, 10_000))
                        .await
                        .map_err(|e| ToolError(e.to_string()))??;
                ok_json(serde_json::json!({"entries": entries}))
            }
            "destroy_sandbox" => {
                let a: IdArgs = parse(name, args)?;
                self.workspace(&a.id)?;
                let res = self.shared().backend.destroy(&a.id).await;
                let owned = self
                    .session
                    .sandboxes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&a.id);
                self.shared()
                    .live
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&a.id);
                drop(owned);
                res?;
                tracing::info!(sandbox = %a.id, "destroyed sandbox");
                ok_json(serde_json::json!({"destroyed": a.id}))
            }
            "list_sandboxes" => {
                let _: NoArgs = parse(name, args)?;
                let mine: Vec<(String, String, u64)> = self
                    .session
                    .sandboxes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .map(|(id, o)| (id.clone(), o.profile.clone(), o.created.elapsed().as_secs()))
                    .collect();
                let ids: Vec<String> = mine.iter().map(|m| m.0.clone()).collect();
                let status: HashMap<String, String> = self
                    .shared()
                    .backend
                    .status(&ids)
                    .await
                    .into_iter()
                    .collect();
                let list: Vec<serde_json::Value> = mine
                    .into_iter()
                    .map(|(id, profile, age)| {
                        serde_json::json!({
                            "id": id,
                            "profile": profile,
                            "status": status.get(&id).cloned().unwrap_or_else(|| "gone".into()),
                            "age_seconds": age,
                        })
                    })
                    .collect();
                ok_json(serde_json::json!({"sandboxes": list}))
            }
            "list_profiles" => {
                let _: NoArgs = parse(name, args)?;
                let catalog =
                    phantom_policy::Catalog::load(&phantom_policy::Catalog::search_dirs(&[]));
                let list: Vec<serde_json::Value> = catalog
                    .entries()
                    .iter()
                    .map(|e| {
                        serde_json::json!({
                            "name": e.profile.name,
                            "description": e.profile.description,
                            "resource": format!("phantom://profiles/{}", e.profile.name),
                        })
                    })
                    .collect();
                ok_json(serde_json::json!({"profiles": list}))
            }
            other => Err(format!("unknown tool {other:?}; tools: {}", tool_names()).into()),
        }
    }
}

/// The tools' names, for errors.
fn tool_names() -> String {
    tools()
        .iter()
        .map(|t| t.name.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Who a request counts against: the API key's id on HTTP, else "stdio".
fn owner_of(ctx: &RequestContext<RoleServer>) -> String {
    ctx.extensions
        .get::<http::request::Parts>()
        .and_then(|p| p.extensions.get::<crate::http::KeyId>())
        .map(|k| k.0.clone())
        .unwrap_or_else(|| "stdio".to_string())
}

/// Sends a progress notification every second while `fut` runs, when the
/// client asked for progress.
async fn with_progress<F: std::future::Future>(
    ctx: &RequestContext<RoleServer>,
    what: &str,
    fut: F,
) -> F::Output {
    let Some(token) = ctx.meta.get_progress_token() else {
        return fut.await;
    };
    let peer = ctx.peer.clone();
    let what = what.to_string();
    let ticker = tokio::spawn(async move {
        let start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tick.tick().await;
            let secs = start.elapsed().as_secs_f64().floor();
            let p = ProgressNotificationParam::new(token.clone(), secs)
                .with_message(format!("{what}: running for {secs}s"));
            if peer.notify_progress(p).await.is_err() {
                break;
            }
        }
    });
    let out = fut.await;
    ticker.abort();
    out
}

impl ServerHandler for PhantomMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_server_info(Implementation::new("phantom", env!("CARGO_PKG_VERSION")))
        .with_instructions(INSTRUCTIONS)
    }

    /// Session-based protocol versions only: a persistent sandbox belongs
    /// to a session, and 2026-07-28 has none over HTTP.
    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(ProtocolVersion::known_up_to(&ProtocolVersion::V_2025_11_25))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let name = request.name.to_string();
        // An unknown tool is a protocol error (-32602, as the spec's
        // tools/call example), not a tool's error result.
        if !tools().iter().any(|t| t.name == name) {
            return Err(McpError::invalid_params(
                format!("Unknown tool: {name} (tools: {})", tool_names()),
                None,
            ));
        }
        let started = Instant::now();
        let res = with_progress(
            &context,
            &name,
            self.dispatch(&name, request.arguments, &context),
        )
        .await;
        let res = match res {
            Ok(r) => {
                tracing::info!(tool = %name, ms = started.elapsed().as_millis() as u64, "tool call");
                r
            }
            Err(ToolError(msg)) => {
                tracing::info!(tool = %name, error = %msg, "tool call failed");
                CallToolResult::error(vec![ContentBlock::text(msg)])
            }
        };
        Ok(CallToolResponse::Complete(res))
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let catalog = phantom_policy::Catalog::load(&phantom_policy::Catalog::search_dirs(&[]));
        let list = catalog
            .entries()
            .iter()
            .map(|e| {
                let mut r = Resource::new(
                    format!("phantom://profiles/{}", e.profile.name),
                    e.profile.name.clone(),
                )
                .with_mime_type("application/yaml");
                if let Some(d) = &e.profile.description {
                    r = r.with_description(d.clone());
                }
                r
            })
            .collect();
        Ok(ListResourcesResult::with_all_items(list))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let uri = request.uri;
        let Some(name) = uri.strip_prefix("phantom://profiles/") else {
            return Err(McpError::resource_not_found(
                format!("no such resource: {uri} (profiles are phantom://profiles/NAME)"),
                None,
            ));
        };
        let catalog = phantom_policy::Catalog::load(&phantom_policy::Catalog::search_dirs(&[]));
        match catalog.get(name) {
            Ok(e) => Ok(ReadResourceResult::new(vec![ResourceContents::text(
                e.text.clone(),
                uri.clone(),
            )
            .with_mime_type("application/yaml")])
            .into()),
            Err(e) => Err(McpError::resource_not_found(format!("{uri}: {e}"), None)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tool's arguments may only narrow its profile (issue 14 item 1).
    /// Python without files runs inline (servable by a fork server);
    /// with files, when long, or in another language, it is a file.
    #[test]
    fn python_without_files_runs_inline() {
        let py = lang_by_name("python").unwrap();
        assert_eq!(
            inline_python(py, &[], "print(1)"),
            Some(vec!["python3".into(), "-c".into(), "print(1)".into()])
        );
        let with_file = [("data.txt".to_string(), "x".to_string())];
        assert_eq!(inline_python(py, &with_file, "print(1)"), None);
        assert_eq!(
            inline_python(py, &[], &"#".repeat(INLINE_CODE_MAX + 1)),
            None
        );
        assert_eq!(inline_python(lang_by_name("node").unwrap(), &[], "1"), None);
        assert_eq!(
            inline_python(lang_by_name("shell").unwrap(), &[], "true"),
            None
        );
    }

    #[test]
    fn limits_may_only_narrow_the_profile() {
        let p = check_profile("python-dev").unwrap();
        let args = |network: Option<&str>, memory: Option<&str>, pids: Option<i64>| LimitArgs {
            memory: memory.map(str::to_string),
            cpus: None,
            pids,
            network: network.map(str::to_string),
            workspace_size: None,
        };
        let e = check_limits(&args(Some("host"), None, None), &p).unwrap_err();
        assert!(
            e.0.contains("network host") && e.0.contains("a request may only narrow its profile"),
            "{}",
            e.0
        );
        let e = check_limits(&args(None, Some("4GiB"), None), &p).unwrap_err();
        assert!(
            e.0.starts_with("memory 4 GiB: above the profile python-dev's"),
            "{}",
            e.0
        );
        assert!(check_limits(&args(None, None, Some(100_000)), &p).is_err());
        let ok = check_limits(&args(Some("none"), Some("256MiB"), Some(64)), &p).unwrap();
        assert_eq!(ok.memory.as_deref(), Some("256MiB"));
        // python-dev's workspace holds 1 GiB: a tool may ask for less only.
        let ws = |w: &str| LimitArgs {
            workspace_size: Some(w.to_string()),
            ..Default::default()
        };
        let e = check_limits(&ws("2GiB"), &p).unwrap_err();
        assert!(e.0.starts_with("workspace_size 2 GiB: above"), "{}", e.0);
        let ok = check_limits(&ws("64MiB"), &p).unwrap();
        assert_eq!(ok.workspace_size.as_deref(), Some("64MiB"));
    }
}

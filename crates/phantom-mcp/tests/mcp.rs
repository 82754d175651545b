//! `phantom mcp` driven by a real MCP client: the official Python SDK, in
//! the virtualenv that `crates/phantom-mcp/tests/setup-venv.sh` makes
//! (`target/mcp-venv`, or `$PHANTOM_MCP_VENV`). The checks themselves are
//! in `mcp_client.py`; these tests start the server and judge the result.
//! They need root (sandboxes are real) and skip, saying why, without it or
//! without the venv. Each test uses its own `--root` and
//! `PHANTOM_SANDBOX_DIR` and checks nothing is left behind.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The tests look for stray `sleep 100` processes: run them one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn venv_python() -> Option<PathBuf> {
    let venv = std::env::var_os("PHANTOM_MCP_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/mcp-venv"));
    let py = venv.join("bin/python");
    let ok = Command::new(&py)
        .args(["-c", "import mcp.client.session, httpx2"])
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    ok.then_some(py)
}

/// The phantom binary: $PHANTOM_BIN, or target/<profile>/phantom, built
/// now so it is not stale.
fn phantom_bin() -> PathBuf {
    if let Some(b) = std::env::var_os("PHANTOM_BIN") {
        return PathBuf::from(b);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(cargo)
        .args(["build", "-q", "-p", "phantom"])
        .current_dir(workspace_root())
        .status()
        .expect("cargo build -p phantom");
    assert!(st.success(), "cargo build -p phantom failed");
    // target/debug/deps/mcp-HASH -> target/debug/phantom
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("phantom");
    assert!(bin.exists(), "{} missing", bin.display());
    bin
}

/// Why this test cannot run here, if it cannot.
fn skip_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root (real sandboxes)".into());
    }
    if venv_python().is_none() {
        return Some(
            "the MCP client venv is missing: run crates/phantom-mcp/tests/setup-venv.sh".into(),
        );
    }
    None
}

macro_rules! skip_unless_ready {
    () => {
        if let Some(why) = skip_reason() {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
}

struct Env {
    root: tempfile::TempDir,
    sandboxes: tempfile::TempDir,
    bin: PathBuf,
    py: PathBuf,
}

impl Env {
    fn new() -> Env {
        Env {
            root: tempfile::Builder::new()
                .prefix("phantom-mcp-root")
                .tempdir()
                .unwrap(),
            sandboxes: tempfile::Builder::new()
                .prefix("phantom-mcp-sbx")
                .tempdir()
                .unwrap(),
            bin: phantom_bin(),
            py: venv_python().unwrap(),
        }
    }

    fn root(&self) -> &str {
        self.root.path().to_str().unwrap()
    }

    fn client(&self, args: &[&str]) -> (bool, String) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp_client.py");
        let mut child = Command::new(&self.py)
            .arg(script)
            .args(args)
            .env("PHANTOM_SANDBOX_DIR", self.sandboxes.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let err = child.stderr.take().unwrap();
        let err_thread = std::thread::spawn(move || {
            let mut s = String::new();
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                s.push_str(&l);
                s.push('\n');
            }
            s
        });
        let mut out = String::new();
        for l in BufReader::new(child.stdout.take().unwrap())
            .lines()
            .map_while(Result::ok)
        {
            println!("{l}");
            out.push_str(&l);
            out.push('\n');
        }
        let st = child.wait().unwrap();
        let err = err_thread.join().unwrap();
        if !st.success() {
            // The server's log and the client's traceback.
            let tail: Vec<&str> = err.lines().rev().take(60).collect();
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
        (st.success() && out.contains("ALL CHECKS PASSED"), out)
    }

    /// Nothing left: no container state, no sandbox dirs or run workspaces.
    fn assert_clean(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left: Vec<_> = std::fs::read_dir(self.root.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            let mut stray: Vec<_> = std::fs::read_dir(self.sandboxes.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .filter(|n| n != ".mcp")
                .collect();
            if let Ok(rd) = std::fs::read_dir(self.sandboxes.path().join(".mcp")) {
                stray.extend(rd.map(|e| e.unwrap().file_name()));
            }
            if left.is_empty() && stray.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "left behind: state {left:?}, sandbox dirs {stray:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn stdio_tools_sessions_and_latency() {
    skip_unless_ready!();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::new();
    let (ok, out) = env.client(&["stdio", env.bin.to_str().unwrap(), env.root()]);
    assert!(ok, "MCP client checks failed over stdio");
    assert!(out.contains("LATENCY"));
    env.assert_clean();
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_keys(dir: &Path, mode: u32) -> PathBuf {
    let p = dir.join("keys");
    std::fs::write(
        &p,
        "# phantom mcp keys\nkey-one-0123456789abcdef\nkey-two-0123456789abcdef\n",
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

#[test]
fn http_tools_auth_origin_and_quota() {
    skip_unless_ready!();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::new();
    let keys_dir = tempfile::tempdir().unwrap();
    let keys = write_keys(keys_dir.path(), 0o600);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let server = Server(
        Command::new(&env.bin)
            .args(["mcp", "--transport", "http", "--listen", &listen])
            .arg("--api-keys")
            .arg(&keys)
            .args([
                "--root",
                env.root(),
                "--max-sandboxes",
                "2",
                "--max-body",
                "1MiB",
            ])
            .env("PHANTOM_SANDBOX_DIR", env.sandboxes.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(&listen).is_err() {
        assert!(
            Instant::now() < deadline,
            "server did not listen on {listen}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!("http://{listen}/mcp");
    let (ok, _) = env.client(&[
        "http",
        &url,
        "key-one-0123456789abcdef",
        "key-two-0123456789abcdef",
        env.bin.to_str().unwrap(),
        env.root(),
    ]);
    // Stopping the server destroys the sandboxes still open.
    drop(server);
    assert!(ok, "MCP client checks failed over HTTP");
    env.assert_clean();
}

#[test]
fn http_refuses_unsafe_setup() {
    skip_unless_ready!();
    let bin = phantom_bin();
    let dir = tempfile::tempdir().unwrap();
    let keys = write_keys(dir.path(), 0o644);
    let out = Command::new(&bin)
        .args(["mcp", "--transport", "http", "--listen", "127.0.0.1:1"])
        .arg("--api-keys")
        .arg(&keys)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("0600"), "{err}");
    let out = Command::new(&bin)
        .args(["mcp", "--transport", "http", "--listen", "127.0.0.1:1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--api-keys"), "{err}");
}

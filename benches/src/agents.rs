//! The agents' entry points, timed request by request from the bench
//! process as an agent framework calls them, with its connection already
//! open: REST `POST /v1/run` of `/bin/true` over one kept-alive HTTP/1.1
//! connection to the bench's daemon, and MCP `tools/call run_code
//! print(1)` to one `phantom mcp` over stdio while that daemon is up.
//! No client program starts per request, so the figures are the server
//! side's cost (promise P6).
//!
//! The HTTP/1.1 request and MCP's newline-delimited JSON-RPC are written by
//! hand: one fixed request, a Content-Length (or chunked) body read back.
//! An HTTP or MCP client crate would add its own machinery to every
//! sample; the bench wants the server's time and the socket's, nothing
//! more.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::exec::interrupted;
use crate::measure::Progress;
use crate::promises::BINDING;
use crate::report::{Cell, Figure, Status, Unit};
use crate::rows::Section;
use crate::runtimes::Runtime;

/// The figures this module measures (the promises test checks their names).
#[cfg(test)]
pub const FIGURES: &[&str] = &[REST, MCP];
pub const REST: &str = "rest-run-true";
pub const MCP: &str = "mcp-run-code";

/// Where the bench's daemon serves REST, and the key it accepts.
pub struct Rest {
    pub addr: std::net::SocketAddr,
    pub key: String,
}

/// Cells of an agents figure: phantom as built measures, the others are
/// not applicable (no runtime has these entry points).
fn cells(runtimes: &[Runtime]) -> Vec<Cell> {
    runtimes
        .iter()
        .map(|rt| {
            if rt.name == BINDING {
                match &rt.unavailable {
                    Some(why) => Cell::new(&rt.name, Status::Unavailable, Some(why.clone())),
                    None => Cell::new(&rt.name, Status::Ok, None),
                }
            } else {
                Cell::new(&rt.name, Status::NotApplicable, None)
            }
        })
        .collect()
}

fn binding(fig: &mut Figure) -> &mut Cell {
    fig.cells
        .iter_mut()
        .find(|c| c.runtime == BINDING)
        .expect("cells() makes one for the binding phantom")
}

/// `POST /v1/run` of `/bin/true`, `runs` times over one connection (after
/// `warmup` untimed ones). A run the daemon served cold (`"path":"cold"`)
/// still counts, and the figure's note says how many there were.
pub fn rest_figure(
    runtimes: &[Runtime],
    rest: Option<&Rest>,
    runs: usize,
    warmup: usize,
    progress: &Progress,
) -> Figure {
    let mut fig = Figure::new(
        REST,
        Section::Sandbox,
        "REST POST /v1/run of /bin/true (python-dev), one kept-alive connection",
        Unit::Ms,
        cells(runtimes),
    );
    let Some(rest) = rest else {
        binding(&mut fig).stop("the daemon's REST listener did not start".into());
        return fig;
    };
    let mut conn = match HttpConn::open(rest) {
        Ok(c) => c,
        Err(e) => {
            binding(&mut fig).stop(e);
            return fig;
        }
    };
    let body = json!({"profile": "python-dev", "argv": ["/bin/true"]}).to_string();
    let mut cold = 0;
    for i in 0..warmup + runs {
        if interrupted() || !binding(&mut fig).is_ok() {
            break;
        }
        let t0 = Instant::now();
        let res = conn.post("/v1/run", &body);
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        match res {
            Ok((200, v)) if v["exit_code"] == 0 => {
                cold += usize::from(v["path"] == "cold");
                if i >= warmup {
                    binding(&mut fig).samples.push(ms);
                }
            }
            Ok((status, v)) => binding(&mut fig).fail(format!("HTTP {status}: {v}")),
            Err(e) => {
                binding(&mut fig).fail(e);
                // A broken connection is opened again, untimed.
                match HttpConn::open(rest) {
                    Ok(c) => conn = c,
                    Err(e) => binding(&mut fig).stop(e),
                }
            }
        }
        if i % 50 == 0 {
            progress.update(&format!("{REST}: {i}/{}", warmup + runs));
        }
    }
    if cold > 0 {
        let c = binding(&mut fig);
        c.note = Some(format!("{cold} of the runs were served cold"));
    }
    fig
}

/// One kept-alive HTTP/1.1 connection.
struct HttpConn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    host: String,
    key: String,
}

impl HttpConn {
    fn open(rest: &Rest) -> Result<HttpConn, String> {
        let s = TcpStream::connect(rest.addr).map_err(|e| format!("connect {}: {e}", rest.addr))?;
        s.set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| format!("read timeout: {e}"))?;
        let writer = s.try_clone().map_err(|e| format!("dup socket: {e}"))?;
        Ok(HttpConn {
            reader: BufReader::new(s),
            writer,
            host: rest.addr.to_string(),
            key: rest.key.clone(),
        })
    }

    /// The status and the JSON body of one POST.
    fn post(&mut self, path: &str, body: &str) -> Result<(u16, Value), String> {
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.host,
            self.key,
            body.len()
        );
        self.writer
            .write_all(req.as_bytes())
            .map_err(|e| format!("send: {e}"))?;
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .map_err(|e| format!("read the status line: {e}"))?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no HTTP status line: {line:?}"))?;
        let (mut length, mut chunked) = (None, false);
        loop {
            line.clear();
            self.reader
                .read_line(&mut line)
                .map_err(|e| format!("read a header: {e}"))?;
            let h = line.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((name, value)) = h.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse::<usize>().ok();
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = value.eq_ignore_ascii_case("chunked");
                }
            }
        }
        let bytes = if chunked {
            self.read_chunked()?
        } else {
            let n = length.ok_or("a response without Content-Length")?;
            let mut b = vec![0; n];
            self.reader
                .read_exact(&mut b)
                .map_err(|e| format!("read the body: {e}"))?;
            b
        };
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, v))
    }

    fn read_chunked(&mut self) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            self.reader
                .read_line(&mut line)
                .map_err(|e| format!("read a chunk size: {e}"))?;
            let n = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| format!("bad chunk size {line:?}"))?;
            let mut chunk = vec![0; n + 2];
            self.reader
                .read_exact(&mut chunk)
                .map_err(|e| format!("read a chunk: {e}"))?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&chunk[..n]);
        }
    }
}

/// `run_code` of `print(1)` in Python, `runs` times in one `phantom mcp`
/// session over stdio, with `PHANTOM_DAEMON_SOCKET` naming one of the
/// bench's daemons (the fork server's, when it runs).
pub fn mcp_figure(
    runtimes: &[Runtime],
    phantom: &Path,
    root: &Path,
    daemon_socket: Option<&Path>,
    runs: usize,
    warmup: usize,
    progress: &Progress,
) -> Figure {
    let mut fig = Figure::new(
        MCP,
        Section::Sandbox,
        "MCP run_code print(1) (python), one stdio session, daemon up",
        Unit::Ms,
        cells(runtimes),
    );
    let Some(socket) = daemon_socket else {
        binding(&mut fig).stop("the bench's daemon did not start".into());
        return fig;
    };
    let mut mcp = match Mcp::start(phantom, root, socket) {
        Ok(m) => m,
        Err(e) => {
            binding(&mut fig).stop(e);
            return fig;
        }
    };
    let args = json!({"language": "python", "code": "print(1)"});
    for i in 0..warmup + runs {
        if interrupted() || !binding(&mut fig).is_ok() {
            break;
        }
        let t0 = Instant::now();
        let res = mcp.call("tools/call", json!({"name": "run_code", "arguments": args}));
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        match res {
            Ok(v) if v["isError"] != true && stdout_of(&v).as_deref() == Some("1\n") => {
                if i >= warmup {
                    binding(&mut fig).samples.push(ms);
                }
            }
            Ok(v) => binding(&mut fig).fail(format!("run_code: {v}")),
            Err(e) => binding(&mut fig).stop(e),
        }
        if i % 50 == 0 {
            progress.update(&format!("{MCP}: {i}/{}", warmup + runs));
        }
    }
    fig
}

/// The `stdout` of a run_code result (its text content is JSON).
fn stdout_of(result: &Value) -> Option<String> {
    let text = result["content"][0]["text"].as_str()?;
    let v: Value = serde_json::from_str(text).ok()?;
    v["stdout"].as_str().map(str::to_string)
}

/// One `phantom mcp` over stdio, initialized.
struct Mcp {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next_id: u64,
}

impl Mcp {
    fn start(phantom: &Path, root: &Path, socket: &Path) -> Result<Mcp, String> {
        let mut child = Command::new(phantom)
            .arg("--root")
            .arg(root)
            .arg("mcp")
            .env("PHANTOM_DAEMON_SOCKET", socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start phantom mcp: {e}"))?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut m = Mcp {
            child,
            stdin,
            stdout,
            next_id: 1,
        };
        m.call(
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "phantom-bench", "version": "0"}}),
        )?;
        m.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))?;
        Ok(m)
    }

    fn send(&mut self, msg: &Value) -> Result<(), String> {
        let mut line = msg.to_string();
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .map_err(|e| format!("write to phantom mcp: {e}"))
    }

    /// A request and its result (notifications in between are skipped).
    fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))?;
        let mut line = String::new();
        loop {
            line.clear();
            let n = self
                .stdout
                .read_line(&mut line)
                .map_err(|e| format!("read from phantom mcp: {e}"))?;
            if n == 0 {
                return Err("phantom mcp closed its stdout".into());
            }
            let v: Value = match serde_json::from_str(&line) {
                Ok(v) => v,
                Err(_) => continue,
            };
            if v["id"] != id {
                continue;
            }
            if let Some(e) = v.get("error") {
                return Err(format!("{method}: {e}"));
            }
            return Ok(v["result"].clone());
        }
    }
}

/// SIGTERM ends the session as a client hanging up does (the server
/// destroys what the session made); then the server exits.
impl Drop for Mcp {
    fn drop(&mut self) {
        // SAFETY: kill with the pid of a child we spawned and have not reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_code_stdout_is_read_from_its_text() {
        let v = json!({"content": [{"type": "text", "text": "{\"stdout\": \"1\\n\", \"exit_code\": 0}"}], "isError": false});
        assert_eq!(stdout_of(&v).as_deref(), Some("1\n"));
        assert_eq!(stdout_of(&json!({"content": []})), None);
    }
}

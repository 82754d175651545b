//! Egress allowlists (`phantom run --network egress`, docs/egress.md)
//! against a test "internet": a network namespace with addresses from
//! 198.18.0.0/15 (the benchmarking range), reached from the host by a veth
//! this test adds and removes, with HTTP, HTTPS and DNS servers
//! (`egress/inet.py`) and the sandbox's cases in `egress/client.py`.
//! phantom-specific: skipped for other runtimes, without root, ip, nft,
//! openssl or /usr/bin/python3.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use phantom_tests::{describe, require_root, runtime_binary, stderr, stdout, Runtime};
use serde_json::Value;

/// The egress tests share the host's one nftables table and slot
/// directory, and check both are empty afterwards: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const EGRESS_STATE: &str = "/run/phantom/egress";

fn sh(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn must(cmd: &str) {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(out.status.success(), "{cmd}: {}", describe(&out));
}

/// What the tests need here, or why they skip.
fn missing() -> Option<String> {
    if !runtime_binary().ends_with("phantom") {
        return Some("egress is phantom's".into());
    }
    for (prog, pkg) in [
        ("ip", "iproute2"),
        ("nft", "nftables"),
        ("openssl", "openssl"),
    ] {
        if !sh(&format!("command -v {prog}")) {
            return Some(format!(
                "needs {prog} (hack/install-deps.sh installs {pkg})"
            ));
        }
    }
    if !Path::new("/usr/bin/python3").exists() {
        return Some("needs /usr/bin/python3".into());
    }
    None
}

/// The test internet: netns, veth, servers; removed on drop.
struct Internet {
    ns: String,
    veth: String,
    /// `198.18.K`
    base: String,
    dir: tempfile::TempDir,
    servers: Option<Child>,
}

impl Internet {
    fn new() -> Internet {
        let pid = std::process::id();
        let k = pid % 250 + 1;
        let ns = format!("phtest-inet-{pid}");
        let veth = format!("phti{}", pid % 100000);
        let base = format!("198.18.{k}");
        let dir = tempfile::tempdir().unwrap();
        let mut net = Internet {
            ns,
            veth,
            base,
            dir,
            servers: None,
        };
        let (ns, veth, base) = (&net.ns, &net.veth, &net.base);
        must(&format!("ip netns add {ns}"));
        must(&format!(
            "ip link add {veth} type veth peer name {veth}i netns {ns}"
        ));
        must(&format!(
            "ip addr add {base}.1/24 dev {veth} && ip link set {veth} up"
        ));
        for a in [2, 10, 11] {
            must(&format!("ip -n {ns} addr add {base}.{a}/24 dev {veth}i"));
        }
        must(&format!(
            "ip -n {ns} link set {veth}i up && ip -n {ns} link set lo up"
        ));
        let d = net.dir.path();
        must(&format!(
            "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=allowed.test \
             -addext subjectAltName=DNS:allowed.test,DNS:denied.test \
             -keyout {k} -out {c} 2>/dev/null",
            k = d.join("key.pem").display(),
            c = d.join("cert.pem").display()
        ));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/egress/inet.py");
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "/usr/bin/python3"])
            .arg(&script)
            .arg(base)
            .arg(d.join("cert.pem"))
            .arg(d.join("key.pem"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        net.servers = Some(child);
        assert_eq!(line.trim(), "ready", "the test internet's servers");
        net
    }

    fn resolver(&self) -> String {
        format!("{}.2:53", self.base)
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }
}

impl Drop for Internet {
    fn drop(&mut self) {
        if let Some(mut c) = self.servers.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        sh(&format!("ip link del {}", self.veth));
        sh(&format!("ip netns del {}", self.ns));
    }
}

/// A phantom root, a sandbox dir and profiles; leftovers removed on drop.
struct Sbx {
    rt: Runtime,
    dir: tempfile::TempDir,
}

impl Sbx {
    fn new() -> Sbx {
        Sbx {
            rt: Runtime::new(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// python-dev as profile `name` with `network` as given.
    fn profile(&self, name: &str, network: &str) -> String {
        let text = include_str!("../../profiles/python-dev.yaml")
            .replacen("profile: python-dev", &format!("profile: {name}"), 1)
            .replacen("network: { mode: loopback }", network, 1);
        assert!(text.contains(network), "python-dev.yaml changed shape");
        let dir = self.dir.path().join("profiles");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("{name}.yaml")), text).unwrap();
        dir.display().to_string()
    }

    fn command(&self, net: &Internet, args: &[&str]) -> Command {
        let mut c = self.rt.command(args);
        c.env("PHANTOM_SANDBOX_DIR", self.dir.path().join("sandboxes"))
            .env("PHANTOM_EGRESS_RESOLVER", net.resolver())
            .env("PHANTOM_EGRESS_LOG", self.dir.path().join("egress.log"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn run(&self, net: &Internet, args: &[&str]) -> Output {
        self.command(net, args)
            .spawn()
            .unwrap()
            .wait_with_output()
            .unwrap()
    }

    /// A workspace holding the client and the servers' certificate.
    fn copy_in(&self, net: &Internet) -> String {
        let d = self.dir.path().join("in");
        fs::create_dir_all(&d).unwrap();
        fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/egress/client.py"),
            d.join("client.py"),
        )
        .unwrap();
        fs::copy(net.cert(), d.join("cert.pem")).unwrap();
        d.display().to_string()
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("egress.log")).unwrap_or_default()
    }
}

impl Drop for Sbx {
    fn drop(&mut self) {
        let ids: Vec<String> = fs::read_dir(self.rt.root())
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        for id in ids {
            let _ = self.rt.cmd(&["destroy", &id]);
            let _ = self.rt.cmd(&["delete", "--force", &id]);
            phantom_tests::remove_cgroup(&format!("/{id}"));
        }
    }
}

/// Nothing of any egress sandbox is left on the host.
fn assert_no_egress_left() {
    let slots: Vec<_> = fs::read_dir(EGRESS_STATE)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != ".lock")
                .collect()
        })
        .unwrap_or_default();
    assert!(slots.is_empty(), "egress slots left: {slots:?}");
    let links = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["-o", "link"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(
        !links
            .lines()
            .any(|l| l.split(": ").nth(1).is_some_and(|n| n.starts_with("phe"))),
        "veths left: {links}"
    );
    let netns: Vec<_> = fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("phantom-egress-"))
                .collect()
        })
        .unwrap_or_default();
    assert!(netns.is_empty(), "netns left: {netns:?}");
    assert!(
        !sh("nft list table inet phantom_egress"),
        "the nft table is left"
    );
    let proxies: Vec<_> = fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            fs::read(e.path().join("cmdline")).is_ok_and(|c| {
                c.split(|b| *b == 0).any(|w| w == b"egress")
                    && c.windows(14).any(|w| w == b"phantom-server")
            })
        })
        .map(|e| e.file_name())
        .collect();
    assert!(proxies.is_empty(), "egress proxies left: {proxies:?}");
}

fn client_results(out: &Output) -> Value {
    let text = stdout(out);
    serde_json::from_str(text.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("client output is not JSON ({e}): {}", describe(out)))
}

#[test]
fn names_cidrs_forgery_and_rebinding() {
    require_root!();
    if let Some(why) = missing() {
        eprintln!("skipped: {why}");
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let net = Internet::new();
    let s = Sbx::new();
    let b = net.base.clone();
    let pp = s.profile(
        "egress-test",
        "network: { mode: egress, allow: [allowed.test, loop.test, meta.test, 'allowed.test:8080'] }",
    );
    let copy_in = s.copy_in(&net);
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "--no-daemon",
            "--profile-path",
            &pp,
            "--profile",
            "egress-test",
            "--copy-in",
            &copy_in,
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "python3", "/workspace/client.py", &b]);
        s.run(&net, &args)
    };

    // The profile's lists.
    let out = run(&[]);
    assert!(out.status.success(), "{}", describe(&out));
    let r = client_results(&out);
    let ok = format!("server={b}.10 host=allowed.test");
    assert_eq!(r["dns_allowed"], format!("{b}.10"), "{r}");
    assert_eq!(r["dns_denied"], "ERR", "{r}");
    assert_eq!(r["http_allowed"], ok.as_str(), "{r}");
    assert_eq!(r["https_allowed"], ok.as_str(), "{r}");
    assert!(r["http_denied"].as_str().unwrap().starts_with("E"), "{r}");
    assert!(
        r["https_denied"].as_str().unwrap().starts_with("ERR"),
        "{r}"
    );
    // A forged Host/SNI reaches the allowed name's real address only.
    assert_eq!(r["http_forged"], ok.as_str(), "{r}");
    assert_eq!(r["https_forged"], ok.as_str(), "{r}");
    // NAME:PORT: the address phantom resolves the name to, nothing else.
    assert_eq!(
        r["raw_8080_allowed_port"],
        format!("server={b}.10 host={b}.10"),
        "{r}"
    );
    assert!(
        r["raw_8080_denied"].as_str().unwrap().starts_with("E"),
        "{r}"
    );
    assert!(r["raw_ip_host"].as_str().unwrap().starts_with("E"), "{r}");
    // Rebinding to loopback and the metadata address is refused.
    assert!(r["rebind_loop"].as_str().unwrap().starts_with("E"), "{r}");
    assert!(r["rebind_meta"].as_str().unwrap().starts_with("E"), "{r}");
    assert_eq!(r["dns_meta"], "169.254.169.254", "{r}");
    let log = s.log();
    assert!(log.contains("blocked name=denied.test port=53"), "{log}");
    assert!(log.contains("allowed name=allowed.test port=443"), "{log}");
    assert!(
        log.contains("169.254.169.254 is in the refused range"),
        "{log}"
    );
    assert!(log.contains("127.0.0.1 is in the refused range"), "{log}");
    assert_no_egress_left();

    // Flags narrow the profile's lists.
    let out = run(&["--allow", "meta.test"]);
    let r = client_results(&out);
    assert_eq!(r["dns_allowed"], "ERR", "{r}");
    assert!(r["http_allowed"].as_str().unwrap().starts_with("E"), "{r}");
    // ... and never widen them.
    let out = run(&["--allow", "denied.test"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        stderr(&out).contains("allow denied.test: not within the profile egress-test's"),
        "{}",
        describe(&out)
    );
    let cidr = format!("{b}.11/32");
    let out = run(&["--allow-cidr", &cidr]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));

    // A profile of the host's network narrowed to egress; a raw IP passes
    // only by CIDR.
    let pp2 = s.profile("egress-host", "network: { mode: host }");
    let out = s.run(
        &net,
        &[
            "run",
            "--no-daemon",
            "--profile-path",
            &pp2,
            "--profile",
            "egress-host",
            "--network",
            "egress",
            "--allow-cidr",
            &cidr,
            "--copy-in",
            &copy_in,
            "--",
            "python3",
            "/workspace/client.py",
            &b,
        ],
    );
    let r = client_results(&out);
    assert_eq!(
        r["raw_8080_denied"],
        format!("server={b}.11 host={b}.11"),
        "{r}"
    );
    assert_eq!(
        r["raw_ip_host"],
        format!("server={b}.11 host={b}.11"),
        "{r}"
    );
    assert!(
        r["raw_8080_allowed_port"]
            .as_str()
            .unwrap()
            .starts_with("E"),
        "{r}"
    );
    assert_eq!(r["dns_allowed"], "ERR", "{r}");
    assert_no_egress_left();
}

#[test]
fn a_killed_run_is_swept_by_the_next() {
    require_root!();
    if let Some(why) = missing() {
        eprintln!("skipped: {why}");
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let net = Internet::new();
    let s = Sbx::new();
    let pp = s.profile(
        "egress-test",
        "network: { mode: egress, allow: [allowed.test] }",
    );
    let args = [
        "run",
        "--no-daemon",
        "--profile-path",
        &pp,
        "--profile",
        "egress-test",
    ];
    let mut long: Vec<&str> = args.to_vec();
    long.extend_from_slice(&["--", "sleep", "60"]);
    let mut child = s.command(&net, &long).spawn().unwrap();
    let up = phantom_tests::wait_until(Duration::from_secs(20), || {
        fs::read_dir(EGRESS_STATE).is_ok_and(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".json"))
        }) && sh("ip -o link | grep -q ': phe'")
    });
    assert!(up, "the sandbox's network never appeared");
    std::thread::sleep(Duration::from_millis(300));
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    // The proxy dies with it (PR_SET_PDEATHSIG); the rest waits for a sweep.
    assert!(sh("ip -o link | grep -q ': phe'"), "the veth went already?");
    let mut short: Vec<&str> = args.to_vec();
    short.extend_from_slice(&["--", "true"]);
    let out = s.run(&net, &short);
    assert!(out.status.success(), "{}", describe(&out));
    assert_no_egress_left();
}

/// Not a timing assertion: prints the proxy's throughput and first-byte
/// latency against a direct download in the test internet (docs/egress.md
/// has the numbers).
#[test]
fn throughput_through_the_proxy() {
    require_root!();
    if let Some(why) = missing() {
        eprintln!("skipped: {why}");
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let net = Internet::new();
    let s = Sbx::new();
    let b = net.base.clone();
    let pp = s.profile(
        "egress-test",
        "network: { mode: egress, allow: [allowed.test] }",
    );
    let fetch = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/egress/fetch.py");
    let d = s.dir.path().join("in");
    fs::create_dir_all(&d).unwrap();
    fs::copy(&fetch, d.join("fetch.py")).unwrap();
    let ok = format!("{b}.10");
    let direct = Command::new("/usr/bin/python3")
        .arg(&fetch)
        .args([&ok, "allowed.test"])
        .output()
        .unwrap();
    assert!(direct.status.success(), "{}", describe(&direct));
    let d = d.display().to_string();
    let proxied = s.run(
        &net,
        &[
            "run",
            "--no-daemon",
            "--profile-path",
            &pp,
            "--profile",
            "egress-test",
            "--copy-in",
            &d,
            "--",
            "python3",
            "/workspace/fetch.py",
            &ok,
            "allowed.test",
        ],
    );
    assert!(proxied.status.success(), "{}", describe(&proxied));
    let (a, p) = (stdout(&direct), stdout(&proxied));
    let bytes = |t: &str| -> u64 {
        t.split_whitespace()
            .last()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    // The body and its headers.
    assert!(bytes(&a) > 64 << 20, "{a}");
    assert!(bytes(&p) > 64 << 20, "{p}");
    eprintln!(
        "egress throughput (MB/s, first byte ms, bytes): direct {} | proxy {}",
        a.trim(),
        p.trim()
    );
    assert_no_egress_left();
}

/// A persistent sandbox (`phantom create --network egress`): `phantom
/// network ID` opens and closes a name while it runs; destroy leaves
/// nothing.
#[test]
fn a_live_update_opens_and_closes_a_name() {
    require_root!();
    if let Some(why) = missing() {
        eprintln!("skipped: {why}");
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let net = Internet::new();
    let s = Sbx::new();
    let b = net.base.clone();
    let pp = s.profile("egress-host", "network: { mode: host }");
    let id = s.rt.id("egress-live");
    let out = s.run(
        &net,
        &[
            "create",
            "--profile-path",
            &pp,
            "--profile",
            "egress-host",
            "--network",
            "egress",
            "--allow",
            "allowed.test",
            &id,
        ],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let get = |name: &str| {
        // Read to EOF: headers and body may come in two segments.
        let code = format!(
            "import socket\ntry:\n s=socket.create_connection((socket.gethostbyname('{name}'),80),timeout=5)\n \
             s.sendall(b'GET / HTTP/1.1\\r\\nHost: {name}\\r\\nConnection: close\\r\\n\\r\\n')\n \
             d=b''\n while True:\n  c=s.recv(4096)\n  if not c: break\n  d+=c\n \
             print(d.split(b'\\r\\n\\r\\n',1)[1].decode().strip())\nexcept Exception as e:\n print('ERR',e)\n"
        );
        let out = s.run(&net, &["exec", &id, "--", "python3", "-c", &code]);
        stdout(&out).trim().to_string()
    };
    assert_eq!(
        get("allowed.test"),
        format!("server={b}.10 host=allowed.test")
    );
    assert!(get("denied.test").starts_with("ERR"));
    let out = s.run(
        &net,
        &[
            "network",
            &id,
            "--profile-path",
            &pp,
            "--allow",
            "denied.test",
        ],
    );
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        get("denied.test"),
        format!("server={b}.11 host=denied.test")
    );
    assert!(
        get("allowed.test").starts_with("ERR"),
        "closed by the update"
    );
    let out = s.run(&net, &["network", &id]);
    assert!(stdout(&out).contains("denied.test"), "{}", describe(&out));
    let out = s.run(&net, &["network", &id, "--clear"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(get("denied.test").starts_with("ERR"));
    let out = s.run(&net, &["destroy", &id]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_no_egress_left();
}

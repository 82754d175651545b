//! The transparent proxy and resolver of one sandbox (`phantom-server
//! egress --config FILE`), listening on the host end of its veth.
//!
//! TCP arrives redirected by nftables; SO_ORIGINAL_DST (netfilter's
//! conntrack, `getsockopt(SOL_IP, SO_ORIGINAL_DST)`) gives the address the
//! sandbox dialled. Port 80 and 443 are decided by name (Host, SNI), which
//! phantom resolves itself: the sandbox's address is used only if the name
//! resolves to it, else the name's first permitted address. Other ports
//! pass only to an `--allow-cidr` range or to an address phantom resolved
//! an allowed `NAME:PORT` to. DNS (UDP, and TCP to port 53) is answered for
//! allowed names by forwarding upstream, REFUSED otherwise. Each decision is
//! one log line and a count; the counts are logged when the proxy stops.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use phantom_policy::egress::{refused_range, Cidr, NamePattern};
use phantom_policy::EgressRules;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use crate::dns;
use crate::sniff::{self, Sniffed};
use crate::ProxyConfig;

const SNIFF_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DNS_TIMEOUT: Duration = Duration::from_secs(2);

struct State {
    sandbox: String,
    /// Replaced whole on SIGHUP (a live update, `phantom network`).
    rules: std::sync::RwLock<Arc<EgressRules>>,
    upstream: SocketAddr,
    sandbox_net: Cidr,
    host_addrs: HashSet<IpAddr>,
    allowed: AtomicU64,
    blocked: AtomicU64,
}

/// Why an address may not be dialled, if it may not.
fn refusal(st: &State, rules: &EgressRules, ip: IpAddr) -> Option<String> {
    if rules.cidr_rule(ip).is_some() {
        return None;
    }
    if st.sandbox_net.contains(ip) {
        return Some(format!("{ip} is in the sandbox network {}", st.sandbox_net));
    }
    if let Some(c) = refused_range(ip) {
        return Some(format!("{ip} is in the refused range {c}"));
    }
    st.host_addrs
        .contains(&ip)
        .then(|| format!("{ip} is the host's own address"))
}

impl State {
    fn rules(&self) -> Arc<EgressRules> {
        self.rules.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn decide(&self, allowed: bool, name: &str, port: u16, rule: &str) {
        if allowed {
            self.allowed.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                "egress sandbox={} allowed name={name} port={port} rule={rule:?}",
                self.sandbox
            );
        } else {
            self.blocked.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                "egress sandbox={} blocked name={name} port={port} rule={rule:?}",
                self.sandbox
            );
        }
    }

    /// `name`'s A records from the upstream resolver.
    async fn resolve(&self, name: &str) -> Result<Vec<IpAddr>> {
        let sock = UdpSocket::bind(if self.upstream.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        })
        .await?;
        sock.connect(self.upstream).await?;
        let id: u16 = rand_u16();
        let q = dns::build_query(id, name, dns::TYPE_A);
        let mut buf = vec![0u8; 4096];
        for _ in 0..2 {
            sock.send(&q).await?;
            let deadline = tokio::time::Instant::now() + DNS_TIMEOUT;
            while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
                if let Some(addrs) = dns::answer_addrs(&buf[..n], id) {
                    return Ok(addrs);
                }
            }
        }
        anyhow::bail!("no answer from {} for {name}", self.upstream)
    }
}

fn rand_u16() -> u16 {
    let mut b = [0u8; 2];
    // SAFETY: the buffer is valid for its length; getrandom does not block
    // after boot.
    unsafe { libc::getrandom(b.as_mut_ptr().cast(), 2, 0) };
    u16::from_ne_bytes(b)
}

fn host_addrs() -> HashSet<IpAddr> {
    let mut out = HashSet::new();
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for a in addrs {
            if let Some(sa) = a.address {
                if let Some(v4) = sa.as_sockaddr_in() {
                    out.insert(IpAddr::V4(v4.ip()));
                } else if let Some(v6) = sa.as_sockaddr_in6() {
                    out.insert(IpAddr::V6(v6.ip()));
                }
            }
        }
    }
    out
}

/// Run the proxy of `config` until SIGTERM; prints `ready` once listening.
pub fn main(config: &std::path::Path) -> Result<i32> {
    let text = std::fs::read(config).with_context(|| format!("read {}", config.display()))?;
    let c: ProxyConfig =
        serde_json::from_slice(&text).with_context(|| format!("parse {}", config.display()))?;
    let rules = EgressRules::parse(&c.allow, &c.allow_cidr)?;
    let st = Arc::new(State {
        sandbox: c.sandbox.clone(),
        rules: std::sync::RwLock::new(Arc::new(rules)),
        upstream: c.upstream,
        sandbox_net: c.sandbox_net.parse()?,
        host_addrs: host_addrs(),
        allowed: AtomicU64::new(0),
        blocked: AtomicU64::new(0),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let tcp = TcpListener::bind(SocketAddrV4::new(c.listen, c.proxy_port))
            .await
            .with_context(|| format!("listen on {}:{}", c.listen, c.proxy_port))?;
        let udp = Arc::new(
            UdpSocket::bind(SocketAddrV4::new(c.listen, 53))
                .await
                .with_context(|| format!("listen on {}:53/udp", c.listen))?,
        );
        println!("ready");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let dns_task = tokio::spawn(serve_udp_dns(udp, st.clone()));
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = hup.recv() => reload(&st, config),
                acc = tcp.accept() => {
                    let Ok((conn, _)) = acc else { continue };
                    let st = st.clone();
                    tokio::spawn(async move {
                        if let Err(e) = handle(conn, &st).await {
                            tracing::debug!("egress sandbox={}: connection: {e:#}", st.sandbox);
                        }
                    });
                }
            }
        }
        dns_task.abort();
        tracing::info!(
            "egress sandbox={} summary allowed={} blocked={}",
            st.sandbox,
            st.allowed.load(Ordering::Relaxed),
            st.blocked.load(Ordering::Relaxed)
        );
        Ok(0)
    })
}

/// A live update: the lists of the configuration file, read again; a
/// file that does not parse keeps the lists as they were.
fn reload(st: &State, config: &std::path::Path) {
    let parsed = std::fs::read(config)
        .map_err(anyhow::Error::from)
        .and_then(|t| Ok(serde_json::from_slice::<ProxyConfig>(&t)?))
        .and_then(|c| Ok((EgressRules::parse(&c.allow, &c.allow_cidr)?, c.generation)));
    let parsed = parsed.and_then(|(r, generation)| {
        let (a, c) = r.texts();
        *st.rules.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(r);
        let applied = config.with_file_name("applied");
        std::fs::write(&applied, generation.to_string())?;
        Ok((a, c))
    });
    match parsed {
        Ok((a, c)) => {
            tracing::warn!(
                "egress sandbox={} lists updated: allow={a:?} allow-cidr={c:?}",
                st.sandbox
            );
        }
        Err(e) => tracing::error!(
            "egress sandbox={}: update ignored ({}): {e:#}",
            st.sandbox,
            config.display()
        ),
    }
}

fn original_dst(conn: &TcpStream) -> Result<SocketAddrV4> {
    let sa = nix::sys::socket::getsockopt(&conn.as_fd(), nix::sys::socket::sockopt::OriginalDst)
        .context("SO_ORIGINAL_DST")?;
    Ok(SocketAddrV4::new(
        u32::from_be(sa.sin_addr.s_addr).into(),
        u16::from_be(sa.sin_port),
    ))
}

async fn handle(mut conn: TcpStream, st: &State) -> Result<()> {
    let orig = original_dst(&conn)?;
    let rules = st.rules();
    let (ip, port) = (IpAddr::V4(*orig.ip()), orig.port());
    if port == 53 {
        return serve_tcp_dns(conn, st).await;
    }
    if let Some(c) = rules.cidr_rule(ip) {
        st.decide(true, &ip.to_string(), port, &format!("allow-cidr {c}"));
        return splice(conn, SocketAddr::new(ip, port), &[]).await;
    }
    if port == 80 || port == 443 {
        let mut buf = Vec::with_capacity(2048);
        let sniffed = tokio::time::timeout(SNIFF_TIMEOUT, async {
            let mut chunk = [0u8; 4096];
            loop {
                let s = if port == 80 {
                    sniff::http_host(&buf)
                } else {
                    sniff::tls_sni(&buf)
                };
                if s != Sniffed::More {
                    return s;
                }
                match conn.read(&mut chunk).await {
                    Ok(0) | Err(_) => return Sniffed::Nothing,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                if buf.len() > sniff::MAX_SNIFF {
                    return Sniffed::Nothing;
                }
            }
        })
        .await
        .unwrap_or(Sniffed::Nothing);
        let Sniffed::Name(name) = sniffed else {
            let what = if port == 80 { "Host header" } else { "TLS SNI" };
            st.decide(false, &ip.to_string(), port, &format!("no {what}"));
            return Ok(());
        };
        let Some(rule) = rules.web_rule(&name, port) else {
            st.decide(false, &name, port, "no rule");
            return Ok(());
        };
        let rule = format!("allow {rule}");
        let addrs = match st.resolve(&name).await {
            Ok(a) => a,
            Err(e) => {
                st.decide(false, &name, port, &format!("{rule}, but {e:#}"));
                return Ok(());
            }
        };
        let mut refused = Vec::new();
        let usable: Vec<IpAddr> = addrs
            .into_iter()
            .filter(|a| match refusal(st, &rules, *a) {
                Some(why) => {
                    refused.push(why);
                    false
                }
                None => true,
            })
            .collect();
        let Some(first) = usable.first() else {
            let why = if refused.is_empty() {
                "it has no address".to_string()
            } else {
                refused.join(", ")
            };
            st.decide(false, &name, port, &format!("{rule}, but {why}"));
            return Ok(());
        };
        // The sandbox's own choice only if the name resolves to it.
        let target = if usable.contains(&ip) { ip } else { *first };
        st.decide(true, &name, port, &format!("{rule} -> {target}"));
        return splice(conn, SocketAddr::new(target, port), &buf).await;
    }
    // Other ports: an allowed NAME:PORT that phantom resolves to this address.
    for r in rules.allow.iter().filter(|r| r.port == Some(port)) {
        let NamePattern::Exact(name) = &r.name else {
            continue;
        };
        if let Ok(addrs) = st.resolve(name).await {
            if addrs.contains(&ip) {
                if let Some(why) = refusal(st, &rules, ip) {
                    st.decide(false, name, port, &format!("allow {r}, but {why}"));
                    return Ok(());
                }
                st.decide(true, name, port, &format!("allow {r} -> {ip}"));
                return splice(conn, SocketAddr::new(ip, port), &[]).await;
            }
        }
    }
    st.decide(false, &ip.to_string(), port, "no rule");
    Ok(())
}

async fn splice(mut conn: TcpStream, to: SocketAddr, first: &[u8]) -> Result<()> {
    let mut up = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(to))
        .await
        .with_context(|| format!("connect {to}: timed out"))?
        .with_context(|| format!("connect {to}"))?;
    up.write_all(first).await?;
    tokio::io::copy_bidirectional(&mut conn, &mut up).await?;
    Ok(())
}

/// The answer to one DNS query from the sandbox.
async fn answer(st: &State, query: &[u8]) -> Option<Vec<u8>> {
    let q = dns::parse_query(query)?;
    let rules = st.rules();
    let rule = rules.name_rule(&q.name);
    let ok = rule.is_some() && matches!(q.qtype, dns::TYPE_A | dns::TYPE_AAAA);
    if !ok {
        st.decide(false, &q.name, 53, "dns: no rule");
        return Some(dns::error_response(query, &q, dns::RCODE_REFUSED));
    }
    st.decide(true, &q.name, 53, &format!("dns: allow {}", rule?));
    let sock = UdpSocket::bind(if st.upstream.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })
    .await
    .ok()?;
    sock.connect(st.upstream).await.ok()?;
    sock.send(query).await.ok()?;
    let mut buf = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + DNS_TIMEOUT * 2;
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
        if n >= 2 && buf[..2] == query[..2] {
            return Some(buf[..n].to_vec());
        }
    }
    None
}

async fn serve_udp_dns(sock: Arc<UdpSocket>, st: Arc<State>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        let query = buf[..n].to_vec();
        let (sock, st) = (sock.clone(), st.clone());
        tokio::spawn(async move {
            if let Some(resp) = answer(&st, &query).await {
                let _ = sock.send_to(&resp, from).await;
            }
        });
    }
}

/// DNS over TCP (RFC 1035 §4.2.2: each message after a two-byte length).
async fn serve_tcp_dns(mut conn: TcpStream, st: &State) -> Result<()> {
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(SNIFF_TIMEOUT, conn.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
        conn.read_exact(&mut q).await?;
        let Some(resp) = answer(st, &q).await else {
            return Ok(());
        };
        // A UDP answer too large for its message was cut (TC): TCP clients
        // get what the upstream gave.
        conn.write_all(&(resp.len() as u16).to_be_bytes()).await?;
        conn.write_all(&resp).await?;
    }
}

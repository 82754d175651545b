//! The host side of one egress sandbox.
//!
//! [`Egress::setup`] reserves a slot (a file made exclusively under
//! [`STATE_DIR`], under a lock, so concurrent sandboxes of any `--root`
//! get different ones), then makes, in order: the network namespace
//! `phantom-egress-N` (bind-mounted at /run/netns), the veth pair `pheN` /
//! `eth0` with 100.96.0.0/16 carved into /30s (host .1, sandbox .2, a
//! default route to the host), an element in phantom's nftables table, and
//! the proxy process (`phantom-server egress`), which dies with its parent
//! (PR_SET_PDEATHSIG). Dropping the [`Egress`] removes all of it; a slot
//! whose owner died (kill -9) is removed by the next setup ([`sweep`]).
//!
//! The table `inet phantom_egress` is the same for every sandbox: traffic
//! from any `phe*` interface is dropped, except TCP (redirected to the
//! proxy's port on the host end of its own veth) and UDP 53 (redirected to
//! the resolver there); the set `sandboxes` (veth . host address) admits
//! each sandbox to its own listeners only. Nothing is forwarded, so the
//! host's ip_forward stays as it is.
//!
//! Driven with the `ip` and `nft` programs (iproute2, nftables) rather than
//! netlink crates: rtnetlink is async (tokio) and would put a runtime on the
//! cold path, and no maintained crate speaks nftables' netlink; `nft -f -`
//! applies the table in one transaction and is what nftables documents.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::ProxyConfig;

/// Slots, one file each, host-wide (veth names and addresses are).
pub const STATE_DIR: &str = "/run/phantom/egress";
/// phantom's nftables table.
pub const TABLE: &str = "phantom_egress";
/// Host veth names: `phe<slot>`.
pub const VETH_PREFIX: &str = "phe";
/// Network namespaces: `phantom-egress-<slot>`.
pub const NETNS_PREFIX: &str = "phantom-egress-";
/// The sandboxes' range: 16384 /30s.
pub const NET_BASE: Ipv4Addr = Ipv4Addr::new(100, 96, 0, 0);
pub const NET_PREFIX: u8 = 16;
pub const SLOTS: u32 = 1 << 14;
/// The proxy's port on each host veth address.
pub const PROXY_PORT: u16 = 15001;

#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error("egress: {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("egress: `{cmd}` failed: {why}")]
    Command { cmd: String, why: String },
    #[error("egress: all {SLOTS} sandbox networks of {NET_BASE}/{NET_PREFIX} are in use")]
    Full,
    #[error("egress: the proxy ({bin}) did not start: {why}")]
    Proxy { bin: PathBuf, why: String },
    #[error("egress: no upstream resolver: /etc/resolv.conf names none and PHANTOM_EGRESS_RESOLVER is not set")]
    NoResolver,
    #[error("egress: PHANTOM_EGRESS_RESOLVER {0:?}: expected IP:PORT")]
    BadResolver(String),
}

type Result<T> = std::result::Result<T, EgressError>;

fn io<'p>(what: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> EgressError + 'p {
    move |source| EgressError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Run a program; its stderr is the error.
fn run(prog: &str, args: &[&str], stdin: Option<&str>) -> Result<()> {
    let cmd = format!("{prog} {}", args.join(" "));
    let mut c = Command::new(prog);
    c.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().map_err(|e| EgressError::Command {
        cmd: cmd.clone(),
        why: format!("{e} (is {prog} installed? hack/install-deps.sh)"),
    })?;
    if let (Some(text), Some(mut si)) = (stdin, child.stdin.take()) {
        let _ = si.write_all(text.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| EgressError::Command {
        cmd: cmd.clone(),
        why: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(EgressError::Command {
            cmd,
            why: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// A slot's names and addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot(pub u32);

impl Slot {
    pub fn veth(self) -> String {
        format!("{VETH_PREFIX}{}", self.0)
    }
    pub fn netns_name(self) -> String {
        format!("{NETNS_PREFIX}{}", self.0)
    }
    pub fn netns_path(self) -> PathBuf {
        Path::new("/run/netns").join(self.netns_name())
    }
    fn base(self) -> u32 {
        u32::from(NET_BASE) + self.0 * 4
    }
    pub fn host_ip(self) -> Ipv4Addr {
        Ipv4Addr::from(self.base() + 1)
    }
    pub fn sandbox_ip(self) -> Ipv4Addr {
        Ipv4Addr::from(self.base() + 2)
    }
    fn file(self) -> PathBuf {
        Path::new(STATE_DIR).join(format!("{}.json", self.0))
    }
    fn dir(self) -> PathBuf {
        Path::new(STATE_DIR).join(self.0.to_string())
    }
}

/// What a slot file records: whose it is.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct SlotRecord {
    sandbox: String,
    owner_pid: i32,
    owner_start: u64,
    #[serde(default)]
    proxy_pid: i32,
    #[serde(default)]
    proxy_start: u64,
}

impl SlotRecord {
    fn read(slot: Slot) -> Option<SlotRecord> {
        serde_json::from_str(&std::fs::read_to_string(slot.file()).ok()?).ok()
    }

    /// Rewritten in place (temp file + rename), under the lock.
    fn write(&self, slot: Slot) -> Result<()> {
        let tmp = slot.file().with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(self).expect("serialises"))
            .map_err(io("write", &tmp))?;
        std::fs::rename(&tmp, slot.file()).map_err(io("rename", &tmp))
    }

    fn owner_alive(&self) -> bool {
        start_time(self.owner_pid) == Some(self.owner_start)
    }

    /// Stop the proxy if it is still the process recorded.
    fn kill_proxy(&self) {
        if self.proxy_pid > 0 && start_time(self.proxy_pid) == Some(self.proxy_start) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.proxy_pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// The slots of sandbox `id` (one, unless something went wrong).
fn slots_of(id: &str) -> Vec<(Slot, SlotRecord)> {
    let Ok(dir) = std::fs::read_dir(STATE_DIR) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let slot = Slot(n.strip_suffix(".json")?.parse().ok()?);
            let rec = SlotRecord::read(slot)?;
            (rec.sandbox == id).then_some((slot, rec))
        })
        .collect()
}

/// Remove the network of sandbox `id` (a persistent sandbox's, at
/// destroy); whether it had one.
pub fn remove_sandbox(id: &str) -> Result<bool> {
    let _lock = Lock::take()?;
    let found = slots_of(id);
    for (slot, rec) in &found {
        rec.kill_proxy();
        teardown(*slot);
        let _ = remove_slot(*slot);
    }
    drop_table_if_unused();
    Ok(!found.is_empty())
}

/// The lists sandbox `id`'s proxy applies now.
pub fn current_rules(id: &str) -> Option<(Vec<String>, Vec<String>)> {
    let (slot, _) = slots_of(id).into_iter().next()?;
    let c: ProxyConfig =
        serde_json::from_slice(&std::fs::read(slot.dir().join("proxy.json")).ok()?).ok()?;
    Some((c.allow, c.allow_cidr))
}

/// Replace the lists of running sandbox `id`: the proxy's configuration is
/// rewritten and the proxy told (SIGHUP) to read it again.
pub fn update(id: &str, rules: &phantom_policy::EgressRules) -> Result<bool> {
    let _lock = Lock::take()?;
    let Some((slot, rec)) = slots_of(id).into_iter().next() else {
        return Ok(false);
    };
    let path = slot.dir().join("proxy.json");
    let text = std::fs::read(&path).map_err(io("read", &path))?;
    let mut c: ProxyConfig = serde_json::from_slice(&text).map_err(|e| EgressError::Io {
        what: "parse",
        path: path.clone(),
        source: e.into(),
    })?;
    (c.allow, c.allow_cidr) = rules.texts();
    c.generation += 1;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(&c).expect("serialises")).map_err(io("write", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(io("rename", &tmp))?;
    if rec.proxy_pid > 0 && start_time(rec.proxy_pid) == Some(rec.proxy_start) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(rec.proxy_pid),
            nix::sys::signal::Signal::SIGHUP,
        );
        // Applied before we return: the caller's next connection gets the
        // new lists.
        let applied = slot.dir().join("applied");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::fs::read_to_string(&applied)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            != Some(c.generation)
        {
            if std::time::Instant::now() > deadline {
                return Err(EgressError::Proxy {
                    bin: PathBuf::from("phantom-server egress"),
                    why: format!("the proxy did not apply update {} within 5 s", c.generation),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    Ok(true)
}

/// A process's start time (field 22 of /proc/PID/stat), to tell a reused pid.
fn start_time(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &s[s.rfind(')')? + 2..];
    after.split(' ').nth(19)?.parse().ok()
}

/// The host-wide lock of the slot directory and the table.
struct Lock(#[allow(dead_code)] File);

impl Lock {
    fn take() -> Result<Lock> {
        let dir = Path::new(STATE_DIR);
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        let path = dir.join(".lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io("open", &path))?;
        // SAFETY: flock on a descriptor we own; closing it (Lock's drop)
        // releases the lock.
        let rc = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), libc::LOCK_EX) };
        if rc != 0 {
            return Err(io("lock", &path)(std::io::Error::last_os_error()));
        }
        Ok(Lock(f))
    }
}

const TABLE_RULES: &str = r#"
table inet phantom_egress {
    set sandboxes { type ifname . ipv4_addr; }
    chain prerouting {
        type nat hook prerouting priority dstnat - 10; policy accept;
        iifname "phe*" meta nfproto ipv4 udp dport 53 redirect to :53
        iifname "phe*" meta nfproto ipv4 meta l4proto tcp redirect to :15001
    }
    chain input {
        type filter hook input priority filter - 10; policy accept;
        iifname "phe*" meta nfproto ipv4 iifname . ip daddr @sandboxes tcp dport 15001 accept
        iifname "phe*" meta nfproto ipv4 iifname . ip daddr @sandboxes udp dport 53 accept
        iifname "phe*" counter drop
    }
    chain forward {
        type filter hook forward priority filter - 10; policy accept;
        iifname "phe*" counter drop
        oifname "phe*" counter drop
    }
}
"#;

fn table_exists() -> bool {
    Command::new("nft")
        .args(["list", "table", "inet", TABLE])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The upstream resolver: `PHANTOM_EGRESS_RESOLVER`, else the host's.
pub fn upstream() -> Result<std::net::SocketAddr> {
    if let Ok(v) = std::env::var("PHANTOM_EGRESS_RESOLVER") {
        return v.parse().map_err(|_| EgressError::BadResolver(v));
    }
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    crate::dns::resolv_conf_server(&text).ok_or(EgressError::NoResolver)
}

/// One sandbox's network, proxy and slot; dropped: all removed.
pub struct Egress {
    pub slot: Slot,
    proxy: Option<Child>,
    /// The resolv.conf the sandbox mounts.
    pub resolv_conf: PathBuf,
    /// Handed over to a persistent sandbox: not removed on drop.
    kept: bool,
}

impl Egress {
    /// Make the network of `sandbox` (see the module docs). `server` is the
    /// `phantom-server` binary.
    pub fn setup(
        sandbox: &str,
        rules: &phantom_policy::EgressRules,
        server: &Path,
        log: Option<&Path>,
        persistent: bool,
    ) -> Result<Egress> {
        let upstream = upstream()?;
        let slot = {
            let _lock = Lock::take()?;
            sweep_locked();
            let slot = reserve(sandbox)?;
            if !table_exists() {
                if let Err(e) = run("nft", &["-f", "-"], Some(TABLE_RULES)) {
                    let _ = remove_slot(slot);
                    return Err(e);
                }
            }
            slot
        };
        let mut e = Egress {
            slot,
            proxy: None,
            resolv_conf: slot.dir().join("resolv.conf"),
            kept: false,
        };
        // From here, a failure drops `e`, which removes what was made.
        e.make_network()?;
        let (allow, allow_cidr) = rules.texts();
        let config = ProxyConfig {
            sandbox: sandbox.to_string(),
            listen: slot.host_ip(),
            proxy_port: PROXY_PORT,
            allow,
            allow_cidr,
            upstream,
            sandbox_net: format!("{NET_BASE}/{NET_PREFIX}"),
            generation: 0,
        };
        let child = start_proxy(slot, &config, server, log, persistent)?;
        let pid = child.id() as i32;
        e.proxy = Some(child);
        let _lock = Lock::take()?;
        if let Some(mut rec) = SlotRecord::read(slot) {
            rec.proxy_pid = pid;
            rec.proxy_start = start_time(pid).unwrap_or(0);
            rec.write(slot)?;
        }
        Ok(e)
    }

    /// A persistent sandbox's network outlives this command: from now on
    /// it belongs to the sandbox's init `owner` (swept once that is gone)
    /// and is removed by [`remove_sandbox`].
    pub fn hand_over(mut self, owner: i32) -> Result<()> {
        let _lock = Lock::take()?;
        if let Some(mut rec) = SlotRecord::read(self.slot) {
            rec.owner_pid = owner;
            rec.owner_start = start_time(owner).unwrap_or(0);
            rec.write(self.slot)?;
        }
        self.proxy = None;
        self.kept = true;
        Ok(())
    }

    fn make_network(&self) -> Result<()> {
        let s = self.slot;
        let dir = s.dir();
        std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        std::fs::write(
            &self.resolv_conf,
            format!("nameserver {}\noptions timeout:2 attempts:2\n", s.host_ip()),
        )
        .map_err(io("write", &self.resolv_conf))?;
        let (ns, veth, peer) = (s.netns_name(), s.veth(), format!("{}p", s.veth()));
        let host = format!("{}/30", s.host_ip());
        let sbx = format!("{}/30", s.sandbox_ip());
        let gw = s.host_ip().to_string();
        // Two `ip -batch` runs (the host's side, then the namespace's):
        // each `ip` start costs a few ms on the cold path.
        run("ip", &["netns", "add", &ns], None)?;
        let host_side = format!(
            "link add {veth} type veth peer name {peer} netns {ns}\n\
             addr add {host} dev {veth}\n\
             link set {veth} up\n"
        );
        // No IPv6 on the host end: the table passes IPv4 only (written
        // once the link exists, before it is up: see below).
        run("ip", &["-batch", "-"], Some(&host_side))?;
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{veth}/disable_ipv6"), "1");
        let ns_side = format!(
            "link set {peer} name eth0\n\
             addr add {sbx} dev eth0\n\
             link set eth0 up\n\
             link set lo up\n\
             route add default via {gw}\n"
        );
        run("ip", &["-n", &ns, "-batch", "-"], Some(&ns_side))?;
        run(
            "nft",
            &[
                "add",
                "element",
                "inet",
                TABLE,
                "sandboxes",
                &format!("{{ \"{veth}\" . {gw} }}"),
            ],
            None,
        )?;
        Ok(())
    }

    /// The netns and resolv.conf for the sandbox's config.json.
    pub fn net(&self) -> phantom_policy::EgressNet {
        phantom_policy::EgressNet {
            netns: self.slot.netns_path(),
            resolv_conf: self.resolv_conf.clone(),
        }
    }
}

impl Drop for Egress {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        if let Some(mut p) = self.proxy.take() {
            let pid = nix::unistd::Pid::from_raw(p.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
            loop {
                match p.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if std::time::Instant::now() > deadline => {
                        let _ = p.kill();
                        let _ = p.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
        }
        let Ok(_lock) = Lock::take() else { return };
        teardown(self.slot);
        let _ = remove_slot(self.slot);
        drop_table_if_unused();
    }
}

/// Reserve the lowest free slot: its file made exclusively (under the lock).
fn reserve(sandbox: &str) -> Result<Slot> {
    let me = std::process::id() as i32;
    let rec = SlotRecord {
        sandbox: sandbox.to_string(),
        owner_pid: me,
        owner_start: start_time(me).unwrap_or(0),
        proxy_pid: 0,
        proxy_start: 0,
    };
    for i in 0..SLOTS {
        let slot = Slot(i);
        let path = slot.file();
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut f) => {
                let text = serde_json::to_string(&rec).expect("serialises");
                f.write_all(text.as_bytes()).map_err(io("write", &path))?;
                return Ok(slot);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io("create", &path)(e)),
        }
    }
    Err(EgressError::Full)
}

fn remove_slot(slot: Slot) -> Result<()> {
    let _ = std::fs::remove_dir_all(slot.dir());
    std::fs::remove_file(slot.file()).map_err(io("remove", &slot.file()))
}

/// Remove a slot's network (each step may have been done or not).
fn teardown(slot: Slot) {
    let veth = slot.veth();
    let _ = run(
        "nft",
        &[
            "delete",
            "element",
            "inet",
            TABLE,
            "sandboxes",
            &format!("{{ \"{veth}\" . {} }}", slot.host_ip()),
        ],
        None,
    );
    if Path::new("/sys/class/net").join(&veth).exists() {
        let _ = run("ip", &["link", "del", &veth], None);
    }
    if slot.netns_path().exists() {
        let _ = run("ip", &["netns", "del", &slot.netns_name()], None);
    }
}

fn drop_table_if_unused() {
    let any = std::fs::read_dir(STATE_DIR).is_ok_and(|d| {
        d.flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".json"))
    });
    if !any && table_exists() {
        let _ = run("nft", &["delete", "table", "inet", TABLE], None);
    }
}

/// Remove the slots whose owner is gone (a kill -9 of phantom run).
pub fn sweep() -> Result<usize> {
    let _lock = Lock::take()?;
    let n = sweep_locked();
    drop_table_if_unused();
    Ok(n)
}

fn sweep_locked() -> usize {
    let Ok(dir) = std::fs::read_dir(STATE_DIR) else {
        return 0;
    };
    let mut n = 0;
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(idx) = name
            .strip_suffix(".json")
            .and_then(|i| i.parse::<u32>().ok())
        else {
            continue;
        };
        let rec = SlotRecord::read(Slot(idx));
        let alive = rec.as_ref().is_some_and(SlotRecord::owner_alive);
        if !alive {
            if let Some(r) = &rec {
                r.kill_proxy();
            }
            tracing::info!("egress: sweeping slot {idx} (its owner is gone)");
            teardown(Slot(idx));
            let _ = remove_slot(Slot(idx));
            n += 1;
        }
    }
    n
}

fn start_proxy(
    slot: Slot,
    config: &ProxyConfig,
    server: &Path,
    log: Option<&Path>,
    persistent: bool,
) -> Result<Child> {
    let path = slot.dir().join("proxy.json");
    std::fs::write(&path, serde_json::to_vec(config).expect("serialises"))
        .map_err(io("write", &path))?;
    let mut cmd = Command::new(server);
    if let Some(l) = log {
        // A log file is the audit log: the allowed decisions too (info).
        cmd.arg("--log").arg(l).arg("--debug");
    }
    cmd.arg("egress")
        .arg("--config")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    if persistent {
        // It outlives the caller, who may be waiting for EOF on its
        // stderr: its log goes to the log file or nowhere.
        cmd.stderr(Stdio::null());
    }
    // SAFETY: prctl and setsid take integers and are async-signal-safe.
    // A run's proxy dies with this process (a kill -9 leaves no listener);
    // a persistent sandbox's lives in a session of its own until destroy.
    unsafe {
        cmd.pre_exec(move || {
            if persistent {
                libc::setsid();
            } else {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            }
            Ok(())
        });
    }
    let fail = |why: String| EgressError::Proxy {
        bin: server.to_path_buf(),
        why,
    };
    let mut child = cmd.spawn().map_err(|e| fail(e.to_string()))?;
    let mut line = String::new();
    let out = child.stdout.take().expect("piped");
    let _ = std::io::BufReader::new(out).read_line(&mut line);
    if line.trim() != "ready" {
        let _ = child.kill();
        let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
        return Err(fail(format!("it exited ({status}) before it was ready")));
    }
    Ok(child)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_do_not_overlap() {
        assert_eq!(Slot(0).host_ip(), Ipv4Addr::new(100, 96, 0, 1));
        assert_eq!(Slot(0).sandbox_ip(), Ipv4Addr::new(100, 96, 0, 2));
        assert_eq!(Slot(1).host_ip(), Ipv4Addr::new(100, 96, 0, 5));
        assert_eq!(
            Slot(SLOTS - 1).sandbox_ip(),
            Ipv4Addr::new(100, 96, 255, 254)
        );
        assert!(Slot(SLOTS - 1).veth().len() <= 15);
    }
}

//! The daemon's settings: flags, over a YAML file given with `--config`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;

/// `phantom daemon` flags.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct DaemonArgs {
    /// Where clients connect (default $PHANTOM_DAEMON_SOCKET or /run/phantom/daemon.sock)
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Serve the REST API on ADDR:PORT (loopback unless --allow-remote); needs --api-keys
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Let --listen take a non-loopback address
    #[arg(long)]
    pub allow_remote: bool,
    /// File of API keys, one per line; must be mode 0600
    #[arg(long)]
    pub api_keys: Option<PathBuf>,
    /// Audit log: one JSON line per API request (default /var/log/phantom/audit.jsonl)
    #[arg(long)]
    pub audit_log: Option<PathBuf>,
    /// Requests per second per API key (default 50)
    #[arg(long)]
    pub rate_limit: Option<u32>,
    /// Stdout and stderr kept per run, each, e.g. 64KiB (default 1MiB)
    #[arg(long)]
    pub max_output: Option<String>,
    /// A pool: PROFILE=N, or PROFILE=MIN..MAX to size it by demand (repeatable)
    #[arg(long = "pool")]
    pub pools: Vec<String>,
    /// A pool of Python fork servers: PROFILE=N (each forks per request)
    #[arg(long = "python-pool")]
    pub python_pools: Vec<String>,
    /// Modules the Python fork servers import up front (comma-separated)
    #[arg(long)]
    pub python_modules: Option<String>,
    /// Memory all pooled zygotes together may use, e.g. 2GiB (default 1GiB)
    #[arg(long)]
    pub memory_budget: Option<String>,
    /// Seconds SIGTERM waits for running requests (default 30)
    #[arg(long)]
    pub drain_timeout: Option<u64>,
    /// YAML file with the same settings (flags win)
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Extra directory of profile YAML files
    #[arg(long)]
    pub profile_path: Option<PathBuf>,
    /// Let the API key KEYID (as the audit log names it, `key@line2`) ask
    /// for `network: host` beyond its profile's (repeatable)
    #[arg(long = "allow-host-network", value_name = "KEYID")]
    pub allow_host_network: Vec<String>,
    /// Let API requests ask for up to SIZE of memory beyond their profile's, e.g. 4GiB
    #[arg(long, value_name = "SIZE")]
    pub max_memory: Option<String>,
    /// Let API requests ask for up to N pids beyond their profile's
    #[arg(long, value_name = "N")]
    pub max_pids: Option<i64>,
    /// Let API requests ask for up to N CPUs beyond their profile's, e.g. 4
    #[arg(long, value_name = "N")]
    pub max_cpus: Option<f64>,
    /// --max-memory for one key only, KEYID=SIZE (repeatable; wins over
    /// --max-memory for that key)
    #[arg(long = "key-max-memory", value_name = "KEYID=SIZE")]
    pub key_max_memory: Vec<String>,
    /// --max-pids for one key only, KEYID=N (repeatable)
    #[arg(long = "key-max-pids", value_name = "KEYID=N")]
    pub key_max_pids: Vec<String>,
    /// --max-cpus for one key only, KEYID=N (repeatable)
    #[arg(long = "key-max-cpus", value_name = "KEYID=N")]
    pub key_max_cpus: Vec<String>,
    /// Print the running daemon's pools and exit
    #[arg(long)]
    pub status: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PoolKind {
    /// One warm sandbox per request.
    #[default]
    Zygote,
    /// A started Python interpreter that forks per request.
    Python,
}

impl PoolKind {
    pub fn name(self) -> &'static str {
        match self {
            PoolKind::Zygote => "zygote",
            PoolKind::Python => "python",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    pub profile: String,
    #[serde(default)]
    pub kind: PoolKind,
    pub min: usize,
    pub max: usize,
}

/// A size in the file: `1048576` or `"1MiB"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Bytes(u64),
    Text(String),
}

impl SizeValue {
    fn text(self) -> String {
        match self {
            SizeValue::Bytes(n) => n.to_string(),
            SizeValue::Text(t) => t,
        }
    }
}

/// The `--config` file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    socket: Option<PathBuf>,
    listen: Option<SocketAddr>,
    allow_remote: Option<bool>,
    api_keys: Option<PathBuf>,
    audit_log: Option<PathBuf>,
    rate_limit: Option<u32>,
    max_output: Option<SizeValue>,
    memory_budget: Option<SizeValue>,
    drain_timeout: Option<u64>,
    profile_path: Option<PathBuf>,
    python_modules: Option<Vec<String>>,
    #[serde(default)]
    pools: Vec<PoolConfig>,
    #[serde(default)]
    allow_host_network: Vec<String>,
    max_memory: Option<SizeValue>,
    max_pids: Option<i64>,
    max_cpus: Option<f64>,
    /// Per key id: `key_max_memory: {key@line3: 4GiB}`.
    #[serde(default)]
    key_max_memory: std::collections::BTreeMap<String, SizeValue>,
    #[serde(default)]
    key_max_pids: std::collections::BTreeMap<String, i64>,
    #[serde(default)]
    key_max_cpus: std::collections::BTreeMap<String, f64>,
}

/// Everything the daemon runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub root: PathBuf,
    pub socket: PathBuf,
    pub listen: Option<SocketAddr>,
    pub api_keys: Option<PathBuf>,
    pub audit_log: PathBuf,
    pub rate_limit: u32,
    pub max_output: usize,
    pub memory_budget: u64,
    pub drain_timeout: std::time::Duration,
    pub profile_path: Option<PathBuf>,
    pub python_modules: Vec<String>,
    pub pools: Vec<PoolConfig>,
    /// What the operator lets API keys have beyond their profiles.
    pub raises: Raises,
}

/// The operator's loosening of profiles for API requests: a request may
/// only narrow its profile unless the daemon's configuration says so here
/// (never the request itself).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Raises {
    /// Key ids (`key@lineN`) that may ask for `network: host`.
    pub host_network_keys: Vec<String>,
    /// Bytes of memory any key may ask for, beyond its profile's.
    pub max_memory: Option<u64>,
    /// Pids any key may ask for, beyond its profile's.
    pub max_pids: Option<i64>,
    /// CPUs any key may ask for, beyond its profile's.
    pub max_cpus: Option<f64>,
    /// Ceilings of one key (`--key-max-*`), in place of the ones above.
    pub per_key: std::collections::BTreeMap<String, KeyRaises>,
}

/// One key's own ceilings (unset: the daemon-wide one applies).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyRaises {
    pub memory: Option<u64>,
    pub pids: Option<i64>,
    pub cpus: Option<f64>,
}

impl Raises {
    /// The ceilings raised for `key`: its own, else the daemon-wide ones.
    pub fn for_key(&self, key: &str) -> phantom_policy::Raised {
        let own = self.per_key.get(key).cloned().unwrap_or_default();
        phantom_policy::Raised {
            network: self
                .host_network_keys
                .iter()
                .any(|k| k == key)
                .then_some(phantom_policy::NetworkMode::Host),
            memory: own.memory.or(self.max_memory),
            pids: own.pids.or(self.max_pids),
            cpus: own.cpus.or(self.max_cpus),
        }
    }
}

/// A key id as `--allow-host-network` and `--key-max-*` take it (never a
/// key: a key itself never goes into a config file).
fn check_key_id(flag: &str, k: &str) -> Result<()> {
    let line = k
        .strip_prefix("key@line")
        .and_then(|n| n.parse::<usize>().ok());
    if line.is_none() {
        bail!(
            "{flag} {k:?}: expected a key id such as key@line2 (the line of the key in --api-keys)"
        );
    }
    Ok(())
}

/// `KEYID=VALUE` of a `--key-max-*` flag.
fn key_value<'a>(flag: &str, s: &'a str) -> Result<(&'a str, &'a str)> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| anyhow!("{flag} {s:?}: expected KEYID=VALUE, e.g. key@line3=4GiB"))?;
    check_key_id(flag, k)?;
    Ok((k, v))
}

fn check_cpus(flag: &str, n: f64) -> Result<f64> {
    if !(n > 0.0 && n.is_finite()) {
        bail!("{flag} {n}: must be a positive number of CPUs");
    }
    Ok(n)
}

fn check_pids(flag: &str, n: i64) -> Result<i64> {
    if n < 1 {
        bail!("{flag} {n}: must be at least 1");
    }
    Ok(n)
}

/// The per-key ceilings of the file, then of the flags (which win).
fn per_key(
    a: &DaemonArgs,
    f: &FileConfig,
) -> Result<std::collections::BTreeMap<String, KeyRaises>> {
    let mut m: std::collections::BTreeMap<String, KeyRaises> = Default::default();
    for (k, v) in &f.key_max_memory {
        check_key_id("key_max_memory", k)?;
        let n =
            crate::parse_size(&v.clone().text()).with_context(|| format!("key_max_memory {k}"))?;
        m.entry(k.clone()).or_default().memory = Some(n);
    }
    for (k, v) in &f.key_max_pids {
        check_key_id("key_max_pids", k)?;
        m.entry(k.clone()).or_default().pids = Some(check_pids("key_max_pids", *v)?);
    }
    for (k, v) in &f.key_max_cpus {
        check_key_id("key_max_cpus", k)?;
        m.entry(k.clone()).or_default().cpus = Some(check_cpus("key_max_cpus", *v)?);
    }
    for s in &a.key_max_memory {
        let (k, v) = key_value("--key-max-memory", s)?;
        let n = crate::parse_size(v).with_context(|| format!("--key-max-memory {s:?}"))?;
        m.entry(k.to_string()).or_default().memory = Some(n);
    }
    for s in &a.key_max_pids {
        let (k, v) = key_value("--key-max-pids", s)?;
        let n = v
            .trim()
            .parse::<i64>()
            .map_err(|_| anyhow!("--key-max-pids {s:?}: {v:?} is not a number"))?;
        m.entry(k.to_string()).or_default().pids = Some(check_pids("--key-max-pids", n)?);
    }
    for s in &a.key_max_cpus {
        let (k, v) = key_value("--key-max-cpus", s)?;
        let n = v
            .trim()
            .parse::<f64>()
            .map_err(|_| anyhow!("--key-max-cpus {s:?}: {v:?} is not a number"))?;
        m.entry(k.to_string()).or_default().cpus = Some(check_cpus("--key-max-cpus", n)?);
    }
    Ok(m)
}

/// `PROFILE=N` (a fixed size) or `PROFILE=MIN..MAX`.
pub fn parse_pool(flag: &str, s: &str, kind: PoolKind) -> Result<PoolConfig> {
    let (profile, size) = s
        .split_once('=')
        .ok_or_else(|| anyhow!("{flag} {s:?}: expected PROFILE=N or PROFILE=MIN..MAX"))?;
    let num = |t: &str| {
        t.trim()
            .parse::<usize>()
            .map_err(|_| anyhow!("{flag} {s:?}: {t:?} is not a number"))
    };
    let (min, max) = match size.split_once("..") {
        Some((a, b)) => (num(a)?, num(b)?),
        None => {
            let n = num(size)?;
            (n, n)
        }
    };
    if profile.is_empty() {
        bail!("{flag} {s:?}: the profile name is empty");
    }
    if min > max {
        bail!("{flag} {s:?}: MIN is larger than MAX");
    }
    if max > 256 {
        bail!("{flag} {s:?}: at most 256 zygotes per pool");
    }
    if kind == PoolKind::Python && min != max {
        bail!("{flag} {s:?}: fork servers are shared, not used up: give a fixed number");
    }
    Ok(PoolConfig {
        profile: profile.to_string(),
        kind,
        min,
        max,
    })
}

/// YAML text -> JSON value (YAML's data model is what serde reads here).
fn yaml_to_json(y: &yaml_rust2::Yaml) -> Result<serde_json::Value> {
    use serde_json::Value;
    use yaml_rust2::Yaml;
    Ok(match y {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::Real(r) => Value::from(
            r.parse::<f64>()
                .map_err(|_| anyhow!("{r:?} is not a number"))?,
        ),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Array(a) => Value::Array(a.iter().map(yaml_to_json).collect::<Result<_>>()?),
        Yaml::Hash(h) => {
            let mut m = serde_json::Map::new();
            for (k, v) in h {
                let k = match k {
                    Yaml::String(s) => s.clone(),
                    other => bail!("keys must be strings, not {other:?}"),
                };
                m.insert(k, yaml_to_json(v)?);
            }
            Value::Object(m)
        }
        other => bail!("unsupported YAML value {other:?}"),
    })
}

fn read_file(path: &Path) -> Result<FileConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("--config {}", path.display()))?;
    let docs = yaml_rust2::YamlLoader::load_from_str(&text)
        .map_err(|e| anyhow!("--config {}: {e}", path.display()))?;
    let v = match docs.first() {
        Some(d) => yaml_to_json(d).with_context(|| format!("--config {}", path.display()))?,
        None => serde_json::json!({}),
    };
    serde_json::from_value(v).with_context(|| format!("--config {}", path.display()))
}

impl Config {
    pub fn new(root: &Path, a: &DaemonArgs) -> Result<Config> {
        let f = match &a.config {
            Some(p) => read_file(p)?,
            None => FileConfig::default(),
        };
        let per_key = per_key(a, &f)?;
        let mut pools = f.pools.clone();
        for p in &a.pools {
            pools.push(parse_pool("--pool", p, PoolKind::Zygote)?);
        }
        for p in &a.python_pools {
            pools.push(parse_pool("--python-pool", p, PoolKind::Python)?);
        }
        for p in &pools {
            if p.kind == PoolKind::Python && p.min != p.max {
                bail!(
                    "pool {} (python): fork servers are shared, not used up: give min = max",
                    p.profile
                );
            }
            if p.min > p.max {
                bail!("pool {}: min is larger than max", p.profile);
            }
        }
        for (i, p) in pools.iter().enumerate() {
            if pools[..i]
                .iter()
                .any(|q| q.profile == p.profile && q.kind == p.kind)
            {
                bail!("pool {} ({}) is configured twice", p.profile, p.kind.name());
            }
        }
        let listen = a.listen.or(f.listen);
        let api_keys = a.api_keys.clone().or(f.api_keys);
        if let Some(addr) = listen {
            if api_keys.is_none() {
                bail!(
                    "--listen {addr} needs --api-keys FILE: the REST API never runs without keys"
                );
            }
            let remote_ok = a.allow_remote || f.allow_remote == Some(true);
            if !addr.ip().is_loopback() && !remote_ok {
                bail!("--listen {addr} is not a loopback address; add --allow-remote to serve other hosts");
            }
        }
        let memory_budget = match a
            .memory_budget
            .clone()
            .or(f.memory_budget.map(SizeValue::text))
        {
            Some(s) => crate::parse_size(&s).context("--memory-budget")?,
            None => 1 << 30,
        };
        let python_modules = match &a.python_modules {
            Some(m) => m
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(str::to_string)
                .collect(),
            None => f.python_modules.unwrap_or_default(),
        };
        for m in &python_modules {
            if !m
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            {
                bail!("--python-modules: {m:?} is not a module name");
            }
        }
        let mut host_network_keys = f.allow_host_network.clone();
        host_network_keys.extend(a.allow_host_network.iter().cloned());
        for k in &host_network_keys {
            // Key ids, not keys: a key itself never goes into a config file.
            check_key_id("--allow-host-network", k)?;
        }
        let max_memory = match a.max_memory.clone().or(f.max_memory.map(SizeValue::text)) {
            Some(s) => Some(crate::parse_size(&s).context("--max-memory")?),
            None => None,
        };
        let max_pids = a
            .max_pids
            .or(f.max_pids)
            .map(|n| check_pids("--max-pids", n))
            .transpose()?;
        let max_cpus = a
            .max_cpus
            .or(f.max_cpus)
            .map(|n| check_cpus("--max-cpus", n))
            .transpose()?;
        Ok(Config {
            raises: Raises {
                host_network_keys,
                max_memory,
                max_pids,
                max_cpus,
                per_key,
            },
            root: root.to_path_buf(),
            socket: phantom_zygote::socket_path(a.socket.as_deref().or(f.socket.as_deref())),
            listen,
            api_keys,
            audit_log: a
                .audit_log
                .clone()
                .or(f.audit_log)
                .unwrap_or_else(|| PathBuf::from("/var/log/phantom/audit.jsonl")),
            rate_limit: a.rate_limit.or(f.rate_limit).unwrap_or(50).max(1),
            max_output: match a.max_output.clone().or(f.max_output.map(SizeValue::text)) {
                Some(s) => usize::try_from(crate::parse_size(&s).context("--max-output")?)
                    .context("--max-output")?,
                None => 1 << 20,
            },
            memory_budget,
            drain_timeout: std::time::Duration::from_secs(
                a.drain_timeout.or(f.drain_timeout).unwrap_or(30),
            ),
            profile_path: a.profile_path.clone().or(f.profile_path),
            python_modules,
            pools,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_raises() {
        let a = DaemonArgs {
            allow_host_network: vec!["key@line3".into()],
            max_memory: Some("4GiB".into()),
            max_pids: Some(2048),
            ..Default::default()
        };
        let c = Config::new(Path::new("/run/phantom-test"), &a).unwrap();
        let r = c.raises.for_key("key@line3");
        assert_eq!(r.network, Some(phantom_policy::NetworkMode::Host));
        assert_eq!((r.memory, r.pids), (Some(4 << 30), Some(2048)));
        assert_eq!(c.raises.for_key("key@line2").network, None);
        // Per key: its own ceilings win, the others stay daemon-wide.
        let a = DaemonArgs {
            max_memory: Some("2GiB".into()),
            max_cpus: Some(4.0),
            key_max_memory: vec!["key@line3=8GiB".into()],
            key_max_pids: vec!["key@line3=4096".into()],
            key_max_cpus: vec!["key@line2=1.5".into()],
            ..Default::default()
        };
        let c = Config::new(Path::new("/run/phantom-test"), &a).unwrap();
        let r3 = c.raises.for_key("key@line3");
        assert_eq!(
            (r3.memory, r3.pids, r3.cpus),
            (Some(8 << 30), Some(4096), Some(4.0))
        );
        let r2 = c.raises.for_key("key@line2");
        assert_eq!(
            (r2.memory, r2.pids, r2.cpus),
            (Some(2 << 30), None, Some(1.5))
        );
        for bad in [
            DaemonArgs {
                key_max_memory: vec!["phantom-secret-key=1GiB".into()],
                ..Default::default()
            },
            DaemonArgs {
                key_max_pids: vec!["key@line3".into()],
                ..Default::default()
            },
            DaemonArgs {
                key_max_cpus: vec!["key@line3=-1".into()],
                ..Default::default()
            },
            DaemonArgs {
                max_cpus: Some(0.0),
                ..Default::default()
            },
        ] {
            assert!(
                Config::new(Path::new("/run/phantom-test"), &bad).is_err(),
                "{bad:?}"
            );
        }
        let bad = DaemonArgs {
            allow_host_network: vec!["phantom-secret-key".into()],
            ..Default::default()
        };
        let e = Config::new(Path::new("/run/phantom-test"), &bad).unwrap_err();
        assert!(e.to_string().contains("key id"), "{e}");
        let bad = DaemonArgs {
            max_pids: Some(0),
            ..Default::default()
        };
        assert!(Config::new(Path::new("/run/phantom-test"), &bad).is_err());
    }

    #[test]
    fn pool_flags() {
        let p = parse_pool("--pool", "python-dev=2", PoolKind::Zygote).unwrap();
        assert_eq!((p.min, p.max), (2, 2));
        let p = parse_pool("--pool", "minimal=1..8", PoolKind::Zygote).unwrap();
        assert_eq!((p.min, p.max), (1, 8));
        assert!(parse_pool("--pool", "x=8..1", PoolKind::Zygote).is_err());
        assert!(parse_pool("--pool", "x", PoolKind::Zygote).is_err());
        assert!(parse_pool("--pool", "=2", PoolKind::Zygote).is_err());
    }

    #[test]
    fn config_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("d.yaml");
        std::fs::write(
            &p,
            "listen: 127.0.0.1:9000\napi_keys: /k\nrate_limit: 5\nmax_output: 65536\nmemory_budget: 2GiB\npools:\n  - {profile: python-dev, min: 1, max: 4}\n  - {profile: python-dev, kind: python, min: 1, max: 1}\n",
        )
        .unwrap();
        let a = DaemonArgs {
            config: Some(p.clone()),
            ..Default::default()
        };
        let c = Config::new(Path::new("/run/x"), &a).unwrap();
        assert_eq!(c.rate_limit, 5);
        assert_eq!(c.max_output, 65536);
        assert_eq!(c.memory_budget, 2 << 30);
        assert_eq!(c.pools.len(), 2);
        assert_eq!(c.pools[1].kind, PoolKind::Python);
        std::fs::write(
            &p,
            "max_cpus: 3\nkey_max_memory: {key@line4: 3GiB}\nkey_max_cpus: {key@line4: 6}\n",
        )
        .unwrap();
        let c = Config::new(Path::new("/run/x"), &a).unwrap();
        let r = c.raises.for_key("key@line4");
        assert_eq!((r.memory, r.cpus), (Some(3 << 30), Some(6.0)));
        assert_eq!(c.raises.for_key("key@line2").cpus, Some(3.0));
        std::fs::write(&p, "pools:\n  - {profile: x, min: 1, max: 2, size: 3}\n").unwrap();
        let e = format!("{:#}", Config::new(Path::new("/run/x"), &a).unwrap_err());
        assert!(e.contains("size"), "{e}");
        let a = DaemonArgs {
            listen: Some("0.0.0.0:9000".parse().unwrap()),
            api_keys: Some("/k".into()),
            ..Default::default()
        };
        assert!(Config::new(Path::new("/run/x"), &a).is_err());
    }
}

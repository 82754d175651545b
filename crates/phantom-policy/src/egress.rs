//! Egress allowlists (`--network egress`, docs/egress.md): the rules a
//! sandbox's traffic is matched against outside the sandbox, by phantom's
//! proxy and resolver (crate `phantom-egress`).
//!
//! - `--allow NAME`: the exact name, over HTTP (port 80, by the Host header)
//!   and HTTPS (443, by the TLS SNI); DNS answers for it.
//! - `--allow '*.SUFFIX'`: every name below SUFFIX (not SUFFIX itself).
//! - `--allow NAME:PORT`: TCP to PORT on the addresses phantom resolves NAME to.
//! - `--allow-cidr CIDR`: TCP to any port of that range; it also lifts the
//!   refusal of private, loopback and link-local addresses for it.
//!
//! Kept here, the lowest crate, so the profile DSL, the CLI, the daemon and
//! the proxy read a rule the one same way.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// A rule or range that does not parse; names the text given.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EgressRuleError {
    #[error("allow {given:?}: {why}")]
    Allow { given: String, why: &'static str },
    #[error("allow-cidr {given:?}: {why}")]
    Cidr { given: String, why: &'static str },
}

/// The name part of an `--allow` rule.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NamePattern {
    /// `pypi.org`: that name only.
    Exact(String),
    /// `*.pythonhosted.org` (stored as `pythonhosted.org`): names below it.
    Below(String),
}

impl NamePattern {
    /// Whether `name` (any case, an optional final dot) matches.
    pub fn matches(&self, name: &str) -> bool {
        let name = normalise(name);
        match self {
            NamePattern::Exact(n) => name == *n,
            NamePattern::Below(s) => {
                name.len() > s.len() + 1
                    && name.ends_with(s.as_str())
                    && name.as_bytes()[name.len() - s.len() - 1] == b'.'
            }
        }
    }

    /// Every name this matches is matched by `wider` too.
    pub fn within(&self, wider: &NamePattern) -> bool {
        match (self, wider) {
            (NamePattern::Exact(n), w) => w.matches(n),
            (NamePattern::Below(s), NamePattern::Below(w)) => {
                s == w || NamePattern::Below(w.clone()).matches(s)
            }
            (NamePattern::Below(_), NamePattern::Exact(_)) => false,
        }
    }
}

/// Lower case, without a final dot.
pub fn normalise(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// One `--allow`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AllowRule {
    pub name: NamePattern,
    /// `NAME:PORT`: that TCP port; none: HTTP and HTTPS by name.
    pub port: Option<u16>,
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

impl FromStr for AllowRule {
    type Err = EgressRuleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why| EgressRuleError::Allow {
            given: s.to_string(),
            why,
        };
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) => {
                let port: u16 = p
                    .parse()
                    .map_err(|_| bad("the port is not a number 1-65535"))?;
                if port == 0 {
                    return Err(bad("the port is not a number 1-65535"));
                }
                (h, Some(port))
            }
            None => (s, None),
        };
        if host.parse::<IpAddr>().is_ok() || host.contains('/') {
            return Err(bad("an address is not a name: use --allow-cidr"));
        }
        let name = match host.strip_prefix("*.") {
            Some(rest) => {
                let rest = normalise(rest);
                if !valid_name(&rest) || !rest.contains('.') {
                    return Err(bad(
                        "expected *.SUFFIX with a SUFFIX of at least two labels",
                    ));
                }
                NamePattern::Below(rest)
            }
            None => {
                let n = normalise(host);
                if !valid_name(&n) {
                    return Err(bad("expected NAME, *.SUFFIX or NAME:PORT"));
                }
                NamePattern::Exact(n)
            }
        };
        Ok(AllowRule { name, port })
    }
}

impl fmt::Display for AllowRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            NamePattern::Exact(n) => write!(f, "{n}")?,
            NamePattern::Below(s) => write!(f, "*.{s}")?,
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

/// An address range, `203.0.113.0/24`, `2001:db8::/32`, or one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Cidr {
        Cidr {
            addr: IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d)),
            prefix,
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }

    /// Every address of `self` is in `wider`.
    pub fn within(&self, wider: &Cidr) -> bool {
        self.prefix >= wider.prefix && wider.contains(self.addr)
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl FromStr for Cidr {
    type Err = EgressRuleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why| EgressRuleError::Cidr {
            given: s.to_string(),
            why,
        };
        let (a, p) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = a.parse().map_err(|_| bad("expected ADDRESS/PREFIX"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() {
            max
        } else {
            p.parse::<u8>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or(bad("the prefix length is out of range"))?
        };
        let c = Cidr { addr, prefix };
        // Host bits set (10.0.0.1/8) is almost always a typo.
        if normalised_network(c) != addr {
            return Err(bad("host bits are set: give the network address"));
        }
        Ok(c)
    }
}

fn normalised_network(c: Cidr) -> IpAddr {
    match c.addr {
        IpAddr::V4(n) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(c.prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(n) & mask).into())
        }
        IpAddr::V6(n) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(c.prefix))
                .unwrap_or(0);
            IpAddr::V6((u128::from(n) & mask).into())
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A sandbox's allowlists.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct EgressRules {
    pub allow: Vec<AllowRule>,
    pub allow_cidr: Vec<Cidr>,
}

impl EgressRules {
    /// Parse `--allow` and `--allow-cidr` texts.
    pub fn parse<A: AsRef<str>, C: AsRef<str>>(
        allow: &[A],
        cidr: &[C],
    ) -> Result<EgressRules, EgressRuleError> {
        Ok(EgressRules {
            allow: allow
                .iter()
                .map(|a| a.as_ref().parse())
                .collect::<Result<_, _>>()?,
            allow_cidr: cidr
                .iter()
                .map(|c| c.as_ref().parse())
                .collect::<Result<_, _>>()?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.allow_cidr.is_empty()
    }

    /// The first rule that lets `name` be resolved (any port).
    pub fn name_rule(&self, name: &str) -> Option<&AllowRule> {
        self.allow.iter().find(|r| r.name.matches(name))
    }

    /// The first rule that lets HTTP(S) reach `name` (a rule without a
    /// port, or with exactly `port`).
    pub fn web_rule(&self, name: &str, port: u16) -> Option<&AllowRule> {
        self.allow
            .iter()
            .find(|r| r.name.matches(name) && r.port.is_none_or(|p| p == port))
    }

    /// The first range holding `ip`.
    pub fn cidr_rule(&self, ip: IpAddr) -> Option<&Cidr> {
        self.allow_cidr.iter().find(|c| c.contains(ip))
    }

    /// The texts, as `--allow`/`--allow-cidr` take them.
    pub fn texts(&self) -> (Vec<String>, Vec<String>) {
        (
            self.allow.iter().map(ToString::to_string).collect(),
            self.allow_cidr.iter().map(ToString::to_string).collect(),
        )
    }

    /// The first of `self`'s rules not covered by `wider` (a request may
    /// only narrow its profile).
    pub fn first_wider_than(&self, wider: &EgressRules) -> Option<String> {
        for r in &self.allow {
            let covered = wider.allow.iter().any(|w| {
                r.name.within(&w.name)
                    && match (r.port, w.port) {
                        (_, None) => r.port.is_none() || matches!(r.port, Some(80 | 443)),
                        (Some(a), Some(b)) => a == b,
                        (None, Some(_)) => false,
                    }
            });
            if !covered {
                return Some(format!("allow {r}"));
            }
        }
        for c in &self.allow_cidr {
            if !wider.allow_cidr.iter().any(|w| c.within(w)) {
                return Some(format!("allow-cidr {c}"));
            }
        }
        None
    }
}

/// Ranges the proxy never connects to unless an `--allow-cidr` names them
/// (RFC 6890 special-purpose ranges a sandbox could use to reach the host,
/// its network or the cloud's metadata service).
pub const REFUSED: &[Cidr] = &[
    Cidr::v4(0, 0, 0, 0, 8),
    Cidr::v4(10, 0, 0, 0, 8),
    Cidr::v4(100, 64, 0, 0, 10),
    Cidr::v4(127, 0, 0, 0, 8),
    Cidr::v4(169, 254, 0, 0, 16),
    Cidr::v4(172, 16, 0, 0, 12),
    Cidr::v4(192, 168, 0, 0, 16),
    Cidr::v4(224, 0, 0, 0, 4),
    Cidr::v4(240, 0, 0, 0, 4),
    Cidr {
        addr: IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        prefix: 128,
    },
    Cidr {
        addr: IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        prefix: 128,
    },
    Cidr {
        addr: IpAddr::V6(std::net::Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0)),
        prefix: 7,
    },
    Cidr {
        addr: IpAddr::V6(std::net::Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0)),
        prefix: 10,
    },
    Cidr {
        addr: IpAddr::V6(std::net::Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0)),
        prefix: 8,
    },
];

/// The refused range holding `ip`, if any (the host's own addresses are the
/// proxy's to add).
pub fn refused_range(ip: IpAddr) -> Option<Cidr> {
    REFUSED.iter().copied().find(|c| c.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_and_match() {
        let r: AllowRule = "*.pythonhosted.org".parse().unwrap();
        assert!(r.name.matches("files.pythonhosted.org"));
        assert!(r.name.matches("A.B.PythonHosted.org."));
        assert!(!r.name.matches("pythonhosted.org"));
        assert!(!r.name.matches("evilpythonhosted.org"));
        let r: AllowRule = "api.example.com:8443".parse().unwrap();
        assert_eq!(r.port, Some(8443));
        assert_eq!(r.to_string(), "api.example.com:8443");
        for bad in [
            "",
            "1.2.3.4",
            "*.org",
            "a..b",
            "x:0",
            "x:99999",
            "-a.b",
            "10.0.0.0/8",
        ] {
            assert!(bad.parse::<AllowRule>().is_err(), "{bad}");
        }
    }

    #[test]
    fn cidrs() {
        let c: Cidr = "203.0.113.0/24".parse().unwrap();
        assert!(c.contains("203.0.113.9".parse().unwrap()));
        assert!(c.contains("::ffff:203.0.113.9".parse().unwrap()));
        assert!(!c.contains("203.0.114.1".parse().unwrap()));
        assert!("10.0.0.1/8".parse::<Cidr>().is_err());
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert_eq!("1.2.3.4".parse::<Cidr>().unwrap().prefix, 32);
        assert!("0.0.0.0/0"
            .parse::<Cidr>()
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(refused_range("169.254.169.254".parse().unwrap()).is_some());
        assert!(refused_range("fd00::1".parse().unwrap()).is_some());
        assert!(refused_range("::ffff:127.0.0.1".parse().unwrap()).is_some());
        assert!(refused_range("198.18.0.10".parse().unwrap()).is_none());
    }

    #[test]
    fn narrowing() {
        let wide =
            EgressRules::parse(&["*.example.com", "pypi.org:8443"], &["10.0.0.0/8"]).unwrap();
        let ok = EgressRules::parse(
            &["a.example.com", "*.b.example.com", "pypi.org:8443"],
            &["10.1.0.0/16"],
        )
        .unwrap();
        assert_eq!(ok.first_wider_than(&wide), None);
        let bad = EgressRules::parse(&["pypi.org"], &[] as &[&str]).unwrap();
        assert_eq!(
            bad.first_wider_than(&wide).as_deref(),
            Some("allow pypi.org")
        );
        let bad = EgressRules::parse(&[] as &[&str], &["0.0.0.0/0"]).unwrap();
        assert!(bad.first_wider_than(&wide).is_some());
    }
}

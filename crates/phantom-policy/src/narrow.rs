//! A request may only narrow its profile.
//!
//! A profile states the most a caller may have: its network mode and its
//! resource limits are ceilings, not defaults. A request (`phantom run
//! --profile` flags, a REST body, MCP arguments) may ask for less, never for
//! more; loosening is the operator's business (daemon settings), never the
//! request's. Every entry point calls [`check_narrowing`], so the rule and
//! its wording are the same everywhere, and callers map
//! [`NarrowingError`] to their own refusal by its type (exit 2, HTTP 403, a
//! tool error), never by its text.

use std::fmt;

use crate::profile::{Mode, NetworkMode, Profile, Resources};

/// What a request asks to change in its profile (`None`: the profile's own).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Narrowing {
    /// Only towards more isolation: direct < sandbox < hardened.
    pub mode: Option<Mode>,
    pub network: Option<NetworkMode>,
    pub resources: Resources,
}

/// What the operator lets a caller have beyond its profile (the daemon's
/// `--allow-host-network KEYID`, `--max-memory`, `--max-pids`,
/// `--max-cpus`, or the same per key): each set field raises the
/// profile's ceiling to it, never lowers it. A request never sets these;
/// only the daemon's configuration does.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Raised {
    pub network: Option<NetworkMode>,
    pub memory: Option<u64>,
    pub pids: Option<i64>,
    pub cpus: Option<f64>,
}

/// The one field of a request that asked for more than its profile allows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Loosened {
    Mode {
        asked: Mode,
        allowed: Mode,
    },
    Network {
        asked: NetworkMode,
        allowed: NetworkMode,
    },
    Memory {
        asked: u64,
        allowed: u64,
    },
    Cpus {
        asked: f64,
        allowed: f64,
    },
    Pids {
        asked: i64,
        allowed: i64,
    },
    Tmp {
        asked: u64,
        allowed: u64,
    },
    Shm {
        asked: u64,
        allowed: u64,
    },
    /// The size of a workspace phantom makes (`resources.workspace`).
    Workspace {
        asked: u64,
        allowed: u64,
    },
}

impl Loosened {
    /// The request's field, without prefix (`memory`).
    pub fn field(&self) -> &'static str {
        match self {
            Loosened::Mode { .. } => "mode",
            Loosened::Network { .. } => "network",
            Loosened::Memory { .. } => "memory",
            Loosened::Cpus { .. } => "cpus",
            Loosened::Pids { .. } => "pids",
            Loosened::Tmp { .. } => "tmp",
            Loosened::Shm { .. } => "shm",
            Loosened::Workspace { .. } => "workspace_size",
        }
    }
}

/// A request that would loosen its profile. Displays as
/// `--memory 4 GiB: above the profile python-dev's limit of 1 GiB (a request may only narrow its profile)`.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub struct NarrowingError {
    /// How the caller spells its fields: `--` for flags, `` for JSON bodies.
    pub prefix: String,
    pub profile: String,
    pub loosened: Loosened,
    /// The ceiling passed was the operator's ([`Raised`]), not the profile's.
    pub raised: bool,
}

impl fmt::Display for NarrowingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (p, mut field, name) = (&self.prefix, self.loosened.field(), &self.profile);
        if p == "--" && field == "workspace_size" {
            // As the flag is spelt.
            field = "workspace-size";
        }
        // Whose ceiling it was: the profile's, or the daemon's raise of it.
        let whose = |what: &str| {
            if self.raised {
                format!("the daemon's raised {what} for the profile {name}")
            } else {
                format!("the profile {name}'s {what}")
            }
        };
        match self.loosened {
            Loosened::Mode { asked, allowed } => write!(
                f,
                "{p}{field} {asked}: less isolated than the profile {name}'s mode {allowed} \
                 (a request may only narrow its profile: direct < sandbox < hardened)"
            ),
            Loosened::Network { asked, allowed } => write!(
                f,
                "{p}{field} {asked}: wider than {} {allowed} \
                 (a request may only narrow its profile: none < loopback < egress < host)",
                whose("network")
            ),
            Loosened::Memory { asked, allowed }
            | Loosened::Tmp { asked, allowed }
            | Loosened::Shm { asked, allowed }
            | Loosened::Workspace { asked, allowed } => write!(
                f,
                "{p}{field} {}: above {} of {} (a request may only narrow its profile)",
                Bytes(asked),
                whose("limit"),
                Bytes(allowed)
            ),
            Loosened::Cpus { asked, allowed } => write!(
                f,
                "{p}{field} {asked}: above {} of {allowed} CPUs \
                 (a request may only narrow its profile)",
                whose("limit")
            ),
            Loosened::Pids { asked, allowed } => write!(
                f,
                "{p}{field} {asked}: above {} of {allowed} pids \
                 (a request may only narrow its profile)",
                whose("limit")
            ),
        }
    }
}

/// A byte count the way a person writes it: `512 MiB`, `1 GiB`, `1536 B`
/// (refusals here, and the runtime's out-of-memory and workspace notes).
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [
            ("TiB", 1 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ];
        for (unit, size) in UNITS {
            // Powers of two: a mask, not `is_multiple_of` (newer than our MSRV).
            if self.0 >= size && self.0 & (size - 1) == 0 {
                return write!(f, "{} {unit}", self.0 / size);
            }
        }
        // Not a whole number of any unit: exact bytes, so that a refusal
        // never rounds the two numbers it compares into the same one.
        write!(f, "{} B", self.0)
    }
}

/// Refuses `asked` when any of its fields is wider than `profile`'s: a
/// network further up none < loopback < egress < host, or a limit above one the
/// profile sets. A limit the profile leaves unset has no ceiling here (the
/// operator's, if any, apply elsewhere). `prefix` is how the caller spells
/// its fields in the message (`--` for flags).
pub fn check_narrowing(
    profile: &Profile,
    asked: &Narrowing,
    prefix: &str,
) -> Result<(), NarrowingError> {
    check_narrowing_raised(profile, asked, prefix, &Raised::default())
}

/// [`check_narrowing`] with the operator's [`Raised`] ceilings: a field
/// the operator raised may go up to the higher of the two. A limit the
/// profile leaves unset stays without a ceiling (as without `raised`).
pub fn check_narrowing_raised(
    profile: &Profile,
    asked: &Narrowing,
    prefix: &str,
    raised: &Raised,
) -> Result<(), NarrowingError> {
    let refuse = |loosened, raised| NarrowingError {
        prefix: prefix.to_string(),
        profile: profile.name.clone(),
        loosened,
        raised,
    };
    // How much isolation a mode gives: `direct` shares the host's network
    // and filesystem, so choosing it would undo the profile's network too.
    let isolation = |m: Mode| match m {
        Mode::Direct => 0,
        Mode::Sandbox => 1,
        Mode::Hardened => 2,
    };
    if let Some(m) = asked.mode {
        if isolation(m) < isolation(profile.mode) {
            return Err(refuse(
                Loosened::Mode {
                    asked: m,
                    allowed: profile.mode,
                },
                false,
            ));
        }
    }
    if let Some(n) = asked.network {
        let allowed = raised
            .network
            .map_or(profile.network, |r| r.max(profile.network));
        if n > allowed {
            return Err(refuse(
                Loosened::Network { asked: n, allowed },
                allowed != profile.network,
            ));
        }
    }
    check_limits(
        &profile.name,
        &profile.resources,
        &asked.resources,
        prefix,
        raised,
    )
}

/// The limits part of [`check_narrowing_raised`], against `own` (the
/// profile `name`'s resources, or those a zygote of it was made with: its
/// runner checks each request's limits so, whoever sent them).
pub fn check_limits(
    name: &str,
    own: &Resources,
    asked: &Resources,
    prefix: &str,
    raised: &Raised,
) -> Result<(), NarrowingError> {
    let refuse = |loosened, raised| NarrowingError {
        prefix: prefix.to_string(),
        profile: name.to_string(),
        loosened,
        raised,
    };
    let (a, p) = (asked, own);
    if let (Some(asked), Some(own)) = (a.memory, p.memory) {
        let allowed = raised.memory.map_or(own, |r| r.max(own));
        if asked > allowed {
            return Err(refuse(Loosened::Memory { asked, allowed }, allowed != own));
        }
    }
    if let (Some(asked), Some(own)) = (a.pids, p.pids) {
        let allowed = raised.pids.map_or(own, |r| r.max(own));
        if asked > allowed {
            return Err(refuse(Loosened::Pids { asked, allowed }, allowed != own));
        }
    }
    if let (Some(asked), Some(own)) = (a.cpu, p.cpu) {
        let allowed = raised.cpus.map_or(own, |r| r.max(own));
        if asked > allowed {
            return Err(refuse(Loosened::Cpus { asked, allowed }, allowed != own));
        }
    }
    if let (Some(asked), Some(allowed)) = (a.tmp, p.tmp) {
        if asked > allowed {
            return Err(refuse(Loosened::Tmp { asked, allowed }, false));
        }
    }
    if let (Some(asked), Some(allowed)) = (a.shm, p.shm) {
        if asked > allowed {
            return Err(refuse(Loosened::Shm { asked, allowed }, false));
        }
    }
    if let (Some(asked), Some(allowed)) = (a.workspace, p.workspace) {
        if asked > allowed {
            return Err(refuse(Loosened::Workspace { asked, allowed }, false));
        }
    }
    Ok(())
}

/// A request's `--allow`/`--allow-cidr` that its profile's allowlists do
/// not cover. Exit status 2, as [`NarrowingError`].
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{prefix}{rule}: not within the profile {profile}'s egress allowlists (a request may only narrow its profile)")]
pub struct EgressNarrowingError {
    pub prefix: String,
    pub profile: String,
    /// `allow NAME` or `allow-cidr CIDR`, the first not covered.
    pub rule: String,
}

/// The allowlists a request for `asked` network gets: a profile of mode
/// `host` allows any list; one of mode `egress` only lists within its own,
/// and with no list given the profile's own apply.
pub fn egress_rules(
    profile: &Profile,
    asked: Option<&crate::egress::EgressRules>,
    prefix: &str,
) -> Result<crate::egress::EgressRules, EgressNarrowingError> {
    let Some(asked) = asked.filter(|a| !a.is_empty()) else {
        return Ok(profile.egress.clone());
    };
    if profile.network == NetworkMode::Egress {
        if let Some(rule) = asked.first_wider_than(&profile.egress) {
            return Err(EgressNarrowingError {
                prefix: prefix.to_string(),
                profile: profile.name.clone(),
                rule,
            });
        }
    }
    Ok(asked.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Catalog;

    fn python_dev() -> Profile {
        let c = Catalog::load(&[]);
        c.get("python-dev").unwrap().profile.clone()
    }

    fn net(n: NetworkMode) -> Narrowing {
        Narrowing {
            network: Some(n),
            ..Default::default()
        }
    }

    fn res(r: Resources) -> Narrowing {
        Narrowing {
            resources: r,
            ..Default::default()
        }
    }

    #[test]
    fn network_only_goes_down() {
        let mut p = python_dev();
        p.network = NetworkMode::Loopback;
        assert!(check_narrowing(&p, &net(NetworkMode::None), "--").is_ok());
        assert!(check_narrowing(&p, &net(NetworkMode::Loopback), "--").is_ok());
        let e = check_narrowing(&p, &net(NetworkMode::Host), "--").unwrap_err();
        assert_eq!(
            e.loosened,
            Loosened::Network {
                asked: NetworkMode::Host,
                allowed: NetworkMode::Loopback
            }
        );
        assert_eq!(
            e.to_string(),
            "--network host: wider than the profile python-dev's network loopback \
             (a request may only narrow its profile: none < loopback < egress < host)"
        );
        p.network = NetworkMode::None;
        assert!(check_narrowing(&p, &net(NetworkMode::Loopback), "").is_err());
        p.network = NetworkMode::Host;
        for n in NetworkMode::ALL {
            assert!(check_narrowing(&p, &net(n), "").is_ok());
        }
    }

    #[test]
    fn mode_only_towards_more_isolation() {
        let p = python_dev();
        assert_eq!(p.mode, Mode::Sandbox);
        let m = |mode| Narrowing {
            mode: Some(mode),
            ..Default::default()
        };
        assert!(check_narrowing(&p, &m(Mode::Sandbox), "--").is_ok());
        assert!(check_narrowing(&p, &m(Mode::Hardened), "--").is_ok());
        let e = check_narrowing(&p, &m(Mode::Direct), "--").unwrap_err();
        assert_eq!(
            e.to_string(),
            "--mode direct: less isolated than the profile python-dev's mode sandbox \
             (a request may only narrow its profile: direct < sandbox < hardened)"
        );
    }

    #[test]
    fn limits_at_most_the_profiles() {
        let mut p = python_dev();
        p.resources = Resources {
            memory: Some(512 << 20),
            cpu: Some(1.0),
            pids: Some(64),
            tmp: Some(16 << 20),
            shm: Some(4 << 20),
            workspace: None,
        };
        let ok = Resources {
            memory: Some(512 << 20),
            cpu: Some(0.5),
            pids: Some(1),
            tmp: Some(1 << 20),
            shm: Some(4 << 20),
            workspace: None,
        };
        assert!(check_narrowing(&p, &res(ok), "--").is_ok());
        assert!(check_narrowing(&p, &Narrowing::default(), "--").is_ok());

        let e = check_narrowing(
            &p,
            &res(Resources {
                memory: Some(4 << 30),
                ..ok
            }),
            "--",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "--memory 4 GiB: above the profile python-dev's limit of 512 MiB \
             (a request may only narrow its profile)"
        );
        let e = check_narrowing(
            &p,
            &res(Resources {
                pids: Some(100_000),
                ..ok
            }),
            "",
        )
        .unwrap_err();
        assert_eq!(
            e.loosened,
            Loosened::Pids {
                asked: 100_000,
                allowed: 64
            }
        );
        assert!(e.to_string().starts_with("pids 100000: above"), "{e}");
        let e = check_narrowing(
            &p,
            &res(Resources {
                cpu: Some(1.01),
                ..ok
            }),
            "--",
        )
        .unwrap_err();
        assert_eq!(e.loosened.field(), "cpus");
        // One byte above is refused, and the message tells the two apart.
        let e = check_narrowing(
            &p,
            &res(Resources {
                memory: Some((512 << 20) + 1),
                ..ok
            }),
            "",
        )
        .unwrap_err();
        assert!(e.to_string().contains("memory 536870913 B"), "{e}");
    }

    #[test]
    fn the_operator_raises_ceilings_and_nothing_else() {
        let mut p = python_dev();
        p.network = NetworkMode::Loopback;
        p.resources.memory = Some(1 << 30);
        p.resources.pids = Some(512);
        let raised = Raised {
            network: Some(NetworkMode::Host),
            memory: Some(2 << 30),
            pids: Some(1024),
            cpus: None,
        };
        let asked = Narrowing {
            mode: None,
            network: Some(NetworkMode::Host),
            resources: Resources {
                memory: Some(2 << 30),
                pids: Some(1024),
                ..Default::default()
            },
        };
        assert!(check_narrowing(&p, &asked, "").is_err());
        assert!(check_narrowing_raised(&p, &asked, "", &raised).is_ok());
        let mut more = asked;
        more.resources.memory = Some(4 << 30);
        let e = check_narrowing_raised(&p, &more, "", &raised).unwrap_err();
        assert!(e.raised);
        assert_eq!(
            e.to_string(),
            "memory 4 GiB: above the daemon's raised limit for the profile python-dev \
             of 2 GiB (a request may only narrow its profile)"
        );
        // A raise below the profile's own never lowers it.
        let low = Raised {
            memory: Some(1 << 20),
            ..Default::default()
        };
        let one_gib = res(Resources {
            memory: Some(1 << 30),
            ..Default::default()
        });
        assert!(check_narrowing_raised(&p, &one_gib, "", &low).is_ok());
        // A workspace size above the profile's is refused, named as the
        // caller spells it.
        let mut ws = p.clone();
        ws.resources.workspace = Some(1 << 30);
        let big = res(Resources {
            workspace: Some(2 << 30),
            ..Default::default()
        });
        let e = check_narrowing(&ws, &big, "").unwrap_err();
        assert_eq!(
            e.to_string(),
            "workspace_size 2 GiB: above the profile python-dev's limit of 1 GiB \
             (a request may only narrow its profile)"
        );
        let e = check_narrowing(&ws, &big, "--").unwrap_err();
        assert!(e.to_string().starts_with("--workspace-size 2 GiB"), "{e}");
        // CPUs not raised: still the profile's; raised: up to the raise.
        let cpus = res(Resources {
            cpu: Some(64.0),
            ..Default::default()
        });
        assert!(check_narrowing_raised(&p, &cpus, "", &raised).is_err());
        let four = Raised {
            cpus: Some(4.0),
            ..raised
        };
        let e = check_narrowing_raised(&p, &cpus, "", &four).unwrap_err();
        assert_eq!(
            e.loosened,
            Loosened::Cpus {
                asked: 64.0,
                allowed: 4.0
            }
        );
        assert!(e.raised);
        let three = res(Resources {
            cpu: Some(3.0),
            ..Default::default()
        });
        assert!(check_narrowing_raised(&p, &three, "", &four).is_ok());
    }

    /// Limits that come as OCI resources (a warm run's, over a socket)
    /// are checked as the profile's own: "unlimited" is the most there is.
    #[test]
    fn oci_limits_read_back_and_are_checked() {
        let p = python_dev();
        let asked = Resources {
            memory: Some(256 << 20),
            cpu: Some(1.5),
            pids: Some(64),
            ..Default::default()
        };
        let back = crate::policy::resources_from_oci(&crate::policy::resources_to_oci(&asked));
        assert_eq!(back, asked);
        assert!(check_limits(&p.name, &p.resources, &back, "", &Raised::default()).is_ok());
        let mut unlimited = crate::policy::resources_to_oci(&asked);
        let mut pids = unlimited.pids().expect("pids were set");
        pids.set_limit(-1);
        unlimited.set_pids(Some(pids));
        let back = crate::policy::resources_from_oci(&unlimited);
        let e = check_limits(&p.name, &p.resources, &back, "", &Raised::default()).unwrap_err();
        assert_eq!(e.loosened.field(), "pids");
    }

    #[test]
    fn unset_profile_limits_have_no_ceiling_here() {
        let mut p = python_dev();
        p.resources = Resources::default();
        let big = Resources {
            memory: Some(1 << 40),
            cpu: Some(64.0),
            pids: Some(100_000),
            tmp: None,
            shm: None,
            workspace: None,
        };
        assert!(check_narrowing(&p, &res(big), "--").is_ok());
    }
}

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

use crate::profile::{NetworkMode, Profile, Resources};

/// What a request asks to change in its profile (`None`: the profile's own).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Narrowing {
    pub network: Option<NetworkMode>,
    pub resources: Resources,
}

/// The one field of a request that asked for more than its profile allows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Loosened {
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
}

impl Loosened {
    /// The request's field, without prefix (`memory`).
    pub fn field(&self) -> &'static str {
        match self {
            Loosened::Network { .. } => "network",
            Loosened::Memory { .. } => "memory",
            Loosened::Cpus { .. } => "cpus",
            Loosened::Pids { .. } => "pids",
            Loosened::Tmp { .. } => "tmp",
            Loosened::Shm { .. } => "shm",
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
}

impl fmt::Display for NarrowingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (p, field, name) = (&self.prefix, self.loosened.field(), &self.profile);
        match self.loosened {
            Loosened::Network { asked, allowed } => write!(
                f,
                "{p}{field} {asked}: wider than the profile {name}'s network {allowed} \
                 (a request may only narrow its profile: none < loopback < host)"
            )?,
            Loosened::Memory { asked, allowed }
            | Loosened::Tmp { asked, allowed }
            | Loosened::Shm { asked, allowed } => write!(
                f,
                "{p}{field} {}: above the profile {name}'s limit of {}",
                Bytes(asked),
                Bytes(allowed)
            )?,
            Loosened::Cpus { asked, allowed } => write!(
                f,
                "{p}{field} {asked}: above the profile {name}'s limit of {allowed} CPUs"
            )?,
            Loosened::Pids { asked, allowed } => write!(
                f,
                "{p}{field} {asked}: above the profile {name}'s limit of {allowed} pids"
            )?,
        }
        if !matches!(self.loosened, Loosened::Network { .. }) {
            f.write_str(" (a request may only narrow its profile)")?;
        }
        Ok(())
    }
}

/// A byte count the way a person writes it: `512 MiB`, `1 GiB`, `1536 B`.
struct Bytes(u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [
            ("TiB", 1 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ];
        for (unit, size) in UNITS {
            if self.0 >= size && self.0 % size == 0 {
                return write!(f, "{} {unit}", self.0 / size);
            }
        }
        // Not a whole number of any unit: exact bytes, so that a refusal
        // never rounds the two numbers it compares into the same one.
        write!(f, "{} B", self.0)
    }
}

/// Refuses `asked` when any of its fields is wider than `profile`'s: a
/// network further up none < loopback < host, or a limit above one the
/// profile sets. A limit the profile leaves unset has no ceiling here (the
/// operator's, if any, apply elsewhere). `prefix` is how the caller spells
/// its fields in the message (`--` for flags).
pub fn check_narrowing(
    profile: &Profile,
    asked: &Narrowing,
    prefix: &str,
) -> Result<(), NarrowingError> {
    let refuse = |loosened| NarrowingError {
        prefix: prefix.to_string(),
        profile: profile.name.clone(),
        loosened,
    };
    if let Some(n) = asked.network {
        if n > profile.network {
            return Err(refuse(Loosened::Network {
                asked: n,
                allowed: profile.network,
            }));
        }
    }
    let (a, p) = (&asked.resources, &profile.resources);
    if let (Some(asked), Some(allowed)) = (a.memory, p.memory) {
        if asked > allowed {
            return Err(refuse(Loosened::Memory { asked, allowed }));
        }
    }
    if let (Some(asked), Some(allowed)) = (a.cpu, p.cpu) {
        if asked > allowed {
            return Err(refuse(Loosened::Cpus { asked, allowed }));
        }
    }
    if let (Some(asked), Some(allowed)) = (a.pids, p.pids) {
        if asked > allowed {
            return Err(refuse(Loosened::Pids { asked, allowed }));
        }
    }
    if let (Some(asked), Some(allowed)) = (a.tmp, p.tmp) {
        if asked > allowed {
            return Err(refuse(Loosened::Tmp { asked, allowed }));
        }
    }
    if let (Some(asked), Some(allowed)) = (a.shm, p.shm) {
        if asked > allowed {
            return Err(refuse(Loosened::Shm { asked, allowed }));
        }
    }
    Ok(())
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
             (a request may only narrow its profile: none < loopback < host)"
        );
        p.network = NetworkMode::None;
        assert!(check_narrowing(&p, &net(NetworkMode::Loopback), "").is_err());
        p.network = NetworkMode::Host;
        for n in NetworkMode::ALL {
            assert!(check_narrowing(&p, &net(n), "").is_ok());
        }
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
        };
        let ok = Resources {
            memory: Some(512 << 20),
            cpu: Some(0.5),
            pids: Some(1),
            tmp: Some(1 << 20),
            shm: Some(4 << 20),
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
    fn unset_profile_limits_have_no_ceiling_here() {
        let mut p = python_dev();
        p.resources = Resources::default();
        let big = Resources {
            memory: Some(1 << 40),
            cpu: Some(64.0),
            pids: Some(100_000),
            tmp: None,
            shm: None,
        };
        assert!(check_narrowing(&p, &res(big), "--").is_ok());
    }
}

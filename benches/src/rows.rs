//! The table of command rows: one timed command per runtime per iteration.
//! Adding a figure that is "time this command" is one entry in [`ROWS`];
//! see docs/bench.md.
//!
//! Templates are split on whitespace; `{id}` becomes a fresh container id,
//! `{bundle:NAME}` the path of a bundle that `bundles.rs` writes (`plain`,
//! `netns`, `seccomp`, `sleep`, `pydev-true`, `pydev-python`), `{socket:NAME}`
//! the socket of one of the bench's daemons ([`SOCKETS`]). Runtime templates
//! get `RUNTIME --root ROOT` in front.

use serde::{Deserialize, Serialize};

/// Where a figure sits in the report, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Section {
    Start,
    Lifecycle,
    Sandbox,
    Throughput,
    Footprint,
    Floor,
}

impl Section {
    pub fn title(self) -> &'static str {
        match self {
            Section::Start => {
                "1. start latency: `run` of /bin/true, wall time of the runtime command"
            }
            Section::Lifecycle => "2. lifecycle commands, each timed alone (process: `sleep`)",
            Section::Sandbox => "3. sandbox start (phantom's own commands)",
            Section::Throughput => {
                "4. throughput: `run` of /bin/true (containers/s, higher is better)"
            }
            Section::Footprint => "5. footprint",
            Section::Floor => "6. the floor on this machine (no runtime)",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Row {
    /// Key in results.json and in promises.
    pub id: &'static str,
    pub section: Section,
    pub title: &'static str,
    /// Run by every runtime, phantom included.
    pub oci: Option<&'static str>,
    /// Run by phantom (as built and installed read-only) instead of `oci`;
    /// a row with only this is "n/a" for the other runtimes.
    pub phantom: Option<&'static str>,
    /// A plain command, no runtime: one contender named "host".
    pub host: Option<&'static str>,
    /// Not measurable yet: phantom's cells read "pending (REASON)".
    pub pending: Option<&'static str>,
    /// Only these runtimes (by name) run it; the others read "n/a".
    pub only: Option<&'static [&'static str]>,
}

/// The daemons a template may name as `{socket:NAME}` (main.rs starts them):
/// `forkserver` is `phantom daemon --pool python-dev=2..8 --python-pool python-dev=1`.
pub const SOCKETS: [&str; 1] = [FORKSERVER];
pub const FORKSERVER: &str = "forkserver";

pub const ROWS: &[Row] = &[
    Row {
        id: "run",
        section: Section::Start,
        title: "run, no network namespace",
        oci: Some("run --bundle {bundle:plain} {id}"),
        phantom: None,
        host: None,
        pending: None,
        only: None,
    },
    Row {
        id: "run-netns",
        section: Section::Start,
        title: "run, with a network namespace",
        oci: Some("run --bundle {bundle:netns} {id}"),
        phantom: None,
        host: None,
        pending: None,
        only: None,
    },
    Row {
        id: "run-seccomp",
        section: Section::Start,
        title: "run, no netns, Podman's seccomp profile",
        oci: Some("run --bundle {bundle:seccomp} {id}"),
        phantom: None,
        host: None,
        pending: None,
        only: None,
    },
    Row {
        id: "sandbox-minimal-cold",
        section: Section::Sandbox,
        title: "run --profile minimal -- /bin/true, cold",
        oci: None,
        // minimal mounts nothing of the host: the static busybox `true` of
        // the shared test rootfs (bundles/../base) is given as the workspace.
        phantom: Some(
            "run --profile minimal --workspace {bundle:plain}/../base/rootfs/bin -- /workspace/true",
        ),
        host: None,
        pending: None,
        only: None,
    },
    Row {
        id: "sandbox-python-cold",
        section: Section::Sandbox,
        title: "run --profile python-dev -- python3 -c pass, cold",
        oci: None,
        phantom: Some("run --no-daemon --profile python-dev -- python3 -c pass"),
        host: None,
        pending: None,
        only: None,
    },
    Row {
        id: "sandbox-true-cold",
        section: Section::Sandbox,
        title: "run --profile python-dev -- /bin/true, cold",
        oci: None,
        phantom: Some("run --no-daemon --profile python-dev -- /bin/true"),
        host: None,
        pending: None,
        only: None,
    },
    // Egress (docs/egress.md): what its netns, veth, nft element and proxy
    // cost a cold start, against the same profile with no network.
    Row {
        id: "sandbox-true-cold-none",
        section: Section::Sandbox,
        title: "run --profile egress-bench --network none -- /bin/true, cold",
        oci: None,
        phantom: Some(
            "run --no-daemon --profile-path {bundle:egress-profiles} --profile egress-bench \
             --network none -- /bin/true",
        ),
        host: None,
        pending: None,
        only: None,
    },
    Row {
        id: "sandbox-true-cold-egress",
        section: Section::Sandbox,
        title: "run --profile egress-bench --network egress --allow example.com -- /bin/true, cold",
        oci: None,
        phantom: Some(
            "run --no-daemon --profile-path {bundle:egress-profiles} --profile egress-bench \
             --network egress --allow example.com -- /bin/true",
        ),
        host: None,
        pending: None,
        only: None,
    },
    // The warm rows: the bench runs `phantom daemon --pool python-dev=2..8`
    // (main.rs); a run falls back cold when no zygote is ready.
    Row {
        id: "sandbox-true-daemon",
        section: Section::Sandbox,
        title: "run --profile python-dev -- /bin/true, through the daemon (warm)",
        oci: None,
        phantom: Some("run --profile python-dev -- /bin/true"),
        host: None,
        pending: None,
        only: None,
    },
    Row {
        id: "sandbox-python-daemon",
        section: Section::Sandbox,
        title: "run --profile python-dev -- python3 -c pass, through the daemon (warm)",
        oci: None,
        phantom: Some("run --profile python-dev -- python3 -c pass"),
        host: None,
        pending: None,
        only: None,
    },
    // The fork server: a pre-started interpreter in a zygote, forked per
    // request. Its own daemon (main.rs), started only when `phantom daemon
    // --help` lists --python-pool; else the row reads "unavailable".
    Row {
        id: "sandbox-python-forkserver",
        section: Section::Sandbox,
        title: "run --profile python-dev -- python3 -c pass, warm fork server",
        oci: None,
        phantom: Some(
            "run --profile python-dev --daemon-socket {socket:forkserver} -- python3 -c pass",
        ),
        host: None,
        pending: None,
        only: None,
    },
    // The same programs in the config.json `phantom spec --profile
    // python-dev` prints, as a plain OCI bundle: what crun makes of it.
    Row {
        id: "sandbox-true-crun",
        section: Section::Sandbox,
        title: "python-dev's config.json as a bundle, /bin/true (crun run)",
        oci: Some("run --bundle {bundle:pydev-true} {id}"),
        phantom: None,
        host: None,
        pending: None,
        only: Some(&["crun"]),
    },
    Row {
        id: "sandbox-python-crun",
        section: Section::Sandbox,
        title: "python-dev's config.json as a bundle, python3 -c pass (crun run)",
        oci: Some("run --bundle {bundle:pydev-python} {id}"),
        phantom: None,
        host: None,
        pending: None,
        only: Some(&["crun"]),
    },
    Row {
        id: "floor-exec",
        section: Section::Floor,
        title: "fork+exec of /bin/true",
        oci: None,
        phantom: None,
        host: Some("/bin/true"),
        pending: None,
        only: None,
    },
    Row {
        id: "floor-python",
        section: Section::Floor,
        title: "python3 -c pass, bare (no sandbox)",
        oci: None,
        phantom: None,
        host: Some("/usr/bin/python3 -c pass"),
        pending: None,
        only: None,
    },
    Row {
        id: "floor-unshare",
        section: Section::Floor,
        title: "unshare --fork --pid --ipc --uts --mount /bin/true",
        oci: None,
        phantom: None,
        host: Some("unshare --fork --pid --ipc --uts --mount /bin/true"),
        pending: None,
        only: None,
    },
    Row {
        id: "floor-unshare-net",
        section: Section::Floor,
        title: "unshare --fork --pid --ipc --uts --mount --net /bin/true",
        oci: None,
        phantom: None,
        host: Some("unshare --fork --pid --ipc --uts --mount --net /bin/true"),
        pending: None,
        only: None,
    },
];

/// What one contender does for one row.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Arguments after `RUNTIME --root ROOT` (still templated).
    Runtime(&'static str),
    NotApplicable,
    Pending(&'static str),
}

impl Row {
    /// The plan for a runtime (`is_phantom` picks phantom's template).
    pub fn plan_for_runtime(&self, name: &str, is_phantom: bool) -> Plan {
        if self.only.is_some_and(|o| !o.contains(&name)) {
            return Plan::NotApplicable;
        }
        let template = if is_phantom {
            self.phantom.or(self.oci)
        } else {
            self.oci
        };
        match (template, self.pending) {
            (None, _) => Plan::NotApplicable,
            (Some(_), Some(why)) => Plan::Pending(why),
            (Some(t), None) => Plan::Runtime(t),
        }
    }
}

/// Expand a template into argv: `resolve(KIND, NAME)` gives the path of
/// `{bundle:NAME}` (KIND "bundle") or `{socket:NAME}` (KIND "socket").
pub fn expand(
    template: &str,
    id: &str,
    resolve: impl Fn(&str, &str) -> Option<String>,
) -> Vec<String> {
    template
        .split_whitespace()
        .map(|tok| {
            if tok == "{id}" {
                return id.to_string();
            }
            for kind in ["bundle", "socket"] {
                if let Some((name, rest)) = tok
                    .strip_prefix('{')
                    .and_then(|r| r.strip_prefix(kind))
                    .and_then(|r| r.strip_prefix(':'))
                    .and_then(|r| r.split_once('}'))
                {
                    // `{bundle:NAME}/sub/path` is a path inside the bundle.
                    // Unknown names are caught by the row-table test.
                    return match resolve(kind, name) {
                        Some(b) => format!("{b}{rest}"),
                        None => tok.to_string(),
                    };
                }
            }
            tok.to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_is_well_formed() {
        let mut ids = std::collections::HashSet::new();
        for r in ROWS {
            assert!(ids.insert(r.id), "duplicate row id {}", r.id);
            assert!(
                r.host.is_some() != (r.oci.is_some() || r.phantom.is_some()),
                "{}: a row is either a host command or runtime commands",
                r.id
            );
            for t in [r.oci, r.phantom, r.host].into_iter().flatten() {
                for tok in t.split_whitespace() {
                    if let Some(b) = tok.strip_prefix("{bundle:") {
                        let name = b.split('}').next().unwrap_or(b);
                        assert!(
                            crate::bundles::NAMES.contains(&name),
                            "{}: unknown bundle {name}",
                            r.id
                        );
                    } else if let Some(b) = tok.strip_prefix("{socket:") {
                        let name = b.split('}').next().unwrap_or(b);
                        assert!(SOCKETS.contains(&name), "{}: unknown socket {name}", r.id);
                    } else {
                        assert!(
                            !tok.contains('{') || tok == "{id}",
                            "{}: unknown placeholder {tok}",
                            r.id
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn plans_and_expansion() {
        let run = &ROWS[0];
        assert_eq!(
            run.plan_for_runtime("runc", false),
            Plan::Runtime("run --bundle {bundle:plain} {id}")
        );
        let sandbox = ROWS
            .iter()
            .find(|r| r.id == "sandbox-minimal-cold")
            .unwrap();
        assert_eq!(sandbox.plan_for_runtime("crun", false), Plan::NotApplicable);
        assert!(matches!(
            sandbox.plan_for_runtime("phantom", true),
            Plan::Runtime(_)
        ));
        let warm = ROWS.iter().find(|r| r.id == "sandbox-true-daemon").unwrap();
        assert!(matches!(
            warm.plan_for_runtime("phantom", true),
            Plan::Runtime(_)
        ));
        let crun_only = ROWS.iter().find(|r| r.id == "sandbox-true-crun").unwrap();
        assert!(matches!(
            crun_only.plan_for_runtime("crun", false),
            Plan::Runtime(_)
        ));
        for (name, is_phantom) in [("runc", false), ("phantom", true)] {
            assert_eq!(
                crun_only.plan_for_runtime(name, is_phantom),
                Plan::NotApplicable
            );
        }
        let resolve = |k: &str, n: &str| Some(format!("/{k}/{n}"));
        let argv = expand("run --bundle {bundle:plain} {id}", "c1", resolve);
        assert_eq!(argv, ["run", "--bundle", "/bundle/plain", "c1"]);
        let argv = expand("--workspace {bundle:plain}/rootfs/bin", "c1", resolve);
        assert_eq!(argv, ["--workspace", "/bundle/plain/rootfs/bin"]);
        let argv = expand("--daemon-socket {socket:forkserver} --", "c1", resolve);
        assert_eq!(argv, ["--daemon-socket", "/socket/forkserver", "--"]);
    }
}

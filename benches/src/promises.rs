//! phantom's numeric promises (docs/SPECIFICATION.md) checked against one
//! run's medians. A test keeps this list and the spec's table in step.

use serde::Serialize;

use crate::report::{Figure, Status};
use crate::runtimes::{Runtime, REFERENCE};

/// The phantom the promises are about (SPECIFICATION.md): as built and
/// installed the usual way, on a writable mount, where the CVE-2019-5736
/// guard re-executes it once. The read-only install's ratio is printed for
/// comparison.
pub const BINDING: &str = "phantom";

#[derive(Debug, Clone, Copy)]
pub enum Base {
    /// crun's median in the same figure.
    Reference,
    /// crun's median in another figure (the same work as crun's own
    /// command, e.g. a sandbox's config run as a plain bundle).
    ReferenceIn(&'static str),
    /// The host's median in a floor figure.
    Floor(&'static str),
    /// The same phantom's median in another figure (an entry point against
    /// the warm CLI).
    Own(&'static str),
    /// A value in its own unit (ms, %): the "ratio" is phantom's median.
    Absolute(&'static str),
}

pub struct Promise {
    pub id: &'static str,
    pub what: &'static str,
    /// The figure phantom's median comes from.
    pub figure: &'static str,
    pub base: Base,
    pub bound: f64,
    /// A floor (throughput, a share): holds when the ratio is at least
    /// `bound`; else a ceiling.
    pub at_least: bool,
    /// The bound exactly as SPECIFICATION.md writes it.
    pub spec: &'static str,
    pub pending: Option<&'static str>,
}

pub const PROMISES: &[Promise] = &[
    Promise {
        id: "P1",
        what: "cold run, no netns",
        figure: "run",
        base: Base::Reference,
        bound: 0.5,
        at_least: false,
        spec: "≤ 0.5× crun",
        pending: None,
    },
    Promise {
        id: "P1",
        what: "cold run, with netns",
        figure: "run-netns",
        base: Base::Reference,
        bound: 0.5,
        at_least: false,
        spec: "≤ 0.5× crun",
        pending: None,
    },
    Promise {
        id: "P2",
        what: "run with Podman's seccomp profile",
        figure: "run-seccomp",
        base: Base::Reference,
        bound: 0.3,
        at_least: false,
        spec: "≤ 0.3× crun",
        pending: None,
    },
    Promise {
        id: "P3",
        what: "warm start through the daemon",
        figure: "sandbox-true-daemon",
        base: Base::Floor("floor-exec"),
        bound: 3.0,
        at_least: false,
        spec: "≤ 3× the fork+exec floor",
        pending: None,
    },
    Promise {
        id: "P4",
        what: "cold sandbox against crun running its config",
        figure: "sandbox-true-cold",
        base: Base::ReferenceIn("sandbox-true-crun"),
        bound: 1.0,
        at_least: false,
        spec: "≤ 1.0× `crun run` of the same config",
        pending: None,
    },
    Promise {
        id: "P5",
        what: "warm share, 200 back-to-back runs from one client",
        figure: "warm-share-seq",
        base: Base::Absolute("%"),
        bound: 95.0,
        at_least: true,
        spec: "≥ 95% served warm",
        pending: None,
    },
    Promise {
        id: "P5",
        what: "warm share, 200 runs from 4 clients at once",
        figure: "warm-share-par4",
        base: Base::Absolute("%"),
        bound: 95.0,
        at_least: true,
        spec: "≥ 95% served warm",
        pending: None,
    },
    Promise {
        id: "P5",
        what: "warm sandboxes/s from one client against crun's runs/s",
        figure: "throughput-warm-seq",
        base: Base::Reference,
        bound: 2.0,
        at_least: true,
        spec: "≥ 2× crun's `run` throughput",
        pending: None,
    },
    Promise {
        id: "P5",
        what: "warm sandboxes/s from 4 clients against crun's runs/s",
        figure: "throughput-warm-par4",
        base: Base::Reference,
        bound: 2.0,
        at_least: true,
        spec: "≥ 2× crun's `run` throughput",
        pending: None,
    },
    Promise {
        id: "P6",
        what: "REST run through the daemon, kept-alive connection",
        figure: crate::agents::REST,
        base: Base::Own("sandbox-true-daemon"),
        bound: 2.0,
        at_least: false,
        spec: "≤ 2× the warm CLI row",
        pending: None,
    },
    Promise {
        id: "P6",
        what: "MCP run_code print(1) over stdio, daemon up",
        figure: crate::agents::MCP,
        base: Base::Absolute("ms"),
        bound: 10.0,
        at_least: false,
        spec: "≤ 10 ms",
        pending: None,
    },
];

#[derive(Debug, Serialize)]
pub struct Verdict {
    pub id: &'static str,
    pub what: &'static str,
    pub figure: &'static str,
    pub bound: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<String>,
    /// [`BINDING`]'s verdict; `None` when pending or not measured.
    pub holds: Option<bool>,
    /// Every phantom measured, [`BINDING`] included.
    pub results: Vec<RuntimeVerdict>,
}

#[derive(Debug, Serialize)]
pub struct RuntimeVerdict {
    pub runtime: String,
    pub ratio: Option<f64>,
    pub holds: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

pub fn evaluate(figures: &[Figure], runtimes: &[Runtime]) -> Vec<Verdict> {
    let find = |id: &str| figures.iter().find(|f| f.id == id);
    PROMISES
        .iter()
        .map(|p| {
            let mut v = Verdict {
                id: p.id,
                what: p.what,
                figure: p.figure,
                bound: p.spec,
                pending: p.pending.map(String::from),
                holds: None,
                results: Vec::new(),
            };
            if p.pending.is_some() {
                return v;
            }
            let fig = find(p.figure);
            let base = match p.base {
                Base::Reference => fig.and_then(|f| f.median(REFERENCE)),
                Base::ReferenceIn(id) => find(id).and_then(|f| f.median(REFERENCE)),
                // Per runtime below.
                Base::Own(_) => None,
                Base::Absolute(_) => Some(1.0),
                Base::Floor(id) => find(id).and_then(|f| f.median("host")),
            };
            for rt in runtimes.iter().filter(|r| r.is_phantom) {
                let cell = fig.and_then(|f| f.cell(&rt.name));
                let mine = fig.and_then(|f| f.median(&rt.name));
                let base = match p.base {
                    Base::Own(id) => find(id).and_then(|f| f.median(&rt.name)),
                    _ => base,
                };
                let (ratio, note) = match (mine, base, cell) {
                    (_, _, Some(c)) if c.status == Status::Pending => (
                        None,
                        Some(format!("pending ({})", c.note.as_deref().unwrap_or(""))),
                    ),
                    (Some(m), Some(b), _) if b > 0.0 => (Some(m / b), None),
                    (None, _, _) => (None, Some("not measured".into())),
                    _ => (None, Some("no baseline measured".into())),
                };
                let holds = ratio.map(|r| {
                    if p.at_least {
                        r >= p.bound
                    } else {
                        r <= p.bound
                    }
                });
                if rt.name == BINDING {
                    v.holds = holds;
                }
                v.results.push(RuntimeVerdict {
                    runtime: rt.name.clone(),
                    ratio,
                    holds,
                    note,
                });
            }
            v
        })
        .collect()
}

pub fn lines(verdicts: &[Verdict]) -> String {
    let mut out = String::new();
    for v in verdicts {
        let head = format!("{} {} ({}):", v.id, v.what, v.bound);
        let unit = PROMISES.iter().find_map(|p| match p.base {
            Base::Absolute(u) if p.figure == v.figure => Some(u),
            _ => None,
        });
        let ratio = |r: &RuntimeVerdict| match (r.ratio, unit) {
            (Some(x), Some("%")) => format!("{x:.1}%"),
            (Some(x), Some(u)) => format!("{x:.2} {u}"),
            (Some(x), None) => format!("{x:.2}×"),
            (None, _) => r.note.clone().unwrap_or_default(),
        };
        let body = match &v.pending {
            Some(why) => format!("pending ({why})"),
            None => {
                let binding = v.results.iter().find(|r| r.runtime == BINDING);
                let verdict = match v.holds {
                    Some(true) => "holds",
                    Some(false) => "DOES NOT HOLD",
                    None => "not measured",
                };
                let others: Vec<String> = v
                    .results
                    .iter()
                    .filter(|r| r.runtime != BINDING)
                    .map(|r| format!("{} {}", r.runtime, ratio(r)))
                    .collect();
                format!(
                    "{BINDING} {}: {verdict}{}",
                    binding.map(ratio).unwrap_or_default(),
                    if others.is_empty() {
                        String::new()
                    } else {
                        format!(" (for comparison: {})", others.join(", "))
                    }
                )
            }
        };
        out.push_str(&format!("- {head} {body}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_is_the_as_built_install() {
        use crate::report::{Cell, Unit};
        use crate::rows::Section;
        let cell = |rt: &str, v: f64| {
            let mut c = Cell::new(rt, Status::Ok, None);
            c.samples = vec![v];
            c
        };
        let mut f = Figure::new(
            "run-seccomp",
            Section::Start,
            "t",
            Unit::Ms,
            vec![
                cell(BINDING, 5.0),
                cell("phantom (ro)", 8.0),
                cell(REFERENCE, 20.0),
            ],
        );
        f.finish();
        let rts = [
            Runtime::new(
                "phantom (ro)",
                std::path::Path::new("/bin/true"),
                "/r".into(),
                true,
                "",
            ),
            Runtime::new(
                BINDING,
                std::path::Path::new("/bin/true"),
                "/r".into(),
                true,
                "",
            ),
        ];
        let v = evaluate(&[f], &rts);
        let p2 = v.iter().find(|v| v.id == "P2").unwrap();
        assert_eq!(p2.holds, Some(true));
        let text = lines(&v);
        assert!(
            text.contains("P2 run with Podman's seccomp profile (≤ 0.3× crun): phantom 0.25×: holds (for comparison: phantom (ro) 0.40×)"),
            "{text}"
        );
        assert!(text.contains("P3 warm start through the daemon (≤ 3× the fork+exec floor)"));
    }

    /// Every promise checked here is stated in docs/SPECIFICATION.md's
    /// table with the same bound and figure, and the other way round.
    #[test]
    fn specification_states_the_same_promises() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/SPECIFICATION.md");
        let spec = std::fs::read_to_string(path).expect("docs/SPECIFICATION.md");
        for p in PROMISES {
            let row = spec
                .lines()
                .find(|l| l.starts_with(&format!("| {} |", p.id)))
                .unwrap_or_else(|| panic!("SPECIFICATION.md has no row for {}", p.id));
            assert!(
                row.contains(p.spec),
                "{}: bound {:?} not in {row:?}",
                p.id,
                p.spec
            );
            assert!(
                row.contains(&format!("`{}`", p.figure)),
                "{}: figure `{}` not in {row:?}",
                p.id,
                p.figure
            );
            assert_eq!(
                p.pending.is_some(),
                row.contains("pending"),
                "{}: pending differs from the spec: {row:?}",
                p.id
            );
        }
        for l in spec.lines().filter(|l| l.starts_with("| P")) {
            let id = l.split('|').nth(1).unwrap().trim();
            assert!(
                PROMISES.iter().any(|p| p.id == id),
                "SPECIFICATION.md states {id}, which make bench does not check"
            );
        }
        for p in PROMISES {
            let known = crate::rows::ROWS.iter().any(|r| r.id == p.figure)
                || crate::agents::FIGURES.contains(&p.figure)
                || crate::measure::WARM_FIGURES.contains(&p.figure);
            assert!(known, "{}: no row {}", p.id, p.figure);
            match p.base {
                Base::Floor(f) => assert!(crate::rows::ROWS
                    .iter()
                    .any(|r| r.id == f && r.host.is_some())),
                Base::ReferenceIn(f) => assert!(crate::rows::ROWS
                    .iter()
                    .any(|r| r.id == f && r.oci.is_some())),
                Base::Own(f) => assert!(crate::rows::ROWS
                    .iter()
                    .any(|r| r.id == f && r.phantom.is_some())),
                Base::Reference | Base::Absolute(_) => {}
            }
        }
    }
}

//! Figures (one measured quantity, one cell per contender) and their
//! rendering as a markdown table.

use serde::{Deserialize, Serialize};

use crate::rows::Section;
use crate::runtimes::REFERENCE;
use crate::stats::{summarize, Summary};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Ms,
    /// Microseconds, for in-process kernel operations.
    Us,
    MiB,
    PerSec,
    Percent,
}

impl Unit {
    pub fn format(self, v: f64) -> String {
        match self {
            Unit::Ms => format!("{} ms", sig(v)),
            Unit::Us => format!("{} µs", sig(v)),
            Unit::MiB => format!("{:.1} MiB", v),
            Unit::PerSec => format!("{:.1}/s", v),
            Unit::Percent => format!("{:.1}%", v),
        }
    }

    /// Just the number, for "min–max".
    pub fn number(self, v: f64) -> String {
        match self {
            Unit::Ms | Unit::Us => sig(v),
            Unit::MiB | Unit::PerSec | Unit::Percent => format!("{v:.1}"),
        }
    }
}

/// Three significant digits for times.
fn sig(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Failed,
    Pending,
    Unavailable,
    NotApplicable,
}

/// A cell stops measuring after this many failed commands.
pub const MAX_FAILURES: usize = 3;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cell {
    pub runtime: String,
    pub status: Status,
    /// First error, or the pending / unavailable reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
    /// median / crun's median in the same figure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_to_crun: Option<f64>,
    /// Commands that failed (a cell stops at [`MAX_FAILURES`]).
    #[serde(default)]
    pub failures: usize,
    /// Commands that hung on a lost SIGCHLD and were nudged: samples dropped.
    #[serde(default)]
    pub hangs: usize,
    pub samples: Vec<f64>,
}

impl Cell {
    pub fn new(runtime: &str, status: Status, note: Option<String>) -> Cell {
        Cell {
            runtime: runtime.to_string(),
            status,
            note,
            summary: None,
            ratio_to_crun: None,
            failures: 0,
            hangs: 0,
            samples: Vec::new(),
        }
    }

    /// One failed command: remembered, and after [`MAX_FAILURES`] the cell
    /// stops measuring.
    pub fn fail(&mut self, error: String) {
        if self.status != Status::Ok {
            return;
        }
        self.failures += 1;
        if self.note.is_none() {
            self.note = Some(error);
        }
        if self.failures >= MAX_FAILURES {
            self.status = Status::Failed;
        }
    }

    /// Give up on this cell now (a step it depends on failed).
    pub fn stop(&mut self, why: String) {
        if self.status == Status::Ok {
            self.status = Status::Failed;
            if self.note.is_none() {
                self.note = Some(why);
            }
        }
    }

    /// Still measuring.
    pub fn is_ok(&self) -> bool {
        self.status == Status::Ok
    }

    /// Finished with a usable summary.
    pub fn measured(&self) -> bool {
        self.status == Status::Ok && self.summary.is_some()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Figure {
    pub id: String,
    pub section: Section,
    pub title: String,
    pub unit: Unit,
    pub cells: Vec<Cell>,
}

impl Figure {
    pub fn new(id: &str, section: Section, title: &str, unit: Unit, cells: Vec<Cell>) -> Figure {
        Figure {
            id: id.to_string(),
            section,
            title: title.to_string(),
            unit,
            cells,
        }
    }

    pub fn cell(&self, runtime: &str) -> Option<&Cell> {
        self.cells.iter().find(|c| c.runtime == runtime)
    }

    /// Summaries and ratios once all samples are in. A cell that measured
    /// nothing (interrupted, or no iterations) is a failure.
    pub fn finish(&mut self) {
        for c in &mut self.cells {
            if c.status == Status::Ok || c.status == Status::Failed {
                c.summary = summarize(&c.samples);
                if c.summary.is_none() {
                    c.stop("no samples".into());
                }
            }
        }
        let reference = self
            .cell(REFERENCE)
            .filter(|c| c.measured())
            .and_then(|c| c.summary)
            .map(|s| s.median);
        for c in &mut self.cells {
            c.ratio_to_crun = match (reference, c.summary) {
                (Some(r), Some(s)) if c.measured() && r > 0.0 => Some(s.median / r),
                _ => None,
            };
        }
    }

    pub fn median(&self, runtime: &str) -> Option<f64> {
        self.cell(runtime)
            .filter(|c| c.measured())
            .and_then(|c| c.summary)
            .map(|s| s.median)
    }
}

/// The whole table: a separator row per section, the figure's name on its
/// first contender's row; failures and hangs of cells that still measured
/// are footnotes.
pub fn markdown(figures: &[Figure]) -> String {
    let mut out = String::new();
    let mut notes: Vec<String> = Vec::new();
    out.push_str("| figure | runtime | median | p95 | p99 | min–max | × crun |\n");
    out.push_str("|---|---|--:|--:|--:|--:|--:|\n");
    let mut section = None;
    for f in figures {
        if section != Some(f.section) {
            section = Some(f.section);
            out.push_str(&format!("| **{}** | | | | | | |\n", f.section.title()));
        }
        for (i, c) in f.cells.iter().enumerate() {
            let name = if i == 0 { f.title.as_str() } else { "" };
            let cols = match (c.status, c.summary) {
                (Status::Ok, Some(s)) if s.n == 1 => {
                    [f.unit.format(s.median), "—".into(), "—".into(), "—".into()]
                }
                (Status::Ok, Some(s)) => [
                    f.unit.format(s.median),
                    f.unit.format(s.p95),
                    f.unit.format(s.p99),
                    format!("{}–{}", f.unit.number(s.min), f.unit.number(s.max)),
                ],
                (status, _) => {
                    let first = match status {
                        Status::Pending => {
                            format!("pending ({})", c.note.as_deref().unwrap_or(""))
                        }
                        Status::NotApplicable => "n/a".into(),
                        Status::Unavailable => {
                            format!("unavailable: {}", c.note.as_deref().unwrap_or(""))
                        }
                        _ => format!("**failed**: {}", c.note.as_deref().unwrap_or("")),
                    };
                    [first, String::new(), String::new(), String::new()]
                }
            };
            let ratio = c
                .ratio_to_crun
                .map_or_else(|| "—".to_string(), |r| format!("{r:.2}"));
            let mut runtime = c.runtime.clone();
            if c.status == Status::Ok && (c.failures > 0 || c.hangs > 0) {
                let mut what = Vec::new();
                if c.failures > 0 {
                    what.push(format!(
                        "{} command(s) failed, first: {}",
                        c.failures,
                        c.note.as_deref().unwrap_or("")
                    ));
                }
                if c.hangs > 0 {
                    what.push(format!(
                        "{} command(s) hung waiting on an exited child (a lost SIGCHLD) until the bench \
                         sent SIGCHLD; left out of the samples",
                        c.hangs
                    ));
                }
                notes.push(format!("{} / {}: {}", f.id, c.runtime, what.join("; ")));
                runtime = format!("{runtime} [{}]", notes.len());
            }
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                cell_text(name),
                cell_text(&runtime),
                cell_text(&cols[0]),
                cols[1],
                cols[2],
                cols[3],
                ratio
            ));
        }
    }
    if !notes.is_empty() {
        out.push('\n');
        for (i, n) in notes.iter().enumerate() {
            out.push_str(&format!("[{}] {}\n", i + 1, n.replace('\n', " ")));
        }
    }
    out
}

/// The columns of [`warm_vs_cold`]: key in results.json, heading, and the
/// figure of each program (`true`, `python`); `None`: not measured.
const WARM_COLUMNS: [(&str, &str, [Option<&str>; 2]); 4] = [
    (
        "warm",
        "warm: daemon pool",
        [Some("sandbox-true-daemon"), Some("sandbox-python-daemon")],
    ),
    (
        "forkserver",
        "warm: fork server",
        [None, Some("sandbox-python-forkserver")],
    ),
    (
        "cold",
        "cold: --no-daemon",
        [Some("sandbox-true-cold"), Some("sandbox-python-cold")],
    ),
    (
        "crun",
        "crun run, python-dev bundle",
        [Some("sandbox-true-crun"), Some("sandbox-python-crun")],
    ),
];

/// phantom's cells in the warm-vs-cold table: phantom as built (what the
/// promises bind), else the read-only install.
const WARM_PHANTOMS: [&str; 2] = ["phantom", "phantom (ro)"];

/// `phantom run --profile python-dev` of `/bin/true` and `python3 -c pass`
/// warm, cold and under crun side by side, p50 / p95 / p99: a markdown
/// table and its results.json object. Empty when none of it was measured.
pub fn warm_vs_cold(figures: &[Figure]) -> (String, serde_json::Value) {
    let find = |id: &str| figures.iter().find(|f| f.id == id);
    let mut json = serde_json::Map::new();
    let mut md = String::new();
    let mut any = false;
    let mut rows = String::new();
    for (pi, (key, program)) in [("true", "/bin/true"), ("python", "python3 -c pass")]
        .into_iter()
        .enumerate()
    {
        // The crun cell is the baseline of the ratios.
        let crun = WARM_COLUMNS[3].2[pi]
            .and_then(find)
            .and_then(|f| f.median(REFERENCE));
        let mut obj = serde_json::Map::new();
        let mut line = format!("| {program} |");
        for (col, _, ids) in WARM_COLUMNS {
            let Some(id) = ids[pi] else {
                line.push_str(" n/a |");
                continue;
            };
            let Some(fig) = find(id) else {
                line.push_str(" not measured |");
                continue;
            };
            let names: &[&str] = if col == "crun" {
                &[REFERENCE]
            } else {
                &WARM_PHANTOMS
            };
            let cell = names
                .iter()
                .filter_map(|n| fig.cell(n))
                .find(|c| c.measured())
                .or_else(|| names.iter().find_map(|n| fig.cell(n)));
            match cell.and_then(|c| c.summary.filter(|_| c.measured()).map(|s| (c, s))) {
                Some((c, s)) => {
                    any = true;
                    let ratio = crun.filter(|r| *r > 0.0).map(|r| s.median / r);
                    line.push_str(&format!(
                        " {} / {} / {}{} |",
                        fig.unit.number(s.median),
                        fig.unit.number(s.p95),
                        fig.unit.number(s.p99),
                        ratio.map_or(String::new(), |r| format!(" ({r:.2}×)"))
                    ));
                    obj.insert(
                        col.into(),
                        serde_json::json!({
                            "figure": fig.id, "runtime": c.runtime, "n": s.n,
                            "p50": s.median, "p95": s.p95, "p99": s.p99,
                            "ratio_to_crun": ratio,
                        }),
                    );
                }
                None => {
                    let why = match cell {
                        Some(c) if c.status == Status::NotApplicable => "n/a".to_string(),
                        Some(c) => {
                            let status = match c.status {
                                Status::Pending => "pending",
                                Status::Unavailable => "unavailable",
                                _ => "failed",
                            };
                            format!("{status}: {}", c.note.as_deref().unwrap_or("no samples"))
                        }
                        None => "not measured".into(),
                    };
                    line.push_str(&format!(" {} |", cell_text(&why)));
                    obj.insert(
                        col.into(),
                        serde_json::json!({"figure": fig.id, "note": why}),
                    );
                }
            }
        }
        rows.push_str(&line);
        rows.push('\n');
        json.insert(key.into(), serde_json::Value::Object(obj));
    }
    if !any {
        return (String::new(), serde_json::Value::Null);
    }
    md.push_str(
        "Warm vs cold vs crun: `phantom run --profile python-dev -- PROGRAM` \
         (phantom (ro)), p50 / p95 / p99 in ms, (× crun's p50):\n\n| program |",
    );
    for (_, heading, _) in WARM_COLUMNS {
        md.push_str(&format!(" {heading} |"));
    }
    md.push_str("\n|---|--:|--:|--:|--:|\n");
    md.push_str(&rows);
    md.push('\n');
    (md, serde_json::Value::Object(json))
}

/// Markdown table cells cannot hold `|` or newlines.
fn cell_text(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(rt: &str, samples: &[f64]) -> Cell {
        let mut c = Cell::new(rt, Status::Ok, None);
        c.samples = samples.to_vec();
        c
    }

    #[test]
    fn ratios_and_table() {
        let mut f = Figure::new(
            "run",
            Section::Start,
            "run",
            Unit::Ms,
            vec![
                ok("phantom", &[5.0, 6.0, 7.0]),
                ok("crun", &[20.0, 21.0, 22.0]),
                Cell::new("youki", Status::Unavailable, Some("a | b".into())),
                Cell::new("runc", Status::Ok, None),
            ],
        );
        f.finish();
        assert!((f.cells[0].ratio_to_crun.unwrap() - 6.0 / 21.0).abs() < 1e-9);
        assert_eq!(f.cells[1].ratio_to_crun, Some(1.0));
        assert_eq!(f.cells[3].status, Status::Failed);
        let md = markdown(&[f]);
        assert!(
            md.contains("| run | phantom | 6.00 ms | 6.90 ms | 6.98 ms | 5.00–7.00 | 0.29 |"),
            "{md}"
        );
        assert!(md.contains("unavailable: a \\| b"), "{md}");
        assert!(md.contains("**failed**: no samples"), "{md}");
    }

    #[test]
    fn warm_vs_cold_table() {
        let mut figs = vec![
            Figure::new(
                "sandbox-true-daemon",
                Section::Sandbox,
                "t",
                Unit::Ms,
                vec![ok("phantom (ro)", &[9.0]), ok("phantom", &[2.0, 3.0, 4.0])],
            ),
            Figure::new(
                "sandbox-true-crun",
                Section::Sandbox,
                "t",
                Unit::Ms,
                vec![
                    Cell::new("phantom", Status::NotApplicable, None),
                    ok("crun", &[10.0, 12.0, 14.0]),
                ],
            ),
            Figure::new(
                "sandbox-python-forkserver",
                Section::Sandbox,
                "t",
                Unit::Ms,
                vec![Cell::new(
                    "phantom",
                    Status::Unavailable,
                    Some("no --python-pool".into()),
                )],
            ),
        ];
        for f in &mut figs {
            f.finish();
        }
        let (md, json) = warm_vs_cold(&figs);
        assert!(
            md.contains("| /bin/true | 3.00 / 3.90 / 3.98 (0.25×) | n/a | not measured | 12.0 / 13.8 / 14.0 (1.00×) |"),
            "{md}"
        );
        assert!(md.contains("unavailable: no --python-pool"), "{md}");
        assert_eq!(json["true"]["warm"]["runtime"], "phantom");
        assert_eq!(json["true"]["crun"]["p50"], 12.0);
    }
}

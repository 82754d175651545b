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
    MiB,
    PerSec,
}

impl Unit {
    pub fn format(self, v: f64) -> String {
        match self {
            Unit::Ms => format!("{} ms", sig(v)),
            Unit::MiB => format!("{:.1} MiB", v),
            Unit::PerSec => format!("{:.1}/s", v),
        }
    }

    /// Just the number, for "min–max".
    pub fn number(self, v: f64) -> String {
        match self {
            Unit::Ms => sig(v),
            Unit::MiB | Unit::PerSec => format!("{v:.1}"),
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
    out.push_str("| figure | runtime | median | p95 | min–max | × crun |\n");
    out.push_str("|---|---|--:|--:|--:|--:|\n");
    let mut section = None;
    for f in figures {
        if section != Some(f.section) {
            section = Some(f.section);
            out.push_str(&format!("| **{}** | | | | | |\n", f.section.title()));
        }
        for (i, c) in f.cells.iter().enumerate() {
            let name = if i == 0 { f.title.as_str() } else { "" };
            let cols = match (c.status, c.summary) {
                (Status::Ok, Some(s)) if s.n == 1 => {
                    [f.unit.format(s.median), "—".into(), "—".into()]
                }
                (Status::Ok, Some(s)) => [
                    f.unit.format(s.median),
                    f.unit.format(s.p95),
                    format!("{}–{}", f.unit.number(s.min), f.unit.number(s.max)),
                ],
                (Status::Pending, _) => [
                    format!("pending ({})", c.note.as_deref().unwrap_or("")),
                    String::new(),
                    String::new(),
                ],
                (Status::NotApplicable, _) => ["n/a".into(), String::new(), String::new()],
                (Status::Unavailable, _) => [
                    format!("unavailable: {}", c.note.as_deref().unwrap_or("")),
                    String::new(),
                    String::new(),
                ],
                _ => [
                    format!("**failed**: {}", c.note.as_deref().unwrap_or("")),
                    String::new(),
                    String::new(),
                ],
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
                "| {} | {} | {} | {} | {} | {} |\n",
                cell_text(name),
                cell_text(&runtime),
                cell_text(&cols[0]),
                cols[1],
                cols[2],
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
            md.contains("| run | phantom | 6.00 ms | 6.90 ms | 5.00–7.00 | 0.29 |"),
            "{md}"
        );
        assert!(md.contains("unavailable: a \\| b"), "{md}");
        assert!(md.contains("**failed**: no samples"), "{md}");
    }
}

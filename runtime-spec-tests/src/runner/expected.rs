//! `expected.tsv`: what each runtime is known to do, with the reason.
//!
//! ```text
//! check<TAB>runtime<TAB>expected<TAB>reason
//! lifecycle.delete.created<TAB>runc<TAB>fail<TAB>runc deletes created containers
//! config.process.apparmorProfile<TAB>*<TAB>skip<TAB>AppArmor is off here
//! ```
//!
//! `runtime` is a runtime name (`phantom`, `crun`, `runc`) or `*`; a row for
//! the runtime under test wins over a `*` row. A check with no row is
//! expected to pass. Every `fail` or `skip` row must give a reason.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// One row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expectation {
    pub result: String,
    pub reason: String,
    pub line: usize,
}

#[derive(Default, Debug)]
pub struct Expected {
    /// (check, runtime) -> expectation
    rows: BTreeMap<(String, String), Expectation>,
}

impl Expected {
    pub fn load(path: &Path) -> Result<Expected, String> {
        let text = fs::read_to_string(path).map_err(|e| format!("read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Expected, String> {
        let mut rows = BTreeMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            if raw.trim().is_empty() || raw.trim_start().starts_with('#') {
                continue;
            }
            let cols: Vec<&str> = raw.split('\t').collect();
            if cols.first() == Some(&"check") {
                continue; // header
            }
            if cols.len() < 3 {
                return Err(format!(
                    "line {line}: want check<TAB>runtime<TAB>expected<TAB>reason"
                ));
            }
            let (check, runtime, result) = (cols[0].trim(), cols[1].trim(), cols[2].trim());
            let reason = cols
                .get(3..)
                .map(|r| r.join(" "))
                .unwrap_or_default()
                .trim()
                .to_owned();
            if !matches!(result, "pass" | "fail" | "skip") {
                return Err(format!(
                    "line {line}: expected result {result:?} is not pass, fail or skip"
                ));
            }
            if result != "pass" && reason.is_empty() {
                return Err(format!(
                    "line {line}: expected {result} for {check} needs a reason"
                ));
            }
            let key = (check.to_owned(), runtime.to_owned());
            if rows.contains_key(&key) {
                return Err(format!(
                    "line {line}: duplicate row for {check} / {runtime}"
                ));
            }
            rows.insert(
                key,
                Expectation {
                    result: result.to_owned(),
                    reason,
                    line,
                },
            );
        }
        Ok(Expected { rows })
    }

    /// The expectation for `check` on `runtime` (pass when no row says).
    pub fn get(&self, check: &str, runtime: &str) -> Option<&Expectation> {
        self.rows
            .get(&(check.to_owned(), runtime.to_owned()))
            .or_else(|| self.rows.get(&(check.to_owned(), "*".to_owned())))
    }

    /// Rows naming checks that do not exist (stale entries).
    pub fn unknown_checks<'a>(&'a self, known: &[String]) -> Vec<(&'a str, usize)> {
        self.rows
            .iter()
            .filter(|((c, _), _)| !known.iter().any(|k| k == c))
            .map(|((c, _), e)| (c.as_str(), e.line))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_row_beats_star() {
        let e = Expected::parse(
            "check\truntime\texpected\treason\n# comment\n\
             a\t*\tskip\tmachine limit\na\trunc\tfail\trunc bug\nb\tcrun\tpass\t\n",
        )
        .unwrap();
        assert_eq!(e.get("a", "runc").unwrap().result, "fail");
        assert_eq!(e.get("a", "crun").unwrap().reason, "machine limit");
        assert_eq!(e.get("b", "crun").unwrap().result, "pass");
        assert!(e.get("c", "crun").is_none());
        assert_eq!(e.unknown_checks(&["a".to_owned()]), vec![("b", 5)]);
    }

    #[test]
    fn fail_needs_reason() {
        assert!(Expected::parse("a\t*\tfail\t\n").is_err());
        assert!(Expected::parse("a\t*\tmaybe\tx\n").is_err());
    }
}

//! The result of one check and its one-line wire format.
//!
//! The checker prints one line per check, which the runner parses:
//!
//! ```text
//! ok hostname
//! not ok process.env # RST_FOO: want "bar", got nothing
//! ok linux.resources.blockIO.weight # SKIP no blkio.weight file
//! ```

use std::fmt;

/// What one check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail(String),
    Skip(String),
}

impl Outcome {
    /// `Pass` if `ok`, else `Fail(reason())`.
    pub fn check(ok: bool, reason: impl FnOnce() -> String) -> Outcome {
        if ok {
            Outcome::Pass
        } else {
            Outcome::Fail(reason())
        }
    }

    /// `Pass` when `problems` is empty, else a failure listing them.
    pub fn from_problems(problems: Vec<String>) -> Outcome {
        if problems.is_empty() {
            Outcome::Pass
        } else {
            Outcome::Fail(problems.join("; "))
        }
    }

    /// The short word used in summaries and expected.tsv.
    pub fn word(&self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail(_) => "fail",
            Outcome::Skip(_) => "skip",
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Outcome::Pass => "",
            Outcome::Fail(r) | Outcome::Skip(r) => r,
        }
    }
}

/// Keeps a reason on one line.
pub fn one_line(s: &str) -> String {
    let s: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > 400 {
        let mut t: String = s.chars().take(400).collect();
        t.push_str("...");
        t
    } else {
        s
    }
}

/// One check's line in the checker's output.
pub struct Line<'a>(pub &'a str, pub &'a Outcome);

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Outcome::Pass => write!(f, "ok {}", self.0),
            Outcome::Fail(r) => write!(f, "not ok {} # {}", self.0, one_line(r)),
            Outcome::Skip(r) => write!(f, "ok {} # SKIP {}", self.0, one_line(r)),
        }
    }
}

/// Parses one line of checker output; other lines (runtime noise) give None.
pub fn parse_line(line: &str) -> Option<(String, Outcome)> {
    let line = line.trim_end_matches(['\r', '\n']);
    let (ok, rest) = if let Some(r) = line.strip_prefix("not ok ") {
        (false, r)
    } else if let Some(r) = line.strip_prefix("ok ") {
        (true, r)
    } else {
        return None;
    };
    let (name, comment) = match rest.split_once(" # ") {
        Some((n, c)) => (n.trim(), Some(c.trim())),
        None => (rest.trim(), None),
    };
    if name.is_empty() || name.contains(' ') {
        return None;
    }
    let outcome = match (ok, comment) {
        (true, Some(c)) if c.starts_with("SKIP") => {
            Outcome::Skip(c.trim_start_matches("SKIP").trim().to_owned())
        }
        (true, _) => Outcome::Pass,
        (false, c) => Outcome::Fail(c.unwrap_or("").to_owned()),
    };
    Some((name.to_owned(), outcome))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        for o in [
            Outcome::Pass,
            Outcome::Fail("want 1, got 2".into()),
            Outcome::Skip("no such file".into()),
        ] {
            let text = Line("a.b", &o).to_string();
            assert_eq!(parse_line(&text), Some(("a.b".to_owned(), o)));
        }
        assert_eq!(parse_line("time=... level=warning"), None);
        assert_eq!(
            parse_line("not ok x # a # b").map(|(_, o)| o),
            Some(Outcome::Fail("a # b".into()))
        );
    }
}

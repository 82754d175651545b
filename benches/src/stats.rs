//! Order statistics of a sample: what every figure in the table reports.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub n: usize,
    pub median: f64,
    pub p25: f64,
    pub p75: f64,
    pub p95: f64,
    /// Absent from results.json files written before it was added.
    #[serde(default)]
    pub p99: f64,
    pub min: f64,
    pub max: f64,
}

/// `None` for an empty sample.
pub fn summarize(samples: &[f64]) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    Some(Summary {
        n: s.len(),
        median: quantile(&s, 0.5),
        p25: quantile(&s, 0.25),
        p75: quantile(&s, 0.75),
        p95: quantile(&s, 0.95),
        p99: quantile(&s, 0.99),
        min: s[0],
        max: s[s.len() - 1],
    })
}

/// Linear interpolation between closest ranks (R's type 7, numpy's default).
/// `sorted` must be sorted and non-empty.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_known_sample() {
        let s = summarize(&[5.0, 1.0, 3.0, 2.0, 4.0]).unwrap();
        assert_eq!(s.n, 5);
        assert_eq!(s.median, 3.0);
        assert_eq!(s.min, 1.0);
        assert_eq!(s.max, 5.0);
        assert_eq!(s.p25, 2.0);
        assert!((s.p95 - 4.8).abs() < 1e-9);
        assert!((s.p99 - 4.96).abs() < 1e-9);
    }

    #[test]
    fn even_count_median_interpolates() {
        assert_eq!(summarize(&[1.0, 2.0, 3.0, 4.0]).unwrap().median, 2.5);
        assert_eq!(summarize(&[7.0]).unwrap().p95, 7.0);
        assert!(summarize(&[]).is_none());
    }
}

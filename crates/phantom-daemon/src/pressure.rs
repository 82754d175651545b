//! What the machine can spare: pressure stall information and the memory
//! of processes.

/// `some avg10` of /proc/pressure/RESOURCE, when the kernel has PSI.
pub fn some_avg10(resource: &str) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/pressure/{resource}")).ok()?;
    parse_some_avg10(&text)
}

fn parse_some_avg10(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("some "))?;
    line.split_whitespace()
        .find_map(|f| f.strip_prefix("avg10="))?
        .parse()
        .ok()
}

/// Memory stalls above 10% or CPU stalls above 80% of the last 10 s:
/// pools shrink to their minimum.
pub fn high() -> bool {
    some_avg10("memory").is_some_and(|v| v > 10.0) || some_avg10("cpu").is_some_and(|v| v > 80.0)
}

/// Proportional set size of `pid` in bytes (0 when unknown).
pub fn pss(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("Pss:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Direct children of `pid`.
pub fn children(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_psi() {
        let t = "some avg10=12.50 avg60=0.00 avg300=0.00 total=1\nfull avg10=1.00 avg60=0.00 avg300=0.00 total=1\n";
        assert_eq!(super::parse_some_avg10(t), Some(12.5));
        assert!(super::pss(std::process::id() as i32) > 0);
    }
}

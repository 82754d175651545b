//! `phantom monitor ID`: live CPU, memory, pids and I/O of a container from
//! its cgroup: a refreshing table on a terminal, JSON lines otherwise, or
//! Prometheus text with `--metrics`.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::state::{StateStore, Status};

/// One sample, derived from `events --stats` data.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub cpu_ns: u64,
    pub cpu_percent: f64,
    pub memory: u64,
    pub memory_limit: u64,
    pub pids: u64,
    pub pids_limit: u64,
    pub io_read: u64,
    pub io_write: u64,
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// Turn runc-shaped stats into a sample; `prev` gives the CPU rate.
pub fn sample(stats: &Value, prev: Option<(&Sample, Duration)>) -> Sample {
    let cpu_ns = u(&stats["cpu"]["usage"]["total"]);
    let cpu_percent = match prev {
        Some((p, dt)) if !dt.is_zero() && cpu_ns >= p.cpu_ns => {
            (cpu_ns - p.cpu_ns) as f64 / dt.as_nanos() as f64 * 100.0
        }
        _ => 0.0,
    };
    let (mut io_read, mut io_write) = (0, 0);
    for e in stats["blkio"]["ioServiceBytesRecursive"]
        .as_array()
        .into_iter()
        .flatten()
    {
        match e["op"].as_str().map(str::to_ascii_lowercase).as_deref() {
            Some("read") => io_read += u(&e["value"]),
            Some("write") => io_write += u(&e["value"]),
            _ => {}
        }
    }
    Sample {
        cpu_ns,
        cpu_percent,
        memory: u(&stats["memory"]["usage"]["usage"]),
        memory_limit: u(&stats["memory"]["usage"]["limit"]),
        pids: u(&stats["pids"]["current"]),
        pids_limit: u(&stats["pids"]["limit"]),
        io_read,
        io_write,
    }
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {}", UNITS[i])
}

fn limit(v: u64, f: impl Fn(u64) -> String) -> String {
    // cgroup "no limit" reads back as a huge number.
    if v == 0 || v >= 1 << 60 {
        "-".into()
    } else {
        f(v)
    }
}

pub fn json_line(id: &str, s: &Sample) -> Value {
    json!({
        "id": id,
        "time": crate::state::rfc3339_now(),
        "cpu_percent": (s.cpu_percent * 10.0).round() / 10.0,
        "cpu_ns": s.cpu_ns,
        "memory_bytes": s.memory,
        "memory_limit_bytes": s.memory_limit,
        "pids": s.pids,
        "pids_limit": s.pids_limit,
        "io_read_bytes": s.io_read,
        "io_write_bytes": s.io_write,
    })
}

pub fn table(id: &str, s: &Sample) -> String {
    format!(
        "{:<24} {:>7} {:>22} {:>11} {:>12} {:>12}\n{:<24} {:>6.1}% {:>22} {:>11} {:>12} {:>12}\n",
        "SANDBOX",
        "CPU",
        "MEMORY / LIMIT",
        "PIDS",
        "READ",
        "WRITE",
        id,
        s.cpu_percent,
        format!("{} / {}", human(s.memory), limit(s.memory_limit, human)),
        format!("{} / {}", s.pids, limit(s.pids_limit, |v| v.to_string())),
        human(s.io_read),
        human(s.io_write),
    )
}

pub fn prometheus(id: &str, s: &Sample) -> String {
    let l = format!("{{sandbox=\"{id}\"}}");
    format!(
        "# TYPE phantom_sandbox_cpu_seconds_total counter\nphantom_sandbox_cpu_seconds_total{l} {}\n\
         # TYPE phantom_sandbox_memory_bytes gauge\nphantom_sandbox_memory_bytes{l} {}\n\
         # TYPE phantom_sandbox_pids gauge\nphantom_sandbox_pids{l} {}\n\
         # TYPE phantom_sandbox_io_read_bytes_total counter\nphantom_sandbox_io_read_bytes_total{l} {}\n\
         # TYPE phantom_sandbox_io_write_bytes_total counter\nphantom_sandbox_io_write_bytes_total{l} {}\n",
        s.cpu_ns as f64 / 1e9,
        s.memory,
        s.pids,
        s.io_read,
        s.io_write
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A table redrawn in place (on a terminal).
    Table,
    JsonLines,
    Prometheus,
}

impl Format {
    pub fn auto(metrics: bool) -> Format {
        if metrics {
            Format::Prometheus
        } else if std::io::stdout().is_terminal() {
            Format::Table
        } else {
            Format::JsonLines
        }
    }
}

/// Print samples every `interval` until the container stops (or `count`
/// samples were printed).
pub fn monitor(
    store: &StateStore,
    id: &str,
    interval: Duration,
    format: Format,
    count: Option<u64>,
    out: &mut dyn Write,
) -> Result<()> {
    let io = |e: std::io::Error| Error::io("cannot write", "stdout", e);
    let mut st = store.load(id)?;
    let cg = st
        .cgroup
        .clone()
        .ok_or_else(|| Error::Cgroup(format!("sandbox {id:?} has no cgroup")))?;
    let mut prev: Option<(Sample, Instant)> = None;
    let mut printed = 0u64;
    loop {
        store.refresh(&mut st);
        if st.status == Status::Stopped {
            return Ok(());
        }
        let now = Instant::now();
        let s = sample(
            &cg.stats()?,
            prev.as_ref().map(|(p, t)| (p, now.duration_since(*t))),
        );
        let text = match format {
            Format::Table => format!("\x1b[H\x1b[2J{}", table(id, &s)),
            Format::JsonLines => format!("{}\n", json_line(id, &s)),
            Format::Prometheus => prometheus(id, &s),
        };
        out.write_all(text.as_bytes()).map_err(io)?;
        out.flush().map_err(io)?;
        printed += 1;
        if count.is_some_and(|c| printed >= c) {
            return Ok(());
        }
        prev = Some((s, now));
        std::thread::sleep(interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_from_stats() {
        let stats = json!({
            "cpu": {"usage": {"total": 3_000_000_000u64}},
            "memory": {"usage": {"usage": 1048576, "limit": 67108864}},
            "pids": {"current": 3, "limit": 32},
            "blkio": {"ioServiceBytesRecursive": [
                {"major": 8, "minor": 0, "op": "Read", "value": 4096},
                {"major": 8, "minor": 0, "op": "Write", "value": 8192}]}
        });
        let first = sample(&stats, None);
        assert_eq!(
            (first.memory, first.pids, first.io_read, first.io_write),
            (1048576, 3, 4096, 8192)
        );
        let mut later = stats.clone();
        later["cpu"]["usage"]["total"] = json!(3_500_000_000u64);
        let s = sample(&later, Some((&first, Duration::from_secs(1))));
        assert!((s.cpu_percent - 50.0).abs() < 0.01, "{}", s.cpu_percent);
        assert!(table("box", &s).contains("50.0%"));
        assert!(table("box", &s).contains("1.0 MiB / 64.0 MiB"));
        assert_eq!(json_line("box", &s)["pids_limit"], 32);
        assert!(prometheus("box", &s).contains("phantom_sandbox_pids{sandbox=\"box\"} 3\n"));
    }
}

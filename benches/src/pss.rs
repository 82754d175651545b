//! Memory of the warm pools: the proportional set size (PSS: each page
//! divided by the number of processes that map it, so pages a zygote shares
//! with its runner or with other zygotes are not counted twice) of the
//! daemon and of each pooled zygote, from `/proc/PID/smaps_rollup`.
//!
//! A zygote is one child of the daemon (the `phantom zygote-serve` runner)
//! with every process below it (its sandbox's init; a fork server's
//! interpreter, when it has one).

use std::collections::BTreeMap;

use crate::report::{Cell, Figure, Status, Unit};
use crate::rows::Section;

/// The `Pss:` line of `/proc/PID/smaps_rollup`, in KiB (`None`: the process
/// is gone, or the kernel predates smaps_rollup, 4.14).
pub fn pss_kib(pid: i32) -> Option<u64> {
    parse_pss(&std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?)
}

fn parse_pss(rollup: &str) -> Option<u64> {
    rollup.lines().find_map(|l| {
        l.strip_prefix("Pss:")?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    })
}

/// The children of `pid`, from every thread's `children` list.
pub fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(c) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(c.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
            }
        }
    }
    out
}

/// `pid` and everything below it.
pub fn tree(pid: i32) -> Vec<i32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let kids = children(out[i]);
        out.extend(kids);
        i += 1;
    }
    out
}

/// What kind of child of the daemon this is: its arguments without the
/// binary and without the values of `--root`, `--socket` and `--id` (which
/// differ per runner), e.g. `zygote-serve --profile python-dev --python`.
pub fn kind(pid: i32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    normalize(&raw)
}

/// Options whose values differ from one runner to the next.
const PER_RUNNER: [&str; 3] = ["--root", "--socket", "--id"];

fn normalize(cmdline: &[u8]) -> String {
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let mut out = Vec::new();
    let mut skip = false;
    for a in args.iter().skip(1) {
        if skip {
            skip = false;
            continue;
        }
        if PER_RUNNER.contains(&a.as_str()) {
            skip = true;
            continue;
        }
        if PER_RUNNER
            .iter()
            .any(|f| a.strip_prefix(f).is_some_and(|r| r.starts_with('=')))
        {
            continue;
        }
        out.push(a.clone());
    }
    out.join(" ")
}

/// One child of a daemon with its processes.
#[derive(Debug)]
pub struct Zygote {
    pub kind: String,
    pub processes: usize,
    pub pss_kib: u64,
}

/// The daemon's children, each with the PSS of its whole tree.
pub fn zygotes(daemon: i32) -> Vec<Zygote> {
    children(daemon)
        .into_iter()
        .map(|c| {
            let pids = tree(c);
            Zygote {
                kind: kind(c),
                processes: pids.len(),
                pss_kib: pids.iter().filter_map(|p| pss_kib(*p)).sum(),
            }
        })
        .collect()
}

const MIB: f64 = 1024.0;

/// `pss-daemon` and `pss-zygote`: the daemon with `--pool python-dev=N`
/// alone, and per pooled zygote (one sample per zygote). With the fork
/// server's daemon, `pss-python-zygote`: per child of it that is not a
/// plain pool runner.
pub fn figures(daemon: Option<i32>, forkserver: Option<i32>) -> Vec<Figure> {
    let cell = |samples: Vec<f64>, why_empty: &str| {
        let mut c = Cell::new("phantom", Status::Ok, None);
        if samples.is_empty() {
            c.status = Status::Unavailable;
            c.note = Some(why_empty.to_string());
        }
        c.samples = samples;
        c
    };
    let mut out = Vec::new();
    let pool = daemon.map(zygotes).unwrap_or_default();
    let pool_kinds: Vec<&str> = pool.iter().map(|z| z.kind.as_str()).collect();
    let own = daemon.and_then(pss_kib).map(|k| k as f64 / MIB);
    out.push(Figure::new(
        "pss-daemon",
        Section::Footprint,
        "PSS of `phantom daemon --pool python-dev=2..8` itself",
        Unit::MiB,
        vec![cell(own.into_iter().collect(), "the daemon did not start")],
    ));
    let processes = pool.iter().map(|z| z.processes).max().unwrap_or(0);
    out.push(Figure::new(
        "pss-zygote",
        Section::Footprint,
        &format!(
            "PSS per pooled python-dev zygote (runner + sandbox init: {processes} processes), median of {}",
            pool.len()
        ),
        Unit::MiB,
        vec![cell(
            pool.iter().map(|z| z.pss_kib as f64 / MIB).collect(),
            "no zygote found under the daemon",
        )],
    ));
    if let Some(fs) = forkserver {
        let python: Vec<Zygote> = zygotes(fs)
            .into_iter()
            .filter(|z| !pool_kinds.contains(&z.kind.as_str()))
            .collect();
        let what = python
            .first()
            .map_or("none found".to_string(), |z| format!("`{}`", z.kind));
        out.push(Figure::new(
            "pss-python-zygote",
            Section::Footprint,
            &format!("PSS per Python fork-server zygote (with its processes; {what})"),
            Unit::MiB,
            vec![cell(
                python.iter().map(|z| z.pss_kib as f64 / MIB).collect(),
                "no child of the fork-server daemon other than pool runners",
            )],
        ));
    }
    out
}

/// Per-kind summary for the log: kind -> (count, total PSS KiB).
pub fn describe(daemon: i32) -> BTreeMap<String, (usize, u64)> {
    let mut m = BTreeMap::new();
    for z in zygotes(daemon) {
        let e = m.entry(z.kind).or_insert((0, 0));
        e.0 += 1;
        e.1 += z.pss_kib;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rollup_and_cmdline() {
        let rollup = "00400000-7ffd [rollup]\nRss:  2048 kB\nPss:  1234 kB\nPss_Anon: 1000 kB\n";
        assert_eq!(parse_pss(rollup), Some(1234));
        assert_eq!(parse_pss("Rss: 1 kB\n"), None);
        let cmd =
            b"/x/phantom\0--root\0/r\0zygote-serve\0--profile\0python-dev\0--socket\0/s.sock\0";
        assert_eq!(normalize(cmd), "zygote-serve --profile python-dev");
        let cmd =
            b"/x/phantom\0--root=/r\0zygote-serve\0--profile\0python-dev\0--id\0zyg-1\0--python\0";
        assert_eq!(normalize(cmd), "zygote-serve --profile python-dev --python");
    }

    #[test]
    fn own_process_has_pss_and_a_tree() {
        let me = std::process::id() as i32;
        if std::path::Path::new("/proc/self/smaps_rollup").exists() {
            assert!(pss_kib(me).unwrap() > 0);
        }
        assert_eq!(tree(me)[0], me);
    }
}

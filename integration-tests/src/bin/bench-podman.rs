//! Median wall time of `podman run --rm IMAGE true` per runtime, each with
//! its own private Podman store (see `phantom_integration_tests::podman`).
//!
//! ```text
//! bench-podman [--runs N] [RUNTIME...]     # default: --runs 20 crun phantom
//! ```
//!
//! Two configurations: Podman's default (its seccomp profile and a pids
//! limit in every container) and `minimal`, a containers.conf without them
//! (`seccomp_profile = "unconfined"`, `pids_limit = 0`), which isolates the
//! runtime's lifecycle cost from seccomp compilation and cgroup limits.

use std::process::ExitCode;
use std::time::Duration;

use phantom_integration_tests::podman::Podman;
use phantom_integration_tests::{Runtime, IMAGE};

/// `(name, minimal containers.conf)`.
const VARIANTS: [(&str, bool); 2] = [("default", false), ("minimal", true)];

fn main() -> ExitCode {
    let mut runs = 20usize;
    let mut runtimes = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) if n > 0 => runs = n,
                _ => return usage("--runs needs a positive number"),
            },
            "-h" | "--help" => return usage(""),
            name => runtimes.push(name.to_string()),
        }
    }
    if runtimes.is_empty() {
        runtimes = vec!["crun".into(), "phantom".into()];
    }
    if !nix::unistd::geteuid().is_root() {
        return usage("needs root");
    }

    println!("podman run --rm {IMAGE} true: median (min-max) of {runs} runs, ms\n");
    println!("{:<10} {:<10} result", "runtime", "config");
    // One private store per (runtime, config); the rounds interleave them so
    // that background load falls on all alike.
    let mut cases: Vec<Case> = Vec::new();
    for name in &runtimes {
        for (config, minimal) in VARIANTS {
            let podman = Runtime::named(name).and_then(|r| Podman::setup_with(&r, minimal));
            // Warm the page cache and the store once.
            let result = podman
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|p| once(p).map(drop));
            cases.push(Case {
                label: format!("{name:<10} {config:<10}"),
                podman: podman.ok(),
                result: result.map(|()| Vec::new()),
            });
        }
    }
    for _ in 0..runs {
        for case in &mut cases {
            if let (Some(podman), Ok(times)) = (&case.podman, &mut case.result) {
                match once(podman) {
                    Ok(ms) => times.push(ms),
                    Err(e) => case.result = Err(e),
                }
            }
        }
    }
    for case in &mut cases {
        let result = match &mut case.result {
            Ok(ms) => {
                ms.sort_by(f64::total_cmp);
                let median = if runs % 2 == 1 {
                    ms[runs / 2]
                } else {
                    (ms[runs / 2 - 1] + ms[runs / 2]) / 2.0
                };
                format!("{median:.1} ({:.1}-{:.1})", ms[0], ms[runs - 1])
            }
            Err(e) => format!("failed: {e}"),
        };
        println!("{} {result}", case.label);
    }
    // Last set up, first torn down: each store removes the host directories
    // that did not exist before it (Podman recreates some on every call).
    while let Some(case) = cases.pop() {
        drop(case);
    }
    ExitCode::SUCCESS
}

/// One runtime and configuration: its store and its times so far, or why
/// it failed.
struct Case {
    label: String,
    podman: Option<Podman>,
    result: Result<Vec<f64>, String>,
}

/// The wall time of one `podman run --rm IMAGE true` in ms, or why it
/// failed.
fn once(podman: &Podman) -> Result<f64, String> {
    let out = podman.run_timeout(&["run", "--rm", IMAGE, "true"], Duration::from_secs(60))?;
    if out.code() != Some(0) {
        let why = out.describe("podman run");
        return Err(why.lines().next().unwrap_or("").to_string());
    }
    Ok(out.elapsed.as_secs_f64() * 1000.0)
}

fn usage(why: &str) -> ExitCode {
    if !why.is_empty() {
        eprintln!("bench-podman: {why}");
    }
    eprintln!("usage: bench-podman [--runs N] [phantom|crun|runc ...]   (as root)");
    ExitCode::from(2)
}

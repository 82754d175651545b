//! `make bench`: phantom (as built, and installed read-only) against crun,
//! runc and youki on the same bundles in one run, interleaved; a markdown
//! table, results.json, start.svg and the SPECIFICATION.md promises.
//! `make bench-smoke` is the same with a few iterations. See docs/bench.md.
//!
//! Exit status: 0 when every command ran, 1 when a runtime command failed,
//! 2 when the bench could not set up, 130 when interrupted.

mod agents;
mod bundles;
mod chart;
mod exec;
mod measure;
mod netns;
mod promises;
mod pss;
mod report;
mod rows;
mod runtimes;
mod seccomp;
mod stats;
mod work;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde_json::json;

use measure::{Ctx, Progress, Rng};
use report::Status;
use runtimes::{which, Runtime};
use work::Work;

#[derive(Parser, Debug)]
#[command(about = "phantom against crun, runc and youki, side by side")]
struct Args {
    /// A short run (few iterations) that checks the benchmark still works.
    #[arg(long)]
    smoke: bool,
    /// Timed iterations of each start row and floor [default: 300; smoke: 3].
    #[arg(long)]
    runs: Option<usize>,
    /// Timed create/start/delete iterations [default: 100; smoke: 3].
    #[arg(long)]
    lifecycle: Option<usize>,
    /// Runs per runtime in each throughput figure [default: 200; smoke: 6].
    #[arg(long)]
    throughput: Option<usize>,
    /// Runs per throughput block (one sample) [default: 20; smoke: 3].
    #[arg(long)]
    block: Option<usize>,
    /// Untimed iterations before each loop [default: 2; smoke: 1].
    #[arg(long)]
    warmup: Option<usize>,
    /// Iterations of each way in "netns: new vs join" [default: 200; smoke: 20].
    #[arg(long)]
    netns: Option<usize>,
    /// Measure only the figures whose id starts with one of these
    /// (comma-separated; e.g. `sandbox-,pss-,netns`): start rows and floors
    /// by id, `create`/`start`/`delete`/`rss-create` for the lifecycle,
    /// `throughput`, `pss`, `netns`. Default: everything.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    #[arg(long, default_value = "target/release/phantom")]
    phantom: PathBuf,
    /// youki's binary; without it (or --youki-unavailable) youki is looked
    /// up on PATH.
    #[arg(long, conflicts_with = "youki_unavailable")]
    youki: Option<PathBuf>,
    /// Why youki is missing (e.g. its install failed).
    #[arg(long)]
    youki_unavailable: Option<String>,
    /// Where results go [default: target/bench; smoke: target/bench/smoke].
    #[arg(long)]
    out: Option<PathBuf>,
    /// The repository (for hack/make-rootfs.sh and docs).
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// Podman's default seccomp profile (containers-common).
    #[arg(long, default_value = "/usr/share/containers/seccomp.json")]
    seccomp_profile: PathBuf,
    /// Measure nothing: print the table of an earlier results.json and draw
    /// its chart again (start.svg next to it). No root needed.
    #[arg(long, value_name = "RESULTS_JSON")]
    report_from: Option<PathBuf>,
}

struct Counts {
    runs: usize,
    lifecycle: usize,
    throughput: usize,
    block: usize,
    warmup: usize,
    netns: usize,
}

impl Args {
    fn counts(&self) -> Counts {
        let d = |v: Option<usize>, full: usize, smoke: usize| {
            v.unwrap_or(if self.smoke { smoke } else { full })
        };
        Counts {
            runs: d(self.runs, 300, 3),
            lifecycle: d(self.lifecycle, 100, 3),
            throughput: d(self.throughput, 200, 6),
            block: d(self.block, 20, 3).max(1),
            warmup: d(self.warmup, 2, 1),
            netns: d(self.netns, 200, 20),
        }
    }

    /// Whether `--only` selects the figure `id`.
    fn wanted(&self, id: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| id.starts_with(p.as_str()))
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(path) = &args.report_from {
        return match report_from(path) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("phantom-bench: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("phantom-bench: run as root (it makes containers, mounts and cgroups)");
        return ExitCode::from(2);
    }
    exec::catch_interrupts();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        for p in work::cleanup() {
            eprintln!("[bench] cleanup: {p}");
        }
    }));

    let result = run(&args);
    let problems = work::cleanup();
    for p in &problems {
        eprintln!("[bench] cleanup: {p}");
    }
    if exec::interrupted() {
        eprintln!("[bench] interrupted; cleaned up");
        return ExitCode::from(130);
    }
    match result {
        Ok(true) if problems.is_empty() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("phantom-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Ok(true) when every command ran.
fn run(args: &Args) -> Result<bool> {
    let counts = args.counts();
    let progress = Progress::new();
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from(if args.smoke {
            "target/bench/smoke"
        } else {
            "target/bench"
        })
    });
    std::fs::create_dir_all(&out).with_context(|| format!("mkdir {}", out.display()))?;
    let phantom = std::fs::canonicalize(&args.phantom)
        .with_context(|| format!("{}: build it first", args.phantom.display()))?;

    exec::become_subreaper().context("become a child subreaper")?;
    hybrid_cgroup_fix(&progress)?;
    let work = Work::create()?;

    let mut rts = Vec::new();
    let root = |name: &str| work.path(&format!("root/{name}"));
    rts.push(Runtime::new(
        "phantom",
        &phantom,
        root("phantom"),
        true,
        &format!(
            "{}, as built (rw mount: re-executes once through a read-only bind of itself, the CVE-2019-5736 guard)",
            args.phantom.display()
        ),
    ));
    let ro_copy = work::read_only_copy(&phantom, &work.path("ro-bin"))
        .context("install phantom on a read-only tmpfs")?;
    rts.push(Runtime::new(
        "phantom (ro)",
        &ro_copy,
        root("phantom-ro"),
        true,
        "the same binary on a read-only tmpfs, as under a read-only /usr (no re-exec)",
    ));
    for peer in ["crun", "runc"] {
        rts.push(match which(peer) {
            Some(p) => Runtime::new(peer, &p, root(peer), false, &p.to_string_lossy()),
            None => Runtime::unavailable(peer, "not installed (hack/install-deps.sh installs it)"),
        });
    }
    rts.push(match (&args.youki, &args.youki_unavailable) {
        (_, Some(why)) => Runtime::unavailable("youki", why),
        (Some(p), None) => Runtime::new("youki", p, root("youki"), false, &p.to_string_lossy()),
        (None, None) => match which("youki") {
            Some(p) => Runtime::new("youki", &p, root("youki"), false, &p.to_string_lossy()),
            None => Runtime::unavailable("youki", "not installed"),
        },
    });
    for rt in rts.iter().filter(|r| r.available()) {
        std::fs::create_dir_all(&rt.root)?;
    }

    progress
        .note("building the bundles (busybox rootfs, `phantom spec`, Podman's seccomp profile)");
    let bundles = bundles::build(
        &work.path("bundles"),
        &out.join("bundles"),
        &args.repo,
        &phantom,
        &args.seccomp_profile,
    )?;

    // The warm rows need a daemon with a python-dev pool; it drains when
    // we stop it (or when the bench dies: PDEATHSIG). The fork-server row
    // has a daemon of its own, when this phantom has the flag.
    let rows: Vec<rows::Row> = rows::ROWS
        .iter()
        .filter(|r| args.wanted(r.id))
        .cloned()
        .collect();
    // It also serves REST for the agents' figure, on a loopback port of
    // its own, with a key file and an audit log in the bench's work dir.
    let rest = if args.wanted(agents::REST) {
        rest_listener(&work)
            .map_err(|e| progress.note(&format!("{}: {e}", agents::REST)))
            .ok()
    } else {
        None
    };
    let rest_args: Vec<String> = match &rest {
        Some((r, keys, audit)) => vec![
            "--listen".into(),
            r.addr.to_string(),
            "--api-keys".into(),
            keys.display().to_string(),
            "--audit-log".into(),
            audit.display().to_string(),
            // Timed back to back: the per-key default (50/s) would refuse.
            "--rate-limit".into(),
            "1000000".into(),
        ],
        None => Vec::new(),
    };
    let rest_args: Vec<&str> = rest_args.iter().map(String::as_str).collect();
    let daemon = start_daemon(
        &phantom,
        &work.path("root/daemon"),
        &work.path("daemon.sock"),
        &rest_args,
        &progress,
    );
    let rest = rest.filter(|_| daemon.is_some()).map(|(r, _, _)| r);
    if let Some(d) = &daemon {
        let _ = exec::DAEMON_SOCKET.set(d.socket.clone());
    }
    let mut sockets = std::collections::BTreeMap::new();
    let mut skip = std::collections::BTreeMap::new();
    let forkserver = if !(args.wanted("sandbox-python-forkserver") || args.wanted("pss")) {
        None
    } else if !daemon_has_flag(&phantom, "--python-pool") {
        let why = "`phantom daemon --help` lists no --python-pool".to_string();
        progress.note(&format!(
            "row sandbox-python-forkserver (python3 -c pass, warm fork server) skipped: {why}"
        ));
        skip.insert("sandbox-python-forkserver", why);
        None
    } else {
        // Its own directory: a daemon empties the `zygotes` dir next to
        // its socket when it starts.
        let d = start_daemon(
            &phantom,
            &work.path("root/daemon-forkserver"),
            &work.path("forkserver/daemon.sock"),
            &["--python-pool", "python-dev=1"],
            &progress,
        );
        match &d {
            Some(d) => {
                sockets.insert(rows::FORKSERVER, d.socket.clone());
            }
            None => {
                skip.insert(
                    "sandbox-python-forkserver",
                    "its daemon did not start".to_string(),
                );
            }
        }
        d
    };
    // Memory of the pools, now that they are full.
    let mut pss_figures = Vec::new();
    if args.wanted("pss") {
        for (what, d) in [("daemon", &daemon), ("fork-server daemon", &forkserver)] {
            if let Some(d) = d {
                let kinds: Vec<String> = pss::describe(d.child.id() as i32)
                    .into_iter()
                    .map(|(k, (n, kib))| format!("{n}× `{k}` ({:.1} MiB)", kib as f64 / 1024.0))
                    .collect();
                progress.note(&format!("{what}'s children: {}", kinds.join(", ")));
            }
        }
        pss_figures = pss::figures(
            daemon.as_ref().map(|d| d.child.id() as i32),
            forkserver.as_ref().map(|d| d.child.id() as i32),
        );
    }

    // One untimed run each: a runtime that cannot run a container at all is
    // reported now. youki, an optional peer, becomes "unavailable".
    let plain = bundles.path("plain").unwrap_or_default();
    let stderr = work.path("stderr-preflight");
    for rt in rts.iter_mut().filter(|r| r.available()) {
        let id = format!("{}-pre", work.prefix);
        work::track(&id, rt.delete_force(&id));
        let argv = rt.argv(["run".into(), "--bundle".into(), plain.clone(), id.clone()]);
        match exec::timed(&argv, &stderr) {
            Ok(_) => work::untrack(&id),
            Err(e) => {
                work::force_delete(&id);
                progress.note(&format!("{} cannot run a container: {e}", rt.name));
                if rt.name == "youki" {
                    rt.unavailable = Some(format!("installed, but `run` fails here: {e}"));
                }
            }
        }
    }
    let names: Vec<String> = rts
        .iter()
        .map(|r| match &r.unavailable {
            None => r.name.clone(),
            Some(why) => format!("{} (unavailable: {why})", r.name),
        })
        .collect();
    progress.note(&format!("runtimes: {}", names.join(", ")));

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let mut rng = Rng::new(seed);
    let mut ctx = Ctx {
        runtimes: &rts,
        bundles: &bundles,
        sockets: &sockets,
        skip: &skip,
        work: &work,
        progress: &progress,
        rng: &mut rng,
    };
    let mut figures = pss_figures;
    if !rows.is_empty() {
        figures.extend(measure::command_rows(
            &mut ctx,
            &rows,
            counts.runs,
            counts.warmup,
            "start latency and floor",
        ));
    }
    // The agents' entry points, after the warm CLI rows (they share the
    // daemon's pool).
    if !exec::interrupted() && args.wanted(agents::REST) {
        figures.push(agents::rest_figure(
            &rts,
            rest.as_ref(),
            counts.runs,
            counts.warmup,
            &progress,
        ));
    }
    if !exec::interrupted() && args.wanted(agents::MCP) {
        figures.push(agents::mcp_figure(
            &rts,
            &phantom,
            &work.path("root/mcp"),
            // The fork server's daemon when there is one: run_code of
            // Python without files is what it serves.
            forkserver
                .as_ref()
                .or(daemon.as_ref())
                .map(|d| d.socket.as_path()),
            counts.runs,
            counts.warmup,
            &progress,
        ));
    }
    let lifecycle_ids = ["create", "start", "delete", "rss-create"];
    if !exec::interrupted() && lifecycle_ids.iter().any(|id| args.wanted(id)) {
        figures.extend(measure::lifecycle(
            &mut ctx,
            counts.lifecycle,
            counts.warmup,
        ));
    }
    if !exec::interrupted() && args.wanted("throughput") {
        figures.extend(measure::throughput(
            &mut ctx,
            counts.throughput,
            counts.block,
        ));
    }
    if !exec::interrupted() && (args.wanted("throughput-warm") || args.wanted("warm-share")) {
        let status = || -> Option<(u64, u64)> {
            let sock = &daemon.as_ref()?.socket;
            let out = std::process::Command::new(&phantom)
                .args(["daemon", "--status", "--socket"])
                .arg(sock)
                .output()
                .ok()?;
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            Some((
                v["python-dev"]["served"].as_u64()?,
                v["python-dev"]["missed"].as_u64()?,
            ))
        };
        figures.extend(measure::warm_throughput(
            &mut ctx,
            counts.throughput,
            counts.block,
            &status,
        ));
    }
    // Last: the namespaces it drops are torn down by the kernel later, in
    // the background.
    if !exec::interrupted() && args.wanted("netns") {
        progress.update("netns: new vs join");
        figures.push(netns::figure(counts.netns, counts.warmup));
    }
    figures.extend(
        measure::footprint(
            &rts,
            bundles
                .path("seccomp")
                .map(|b| format!("{b}/config.json"))
                .as_deref(),
            counts.netns.min(50),
        )
        .into_iter()
        .filter(|f| args.wanted(&f.id)),
    );
    drop((daemon, forkserver));
    if exec::interrupted() {
        return Ok(false);
    }
    figures.sort_by_key(|f| f.section);
    for f in &mut figures {
        f.finish();
    }
    progress.note("done measuring");

    let verdicts = promises::evaluate(&figures, &rts);
    let header = header(args, &counts, &rts, &bundles);
    let table = report::markdown(&figures);
    let promise_lines = promises::lines(&verdicts);
    let (warm_md, warm_json) = report::warm_vs_cold(&figures);
    let netns_line = netns_line(&figures);
    let failed: Vec<String> = figures
        .iter()
        .flat_map(|f| {
            f.cells
                .iter()
                .filter(|c| c.status == Status::Failed || c.failures > 0)
                .map(move |c| format!("{} / {}", f.id, c.runtime))
        })
        .collect();
    let hangs: usize = figures.iter().flat_map(|f| &f.cells).map(|c| c.hangs).sum();

    let md = format!(
        "{header}\n{table}\n{warm_md}{netns_line}\nPromises (docs/SPECIFICATION.md; medians, this run):\n\n{promise_lines}"
    );
    println!("{md}");
    std::fs::write(out.join("results.md"), &md)?;
    let results = json!({
        "meta": {
            "smoke": args.smoke,
            "date": date(),
            "kernel": read_trim("/proc/sys/kernel/osrelease"),
            "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
            "cpu_model": cpu_model(),
            "iterations": {
                "runs": counts.runs, "lifecycle": counts.lifecycle,
                "throughput": counts.throughput, "block": counts.block, "warmup": counts.warmup,
                "netns": counts.netns,
            },
            "seccomp_rules": bundles.seccomp_rules,
            "shuffle_seed": seed,
            "only": args.only,
        },
        "runtimes": rts,
        "figures": figures,
        "warm_vs_cold": warm_json,
        "promises": verdicts,
        "failed": failed,
    });
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&results)? + "\n",
    )?;
    let subtitle = format!(
        "{} · {} timed runs per runtime and row, all interleaved · {}",
        date(),
        counts.runs,
        cpu_model()
    );
    std::fs::write(out.join("start.svg"), chart::start_svg(&figures, &subtitle))?;
    progress.note(&format!(
        "wrote {0}/results.md, {0}/results.json, {0}/start.svg",
        out.display()
    ));
    if hangs > 0 {
        progress.note(&format!(
            "{hangs} command(s) hung on a lost SIGCHLD and were nudged (footnotes in the table)"
        ));
    }
    if !failed.is_empty() {
        progress.note(&format!("FAILED: {}", failed.join(", ")));
    }
    Ok(failed.is_empty())
}

/// The table and the chart again, from a results.json.
fn report_from(path: &Path) -> Result<()> {
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?,
    )
    .with_context(|| format!("parse {}", path.display()))?;
    let figures: Vec<report::Figure> =
        serde_json::from_value(v["figures"].clone()).context("results.json: figures")?;
    let rts: Vec<Runtime> =
        serde_json::from_value(v["runtimes"].clone()).context("results.json: runtimes")?;
    println!(
        "{}\n{}{}\nPromises (docs/SPECIFICATION.md; medians, this run):\n\n{}",
        report::markdown(&figures),
        report::warm_vs_cold(&figures).0,
        netns_line(&figures),
        promises::lines(&promises::evaluate(&figures, &rts))
    );
    let subtitle = format!(
        "{} · {} timed runs per runtime and row, all interleaved · {}",
        v["meta"]["date"].as_str().unwrap_or(""),
        v["meta"]["iterations"]["runs"],
        v["meta"]["cpu_model"].as_str().unwrap_or("")
    );
    let svg = path.with_file_name("start.svg");
    std::fs::write(&svg, chart::start_svg(&figures, &subtitle))?;
    eprintln!("[bench] wrote {}", svg.display());
    Ok(())
}

/// crun 1.8.1 refuses the hybrid layout (cgroup2 at /sys/fs/cgroup/unified
/// holding hugetlb) until hugetlb is mounted as v1. It stays mounted: it is
/// a fix of this machine, which the tests need too.
fn hybrid_cgroup_fix(progress: &Progress) -> Result<()> {
    let is_mount = |p: &str| exec::quiet(&["mountpoint".into(), "-q".into(), p.into()]).is_ok();
    if !is_mount("/sys/fs/cgroup/unified") {
        return Ok(());
    }
    if is_mount("/sys/fs/cgroup/hugetlb") {
        progress.note(
            "note: hybrid cgroups; hugetlb is already mounted as cgroup v1 at /sys/fs/cgroup/hugetlb \
             (crun 1.8.1 refuses this layout without it)",
        );
        return Ok(());
    }
    progress.note(
        "note: hybrid cgroups; mounting hugetlb as cgroup v1 at /sys/fs/cgroup/hugetlb \
         (crun 1.8.1 refuses this layout otherwise; it stays mounted)",
    );
    std::fs::create_dir_all("/sys/fs/cgroup/hugetlb")?;
    let argv = [
        "mount",
        "-t",
        "cgroup",
        "-o",
        "hugetlb",
        "cgroup",
        "/sys/fs/cgroup/hugetlb",
    ];
    if let Err(e) = exec::quiet(&argv.map(String::from)) {
        bail!("mount the hugetlb cgroup: {e}");
    }
    Ok(())
}

fn header(args: &Args, c: &Counts, rts: &[Runtime], bundles: &bundles::Bundles) -> String {
    let mut h = format!(
        "## phantom bench{}, {}\n\nMachine: Linux {}, {} CPUs ({}). Iterations: {} per start row and floor, {} create/start/delete, \
         {} runs per throughput figure in blocks of {}; {} untimed warm-up iteration(s) first. \
         All contenders interleaved in a random order per iteration.\n\n",
        if args.smoke { " (smoke: too few iterations to mean anything)" } else { "" },
        date(),
        read_trim("/proc/sys/kernel/osrelease"),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        c.runs,
        c.lifecycle,
        c.throughput,
        c.block,
        c.warmup,
    );
    for rt in rts {
        match &rt.unavailable {
            Some(why) => h.push_str(&format!("- {}: unavailable: {why}\n", rt.name)),
            None => h.push_str(&format!(
                "- {}: `{}`: {}\n",
                rt.name,
                if rt.version.is_empty() {
                    "?"
                } else {
                    &rt.version
                },
                rt.note
            )),
        }
    }
    h.push_str(&format!(
        "\nBundles: busybox-static rootfs (hack/make-rootfs.sh), config from `phantom spec` with terminal false and \
         /bin/true; the seccomp row adds Podman's default profile converted as Podman does ({} rules). \
         Each runtime has its own --root on a tmpfs. × crun = median / crun's median \
         (for throughput, higher is better).\n",
        bundles.seccomp_rules
    ));
    h
}

fn read_trim(p: impl AsRef<Path>) -> String {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn cpu_model() -> String {
    read_trim("/proc/cpuinfo")
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into())
}

fn date() -> String {
    exec::first_line(&["date", "+%Y-%m-%d %H:%M %Z"]).unwrap_or_default()
}

/// "netns: new vs join" in one sentence: what joining saves per `create`.
fn netns_line(figures: &[report::Figure]) -> String {
    let Some(f) = figures.iter().find(|f| f.id == "netns-new-vs-join") else {
        return String::new();
    };
    let med = |i: usize| {
        f.cells
            .get(i)
            .filter(|c| c.measured())
            .and_then(|c| c.summary)
            .map(|s| s.median)
    };
    match (med(0), med(1)) {
        (Some(new), Some(join)) => format!(
            "netns: new vs join: a new network namespace with lo up takes {new:.1} µs (median), \
             joining a pre-created one {join:.1} µs: a pre-created netns would save `phantom create` \
             {:.1} µs ({:.0}%) per container.\n",
            new - join,
            if new > 0.0 { 100.0 * (new - join) / new } else { 0.0 }
        ),
        _ => "netns: new vs join: not measured (see the table)\n".into(),
    }
}

/// `phantom daemon --help` lists `flag`.
fn daemon_has_flag(phantom: &Path, flag: &str) -> bool {
    std::process::Command::new(phantom)
        .args(["daemon", "--help"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .map(|o| help_lists(&String::from_utf8_lossy(&o.stdout), flag))
        .unwrap_or(false)
}

/// A `--help` text lists `flag` as an option (not as a word inside another).
fn help_lists(help: &str, flag: &str) -> bool {
    help.split(|c: char| c.is_whitespace() || c == ',')
        .any(|w| w == flag || w.strip_prefix(flag).is_some_and(|r| r.starts_with('=')))
}

/// Every pool in `phantom daemon --status` has its target ready (a daemon
/// that reports no target: its `ready` is all there is to check).
fn pools_full(status: &serde_json::Value) -> bool {
    status.as_object().is_some_and(|pools| {
        pools
            .values()
            .all(|p| match (p["ready"].as_u64(), p["target"].as_u64()) {
                (Some(ready), Some(target)) => ready >= target,
                _ => true,
            })
    })
}

/// A free loopback port for the daemon's REST listener, a key file (mode
/// 0600, as the daemon requires) and the path of its audit log.
fn rest_listener(work: &Work) -> Result<(agents::Rest, PathBuf, PathBuf)> {
    use std::os::unix::fs::OpenOptionsExt;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("find a free loopback port")?
        .port();
    let key = format!("bench-{:016x}", std::process::id() as u64 * 0x9e37_79b9);
    let keys = work.path("api-keys");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&keys)
        .with_context(|| format!("create {}", keys.display()))?;
    std::io::Write::write_all(&mut f, format!("{key}\n").as_bytes())?;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    Ok((agents::Rest { addr, key }, keys, work.path("audit.jsonl")))
}

/// One of the bench's daemons.
struct Daemon {
    child: std::process::Child,
    socket: PathBuf,
}

/// Stopped when dropped, also on an early return: SIGTERM drains the pools
/// (each zygote removes its sandbox).
impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: kill with the pid of a child we spawned and have not reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// `phantom daemon --pool python-dev=2..8 EXTRA...` on a socket of the bench's
/// own, once its python-dev pool is full (up to 30 s). Without it the warm
/// rows fall back to the cold path (and say so).
fn start_daemon(
    phantom: &Path,
    root: &Path,
    sock: &Path,
    extra: &[&str],
    progress: &Progress,
) -> Option<Daemon> {
    if let Some(dir) = sock.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let mut cmd = std::process::Command::new(phantom);
    cmd.arg("--root")
        .arg(root)
        .args(["daemon", "--pool", "python-dev=2..8"])
        .args(extra)
        .arg("--socket")
        .arg(sock)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: only prctl, async-signal-safe, runs between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0);
            Ok(())
        });
    }
    let what = format!("phantom daemon --pool python-dev=2..8 {}", extra.join(" "));
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            progress.note(&format!(
                "`{}` did not start ({e}): its rows run cold",
                what.trim()
            ));
            return None;
        }
    };
    // Wait for the pool to fill.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut ready = 0;
    while std::time::Instant::now() < until {
        let out = std::process::Command::new(phantom)
            .args(["daemon", "--status", "--socket"])
            .arg(sock)
            .output();
        let status = out
            .ok()
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
            .unwrap_or_default();
        ready = status["python-dev"]["ready"].as_u64().unwrap_or(0);
        if ready >= 2 && pools_full(&status) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    if ready < 2 {
        progress.note(&format!(
            "`{}`: its python-dev pool is not full after 30 s ({ready} of 2 ready)",
            what.trim()
        ));
    }
    // Processes a daemon starts besides the pool (a fork server's
    // interpreter) may still be coming up: wait until its process tree
    // stops growing (up to 10 s), so that PSS sees them.
    if !extra.is_empty() {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut last = 0;
        let mut stable = 0;
        while std::time::Instant::now() < until && stable < 5 {
            let n = pss::tree(child.id() as i32).len();
            stable = if n == last { stable + 1 } else { 0 };
            last = n;
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    Some(Daemon {
        child,
        socket: sock.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn help_lists_a_flag() {
        let help =
            "Options:\n      --pool <POOLS>     A pool\n      --python-pool <P>  Fork servers\n";
        assert!(super::help_lists(help, "--python-pool"));
        assert!(super::help_lists(help, "--pool"));
        assert!(!super::help_lists(
            "      --pool <POOLS>\n",
            "--python-pool"
        ));
        assert!(super::help_lists("  --python-pool=<P>\n", "--python-pool"));
    }

    #[test]
    fn pools_are_full_when_every_target_is_ready() {
        use serde_json::json;
        let full = json!({"_daemon": {"under_pressure": false},
            "python-dev": {"ready": 2, "target": 2},
            "python-dev:python": {"ready": 1, "target": 1}});
        assert!(super::pools_full(&full));
        let filling = json!({"python-dev": {"ready": 2, "target": 2},
            "python-dev:python": {"ready": 0, "target": 1}});
        assert!(!super::pools_full(&filling));
        assert!(super::pools_full(&json!({"python-dev": {"ready": 2}})));
        assert!(!super::pools_full(&json!(null)));
    }
}

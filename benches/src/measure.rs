//! The measurement loops. Every loop interleaves the contenders: each
//! iteration runs every (row, runtime) once, in a fresh random order, so
//! drift of the machine (frequency, page cache, a noisy neighbour) lands on
//! all of them alike.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::bundles::Bundles;
use crate::exec::{self, interrupted};
use crate::report::{Cell, Figure, Status, Unit};
use crate::rows::{expand, Plan, Row, Section};
use crate::runtimes::Runtime;
use crate::work::{self, Work};

pub struct Ctx<'a> {
    pub runtimes: &'a [Runtime],
    pub bundles: &'a Bundles,
    /// `{socket:NAME}` of the rows: the daemons main.rs started.
    pub sockets: &'a BTreeMap<&'static str, PathBuf>,
    /// Rows not run, by id, and why (their cells read "unavailable: WHY").
    pub skip: &'a BTreeMap<&'static str, String>,
    pub work: &'a Work,
    pub progress: &'a Progress,
    pub rng: &'a mut Rng,
}

impl Ctx<'_> {
    /// Resolves `{bundle:NAME}` and `{socket:NAME}` for [`expand`].
    fn resolve(&self, kind: &str, name: &str) -> Option<String> {
        match kind {
            "bundle" => self.bundles.path(name),
            "socket" => crate::rows::SOCKETS
                .contains(&name)
                .then(|| self.sockets.get(name))
                .flatten()
                .map(|p| p.to_string_lossy().into_owned()),
            _ => None,
        }
    }

    fn stderr_file(&self, slot: usize) -> PathBuf {
        self.work.path(&format!("stderr-{slot}"))
    }

    fn cells(&self) -> Vec<Cell> {
        self.runtimes
            .iter()
            .map(|rt| match &rt.unavailable {
                Some(why) => Cell::new(&rt.name, Status::Unavailable, Some(why.clone())),
                None => Cell::new(&rt.name, Status::Ok, None),
            })
            .collect()
    }
}

/// xorshift64*: enough to shuffle the order of contenders.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// One line on stderr, rewritten in place on a terminal; elsewhere (CI
/// logs) a new line at most every 10 s.
pub struct Progress {
    tty: bool,
    start: Instant,
    last: Mutex<Option<Instant>>,
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
            start: Instant::now(),
            last: Mutex::new(None),
        }
    }

    pub fn update(&self, msg: &str) {
        let t = self.start.elapsed().as_secs();
        if self.tty {
            eprint!("\r\x1b[K[bench {t:>3}s] {msg}");
        } else {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            let due = match *last {
                None => true,
                Some(l) => l.elapsed() >= Duration::from_secs(10),
            };
            if due {
                *last = Some(Instant::now());
                eprintln!("[bench {t:>3}s] {msg}");
            }
        }
    }

    /// A line that stays.
    pub fn note(&self, msg: &str) {
        if self.tty {
            eprint!("\r\x1b[K");
        }
        eprintln!("[bench] {msg}");
    }
}

/// Every row of the row table, all interleaved. Pending and n/a cells are
/// filled in without running anything.
pub fn command_rows(
    ctx: &mut Ctx,
    rows: &[Row],
    iterations: usize,
    warmup: usize,
    label: &str,
) -> Vec<Figure> {
    struct Job {
        fig: usize,
        cell: usize,
        runtime: Option<usize>,
        template: &'static str,
    }
    let mut figures = Vec::new();
    let mut jobs = Vec::new();
    for (fi, row) in rows.iter().enumerate() {
        let cells = if let Some(cmd) = row.host {
            jobs.push(Job {
                fig: fi,
                cell: 0,
                runtime: None,
                template: cmd,
            });
            vec![Cell::new("host", Status::Ok, None)]
        } else {
            let mut cells = ctx.cells();
            for (ri, rt) in ctx.runtimes.iter().enumerate() {
                if !rt.available() {
                    continue;
                }
                match row.plan_for_runtime(&rt.name, rt.is_phantom) {
                    Plan::Runtime(_) if ctx.skip.contains_key(row.id) => {
                        cells[ri] =
                            Cell::new(&rt.name, Status::Unavailable, ctx.skip.get(row.id).cloned())
                    }
                    Plan::Runtime(t) => jobs.push(Job {
                        fig: fi,
                        cell: ri,
                        runtime: Some(ri),
                        template: t,
                    }),
                    Plan::NotApplicable => {
                        cells[ri] = Cell::new(&rt.name, Status::NotApplicable, None)
                    }
                    Plan::Pending(why) => {
                        cells[ri] = Cell::new(&rt.name, Status::Pending, Some(why.into()))
                    }
                }
            }
            cells
        };
        figures.push(Figure::new(row.id, row.section, row.title, Unit::Ms, cells));
    }

    let stderr = ctx.stderr_file(0);
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    let total = warmup + iterations;
    for iter in 0..total {
        ctx.rng.shuffle(&mut order);
        for &j in &order {
            if interrupted() {
                break;
            }
            let job = &jobs[j];
            if !figures[job.fig].cells[job.cell].is_ok() {
                continue;
            }
            let id = format!("{}-{j}-{iter}", ctx.work.prefix);
            let argv = match job.runtime {
                Some(ri) => {
                    let rt = &ctx.runtimes[ri];
                    work::track(&id, rt.delete_force(&id));
                    rt.argv(expand(job.template, &id, |k, n| ctx.resolve(k, n)))
                }
                None => expand(job.template, &id, |k, n| ctx.resolve(k, n)),
            };
            let cell = &mut figures[job.fig].cells[job.cell];
            match exec::timed(&argv, &stderr) {
                Ok(m) => {
                    work::untrack(&id);
                    if m.nudged {
                        cell.hangs += 1;
                    } else if iter >= warmup {
                        cell.samples.push(m.ms());
                    }
                }
                Err(e) => {
                    work::force_delete(&id);
                    if !interrupted() {
                        cell.fail(e);
                    }
                }
            }
        }
        let phase = if iter < warmup { "warm-up " } else { "" };
        ctx.progress.update(&format!(
            "{label}: {phase}iteration {}/{total} ({} commands each)",
            iter + 1,
            jobs.len()
        ));
        if interrupted() {
            break;
        }
    }
    exec::reap_zombies();
    figures
}

/// `create`, `start`, `delete`, each timed alone, and the peak RSS of the
/// runtime process during `create`. Between start and delete the container
/// is killed and reaped (untimed).
pub fn lifecycle(ctx: &mut Ctx, iterations: usize, warmup: usize) -> Vec<Figure> {
    let names = ["create", "start", "delete"];
    let mut times: Vec<Figure> = names
        .iter()
        .map(|n| {
            Figure::new(
                n,
                Section::Lifecycle,
                &format!("{n} (sleep)"),
                Unit::Ms,
                ctx.cells(),
            )
        })
        .collect();
    let mut rss = Figure::new(
        "rss-create",
        Section::Footprint,
        "peak RSS of the runtime process during create",
        Unit::MiB,
        ctx.cells(),
    );
    let stderr = ctx.stderr_file(0);
    let pid_file = ctx.work.path("lifecycle.pid");
    let bundle = ctx.bundles.path("sleep").unwrap_or_default();
    let mut order: Vec<usize> = (0..ctx.runtimes.len()).collect();
    let total = warmup + iterations;
    for iter in 0..total {
        ctx.rng.shuffle(&mut order);
        for &ri in &order {
            if interrupted() {
                break;
            }
            let rt = &ctx.runtimes[ri];
            if !times[0].cells[ri].is_ok() {
                continue;
            }
            let id = format!("{}-l{ri}-{iter}", ctx.work.prefix);
            let _ = std::fs::remove_file(&pid_file);
            work::track(&id, rt.delete_force(&id));
            let steps = one_lifecycle(rt, &id, &bundle, &pid_file, &stderr);
            match steps {
                Ok(measured) => {
                    work::untrack(&id);
                    if iter >= warmup {
                        for (f, m) in times.iter_mut().zip(measured) {
                            if m.nudged {
                                f.cells[ri].hangs += 1;
                            } else {
                                f.cells[ri].samples.push(m.ms());
                            }
                        }
                        rss.cells[ri]
                            .samples
                            .push(measured[0].maxrss_kib as f64 / 1024.0);
                    }
                }
                Err((step, e)) => {
                    work::force_delete(&id);
                    if interrupted() {
                        break;
                    }
                    times[step].cells[ri].fail(e);
                    if !times[step].cells[ri].is_ok() {
                        let why = format!("not measured: {} failed", names[step]);
                        for f in times.iter_mut().chain(std::iter::once(&mut rss)) {
                            f.cells[ri].stop(why.clone());
                        }
                    }
                }
            }
        }
        let phase = if iter < warmup { "warm-up " } else { "" };
        ctx.progress.update(&format!(
            "create/start/delete: {phase}iteration {}/{total}",
            iter + 1
        ));
        if interrupted() {
            break;
        }
    }
    exec::reap_zombies();
    times.push(rss);
    times
}

/// create, start, (kill, reap), delete. On error: which step, and why.
fn one_lifecycle(
    rt: &Runtime,
    id: &str,
    bundle: &str,
    pid_file: &std::path::Path,
    stderr: &std::path::Path,
) -> Result<[exec::Measured; 3], (usize, String)> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let pid_s = pid_file.to_string_lossy().into_owned();
    let create = exec::timed(
        &rt.argv(s(&["create", "--bundle", bundle, "--pid-file", &pid_s, id])),
        stderr,
    )
    .map_err(|e| (0, e))?;
    let pid: i32 = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .ok_or_else(|| (0, format!("create wrote no pid to {pid_s}")))?;
    let start = exec::timed(&rt.argv(s(&["start", id])), stderr).map_err(|e| (1, e))?;
    exec::quiet(&rt.argv(s(&["kill", id, "KILL"]))).map_err(|e| (2, e))?;
    if !exec::wait_gone(pid, Duration::from_secs(10)) {
        return Err((
            2,
            format!("container init {pid} still alive 10 s after kill"),
        ));
    }
    let delete = exec::timed(&rt.argv(s(&["delete", id])), stderr).map_err(|e| (2, e))?;
    Ok([create, start, delete])
}

/// Containers per second: `total` runs per runtime in blocks of `block`,
/// sequentially and in two parallel streams; each block's rate is a sample,
/// blocks of the runtimes interleaved.
pub fn throughput(ctx: &mut Ctx, total: usize, block: usize) -> Vec<Figure> {
    let mut figures = Vec::new();
    for (fig_id, streams) in [("throughput-seq", 1usize), ("throughput-par2", 2)] {
        let title = if streams == 1 {
            format!("{total} sequential runs")
        } else {
            format!("{total} runs in {streams} parallel streams")
        };
        let (fig, _) = blocks(
            ctx,
            fig_id,
            &title,
            streams,
            total,
            block,
            |_| Some(PLAIN_RUN),
            None,
        );
        figures.push(fig);
    }
    figures
}

/// The figures of [`warm_throughput`] (the promises test checks names).
#[cfg(test)]
pub const WARM_FIGURES: [&str; 4] = [
    "throughput-warm-seq",
    "warm-share-seq",
    "throughput-warm-par4",
    "warm-share-par4",
];

const PLAIN_RUN: &str = "run --bundle {bundle:plain} {id}";
const WARM_RUN: &str = "run --profile python-dev -- /bin/true";

/// Warm sandboxes per second (promise P5): `total` back-to-back `phantom
/// run --profile python-dev -- /bin/true` through the bench's daemon, from
/// one client and from four at once, against crun's `run` of the plain
/// bundle in the same streams. With each, the share of runs the daemon's
/// pool served warm (its `served`/`missed` counters around each block).
pub fn warm_throughput(
    ctx: &mut Ctx,
    total: usize,
    block: usize,
    status: &dyn Fn() -> Option<(u64, u64)>,
) -> Vec<Figure> {
    let mut figures = Vec::new();
    for (suffix, streams) in [("seq", 1usize), ("par4", 4)] {
        let title = if streams == 1 {
            format!("{total} warm sandboxes back to back, one client (crun: plain `run`)")
        } else {
            format!("{total} warm sandboxes from {streams} clients at once (crun: plain `run`)")
        };
        let command = |rt: &Runtime| match rt.name.as_str() {
            crate::promises::BINDING => Some(WARM_RUN),
            crate::runtimes::REFERENCE => Some(PLAIN_RUN),
            _ => None,
        };
        let (fig, share) = blocks(
            ctx,
            &format!("throughput-warm-{suffix}"),
            &title,
            streams,
            total,
            block,
            command,
            Some(status),
        );
        figures.push(fig);
        figures.push(share);
    }
    figures
}

/// The block loop of the throughput figures: `command(runtime)` (None: n/a)
/// run `total` times per runtime in blocks of `block`, over `streams`
/// parallel streams; a block's rate is one sample. With `warm`, the
/// daemon's (served, missed) counters are read around each block of the
/// binding phantom, and the second figure gets that block's warm share (%).
#[allow(clippy::too_many_arguments)]
fn blocks(
    ctx: &mut Ctx,
    fig_id: &str,
    title: &str,
    streams: usize,
    total: usize,
    block: usize,
    command: impl Fn(&Runtime) -> Option<&'static str>,
    warm: Option<&dyn Fn() -> Option<(u64, u64)>>,
) -> (Figure, Figure) {
    let mut cells = ctx.cells();
    for (ri, rt) in ctx.runtimes.iter().enumerate() {
        if command(rt).is_none() {
            cells[ri] = Cell::new(&rt.name, Status::NotApplicable, None);
        }
    }
    let mut fig = Figure::new(fig_id, Section::Throughput, title, Unit::PerSec, cells);
    let share_cells = ctx
        .runtimes
        .iter()
        .map(|rt| {
            if warm.is_some() && rt.name == crate::promises::BINDING {
                Cell::new(&rt.name, Status::Ok, None)
            } else {
                Cell::new(&rt.name, Status::NotApplicable, None)
            }
        })
        .collect();
    let mut share = Figure::new(
        &fig_id.replacen("throughput-warm-", "warm-share-", 1),
        Section::Throughput,
        &format!("share served warm by the daemon's pool: {title}"),
        Unit::Percent,
        share_cells,
    );
    let blocks = total.div_ceil(block.max(1));
    let mut order: Vec<usize> = (0..ctx.runtimes.len()).collect();
    for b in 0..blocks {
        ctx.rng.shuffle(&mut order);
        let n = block.min(total - b * block);
        for &ri in &order {
            if interrupted() || !fig.cells[ri].is_ok() {
                continue;
            }
            let rt = &ctx.runtimes[ri];
            let Some(template) = command(rt) else {
                continue;
            };
            let counted = warm.filter(|_| rt.name == crate::promises::BINDING);
            let before = counted.and_then(|f| f());
            let per_stream: Vec<usize> = (0..streams)
                .map(|s| n / streams + usize::from(s < n % streams))
                .collect();
            let start = Instant::now();
            let results: Vec<Result<usize, String>> = std::thread::scope(|scope| {
                let handles: Vec<_> = per_stream
                    .iter()
                    .enumerate()
                    .map(|(s, &k)| {
                        let stderr = ctx.stderr_file(1 + s);
                        let prefix = &ctx.work.prefix;
                        let bundles = ctx.bundles;
                        // Ok(runs that hung on a lost SIGCHLD), or the error.
                        scope.spawn(move || -> Result<usize, String> {
                            let mut hangs = 0;
                            for i in 0..k {
                                if interrupted() {
                                    return Ok(hangs);
                                }
                                let id = format!("{prefix}-{fig_id}-{ri}-{b}-{s}-{i}");
                                let named = template.contains("{id}");
                                if named {
                                    work::track(&id, rt.delete_force(&id));
                                }
                                let argv = rt.argv(expand(template, &id, |_, n| bundles.path(n)));
                                match exec::timed(&argv, &stderr) {
                                    Ok(m) => {
                                        if named {
                                            work::untrack(&id);
                                        }
                                        hangs += usize::from(m.nudged);
                                    }
                                    Err(e) => {
                                        if named {
                                            work::force_delete(&id);
                                        }
                                        return Err(e);
                                    }
                                }
                            }
                            Ok(hangs)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or(Err("stream panicked".into())))
                    .collect()
            });
            let secs = start.elapsed().as_secs_f64();
            if interrupted() {
                break;
            }
            // A block with a failure or a hang is not a sample.
            let cell = &mut fig.cells[ri];
            let mut clean = true;
            for r in results {
                match r {
                    Ok(0) => {}
                    Ok(h) => {
                        cell.hangs += h;
                        clean = false;
                    }
                    Err(e) => {
                        cell.fail(e);
                        clean = false;
                    }
                }
            }
            if clean {
                cell.samples.push(n as f64 / secs);
            }
            if let (Some((s0, m0)), Some((s1, m1))) = (before, counted.and_then(|f| f())) {
                let (served, missed) = (s1.saturating_sub(s0), m1.saturating_sub(m0));
                if clean && served + missed > 0 {
                    share.cells[ri]
                        .samples
                        .push(100.0 * served as f64 / (served + missed) as f64);
                }
            } else if counted.is_some() {
                share.cells[ri].stop("daemon --status gave no served/missed counts".into());
            }
        }
        ctx.progress.update(&format!(
            "{fig_id}, {streams} stream(s): block {}/{blocks} of {n} runs",
            b + 1
        ));
        exec::reap_zombies();
    }
    (fig, share)
}

/// Figures with one value per runtime. `seccomp_config` is the config.json
/// with Podman's seccomp profile; `iterations` of the AOT cache figure.
pub fn footprint(
    runtimes: &[Runtime],
    seccomp_config: Option<&str>,
    iterations: usize,
) -> Vec<Figure> {
    let mut size = Figure::new(
        "binary-size",
        Section::Footprint,
        "binary size (the executable file; shared libraries not counted)",
        Unit::MiB,
        Vec::new(),
    );
    let mut aot = Figure::new(
        "aot-cache",
        Section::Footprint,
        "AOT policy cache, Podman's seccomp profile: lookup on a miss (compile + store) minus on a hit (`phantom policy compile`, fresh vs primed PHANTOM_CACHE_DIR)",
        Unit::Ms,
        Vec::new(),
    );
    for rt in runtimes {
        let mut c = match &rt.unavailable {
            Some(why) => Cell::new(&rt.name, Status::Unavailable, Some(why.clone())),
            None => Cell::new(&rt.name, Status::Ok, None),
        };
        if c.is_ok() {
            c.samples.push(rt.binary_bytes as f64 / (1024.0 * 1024.0));
        }
        size.cells.push(c);
        aot.cells
            .push(match (&rt.unavailable, rt.is_phantom, seccomp_config) {
                (Some(why), _, _) => Cell::new(&rt.name, Status::Unavailable, Some(why.clone())),
                (None, true, Some(config)) => aot_cache(rt, config, iterations),
                (None, true, None) => Cell::new(
                    &rt.name,
                    Status::Unavailable,
                    Some("no seccomp bundle".into()),
                ),
                (None, false, _) => Cell::new(&rt.name, Status::NotApplicable, None),
            });
    }
    vec![size, aot]
}

/// `cache lookup: miss in 134.3 µs` -> ("miss", 0.1343 ms).
fn cache_lookup(text: &str) -> Option<(String, f64)> {
    let line = text.lines().find(|l| l.starts_with("cache lookup:"))?;
    let mut words = line["cache lookup:".len()..].split_whitespace();
    let outcome = words.next()?.to_string();
    let _in = words.next()?;
    let value: f64 = words.next()?.parse().ok()?;
    let ms = match words.next()? {
        "µs" | "us" => value / 1000.0,
        "ms" => value,
        "s" => value * 1000.0,
        "ns" => value / 1e6,
        _ => return None,
    };
    Some((outcome, ms))
}

/// Per iteration: a fresh cache directory (a miss: compile and store),
/// then the same directory again (a hit); the sample is the difference.
fn aot_cache(rt: &Runtime, config: &str, iterations: usize) -> Cell {
    let mut cell = Cell::new(&rt.name, Status::Ok, None);
    let exe = rt.exe.to_string_lossy().into_owned();
    let (mut misses, mut hits) = (Vec::new(), Vec::new());
    for _ in 0..iterations.max(1) {
        if interrupted() {
            break;
        }
        let Ok(dir) = tempfile_dir() else {
            cell.status = Status::Failed;
            cell.note = Some("cannot make a cache directory".into());
            return cell;
        };
        let run = || {
            std::process::Command::new(&exe)
                .args(["policy", "compile", config])
                .env("PHANTOM_CACHE_DIR", &dir)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| cache_lookup(&String::from_utf8_lossy(&o.stdout)))
        };
        let first = run();
        let second = run();
        let _ = std::fs::remove_dir_all(&dir);
        match (first, second) {
            (Some((m, miss)), Some((h, hit))) if m == "miss" && h == "hit" => {
                misses.push(miss);
                hits.push(hit);
                cell.samples.push(miss - hit);
            }
            other => {
                cell.status = Status::Failed;
                cell.note = Some(format!("unexpected cache outcomes {other:?}"));
                return cell;
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    cell.note = Some(format!(
        "miss {:.0} µs, hit {:.0} µs (medians)",
        median(&mut misses) * 1000.0,
        median(&mut hits) * 1000.0
    ));
    cell
}

fn tempfile_dir() -> std::io::Result<PathBuf> {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("phantom-bench-cache-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir(&d)?;
    Ok(d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_cache_lookup_line() {
        let t = "policy: x\ncache lookup: miss in 134.3 µs\ninstructions: 393 BPF\n";
        assert_eq!(super::cache_lookup(t), Some(("miss".to_string(), 0.1343)));
        assert_eq!(super::cache_lookup("nothing"), None);
    }

    use super::*;

    #[test]
    fn shuffle_is_a_permutation() {
        let mut rng = Rng::new(42);
        let mut v: Vec<usize> = (0..10).collect();
        rng.shuffle(&mut v);
        let mut s = v.clone();
        s.sort();
        assert_eq!(s, (0..10).collect::<Vec<_>>());
        // And it does move things, with this seed.
        assert_ne!(v, s);
    }
}

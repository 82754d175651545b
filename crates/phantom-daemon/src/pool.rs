//! The pools: per profile (and kind), zygote runners that are ready or
//! starting. Sizes follow demand: a moving average of requests per second
//! times the time a zygote takes to get ready, within the pool's min..max,
//! the memory budget, and back to min under memory or CPU pressure.
//!
//! Runners are started from one long-lived thread: a runner dies with the
//! thread that forked it (PR_SET_PDEATHSIG follows the thread), and tokio
//! ends idle threads.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use phantom_runtime::state::StateStore;
use phantom_zygote::wire::pidfd_open;
use serde_json::{json, Value};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{oneshot, Notify};

use crate::config::{Config, PoolConfig, PoolKind};
use crate::metrics::Metrics;
use crate::pressure;

/// A zygote that waits for a request (plain), or serves them (python).
#[derive(Debug, Clone)]
pub struct Ready {
    pub id: String,
    pub pid: i32,
    pub socket: PathBuf,
    pub workspace: String,
    pub kind: PoolKind,
}

struct Pool {
    cfg: PoolConfig,
    target: usize,
    ready: Vec<Ready>,
    starting: usize,
    /// Round robin over shared (python) zygotes.
    next: usize,
    /// Requests since the last rate update, and their moving average (/s).
    demand: u64,
    rate: f64,
    /// Moving average of the time a zygote takes to get ready (s).
    startup: f64,
    /// Requests this pool served, and requests for it that went cold.
    served: u64,
    missed: u64,
    failures: u32,
    retry_at: Option<Instant>,
    /// A refill waits until the request that took a zygote has started,
    /// so that making the next one does not take its CPU.
    refill_at: Option<Instant>,
}

impl Pool {
    /// A request this pool served (warm), or one for it that went cold:
    /// its own count (`daemon --status`) and the metric.
    fn count(&mut self, metrics: &Metrics, served: bool) {
        let (n, family) = if served {
            (&mut self.served, &metrics.pool_served)
        } else {
            (&mut self.missed, &metrics.pool_missed)
        };
        *n += 1;
        family
            .get_or_create(&Metrics::pool(&self.cfg.profile, self.cfg.kind.name()))
            .inc();
    }
}

/// How long a refill waits after a hand-out while the pool still has a
/// zygote ready (an empty pool refills at once).
const REFILL_DELAY: Duration = Duration::from_millis(30);

/// Warm exec for one running sandbox: at most one process joined to it,
/// started when an exec finds none, so the next one is warm.
struct ExecSlot {
    ready: Option<Ready>,
    starting: bool,
    last_used: Instant,
}

/// Sandboxes with a warm exec at a time, and how long an unused one stays.
const MAX_EXEC_SLOTS: usize = 64;
const EXEC_IDLE: Duration = Duration::from_secs(300);

struct State {
    pools: Vec<Pool>,
    exec: HashMap<String, ExecSlot>,
    /// Live runners: pid -> zygote id.
    live: HashMap<i32, String>,
    draining: bool,
    /// Measured proportional set size of one pooled zygote (runner + init).
    pss_per_zygote: u64,
    under_pressure: bool,
    last_rates: Instant,
}

enum Purpose {
    Pool(usize),
    /// A warm exec in this sandbox.
    Exec(String),
    OnDemand(oneshot::Sender<Result<Ready>>),
}

type SpawnJob = (Command, oneshot::Sender<std::io::Result<Child>>);

pub struct Pools {
    cfg: Arc<Config>,
    exe: PathBuf,
    zyg_dir: PathBuf,
    metrics: Arc<Metrics>,
    state: Mutex<State>,
    wake: Notify,
    /// Signalled when a pool's zygote got ready or failed to: requests
    /// waiting for one being made look again.
    made: Notify,
    spawner: Mutex<std::sync::mpsc::Sender<SpawnJob>>,
    /// Signalled when a runner is gone (drain waits on it).
    gone: Notify,
    /// Zygotes made at once, at most: the CPUs (more would only slow each
    /// one down, and with it the request waiting for it).
    parallel: usize,
}

/// A first guess of one zygote's PSS until one is measured.
const PSS_GUESS: u64 = 4 << 20;

impl Pools {
    pub fn new(cfg: Arc<Config>, metrics: Arc<Metrics>) -> Result<Arc<Pools>> {
        let zyg_dir = cfg
            .socket
            .parent()
            .unwrap_or(Path::new("/run/phantom"))
            .join("zygotes");
        std::fs::create_dir_all(&zyg_dir)
            .with_context(|| format!("create {}", zyg_dir.display()))?;
        // Sockets a daemon killed with -9 left; its runners died with it.
        for e in std::fs::read_dir(&zyg_dir)?.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
        phantom_zygote::runner::sweep(&StateStore::new(&cfg.root));
        let (tx, rx) = std::sync::mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("phantom-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .context("start the spawner thread")?;
        let pools = cfg
            .pools
            .iter()
            .map(|c| Pool {
                cfg: c.clone(),
                target: c.min,
                ready: Vec::new(),
                starting: 0,
                next: 0,
                demand: 0,
                rate: 0.0,
                startup: 0.1,
                served: 0,
                missed: 0,
                failures: 0,
                retry_at: None,
                refill_at: None,
            })
            .collect();
        Ok(Arc::new(Pools {
            exe: phantom_zygote::runtime_binary().context("locate the phantom binary")?,
            zyg_dir,
            metrics,
            state: Mutex::new(State {
                pools,
                exec: HashMap::new(),
                live: HashMap::new(),
                draining: false,
                pss_per_zygote: PSS_GUESS,
                under_pressure: false,
                last_rates: Instant::now(),
            }),
            wake: Notify::new(),
            made: Notify::new(),
            spawner: Mutex::new(tx),
            gone: Notify::new(),
            parallel: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cfg,
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A zygote under `profile`: a Python fork server when `python` (the
    /// command is one it serves, with no files or limits of its own) and
    /// such a pool has one ready, else a plain zygote, which leaves the
    /// pool.
    pub fn acquire(&self, profile: &str, python: bool) -> Option<Ready> {
        let got = self.take(profile, python, true);
        if got.is_none() {
            self.count_miss(profile);
        }
        got
    }

    /// A request for `profile`'s pool that goes cold.
    fn count_miss(&self, profile: &str) {
        let mut st = self.lock();
        if let Some(p) = st
            .pools
            .iter_mut()
            .find(|p| p.cfg.profile == profile && p.cfg.kind == PoolKind::Zygote)
        {
            p.count(&self.metrics, false);
        }
    }

    /// As [`Pools::acquire`], but when the pool is empty while a zygote
    /// for it is being made, wait for that one rather than start a cold
    /// sandbox that competes with it for the CPU: at most the pool's
    /// measured make time and a half (10 ms to 2 s). Back-to-back requests
    /// on a small pool then stay warm instead of every other one going cold.
    pub async fn acquire_waiting(&self, profile: &str, python: bool) -> Option<Ready> {
        let mut count = true;
        let mut deadline = None;
        loop {
            // Registered before looking, so a zygote made in between wakes us.
            let made = self.made.notified();
            tokio::pin!(made);
            made.as_mut().enable();
            if let Some(z) = self.take(profile, python, count) {
                return Some(z);
            }
            let Some(bound) = self.being_made(profile, python) else {
                self.count_miss(profile);
                return None;
            };
            if count {
                // A request that has to wait says the pool is short: it
                // counts twice towards the rate its target follows.
                self.count_wait(profile);
            }
            count = false;
            let until = *deadline.get_or_insert_with(|| tokio::time::Instant::now() + bound);
            if tokio::time::timeout_at(until, made).await.is_err() {
                let got = self.take(profile, python, false);
                if got.is_none() {
                    self.count_miss(profile);
                }
                return got;
            }
        }
    }

    fn count_wait(&self, profile: &str) {
        let mut st = self.lock();
        if let Some(p) = st
            .pools
            .iter_mut()
            .find(|p| p.cfg.profile == profile && p.cfg.kind == PoolKind::Zygote)
        {
            p.demand += 1;
        }
    }

    /// How long to wait for a zygote of this request's pool that is being
    /// made; None when none is.
    fn being_made(&self, profile: &str, python: bool) -> Option<Duration> {
        let st = self.lock();
        if st.draining {
            return None;
        }
        st.pools
            .iter()
            .filter(|p| p.cfg.profile == profile)
            .filter(|p| {
                p.cfg.kind == PoolKind::Zygote || (python && p.cfg.kind == PoolKind::Python)
            })
            .filter(|p| p.starting > 0)
            .map(|p| Duration::from_secs_f64((p.startup * 1.5).clamp(0.01, 2.0)))
            .max()
    }

    fn take(&self, profile: &str, python: bool, count_demand: bool) -> Option<Ready> {
        let mut st = self.lock();
        if st.draining {
            return None;
        }
        let mut got = None;
        if python {
            if let Some(p) = st
                .pools
                .iter_mut()
                .find(|p| p.cfg.profile == profile && p.cfg.kind == PoolKind::Python)
            {
                if count_demand {
                    p.demand += 1;
                }
                if !p.ready.is_empty() {
                    p.next = (p.next + 1) % p.ready.len();
                    got = Some(p.ready[p.next].clone());
                    p.count(&self.metrics, true);
                }
            }
        }
        if got.is_none() {
            if let Some(p) = st
                .pools
                .iter_mut()
                .find(|p| p.cfg.profile == profile && p.cfg.kind == PoolKind::Zygote)
            {
                if count_demand {
                    p.demand += 1;
                }
                if !p.ready.is_empty() {
                    got = Some(p.ready.remove(0));
                    p.count(&self.metrics, true);
                    if !p.ready.is_empty() {
                        p.refill_at = Some(Instant::now() + REFILL_DELAY);
                    }
                }
            }
        }
        drop(st);
        self.wake.notify_one();
        got
    }

    /// The warm exec of sandbox `id`, if one is ready; either way one is
    /// started for the next exec (the sandbox must be one of phantom's:
    /// the runner refuses anything else).
    pub fn acquire_exec(self: &Arc<Self>, id: &str) -> Option<Ready> {
        if phantom_runtime::state::validate_id(id).is_err() {
            return None;
        }
        let mut st = self.lock();
        if st.draining {
            return None;
        }
        let full = st.exec.len() >= MAX_EXEC_SLOTS;
        let slot = match st.exec.get_mut(id) {
            Some(s) => s,
            None if full => return None,
            None => st.exec.entry(id.to_string()).or_insert(ExecSlot {
                ready: None,
                starting: false,
                last_used: Instant::now(),
            }),
        };
        slot.last_used = Instant::now();
        let got = slot.ready.take();
        let start = !slot.starting;
        if start {
            slot.starting = true;
        }
        drop(st);
        if start {
            let me = Arc::clone(self);
            let id = id.to_string();
            tokio::spawn(async move {
                if let Err(e) = me
                    .start_runner(&id, PoolKind::Zygote, Purpose::Exec(id.clone()))
                    .await
                {
                    tracing::error!("warm exec for {id}: {e:#}");
                    me.lock().exec.remove(&id);
                }
            });
        }
        got
    }

    /// A zygote made for one request (the cold path of the REST API).
    pub async fn on_demand(self: &Arc<Self>, profile: &str) -> Result<Ready> {
        let (tx, rx) = oneshot::channel();
        self.start_runner(profile, PoolKind::Zygote, Purpose::OnDemand(tx))
            .await?;
        rx.await
            .map_err(|_| anyhow!("the zygote runner vanished"))?
    }

    async fn start_runner(
        self: &Arc<Self>,
        profile: &str,
        kind: PoolKind,
        purpose: Purpose,
    ) -> Result<()> {
        let id = format!(
            "{}{}",
            phantom_zygote::ZYGOTE_PREFIX,
            phantom_zygote::random_hex(6)
        );
        let socket = self.zyg_dir.join(format!("{id}.sock"));
        let mut cmd = Command::new(&self.exe);
        cmd.arg("--root")
            .arg(&self.cfg.root)
            .arg("zygote-serve")
            .arg("--socket")
            .arg(&socket);
        if let Purpose::Exec(sandbox) = &purpose {
            cmd.arg("--exec").arg(sandbox);
        } else {
            cmd.arg("--profile").arg(profile).arg("--id").arg(&id);
        }
        if let Some(p) = &self.cfg.profile_path {
            cmd.arg("--profile-path").arg(p);
        }
        if kind == PoolKind::Python && !matches!(purpose, Purpose::Exec(_)) {
            cmd.arg("--python");
            if !self.cfg.python_modules.is_empty() {
                cmd.arg("--modules").arg(self.cfg.python_modules.join(","));
            }
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::piped());
        let (tx, rx) = oneshot::channel();
        self.spawner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send((cmd, tx))
            .map_err(|_| anyhow!("the spawner thread is gone"))?;
        let child = rx
            .await
            .map_err(|_| anyhow!("the spawner thread is gone"))?
            .with_context(|| format!("start a zygote runner for {profile}"))?;
        let pid = child.id() as i32;
        self.lock().live.insert(pid, id.clone());
        let me = Arc::clone(self);
        let profile = profile.to_string();
        tokio::spawn(async move {
            me.supervise(child, pid, id, socket, profile, kind, purpose)
                .await
        });
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn supervise(
        self: Arc<Self>,
        mut child: Child,
        pid: i32,
        id: String,
        socket: PathBuf,
        profile: String,
        kind: PoolKind,
        purpose: Purpose,
    ) {
        let t0 = Instant::now();
        // Death is noticed through a pidfd, whatever the runner was doing.
        let pidfd = pidfd_open(pid).and_then(|fd| {
            // SAFETY: the AsyncFd owns the OwnedFd, which stays open and the
            // same until the AsyncFd is dropped.
            unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
                .map_err(|e| anyhow!("watch runner {pid}: {e}"))
        });
        let first = match (&pidfd, child.stdout.take()) {
            (Ok(pidfd), Some(out)) => first_line(pidfd, out).await,
            (Err(e), _) => Err(anyhow!("{e:#}")),
            (_, None) => Err(anyhow!("no stdout")),
        };
        let labels = Metrics::pool(&profile, kind.name());
        let mut pool_idx = None;
        let mut exec_slot = None;
        match (first, purpose) {
            (Ok(workspace), purpose) => {
                let ready = Ready {
                    id: id.clone(),
                    pid,
                    socket: socket.clone(),
                    workspace,
                    kind,
                };
                match purpose {
                    Purpose::Pool(i) => {
                        pool_idx = Some(i);
                        let mut st = self.lock();
                        if st.draining {
                            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGTERM);
                        }
                        let p = &mut st.pools[i];
                        p.starting -= 1;
                        p.startup = 0.7 * p.startup + 0.3 * t0.elapsed().as_secs_f64();
                        p.failures = 0;
                        p.ready.push(ready);
                        drop(st);
                        self.made.notify_waiters();
                        self.metrics.pool_refills.get_or_create(&labels).inc();
                    }
                    Purpose::OnDemand(tx) => {
                        let _ = tx.send(Ok(ready));
                    }
                    Purpose::Exec(sandbox) => {
                        let mut st = self.lock();
                        match st.exec.get_mut(&sandbox) {
                            Some(slot) => {
                                slot.starting = false;
                                slot.ready = Some(ready);
                            }
                            // Dropped meanwhile (idle, or the daemon drains).
                            None => {
                                let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGTERM);
                            }
                        }
                        exec_slot = Some(sandbox);
                    }
                }
            }
            (Err(e), purpose) => {
                if let Purpose::Exec(_) = purpose {
                    // Usually the sandbox ended; exec falls back to cold.
                    tracing::debug!("warm exec for {profile}: {e:#}");
                } else {
                    tracing::error!("zygote runner for {profile}: {e:#}");
                    eprintln!("phantom daemon: a zygote for {profile} did not start: {e:#}");
                }
                // A runner that is not ready may be stuck where it does not
                // read its signals: SIGKILL; its sandbox is removed below.
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
                match purpose {
                    Purpose::Pool(i) => {
                        let mut st = self.lock();
                        let p = &mut st.pools[i];
                        p.starting -= 1;
                        p.failures += 1;
                        // Back off, so a broken profile does not spin.
                        let wait = Duration::from_millis(250 << p.failures.min(7));
                        p.retry_at = Some(Instant::now() + wait);
                        drop(st);
                        self.made.notify_waiters();
                    }
                    Purpose::OnDemand(tx) => {
                        let _ = tx.send(Err(e));
                    }
                    // The sandbox is gone or is not one of phantom's: no
                    // warm exec for it.
                    Purpose::Exec(sandbox) => {
                        self.lock().exec.remove(&sandbox);
                    }
                }
            }
        }
        if let Ok(pidfd) = &pidfd {
            let _ = pidfd.readable().await;
        }
        let _ = tokio::task::spawn_blocking(move || child.wait()).await;
        {
            let mut st = self.lock();
            st.live.remove(&pid);
            if let Some(sandbox) = exec_slot {
                // Unused and dead: the sandbox ended. Used: the next exec
                // starts a new one.
                if st
                    .exec
                    .get(&sandbox)
                    .is_some_and(|s| s.ready.as_ref().is_some_and(|r| r.pid == pid))
                {
                    st.exec.remove(&sandbox);
                }
            }
            let draining = st.draining;
            if let Some(i) = pool_idx {
                let p = &mut st.pools[i];
                if let Some(pos) = p.ready.iter().position(|r| r.pid == pid) {
                    // It died while pooled (never handed out, or a shared
                    // fork server): replaced by the next refill.
                    p.ready.remove(pos);
                    if !draining {
                        self.metrics.pool_replaced.get_or_create(&labels).inc();
                        tracing::warn!("zygote {id} of {profile} died while pooled; replacing it");
                    }
                }
            }
        }
        // The runner removes its sandbox; this covers a runner killed hard.
        let root = self.cfg.root.clone();
        let _ = tokio::task::spawn_blocking(move || {
            phantom_zygote::runner::cleanup(&StateStore::new(&root), &id)
        })
        .await;
        let _ = std::fs::remove_file(&socket);
        self.gone.notify_waiters();
        self.wake.notify_one();
    }

    /// Keeps the pools at their targets until the daemon drains.
    pub async fn manage(self: Arc<Self>) {
        let mut last_pss = Instant::now() - Duration::from_secs(60);
        loop {
            let next_refill = self
                .lock()
                .pools
                .iter()
                .filter_map(|p| p.refill_at)
                .min()
                .map(|t| t.saturating_duration_since(Instant::now()));
            let tick = next_refill.map_or(Duration::from_millis(250), |d| {
                d.min(Duration::from_millis(250))
            });
            let _ = tokio::time::timeout(tick, self.wake.notified()).await;
            if last_pss.elapsed() > Duration::from_secs(10) {
                last_pss = Instant::now();
                self.measure_pss();
            }
            let mut starts = Vec::new();
            {
                let mut st = self.lock();
                if st.draining {
                    return;
                }
                let now = Instant::now();
                let dt = now.duration_since(st.last_rates).as_secs_f64();
                if dt >= 1.0 {
                    st.last_rates = now;
                    st.under_pressure = pressure::high();
                    for p in &mut st.pools {
                        p.rate = 0.6 * p.rate + 0.4 * (p.demand as f64 / dt);
                        p.demand = 0;
                    }
                }
                // Warm execs nobody used for a while go.
                let idle: Vec<String> = st
                    .exec
                    .iter()
                    .filter(|(_, s)| now.duration_since(s.last_used) > EXEC_IDLE)
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in idle {
                    if let Some(r) = st.exec.remove(&k).and_then(|s| s.ready) {
                        let _ = nix::sys::signal::kill(Pid::from_raw(r.pid), Signal::SIGTERM);
                    }
                }
                let cap = usize::try_from(self.cfg.memory_budget / st.pss_per_zygote.max(1))
                    .unwrap_or(usize::MAX)
                    .max(1);
                let total: usize = st.pools.iter().map(|p| p.ready.len() + p.starting).sum();
                let under_pressure = st.under_pressure;
                let mut eligible = vec![false; st.pools.len()];
                for (i, p) in st.pools.iter_mut().enumerate() {
                    p.target = target(p, under_pressure);
                    let labels = Metrics::pool(&p.cfg.profile, p.cfg.kind.name());
                    self.metrics
                        .pool_target
                        .get_or_create(&labels)
                        .set(p.target as i64);
                    self.metrics
                        .pool_ready
                        .get_or_create(&labels)
                        .set(p.ready.len() as i64);
                    if p.retry_at.is_some_and(|t| t > now) {
                        continue;
                    }
                    match p.refill_at {
                        Some(t) if t > now && !p.ready.is_empty() => continue,
                        _ => p.refill_at = None,
                    }
                    eligible[i] = true;
                }
                for i in plan_refills(&st.pools, &eligible, total, cap, self.parallel) {
                    let p = &mut st.pools[i];
                    p.starting += 1;
                    starts.push((i, p.cfg.profile.clone(), p.cfg.kind));
                }
            }
            for (i, profile, kind) in starts {
                if let Err(e) = self.start_runner(&profile, kind, Purpose::Pool(i)).await {
                    tracing::error!("{e:#}");
                    let mut st = self.lock();
                    st.pools[i].starting -= 1;
                    st.pools[i].retry_at = Some(Instant::now() + Duration::from_secs(1));
                }
            }
        }
    }

    /// PSS of one ready zygote: its runner and the sandbox init under it.
    fn measure_pss(&self) {
        let pid = {
            let st = self.lock();
            st.pools.iter().find_map(|p| p.ready.first().map(|r| r.pid))
        };
        let Some(pid) = pid else { return };
        let mut total = pressure::pss(pid);
        for c in pressure::children(pid) {
            total += pressure::pss(c);
        }
        if total > 0 {
            self.lock().pss_per_zygote = total;
        }
    }

    /// The state directory of the sandboxes this daemon serves.
    pub fn root(&self) -> &Path {
        &self.cfg.root
    }

    /// The profile `name` as this daemon makes zygotes of it (its
    /// `--profile-path` first, then the system's and the built-in ones).
    pub fn profile(
        &self,
        name: &str,
    ) -> Result<phantom_policy::Profile, phantom_policy::ProfileError> {
        let extra: Vec<PathBuf> = self.cfg.profile_path.iter().cloned().collect();
        phantom_policy::Catalog::load(&phantom_policy::Catalog::search_dirs(&extra))
            .get(name)
            .map(|e| e.profile.clone())
    }

    /// Pool sizes for `GET /v1/pools` and `daemon --status`.
    pub fn report(&self) -> Value {
        let st = self.lock();
        let pools: Vec<Value> = st
            .pools
            .iter()
            .map(|p| {
                json!({
                    "profile": p.cfg.profile,
                    "kind": p.cfg.kind.name(),
                    "ready": p.ready.len(),
                    "starting": p.starting,
                    "target": p.target,
                    "min": p.cfg.min,
                    "max": p.cfg.max,
                    "requests_per_second": (p.rate * 100.0).round() / 100.0,
                    "served": p.served,
                    "missed": p.missed,
                })
            })
            .collect();
        json!({
            "pools": pools,
            "pss_per_zygote_bytes": st.pss_per_zygote,
            "memory_budget_bytes": self.cfg.memory_budget,
            "under_pressure": st.under_pressure,
            "warm_execs": st.exec.values().filter(|s| s.ready.is_some()).count(),
        })
    }

    /// Stop taking requests; stop the idle runners at once and let busy
    /// ones (a warm `run` or `exec` under way) finish, up to `wait`; then
    /// stop the rest. Each runner removes its sandbox; what one that does
    /// not stop leaves is removed here.
    pub async fn drain(&self, wait: Duration) {
        let all: Vec<(i32, String)> = {
            let mut st = self.lock();
            st.draining = true;
            st.live.iter().map(|(p, i)| (*p, i.clone())).collect()
        };
        let until = Instant::now() + wait;
        loop {
            let (idle, busy) = {
                let st = self.lock();
                let waiting: Vec<i32> = st
                    .pools
                    .iter()
                    .flat_map(|p| p.ready.iter().map(|r| r.pid))
                    .chain(
                        st.exec
                            .values()
                            .filter_map(|s| s.ready.as_ref().map(|r| r.pid)),
                    )
                    .collect();
                let busy = st.live.keys().filter(|p| !waiting.contains(p)).count();
                (waiting, busy)
            };
            for pid in &idle {
                let _ = nix::sys::signal::kill(Pid::from_raw(*pid), Signal::SIGTERM);
            }
            if busy == 0 || Instant::now() >= until {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), self.gone.notified()).await;
        }
        let left: Vec<i32> = self.lock().live.keys().copied().collect();
        for pid in &left {
            let _ = nix::sys::signal::kill(Pid::from_raw(*pid), Signal::SIGTERM);
        }
        let until = Instant::now() + Duration::from_secs(10);
        while !self.lock().live.is_empty() && Instant::now() < until {
            let _ = tokio::time::timeout(Duration::from_millis(100), self.gone.notified()).await;
        }
        let left: Vec<i32> = self.lock().live.keys().copied().collect();
        for pid in left {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let root = self.cfg.root.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let store = StateStore::new(&root);
            for (_, id) in all {
                phantom_zygote::runner::cleanup(&store, &id);
            }
        })
        .await;
    }
}

/// The size a pool aims for: enough to cover the requests that arrive
/// while a zygote gets ready (twice over), within min..max; min under
/// pressure. Python fork servers are shared, so min of them is enough.
fn target(p: &Pool, under_pressure: bool) -> usize {
    if under_pressure || p.cfg.kind == PoolKind::Python {
        return p.cfg.min;
    }
    let want = (p.rate * p.startup.max(0.01) * 2.0).ceil() as usize;
    want.clamp(p.cfg.min, p.cfg.max)
}

/// The pools that start a zygote now, one entry per start. Pools below
/// their target take turns, the emptiest first, while fewer than
/// `parallel` zygotes are being made and `cap` (the memory budget's count)
/// is not reached; `eligible` leaves out pools backing off after a failure
/// or waiting out a refill delay.
fn plan_refills(
    pools: &[Pool],
    eligible: &[bool],
    total: usize,
    cap: usize,
    parallel: usize,
) -> Vec<usize> {
    let mut making: usize = pools.iter().map(|p| p.starting).sum();
    let mut have: Vec<usize> = pools.iter().map(|p| p.ready.len() + p.starting).collect();
    let mut total = total;
    let mut order: Vec<usize> = (0..pools.len()).filter(|&i| eligible[i]).collect();
    order.sort_by_key(|&i| pools[i].ready.len());
    let mut out = Vec::new();
    loop {
        let mut any = false;
        for &i in &order {
            if making >= parallel || total >= cap {
                return out;
            }
            if have[i] < pools[i].target {
                have[i] += 1;
                making += 1;
                total += 1;
                out.push(i);
                any = true;
            }
        }
        if !any {
            return out;
        }
    }
}

/// The runner's first line: `ready WORKSPACE`, before it exits or a minute
/// passes.
async fn first_line(pidfd: &AsyncFd<OwnedFd>, out: std::process::ChildStdout) -> Result<String> {
    let fd = OwnedFd::from(out);
    let rx =
        tokio::net::unix::pipe::Receiver::from_owned_fd(fd).context("watch the runner's stdout")?;
    let mut lines = BufReader::new(rx).lines();
    let line = tokio::select! {
        l = lines.next_line() => l.context("read the runner's stdout")?,
        _ = tokio::time::sleep(Duration::from_secs(60)) => {
            return Err(anyhow!("not ready after 60 s"));
        }
        _ = async { let _ = pidfd.readable().await; tokio::time::sleep(Duration::from_millis(50)).await } => None,
    };
    match line {
        Some(l) if l.starts_with("ready") => Ok(l["ready".len()..].trim().to_string()),
        Some(l) => Err(anyhow!("unexpected output {l:?}")),
        None => Err(anyhow!("the runner exited before its zygote was ready")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(min: usize, max: usize, rate: f64, startup: f64) -> Pool {
        Pool {
            cfg: PoolConfig {
                profile: "p".into(),
                kind: PoolKind::Zygote,
                min,
                max,
            },
            target: min,
            ready: Vec::new(),
            starting: 0,
            next: 0,
            demand: 0,
            rate,
            startup,
            served: 0,
            missed: 0,
            failures: 0,
            retry_at: None,
            refill_at: None,
        }
    }

    /// Refills share the CPUs: at most `parallel` at once, pools taking
    /// turns with the emptiest first, within the memory cap.
    #[test]
    fn refills_take_turns_up_to_the_cpus() {
        let mut a = pool(1, 8, 0.0, 0.1);
        a.target = 4;
        let mut b = pool(1, 8, 0.0, 0.1);
        b.target = 2;
        b.ready.push(Ready {
            id: "zyg-b".into(),
            pid: 1,
            socket: PathBuf::new(),
            workspace: String::new(),
            kind: PoolKind::Zygote,
        });
        let pools = [a, b];
        assert_eq!(plan_refills(&pools, &[true, true], 1, 100, 2), [0, 1]);
        assert_eq!(
            plan_refills(&pools, &[true, true], 1, 100, 8),
            [0, 1, 0, 0, 0]
        );
        assert_eq!(plan_refills(&pools, &[false, true], 1, 100, 8), [1]);
        // The memory cap counts what is ready too.
        assert_eq!(plan_refills(&pools, &[true, true], 1, 3, 8), [0, 1]);
        // Zygotes already being made count against the CPUs.
        let mut busy = pools;
        busy[0].starting = 2;
        assert_eq!(
            plan_refills(&busy, &[true, true], 3, 100, 2),
            Vec::<usize>::new()
        );
        assert_eq!(plan_refills(&busy, &[true, true], 3, 100, 3), [0]);
    }

    #[test]
    fn target_follows_demand_within_bounds() {
        assert_eq!(target(&pool(1, 8, 0.0, 0.1), false), 1);
        // 20 requests/s, 0.1 s to get ready: 2 in flight, twice over.
        assert_eq!(target(&pool(1, 8, 20.0, 0.1), false), 4);
        assert_eq!(target(&pool(1, 8, 500.0, 0.1), false), 8);
        assert_eq!(target(&pool(1, 8, 500.0, 0.1), true), 1);
    }
}

//! Running pools by tenant name. A pool is created by the first request for its tenant,
//! replaced gracefully when the tenant's resolved settings change, scaled down when idle, and
//! kept within the global process budget (`max_workers_total`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dashmap::DashMap;
use tokio::time::Instant;

use crate::counters::Counters;
use crate::counters::Reason;
use crate::identity::{self, IdentityError};
use crate::pool::{Pool, Status};
use crate::spawn::{Spawn, Starter};
use paddock_config::tenant::TenantSpec;

/// Why no pool could be had for a tenant. All of them are for the log; the client gets a plain
/// 503.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The global budget is taken and no pool became idle within the tenant's `queue_timeout`.
    #[error("max_workers_total ({limit}) reached and no pool is idle")]
    Budget { limit: usize },
    /// The tenant alone needs more processes than the whole budget.
    #[error("tenant `{tenant}` needs {need} processes but max_workers_total is {limit}")]
    TooBig { tenant: String, need: usize, limit: usize },
    /// Which user to run its workers as could not be decided.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("tenant `{tenant}`: cannot create its socket: {source}")]
    Socket { tenant: String, source: std::io::Error },
}

/// A failed pool start, as kept for the admin API.
#[derive(Debug, Clone)]
pub struct StartFailure {
    pub at: SystemTime,
    pub error: String,
}

pub struct Registry {
    pools: DashMap<String, Arc<Pool>>,
    /// The last start failure of each tenant whose pool could not start (cleared by a start).
    failures: DashMap<String, StartFailure>,
    /// Tenants whose pool is being replaced: requests keep using the old one meanwhile.
    replacing: DashMap<String, ()>,
    /// Each tenant's counters, kept across pool replacements (for `/metrics`): a few atomics
    /// per tenant that ever had a pool.
    counters: DashMap<String, Arc<Counters>>,
    runtime_dir: PathBuf,
    worker_bin: PathBuf,
    allow_root: bool,
    max_workers_total: usize,
    /// A pool runs this long before it may be stopped to make room ([`MIN_RESIDENCY`] unless
    /// set with [`Registry::with_min_residency`]).
    min_residency: Duration,
    /// How the pools' slots start their workers.
    starter: Arc<dyn Starter>,
    /// Workers starting at once, across every pool ([`max_starting`]).
    starts: Arc<tokio::sync::Semaphore>,
}

/// How many workers may be starting (from spawn to ready) at once across all pools: twice
/// the CPUs. A start is mostly the app's imports, on one CPU; more at once only makes every
/// one of them later, and a node that takes over a crashed node's tenants, or a host
/// restarted under load, would otherwise fork hundreds together.
/// By default a pool is not stopped to make room for another before it has run this long
/// (since its start or its last unpark): under a budget smaller than the active set, evicting
/// younger pools only trades one cold start for the next (issue 14: pools evicted 4 s after
/// their start, 1,114 evictions in 90 s, spawns eating the CPU). The `min_residency` setting.
pub const MIN_RESIDENCY: Duration = paddock_config::DEFAULT_MIN_RESIDENCY;

/// Nor, while a cold tenant has waited less than [`PATIENCE`], if it had a request this
/// recently (it is likely to have the next one soon).
pub const RECENT: Duration = Duration::from_secs(5);

/// How long a cold tenant waits for a pool that has been quiet for [`RECENT`] before it may
/// stop one that had a request more recently but has nothing in flight or queued. Without
/// it, traffic spread over more tenants than fit kept every pool "recent", and each cold
/// request waited its whole `queue_timeout` for a 503 (the soak: 305 requests in 127 s, 50
/// of them 503, with 50 tenants and `max_workers_total = 12`); `min_residency` still
/// bounds the stops to `max_workers_total` per `min_residency`.
pub const PATIENCE: Duration = Duration::from_secs(1);

pub fn max_starting() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get() * 2).max(2)
}

impl Registry {
    pub fn new(
        runtime_dir: PathBuf,
        worker_bin: PathBuf,
        allow_root: bool,
        max_workers_total: usize,
    ) -> Self {
        Registry {
            pools: DashMap::new(),
            failures: DashMap::new(),
            replacing: DashMap::new(),
            counters: DashMap::new(),
            runtime_dir,
            worker_bin,
            allow_root,
            max_workers_total,
            min_residency: MIN_RESIDENCY,
            starter: Arc::new(Spawn),
            starts: Arc::new(tokio::sync::Semaphore::new(max_starting())),
        }
    }

    /// Start, in the background, the zygote of each Python configuration `specs` use (one
    /// per configuration; none for an app with nothing to preload), unless it runs already.
    pub fn warm_zygotes<'a>(&self, specs: impl IntoIterator<Item = &'a TenantSpec>) {
        let mut keys: Vec<crate::zygote::Key> = Vec::new();
        for spec in specs {
            if let Some(k) = crate::zygote::key_of(spec, &self.worker_bin) {
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
        }
        keys.into_iter().for_each(crate::zygote::warm);
    }

    /// The `min_residency` setting: how long a pool runs before it may be stopped to make room.
    pub fn with_min_residency(mut self, min_residency: Duration) -> Self {
        self.min_residency = min_residency;
        self
    }

    /// The pools started from now on get their workers from `starter` (fakes, in tests).
    pub fn with_starter(mut self, starter: Arc<dyn Starter>) -> Self {
        self.starter = starter;
        self
    }

    /// The running pool for `spec`, started now if there is none (or its settings changed).
    /// Waits up to `queue_timeout` for room in the global budget. A failure is kept as the
    /// tenant's [`Registry::start_failure`] until a start succeeds.
    pub async fn get_or_start(&self, spec: TenantSpec) -> Result<Arc<Pool>, StartError> {
        let name = spec.name.clone();
        let got = self.find_or_start(spec).await;
        match &got {
            Ok(_) => {
                // Cheap when there is none: a read of the shard, no write lock.
                if self.failures.contains_key(&name) {
                    self.failures.remove(&name);
                }
            }
            Err(e) => {
                self.failures
                    .insert(name, StartFailure { at: SystemTime::now(), error: e.to_string() });
            }
        }
        got
    }

    /// Why the last attempt to start `tenant`'s pool failed, if it did and none has succeeded
    /// since (the admin API and `paddock tenants show` say it; the request got a 503).
    pub fn start_failure(&self, tenant: &str) -> Option<StartFailure> {
        self.failures.get(tenant).map(|f| f.value().clone())
    }

    async fn find_or_start(&self, spec: TenantSpec) -> Result<Arc<Pool>, StartError> {
        // The pool is cloned out of the table at once: a guard of the table held across the
        // wait for room would block every thread that writes the table (the soak found the
        // router stopped for good that way; clippy.toml now forbids it).
        let running = self.pools.get(&spec.name).map(|p| p.value().clone());
        if let Some(p) = &running {
            let current = p.spec.same_workers(&spec) || self.replacing.contains_key(&spec.name);
            if current && !p.is_stopping() {
                p.set_admission(spec.settings.admission);
                if p.is_parked() {
                    self.unpark(p).await?;
                }
                return Ok(p.clone());
            }
        }
        // A pool of this tenant that is replaced below gives its room to its successor.
        let need = spec.settings.process.processes;
        self.make_room(&spec, running.as_ref(), need, spec.settings.admission.queue_timeout)
            .await?;
        let identity = identity::resolve(&spec, self.allow_root)?;
        let name = spec.name.clone();
        // The entry lock makes two first requests for one tenant start one pool, not two.
        let mut entry = self.pools.entry(name.clone()).or_try_insert_with(|| {
            tracing::info!(tenant = %name, user = %identity.user_name, "starting pool");
            self.start(spec.clone(), identity.clone())
        })?;
        if !entry.spec.same_workers(&spec) || entry.is_stopping() {
            tracing::info!(tenant = %name, "settings changed; replacing pool");
            // Its requests in flight finish first, as in a graceful replacement.
            let old = std::mem::replace(&mut *entry, self.start(spec, identity)?);
            retire(old);
        }
        Ok(entry.clone())
    }

    fn start(
        &self,
        spec: TenantSpec,
        identity: identity::Identity,
    ) -> Result<Arc<Pool>, StartError> {
        let name = spec.name.clone();
        let counters = self.counters.entry(name.clone()).or_default().clone();
        let (dir, bin) = (&self.runtime_dir, self.worker_bin.clone());
        let (starter, starts) = (self.starter.clone(), self.starts.clone());
        Pool::start_with(spec, identity, dir, bin, counters, starter, starts)
            .map_err(|source| StartError::Socket { tenant: name, source })
    }

    /// Processes the running pools may have.
    fn budget_used(&self, except: Option<&Arc<Pool>>) -> usize {
        self.pools
            .iter()
            .filter(|p| !except.is_some_and(|e| Arc::ptr_eq(e, p.value())))
            .map(|p| p.process_budget())
            .sum()
    }

    /// A parked pool asked for again: all its processes if they fit in the budget now, else
    /// the ones it runs (a shrunk pool serves on with them rather than wait), else room for
    /// one, made as for a new pool.
    async fn unpark(&self, p: &Arc<Pool>) -> Result<(), StartError> {
        let all = p.spec.settings.process.processes;
        if self.max_workers_total == 0 || self.budget_used(Some(p)) + all <= self.max_workers_total
        {
            p.unpark_to(all);
            return Ok(());
        }
        if p.process_budget() > 0 {
            return Ok(());
        }
        // The admission settings in force (a reload may have changed them), not the first.
        self.make_room(&p.spec, Some(p), 1, p.admission().queue_timeout).await?;
        p.unpark_to(1);
        Ok(())
    }

    /// Make room for `need` processes of `spec` under `max_workers_total`, without thrashing
    /// when more tenants are active than fit. By turns, each time the budget is short:
    /// 1. a pool of several processes whose requests in flight fit in one shrinks to one
    ///    (the longest idle first): a pool shrinks before a whole pool goes;
    /// 2. else the longest-idle pool stops, if it has nothing in flight or queued, has run
    ///    for `min_residency` (a pool evicted seconds after its start only moves the cold
    ///    start to its next request), and had no request begin for [`RECENT`] or this
    ///    request has waited [`PATIENCE`];
    /// 3. else the request waits, looking again every 50 ms, up to `wait` (the tenant's
    ///    `queue_timeout`; then 503): a cold tenant waits rather than evict a busy one.
    async fn make_room(
        &self,
        spec: &TenantSpec,
        except: Option<&Arc<Pool>>,
        need: usize,
        wait: Duration,
    ) -> Result<(), StartError> {
        if self.max_workers_total == 0 {
            return Ok(());
        }
        if need > self.max_workers_total {
            return Err(StartError::TooBig {
                tenant: spec.name.clone(),
                need,
                limit: self.max_workers_total,
            });
        }
        let began = Instant::now();
        let deadline = began + wait;
        loop {
            if self.budget_used(except) + need <= self.max_workers_total {
                return Ok(());
            }
            // The pool room is made for was replaced meanwhile (a reload): its successor
            // already runs, and the caller finds it when its stopped pool refuses it.
            if except.is_some_and(|p| p.is_stopping()) {
                return Ok(());
            }
            let others = || {
                self.pools
                    .iter()
                    .filter(|p| p.spec.name != spec.name && p.process_budget() > 0)
                    .map(|p| p.value().clone())
                    .collect::<Vec<_>>()
            };
            let shrink = others()
                .into_iter()
                .filter(|p| {
                    p.process_budget() > 1 && p.in_flight() <= p.spec.settings.process.threads
                })
                .max_by_key(|p| p.idle_for());
            if let Some(v) = shrink {
                let processes = v.process_budget();
                // Counted and logged only by the request that shrank it: two cold tenants
                // may pick the same pool at once.
                if v.shrink_to_one() {
                    tracing::info!(tenant = %v.spec.name, for_tenant = %spec.name, processes, "max_workers_total reached: shrinking a pool to one process");
                    v.counters.shrunk();
                }
                continue;
            }
            let recent_ok = began.elapsed() >= PATIENCE;
            let victim = others()
                .into_iter()
                .filter(|p| p.in_flight() == 0 && p.queued() == 0)
                .filter(|p| p.resident_for() >= self.min_residency)
                .filter(|p| recent_ok || p.idle_for() >= RECENT)
                .max_by_key(|p| p.idle_for());
            match victim {
                Some(v) => {
                    let idle = v.idle_for();
                    if v.park_all() {
                        tracing::info!(tenant = %v.spec.name, for_tenant = %spec.name, ?idle, "max_workers_total reached: stopping the longest idle pool");
                        v.counters.evicted();
                    }
                }
                None if Instant::now() >= deadline => {
                    return Err(StartError::Budget { limit: self.max_workers_total })
                }
                None => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Start a pool for `spec` next to the running one and switch over once it is ready
    /// (or has failed, or `startup_timeout` passed): requests never see a pool-less moment.
    pub fn replace_gracefully(self: &Arc<Self>, spec: TenantSpec, reason: Reason) {
        let name = spec.name.clone();
        let Some(old) = self.pools.get(&name).map(|p| p.clone()) else { return };
        let identity = match identity::resolve(&spec, self.allow_root) {
            Ok(i) => i,
            Err(e) => {
                tracing::error!(tenant = %name, "cannot replace pool: {e}");
                return;
            }
        };
        let fresh = match self.start(spec, identity) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(tenant = %name, "{e}");
                return;
            }
        };
        self.replacing.insert(name.clone(), ());
        let reg = self.clone();
        tokio::spawn(async move {
            let waited = fresh.spec.settings.process.startup_timeout;
            let mut rx = fresh.subscribe();
            let _ = tokio::time::timeout(waited, rx.wait_for(|s| *s != Status::Starting)).await;
            tracing::info!(tenant = %name, reason = reason.as_str(), status = ?fresh.status(), "switching to the new pool");
            // A request may have replaced `old` meanwhile (it saw the new settings before
            // this replacement was registered): the pool displaced here is retired too, or it
            // would run on, unreachable, for good.
            let displaced = reg.pools.insert(name.clone(), fresh);
            reg.replacing.remove(&name);
            if let Some(d) = displaced.filter(|d| !Arc::ptr_eq(d, &old)) {
                retire(d);
            }
            old.drain_and_stop().await;
            old.wait_stopped().await;
        });
    }

    /// Stop and forget the pool of a tenant that no longer exists.
    pub fn remove(&self, name: &str) {
        self.failures.remove(name);
        if let Some((_, p)) = self.pools.remove(name) {
            tracing::info!(tenant = %name, "tenant gone; stopping its pool");
            retire(p);
        }
    }

    /// Drop the counters of a tenant that no longer exists, unless a pool of it is still in
    /// the table (then it may still count). Whether they are gone.
    pub fn forget(&self, name: &str) -> bool {
        if self.pools.contains_key(name) {
            return false;
        }
        self.counters.remove(name);
        true
    }

    /// Scale down pools idle for longer than their `idle_timeout`.
    pub fn reap_idle(&self) {
        for p in self.pools.iter() {
            let s = &p.spec.settings;
            if !p.is_parked()
                && p.in_flight() == 0
                && p.queued() == 0
                && p.idle_for() >= p.admission().idle_timeout
            {
                tracing::info!(tenant = %p.spec.name, idle = ?p.idle_for(), keep = s.process.min_processes, "pool idle; stopping its extra processes");
                p.park_extra();
            }
        }
    }

    /// Stop every pool and wait for its workers to exit. `at_once`: busy workers are killed
    /// instead of getting their `graceful_timeout` ([`Pool::stop_now`]).
    pub async fn stop_all(&self, at_once: bool) {
        let pools: Vec<Arc<Pool>> = self.pools.iter().map(|p| p.clone()).collect();
        self.pools.clear();
        for p in &pools {
            match at_once {
                true => p.stop_now(),
                false => p.stop(),
            }
        }
        for p in pools {
            p.wait_stopped().await;
        }
    }

    /// Pools that exist right now.
    pub fn pools(&self) -> Vec<Arc<Pool>> {
        self.pools.iter().map(|p| p.clone()).collect()
    }

    /// Counters of every tenant that ever had a pool.
    pub fn counters(&self) -> Vec<(String, Arc<Counters>)> {
        self.counters.iter().map(|c| (c.key().clone(), c.value().clone())).collect()
    }
}

/// Let a pool that left the table finish its requests in flight, then stop it.
fn retire(pool: Arc<Pool>) {
    tokio::spawn(async move {
        pool.drain_and_stop().await;
        pool.wait_stopped().await;
    });
}

#[cfg(test)]
mod tests;

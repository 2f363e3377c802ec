//! One tenant's pool: its listening socket, its worker processes and the admission limit.
//!
//! The router creates the tenant's Unix socket itself, in its private runtime directory, and
//! hands the listening descriptor to every worker process; workers need no access to the
//! directory and no other tenant can reach the socket. A pool exists only after the first
//! request for its tenant: idle tenants cost nothing.
//!
//! Admission: at most processes × threads requests in flight; up to `queue_limit` more wait
//! (each at most `queue_timeout`); beyond that, 503 at once. Memory stays bounded whatever
//! the load.

mod admission;
mod idle;
pub(crate) mod slot;

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch, Semaphore};
// The tokio clock (the system's, unless a test paused it): idle times and deadlines follow a
// test's virtual time.
use tokio::time::Instant;

use crate::cgroup::{GroupLimits, PoolGroup};
use crate::conn::{OpenSlot, WorkerConn};
use crate::counters::Reason;
use crate::identity::Identity;
use crate::spawn::{Spawn, Starter};
use idle::IdleConns;
use paddock_config::tenant::TenantSpec;
use paddock_config::AdmissionSettings;
use slot::SlotCmd;

pub use crate::counters::Counters;

const NOT_PARKED: usize = usize::MAX;

/// What requests see of a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// No worker is ready yet; requests wait (up to `startup_timeout`).
    Starting,
    /// At least one worker accepts requests.
    Ready,
    /// Workers fail to start; requests get 503 until one starts. Holds the reason.
    Failed(Arc<str>),
    /// The pool was stopped; requests must look the tenant up again.
    Stopped,
}

/// Why a request could not get a worker.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("tenant `{tenant}` is unavailable: {reason}")]
    Unavailable { tenant: String, reason: String },
    #[error("tenant `{tenant}`: no free worker within {waited:?}")]
    QueueTimeout { tenant: String, waited: Duration },
    #[error("tenant `{tenant}`: {limit} requests already waiting (queue_limit)")]
    QueueFull { tenant: String, limit: usize },
    #[error("tenant `{tenant}`: the pool was stopped (reload or shutdown)")]
    Stopped { tenant: String },
    #[error("tenant `{tenant}`: workers did not become ready within {waited:?}")]
    StartTimeout { tenant: String, waited: Duration },
}

pub struct Pool {
    pub spec: TenantSpec,
    pub identity: Identity,
    pub socket_path: PathBuf,
    pub(crate) listener: UnixListener,
    pub(crate) worker_bin: PathBuf,
    /// The tenant's counters; shared by its successive pools so they never go backwards.
    pub counters: Arc<Counters>,
    slots: Arc<Semaphore>,
    /// The admission settings in force: the spec's at the start, then those of every reload
    /// that changed only them (`spec.settings.admission` stays the first).
    admission: Mutex<AdmissionSettings>,
    waiting: AtomicUsize,
    status_tx: watch::Sender<Status>,
    pub(crate) stop_tx: watch::Sender<bool>,
    /// Stopped at once ([`Pool::stop_now`]): busy workers get no `graceful_timeout`.
    stop_now: AtomicBool,
    slot_cmds: Vec<mpsc::UnboundedSender<SlotCmd>>,
    /// Slots kept running while parked (`NOT_PARKED`: all run).
    parked_keep: AtomicUsize,
    inner: Mutex<Inner>,
    epoch: Instant,
    last_used_ms: AtomicU64,
    /// Since when (ms after `epoch`) its processes run as they do now: its start, or its
    /// last unpark ([`Pool::resident_for`]).
    resident_ms: AtomicU64,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Open connections to the workers, idle or carrying a request (at most one per thread).
    conns_open: Arc<AtomicUsize>,
    /// The pool's cgroup (killed and removed when the pool is dropped); `None` without one.
    pub(crate) cgroup: Option<PoolGroup>,
    /// How its slots start their workers.
    pub(crate) starter: Arc<dyn Starter>,
    /// Shared by every pool of a registry: how many workers may be starting at once.
    pub(crate) starts: Arc<Semaphore>,
}

#[derive(Default)]
struct Inner {
    /// `(slot, pid)` of every ready process.
    ready: Vec<(usize, u32)>,
    last_error: Option<Arc<str>>,
    /// Keep-alive connections waiting for a request.
    idle: IdleConns,
}

impl Pool {
    /// Create the tenant's socket and start its supervisor tasks.
    pub fn start(
        spec: TenantSpec,
        identity: Identity,
        runtime_dir: &Path,
        worker_bin: PathBuf,
        counters: Arc<Counters>,
    ) -> std::io::Result<Arc<Pool>> {
        let starts = Arc::new(Semaphore::new(Semaphore::MAX_PERMITS));
        Pool::start_with(spec, identity, runtime_dir, worker_bin, counters, Arc::new(Spawn), starts)
    }

    /// [`Pool::start`], its slots getting their workers from `starter`, each start holding a
    /// permit of `starts` until its worker is ready (or failed).
    pub fn start_with(
        spec: TenantSpec,
        identity: Identity,
        runtime_dir: &Path,
        worker_bin: PathBuf,
        counters: Arc<Counters>,
        starter: Arc<dyn Starter>,
        starts: Arc<Semaphore>,
    ) -> std::io::Result<Arc<Pool>> {
        // Unique per pool instance: a replaced pool's cleanup must not remove its successor's.
        static SERIAL: AtomicU64 = AtomicU64::new(0);
        let n = SERIAL.fetch_add(1, Ordering::Relaxed);
        let socket_path = runtime_dir.join(format!("{}.{n}.sock", spec.name));
        match std::fs::remove_file(&socket_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(&socket_path)?;
        let l = &spec.settings.process.limits;
        let limits = GroupLimits {
            memory_max: l.memory_max,
            cpu_max: Some(l.cpu_max),
            pids_max: l.pids_max,
        };
        let cgroup = PoolGroup::create(&spec.name, n, &limits);
        let slots = spec.settings.process.processes * spec.settings.process.threads;
        let admission = spec.settings.admission;
        let (status_tx, _) = watch::channel(Status::Starting);
        let (stop_tx, _) = watch::channel(false);
        let mut receivers = Vec::new();
        let slot_cmds = (0..spec.settings.process.processes)
            .map(|_| {
                let (tx, rx) = mpsc::unbounded_channel();
                receivers.push(rx);
                tx
            })
            .collect();
        let pool = Arc::new(Pool {
            spec,
            identity,
            socket_path,
            listener,
            worker_bin,
            counters,
            slots: Arc::new(Semaphore::new(slots)),
            admission: Mutex::new(admission),
            waiting: AtomicUsize::new(0),
            status_tx,
            stop_tx,
            stop_now: AtomicBool::new(false),
            slot_cmds,
            parked_keep: AtomicUsize::new(NOT_PARKED),
            inner: Mutex::new(Inner::default()),
            epoch: Instant::now(),
            last_used_ms: AtomicU64::new(0),
            resident_ms: AtomicU64::new(0),
            tasks: Mutex::new(Vec::new()),
            conns_open: Arc::new(AtomicUsize::new(0)),
            cgroup,
            starter,
            starts,
        });
        let tasks = receivers
            .into_iter()
            .enumerate()
            .map(|(slot, rx)| tokio::spawn(slot::run_slot(pool.clone(), slot, rx)))
            .collect();
        *pool.tasks.lock().unwrap_or_else(|e| e.into_inner()) = tasks;
        Ok(pool)
    }

    /// The admission settings in force.
    pub fn admission(&self) -> AdmissionSettings {
        *self.admission.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Apply new admission settings (a reload that changed only them): waiters already queued
    /// keep the timeout they started with.
    pub fn set_admission(&self, a: AdmissionSettings) {
        *self.admission.lock().unwrap_or_else(|e| e.into_inner()) = a;
    }

    pub fn status(&self) -> Status {
        self.status_tx.borrow().clone()
    }

    /// Time since the last request was admitted.
    pub fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_used_ms.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }

    /// How long its processes have run as they do now (since its start or its last unpark):
    /// a pool is not evicted to make room before [`crate::registry::MIN_RESIDENCY`].
    pub fn resident_for(&self) -> Duration {
        let since = Duration::from_millis(self.resident_ms.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(since)
    }

    /// Requests in flight right now.
    pub fn in_flight(&self) -> usize {
        let total = self.spec.settings.process.processes * self.spec.settings.process.threads;
        total.saturating_sub(self.slots.available_permits())
    }

    /// Requests waiting for a slot right now.
    pub fn queued(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// An idle connection to a ready worker, most recently used first; `None` if there is none.
    pub fn take_conn(&self) -> Option<WorkerConn> {
        loop {
            let conn = self.lock().idle.take_newest()?;
            if conn.is_quiet() {
                return Some(conn);
            }
            // Said goodbye or died meanwhile: close it (outside the lock) and look again.
            drop(conn);
        }
    }

    /// Keep a connection that finished its request for the next one, unless its process is no
    /// longer ready (retiring, dead) or the pool is stopping.
    pub fn put_conn(&self, mut conn: WorkerConn) {
        conn.reader.shrink();
        let mut inner = self.lock();
        if !self.is_stopping() && inner.ready.iter().any(|&(_, p)| p == conn.pid) {
            inner.idle.put(conn);
            return;
        }
        drop(inner);
        drop(conn);
    }

    /// Count a new connection about to be made. A pool has at most processes × threads
    /// connections open, one per worker thread: at the limit, an idle one is closed first so
    /// its thread can accept the new one. (The caller holds a request slot and no connection,
    /// so with every slot counted at least one open connection is idle.)
    pub fn reserve_conn(&self) -> OpenSlot {
        let limit = self.spec.settings.process.processes * self.spec.settings.process.threads;
        let mut inner = self.lock();
        let full = self.conns_open.load(Ordering::Acquire) >= limit;
        // The least recently used one: its thread is the likeliest to be waiting already.
        let surplus = if full { inner.idle.take_oldest() } else { None };
        let slot = OpenSlot::take(&self.conns_open);
        drop(inner);
        self.counters.connected();
        drop(surplus);
        slot
    }

    /// Replace the process `pid` with a fresh one (no pause); false if it is not ours. The
    /// order names `pid`: if the slot has replaced it by the time it reads the order (several
    /// timeouts of one process each send one), it is ignored.
    pub fn recycle_pid(&self, pid: u32, reason: Reason) -> bool {
        let slot = self.lock().ready.iter().find(|(_, p)| *p == pid).map(|(s, _)| *s);
        match slot.and_then(|s| self.slot_cmds.get(s)) {
            Some(tx) => tx.send(SlotCmd::Recycle(reason, Some(pid))).is_ok(),
            None => false,
        }
    }

    /// Replace every process, one successor started before each old one retires.
    pub fn recycle_all(&self, reason: Reason) {
        for tx in &self.slot_cmds {
            let _ = tx.send(SlotCmd::Recycle(reason, None));
        }
    }

    /// Idle scale-down: stop the processes beyond `min_processes`; the next request restarts
    /// them.
    pub fn park_extra(&self) {
        let _ = self.park(self.spec.settings.process.min_processes);
    }

    /// Stop every process (to make room for another pool); the next request restarts them.
    /// `false` if it was stopped already (another request made room with it just now).
    pub fn park_all(&self) -> bool {
        self.park(0)
    }

    /// Stop all processes but one (to make room for another pool: a pool shrinks before a
    /// whole pool goes); what they are serving finishes first.
    pub fn shrink_to_one(&self) -> bool {
        self.park(1)
    }

    /// Run no more than `keep` processes; an already parked pool may only go lower. `false`
    /// if it ran no more than `keep` already (nothing was stopped).
    fn park(&self, keep: usize) -> bool {
        let keep = keep.min(self.slot_cmds.len());
        let all = self.slot_cmds.len();
        let update = self.parked_keep.fetch_update(Ordering::AcqRel, Ordering::Acquire, |was| {
            let running = if was == NOT_PARKED { all } else { was };
            (keep < running || was == NOT_PARKED).then_some(keep)
        });
        let Ok(was) = update else { return false };
        let running = if was == NOT_PARKED { all } else { was };
        for tx in self.slot_cmds.get(keep..running).unwrap_or_default() {
            let _ = tx.send(SlotCmd::Park);
        }
        true
    }

    /// Run `keep` processes again (all of them with `keep >= processes`), from the first;
    /// the ones already running stay. Its residency starts over.
    pub fn unpark_to(&self, keep: usize) {
        let all = self.slot_cmds.len();
        let target = if keep >= all { NOT_PARKED } else { keep };
        let update = self.parked_keep.fetch_update(Ordering::AcqRel, Ordering::Acquire, |was| {
            (was != NOT_PARKED && (target == NOT_PARKED || target > was)).then_some(target)
        });
        let Ok(was) = update else { return };
        self.resident_ms.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        for tx in self.slot_cmds.get(was..keep.min(all)).unwrap_or_default() {
            let _ = tx.send(SlotCmd::Unpark);
        }
    }

    pub fn is_parked(&self) -> bool {
        self.parked_keep.load(Ordering::Acquire) != NOT_PARKED
    }

    /// Processes this pool may run now: all of them, or those kept while parked.
    pub fn process_budget(&self) -> usize {
        match self.parked_keep.load(Ordering::Acquire) {
            NOT_PARKED => self.spec.settings.process.processes,
            keep => keep,
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<Status> {
        self.status_tx.subscribe()
    }

    /// Stop accepting work and tell every worker to finish and exit.
    pub fn stop(&self) {
        self.slots.close();
        self.status_tx.send_replace(Status::Stopped);
        self.stop_tx.send_replace(true);
        self.close_idle();
    }

    /// Fast stop (the router's fast shutdown): like [`Pool::stop`], but a worker still busy
    /// is killed at once instead of getting `graceful_timeout` to finish.
    pub fn stop_now(&self) {
        self.stop_now.store(true, Ordering::SeqCst);
        self.stop();
    }

    /// How long a worker told to stop may take before it is killed.
    pub(crate) fn stop_grace(&self) -> Duration {
        match self.stop_now.load(Ordering::SeqCst) {
            true => Duration::ZERO,
            false => self.spec.settings.process.graceful_timeout,
        }
    }

    /// Graceful stop: take no new requests (those queued are sent to the successor pool), let
    /// the ones in flight finish (up to `graceful_timeout`), then stop the workers.
    pub async fn drain_and_stop(&self) {
        self.slots.close();
        self.status_tx.send_replace(Status::Stopped);
        let deadline = Instant::now() + self.spec.settings.process.graceful_timeout;
        while self.in_flight() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.stop_tx.send_replace(true);
        self.close_idle();
    }

    /// Wait until every process of a stopped pool has exited.
    pub async fn wait_stopped(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
    }

    /// What this pool's workers are started from.
    pub(crate) fn launch(&self, retire_lead: u64) -> crate::launch::Launch<'_> {
        crate::launch::Launch {
            retire_lead,
            spec: &self.spec,
            identity: &self.identity,
            listener: &self.listener,
            worker_bin: &self.worker_bin,
            counters: &self.counters,
            cgroup: self.cgroup.as_ref(),
        }
    }

    pub fn is_stopping(&self) -> bool {
        *self.stop_tx.borrow()
    }

    pub(crate) fn worker_ready(&self, slot: usize, pid: u32) {
        let mut inner = self.lock();
        inner.ready.push((slot, pid));
        inner.last_error = None;
        self.publish(&inner);
    }

    /// `pid` takes no more requests: forget it, and close its idle connections before it is
    /// told to stop (a request is never written to a process that is closing them).
    pub(crate) fn worker_gone(&self, pid: u32) {
        let mut inner = self.lock();
        inner.ready.retain(|&(_, p)| p != pid);
        let gone = inner.idle.take_of(pid);
        self.publish(&inner);
        drop(inner);
        drop(gone);
    }

    fn close_idle(&self) {
        let idle = self.lock().idle.take_all();
        drop(idle);
    }

    pub(crate) fn start_failed(&self, why: String) {
        let mut inner = self.lock();
        inner.last_error = Some(why.into());
        self.publish(&inner);
    }

    /// Pids of the workers that are ready.
    pub fn ready_pids(&self) -> Vec<u32> {
        self.lock().ready.iter().map(|&(_, p)| p).collect()
    }

    fn publish(&self, inner: &Inner) {
        if self.is_stopping() {
            return;
        }
        let st = if !inner.ready.is_empty() {
            Status::Ready
        } else if let Some(e) = &inner.last_error {
            Status::Failed(e.clone())
        } else {
            Status::Starting
        };
        self.status_tx.send_if_modified(|cur| {
            let changed = *cur != st;
            *cur = st;
            changed
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves plain data behind; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket_path);
    }
}

#[cfg(test)]
mod tests;

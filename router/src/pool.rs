//! One tenant's pool: its listening socket, its worker processes and the admission limit.
//!
//! The router creates the tenant's Unix socket itself, in its private runtime directory, and
//! hands the listening descriptor to every worker process; workers need no access to the
//! directory and no other tenant can reach the socket. A pool exists only after the first
//! request for its tenant: idle tenants cost nothing.

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::identity::Identity;
use crate::supervisor;
use crate::tenant::TenantSpec;

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
    #[error("tenant `{tenant}`: workers did not become ready within {waited:?}")]
    StartTimeout { tenant: String, waited: Duration },
}

pub struct Pool {
    pub spec: TenantSpec,
    pub identity: Identity,
    pub socket_path: PathBuf,
    pub(crate) listener: UnixListener,
    pub(crate) worker_bin: PathBuf,
    slots: Arc<Semaphore>,
    status_tx: watch::Sender<Status>,
    pub(crate) stop_tx: watch::Sender<bool>,
    inner: Mutex<Inner>,
    epoch: Instant,
    last_used_ms: AtomicU64,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

#[derive(Default)]
struct Inner {
    ready_pids: Vec<u32>,
    last_error: Option<Arc<str>>,
}

impl Pool {
    /// Create the tenant's socket and start its supervisor tasks.
    pub fn start(
        spec: TenantSpec,
        identity: Identity,
        runtime_dir: &Path,
        worker_bin: PathBuf,
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
        let slots = spec.settings.processes * spec.settings.threads;
        let (status_tx, _) = watch::channel(Status::Starting);
        let (stop_tx, _) = watch::channel(false);
        let pool = Arc::new(Pool {
            spec,
            identity,
            socket_path,
            listener,
            worker_bin,
            slots: Arc::new(Semaphore::new(slots)),
            status_tx,
            stop_tx,
            inner: Mutex::new(Inner::default()),
            epoch: Instant::now(),
            last_used_ms: AtomicU64::new(0),
            tasks: Mutex::new(Vec::new()),
        });
        let tasks = (0..pool.spec.settings.processes)
            .map(|slot| tokio::spawn(supervisor::run_slot(pool.clone(), slot)))
            .collect();
        *pool.tasks.lock().unwrap_or_else(|e| e.into_inner()) = tasks;
        Ok(pool)
    }

    pub fn status(&self) -> Status {
        self.status_tx.borrow().clone()
    }

    /// Take an in-flight slot, waiting in the queue up to `queue_timeout`, then wait until a
    /// worker is ready. The permit is held until the response is complete.
    pub async fn admit(self: &Arc<Self>) -> Result<OwnedSemaphorePermit, PoolError> {
        self.touch();
        let s = &self.spec.settings;
        let permit = tokio::time::timeout(s.queue_timeout, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| PoolError::QueueTimeout {
                tenant: self.spec.name.clone(),
                waited: s.queue_timeout,
            })?
            .map_err(|_| self.unavailable("the pool is shutting down"))?;
        self.wait_ready().await?;
        Ok(permit)
    }

    async fn wait_ready(&self) -> Result<(), PoolError> {
        let mut rx = self.status_tx.subscribe();
        let waited = self.spec.settings.startup_timeout;
        let fut = async {
            loop {
                let st = rx.borrow_and_update().clone();
                match st {
                    Status::Ready => return Ok(()),
                    Status::Failed(why) => return Err(self.unavailable(&why)),
                    Status::Stopped => return Err(self.unavailable("the pool was stopped")),
                    Status::Starting => {}
                }
                if rx.changed().await.is_err() {
                    return Err(self.unavailable("the pool was stopped"));
                }
            }
        };
        tokio::time::timeout(waited, fut)
            .await
            .map_err(|_| PoolError::StartTimeout { tenant: self.spec.name.clone(), waited })?
    }

    fn unavailable(&self, why: &str) -> PoolError {
        PoolError::Unavailable { tenant: self.spec.name.clone(), reason: why.to_string() }
    }

    fn touch(&self) {
        self.last_used_ms.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Time since the last request was admitted.
    pub fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_used_ms.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }

    /// Requests in flight right now.
    pub fn in_flight(&self) -> usize {
        let total = self.spec.settings.processes * self.spec.settings.threads;
        total.saturating_sub(self.slots.available_permits())
    }

    /// Stop accepting work and tell every worker to finish and exit.
    pub fn stop(&self) {
        self.slots.close();
        self.status_tx.send_replace(Status::Stopped);
        self.stop_tx.send_replace(true);
    }

    /// Wait until every process of a stopped pool has exited.
    pub async fn wait_stopped(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
    }

    pub fn is_stopping(&self) -> bool {
        *self.stop_tx.borrow()
    }

    pub(crate) fn worker_ready(&self, pid: u32) {
        let mut inner = self.lock();
        inner.ready_pids.push(pid);
        inner.last_error = None;
        self.publish(&inner);
    }

    pub(crate) fn worker_gone(&self, pid: u32) {
        let mut inner = self.lock();
        inner.ready_pids.retain(|&p| p != pid);
        self.publish(&inner);
    }

    pub(crate) fn start_failed(&self, why: String) {
        let mut inner = self.lock();
        inner.last_error = Some(why.into());
        self.publish(&inner);
    }

    /// Pids of the workers that are ready.
    pub fn ready_pids(&self) -> Vec<u32> {
        self.lock().ready_pids.clone()
    }

    fn publish(&self, inner: &Inner) {
        if self.is_stopping() {
            return;
        }
        let st = if !inner.ready_pids.is_empty() {
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

//! Admission to a pool: an in-flight slot (processes × threads), else a place in the bounded
//! queue (`queue_limit`, each waiting at most `queue_timeout`), then a ready worker (up to
//! `startup_timeout`). The permit is held until the response is complete.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;

use super::{Pool, PoolError, Status};

impl Pool {
    /// Take an in-flight slot, waiting in the bounded queue up to `queue_timeout`, then wait
    /// until a worker is ready. The permit is held until the response is complete.
    pub async fn admit(self: &Arc<Self>) -> Result<OwnedSemaphorePermit, PoolError> {
        self.touch();
        // The registry unparks a parked pool as far as the global budget allows before it
        // hands it out; a pool with no process at all (one not from a registry) gets all.
        if self.process_budget() == 0 {
            self.unpark_to(usize::MAX);
        }
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(tokio::sync::TryAcquireError::Closed) => return Err(self.stopped()),
            Err(tokio::sync::TryAcquireError::NoPermits) => self.queue().await?,
        };
        if let Status::Ready = *self.status_tx.borrow() {
            return Ok(permit);
        }
        self.wait_ready().await?;
        Ok(permit)
    }

    /// Wait in the queue; the guard keeps the count right even if the client goes away and
    /// this future is dropped.
    async fn queue(&self) -> Result<OwnedSemaphorePermit, PoolError> {
        let s = self.admission();
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= s.queue_limit {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(PoolError::QueueFull {
                tenant: self.spec.name.clone(),
                limit: s.queue_limit,
            });
        }
        let _guard = Waiting(&self.waiting);
        match tokio::time::timeout(s.queue_timeout, self.slots.clone().acquire_owned()).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(_)) => Err(self.stopped()),
            Err(_) => Err(PoolError::QueueTimeout {
                tenant: self.spec.name.clone(),
                waited: s.queue_timeout,
            }),
        }
    }

    async fn wait_ready(&self) -> Result<(), PoolError> {
        let mut rx = self.status_tx.subscribe();
        let waited = self.spec.settings.process.startup_timeout;
        let fut = async {
            loop {
                let st = rx.borrow_and_update().clone();
                match st {
                    Status::Ready => return Ok(()),
                    Status::Failed(why) => return Err(self.unavailable(&why)),
                    Status::Stopped => return Err(self.stopped()),
                    Status::Starting => {}
                }
                if rx.changed().await.is_err() {
                    return Err(self.stopped());
                }
            }
        };
        tokio::time::timeout(waited, fut)
            .await
            .map_err(|_| PoolError::StartTimeout { tenant: self.spec.name.clone(), waited })?
    }

    fn stopped(&self) -> PoolError {
        PoolError::Stopped { tenant: self.spec.name.clone() }
    }

    fn unavailable(&self, why: &str) -> PoolError {
        PoolError::Unavailable { tenant: self.spec.name.clone(), reason: why.to_string() }
    }

    fn touch(&self) {
        self.last_used_ms.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

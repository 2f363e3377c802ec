//! Connections accepted whose first request has not been read yet. hyper's graceful shutdown
//! counts such a connection as idle and closes it at once, losing the request its client has
//! already sent: a race at every drain (an upgrade's hand-over, SIGTERM) that a client opening
//! a connection per request sees as a connection closed without an answer. The drain first
//! waits, briefly, for these connections to have their request in progress; hyper then
//! answers it (with `Connection: close`) before closing.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// How many accepted connections have not had a request yet.
#[derive(Debug, Default)]
pub struct Fresh {
    count: AtomicUsize,
    changed: Notify,
}

/// One fresh connection; no longer counted once [`Mark::started`] is called or it is dropped
/// (the connection ended).
#[derive(Debug)]
pub struct Mark {
    fresh: Arc<Fresh>,
    done: AtomicBool,
}

impl Fresh {
    /// A connection was just accepted.
    pub fn mark(self: &Arc<Self>) -> Arc<Mark> {
        self.count.fetch_add(1, Ordering::SeqCst);
        Arc::new(Mark { fresh: self.clone(), done: AtomicBool::new(false) })
    }

    /// Wait until no accepted connection is without its first request, or `limit` passed (a
    /// client that connects and sends nothing is not waited for longer).
    pub async fn settled(&self, limit: Duration) {
        let wait = async {
            loop {
                let changed = self.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if self.count.load(Ordering::SeqCst) == 0 {
                    return;
                }
                changed.await;
            }
        };
        let _ = tokio::time::timeout(limit, wait).await;
    }

    #[cfg(test)]
    fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

impl Mark {
    /// The connection's first request head has been read.
    pub fn started(&self) {
        if !self.done.swap(true, Ordering::SeqCst) {
            self.fresh.count.fetch_sub(1, Ordering::SeqCst);
            self.fresh.changed.notify_waiters();
        }
    }
}

impl Drop for Mark {
    fn drop(&mut self) {
        self.started();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_drain_waits_for_fresh_connections_and_no_longer() {
        let fresh = Arc::new(Fresh::default());
        let a = fresh.mark();
        let b = fresh.mark();
        assert_eq!(fresh.count(), 2);
        a.started();
        a.started();
        assert_eq!(fresh.count(), 1, "a second start counts once");
        let waiter = tokio::spawn({
            let fresh = fresh.clone();
            async move { fresh.settled(Duration::from_secs(60)).await }
        });
        drop(b);
        tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("settled once the last fresh connection ended")
            .expect("task");
        drop(a);
        assert_eq!(fresh.count(), 0);
        // A connection that never sends is waited for only up to the limit.
        let _silent = fresh.mark();
        let t = std::time::Instant::now();
        fresh.settled(Duration::from_millis(50)).await;
        assert!(t.elapsed() < Duration::from_secs(10));
    }
}

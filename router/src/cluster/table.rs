//! The tenants this node owns, as the request path uses them: each claim's revision, the
//! requests in flight under it, and whether it is being given up. No I/O: the callers claim
//! and release in etcd, this table only decides *when* a claim may go.
//!
//! The invariant: a claim is released only while no request is in flight under it and none
//! can enter (the entry is `Leaving`), so no pool ever starts for a tenant whose claim is on
//! its way out. A request that finds its tenant leaving waits for the release to finish and
//! then routes again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;

#[derive(Debug)]
struct Entry {
    revision: i64,
    in_flight: usize,
    /// When the last request under this claim ended (or the claim was made).
    last: Instant,
    leaving: bool,
}

#[derive(Default)]
struct Inner {
    map: Mutex<HashMap<String, Entry>>,
}

/// Shared by the request path and the tasks that release claims.
pub struct Table {
    inner: Arc<Inner>,
    /// Bumped whenever an entry leaves the table: what waiting requests wake on.
    gone: watch::Sender<u64>,
}

/// What [`Table::enter`] found.
pub enum Enter {
    /// Owned: serve, holding the guard until the answer's head is out.
    Serve(Guard),
    /// Being given up: wait for the change, then route again.
    Wait(watch::Receiver<u64>),
    /// Not owned by this node.
    Absent,
}

/// A request in flight under a claim; dropping it ends the request's hold.
pub struct Guard {
    inner: Arc<Inner>,
    tenant: String,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut map = lock(&self.inner.map);
        if let Some(e) = map.get_mut(&self.tenant) {
            e.in_flight = e.in_flight.saturating_sub(1);
            e.last = Instant::now();
        }
    }
}

fn lock(m: &Mutex<HashMap<String, Entry>>) -> MutexGuard<'_, HashMap<String, Entry>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Default for Table {
    fn default() -> Self {
        Table { inner: Arc::default(), gone: watch::channel(0).0 }
    }
}

impl Table {
    pub fn enter(&self, tenant: &str) -> Enter {
        let mut map = lock(&self.inner.map);
        match map.get_mut(tenant) {
            None => Enter::Absent,
            // Subscribed under the lock: the release that ends the wait cannot be missed.
            Some(e) if e.leaving => Enter::Wait(self.gone.subscribe()),
            Some(e) => {
                e.in_flight += 1;
                Enter::Serve(Guard { inner: self.inner.clone(), tenant: tenant.to_string() })
            }
        }
    }

    /// Record a won claim and enter it. An entry that is already there (claimed again by a
    /// concurrent request: the same revision) is entered as it is, unless it is leaving.
    pub fn won(&self, tenant: &str, revision: i64) -> Enter {
        {
            let mut map = lock(&self.inner.map);
            map.entry(tenant.to_string()).or_insert(Entry {
                revision,
                in_flight: 0,
                last: Instant::now(),
                leaving: false,
            });
        }
        self.enter(tenant)
    }

    /// Record a claim taken over from the process this one replaced, counted as used until
    /// `grace` from now (that process may still be finishing requests under it).
    pub fn adopted(&self, tenant: &str, revision: i64, grace: Duration) {
        let last = Instant::now().checked_add(grace).unwrap_or_else(Instant::now);
        lock(&self.inner.map).entry(tenant.to_string()).or_insert(Entry {
            revision,
            in_flight: 0,
            last,
            leaving: false,
        });
    }

    /// Start giving `tenant` up if nothing uses it and it has been unused for `idle` (the
    /// idle reaper), returning the revision to release. Requests arriving from now on wait.
    pub fn leave_if_idle(&self, tenant: &str, idle: Duration) -> Option<i64> {
        let mut map = lock(&self.inner.map);
        let e = map.get_mut(tenant)?;
        // `last` may lie ahead (an adopted claim's grace): not idle before it, whatever `idle`.
        let idle_since = e.last.checked_add(idle);
        if e.leaving || e.in_flight > 0 || idle_since.is_none_or(|t| Instant::now() < t) {
            return None;
        }
        e.leaving = true;
        Some(e.revision)
    }

    /// Start giving `tenant` up whatever uses it (a drain, a move): requests arriving from
    /// now on wait; those in flight finish ([`Table::in_flight`] tells when).
    pub fn leave(&self, tenant: &str) -> Option<i64> {
        let mut map = lock(&self.inner.map);
        let e = map.get_mut(tenant)?;
        e.leaving = true;
        Some(e.revision)
    }

    /// Requests in flight under `tenant`'s claim.
    pub fn in_flight(&self, tenant: &str) -> usize {
        lock(&self.inner.map).get(tenant).map_or(0, |e| e.in_flight)
    }

    /// A leave that could not be completed (etcd did not answer): the claim stays.
    pub fn stay(&self, tenant: &str) {
        if let Some(e) = lock(&self.inner.map).get_mut(tenant) {
            e.leaving = false;
            e.last = Instant::now();
        }
        self.gone.send_modify(|n| *n += 1);
    }

    /// The claim is released (or void): forget it and wake the requests waiting on it.
    pub fn forget(&self, tenant: &str) {
        lock(&self.inner.map).remove(tenant);
        self.gone.send_modify(|n| *n += 1);
    }

    /// Every claim is void (the lease is lost).
    pub fn clear(&self) {
        lock(&self.inner.map).clear();
        self.gone.send_modify(|n| *n += 1);
    }

    /// Tenants owned, sorted.
    pub fn owned(&self) -> Vec<String> {
        let mut v: Vec<String> = lock(&self.inner.map).keys().cloned().collect();
        v.sort();
        v
    }

    pub fn len(&self) -> usize {
        lock(&self.inner.map).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(t: &Table, name: &str) -> Guard {
        match t.enter(name) {
            Enter::Serve(g) => g,
            _ => panic!("{name} should be served"),
        }
    }

    #[test]
    fn a_claim_is_released_only_when_unused() {
        let t = Table::default();
        assert!(matches!(t.enter("a"), Enter::Absent));
        let Enter::Serve(g) = t.won("a", 7) else { panic!("won") };
        assert_eq!(t.leave_if_idle("a", Duration::ZERO), None, "in flight");
        drop(g);
        assert_eq!(t.leave_if_idle("a", Duration::from_secs(60)), None, "used just now");
        assert_eq!(t.leave_if_idle("a", Duration::ZERO), Some(7));
        assert!(matches!(t.enter("a"), Enter::Wait(_)), "leaving: new requests wait");
        assert_eq!(t.leave_if_idle("a", Duration::ZERO), None, "already leaving");
        t.forget("a");
        assert!(matches!(t.enter("a"), Enter::Absent));
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn waiters_wake_when_the_claim_goes_or_stays() {
        let t = Table::default();
        drop(t.won("a", 1));
        t.leave("a");
        let Enter::Wait(rx) = t.enter("a") else { panic!("wait") };
        assert!(!rx.has_changed().expect("open"));
        t.stay("a");
        assert!(rx.has_changed().expect("open"));
        drop(serve(&t, "a"));
        t.leave("a");
        let Enter::Wait(mut rx) = t.enter("a") else { panic!("wait") };
        t.forget("a");
        assert!(rx.has_changed().expect("open"));
        let _ = rx.borrow_and_update();
    }

    #[test]
    fn an_adopted_claim_is_kept_through_its_grace() {
        let t = Table::default();
        t.adopted("a", 9, Duration::from_secs(60));
        assert_eq!(t.leave_if_idle("a", Duration::ZERO), None, "the old process may use it");
        drop(serve(&t, "a"));
        assert_eq!(t.leave_if_idle("a", Duration::ZERO), Some(9));
    }

    #[test]
    fn a_drain_waits_for_requests_in_flight() {
        let t = Table::default();
        let Enter::Serve(g1) = t.won("a", 3) else { panic!("won") };
        let g2 = serve(&t, "a");
        assert_eq!(t.in_flight("a"), 2);
        assert_eq!(t.leave("a"), Some(3));
        drop(g1);
        assert_eq!(t.in_flight("a"), 1);
        drop(g2);
        assert_eq!(t.in_flight("a"), 0);
        // A claim won again while leaving is not entered: the leave goes on.
        assert!(matches!(t.won("a", 3), Enter::Wait(_)));
        t.clear();
        assert!(t.owned().is_empty());
    }
}

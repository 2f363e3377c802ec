//! The owner cache: every `owners/<tenant>` key, kept in memory by a watch, so the router can
//! look an owner up per request without a round trip. A hint, not an authority: it can lag
//! etcd by the watch's delay, so the router forwards on it but claims (one transaction) before
//! starting a pool. While the watch is broken the cache is empty and says so (`synced` false),
//! rather than serve an old view.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;
use std::time::Duration;

use etcd_client::{Client, GetOptions, WatchOptions};
use tokio::sync::watch;

use crate::keys::{decode, name_under, Owner};

/// Pauses between listings while the watch keeps failing.
const RELIST_MIN: Duration = Duration::from_millis(50);
const RELIST_MAX: Duration = Duration::from_millis(500);

#[derive(Default)]
pub(crate) struct OwnerCache {
    map: RwLock<HashMap<String, (Owner, i64)>>,
    synced: AtomicBool,
}

impl OwnerCache {
    pub fn get(&self, tenant: &str) -> Option<(Owner, i64)> {
        if !self.synced() {
            return None;
        }
        self.map.read().unwrap_or_else(|p| p.into_inner()).get(tenant).cloned()
    }

    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::SeqCst)
    }

    fn reset(&self) {
        self.synced.store(false, Ordering::SeqCst);
        self.map.write().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn apply(&self, dir: &str, kv: &etcd_client::KeyValue) {
        let Ok(tenant) = name_under(dir, kv.key()) else { return };
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        // A delete event's key-value has version 0 (and no value); every put has version >= 1.
        // (Read this way rather than through `Event::event_type`, which panics on an event
        // type it does not know.)
        if kv.version() == 0 {
            map.remove(tenant);
            return;
        }
        match decode::<Owner>(kv.key(), kv.value()) {
            Ok(o) => {
                map.insert(tenant.to_string(), (o, kv.mod_revision()));
            }
            Err(e) => {
                tracing::warn!("cluster: owner cache: {e}");
                map.remove(tenant);
            }
        }
    }
}

/// Lists `owners/`, then watches it from the listed revision on; starts over (empty and not
/// synced meanwhile) whenever the watch ends, fails or is compacted.
pub(crate) async fn run(
    client: Client,
    dir: String,
    request_timeout: Duration,
    cache: std::sync::Arc<OwnerCache>,
    mut stop: watch::Receiver<bool>,
) {
    // Listing again at once after a watch that ran (its member went away: another may
    // answer), then after a growing pause while it keeps failing.
    let mut pause: Option<Duration> = None;
    loop {
        if let Some(p) = pause {
            cache.reset();
            tokio::select! {
                _ = tokio::time::sleep(p) => {}
                r = stop.changed() => if r.is_err() || *stop.borrow() { return },
            }
        }
        pause = Some(pause.map_or(Duration::ZERO, |p| (p * 2).clamp(RELIST_MIN, RELIST_MAX)));
        let mut c = client.clone();
        let listed = tokio::time::timeout(
            request_timeout,
            c.get(dir.clone(), Some(GetOptions::new().with_prefix())),
        )
        .await;
        let Ok(Ok(resp)) = listed else { continue };
        let Some(revision) = resp.header().map(|h| h.revision()) else { continue };
        {
            let mut map = cache.map.write().unwrap_or_else(|p| p.into_inner());
            map.clear();
            for kv in resp.kvs() {
                let Ok(tenant) = name_under(&dir, kv.key()) else { continue };
                if let Ok(o) = decode::<Owner>(kv.key(), kv.value()) {
                    map.insert(tenant.to_string(), (o, kv.mod_revision()));
                }
            }
        }
        let opts = WatchOptions::new().with_prefix().with_start_revision(revision + 1);
        let Ok(Ok(mut stream)) =
            tokio::time::timeout(request_timeout, c.watch(dir.clone(), Some(opts))).await
        else {
            continue;
        };
        cache.synced.store(true, Ordering::SeqCst);
        pause = Some(Duration::ZERO);
        loop {
            tokio::select! {
                m = stream.message() => match m {
                    Ok(Some(r)) if !r.canceled() && r.compact_revision() == 0 => {
                        for ev in r.events() {
                            if let Some(kv) = ev.kv() {
                                cache.apply(&dir, kv);
                            }
                        }
                    }
                    _ => break,
                },
                r = stop.changed() => if r.is_err() || *stop.borrow() { return },
            }
        }
        tracing::warn!("cluster: owner cache watch ended; listing again");
    }
}

//! Periodic housekeeping of running pools: idle scale-down, the memory limit, and restarting a
//! pool whose WSGI script or `conf/trac.ini` changed (as mod_wsgi's script reloading does).
//! Also the samplers of worker processes read at scrape time: resident memory
//! ([`rss_bytes`]) and connections to the database servers ([`DbSampler`]).
//! One task for the whole server; it only looks at pools that exist, so idle tenants cost
//! nothing.
//!
//! Watched files usually lie in tenant directories: they are looked at with
//! [`safefs::stat`] (no symlink below the tenant directory, nothing opened) on the blocking
//! pool, never on the async threads.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::counters::Reason;
use crate::pool::Pool;
use crate::registry::Registry;
use paddock_sys::safefs::{self, Place};

mod dbconns;
pub use dbconns::DbSampler;

const TICK: Duration = Duration::from_secs(1);
/// Memory is sampled every this many ticks; a process must stay over the limit for
/// `MEMORY_STRIKES` samples in a row to be recycled (a short peak is not a leak).
const MEMORY_EVERY: u64 = 5;
const MEMORY_STRIKES: u32 = 3;

#[derive(Default)]
pub struct Monitor {
    /// Last seen modification stamp of each watched file, per pool instance.
    stamps: HashMap<(usize, PathBuf), Stamp>,
    strikes: HashMap<u32, u32>,
    ticks: u64,
}

type Stamp = Option<(SystemTime, u64)>;

/// Whether a tenant still exists and may keep its pool (see `discovery::still_served`).
pub type Served = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Run until `stop` resolves (the returned task ends then).
pub fn spawn(
    registry: Arc<Registry>,
    served: Served,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut m = Monitor::default();
        let mut every = tokio::time::interval(TICK);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = &mut stop => return,
            }
            stop_gone(&registry, &served);
            let watched: Vec<_> = registry.pools().iter().flat_map(watched_files).collect();
            let job =
                move || watched.into_iter().map(|(key, place)| (key, stamp(&place))).collect();
            let stamps = tokio::task::spawn_blocking(job).await.unwrap_or_default();
            m.tick(&registry, &stamps);
        }
    })
}

/// Stop the pools of tenants whose directory went away or that were disabled.
fn stop_gone(registry: &Registry, served: &Served) {
    for p in registry.pools() {
        if !p.is_stopping() && !served(&p.spec.name) {
            registry.remove(&p.spec.name);
        }
    }
}

impl Monitor {
    /// One round; `stamps` are the watched files' current stamps, by (pool, file).
    pub fn tick(&mut self, registry: &Registry, stamps: &HashMap<(usize, PathBuf), Stamp>) {
        self.ticks += 1;
        registry.reap_idle();
        let pools = registry.pools();
        for p in &pools {
            self.check_files(p, stamps);
        }
        if self.ticks % MEMORY_EVERY == 0 {
            self.check_memory(&pools);
        }
        let live: Vec<usize> = pools.iter().map(|p| Arc::as_ptr(p) as usize).collect();
        self.stamps.retain(|(id, _), _| live.contains(id));
    }

    fn check_files(&mut self, p: &Arc<Pool>, stamps: &HashMap<(usize, PathBuf), Stamp>) {
        for ((id, f), _) in watched_files(p) {
            // A pool started since the stamps were taken waits for the next tick.
            let Some(&now) = stamps.get(&(id, f.clone())) else { continue };
            match self.stamps.insert((id, f.clone()), now) {
                Some(before) if before != now && !p.is_stopping() => {
                    tracing::info!(tenant = %p.spec.name, file = %f.display(), "watched file changed; restarting the pool's processes");
                    p.recycle_all(Reason::ScriptChanged);
                }
                _ => {}
            }
        }
    }

    fn check_memory(&mut self, pools: &[Arc<Pool>]) {
        let mut seen = Vec::new();
        for p in pools {
            let limit = p.spec.settings.process.memory_limit;
            if limit == 0 {
                continue;
            }
            for pid in p.ready_pids() {
                seen.push(pid);
                let Some(rss) = rss_bytes(pid) else { continue };
                let strikes = self.strikes.entry(pid).or_insert(0);
                *strikes = if rss > limit { *strikes + 1 } else { 0 };
                if *strikes >= MEMORY_STRIKES {
                    tracing::warn!(tenant = %p.spec.name, pid, rss, limit, "worker over memory_limit; recycling it");
                    p.recycle_pid(pid, Reason::Memory);
                    *strikes = 0;
                }
            }
        }
        self.strikes.retain(|pid, _| seen.contains(pid));
    }
}

/// The files whose change restarts `p`: configured, or the app script if the app is a file
/// (as mod_wsgi's script reloading). Not `conf/trac.ini` by default: Trac re-reads it by
/// itself, writes it on every admin change, and restarting on each save loses state Trac
/// keeps in its processes (one of Trac's own functional tests fails that way); list it in
/// `watch_files` to restart on it anyway.
/// Each keyed by (pool instance, path), with where trust in the path ends.
fn watched_files(p: &Arc<Pool>) -> Vec<((usize, PathBuf), Place)> {
    let s = &p.spec.settings;
    let files: Vec<PathBuf> = match &s.process.watch_files {
        Some(list) => list.iter().map(PathBuf::from).collect(),
        None if s.process.app.contains('/') => {
            let app = Path::new(&s.process.app);
            vec![if app.is_absolute() { app.to_path_buf() } else { p.spec.dir.join(app) }]
        }
        None => Vec::new(),
    };
    let id = Arc::as_ptr(p) as usize;
    files
        .into_iter()
        .map(|f| {
            let place = Place::of(&f, Some(&p.spec.dir), None);
            ((id, f), place)
        })
        .collect()
}

/// Modification time and size; a symlink is described, not followed. Blocking.
fn stamp(place: &Place) -> Stamp {
    let m = safefs::stat(place).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Resident set size of `pid`, from `/proc/PID/statm` (pages × page size).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let page =
        nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok().flatten().unwrap_or(4096);
    Some(pages * page as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_of_this_process_is_plausible() {
        let rss = rss_bytes(std::process::id()).expect("own statm");
        assert!(rss > 1 << 20 && rss < 16 << 30, "{rss}");
    }
}

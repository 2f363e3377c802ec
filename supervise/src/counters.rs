//! Per-tenant event counters (spawns, exits by reason, connections, dropped log lines) and the
//! tenant's log-rate bucket. Plain atomics: the metrics endpoint reads them; nothing on the
//! request path waits on them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use crate::bucket::Bucket;

/// Lines a tenant's workers may log per second, on average (`logrelay.rs`).
pub const LINES_PER_SEC: f64 = 200.0;
/// Lines a tenant's workers may log at once, after a quiet time.
pub const BURST: f64 = 2000.0;

/// Why a process is replaced or stopped; logged and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    MaxRequests,
    Timeout,
    Memory,
    Reload,
    ScriptChanged,
    Idle,
    /// A direct worker that stood in while its zygote was away: replaced by a forked one.
    ZygoteBack,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MaxRequests => "max_requests",
            Reason::Timeout => "request_timeout",
            Reason::Memory => "memory_limit",
            Reason::Reload => "reload",
            Reason::ScriptChanged => "script_changed",
            Reason::Idle => "idle",
            Reason::ZygoteBack => "zygote_back",
        }
    }
}

#[derive(Debug, Default)]
pub struct Counters {
    pub spawns: AtomicU64,
    pub crashes: AtomicU64,
    pub recycles_max_requests: AtomicU64,
    pub recycles_timeout: AtomicU64,
    pub recycles_memory: AtomicU64,
    pub recycles_reload: AtomicU64,
    pub recycles_script: AtomicU64,
    pub idle_stops: AtomicU64,
    /// Forked workers that ended because their zygote died.
    pub zygote_deaths: AtomicU64,
    /// Direct workers replaced by forked ones once their zygote was back.
    pub recycles_zygote_back: AtomicU64,
    /// Connections opened to the workers (requests reuse idle ones when they can).
    pub connects: AtomicU64,
    /// Worker stderr lines not logged: over the tenant's log rate (`logrelay.rs`).
    pub log_lines_dropped: AtomicU64,
    /// Times its pool was shrunk to one process to make room in `max_workers_total`.
    pub budget_shrinks: AtomicU64,
    /// Times its pool was stopped to make room in `max_workers_total`.
    pub budget_stops: AtomicU64,
    /// The log rate of all the tenant's workers together.
    log_bucket: Mutex<Bucket>,
}

impl Counters {
    pub fn spawned(&self) {
        self.spawns.fetch_add(1, Ordering::Relaxed);
    }

    pub fn crashed(&self) {
        self.crashes.fetch_add(1, Ordering::Relaxed);
    }

    pub fn exited(&self, reason: Reason) {
        let c = match reason {
            Reason::MaxRequests => &self.recycles_max_requests,
            Reason::Timeout => &self.recycles_timeout,
            Reason::Memory => &self.recycles_memory,
            Reason::Reload => &self.recycles_reload,
            Reason::ScriptChanged => &self.recycles_script,
            Reason::Idle => &self.idle_stops,
            Reason::ZygoteBack => &self.recycles_zygote_back,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn shrunk(&self) {
        self.budget_shrinks.fetch_add(1, Ordering::Relaxed);
    }

    pub fn evicted(&self) {
        self.budget_stops.fetch_add(1, Ordering::Relaxed);
    }

    pub fn zygote_died(&self) {
        self.zygote_deaths.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connected(&self) {
        self.connects.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether one more worker log line may be logged now; counts it as dropped if not.
    pub fn log_line_allowed(&self) -> bool {
        let mut b = self.log_bucket.lock().unwrap_or_else(|e| e.into_inner());
        let ok = b.take(Instant::now(), LINES_PER_SEC, BURST);
        drop(b);
        if !ok {
            self.log_lines_dropped.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

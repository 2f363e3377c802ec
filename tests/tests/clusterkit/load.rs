//! Steady load for the multi-node tests: threads that send `/trac/NAME/pid` requests to given
//! addresses until told to stop (bounded in count and time), recording every answer that a
//! check refuses.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Cluster, Served};

/// Most requests one load thread sends, whatever the time.
const MAX_REQUESTS: u64 = 200_000;

/// What a load thread saw.
#[derive(Default)]
pub struct Tally {
    pub sent: AtomicU64,
    pub ok: AtomicU64,
    /// The refused answers: (seconds since the load started, target, tenant, what came back).
    pub failures: Mutex<Vec<(f64, SocketAddr, String, Served)>>,
    /// How many answers of each status (0: no answer).
    pub statuses: Mutex<std::collections::BTreeMap<u16, u64>>,
}

impl Tally {
    pub fn failures(&self) -> Vec<(f64, SocketAddr, String, Served)> {
        self.failures.lock().expect("tally lock").clone()
    }

    pub fn summary(&self) -> String {
        format!(
            "{} sent, {} ok, statuses {:?}",
            self.sent.load(Ordering::Relaxed),
            self.ok.load(Ordering::Relaxed),
            self.statuses.lock().expect("tally lock")
        )
    }
}

/// One load thread's work: round robin over `targets` (address, tenant, path after the
/// tenant), each answer judged by `good`, until `stop` is set or `limit` passes.
pub struct Load<'a> {
    pub cluster: &'a Cluster,
    pub targets: Vec<(SocketAddr, String, &'static str)>,
    pub stop: &'a AtomicBool,
    pub limit: Duration,
    pub timeout: Duration,
    pub tally: &'a Tally,
}

impl Load<'_> {
    pub fn run(&self, good: impl Fn(&str, &Served) -> bool) {
        let start = Instant::now();
        let mut i = 0usize;
        while !self.stop.load(Ordering::Relaxed)
            && start.elapsed() < self.limit
            && (i as u64) < MAX_REQUESTS
        {
            let (addr, name, path) = &self.targets[i % self.targets.len()];
            i += 1;
            let s = self.cluster.who_serves_path(*addr, name, path, self.timeout);
            self.tally.sent.fetch_add(1, Ordering::Relaxed);
            *self.tally.statuses.lock().expect("tally lock").entry(s.status).or_default() += 1;
            match good(name, &s) {
                true => {
                    self.tally.ok.fetch_add(1, Ordering::Relaxed);
                }
                false => {
                    let at = start.elapsed().as_secs_f64();
                    self.tally.failures.lock().expect("tally lock").push((
                        at,
                        *addr,
                        name.clone(),
                        s,
                    ));
                }
            }
        }
    }
}

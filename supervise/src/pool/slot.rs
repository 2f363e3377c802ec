//! Spawns and watches the worker processes of a pool: one task per process slot.
//!
//! A slot keeps one ready process. To replace it (max_requests, request timeout, memory limit,
//! reload, changed script) the slot starts the successor first and waits for its `Ready`; only
//! then is the old process told to finish its requests and exit, so even `processes = 1`
//! never pauses. A process that dies is restarted with jittered exponential back-off; a slot
//! whose processes fail at start-up marks the pool failing, so requests get 503 at once
//! instead of causing a spawn storm.

use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use paddock_proto::Frame;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::control::Control;
use crate::counters::Reason;
use crate::pool::Pool;
use crate::spawn::{zygote_back, Proc};

/// A process that lived this long is considered healthy: its next failure starts the back-off
/// again from the beginning.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);

/// Orders a slot takes from its pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotCmd {
    /// Replace the process with a fresh one, with no pause: the process with this pid only
    /// (an order for one the slot has replaced since is stale), or with `None` whichever runs.
    Recycle(Reason, Option<u32>),
    /// Stop the process and wait for `Unpark` (idle scale-down).
    Park,
    Unpark,
}

impl SlotCmd {
    /// Whether this order still concerns a slot whose process is `current`.
    fn applies_to(&self, current: u32) -> bool {
        match self {
            SlotCmd::Recycle(_, Some(pid)) => *pid == current,
            _ => true,
        }
    }
}

/// A slot's orders, with room to put one back (coalescing reads one order too far).
struct Cmds {
    rx: mpsc::UnboundedReceiver<SlotCmd>,
    back: Option<SlotCmd>,
}

impl Cmds {
    /// The next order; `None` once the pool dropped its sender. Cancel-safe.
    async fn recv(&mut self) -> Option<SlotCmd> {
        match self.back.take() {
            Some(c) => Some(c),
            None => self.rx.recv().await,
        }
    }

    /// Drop the recycles already queued (a script saved several times, several timeouts):
    /// the replacement about to start satisfies them all. Any other order is kept.
    fn skip_recycles(&mut self) {
        while self.back.is_none() {
            match self.rx.try_recv() {
                Ok(SlotCmd::Recycle(..)) => {}
                Ok(other) => self.back = Some(other),
                Err(_) => return,
            }
        }
    }
}

/// A running worker process.
struct Worker {
    child: Proc,
    pid: u32,
    control: Control,
    /// Started directly while its zygote was away: replaced once it is back.
    rejoin: Option<tokio::sync::watch::Receiver<u64>>,
}

/// Keep one worker process running for `slot` until the pool stops.
pub async fn run_slot(pool: Arc<Pool>, slot: usize, cmds: mpsc::UnboundedReceiver<SlotCmd>) {
    let mut cmds = Cmds { rx: cmds, back: None };
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let mut stop = pool.stop_tx.subscribe();
    let mut parked = false;
    while !pool.is_stopping() {
        if parked {
            parked = wait_unpark(&mut cmds, &mut stop).await;
            continue;
        }
        let started = Instant::now();
        let worker = match start_ready(&pool, slot, &mut stop).await {
            Ok(Some(w)) => w,
            Ok(None) => break,
            // Its zygote died while it started: no fault of the tenant's, start again at once
            // (directly, while the zygote is away).
            Err(why) if why.orphaned => {
                tracing::info!(tenant = %pool.spec.name, slot, "{}", why.text);
                continue;
            }
            Err(why) => {
                let why = why.text;
                tracing::error!(tenant = %pool.spec.name, slot, "{why}");
                pool.start_failed(why);
                sleep_or_stop(backoff.next(), &mut stop).await;
                continue;
            }
        };
        match serve(&pool, slot, worker, &mut cmds, &mut stop).await {
            Ended::Parked => parked = true,
            Ended::Stopped => break,
            // Not the tenant's crash: no back-off (the zygote has its own).
            Ended::Orphaned => {}
            Ended::Died => {
                if started.elapsed() >= HEALTHY_AFTER {
                    backoff.reset();
                }
                sleep_or_stop(backoff.next(), &mut stop).await;
            }
        }
    }
}

enum Ended {
    Died,
    /// Its zygote died, and so did it.
    Orphaned,
    Parked,
    Stopped,
}

/// Run `w` until it dies, the slot is parked or the pool stops; replace it on demand.
async fn serve(
    pool: &Arc<Pool>,
    slot: usize,
    mut w: Worker,
    cmds: &mut Cmds,
    stop: &mut watch::Receiver<bool>,
) -> Ended {
    pool.worker_ready(slot, w.pid);
    loop {
        let reason = tokio::select! {
            status = w.child.wait() => {
                pool.worker_gone(w.pid);
                if w.child.orphaned() {
                    pool.counters.zygote_died();
                    tracing::info!(tenant = %pool.spec.name, slot, pid = w.pid, "worker ended with its zygote; restarting it");
                    return Ended::Orphaned;
                }
                if !pool.is_stopping() {
                    pool.counters.crashed();
                    let status = status.map(describe).unwrap_or_else(|e| e.to_string());
                    tracing::warn!(tenant = %pool.spec.name, slot, pid = w.pid, "worker {status}; restarting it");
                }
                return Ended::Died;
            }
            frame = w.control.next() => match frame {
                Some(Frame::Retire(_)) => Reason::MaxRequests,
                _ => continue,
            },
            _ = zygote_back(&mut w.rejoin) => Reason::ZygoteBack,
            cmd = cmds.recv() => match cmd {
                Some(c) if !c.applies_to(w.pid) => {
                    tracing::debug!(tenant = %pool.spec.name, slot, pid = w.pid, "ignoring a recycle order for a process already replaced: {c:?}");
                    continue;
                }
                Some(SlotCmd::Recycle(r, _)) => {
                    cmds.skip_recycles();
                    r
                }
                Some(SlotCmd::Park) => {
                    pool.worker_gone(w.pid);
                    retire(pool, w, Reason::Idle).await;
                    return Ended::Parked;
                }
                Some(SlotCmd::Unpark) => continue,
                None => {
                    pool.worker_gone(w.pid);
                    retire(pool, w, Reason::Idle).await;
                    return Ended::Stopped;
                }
            },
            _ = stop.changed() => {
                pool.worker_gone(w.pid);
                retire(pool, w, Reason::Reload).await;
                return Ended::Stopped;
            }
        };
        match start_ready(pool, slot, stop).await {
            Ok(Some(fresh)) => {
                pool.worker_ready(slot, fresh.pid);
                pool.worker_gone(w.pid);
                let old = std::mem::replace(&mut w, fresh);
                tracing::info!(tenant = %pool.spec.name, slot, old = old.pid, new = w.pid, reason = reason.as_str(), "worker recycled");
                let p = pool.clone();
                tokio::spawn(async move { retire(&p, old, reason).await });
            }
            Ok(None) => {
                pool.worker_gone(w.pid);
                retire(pool, w, Reason::Reload).await;
                return Ended::Stopped;
            }
            // The old process keeps serving; the next Retire or command tries again.
            Err(why) => {
                tracing::error!(tenant = %pool.spec.name, slot, "replacement failed, keeping pid {}: {}", w.pid, why.text)
            }
        }
    }
}

/// Wait for `Unpark`; false if the pool stopped meanwhile.
async fn wait_unpark(cmds: &mut Cmds, stop: &mut watch::Receiver<bool>) -> bool {
    loop {
        tokio::select! {
            cmd = cmds.recv() => match cmd {
                Some(SlotCmd::Unpark) => return false,
                Some(_) => continue,
                None => return true,
            },
            _ = stop.changed() => return true,
        }
    }
}

async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = stop.changed() => {}
    }
}

/// Why a process did not become ready.
struct StartError {
    text: String,
    /// It ended because its zygote died.
    orphaned: bool,
}

impl From<String> for StartError {
    fn from(text: String) -> Self {
        StartError { text, orphaned: false }
    }
}

/// Spawn a process and wait for its `Ready`. `Ok(None)`: the pool stopped meanwhile.
async fn start_ready(
    pool: &Arc<Pool>,
    slot: usize,
    stop: &mut watch::Receiver<bool>,
) -> Result<Option<Worker>, StartError> {
    let name = &pool.spec.name;
    // Held until the worker is ready or failed: a node that takes over a crashed node's
    // tenants starts them a few at a time rather than all at once.
    let _starting = tokio::select! {
        p = pool.starts.clone().acquire_owned() => p.ok(),
        _ = stop.changed() => return Ok(None),
    };
    let (mut child, mut control) = pool
        .starter
        .start(&pool.launch(), slot)
        .await
        .map_err(|e| format!("cannot start a worker for tenant `{name}`: {e}"))?;
    let pid = child.id();
    pool.counters.spawned();
    let timeout = pool.spec.settings.process.startup_timeout;
    tokio::select! {
        r = control.wait_ready() => match r {
            Ok(()) => {
                tracing::info!(tenant = %name, slot, pid, "worker ready");
                let rejoin = child.take_rejoin();
                Ok(Some(Worker { child, pid, control, rejoin }))
            }
            Err(e) => {
                let status = child.wait().await.map(describe).unwrap_or_else(|e| e.to_string());
                let text = format!("worker {pid} of tenant `{name}` {status} before it was ready ({e}); its output is logged above");
                Err(StartError { text, orphaned: child.orphaned() })
            }
        },
        _ = tokio::time::sleep(timeout) => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            Err(format!("worker {pid} of tenant `{name}` was not ready within {timeout:?} (startup_timeout)").into())
        }
        _ = stop.changed() => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            Ok(None)
        }
    }
}

/// SIGTERM: the process stops accepting, finishes what it accepted and exits; SIGKILL after
/// `graceful_timeout` (at once if the pool was stopped with [`Pool::stop_now`]).
async fn retire(pool: &Pool, mut w: Worker, reason: Reason) {
    pool.counters.exited(reason);
    w.child.terminate();
    let grace = pool.stop_grace();
    if tokio::time::timeout(grace, w.child.wait()).await.is_err() {
        match grace.is_zero() {
            true => {
                tracing::info!(tenant = %pool.spec.name, pid = w.pid, "fast stop: killing worker")
            }
            false => {
                tracing::warn!(tenant = %pool.spec.name, pid = w.pid, "worker still busy after {grace:?} (graceful_timeout); killing it")
            }
        }
        let _ = w.child.start_kill();
        let _ = w.child.wait().await;
    }
}

fn describe(s: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(3), _) => "could not load its WSGI app (exit code 3)".to_string(),
        (Some(c), _) => format!("exited with code {c}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => "exited".to_string(),
    }
}

/// Exponential back-off with jitter, so many failing pools do not retry in lock-step.
struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    fn new(base: Duration, max: Duration) -> Self {
        Backoff { base, max, attempt: 0 }
    }

    fn reset(&mut self) {
        self.attempt = 0;
    }

    fn next(&mut self) -> Duration {
        let exp = self.base.saturating_mul(1u32 << self.attempt.min(16));
        self.attempt = self.attempt.saturating_add(1);
        let capped = exp.min(self.max);
        capped.mul_f64(0.5 + crate::spawn::jitter_fraction() / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let first = b.next();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        for _ in 0..10 {
            assert!(b.next() <= Duration::from_secs(1));
        }
        b.reset();
        assert!(b.next() <= Duration::from_millis(100));
    }

    /// Three request timeouts of pid 10 queue three recycles; the first replaces it (by
    /// 11), the two read after that are stale and must not replace 11 as well.
    #[tokio::test]
    async fn a_recycle_for_a_replaced_process_is_ignored() {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut cmds = Cmds { rx, back: None };
        let timeout = SlotCmd::Recycle(Reason::Timeout, Some(10));
        tx.send(timeout).expect("send");
        let first = cmds.recv().await.expect("order");
        assert!(first.applies_to(10));
        // Sent while the successor starts, after the first was read.
        tx.send(timeout).expect("send");
        tx.send(timeout).expect("send");
        let mut current = 11;
        let mut recycles = 1;
        while let Ok(Some(c)) = tokio::time::timeout(Duration::from_millis(10), cmds.recv()).await {
            if c.applies_to(current) {
                recycles += 1;
                current += 1;
            }
        }
        assert_eq!(recycles, 1, "pid 10 was recycled {recycles} times");
        // An order without a pid (reload, changed script) concerns whatever runs.
        assert!(SlotCmd::Recycle(Reason::Reload, None).applies_to(current));
        assert!(SlotCmd::Recycle(Reason::Memory, Some(current)).applies_to(current));
    }

    #[tokio::test]
    async fn coalescing_recycles_keeps_other_orders() {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut cmds = Cmds { rx, back: None };
        for c in [
            SlotCmd::Recycle(Reason::ScriptChanged, None),
            SlotCmd::Recycle(Reason::ScriptChanged, None),
            SlotCmd::Park,
            SlotCmd::Recycle(Reason::ScriptChanged, None),
        ] {
            tx.send(c).expect("send");
        }
        assert_eq!(cmds.recv().await, Some(SlotCmd::Recycle(Reason::ScriptChanged, None)));
        cmds.skip_recycles();
        assert_eq!(cmds.recv().await, Some(SlotCmd::Park), "the park order survives");
        assert_eq!(cmds.recv().await, Some(SlotCmd::Recycle(Reason::ScriptChanged, None)));
    }
}

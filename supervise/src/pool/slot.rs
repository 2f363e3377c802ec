//! Spawns and watches the worker processes of a pool: one task per process slot.
//!
//! A slot keeps one ready process. To replace it (max_requests, request timeout, memory limit,
//! reload, changed script) the slot starts the successor first and waits for its `Ready`; only
//! then is the old process told to finish its requests and exit, so even `processes = 1`
//! never pauses. For `max_requests` the successor is started ahead of time: the worker says
//! when it is [`Lead`] requests short of its limit, the successor starts and, once ready,
//! shares the listener with it, and the old process is retired when it reaches its limit. So
//! a process serves `max_requests` plus what it accepted before it was told to stop, unless
//! the successor's start takes longer than the lead foresaw (then it serves on until that
//! successor is ready, as without a lead). A process that dies is restarted with jittered exponential back-off; a slot
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
    /// The `--retire-lead` it was started with (0: it sends only the last `Retire`).
    lead: u64,
    /// `Retire` frames it sent so far.
    retires: u32,
    /// From its start to its `Ready`.
    took: Duration,
    ready_at: Instant,
}

/// How many requests ahead of `max_requests` a slot's next process asks for its successor:
/// what the last process served per second, times the slowest of the last [`STARTS_KEPT`]
/// start-ups, half as much again, plus one; a quarter of `max_requests` before anything was
/// measured. At least 1 and below `max_requests` (0 without one, or with
/// `max_requests = 1`). Too long a lead costs only an earlier overlap of two processes; too
/// short, a process serving on past its limit.
#[derive(Debug, Clone)]
pub(crate) struct Lead {
    max: u64,
    startups: std::collections::VecDeque<Duration>,
    per_sec: Option<f64>,
}

/// Start-up times a [`Lead`] looks at.
const STARTS_KEPT: usize = 4;

impl Lead {
    pub(crate) fn new(max_requests: u64) -> Lead {
        Lead { max: max_requests, startups: Default::default(), per_sec: None }
    }

    pub(crate) fn value(&self) -> u64 {
        if self.max < 2 {
            return 0;
        }
        let slowest = self.startups.iter().max();
        let guess = match (slowest, self.per_sec) {
            (Some(s), Some(r)) => {
                (r * s.as_secs_f64() * 1.5).ceil().min(u64::MAX as f64) as u64 + 1
            }
            _ => self.max / 4,
        };
        guess.clamp(1, self.max - 1)
    }

    /// A process started in `took`.
    pub(crate) fn started(&mut self, took: Duration) {
        if self.startups.len() == STARTS_KEPT {
            self.startups.pop_front();
        }
        self.startups.push_back(took);
    }

    /// A process served `requests` in `over` from its `Ready`.
    pub(crate) fn served(&mut self, requests: u64, over: Duration) {
        if requests > 0 && !over.is_zero() {
            self.per_sec = Some(requests as f64 / over.as_secs_f64());
        }
    }
}

/// A successor being started ahead of time (see [`serve`]): its own task-free future, with its
/// own view of the pool's stop.
type Successor =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Option<Worker>, StartError>> + Send>>;

fn successor(pool: &Arc<Pool>, slot: usize, lead: u64) -> Successor {
    let pool = pool.clone();
    Box::pin(async move {
        let mut stop = pool.stop_tx.subscribe();
        start_ready(&pool, slot, &mut stop, lead).await
    })
}

/// Wait for a successor being started, if there is one; pends forever otherwise.
async fn next_ready(next: &mut Option<Successor>) -> Result<Option<Worker>, StartError> {
    match next.as_mut() {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// Wait for an early successor to end, if there is one; pends forever otherwise.
async fn early_ended(early: &mut Option<Worker>) {
    match early.as_mut() {
        Some(e) => {
            let _ = e.child.wait().await;
        }
        None => std::future::pending().await,
    }
}

/// Whether a process started before an order to replace (`reason`) may stand for the
/// replacement: not if the order is for new code or a new configuration.
fn may_take_over(reason: Reason) -> bool {
    matches!(reason, Reason::MaxRequests | Reason::Timeout | Reason::Memory)
}

/// Keep one worker process running for `slot` until the pool stops.
pub async fn run_slot(pool: Arc<Pool>, slot: usize, cmds: mpsc::UnboundedReceiver<SlotCmd>) {
    let mut cmds = Cmds { rx: cmds, back: None };
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let mut stop = pool.stop_tx.subscribe();
    let mut parked = false;
    let mut lead = Lead::new(pool.spec.settings.process.max_requests);
    while !pool.is_stopping() {
        if parked {
            parked = wait_unpark(&mut cmds, &mut stop).await;
            continue;
        }
        let started = Instant::now();
        let worker = match start_ready(&pool, slot, &mut stop, lead.value()).await {
            Ok(Some(w)) => {
                lead.started(w.took);
                w
            }
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
        match serve(&pool, slot, worker, &mut cmds, &mut stop, &mut lead).await {
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
    lead: &mut Lead,
) -> Ended {
    pool.worker_ready(slot, w.pid);
    // The successor `w` asked for ahead of its limit: starting, then ready and serving beside
    // `w` until `w` reaches its limit.
    let mut next: Option<Successor> = None;
    let mut early: Option<Worker> = None;
    // `w` reached its limit while its successor was still starting.
    let mut due = false;
    loop {
        let reason = tokio::select! {
            status = w.child.wait() => {
                pool.worker_gone(w.pid);
                let orphaned = w.child.orphaned();
                if orphaned {
                    pool.counters.zygote_died();
                    tracing::info!(tenant = %pool.spec.name, slot, pid = w.pid, "worker ended with its zygote; restarting it");
                } else if !pool.is_stopping() {
                    pool.counters.crashed();
                    let status = status.map(describe).unwrap_or_else(|e| e.to_string());
                    tracing::warn!(tenant = %pool.spec.name, slot, pid = w.pid, "worker {status}; restarting it");
                }
                if let Some(e) = early.take() {
                    // Its successor serves already: it takes over.
                    w = e;
                    due = false;
                    continue;
                }
                if let Some(n) = next.take() {
                    // Its successor was starting: it takes over once ready.
                    match n.await {
                        Ok(Some(e)) => {
                            lead.started(e.took);
                            pool.worker_ready(slot, e.pid);
                            w = e;
                            due = false;
                            continue;
                        }
                        Ok(None) => return Ended::Stopped,
                        Err(why) => tracing::error!(tenant = %pool.spec.name, slot, "successor failed: {}", why.text),
                    }
                }
                return if orphaned { Ended::Orphaned } else { Ended::Died };
            }
            () = early_ended(&mut early) => {
                if let Some(e) = early.take() {
                    pool.worker_gone(e.pid);
                    pool.counters.crashed();
                    tracing::warn!(tenant = %pool.spec.name, slot, pid = e.pid, "the successor started ahead of time ended; the old process serves on");
                }
                continue;
            }
            fresh = next_ready(&mut next) => {
                next = None;
                match fresh {
                    Ok(Some(f)) => {
                        lead.started(f.took);
                        pool.worker_ready(slot, f.pid);
                        early = Some(f);
                        if !due {
                            continue;
                        }
                        Reason::MaxRequests
                    }
                    Ok(None) => {
                        pool.worker_gone(w.pid);
                        retire(pool, w, Reason::Reload).await;
                        return Ended::Stopped;
                    }
                    Err(why) => {
                        tracing::error!(tenant = %pool.spec.name, slot, "successor failed, keeping pid {}: {}", w.pid, why.text);
                        if !due {
                            continue;
                        }
                        // Once more, now that the limit is reached.
                        Reason::MaxRequests
                    }
                }
            }
            frame = w.control.next() => match frame {
                Some(Frame::Retire(r)) => {
                    w.retires += 1;
                    if w.lead > 0 && w.retires == 1 {
                        if next.is_none() && early.is_none() {
                            next = Some(successor(pool, slot, lead.value()));
                        }
                        continue;
                    }
                    lead.served(r.requests, w.ready_at.elapsed());
                    if next.is_some() {
                        due = true;
                        continue;
                    }
                    Reason::MaxRequests
                }
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
                    retire_all(pool, w, early, next, Reason::Idle).await;
                    return Ended::Parked;
                }
                Some(SlotCmd::Unpark) => continue,
                None => {
                    retire_all(pool, w, early, next, Reason::Idle).await;
                    return Ended::Stopped;
                }
            },
            _ = stop.changed() => {
                retire_all(pool, w, early, next, Reason::Reload).await;
                return Ended::Stopped;
            }
        };
        // Its successor was serving already when it reached its limit.
        let ahead = early.is_some() && !due;
        due = false;
        // The process that takes over: the one started ahead of time if it may, else a new one
        // (a successor still starting is waited for first: it is no use for new code).
        if let Some(n) = next.take() {
            match n.await {
                Ok(Some(f)) => {
                    lead.started(f.took);
                    pool.worker_ready(slot, f.pid);
                    early = Some(f);
                }
                Ok(None) => {
                    retire_all(pool, w, early, None, Reason::Reload).await;
                    return Ended::Stopped;
                }
                Err(why) => {
                    tracing::error!(tenant = %pool.spec.name, slot, "successor failed: {}", why.text)
                }
            }
        }
        let fresh = match early.take() {
            Some(e) if may_take_over(reason) => e,
            stale => {
                if let Some(e) = stale {
                    pool.worker_gone(e.pid);
                    let p = pool.clone();
                    tokio::spawn(async move { retire(&p, e, reason).await });
                }
                match start_ready(pool, slot, stop, lead.value()).await {
                    Ok(Some(f)) => {
                        lead.started(f.took);
                        pool.worker_ready(slot, f.pid);
                        f
                    }
                    Ok(None) => {
                        pool.worker_gone(w.pid);
                        retire(pool, w, Reason::Reload).await;
                        return Ended::Stopped;
                    }
                    // The old process keeps serving; the next Retire or command tries again.
                    Err(why) => {
                        tracing::error!(tenant = %pool.spec.name, slot, "replacement failed, keeping pid {}: {}", w.pid, why.text);
                        continue;
                    }
                }
            }
        };
        pool.worker_gone(w.pid);
        let old = std::mem::replace(&mut w, fresh);
        tracing::info!(tenant = %pool.spec.name, slot, old = old.pid, new = w.pid, reason = reason.as_str(), ahead, "worker recycled");
        let p = pool.clone();
        tokio::spawn(async move { retire(&p, old, reason).await });
    }
}

/// Stop `w`, a successor started ahead of time and one still starting (the pool stopped or
/// the slot is parked).
async fn retire_all(
    pool: &Arc<Pool>,
    w: Worker,
    early: Option<Worker>,
    next: Option<Successor>,
    reason: Reason,
) {
    pool.worker_gone(w.pid);
    if let Some(e) = early {
        pool.worker_gone(e.pid);
        retire(pool, e, reason).await;
    }
    retire(pool, w, reason).await;
    if let Some(n) = next {
        // It sees the pool's stop itself; parked, it is retired once ready.
        if let Ok(Some(e)) = n.await {
            retire(pool, e, reason).await;
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
    lead: u64,
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
        .start(&pool.launch(lead), slot)
        .await
        .map_err(|e| format!("cannot start a worker for tenant `{name}`: {e}"))?;
    let pid = child.id();
    let began = Instant::now();
    pool.counters.spawned();
    let timeout = pool.spec.settings.process.startup_timeout;
    tokio::select! {
        r = control.wait_ready() => match r {
            Ok(()) => {
                tracing::info!(tenant = %name, slot, pid, "worker ready");
                let rejoin = child.take_rejoin();
                let ready_at = Instant::now();
                let took = ready_at - began;
                Ok(Some(Worker { child, pid, control, rejoin, lead, retires: 0, took, ready_at }))
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

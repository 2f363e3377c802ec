//! The pool's concurrency on fake workers (`testkit.rs`), in paused, virtual time.

use std::os::fd::AsRawFd;

use super::*;
use crate::testkit::{
    connect, pool, request, settings, spec, until, until_status, within, Ending, Fakes, Plan, Start,
};
use tokio::time::Instant;

const MS: Duration = Duration::from_millis(1);

fn fd(c: &WorkerConn) -> i32 {
    c.reader.get_ref().as_raw_fd()
}

/// A ready pool of `processes` × `threads` on `fakes`.
async fn ready_pool(
    fakes: &Arc<Fakes>,
    processes: usize,
    threads: usize,
    tune: impl FnOnce(&mut paddock_config::PoolSettings),
) -> (Arc<Pool>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = settings(processes, threads);
    tune(&mut s);
    let p = pool(spec("t", dir.path(), s), dir.path(), fakes);
    until_status(&p, |s| *s == Status::Ready).await;
    until("every process ready", || p.ready_pids().len() == processes).await;
    (p, dir)
}

/// `elapsed` is `want` of virtual time (timers round up to the millisecond).
fn assert_took(elapsed: Duration, want: Duration) {
    assert!(elapsed >= want && elapsed <= want + MS, "took {elapsed:?}, not {want:?}");
}

#[tokio::test(start_paused = true)]
async fn admits_processes_times_threads_at_once_and_the_next_when_one_is_released() {
    let fakes = Fakes::ready();
    let (p, _dir) = ready_pool(&fakes, 2, 3, |_| {}).await;
    let t0 = Instant::now();
    let mut permits = Vec::new();
    for _ in 0..6 {
        permits.push(p.admit().await.expect("admitted"));
    }
    assert_eq!(t0.elapsed(), Duration::ZERO, "the first six wait for nothing");
    assert_eq!(p.in_flight(), 6);
    let waiter = tokio::spawn({
        let p = p.clone();
        async move { p.admit().await.map(|_permit| Instant::now()) }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!waiter.is_finished(), "a seventh was admitted with six in flight");
    assert_eq!(p.queued(), 1);
    let released = Instant::now();
    drop(permits.pop());
    let admitted_at = within("the waiter", waiter).await.expect("join").expect("admitted");
    assert_eq!(admitted_at, released, "the waiter is admitted as soon as a permit is released");
    assert_eq!(p.queued(), 0);
}

#[tokio::test(start_paused = true)]
async fn beyond_queue_limit_a_request_is_refused_at_once() {
    let fakes = Fakes::ready();
    let (p, _dir) = ready_pool(&fakes, 1, 1, |s| s.admission.queue_limit = 2).await;
    let _busy = p.admit().await.expect("admitted");
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let p = p.clone();
            tokio::spawn(async move { p.admit().await.map(drop) })
        })
        .collect();
    until("two waiting", || p.queued() == 2).await;
    let t0 = Instant::now();
    let third = p.admit().await;
    assert_eq!(t0.elapsed(), Duration::ZERO);
    assert!(matches!(third, Err(PoolError::QueueFull { limit: 2, .. })), "{third:?}");
    assert_eq!(p.queued(), 2, "the refused one was never counted");
    for w in &waiters {
        assert!(!w.is_finished());
    }
}

#[tokio::test(start_paused = true)]
async fn a_waiter_times_out_after_exactly_queue_timeout() {
    let fakes = Fakes::ready();
    let wait = Duration::from_secs(7);
    let (p, _dir) = ready_pool(&fakes, 1, 1, |s| s.admission.queue_timeout = wait).await;
    let _busy = p.admit().await.expect("admitted");
    let t0 = Instant::now();
    let r = within("the waiter", p.admit()).await;
    assert_took(t0.elapsed(), wait);
    assert!(matches!(r, Err(PoolError::QueueTimeout { waited, .. }) if waited == wait), "{r:?}");
    assert_eq!(p.queued(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiter_leaves_the_queue() {
    let fakes = Fakes::ready();
    let (p, _dir) = ready_pool(&fakes, 1, 1, |s| s.admission.queue_limit = 1).await;
    let busy = p.admit().await.expect("admitted");
    let waiter = tokio::spawn({
        let p = p.clone();
        async move { p.admit().await.map(drop) }
    });
    until("one waiting", || p.queued() == 1).await;
    // The client went away: its request's future is dropped.
    waiter.abort();
    assert!(within("the aborted waiter", waiter).await.is_err_and(|e| e.is_cancelled()));
    assert_eq!(p.queued(), 0);
    // Its place in the queue (limit 1) is free again, and no permit went with it.
    let next = tokio::spawn({
        let p = p.clone();
        async move { p.admit().await.map(drop) }
    });
    until("the next one waiting", || p.queued() == 1).await;
    drop(busy);
    within("the next one", next).await.expect("join").expect("admitted");
    assert_eq!((p.queued(), p.in_flight()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_request_waits_while_starting_and_is_admitted_on_ready() {
    let fakes = Fakes::new(Plan::start(Start::ReadyAfter(Duration::from_secs(5))));
    let dir = tempfile::tempdir().expect("tempdir");
    let p = pool(spec("t", dir.path(), settings(1, 1)), dir.path(), &fakes);
    assert_eq!(p.status(), Status::Starting);
    let t0 = Instant::now();
    let permit = within("admission", p.admit()).await.expect("admitted");
    assert_took(t0.elapsed(), Duration::from_secs(5));
    assert_eq!(p.status(), Status::Ready);
    assert_eq!(p.ready_pids(), vec![fakes.workers()[0].pid]);
    drop(permit);
}

#[tokio::test(start_paused = true)]
async fn without_ready_a_request_gets_start_timeout_after_startup_timeout() {
    let fakes = Fakes::new(Plan::start(Start::NeverReady));
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = settings(1, 1);
    s.process.startup_timeout = Duration::from_secs(4);
    let p = pool(spec("t", dir.path(), s), dir.path(), &fakes);
    let t0 = Instant::now();
    let r = within("admission", p.admit()).await;
    assert_took(t0.elapsed(), Duration::from_secs(4));
    assert!(matches!(r, Err(PoolError::StartTimeout { .. })), "{r:?}");
    // The slot gave up on it as well, and killed it.
    assert_eq!(fakes.workers()[0].ended().await, Ending::Killed);
    until_status(&p, |s| matches!(s, Status::Failed(_))).await;
}

#[tokio::test(start_paused = true)]
async fn a_worker_that_fails_to_start_fails_the_pool_until_one_starts() {
    let fakes = Fakes::new(Plan::start(Start::Fails));
    let dir = tempfile::tempdir().expect("tempdir");
    let p = pool(spec("t", dir.path(), settings(1, 1)), dir.path(), &fakes);
    until_status(&p, |s| matches!(s, Status::Failed(_))).await;
    let Status::Failed(why) = p.status() else { unreachable!("checked above") };
    assert!(why.contains("could not load its WSGI app (exit code 3)"), "{why}");
    let t0 = Instant::now();
    let r = p.admit().await;
    assert_eq!(t0.elapsed(), Duration::ZERO, "refused at once");
    assert!(matches!(r, Err(PoolError::Unavailable { .. })), "{r:?}");
    assert_eq!(p.in_flight(), 0, "the refused request holds no permit");
    // A start that fails outright fails it too; the next one that starts makes it ready.
    fakes.then(Plan::start(Start::SpawnError));
    fakes.set_default(Plan::start(Start::Ready));
    until_status(&p, |s| *s == Status::Ready).await;
    assert_eq!(fakes.spawn_errors(), 1);
    let _permit = within("admission", p.admit()).await.expect("admitted once a worker started");
}

#[tokio::test(start_paused = true)]
async fn a_crashed_worker_is_restarted_in_its_slot_after_a_back_off() {
    let fakes = Fakes::ready();
    let (p, _dir) = ready_pool(&fakes, 2, 1, |_| {}).await;
    let crashed = fakes.workers()[1].clone();
    let crashed_at = Instant::now();
    crashed.exit(1);
    assert_eq!(crashed.ended().await, Ending::Exited(1));
    until("the crashed one forgotten", || !p.ready_pids().contains(&crashed.pid)).await;
    assert_eq!(p.status(), Status::Ready, "the other process still serves");
    until("a third worker", || fakes.workers().len() == 3).await;
    let restarted = fakes.workers()[2].clone();
    let after = restarted.record().ready_at.expect("ready at once") - crashed_at;
    // The first back-off: 500 ms, jittered down to no less than half.
    assert!(
        after >= Duration::from_millis(250) && after <= Duration::from_millis(501),
        "{after:?}"
    );
    assert_eq!(restarted.slot, crashed.slot);
    until("both ready", || p.ready_pids().len() == 2).await;
    assert_eq!(Counters::get(&p.counters.crashes), 1);
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_reused_most_recently_used_first() {
    let fakes = Fakes::ready();
    let (p, _dir) = ready_pool(&fakes, 1, 2, |_| {}).await;
    let mut a = connect(&p).await;
    let mut b = connect(&p).await;
    request(&mut a).await;
    request(&mut b).await;
    let (fa, fb) = (fd(&a), fd(&b));
    p.put_conn(a);
    p.put_conn(b);
    let first = p.take_conn().expect("an idle connection");
    assert_eq!(fd(&first), fb, "the most recently used first");
    let second = p.take_conn().expect("another idle connection");
    assert_eq!(fd(&second), fa);
    assert!(p.take_conn().is_none());
    // Reused, it carries requests again.
    let mut first = first;
    request(&mut first).await;
    assert_eq!(fakes.workers()[0].record().requests, 3);
}

#[tokio::test(start_paused = true)]
async fn take_conn_drops_idle_connections_whose_worker_said_goodbye_or_closed() {
    let fakes = Fakes::ready();
    let (p, _dir) = ready_pool(&fakes, 1, 3, |_| {}).await;
    let fake = fakes.workers()[0].clone();
    // Accepted in this order: the fake's connections 0, 1, 2.
    let quiet = connect(&p).await;
    let closed = connect(&p).await;
    let goodbye = connect(&p).await;
    let fq = fd(&quiet);
    p.put_conn(quiet);
    p.put_conn(closed);
    p.put_conn(goodbye);
    fake.goodbye(2);
    fake.close(1);
    until("the Goodbye sent", || fake.record().goodbyes == 1).await;
    // Let the reactor see what came in on the idle connections.
    tokio::time::sleep(MS).await;
    assert_eq!(p.conns_open.load(Ordering::Acquire), 3);
    let taken = p.take_conn().expect("the quiet connection");
    assert_eq!(fd(&taken), fq, "the most recent two are not handed out");
    assert!(p.take_conn().is_none());
    assert_eq!(p.conns_open.load(Ordering::Acquire), 1, "the other two were closed");
}

#[tokio::test(start_paused = true)]
async fn put_conn_drops_a_connection_of_a_process_no_longer_ready() {
    let fakes = Fakes::ready();
    let (p, _dir) = ready_pool(&fakes, 1, 1, |_| {}).await;
    let mut c = connect(&p).await;
    request(&mut c).await;
    let old = c.pid;
    // It asks to be replaced (as at --max-requests); once its successor is ready it is no
    // longer ready itself.
    fakes.worker(old).retire();
    until("the successor ready", || p.ready_pids().first().is_some_and(|&n| n != old)).await;
    p.put_conn(c);
    // Dropped by put_conn itself, not left for take_conn to find closed.
    assert_eq!(p.lock().idle.len(), 0, "a connection to the replaced process was kept");
    assert_eq!(p.conns_open.load(Ordering::Acquire), 0);
    assert!(p.take_conn().is_none());
}

#[tokio::test(start_paused = true)]
async fn reserve_conn_at_the_limit_closes_the_least_recently_used_idle_one() {
    let fakes = Fakes::ready();
    let (p, _dir) = ready_pool(&fakes, 1, 2, |_| {}).await;
    let older = connect(&p).await;
    let newer = connect(&p).await;
    let fnewer = fd(&newer);
    p.put_conn(older);
    p.put_conn(newer);
    assert_eq!(p.conns_open.load(Ordering::Acquire), 2);
    // Below the limit nothing is closed; at it, the least recently used one is.
    let reserved = p.reserve_conn();
    assert_eq!(p.conns_open.load(Ordering::Acquire), 2, "one closed, one reserved");
    let left = p.take_conn().expect("the newer connection stays");
    assert_eq!(fd(&left), fnewer);
    assert!(p.take_conn().is_none());
    drop((left, reserved));
    assert_eq!(p.conns_open.load(Ordering::Acquire), 0);
}

#[tokio::test(start_paused = true)]
async fn a_retiring_worker_is_terminated_only_once_its_successor_is_ready() {
    let fakes = Fakes::ready();
    let slow = Duration::from_secs(5);
    fakes.then(Plan { start: Start::Ready, retire_after: Some(2) });
    fakes.then(Plan::start(Start::ReadyAfter(slow)));
    let (p, _dir) = ready_pool(&fakes, 1, 1, |_| {}).await;
    let old = fakes.workers()[0].clone();
    let mut c = connect(&p).await;
    request(&mut c).await;
    request(&mut c).await;
    until("the Retire sent", || old.record().retires == 1).await;
    until("the successor started", || fakes.workers().len() == 2).await;
    let new = fakes.workers()[1].clone();
    let asked = Instant::now();
    // While the successor starts, the old one serves on.
    tokio::time::sleep(slow - Duration::from_secs(1)).await;
    assert_eq!(p.ready_pids(), vec![old.pid]);
    assert_eq!(old.record().ending, None);
    p.put_conn(c);
    let mut c = p.take_conn().expect("the old worker's connection");
    request(&mut c).await;
    assert_eq!(old.ended().await, Ending::Terminated);
    let (o, n) = (old.record(), new.record());
    let ready_at = n.ready_at.expect("the successor became ready");
    assert!(ready_at > asked);
    assert!(o.stopped_at.expect("stopped") >= ready_at, "stopped before its successor was ready");
    assert_eq!(o.ready_pids_at_stop, Some(vec![new.pid]), "no moment without a ready process");
    assert_eq!(p.ready_pids(), vec![new.pid]);
    assert_eq!(Counters::get(&p.counters.recycles_max_requests), 1);
    // Its idle connection was closed when it stopped taking requests.
    p.put_conn(c);
    assert!(p.take_conn().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_successor_starts_ahead_and_the_old_process_serves_exactly_max_requests() {
    let fakes = Fakes::ready();
    let slow = Duration::from_secs(5);
    fakes.then(Plan { start: Start::Ready, retire_after: Some(8) });
    fakes.then(Plan { start: Start::ReadyAfter(slow), retire_after: Some(8) });
    let (p, _dir) = ready_pool(&fakes, 1, 1, |s| s.process.max_requests = 8).await;
    let old = fakes.workers()[0].clone();
    // Nothing measured yet: a quarter of max_requests.
    assert_eq!(old.record().lead, 2);
    let mut c = connect(&p).await;
    for _ in 0..6 {
        request(&mut c).await;
    }
    until("the early Retire", || old.record().retires == 1).await;
    until("the successor started", || fakes.workers().len() == 2).await;
    let new = fakes.workers()[1].clone();
    // While it starts, the old one serves on; once ready, both take requests.
    tokio::time::sleep(slow + Duration::from_secs(1)).await;
    let mut both = p.ready_pids();
    both.sort_unstable();
    assert_eq!(both, vec![old.pid, new.pid], "the successor serves beside the old process");
    assert_eq!(old.record().ending, None, "retired before its limit");
    request(&mut c).await;
    assert_eq!(old.record().ending, None, "retired before its limit");
    request(&mut c).await;
    assert_eq!(old.ended().await, Ending::Terminated);
    let (o, n) = (old.record(), new.record());
    assert_eq!(o.requests, 8, "the old process served max_requests, no more, no fewer");
    assert_eq!(o.ready_pids_at_stop, Some(vec![new.pid]), "no moment without a ready process");
    assert!(n.ready_at.expect("ready") < o.stopped_at.expect("stopped"));
    assert_eq!(Counters::get(&p.counters.recycles_max_requests), 1);
    // Started before the old process's rate was known: a quarter of max_requests again.
    assert_eq!(n.lead, 2);
}

#[tokio::test(start_paused = true)]
async fn a_limit_reached_before_the_successor_is_ready_waits_for_it() {
    let fakes = Fakes::ready();
    let slow = Duration::from_secs(5);
    fakes.then(Plan { start: Start::Ready, retire_after: Some(4) });
    fakes.then(Plan::start(Start::ReadyAfter(slow)));
    let (p, _dir) = ready_pool(&fakes, 1, 1, |s| s.process.max_requests = 4).await;
    let old = fakes.workers()[0].clone();
    let mut c = connect(&p).await;
    for _ in 0..6 {
        request(&mut c).await;
    }
    until("both Retire frames", || old.record().retires == 2).await;
    assert_eq!(fakes.workers().len(), 2, "one successor, started at the early Retire");
    assert_eq!(p.ready_pids(), vec![old.pid], "the old process serves on meanwhile");
    let new = fakes.workers()[1].clone();
    assert_eq!(old.ended().await, Ending::Terminated);
    assert_eq!(old.record().ready_pids_at_stop, Some(vec![new.pid]));
    assert_eq!(p.ready_pids(), vec![new.pid]);
}

#[test]
fn the_lead_is_what_one_start_up_takes_at_the_last_rate() {
    use crate::pool::slot::Lead;
    let mut l = Lead::new(1000);
    assert_eq!(l.value(), 250);
    l.started(Duration::from_millis(200));
    l.served(1000, Duration::from_secs(10));
    // 100/s x 0.2 s x 1.5 + 1
    assert_eq!(l.value(), 31);
    // The slowest of the last four start-ups counts.
    l.started(Duration::from_millis(100));
    assert_eq!(l.value(), 31);
    for _ in 0..3 {
        l.started(Duration::from_millis(100));
    }
    assert_eq!(l.value(), 16);
    l.served(1000, Duration::from_millis(100));
    assert_eq!(l.value(), 999, "below max_requests");
    assert_eq!(Lead::new(1).value(), 0);
    assert_eq!(Lead::new(0).value(), 0);
}

#[tokio::test(start_paused = true)]
async fn recycle_orders_for_a_process_already_replaced_are_ignored() {
    let fakes = Fakes::ready();
    let slow = Duration::from_secs(2);
    fakes.then(Plan::start(Start::Ready));
    fakes.then(Plan::start(Start::ReadyAfter(slow)));
    let (p, _dir) = ready_pool(&fakes, 1, 1, |_| {}).await;
    let first = fakes.workers()[0].pid;
    // Three request timeouts of one process: three orders naming it.
    assert!(p.recycle_pid(first, Reason::Timeout));
    until("the successor started", || fakes.workers().len() == 2).await;
    assert!(p.recycle_pid(first, Reason::Timeout), "still ready while its successor starts");
    assert!(p.recycle_pid(first, Reason::Timeout));
    let second = fakes.workers()[1].pid;
    until("the successor ready", || p.ready_pids() == vec![second]).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(fakes.workers().len(), 2, "a stale order replaced the successor too");
    assert_eq!(p.ready_pids(), vec![second]);
    assert!(!p.recycle_pid(first, Reason::Timeout), "an order for a pid no longer ours");
    // An order naming no process still replaces whatever runs.
    p.recycle_all(Reason::Reload);
    until("a third worker", || fakes.workers().len() == 3).await;
    let third = fakes.workers()[2].pid;
    until("the third ready", || p.ready_pids() == vec![third]).await;
    assert_eq!(fakes.worker(second).ended().await, Ending::Terminated);
}

#[tokio::test(start_paused = true)]
async fn a_pool_is_parked_once_however_many_ask() {
    let fakes = Fakes::ready();
    let (pool, _dir) = ready_pool(&fakes, 2, 1, |_| {}).await;
    assert!(pool.shrink_to_one(), "the first shrink stops a process");
    assert!(!pool.shrink_to_one(), "a second shrink finds one process already");
    assert!(pool.park_all(), "parking the last one stops it");
    assert!(!pool.park_all(), "a second request to park finds it parked: not counted again");
}

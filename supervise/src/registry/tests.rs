//! The global budget and LRU eviction on fake workers (`testkit.rs`), in paused time.

use super::*;
use crate::testkit::{settings, spec, until, until_status, within, Ending, Fakes};

struct Setup {
    reg: Registry,
    fakes: Arc<Fakes>,
    /// Runtime directory (sockets) and the tenants' directories.
    dir: tempfile::TempDir,
}

/// A registry of at most `max` processes, on fakes that are ready at once.
fn setup(max: usize) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let fakes = Fakes::ready();
    let bin = PathBuf::from("/nonexistent/paddock-worker");
    // allow_root: the tests may run as root, and the tenants' directories are then root's.
    let reg = Registry::new(dir.path().to_path_buf(), bin, true, max).with_starter(fakes.clone());
    Setup { reg, fakes, dir }
}

impl Setup {
    /// Tenant `name`: 1 process of 1 thread, in its own directory.
    fn tenant(&self, name: &str, queue_timeout: Duration) -> TenantSpec {
        let d = self.dir.path().join(name);
        std::fs::create_dir_all(&d).expect("tenant dir");
        // Closed to other users, as resolve requires (running as root).
        std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o750))
            .expect("chmod");
        let mut s = settings(1, 1);
        s.admission.queue_timeout = queue_timeout;
        spec(name, &d, s)
    }

    async fn ready(&self, spec: &TenantSpec) -> Arc<Pool> {
        let p = within("get_or_start", self.reg.get_or_start(spec.clone())).await.expect("a pool");
        until_status(&p, |s| *s == Status::Ready).await;
        p
    }

    fn fake_of(&self, pool: &Pool) -> Arc<crate::testkit::Fake> {
        let pid = *pool.ready_pids().first().expect("a ready process");
        self.fakes.worker(pid)
    }
}

const Q: Duration = Duration::from_secs(3);

#[tokio::test(start_paused = true)]
async fn a_new_tenant_parks_the_least_recently_used_idle_pool() {
    let s = setup(2);
    let (a, b, c) = (s.tenant("a", Q), s.tenant("b", Q), s.tenant("c", Q));
    let pa = s.ready(&a).await;
    drop(pa.admit().await.expect("a request for a"));
    tokio::time::sleep(Duration::from_secs(10)).await;
    let pb = s.ready(&b).await;
    drop(pb.admit().await.expect("a request for b"));
    // Both past MIN_RESIDENCY and RECENT.
    tokio::time::sleep(MIN_RESIDENCY).await;
    let fa = s.fake_of(&pa);
    let pc = s.ready(&c).await;
    assert!(pa.is_parked() && pa.process_budget() == 0, "a, used least recently, is parked");
    assert!(!pb.is_parked());
    assert_eq!(fa.ended().await, Ending::Terminated);
    assert!(pa.ready_pids().is_empty());
    assert_eq!(Counters::get(&pa.counters.idle_stops), 1);
    // The parked pool comes back on its next request, parking the least recently used one
    // then (b: c has just started, and is not evicted before MIN_RESIDENCY).
    let pa2 = within("get_or_start", s.reg.get_or_start(a)).await.expect("a's pool");
    assert!(Arc::ptr_eq(&pa, &pa2), "the same pool, to be unparked");
    assert!(pb.is_parked() && !pc.is_parked());
    drop(within("a request for a again", pa.admit()).await.expect("admitted"));
    assert!(!pa.is_parked());
    until("a ready again", || !pa.ready_pids().is_empty()).await;
}

#[tokio::test(start_paused = true)]
async fn eviction_never_parks_a_pool_with_requests_in_flight() {
    let s = setup(2);
    let (a, b, c) = (s.tenant("a", Q), s.tenant("b", Q), s.tenant("c", Q));
    let pa = s.ready(&a).await;
    // a is the least recently used, but busy.
    let _busy = pa.admit().await.expect("a request for a");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let pb = s.ready(&b).await;
    drop(pb.admit().await.expect("a request for b"));
    tokio::time::sleep(MIN_RESIDENCY).await;
    s.ready(&c).await;
    assert!(!pa.is_parked(), "a pool with a request in flight was parked");
    assert!(pb.is_parked());
}

#[tokio::test(start_paused = true)]
async fn with_no_pool_idle_a_new_tenant_waits_queue_timeout_then_fails() {
    let s = setup(2);
    let (a, b) = (s.tenant("a", Q), s.tenant("b", Q));
    let wait = Duration::from_secs(5);
    let c = s.tenant("c", wait);
    let pa = s.ready(&a).await;
    let pb = s.ready(&b).await;
    tokio::time::sleep(MIN_RESIDENCY).await;
    let busy_a = pa.admit().await.expect("a request for a");
    let _busy_b = pb.admit().await.expect("a request for b");
    // Their requests began over RECENT ago when a's ends.
    tokio::time::sleep(RECENT).await;
    let t0 = tokio::time::Instant::now();
    let r = within("get_or_start", s.reg.get_or_start(c.clone())).await;
    let waited = t0.elapsed();
    assert!(matches!(r, Err(StartError::Budget { limit: 2 })), "{:?}", r.map(|_| ()));
    // It looks again every 50 ms.
    assert!(waited >= wait && waited <= wait + Duration::from_millis(51), "{waited:?}");
    assert!(!pa.is_parked() && !pb.is_parked());
    assert_eq!(s.reg.pools().len(), 2, "no pool was started for c");
    // A pool that becomes idle while one waits makes room for it.
    let reg = Arc::new(s.reg);
    let started = tokio::spawn({
        let (reg, c) = (reg.clone(), c.clone());
        async move { reg.get_or_start(c).await.map(|_| tokio::time::Instant::now()) }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!started.is_finished());
    let released = tokio::time::Instant::now();
    drop(busy_a);
    let at = within("c's pool", started).await.expect("join").expect("room was made");
    assert!(at - released <= Duration::from_millis(51), "{:?}", at - released);
    assert!(pa.is_parked() && !pb.is_parked());
}

#[tokio::test(start_paused = true)]
async fn start_errors_tell_their_causes_apart() {
    let s = setup(2);
    let mut big = s.tenant("big", Q);
    big.settings.process.processes = 3;
    let r = s.reg.get_or_start(big).await;
    assert!(
        matches!(&r, Err(StartError::TooBig { need: 3, limit: 2, tenant }) if tenant == "big"),
        "{:?}",
        r.map(|_| ())
    );
    let mut stranger = s.tenant("stranger", Q);
    stranger.settings.process.user = Some("paddock-no-such-user-4711".into());
    let r = s.reg.get_or_start(stranger).await;
    // As root: no such user; otherwise: cannot switch to it. An identity error either way.
    assert!(
        matches!(
            &r,
            Err(StartError::Identity(
                IdentityError::NoUser(_) | IdentityError::CannotSwitch { .. }
            ))
        ),
        "{:?}",
        r.map(|_| ())
    );
    // Only root looks at the tenant's directory (whose owner it runs as).
    if nix::unistd::Uid::effective().is_root() {
        let mut homeless = s.tenant("homeless", Q);
        homeless.dir = s.dir.path().join("missing");
        let r = s.reg.get_or_start(homeless).await;
        assert!(
            matches!(&r, Err(StartError::Identity(IdentityError::Unreadable { .. }))),
            "{:?}",
            r.map(|_| ())
        );
    }
    let nowhere = Registry::new(s.dir.path().join("gone"), "/x".into(), true, 0)
        .with_starter(s.fakes.clone());
    let r = nowhere.get_or_start(s.tenant("a", Q)).await;
    assert!(matches!(&r, Err(StartError::Socket { .. })), "{:?}", r.map(|_| ()));
    assert!(s.fakes.workers().is_empty(), "no worker was started for any of them");
}

#[tokio::test(start_paused = true)]
async fn a_pool_is_not_evicted_before_min_residency_and_a_recently_used_one_only_after_patience() {
    let s = setup(1);
    let long = Duration::from_secs(120);
    let (a, b) = (s.tenant("a", Q), s.tenant("b", long));
    let pa = s.ready(&a).await;
    drop(pa.admit().await.expect("a request for a"));
    let t0 = tokio::time::Instant::now();
    // b waits for a's residency, rather than evict a pool seconds after its start.
    let pb = within("b's pool", s.reg.get_or_start(b.clone())).await.expect("room for b");
    let waited = t0.elapsed();
    assert!(waited + Duration::from_millis(100) >= MIN_RESIDENCY, "evicted after {waited:?}");
    assert!(waited <= MIN_RESIDENCY + Duration::from_millis(100), "{waited:?}");
    assert!(pa.is_parked());
    assert_eq!(Counters::get(&pa.counters.budget_stops), 1);
    until_status(&pb, |st| *st == Status::Ready).await;
    // Now b is old enough but was used just now: a waits PATIENCE, not RECENT, for it.
    tokio::time::sleep(MIN_RESIDENCY).await;
    drop(pb.admit().await.expect("a request for b"));
    let t1 = tokio::time::Instant::now();
    let mut a_long = a.clone();
    a_long.settings.admission.queue_timeout = long;
    within("a back", s.reg.get_or_start(a_long.clone())).await.expect("room for a");
    let waited = t1.elapsed();
    assert!(waited + Duration::from_millis(100) >= PATIENCE, "a pool used {waited:?} ago evicted");
    assert!(waited < RECENT, "a waited {waited:?}: its whole queue_timeout if RECENT held");
    assert!(pb.is_parked());
    // A pool with a request in flight is never stopped, however long the cold tenant waits.
    tokio::time::sleep(MIN_RESIDENCY).await;
    let busy = pa.admit().await.expect("a request for a");
    let mut b_short = b.clone();
    b_short.settings.admission.queue_timeout = Duration::from_secs(3);
    let r = within("b refused", s.reg.get_or_start(b_short)).await;
    assert!(matches!(r, Err(StartError::Budget { .. })), "{:?}", r.map(|_| ()));
    assert!(!pa.is_parked());
    drop(busy);
}

#[tokio::test(start_paused = true)]
async fn a_pool_of_several_processes_shrinks_before_a_whole_pool_goes() {
    let s = setup(3);
    let (mut a, b, c) = (s.tenant("a", Q), s.tenant("b", Q), s.tenant("c", Q));
    a.settings.process.processes = 2;
    let pb = s.ready(&b).await;
    drop(pb.admit().await.expect("a request for b"));
    tokio::time::sleep(Duration::from_secs(10)).await;
    let pa = s.ready(&a).await;
    until("a's two processes", || pa.ready_pids().len() == 2).await;
    drop(pa.admit().await.expect("a request for a"));
    tokio::time::sleep(MIN_RESIDENCY).await;
    // b is the longest idle, but a can give one of its two processes.
    let pc = s.ready(&c).await;
    assert_eq!(pa.process_budget(), 1, "a shrank to one process");
    assert!(!pb.is_parked(), "a whole pool stopped while another could shrink");
    until("a down to one process", || pa.ready_pids().len() == 1).await;
    assert_eq!(Counters::get(&pa.counters.budget_shrinks), 1);
    // With no room for its second process, a serves on with one: no wait, no error.
    let t0 = tokio::time::Instant::now();
    let again = within("a again", s.reg.get_or_start(a.clone())).await.expect("a's pool");
    assert!(Arc::ptr_eq(&again, &pa));
    assert_eq!(t0.elapsed(), Duration::ZERO);
    drop(within("a request for a", pa.admit()).await.expect("admitted"));
    assert_eq!(pa.process_budget(), 1);
    assert!(!pc.is_parked() && !pb.is_parked());
    // Once there is room, its next request brings the second process back.
    pc.stop();
    pc.wait_stopped().await;
    s.reg.remove("c");
    within("a again", s.reg.get_or_start(a)).await.expect("a's pool");
    assert!(!pa.is_parked());
    until("a's two processes again", || pa.ready_pids().len() == 2).await;
}

/// A crowd of tenants starting together (a node taking over a crashed one's) starts
/// `max_starting()` workers at a time: each start holds its permit until its worker is ready.
#[tokio::test(start_paused = true)]
async fn workers_start_a_few_at_a_time() {
    let s = setup(0);
    s.fakes.set_default(crate::testkit::Plan::start(crate::testkit::Start::ReadyAfter(
        Duration::from_secs(1),
    )));
    let gate = max_starting();
    let n = gate * 3;
    let t0 = tokio::time::Instant::now();
    let specs: Vec<TenantSpec> = (0..n).map(|i| s.tenant(&format!("t{i}"), Q)).collect();
    let pools = start_all(&s, &specs).await;
    for p in &pools {
        until_status(p, |st| *st == Status::Ready).await;
    }
    let mut ready: Vec<Duration> = s
        .fakes
        .workers()
        .iter()
        .filter_map(|f| f.record().ready_at.map(|t| t.duration_since(t0)))
        .collect();
    ready.sort();
    assert_eq!(ready.len(), n);
    let first_second = ready.iter().filter(|d| **d < Duration::from_millis(1500)).count();
    assert_eq!(first_second, gate, "{ready:?}");
    assert!(ready[n - 1] >= Duration::from_secs(3), "three rounds: {ready:?}");
}

async fn start_all(s: &Setup, specs: &[TenantSpec]) -> Vec<Arc<Pool>> {
    let mut out = Vec::new();
    for sp in specs {
        out.push(within("get_or_start", s.reg.get_or_start(sp.clone())).await.expect("a pool"));
    }
    out
}

#[tokio::test(start_paused = true)]
async fn a_shorter_min_residency_lets_a_pool_go_sooner() {
    let mut s = setup(1);
    s.reg = s.reg.with_min_residency(Duration::from_secs(2));
    let long = Duration::from_secs(120);
    let (a, b) = (s.tenant("a", Q), s.tenant("b", long));
    let pa = s.ready(&a).await;
    drop(pa.admit().await.expect("a request for a"));
    let t0 = tokio::time::Instant::now();
    within("b's pool", s.reg.get_or_start(b)).await.expect("room for b");
    let waited = t0.elapsed();
    assert!(waited + Duration::from_millis(100) >= Duration::from_secs(2), "{waited:?}");
    assert!(waited < MIN_RESIDENCY, "the default residency held: {waited:?}");
    assert!(pa.is_parked());
}

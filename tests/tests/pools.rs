//! Pool lifecycle under real load: recycling with no failed request, crashes, idle reaping,
//! the global process budget, queueing, request timeouts, failing apps, reload, script
//! changes.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{eventually, send_raw, signal, write, Server};

fn config(dir: &Path, top: &str, tenants: &[(&str, &str)]) -> PathBuf {
    common::apps_config(dir, top, tenants)
}

fn start(path: &Path) -> Server {
    Server::start(&["--config", path.to_str().expect("utf-8")])
}

/// Hammer `path` from `threads` client threads until `stop` is set (bounded by `limit`);
/// returns (requests, failures, worst latency).
fn load(
    server: &Server,
    path: &str,
    threads: usize,
    stop: &AtomicBool,
    limit: Duration,
) -> (u64, u64, Duration) {
    let ok = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    let worst = std::sync::Mutex::new(Duration::ZERO);
    let end = Instant::now() + limit;
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                    let t = Instant::now();
                    match send_raw(server.addr, req.as_bytes()) {
                        Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                        Ok(r) => {
                            eprintln!("failed request: {} {}", r.status, r.text());
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                        Err(e) => {
                            eprintln!("failed request: {e}");
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                    let mut w = worst.lock().expect("lock");
                    *w = (*w).max(t.elapsed());
                }
            });
        }
    });
    let worst = *worst.lock().expect("lock");
    (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed), worst)
}

fn count_in_log(server: &Server, needle: &str) -> usize {
    server.log_text().matches(needle).count()
}

#[test]
fn a_hundred_recycles_under_load_fail_no_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server =
        start(&config(dir.path(), "", &[("r", "processes = 1\nthreads = 4\nmax_requests = 5")]));
    let stop = AtomicBool::new(false);
    let (ok, failed, worst) = std::thread::scope(|s| {
        let h = s.spawn(|| load(&server, "/r/env", 4, &stop, Duration::from_secs(120)));
        let deadline = Instant::now() + Duration::from_secs(110);
        while count_in_log(&server, "worker recycled") < 100 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        stop.store(true, Ordering::Relaxed);
        h.join().expect("load thread")
    });
    let recycles = count_in_log(&server, "worker recycled");
    eprintln!("recycles: {recycles}, requests: {ok}, failed: {failed}, worst latency: {worst:?}");
    assert!(recycles >= 100, "only {recycles} recycles");
    assert_eq!(failed, 0, "requests failed during recycling");
}

/// Recycling on `max_requests` starts the successor ahead of time, so a process serves about
/// max_requests, not max_requests plus whatever arrives during its successor's start-up (the
/// successor used to start at the limit: with a hello app at ~1,200 requests/s per process
/// and ~60 ms to start, 70 more). Only when one start-up outlasts max_requests requests does
/// a process serve more (issue 14's max_requests = 20 at this rate: ~64 either way).
#[test]
fn a_successor_started_ahead_keeps_a_process_near_max_requests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&config(
        dir.path(),
        "",
        &[("m", "processes = 1\nthreads = 4\nmax_requests = 200\nmax_requests_jitter = 0")],
    ));
    assert_eq!(server.get("/m/env").status, 200);
    let stop = AtomicBool::new(false);
    let (ok, failed, _) = std::thread::scope(|s| {
        let h = s.spawn(|| load(&server, "/m/env", 4, &stop, Duration::from_secs(120)));
        let deadline = Instant::now() + Duration::from_secs(110);
        while count_in_log(&server, "worker recycled") < 20 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        stop.store(true, Ordering::Relaxed);
        h.join().expect("load thread")
    });
    // What each retired process served, as it said when told to stop.
    let log = server.log_text();
    let served: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("tenant=m") && l.contains("shutting down"))
        .filter_map(|l| l.split("requests=").nth(1)?.trim_end_matches('"').parse().ok())
        .collect();
    let mean = served.iter().sum::<u64>() as f64 / served.len().max(1) as f64;
    eprintln!(
        "requests: {ok} ok, {failed} failed; {} processes retired, each served {served:?} \
         (mean {mean:.1}; max_requests 200); {} successors ready ahead",
        served.len(),
        log.matches("ahead=true").count()
    );
    assert!(!served.is_empty(), "no process retired");
    if std::env::var_os("PADDOCK_TEST_LOG").is_some() {
        eprintln!("{log}");
    }
    assert_eq!(failed, 0, "requests failed during recycling");
    assert!(served.len() >= 15, "only {} processes retired", served.len());
    assert!(served.iter().all(|&n| n >= 200), "a process retired before max_requests: {served:?}");
    // How close to the limit depends on the machine's load (a start-up slowed by other
    // processes can outlast the lead: that process serves on until its successor is ready),
    // so what is checked is that successors were started ahead at all: started at the limit,
    // none could be serving already when its predecessor reached it.
    let ahead = log.matches("ahead=true").count();
    assert!(ahead * 4 >= served.len(), "{ahead} of {} successors started ahead", served.len());
}

#[test]
fn killing_a_worker_mid_request_fails_only_that_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg =
        config(dir.path(), "", &[("a", "processes = 2\nthreads = 2"), ("b", "processes = 1")]);
    let server = start(&cfg);
    assert_eq!(server.get("/a/env").status, 200);
    assert_eq!(server.get("/b/env").status, 200);
    let pidfile = dir.path().join("victim.pid");
    let slow = format!("/a/sleep?s=5&pidfile={}", pidfile.display());
    std::thread::scope(|s| {
        let victim = s.spawn(|| server.get(&slow));
        eventually("slow request started", Duration::from_secs(10), || pidfile.exists());
        let pid: u32 =
            std::fs::read_to_string(&pidfile).expect("pid").trim().parse().expect("number");
        signal(pid, 9);
        for _ in 0..10 {
            assert_eq!(server.get("/a/env").status, 200, "same tenant keeps serving");
            assert_eq!(server.get("/b/env").status, 200, "other tenant unaffected");
        }
        assert_eq!(victim.join().expect("thread").status, 502, "the killed request gets 502");
    });
    eventually("pool back to 2 processes of a + 1 of b", Duration::from_secs(30), || {
        server.worker_pids().len() == 3
    });
}

#[test]
fn idle_pool_is_stopped_and_restarts_on_demand() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        dir.path(),
        "",
        &[
            ("i", "processes = 2\nidle_timeout = \"2s\""),
            ("w", "processes = 2\nmin_processes = 1\nidle_timeout = \"2s\""),
        ],
    );
    let server = start(&cfg);
    assert_eq!(server.get("/i/env").status, 200);
    assert_eq!(server.get("/w/env").status, 200);
    eventually("4 workers", Duration::from_secs(30), || server.worker_pids().len() == 4);
    eventually(
        "idle pools scaled down (i: 0, w: min_processes 1)",
        Duration::from_secs(20),
        || server.worker_pids().len() == 1,
    );
    assert_eq!(server.get("/i/env").status, 200, "an idle-stopped pool starts again");
    eventually("i restarted", Duration::from_secs(30), || server.worker_pids().len() == 3);
}

#[test]
fn global_budget_evicts_the_least_recently_used_idle_pool() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        dir.path(),
        "max_workers_total = 2",
        &[("a", "processes = 2"), ("b", "processes = 2")],
    );
    let server = start(&cfg);
    assert_eq!(server.get("/a/env").status, 200);
    eventually("a runs", Duration::from_secs(30), || server.worker_pids().len() == 2);
    assert_eq!(server.get("/b/env").status, 200);
    eventually("a evicted for b", Duration::from_secs(30), || server.worker_pids().len() == 2);
    assert!(server.log_text().contains("max_workers_total reached"));
    assert_eq!(server.get("/a/env").status, 200, "a comes back, evicting b");
    std::thread::sleep(Duration::from_secs(1));
    assert!(server.worker_pids().len() <= 2, "never more than max_workers_total");
}

#[test]
fn queue_timeout_and_queue_limit_answer_503_with_retry_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        dir.path(),
        "",
        &[
            ("q", "processes = 1\nthreads = 1\nqueue_timeout = \"1s\""),
            ("z", "processes = 1\nthreads = 1\nqueue_limit = 0"),
        ],
    );
    let server = start(&cfg);
    // No warm-up request for z: with queue_limit = 0, the slot of a request that just ended
    // may still be held for a moment after its client has the whole response.
    assert_eq!(server.get("/q/env").status, 200);
    let (qpid, zpid) = (dir.path().join("q.pid"), dir.path().join("z.pid"));
    let (qslow, zslow) = (
        format!("/q/sleep?s=4&pidfile={}", qpid.display()),
        format!("/z/sleep?s=4&pidfile={}", zpid.display()),
    );
    std::thread::scope(|s| {
        let busy_q = s.spawn(|| server.get(&qslow));
        let busy_z = s.spawn(|| server.get(&zslow));
        let t = Instant::now();
        while !(qpid.exists() && zpid.exists()) && t.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            qpid.exists() && zpid.exists(),
            "slow requests did not start:\n{}",
            server.log_text()
        );
        let t = Instant::now();
        let r = server.get("/q/env");
        assert_eq!(r.status, 503);
        assert!(r.header("Retry-After").is_some());
        assert!(t.elapsed() >= Duration::from_millis(900), "waited in the queue first");
        let t = Instant::now();
        let r = server.get("/z/env");
        assert_eq!(r.status, 503, "queue_limit = 0: no waiting at all");
        assert!(t.elapsed() < Duration::from_millis(900));
        assert_eq!(busy_q.join().expect("thread").status, 200);
        assert_eq!(busy_z.join().expect("thread").status, 200);
    });
}

#[test]
fn request_timeout_is_504_with_the_python_stack_and_a_fresh_worker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        dir.path(),
        "",
        &[("t", "processes = 1\nthreads = 2\nrequest_timeout = \"1s\"\ngraceful_timeout = \"2s\"")],
    );
    let server = start(&cfg);
    let first_pid = server.get("/t/pid").text();
    let r = server.get("/t/sleep?s=30");
    assert_eq!(r.status, 504);
    eventually("stack dump in the log", Duration::from_secs(10), || {
        server.log_text().contains("stuck_in_sleep")
    });
    eventually("worker replaced", Duration::from_secs(20), || {
        let r = server.get("/t/pid");
        r.status == 200 && r.text() != first_pid
    });
}

#[test]
fn failing_app_gets_fast_503_without_spawn_storm_and_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let appdir = dir.path().join("app");
    write(&appdir.join("flaky.py"), "raise ImportError('not yet')\n");
    let tdir = dir.path().join("f");
    std::fs::create_dir_all(&tdir).expect("mkdir");
    common::private(&tdir);
    let cfg = dir.path().join("paddock.toml");
    write(
        &cfg,
        &format!(
            "index = false\n[tenants.f]\ndir = \"{}\"\nmount = \"/f\"\napp = \"flaky:application\"\npython_path = [\"{}\"]\nprocesses = 1\n",
            tdir.display(),
            appdir.display()
        ),
    );
    let server = start(&cfg);
    let t0 = Instant::now();
    for _ in 0..20 {
        let t = Instant::now();
        assert_eq!(server.get("/f/").status, 503);
        assert!(t.elapsed() < Duration::from_secs(2), "503 must be quick while failing");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The supervisor's line per failed start; each refused request's warning quotes the same
    // reason after "is unavailable", so those are not starts.
    let spawns = server
        .log_text()
        .lines()
        .filter(|l| l.contains("before it was ready") && !l.contains("is unavailable"))
        .count();
    // At least one: the failing start is logged (the count would otherwise prove nothing).
    assert!(
        (1..=8).contains(&spawns),
        "{spawns} start attempts in {:?}: a spawn storm",
        t0.elapsed()
    );
    write(
        &appdir.join("flaky.py"),
        "def application(e, sr):\n    sr('200 OK', [])\n    return [b'fixed']\n",
    );
    eventually("recovers once the app is fixed", Duration::from_secs(60), || {
        server.get("/f/").text() == "fixed"
    });
}

#[test]
fn reload_with_changed_and_broken_config_under_load_fails_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), "", &[("l", "processes = 2\nthreads = 2")]);
    let server = start(&cfg);
    assert_eq!(server.get("/l/env").status, 200);
    let before = server.worker_pids();
    let stop = AtomicBool::new(false);
    let (ok, failed, _) = std::thread::scope(|s| {
        let h = s.spawn(|| load(&server, "/l/env", 3, &stop, Duration::from_secs(60)));
        std::thread::sleep(Duration::from_millis(500));
        let text =
            std::fs::read_to_string(&cfg).expect("read").replace("threads = 2", "threads = 3");
        write(&cfg, &text);
        signal(server.child.id(), 1);
        eventually("new pool after reload", Duration::from_secs(30), || {
            let now = server.worker_pids();
            now.len() == 2 && now.iter().all(|p| !before.contains(p))
        });
        write(&cfg, "this is = = not toml");
        signal(server.child.id(), 1);
        eventually("broken config refused", Duration::from_secs(10), || {
            server.log_text().contains("configuration refused")
        });
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        h.join().expect("load thread")
    });
    eprintln!("requests during reloads: {ok}, failed: {failed}");
    assert!(ok > 0);
    assert_eq!(failed, 0);
    assert_eq!(server.get("/l/env").status, 200, "old config still in force after the broken one");
}

#[test]
fn touching_the_wsgi_script_restarts_the_pool_gracefully() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tdir = dir.path().join("s");
    std::fs::create_dir_all(&tdir).expect("mkdir");
    common::private(&tdir);
    let script = tdir.join("app.wsgi");
    write(&script, "import os\ndef application(e, sr):\n    sr('200 OK', [])\n    return [b'v1 %d' % os.getpid()]\n");
    let cfg = dir.path().join("paddock.toml");
    write(
        &cfg,
        &format!("index = false\n[tenants.s]\ndir = \"{}\"\nmount = \"/s\"\napp = \"{}\"\nprocesses = 1\n", tdir.display(), script.display()),
    );
    let server = start(&cfg);
    assert!(server.get("/s/").text().starts_with("v1"));
    std::thread::sleep(Duration::from_millis(1100));
    write(&script, "import os\ndef application(e, sr):\n    sr('200 OK', [])\n    return [b'v2 %d' % os.getpid()]\n");
    eventually("new code served", Duration::from_secs(30), || {
        server.get("/s/").text().starts_with("v2")
    });
}

#[test]
fn a_client_that_leaves_while_queued_never_reaches_the_app() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&config(
        dir.path(),
        "",
        &[("g", "processes = 1\nthreads = 1\nqueue_timeout = \"20s\"")],
    ));
    assert_eq!(server.get("/g/env").status, 200);
    let busy_pid = dir.path().join("busy.pid");
    let ghost = dir.path().join("ghost.pid");
    let slow = format!("/g/sleep?s=3&pidfile={}", busy_pid.display());
    std::thread::scope(|s| {
        let busy = s.spawn(|| server.get(&slow));
        eventually("slow request running", Duration::from_secs(30), || busy_pid.exists());
        let mut c = std::net::TcpStream::connect(server.addr).expect("connect");
        let req =
            format!("GET /g/sleep?s=0&pidfile={} HTTP/1.1\r\nHost: x\r\n\r\n", ghost.display());
        std::io::Write::write_all(&mut c, req.as_bytes()).expect("write");
        std::thread::sleep(Duration::from_millis(300));
        drop(c);
        assert_eq!(busy.join().expect("thread").status, 200);
    });
    // The slot is free again: a new request is served, the abandoned one never ran.
    assert_eq!(server.get("/g/env").status, 200);
    std::thread::sleep(Duration::from_millis(500));
    assert!(!ghost.exists(), "a request whose client left while queued reached the app");
}

/// A process whose requests always overlap (busy from its first request on) is never alone
/// at a request's end; it freezes its objects after its 20th request anyway.
#[test]
fn a_process_never_alone_freezes_after_its_twentieth_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&config(dir.path(), "", &[("g", "processes = 1\nthreads = 4")]));
    // Three long requests first, so that no request ends alone while the short ones run;
    // each writes a file once it runs in the worker.
    let marks: Vec<PathBuf> = (0..3).map(|i| dir.path().join("g").join(format!("s{i}"))).collect();
    let sleepers: Vec<_> = marks
        .iter()
        .map(|m| {
            let addr = server.addr;
            let req = format!(
                "GET /g/sleep?s=20&pidfile={} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                m.display()
            );
            std::thread::spawn(move || send_raw(addr, req.as_bytes()))
        })
        .collect();
    eventually("three requests in flight", Duration::from_secs(30), || {
        marks.iter().all(|m| m.exists())
    });
    let first: u64 = server.get("/g/gcfrozen").text().trim().parse().expect("a count");
    let mut counts = vec![first];
    for _ in 0..25 {
        let r = server.get("/g/gcfrozen");
        assert_eq!(r.status, 200, "{}", r.text());
        counts.push(r.text().trim().parse().expect("a count"));
    }
    assert!(counts.last() > Some(&first), "never frozen again: {counts:?}");
    for s in sleepers {
        let r = s.join().expect("sleeper").expect("sleep answered");
        assert_eq!(r.status, 200);
    }
}

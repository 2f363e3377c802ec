//! Several Paddock nodes sharing one sites directory and one etcd (docs/cluster.md): a tenant
//! runs on one node at a time, any node (and HAProxy in front) reaches it, a killed or paused
//! owner's tenants move, a drain moves every tenant with no failed request, a name signs up
//! once, and without an etcd quorum no new tenant starts. Each test starts its own etcd (1
//! member; 3 with `PADDOCK_CLUSTER_FULL=1`) and nodes; which node served a request is told by
//! the worker pid the test app answers (see `clusterkit`).

mod clusterkit;
mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use clusterkit::load::{Load, Tally};
use clusterkit::{cli, full_mode, pid_alive, within, Cluster, Haproxy, Opts, Served};
use serde_json::{json, Value};

/// Bound on one ordinary request (a pool start included).
const T: Duration = Duration::from_secs(30);

fn load<'a>(
    c: &'a Cluster,
    stop: &'a AtomicBool,
    tally: &'a Tally,
    targets: Vec<(SocketAddr, String, &'static str)>,
) -> Load<'a> {
    Load {
        cluster: c,
        targets,
        stop,
        limit: Duration::from_secs(90),
        timeout: Duration::from_secs(20),
        tally,
    }
}

/// Every (address, tenant, path) of `names` through every address of `via`.
fn each(
    via: &[SocketAddr],
    names: &[&str],
    path: &'static str,
) -> Vec<(SocketAddr, String, &'static str)> {
    names.iter().flat_map(|n| via.iter().map(move |a| (*a, n.to_string(), path))).collect()
}

/// Stop the load threads, then fail with the nodes' logs.
fn fail(c: &Cluster, stop: &AtomicBool, why: &str) -> ! {
    stop.store(true, Ordering::Relaxed);
    c.dump(why)
}

#[test]
fn haproxy_sends_each_tenant_prefix_to_one_node() {
    // Plain nodes (no [cluster]) on one sites dir: each serves whatever HAProxy sends it.
    let c = Cluster::start(Opts { cluster: false, ..Opts::default() });
    let names: Vec<String> = (0..30).map(|i| format!("h{i}")).collect();
    for n in &names {
        c.add_site(n);
    }
    let h = Haproxy::start(&c.backends());
    let mut used = BTreeSet::new();
    for n in &names {
        let first = c.who_serves(h.addr, n, T);
        assert_eq!(first.status, 200, "{first:?}\n{}", h.log_text());
        let node = first.node.expect("served by a node's worker");
        used.insert(node);
        // Other paths under the same tenant prefix hash the same.
        for path in ["pid/x/y", "sleep?s=0", "pid?q=1"] {
            let again = c.who_serves_path(h.addr, n, path, T);
            assert_eq!((again.status, again.node), (200, Some(node)), "{n}/{path}: {again:?}");
        }
    }
    assert!(used.len() >= 2, "30 tenants all hashed to one node: {used:?}");
}

#[test]
fn fifty_concurrent_first_requests_start_a_tenant_on_one_node() {
    let c = Cluster::start(Opts::default());
    c.add_site("rush");
    let gate = Barrier::new(50);
    let answers: Vec<Served> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..50)
            .map(|i| {
                let (c, gate) = (&c, &gate);
                s.spawn(move || {
                    gate.wait();
                    c.who_serves(c.nodes[i % 3].server.addr, "rush", Duration::from_secs(60))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("request thread")).collect()
    });
    let bad: Vec<_> = answers.iter().filter(|a| a.status != 200).collect();
    if !bad.is_empty() {
        c.dump(&format!("{} of 50 first requests failed: {bad:?}", bad.len()));
    }
    let nodes: BTreeSet<Option<usize>> = answers.iter().map(|a| a.node).collect();
    let pids: BTreeSet<Option<u32>> = answers.iter().map(|a| a.pid).collect();
    assert_eq!(nodes.len(), 1, "served by workers of several nodes: {nodes:?}");
    let owner = nodes.into_iter().next().flatten().expect("a node's worker served");
    // processes = 1: one pool of one process, on one node.
    assert_eq!(pids.len(), 1, "several workers: {pids:?}");
    let id = c.nodes[owner].id.clone();
    c.owner_agreed("rush", &[0, 1, 2], Some(&id));
    for (i, n) in c.nodes.iter().enumerate() {
        let won = n.metric("paddock_cluster_claims_total{result=\"won\"}").unwrap_or(0.0);
        let lost = n.metric("paddock_cluster_claims_total{result=\"lost\"}").unwrap_or(0.0);
        let fwd = n.metric("paddock_cluster_forwards_total{result=\"ok\"}").unwrap_or(0.0);
        println!("{}: claims won {won}, lost {lost}; forwards ok {fwd}", n.id);
        if i == owner {
            assert!(won >= 1.0, "the owner {id} counted no won claim");
        } else {
            assert_eq!(won, 0.0, "{} won a claim on a tenant {id} owns", n.id);
            assert!(n.server.worker_pids().is_empty(), "{} started workers", n.id);
        }
    }
    assert_eq!(c.nodes[owner].status()["owned"], json!(["rush"]));
}

#[test]
fn requests_through_any_node_reach_the_owner() {
    let c = Cluster::start(Opts::default());
    let names: Vec<String> = (0..6).map(|k| format!("t{k}")).collect();
    for (k, n) in names.iter().enumerate() {
        c.start_on(k % 3, n);
    }
    let h = Haproxy::start(&c.backends());
    let mut via: Vec<(String, SocketAddr)> =
        c.nodes.iter().map(|x| (x.id.clone(), x.server.addr)).collect();
    via.push(("haproxy".into(), h.addr));
    for (k, n) in names.iter().enumerate() {
        let owner = k % 3;
        c.owner_agreed(n, &[0, 1, 2], Some(&c.nodes[owner].id));
        for (name, addr) in &via {
            for _ in 0..3 {
                let s = c.who_serves(*addr, n, T);
                if (s.status, s.node) != (200, Some(owner)) {
                    let want = &c.nodes[owner].id;
                    c.dump(&format!("{n} through {name}: want {want}'s worker, got {s:?}"));
                }
            }
        }
    }
    // 6 tenants x 2 non-owner nodes x 3 requests at least were forwarded.
    let forwarded = c.sum(&[0, 1, 2], "paddock_cluster_forwards_total{result=\"ok\"}");
    println!("forwards ok: {forwarded}");
    assert!(forwarded >= 36.0, "{forwarded} forwards counted, want >= 36");
    for n in &c.nodes {
        assert_eq!(n.metric("paddock_cluster_live"), Some(1.0), "{}", n.id);
        assert_eq!(n.metric("paddock_cluster_nodes"), Some(3.0), "{}", n.id);
        assert_eq!(n.metric("paddock_cluster_owned_tenants"), Some(2.0), "{}", n.id);
        let st = n.status();
        assert_eq!(st["node"], json!(n.id), "{st}");
        assert_eq!((&st["health"], &st["state"]), (&json!("live"), &json!("active")), "{st}");
        assert_eq!(st["nodes"].as_array().map(Vec::len), Some(3), "{st}");
    }
    // A request on its last hop (its `Paddock-Hop` marker says two) for a tenant another
    // node owns is refused, not forwarded again.
    let hop = "Paddock-Hop: node=n3;for=127.0.0.1;port=5555;proto=http;server-port=80;hops=2";
    let raw = format!("GET /trac/t0/pid HTTP/1.1\r\nHost: x\r\n{hop}\r\nConnection: close\r\n\r\n");
    let r = clusterkit::http(c.nodes[1].internal, raw.as_bytes(), T).expect("internal answer");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
    let refused = c.nodes[1].metric("paddock_cluster_forwards_total{result=\"refused\"}");
    assert!(refused >= Some(1.0), "refusal not counted: {refused:?}");

    // The command line says the same.
    let (code, out, err) = cli(&c, 2, &["cluster", "owner", "t0", "--json"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let v: Value = serde_json::from_str(&out).expect("json from `paddock cluster owner`");
    assert_eq!(v["owner"]["node"], "n1", "{v}");
    let (code, out, err) = cli(&c, 1, &["cluster", "status"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(["n1", "n2", "n3"].iter().all(|id| out.contains(id)), "{out}");
}

#[test]
fn kill_9_of_an_owner_fails_over() {
    let c = Cluster::start(Opts::default());
    let names: Vec<String> = (0..6).map(|k| format!("k{k}")).collect();
    for (k, n) in names.iter().enumerate() {
        c.start_on(k % 3, n);
    }
    // n1 owns k0 and k3; n2 and n3 the others.
    let victims = ["k0", "k3"];
    let others = ["k1", "k2", "k4", "k5"];
    let victim_workers = c.nodes[0].server.worker_pids();
    let h = Haproxy::start(&c.backends());
    let survivors = [c.nodes[1].server.addr, c.nodes[2].server.addr];
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    let stop = AtomicBool::new(false);
    let (steady, front) = (Tally::default(), Tally::default());
    let bound = c.ttl + Duration::from_secs(15);
    let failover: Vec<(&str, f64, Option<String>)> = std::thread::scope(|s| {
        let on_survivors = load(&c, &stop, &steady, each(&survivors, &others, "pid"));
        let through_front = load(&c, &stop, &front, each(&[h.addr], &all, "pid"));
        s.spawn(move || on_survivors.run(|_, a| a.status == 200 && matches!(a.node, Some(1 | 2))));
        s.spawn(move || through_front.run(|_, a| a.status == 200));
        std::thread::sleep(Duration::from_millis(500));
        c.nodes[0].kill9();
        let killed = Instant::now();
        let mut out = Vec::new();
        for (j, v) in victims.iter().enumerate() {
            let back = within(bound.saturating_sub(killed.elapsed()), || {
                let a = c.who_serves(survivors[j % 2], v, Duration::from_secs(5));
                a.status == 200 && matches!(a.node, Some(1 | 2))
            });
            if back.is_none() {
                fail(&c, &stop, &format!("{v} not served again within {bound:?} of the kill"));
            }
            out.push((*v, killed.elapsed().as_secs_f64(), c.nodes[1].owner(v)));
        }
        std::thread::sleep(Duration::from_secs(1));
        stop.store(true, Ordering::Relaxed);
        out
    });
    let worst = failover.iter().map(|f| f.1).fold(0.0, f64::max);
    println!("failover: {worst:.2} s (ttl {:?}); per tenant {failover:?}", c.ttl);
    println!("steady load on the survivors' tenants: {}", steady.summary());
    println!("load through haproxy: {}", front.summary());
    let moved = |f: &(&str, f64, Option<String>)| matches!(f.2.as_deref(), Some("n2" | "n3"));
    assert!(failover.iter().all(moved), "new owners: {failover:?}");
    let failed = steady.failures();
    assert!(failed.is_empty(), "the survivors' tenants failed during the failover: {failed:?}");
    // Its workers die with it (parent-death signal), within a bound.
    let gone = within(Duration::from_secs(10), || victim_workers.iter().all(|&p| !pid_alive(p)));
    assert!(gone.is_some(), "workers of the killed node still run: {victim_workers:?}");
    for v in victims {
        let a = c.who_serves(h.addr, v, T);
        assert_eq!(a.status, 200, "{v} through haproxy after the failover: {a:?}");
    }
    c.wait_converged(Duration::from_secs(10));
    assert_eq!(c.nodes[1].metric("paddock_cluster_nodes"), Some(2.0));
}

#[test]
fn a_stopped_owner_serves_nothing_until_it_holds_a_lease_again() {
    let c = Cluster::start(Opts::default());
    let old_pid = c.start_on(0, "paused");
    let old_workers = c.nodes[0].server.worker_pids();
    assert!(old_workers.contains(&old_pid), "{old_pid} not among {old_workers:?}");
    c.nodes[0].sigstop();
    let stopped = Instant::now();
    // Measured, not asserted: what a request n2 forwards to the stopped owner gets, and when.
    let n2 = c.nodes[1].server.addr;
    let probe = std::thread::spawn(move || {
        let r = clusterkit::get(n2, "/trac/paused/pid", Duration::from_secs(40));
        (stopped.elapsed(), r.map(|r| r.status).map_err(|e| e.to_string()))
    });
    // The others take it over once n1's lease has expired.
    let bound = c.ttl + Duration::from_secs(15);
    let mut new_owner = None;
    let took = within(bound, || {
        // Short: a request forwarded to the stopped node hangs.
        let a = c.who_serves(c.nodes[1].server.addr, "paused", Duration::from_secs(1));
        new_owner = a.node.filter(|&i| i > 0 && a.status == 200);
        new_owner.is_some()
    });
    let (Some(took), Some(new_owner)) = (took, new_owner) else {
        c.nodes[0].sigcont();
        c.dump(&format!("paused not served by n2 or n3 within {bound:?} of SIGSTOP"));
    };
    println!("taken over {:.2} s after SIGSTOP by {}", took.as_secs_f64(), c.nodes[new_owner].id);
    // Stopped for more than ttl + 2 s in all.
    let pause = c.ttl + Duration::from_millis(2500);
    std::thread::sleep(pause.saturating_sub(stopped.elapsed()));

    let good = |a: &Served| match a.status {
        503 => true,
        200 => a.node == Some(new_owner) && a.pid.is_some_and(|p| !old_workers.contains(&p)),
        _ => false,
    };
    let n1 = c.nodes[0].server.addr;
    // Requests already in n1's accept queue when it resumes, and requests right after.
    let old_gone = || old_workers.iter().all(|&p| !pid_alive(p));
    assert!(!old_gone(), "n1's workers died while n1 was stopped: {old_workers:?}");
    let (queued, after, gone) = std::thread::scope(|s| {
        let hs: Vec<_> = (0..3)
            .map(|_| s.spawn(|| c.who_serves(n1, "paused", Duration::from_secs(20))))
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        c.nodes[0].sigcont();
        let resumed = Instant::now();
        // Its old workers stop once it runs again (fenced: busy workers killed at once).
        let gone = s.spawn(|| within(Duration::from_secs(15), old_gone));
        let mut after = Vec::new();
        for _ in 0..40 {
            after.push((
                resumed.elapsed().as_secs_f64(),
                c.who_serves(n1, "paused", Duration::from_secs(10)),
            ));
            if resumed.elapsed() > Duration::from_secs(4) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let queued: Vec<Served> =
            hs.into_iter().map(|h| h.join().expect("queued request")).collect();
        (queued, after, gone.join().expect("watcher thread"))
    });
    println!(
        "queued during the pause: {:?}",
        queued.iter().map(|a| (a.status, a.node)).collect::<Vec<_>>()
    );
    println!(
        "after SIGCONT: {:?}",
        after.iter().map(|(t, a)| (format!("{t:.2}"), a.status, a.node)).collect::<Vec<_>>()
    );
    let bad: Vec<&Served> =
        queued.iter().chain(after.iter().map(|(_, a)| a)).filter(|a| !good(a)).collect();
    if !bad.is_empty() {
        c.dump(&format!("n1 answered after SIGCONT with neither 503 nor the new owner's worker: {bad:?} (old workers {old_workers:?})"));
    }
    let Some(gone) = gone else {
        c.dump(&format!("n1's old workers still run 15 s after SIGCONT: {old_workers:?}"));
    };
    println!("old workers gone {:.2} s after SIGCONT", gone.as_secs_f64());
    let (after, got) = probe.join().expect("probe thread");
    println!(
        "a request forwarded to the stopped owner: {got:?} after {:.2} s",
        after.as_secs_f64()
    );
    // Live again, owning nothing.
    c.wait_converged(Duration::from_secs(c.ttl.as_secs() + 20));
    let st = c.nodes[0].status();
    assert_eq!(st["owned"], json!([]), "{st}");
    let fences = c.sum(&[0], "paddock_cluster_fence_events_total{health=\"fenced\"}")
        + c.sum(&[0], "paddock_cluster_fence_events_total{health=\"lost\"}");
    assert!(fences >= 1.0, "no fence event counted on n1");
    let a = c.who_serves(n1, "paused", T);
    assert_eq!((a.status, a.node), (200, Some(new_owner)), "{a:?}");
}

#[test]
fn drain_moves_every_tenant_with_no_failed_request() {
    let c = Cluster::start(Opts::default());
    let moved = ["d0", "d1", "d2"];
    for n in moved {
        c.start_on(0, n);
    }
    c.start_on(1, "stay");
    let a_workers = c.nodes[0].server.worker_pids();
    let via: Vec<SocketAddr> = c.nodes.iter().map(|n| n.server.addr).collect();
    let names = ["d0", "d1", "d2", "stay"];
    let stop = AtomicBool::new(false);
    let tally = Tally::default();
    let (status, body, took) = std::thread::scope(|s| {
        for path in ["pid", "sleep?s=0.3", "pid", "sleep?s=0.3"] {
            let l = load(&c, &stop, &tally, each(&via, &names, path));
            s.spawn(move || l.run(|_, a| a.status == 200));
        }
        std::thread::sleep(Duration::from_millis(700));
        let t0 = Instant::now();
        let (status, body) =
            c.nodes[0].api_timeout("POST", "/api/v1/cluster/drain", None, Duration::from_secs(120));
        let took = t0.elapsed();
        std::thread::sleep(Duration::from_secs(1));
        stop.store(true, Ordering::Relaxed);
        (status, body, took)
    });
    println!("drain: {status} {body} in {:.2} s; load: {}", took.as_secs_f64(), tally.summary());
    assert_eq!(status, 200, "{body}\n{}", c.nodes[0].server.log_text());
    let failed = tally.failures();
    // More than 3 if a tenant came back during the drain (a request forwarded by a node
    // whose owner cache lagged) and was moved again.
    if !failed.is_empty() || body["released"].as_u64().is_none_or(|n| n < 3) {
        let n = failed.len();
        c.dump(&format!(
            "drain answered {body} (want >= 3 released); {n} failed requests: {failed:?}"
        ));
    }
    let st = c.nodes[0].status();
    assert_eq!((&st["owned"], &st["state"]), (&json!([]), &json!("draining")), "{st}");
    for n in moved {
        let owner = c.nodes[1].owner(n);
        assert!(matches!(owner.as_deref(), Some("n2" | "n3")), "{n}: owner {owner:?}");
        c.owner_agreed(n, &[0, 1, 2], owner.as_deref());
        let a = c.who_serves(via[0], n, T);
        assert!(a.status == 200 && matches!(a.node, Some(1 | 2)), "{n} through n1: {a:?}");
        println!("{n} -> {}", owner.unwrap_or_default());
    }
    c.owner_agreed("stay", &[0, 1, 2], Some("n2"));
    let gone = within(Duration::from_secs(15), || a_workers.iter().all(|&p| !pid_alive(p)));
    assert!(gone.is_some(), "n1's workers still run after the drain: {a_workers:?}");
}

#[test]
fn signup_of_one_name_on_two_nodes_gives_one_site() {
    let root = common::nix_is_root();
    if root {
        common::ensure_user("paddock-e2e");
    }
    // A slow provisioning widens the race window; as root, signups share the test user.
    let admin = format!(
        "{}\n{}",
        r#"provision = [["sh", "-c", "sleep 1; mkdir conf && echo '[project]' > conf/trac.ini"]]"#,
        if root { "signup_user = \"paddock-e2e\"" } else { "" }
    );
    let c = Cluster::start(Opts { admin, ..Opts::default() });
    let body = |n: &str| json!({"name": n, "admin_user": "alice", "password": "correct horse"});
    for (k, name) in ["same1", "same2", "same3"].iter().enumerate() {
        let pair = [k % 3, (k + 1) % 3];
        let gate = Barrier::new(2);
        let answers: Vec<(u16, Value)> = std::thread::scope(|s| {
            let hs: Vec<_> = pair
                .iter()
                .map(|&i| {
                    let (gate, b) = (&gate, body(name).to_string());
                    let n = &c.nodes[i];
                    s.spawn(move || {
                        gate.wait();
                        n.api_timeout("POST", "/api/v1/tenants", Some(&b), Duration::from_secs(60))
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().expect("signup thread")).collect()
        });
        let mut statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
        statuses.sort_unstable();
        if statuses != [201, 409] {
            c.dump(&format!("{name} on {pair:?}: {answers:?}"));
        }
        assert!(c.sites().join(name).join("conf/trac.ini").is_file(), "{name}: no site");
        let key = format!("/paddock-e2e/tenants/{name}");
        assert_eq!(c.etcd.key_count(&key), Some(1), "{key} in etcd");
        let third = (k + 2) % 3;
        let a = c.who_serves(c.nodes[third].server.addr, name, T);
        assert_eq!(a.status, 200, "{name} through {}: {a:?}", c.nodes[third].id);
    }
    let entries: BTreeSet<String> = std::fs::read_dir(c.sites())
        .expect("read sites")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(entries, ["same1", "same2", "same3"].map(String::from).into(), "sites: {entries:?}");
}

#[test]
fn quorum_loss_refuses_new_claims_and_recovers() {
    let mut c = Cluster::start(Opts::default());
    c.start_on(0, "before");
    c.start_on(1, "before2");
    // Full mode: judged at the end, so that the quorum loss below runs in any case.
    let minority = if full_mode() { one_member_down(&mut c) } else { None };
    c.add_site("fresh");
    let down: Vec<usize> = if full_mode() { vec![0, 1] } else { vec![0] };
    for &m in &down {
        c.etcd.stop(m);
    }
    // A never-started tenant is refused with 503 by every node, within a bound (claims are
    // bounded by the cluster's request timeout, a queued request by queue_timeout 30 s).
    let refused: Vec<(f64, Served)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..3)
            .map(|i| {
                let c = &c;
                s.spawn(move || {
                    let t0 = Instant::now();
                    let a = c.who_serves(c.nodes[i].server.addr, "fresh", Duration::from_secs(35));
                    (t0.elapsed().as_secs_f64(), a)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("request thread")).collect()
    });
    println!(
        "without quorum, a new tenant: {:?}",
        refused.iter().map(|(t, a)| (format!("{t:.2} s"), a.status)).collect::<Vec<_>>()
    );
    if refused.iter().any(|(_, a)| a.status != 503) {
        c.dump(&format!("want 503 from every node: {refused:?}"));
    }
    // Fenced after ttl - margin: nothing is served, running tenants included; workers stop.
    let fenced = within(c.ttl + Duration::from_secs(5), || {
        c.nodes.iter().all(|n| n.metric("paddock_cluster_live") == Some(0.0))
    });
    if fenced.is_none() {
        c.dump("not every node fenced itself without etcd");
    }
    let a = c.who_serves(c.nodes[0].server.addr, "before", Duration::from_secs(35));
    assert_eq!(a.status, 503, "a fenced node served: {a:?}");
    let idle = within(Duration::from_secs(15), || {
        c.nodes.iter().all(|n| n.server.worker_pids().is_empty())
    });
    assert!(idle.is_some(), "workers still run on fenced nodes");

    for &m in &down {
        c.etcd.restart(m);
    }
    let restarted = Instant::now();
    let back = within(c.ttl + Duration::from_secs(30), || {
        ["fresh", "before", "before2"]
            .iter()
            .all(|n| c.who_serves(c.nodes[2].server.addr, n, Duration::from_secs(10)).status == 200)
    });
    if back.is_none() {
        c.dump("not served again after etcd came back");
    }
    println!("served again {:.2} s after etcd restarted", restarted.elapsed().as_secs_f64());
    c.wait_converged(Duration::from_secs(30));
    if let Some(why) = minority {
        c.dump(&why);
    }
}

/// Full mode: with one of three etcd members down, every request still gets 200, a new
/// tenant included. What failed, if anything.
fn one_member_down(c: &mut Cluster) -> Option<String> {
    c.add_site("minority");
    c.etcd.stop(0);
    let stop = AtomicBool::new(false);
    let tally = Tally::default();
    let via: Vec<SocketAddr> = c.nodes.iter().map(|n| n.server.addr).collect();
    let cr: &Cluster = c;
    std::thread::scope(|s| {
        let l = load(cr, &stop, &tally, each(&via, &["before", "before2", "minority"], "pid"));
        s.spawn(move || l.run(|_, a| a.status == 200));
        std::thread::sleep(cr.ttl + Duration::from_secs(3));
        stop.store(true, Ordering::Relaxed);
    });
    println!("one etcd member of 3 down: {}", tally.summary());
    c.etcd.restart(0);
    let failed = tally.failures();
    let (first, last) = (failed.first()?.0, failed.last()?.0);
    let mut per_node = std::collections::BTreeMap::<&str, usize>::new();
    for f in &failed {
        let id = c.nodes.iter().find(|n| n.server.addr == f.1).map_or("?", |n| n.id.as_str());
        *per_node.entry(id).or_default() += 1;
    }
    Some(format!(
        "{} requests failed with one etcd member of 3 down, from {first:.2} s to {last:.2} s after \
         it stopped, by node {per_node:?}; the first: {:?}",
        failed.len(),
        failed[0]
    ))
}

//! paddock-cluster against a real etcd (one per test, see common/mod.rs). Short ttls (4 s);
//! every wait is bounded in count and time; no speed is asserted, only orders and bounds.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{config, join, Etcd};
use paddock_cluster::{rendezvous, Claim, ClusterError, Health, Node, NodeState};

/// Polls `f` every 50 ms until it is true, for at most `limit`.
async fn wait_for<F: FnMut() -> bool>(limit: Duration, mut f: F) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_claims_have_one_winner() {
    let etcd = Etcd::start();
    let nodes: Vec<Arc<Node>> = vec![
        Arc::new(join(&etcd, "n1", 4).await),
        Arc::new(join(&etcd, "n2", 4).await),
        Arc::new(join(&etcd, "n3", 4).await),
    ];
    let mut tasks = Vec::new();
    for i in 0..50 {
        let node = nodes[i % 3].clone();
        tasks.push(tokio::spawn(async move { (node.id().to_string(), node.claim("trac").await) }));
    }
    let mut winners = std::collections::BTreeSet::new();
    let mut won_revisions = std::collections::BTreeSet::new();
    let mut seen_owners = std::collections::BTreeSet::new();
    for t in tasks {
        let (id, r) = t.await.unwrap();
        match r.unwrap() {
            Claim::Won { revision } => {
                winners.insert(id);
                won_revisions.insert(revision);
            }
            Claim::OwnedBy { owner, revision } => {
                assert_ne!(owner.node, id, "a node was told it is owned by itself");
                seen_owners.insert((owner.node, revision));
            }
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    assert_eq!(won_revisions.len(), 1, "one claim, one revision: {won_revisions:?}");
    let winner = winners.into_iter().next().unwrap();
    let rev = *won_revisions.iter().next().unwrap();
    // Every loser saw that winner and that revision.
    assert!(!seen_owners.is_empty());
    for (node, revision) in &seen_owners {
        assert_eq!((node, *revision), (&winner, rev));
    }
    let (owner, revision) = nodes[0].owner("trac").await.unwrap().unwrap();
    assert_eq!((owner.node.as_str(), revision), (winner.as_str(), rev));
    let w = nodes.iter().find(|n| n.id() == winner).unwrap();
    assert_eq!(w.held(), vec![("trac".to_string(), rev)]);
    for n in nodes.iter().filter(|n| n.id() != winner) {
        assert!(n.held().is_empty());
    }
    eprintln!("50 claims from 3 nodes: winner {winner} at revision {rev}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_with_a_stale_revision_does_nothing() {
    let etcd = Etcd::start();
    let a = join(&etcd, "a", 4).await;
    let b = join(&etcd, "b", 4).await;
    let Claim::Won { revision: r1 } = a.claim("t").await.unwrap() else { panic!("a should win") };
    // Someone else's release, or one with a wrong revision: nothing.
    assert!(!b.release("t", r1 + 1000).await.unwrap());
    assert!(!a.release("t", r1 - 1).await.unwrap());
    assert_eq!(a.owner("t").await.unwrap().unwrap().0.node, "a");
    // The right one releases; a claim then gets a new revision.
    assert!(a.release("t", r1).await.unwrap());
    assert!(a.owner("t").await.unwrap().is_none());
    assert!(a.held().is_empty());
    let Claim::Won { revision: r2 } = b.claim("t").await.unwrap() else { panic!("b should win") };
    assert!(r2 > r1);
    // a's late release of its old claim must not delete b's.
    assert!(!a.release("t", r1).await.unwrap());
    let (owner, rev) = a.owner("t").await.unwrap().unwrap();
    assert_eq!((owner.node.as_str(), rev), ("b", r2));
    assert_eq!(a.claim("t").await.unwrap(), Claim::OwnedBy { owner, revision: r2 });
    // Claiming again what one holds is idempotent.
    assert_eq!(b.claim("t").await.unwrap(), Claim::Won { revision: r2 });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_tenant_concurrently_succeeds_once() {
    let etcd = Etcd::start();
    let a = Arc::new(join(&etcd, "a", 4).await);
    let b = Arc::new(join(&etcd, "b", 4).await);
    for round in 0..5 {
        let name = format!("site-{round}");
        let mut tasks = Vec::new();
        for (i, node) in [a.clone(), b.clone(), a.clone(), b.clone()].into_iter().enumerate() {
            let name = name.clone();
            tasks.push(tokio::spawn(async move {
                let record = format!("{{\"by\":{i}}}");
                (record.clone(), node.create_tenant(&name, record.as_bytes()).await.unwrap())
            }));
        }
        let mut created = Vec::new();
        for t in tasks {
            let (record, ok) = t.await.unwrap();
            if ok {
                created.push(record);
            }
        }
        assert_eq!(created.len(), 1, "{name}: {created:?}");
        let stored = b.tenant(&name).await.unwrap().unwrap();
        assert_eq!(stored, created[0].as_bytes());
    }
    assert!(a.tenant("never").await.unwrap().is_none());
    assert!(matches!(a.create_tenant("bad/name", b"x").await, Err(ClusterError::Config(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_node_fences_before_its_lease_expires_then_rejoins_without_claims() {
    let etcd = Etcd::start();
    let a = join(&etcd, "a", 4).await;
    let b = join(&etcd, "b", 4).await;
    let fence = a.fence();
    assert!(a.is_live());
    let Claim::Won { .. } = a.claim("t1").await.unwrap() else { panic!("a should win t1") };
    let Claim::Won { .. } = a.claim("t2").await.unwrap() else { panic!("a should win t2") };
    let old_lease = a.lease_id();

    // Record a's health changes with their times.
    let mut health = a.watch_health();
    let started = Instant::now();
    let changes = tokio::spawn(async move {
        let mut seen = Vec::new();
        let until = Instant::now() + Duration::from_secs(30);
        while seen.len() < 3 && Instant::now() < until {
            match tokio::time::timeout(Duration::from_millis(200), health.changed()).await {
                Ok(Ok(())) => seen.push((*health.borrow_and_update(), Instant::now())),
                Ok(Err(_)) => break,
                Err(_) => {}
            }
        }
        seen
    });

    a.suspend_keepalive(true);
    // b watches for a's owner key to vanish (the lease expiring), polling every 20 ms.
    let mut fenced_at = None;
    let mut gone_at = None;
    let until = Instant::now() + Duration::from_secs(20);
    while gone_at.is_none() && Instant::now() < until {
        if fenced_at.is_none() && !a.is_live() {
            fenced_at = Some(Instant::now());
            assert!(
                matches!(a.claim("t3").await, Err(ClusterError::NotLive(Health::Fenced))),
                "a fenced node refuses claims"
            );
        }
        if b.owner("t1").await.unwrap().is_none() {
            gone_at = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fenced_at = fenced_at.expect("a was never fenced");
    let gone_at = gone_at.expect("a's owner key never expired");
    assert!(fenced_at < gone_at, "fenced strictly before the lease expired");
    eprintln!(
        "ttl {:?}, margin {:?}: fenced {:?} after the keep-alive stopped, lease expired {:?} after, \
         so {:?} between fence and expiry",
        fence.ttl,
        fence.margin,
        fenced_at - started,
        gone_at - started,
        gone_at - fenced_at
    );
    // Every key of a's lease is gone, its tenants are free for b.
    assert!(b.owner("t2").await.unwrap().is_none());
    assert!(b.nodes().await.unwrap().iter().all(|n| n.id != "a"));
    assert_eq!(b.claim("t1").await.unwrap(), Claim::Won { revision: b.held()[0].1 });

    // a resumes: not live until it holds a lease again, then live with none of its old claims.
    assert!(!a.is_live());
    a.suspend_keepalive(false);
    assert!(
        wait_for(Duration::from_secs(15), || a.is_live()).await,
        "a never came back: {:?}",
        a.health()
    );
    assert_ne!(a.lease_id(), old_lease);
    assert!(a.held().is_empty(), "old claims survived: {:?}", a.held());
    let changes = changes.await.unwrap();
    let states: Vec<Health> = changes.iter().map(|c| c.0).collect();
    assert_eq!(states, vec![Health::Fenced, Health::Lost, Health::Live], "{changes:?}");
    // The watch said Fenced before the key vanished too.
    assert!(changes[0].1 < gone_at);
    match a.claim("t1").await.unwrap() {
        Claim::OwnedBy { owner, .. } => assert_eq!(owner.node, "b"),
        other => panic!("t1 should be b's now: {other:?}"),
    }
    let Claim::Won { .. } = a.claim("t2").await.unwrap() else { panic!("t2 is free") };
    assert!(b.nodes().await.unwrap().iter().any(|n| n.id == "a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_etcd_stopped_claims_are_refused_then_work_after_a_restart() {
    let mut etcd = Etcd::start();
    let a = join(&etcd, "a", 4).await;
    let Claim::Won { .. } = a.claim("kept").await.unwrap() else { panic!("a should win") };
    etcd.stop();
    let t = Instant::now();
    let err = a.claim("t").await.unwrap_err();
    let took = t.elapsed();
    assert!(matches!(err, ClusterError::Unreachable { .. }), "{err}");
    assert!(err.is_unavailable());
    assert!(err.to_string().contains("etcd unreachable"), "{err}");
    assert!(took < Duration::from_secs(5), "claim took {took:?} with etcd down");
    eprintln!("claim with etcd down failed after {took:?}: {err}");
    // The node fences itself; claims stay refused, quickly and with a clear reason.
    assert!(wait_for(Duration::from_secs(10), || a.health() == Health::Fenced).await);
    let t = Instant::now();
    let err = a.claim("t").await.unwrap_err();
    assert!(err.is_unavailable() && t.elapsed() < Duration::from_secs(5), "{err}");
    assert!(matches!(err, ClusterError::NotLive(Health::Fenced)), "{err}");

    etcd.restart();
    // Back: the claim works again (on the old lease if etcd kept it, else after a re-join).
    let until = Instant::now() + Duration::from_secs(30);
    let mut last = None;
    while Instant::now() < until {
        match a.claim("t").await {
            Ok(c) => {
                last = Some(Ok(c));
                break;
            }
            Err(e) => last = Some(Err(e.to_string())),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(matches!(last, Some(Ok(Claim::Won { .. }))), "{last:?}");
    assert!(a.is_live());
    eprintln!("after the restart: lease {} held {:?}", a.lease_id(), a.held());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_placement_drain_and_leave() {
    let etcd = Etcd::start();
    let a = join(&etcd, "a", 4).await;
    let b = join(&etcd, "b", 4).await;
    for t in ["x1", "x2", "x3"] {
        assert!(matches!(a.claim(t).await.unwrap(), Claim::Won { .. }));
    }
    let nodes = b.nodes().await.unwrap();
    let ids: Vec<(&str, u32, NodeState)> =
        nodes.iter().map(|n| (n.id.as_str(), n.owned, n.state)).collect();
    assert_eq!(ids, vec![("a", 3, NodeState::Active), ("b", 0, NodeState::Active)]);
    assert_eq!(nodes[0].addr, a.config().internal_addr);
    // Both nodes compute the same placement.
    let p = rendezvous("new-site", &nodes).unwrap().id.clone();
    assert_eq!(rendezvous("new-site", &a.nodes().await.unwrap()).unwrap().id, p);

    // Drain: a leaves placement, gives its tenants up one by one.
    a.set_state(NodeState::Draining).await.unwrap();
    let nodes = b.nodes().await.unwrap();
    assert_eq!(nodes[0].state, NodeState::Draining);
    for i in 0..20 {
        assert_eq!(rendezvous(&format!("t{i}"), &nodes).unwrap().id, "b");
    }
    assert_eq!(a.release_all().await.unwrap(), 3);
    assert!(a.held().is_empty());
    assert_eq!(b.nodes().await.unwrap()[0].owned, 0);
    assert!(matches!(b.claim("x1").await.unwrap(), Claim::Won { .. }));

    // Leave revokes the lease: a's record is gone at once, not after the ttl.
    let Claim::Won { .. } = a.claim("y").await.unwrap() else { panic!("y is free") };
    a.leave().await.unwrap();
    let nodes = b.nodes().await.unwrap();
    assert_eq!(nodes.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(), vec!["b"]);
    assert!(b.owner("y").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_id_held_by_a_live_process_is_refused() {
    let etcd = Etcd::start();
    let a = join(&etcd, "a", 3).await;
    let t = Instant::now();
    let err = Node::join(config(&etcd, "a", 3)).await.err().expect("a second `a` must not join");
    assert!(matches!(err, ClusterError::DuplicateNode { .. }), "{err}");
    eprintln!("duplicate id refused after {:?}: {err}", t.elapsed());
    assert!(a.is_live());
    // Once the first leaves (or its lease expires), the id is free again.
    a.leave().await.unwrap();
    let again = Node::join(config(&etcd, "a", 3)).await.unwrap();
    assert!(again.is_live());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_with_etcd_absent_fails_within_bounds() {
    let etcd = Etcd::start();
    let mut cfg = config(&etcd, "a", 3);
    drop(etcd);
    cfg.validate().unwrap();
    let t = Instant::now();
    let err = Node::join(cfg.clone()).await.err().expect("no etcd, no join");
    assert!(err.is_unavailable(), "{err}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    cfg.ttl = Duration::from_secs(1);
    assert!(matches!(Node::join(cfg).await, Err(ClusterError::Config(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_cache_follows_claims_releases_and_expiry() {
    let mut etcd = Etcd::start();
    let a = join(&etcd, "a", 4).await;
    let b = join(&etcd, "b", 4).await;
    let Claim::Won { revision: before } = a.claim("early").await.unwrap() else { panic!() };
    assert!(wait_for(Duration::from_secs(10), || b.owner_cache_synced()).await);
    // Listed at start or seen by the watch, either way there.
    assert!(wait_for(Duration::from_secs(5), || b.cached_owner("early").is_some()).await);
    assert_eq!(b.cached_owner("early").unwrap().1, before);
    let Claim::Won { revision } = a.claim("c").await.unwrap() else { panic!("a should win") };
    assert!(wait_for(Duration::from_secs(5), || b.cached_owner("c").is_some()).await);
    let (owner, rev) = b.cached_owner("c").unwrap();
    assert_eq!(
        (owner.node.as_str(), owner.addr.as_str(), rev),
        ("a", a.config().internal_addr.as_str(), revision)
    );
    assert!(a.release("c", revision).await.unwrap());
    assert!(wait_for(Duration::from_secs(5), || b.cached_owner("c").is_none()).await);
    // A lease's expiry deletes its owner keys; the cache sees those deletes too.
    a.suspend_keepalive(true);
    assert!(wait_for(Duration::from_secs(15), || b.cached_owner("early").is_none()).await);
    // etcd gone: the cache says it is out of sync and answers nothing rather than old owners.
    let Claim::Won { .. } = b.claim("d").await.unwrap() else { panic!("d is free") };
    assert!(wait_for(Duration::from_secs(5), || b.cached_owner("d").is_some()).await);
    etcd.stop();
    assert!(wait_for(Duration::from_secs(15), || !b.owner_cache_synced()).await);
    assert!(b.cached_owner("d").is_none());
    etcd.restart();
    assert!(wait_for(Duration::from_secs(20), || b.cached_owner("d").is_some()).await);
}

/// A move: the owner key goes to the target's lease in one step, no third node can take it
/// between, a stale revision moves nothing, and the target's claim then answers `Won`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_over_gives_a_tenant_to_another_node_in_one_step() {
    let etcd = Etcd::start();
    let (a, b, c) =
        (join(&etcd, "n1", 4).await, join(&etcd, "n2", 4).await, join(&etcd, "n3", 4).await);
    let Claim::Won { revision } = a.claim("t").await.unwrap() else { panic!("a claims") };
    assert!(!a.hand_over("t", revision - 1, "n2").await.unwrap(), "stale revision");
    assert!(!a.hand_over("t", revision, "n9").await.unwrap(), "no such node");
    assert!(a.hand_over("t", revision, "n2").await.unwrap());
    assert!(a.held().is_empty());
    let (owner, _) = a.owner("t").await.unwrap().expect("owned");
    assert_eq!(owner.node, "n2");
    assert!(
        matches!(c.claim("t").await.unwrap(), Claim::OwnedBy { owner, .. } if owner.node == "n2")
    );
    let Claim::Won { revision: rb } = b.claim("t").await.unwrap() else { panic!("b owns it") };
    assert_eq!(b.held(), vec![("t".to_string(), rb)]);
    // It is on b's lease: b leaving frees it.
    b.leave().await.unwrap();
    assert!(a.owner("t").await.unwrap().is_none());
}

/// A failed signup takes back only its own record; a deleted tenant's goes whatever it holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_record_is_deleted_only_by_its_creator_or_unconditionally() {
    let etcd = Etcd::start();
    let a = join(&etcd, "n1", 4).await;
    assert!(a.create_tenant("s", b"mine").await.unwrap());
    assert!(!a.delete_tenant("s", Some(b"theirs")).await.unwrap());
    assert_eq!(a.tenant("s").await.unwrap().as_deref(), Some(&b"mine"[..]));
    assert!(a.delete_tenant("s", Some(b"mine")).await.unwrap());
    assert!(a.tenant("s").await.unwrap().is_none());
    assert!(a.create_tenant("s", b"again").await.unwrap());
    assert!(a.delete_tenant("s", None).await.unwrap());
    assert!(a.create_tenant("s", b"third").await.unwrap());
}

/// A binary upgrade: the successor takes over the node's lease, record and claims; the old
/// process hands off without revoking anything; a lease that is not the node's is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_adopts_the_lease_and_keeps_the_claims() {
    let etcd = Etcd::start();
    let old = join(&etcd, "n1", 4).await;
    let other = join(&etcd, "n2", 4).await;
    let Claim::Won { revision } = old.claim("t").await.unwrap() else { panic!("claim") };
    assert!(Node::adopt(config(&etcd, "n1", 4), other.lease_id()).await.is_err(), "n2's lease");
    let new = Node::adopt(config(&etcd, "n1", 4), old.lease_id()).await.unwrap();
    assert_eq!(new.lease_id(), old.lease_id());
    assert_eq!(new.held(), vec![("t".to_string(), revision)], "the claims come along");
    assert!(wait_for(Duration::from_secs(3), || new.is_live()).await, "live on the adopted lease");
    assert_eq!(new.claim("t").await.unwrap(), Claim::Won { revision });
    old.hand_off();
    assert!(!old.is_live());
    // Past the ttl: the successor's renewals alone keep the lease and the claim.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(new.is_live());
    assert!(
        matches!(other.claim("t").await.unwrap(), Claim::OwnedBy { owner, .. } if owner.node == "n1")
    );
    new.leave().await.unwrap();
    assert!(matches!(other.claim("t").await.unwrap(), Claim::Won { .. }));
}

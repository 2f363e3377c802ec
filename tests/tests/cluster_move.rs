//! Moving one tenant to a chosen node (`POST /api/v1/cluster/tenants/NAME/move`, `paddock
//! cluster move`): under load through every node, no request fails, the target owns and
//! serves it, and only the owner may move it. The harness is `clusterkit` (cluster_nodes.rs
//! has the failure tests).

mod clusterkit;
mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clusterkit::load::{Load, Tally};
use clusterkit::{cli, pid_alive, within, Cluster, Opts};
use serde_json::json;

const T: Duration = Duration::from_secs(30);

#[test]
fn a_tenant_moves_to_the_chosen_node_with_no_failed_request() {
    let c = Cluster::start(Opts::default());
    let old = c.start_on(0, "m");
    c.start_on(1, "other");
    let via: Vec<SocketAddr> = c.nodes.iter().map(|n| n.server.addr).collect();
    let targets = ["m", "other"]
        .iter()
        .flat_map(|n| via.iter().map(move |a| (*a, n.to_string(), "pid")))
        .collect();
    let stop = AtomicBool::new(false);
    let tally = Tally::default();
    let load = Load {
        cluster: &c,
        targets,
        stop: &stop,
        limit: Duration::from_secs(60),
        timeout: Duration::from_secs(20),
        tally: &tally,
    };
    let (refused, moved) = std::thread::scope(|s| {
        s.spawn(|| load.run(|_, a| a.status == 200));
        std::thread::sleep(Duration::from_millis(500));
        // Only the owner moves a tenant: n2 is told who owns it.
        let refused =
            c.nodes[1].api("POST", "/api/v1/cluster/tenants/m/move", Some(r#"{"to":"n3"}"#));
        let moved =
            c.nodes[0].api("POST", "/api/v1/cluster/tenants/m/move", Some(r#"{"to":"n3"}"#));
        std::thread::sleep(Duration::from_millis(700));
        stop.store(true, Ordering::Relaxed);
        (refused, moved)
    });
    println!("move: {moved:?}; load: {}", tally.summary());
    assert_eq!(refused.0, 409, "{:?}", refused.1);
    assert!(
        refused.1["error"].as_str().is_some_and(|e| e.contains("owned by n1")),
        "{:?}",
        refused.1
    );
    assert_eq!(moved, (200, json!({"tenant": "m", "owner": "n3"})));
    let failed = tally.failures();
    if !failed.is_empty() {
        c.dump(&format!("{} failed requests during the move: {failed:?}", failed.len()));
    }
    c.owner_agreed("m", &[0, 1, 2], Some("n3"));
    c.owner_agreed("other", &[0, 1, 2], Some("n2"));
    for a in &via {
        let r = c.who_serves(*a, "m", T);
        assert!(r.status == 200 && r.node == Some(2), "m through {a}: {r:?}");
    }
    assert!(
        within(Duration::from_secs(15), || !pid_alive(old)).is_some(),
        "n1's worker {old} runs on"
    );
    // To a node that is not there, or back to itself: refused, nothing moves.
    let (s, body) =
        c.nodes[2].api("POST", "/api/v1/cluster/tenants/m/move", Some(r#"{"to":"n9"}"#));
    assert_eq!(s, 409, "{body}");
    let (code, out, err) = cli(&c, 2, &["cluster", "owner", "m"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("m: owned by n3 ("), "{out}");
}

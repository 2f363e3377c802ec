//! Several Paddock nodes on one etcd (docs/cluster.md): WIP harness check.

mod clusterkit;
mod common;

use std::time::Duration;

use clusterkit::{Cluster, Haproxy, Opts};

#[test]
fn haproxy_sends_each_tenant_prefix_to_one_node() {
    let c = Cluster::start(Opts { cluster: false, ..Opts::default() });
    let names: Vec<String> = (0..30).map(|i| format!("h{i}")).collect();
    for n in &names {
        c.add_site(n);
    }
    let h = Haproxy::start(&c.backends());
    let mut used = std::collections::BTreeSet::new();
    for n in &names {
        let first = c.who_serves(h.addr, n, Duration::from_secs(30));
        assert_eq!(first.status, 200, "{first:?}\n{}", h.log_text());
        let node = first.node.expect("served by a node's worker");
        used.insert(node);
        for k in 0..4 {
            // Other paths under the same tenant prefix hash the same.
            let path = ["pid", "pid/x/y", "sleep?s=0", "pid?q=1"][k];
            let r = clusterkit::get(h.addr, &format!("/trac/{n}/{path}"), Duration::from_secs(30));
            let r = r.expect("answer");
            let pid: u32 = r.text().trim().parse().expect("pid");
            let again = clusterkit::Served { status: r.status, pid: Some(pid), node: c.node_of_pid(pid), err: None };
            assert_eq!((again.status, again.node), (200, Some(node)), "{n}: {again:?}");
        }
        println!("{n} -> {}", c.nodes[node].id);
    }
    assert!(used.len() >= 2, "30 tenants all hashed to one node: {used:?}");
}

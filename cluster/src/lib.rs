//! Paddock's cluster state on etcd (docs/cluster.md): node membership on a lease, tenant
//! ownership by compare-and-swap, self-fencing before the lease can expire, rendezvous
//! placement and cluster-wide unique tenant records. No HTTP and no router: the router calls
//! `Node::is_live` per request, `Node::claim` before starting a pool, and stops pools when
//! `Node::watch_health` says `Fenced` or `Lost`.

mod cache;
mod config;
mod error;
mod fence;
mod keys;
mod node;
mod place;

pub use config::{check_node_id, check_tenant, ClusterConfig};
pub use error::ClusterError;
pub use fence::{Fence, Health};
pub use keys::{NodeInfo, NodeState, Owner};
pub use node::{Claim, Node};
pub use place::{rendezvous, score};

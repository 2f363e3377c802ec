//! What can go wrong, split by what the caller does about it: `Unreachable` and `NotLive` mean
//! "this node may not take tenants now" (refuse or forward, retry later); the others are
//! mistakes or logic outcomes.

use std::time::Duration;

use crate::fence::Health;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A setting or a name is not acceptable.
    #[error("cluster configuration: {0}")]
    Config(String),
    /// etcd did not answer within the request timeout, or answered without a quorum.
    #[error(
        "etcd unreachable or without quorum at {endpoints} ({detail}): tenant claims are refused \
         until it answers"
    )]
    Unreachable { endpoints: String, detail: String },
    /// This node holds no live lease (fenced or lost): it may not claim or serve tenants.
    #[error("this node's etcd lease is {0}: claims are refused until it holds a live lease again")]
    NotLive(Health),
    /// Another live process has joined under this node id.
    #[error("node id `{id}` is held by another live process (its lease did not expire within {waited:?})")]
    DuplicateNode { id: String, waited: Duration },
    /// A record in etcd that this crate did not write, or wrote differently.
    #[error("malformed record at etcd key `{key}`: {detail}")]
    Corrupt { key: String, detail: String },
    /// Any other answer of etcd's (permission denied, request too large, ...).
    #[error("etcd: {0}")]
    Etcd(String),
}

impl ClusterError {
    /// True when the node cannot take tenants now (etcd unreachable, no quorum, lease not
    /// live): the router answers 503 or forwards, and retries later.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, ClusterError::Unreachable { .. } | ClusterError::NotLive(_))
    }
}

/// What an etcd error means here. Transport failures, deadlines and `Unavailable` (which etcd
/// also answers without a leader) are "unreachable"; a vanished lease is `NotLive(Lost)`.
pub(crate) fn from_etcd(endpoints: &str, e: etcd_client::Error) -> ClusterError {
    use etcd_client::Error as E;
    let unreachable =
        |detail: String| ClusterError::Unreachable { endpoints: endpoints.to_string(), detail };
    match e {
        E::TransportError(t) => unreachable(t.to_string()),
        E::IoError(io) => unreachable(io.to_string()),
        E::GRpcStatus(s) => {
            let msg = s.message().to_string();
            if msg.contains("lease not found") {
                return ClusterError::NotLive(Health::Lost);
            }
            // gRPC status codes by number (tonic's `Code` is not re-exported).
            match s.code() as i32 {
                // CANCELLED, UNKNOWN, DEADLINE_EXCEEDED, UNAVAILABLE
                1 | 2 | 4 | 14 => unreachable(msg),
                _ if msg.contains("no leader") || msg.contains("timed out") => unreachable(msg),
                _ => ClusterError::Etcd(msg),
            }
        }
        E::LeaseKeepAliveError(m) => unreachable(m),
        other => ClusterError::Etcd(other.to_string()),
    }
}

pub(crate) fn timed_out(endpoints: &str, after: Duration) -> ClusterError {
    ClusterError::Unreachable {
        endpoints: endpoints.to_string(),
        detail: format!("no answer within {after:?}"),
    }
}

//! `[cluster]`: several nodes sharing one tenant registry on etcd. The rules for node ids,
//! key prefixes and lease TTLs live here, once: `paddock-cluster` checks its own settings
//! with the same functions, so a file `paddock check` accepts is one the cluster accepts.

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

/// `[cluster]` as written.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct ClusterSection {
    /// etcd client URLs, e.g. `["http://10.0.0.1:2379", "http://10.0.0.2:2379"]`.
    pub etcd: Option<Spanned<Vec<String>>>,
    /// The key prefix all of this cluster's keys live under; default `/paddock/`.
    pub prefix: Option<Spanned<String>>,
    /// This node's id, a lowercase DNS label unique among the live nodes.
    pub node_id: Option<Spanned<String>>,
    /// Address the node-to-node listener binds (requests forwarded by the other nodes).
    pub internal_listen: Option<Spanned<String>>,
    /// Address the other nodes reach that listener at; default `internal_listen`.
    pub internal_addr: Option<Spanned<String>>,
    /// The nodes' addresses or networks: the only peers the internal listener accepts, the
    /// only addresses requests are forwarded to.
    pub peers: Option<Spanned<Vec<String>>>,
    /// Most tenants this node owns before new ones are placed on other nodes; default 1000.
    pub capacity: Option<Spanned<i64>>,
    /// The node's lease time to live, whole seconds, at least 3 s; default `10s`.
    pub ttl: Option<Spanned<String>>,
}

/// `[cluster]` after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    pub endpoints: Vec<String>,
    pub prefix: String,
    pub node_id: String,
    pub internal_listen: SocketAddr,
    pub internal_addr: SocketAddr,
    pub peers: Vec<IpNet>,
    pub capacity: u32,
    pub ttl: Duration,
}

impl ClusterSettings {
    /// Whether `ip` is one of the configured peers (IPv4-mapped IPv6 counts as IPv4).
    pub fn is_peer(&self, ip: std::net::IpAddr) -> bool {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => {
                v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(std::net::IpAddr::V6(v6))
            }
            v4 => v4,
        };
        self.peers.iter().any(|n| n.contains(&ip))
    }
}

pub const DEFAULT_PREFIX: &str = "/paddock/";
pub const DEFAULT_CAPACITY: u32 = 1000;
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);

/// Node ids are lowercase DNS labels: 1-63 of `[a-z0-9-]`, no `-` at either end.
pub fn node_id_problem(id: &str) -> Option<String> {
    let ok = !id.is_empty()
        && id.len() <= 63
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-');
    (!ok).then(|| {
        format!(
            "node id `{id}`: use a lowercase DNS label (1 to 63 of a-z, 0-9 and `-`, no `-` at either end)"
        )
    })
}

/// A prefix starts and ends with `/` and has no empty segment.
pub fn prefix_problem(prefix: &str) -> Option<String> {
    let ok = prefix.starts_with('/') && prefix.ends_with('/') && !prefix.contains("//");
    (!ok).then(|| format!("prefix `{prefix}` must start and end with `/` (e.g. `/paddock/`)"))
}

/// A lease TTL is whole seconds, from 3 s (two renewals per fence window) to an hour (a dead
/// node holds its tenants that long).
pub fn ttl_problem(ttl: Duration) -> Option<String> {
    if ttl < Duration::from_secs(3) || ttl.subsec_nanos() != 0 {
        return Some(format!("ttl {ttl:?} must be whole seconds, at least 3 s"));
    }
    (ttl > Duration::from_secs(3600)).then(|| {
        format!("ttl {ttl:?} is over an hour: a dead node would hold its tenants that long")
    })
}

/// Validate `[cluster]`; each problem is reported through `err` with the span it concerns
/// (`None`: the section as a whole).
pub(crate) fn validate(
    s: &ClusterSection,
    mut err: impl FnMut(Option<std::ops::Range<usize>>, String),
) -> Option<ClusterSettings> {
    let mut ok = true;
    let mut fail = |span: Option<std::ops::Range<usize>>, m: String| {
        ok = false;
        err(span, format!("[cluster] {m}"));
    };
    let endpoints = match &s.etcd {
        Some(e) if e.get_ref().is_empty() => {
            fail(Some(e.span()), "`etcd` lists no endpoint".into());
            Vec::new()
        }
        Some(e) => {
            for u in e.get_ref() {
                if u.trim().is_empty() || u.chars().any(char::is_whitespace) {
                    fail(Some(e.span()), format!("etcd endpoint `{u}` is empty or has blanks"));
                }
            }
            e.get_ref().clone()
        }
        None => {
            fail(
                None,
                "needs `etcd`, the etcd client URLs (e.g. [\"http://10.0.0.1:2379\"])".into(),
            );
            Vec::new()
        }
    };
    let prefix = match &s.prefix {
        Some(p) => {
            if let Some(m) = prefix_problem(p.get_ref()) {
                fail(Some(p.span()), m);
            }
            p.get_ref().clone()
        }
        None => DEFAULT_PREFIX.to_string(),
    };
    let node_id = match &s.node_id {
        Some(n) => {
            if let Some(m) = node_id_problem(n.get_ref()) {
                fail(Some(n.span()), m);
            }
            n.get_ref().clone()
        }
        None => {
            fail(None, "needs `node_id`, this node's name (a lowercase DNS label)".into());
            String::new()
        }
    };
    let fallback = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut addr = |field: &Option<Spanned<String>>, name: &str| -> Option<SocketAddr> {
        let f = field.as_ref()?;
        match f.get_ref().parse::<SocketAddr>() {
            Ok(a) if a.port() != 0 => Some(a),
            _ => {
                fail(
                    Some(f.span()),
                    format!(
                        "`{name}`: `{}` is not an IP address and port such as 10.0.0.5:8081",
                        f.get_ref()
                    ),
                );
                Some(fallback)
            }
        }
    };
    let internal_listen = addr(&s.internal_listen, "internal_listen");
    let internal_addr = addr(&s.internal_addr, "internal_addr");
    let internal_listen = internal_listen.unwrap_or_else(|| {
        fail(None, "needs `internal_listen`, the address of the node-to-node listener".into());
        fallback
    });
    let internal_addr = internal_addr.unwrap_or(internal_listen);
    if internal_addr.ip().is_unspecified() {
        let span = s.internal_addr.as_ref().or(s.internal_listen.as_ref()).map(|x| x.span());
        fail(
            span,
            format!(
                "`internal_addr` {internal_addr} is unspecified: set the address the other nodes reach this one at"
            ),
        );
    }
    let peers = match &s.peers {
        Some(p) => crate::units::parse_nets(p.get_ref()).unwrap_or_else(|e| {
            fail(Some(p.span()), format!("`peers`: {e}"));
            Vec::new()
        }),
        None => {
            fail(
                None,
                "needs `peers`, the addresses or networks of the nodes (e.g. [\"10.0.0.0/24\"])"
                    .into(),
            );
            Vec::new()
        }
    };
    let capacity = match &s.capacity {
        Some(c) => match u32::try_from(*c.get_ref()) {
            Ok(n) if n >= 1 => n,
            _ => {
                fail(
                    Some(c.span()),
                    format!("`capacity` {} must be from 1 to {}", c.get_ref(), u32::MAX),
                );
                DEFAULT_CAPACITY
            }
        },
        None => DEFAULT_CAPACITY,
    };
    let ttl = match &s.ttl {
        Some(t) => match crate::units::parse_duration(t.get_ref()) {
            Ok(d) => {
                if let Some(m) = ttl_problem(d) {
                    fail(Some(t.span()), m);
                }
                d
            }
            Err(e) => {
                fail(Some(t.span()), format!("`ttl`: {e}"));
                DEFAULT_TTL
            }
        },
        None => DEFAULT_TTL,
    };
    let settings = ClusterSettings {
        endpoints,
        prefix,
        node_id,
        internal_listen,
        internal_addr,
        peers,
        capacity,
        ttl,
    };
    if !settings.is_peer(settings.internal_addr.ip()) && !settings.peers.is_empty() {
        let span = s.peers.as_ref().map(|p| p.span());
        fail(
            span,
            format!(
                "`peers` must include this node's own `internal_addr` {}",
                settings.internal_addr
            ),
        );
    }
    ok.then_some(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids() {
        for good in ["n1", "node-1", &"a".repeat(63)] {
            assert_eq!(node_id_problem(good), None, "{good}");
        }
        for bad in ["", "N1", "-n", "n-", "a/b", &"a".repeat(64)] {
            assert!(node_id_problem(bad).is_some_and(|m| m.contains("node id")), "{bad}");
        }
    }

    #[test]
    fn prefixes_and_ttls() {
        assert_eq!(prefix_problem("/paddock/"), None);
        assert_eq!(prefix_problem("/a/b/"), None);
        for bad in ["paddock/", "/paddock", "/a//b/", ""] {
            assert!(prefix_problem(bad).is_some(), "{bad}");
        }
        assert_eq!(ttl_problem(Duration::from_secs(3)), None);
        assert_eq!(ttl_problem(Duration::from_secs(3600)), None);
        for bad in [2000, 3500, 3_601_000] {
            assert!(ttl_problem(Duration::from_millis(bad)).is_some(), "{bad} ms");
        }
    }
}

//! The cluster settings of one node, validated before anything talks to etcd.

use std::time::Duration;

use crate::error::ClusterError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// etcd client URLs, e.g. `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// The key prefix every key of this cluster lives under; starts and ends with `/`
    /// (`/paddock/`).
    pub prefix: String,
    /// This node's id: a lowercase DNS label, unique among live nodes.
    pub node_id: String,
    /// Where the other nodes forward requests for this node's tenants (`host:port`).
    pub internal_addr: String,
    /// How many tenants this node owns at most before new ones go elsewhere (>= 1).
    pub capacity: u32,
    /// The lease's time to live (whole seconds, >= 3 s).
    pub ttl: Duration,
    /// Bound on connecting to an endpoint.
    pub connect_timeout: Duration,
    /// Bound on every etcd request; past it the request fails as "unreachable".
    pub request_timeout: Duration,
}

impl ClusterConfig {
    /// A configuration with the defaults: ttl 10 s, timeouts 2 s / 1.5 s.
    pub fn new(
        endpoints: Vec<String>,
        prefix: impl Into<String>,
        node_id: impl Into<String>,
        internal_addr: impl Into<String>,
        capacity: u32,
    ) -> ClusterConfig {
        ClusterConfig {
            endpoints,
            prefix: prefix.into(),
            node_id: node_id.into(),
            internal_addr: internal_addr.into(),
            capacity,
            ttl: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_millis(1500),
        }
    }

    pub fn validate(&self) -> Result<(), ClusterError> {
        let bad = |m: String| Err(ClusterError::Config(m));
        if self.endpoints.is_empty() {
            return bad("no etcd endpoint".into());
        }
        for e in &self.endpoints {
            if e.trim().is_empty() || e.chars().any(char::is_whitespace) {
                return bad(format!("etcd endpoint `{e}` is empty or has blanks"));
            }
        }
        if let Some(m) = paddock_config::cluster::prefix_problem(&self.prefix) {
            return bad(m);
        }
        check_node_id(&self.node_id)?;
        match self.internal_addr.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {}
            _ => return bad(format!("internal address `{}` is not host:port", self.internal_addr)),
        }
        if self.capacity == 0 {
            return bad("capacity must be at least 1".into());
        }
        if let Some(m) = paddock_config::cluster::ttl_problem(self.ttl) {
            return bad(m);
        }
        if self.connect_timeout.is_zero() || self.request_timeout.is_zero() {
            return bad("timeouts must not be zero".into());
        }
        Ok(())
    }
}

/// Node ids are lowercase DNS labels (`paddock_config::cluster::node_id_problem`, the one
/// place the rule is written).
pub fn check_node_id(id: &str) -> Result<(), ClusterError> {
    match paddock_config::cluster::node_id_problem(id) {
        None => Ok(()),
        Some(m) => Err(ClusterError::Config(m)),
    }
}

/// Tenant names are what the configuration accepts (`paddock_config::tenant::valid_name`:
/// 1 to 63 of `[A-Za-z0-9._-]`, starting with a letter or digit), not only DNS labels: a
/// tenant the configuration serves must be claimable. None has a `/`, so keys stay flat.
pub fn check_tenant(name: &str) -> Result<(), ClusterError> {
    if paddock_config::tenant::valid_name(name) {
        Ok(())
    } else {
        Err(ClusterError::Config(format!(
            "tenant name `{name}`: use 1 to 63 of A-Z, a-z, 0-9, `.`, `_` and `-`, starting with a letter or digit"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> ClusterConfig {
        ClusterConfig::new(
            vec!["http://127.0.0.1:2379".into()],
            "/paddock/",
            "node-1",
            "10.0.0.1:8081",
            100,
        )
    }

    #[test]
    fn defaults_validate() {
        good().validate().unwrap();
        assert_eq!(good().ttl, Duration::from_secs(10));
    }

    #[test]
    fn refusals() {
        type Change = Box<dyn Fn(&mut ClusterConfig)>;
        let cases: Vec<(&str, Change)> = vec![
            ("no etcd endpoint", Box::new(|c| c.endpoints.clear())),
            ("blanks", Box::new(|c| c.endpoints = vec!["http://a b".into()])),
            ("prefix", Box::new(|c| c.prefix = "paddock/".into())),
            ("prefix", Box::new(|c| c.prefix = "/paddock".into())),
            ("prefix", Box::new(|c| c.prefix = "/a//b/".into())),
            ("node id", Box::new(|c| c.node_id = "Node1".into())),
            ("node id", Box::new(|c| c.node_id = "-n".into())),
            ("node id", Box::new(|c| c.node_id = "n-".into())),
            ("node id", Box::new(|c| c.node_id = "a/b".into())),
            ("node id", Box::new(|c| c.node_id = String::new())),
            ("node id", Box::new(|c| c.node_id = "a".repeat(64))),
            ("internal address", Box::new(|c| c.internal_addr = "10.0.0.1".into())),
            ("internal address", Box::new(|c| c.internal_addr = ":80".into())),
            ("internal address", Box::new(|c| c.internal_addr = "h:0".into())),
            ("capacity", Box::new(|c| c.capacity = 0)),
            ("ttl", Box::new(|c| c.ttl = Duration::from_secs(2))),
            ("ttl", Box::new(|c| c.ttl = Duration::from_millis(3500))),
            ("ttl", Box::new(|c| c.ttl = Duration::from_secs(7200))),
            ("timeouts", Box::new(|c| c.request_timeout = Duration::ZERO)),
        ];
        for (want, change) in cases {
            let mut c = good();
            change(&mut c);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(want), "{e} should mention {want}");
        }
        let mut c = good();
        c.ttl = Duration::from_secs(3);
        c.internal_addr = "[::1]:9000".into();
        c.node_id = "a".repeat(63);
        c.validate().unwrap();
    }

    #[test]
    fn tenant_names() {
        for ok in ["trac", "my-site", "Old.Trac_2", "a", &"x".repeat(63)] {
            check_tenant(ok).unwrap();
        }
        for bad in ["", "-a", ".a", "a/b", "a b", &"x".repeat(64), "é"] {
            assert!(check_tenant(bad).is_err(), "{bad}");
        }
    }
}

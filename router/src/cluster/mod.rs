//! This node as one of several sharing a tenant registry on etcd (`[cluster]`): which node
//! serves a tenant, forwarding to it, and giving tenants up. The etcd side (lease, claims,
//! fencing, placement) is `paddock-cluster`'s; this module decides per request and runs the
//! tasks that follow the node's health and release idle claims.
//!
//! Per request, after the rules picked tenant T ([`Cluster::route`]):
//! 1. this node has no live lease: forward to T's owner if the cache knows another one, else
//!    503;
//! 2. this node owns T: serve;
//! 3. another node owns T (owner cache): forward there; a request forwarded already may
//!    be forwarded once more ([`hop::MAX_HOPS`]: T changed hands on the way), then 503;
//! 4. draining or at capacity: forward to the node rendezvous hashing picks;
//! 5. else claim T in etcd (create-if-absent): won, serve; lost, forward to the winner.

pub mod hop;
mod relay;
mod table;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use paddock_cluster::{
    rendezvous, Claim, ClusterConfig, ClusterError, Health, Node, NodeInfo, NodeState, Owner,
};
use paddock_config::cluster::ClusterSettings;
use paddock_supervise::registry::Registry;

use crate::metrics::ClusterMetrics;
pub use relay::{Relay, RelayError};
pub use table::Guard;
use table::{Enter, Table};

/// How often idle claims are looked for and the node list is read.
const TICK: Duration = Duration::from_secs(1);
/// The longest a request waits for its tenant's claim to be given up (a drain or move).
const LEAVE_WAIT: Duration = Duration::from_secs(30);
/// The longest a drain waits for one tenant's requests in flight.
const DRAIN_IN_FLIGHT: Duration = Duration::from_secs(60);

/// Why a move did not happen.
#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error("this node does not own {0}; ask its owner's admin API")]
    NotOwner(String),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Cluster(ClusterError),
}

/// What to do with a request for a tenant.
pub enum Route {
    /// This node owns the tenant: serve, holding the guard until the answer's head is out.
    Serve(Guard),
    /// Another node does: forward the request to its internal listener.
    Forward { node: String, addr: SocketAddr },
    /// Nobody may serve it here now: 503 with Retry-After; the reason is logged.
    Unavailable(String),
}

pub struct Cluster {
    node: Node,
    settings: ClusterSettings,
    table: Table,
    /// The live nodes as last read (for placement and the node count).
    nodes: RwLock<Vec<NodeInfo>>,
    pub relay: Relay,
    pub metrics: ClusterMetrics,
    /// No claim is released while set: a binary upgrade is handing the lease over.
    releases_paused: AtomicBool,
    /// The lease now belongs to the process that replaced this one: never revoke it.
    handed_off: AtomicBool,
}

/// This node's view, for the admin API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    pub node: String,
    pub health: &'static str,
    pub state: &'static str,
    pub owned: Vec<String>,
    pub nodes: Vec<NodeView>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeView {
    pub id: String,
    pub addr: String,
    pub state: &'static str,
    pub capacity: u32,
    pub owned: u32,
}

/// Whether a request forwarded here `from` a node (or from a client: `None`) is to be sent
/// on to `owner`, the node the owner cache names. Not to this node itself, and not back to
/// the node that forwarded it: a node forwards only a tenant it does not own, so a cache that
/// names the sender lags etcd (the sender gave the tenant up a moment ago, in a drain or a
/// move). Sending it back would spend the request's last hop on a node that passes it on
/// again, and answer 503; the claim in etcd tells the truth instead.
fn believe_cached_owner(owner: &str, me: &str, from: Option<&str>) -> bool {
    owner != me && Some(owner) != from
}

fn health_str(h: Health) -> &'static str {
    match h {
        Health::Live => "live",
        Health::Fenced => "fenced",
        Health::Lost => "lost",
    }
}

fn state_str(s: NodeState) -> &'static str {
    match s {
        NodeState::Active => "active",
        NodeState::Draining => "draining",
    }
}

impl Cluster {
    /// Join the cluster `settings` describe (waits out a crashed predecessor's record of the
    /// same node id, at most ttl + a request timeout); or, in a binary upgrade, take over the
    /// replaced process's `lease` and its claims (counted as in use for `grace`, while that
    /// process drains).
    pub async fn join(
        settings: ClusterSettings,
        metrics: ClusterMetrics,
        adopt: Option<(i64, Duration)>,
    ) -> Result<Cluster, ClusterError> {
        let mut cfg = ClusterConfig::new(
            settings.endpoints.clone(),
            settings.prefix.clone(),
            settings.node_id.clone(),
            settings.internal_addr.to_string(),
            settings.capacity,
        );
        cfg.ttl = settings.ttl;
        let node = match adopt {
            Some((lease, _)) => Node::adopt(cfg, lease).await?,
            None => Node::join(cfg).await?,
        };
        metrics.live.set(i64::from(node.is_live()));
        let c = Cluster {
            node,
            settings,
            table: Table::default(),
            nodes: RwLock::new(Vec::new()),
            relay: Relay::default(),
            metrics,
            releases_paused: AtomicBool::new(false),
            handed_off: AtomicBool::new(false),
        };
        if let Some((_, grace)) = adopt {
            for (tenant, revision) in c.node.held() {
                c.table.adopted(&tenant, revision, grace);
            }
            c.metrics.owned.set(c.table.len() as i64);
        }
        c.refresh_nodes().await;
        Ok(c)
    }

    pub fn node_id(&self) -> &str {
        self.node.id()
    }

    pub fn lease_id(&self) -> i64 {
        self.node.lease_id()
    }

    /// Hold (or resume) every release: set before a successor process is started, since it
    /// takes over the claims as they are then.
    pub fn pause_releases(&self, paused: bool) {
        self.releases_paused.store(paused, Ordering::SeqCst);
    }

    /// The successor serves on this node's lease: from now on this process releases
    /// nothing and leaves without revoking the lease.
    pub fn handed_off(&self) {
        self.releases_paused.store(true, Ordering::SeqCst);
        self.handed_off.store(true, Ordering::SeqCst);
    }

    pub fn settings(&self) -> &ClusterSettings {
        &self.settings
    }

    /// Decide where a request for `tenant` goes; `hops`: how many nodes forwarded it so far,
    /// `from`: the node that forwarded it here, if one did.
    pub async fn route(&self, tenant: &str, hops: u8, from: Option<&str>) -> Route {
        let may_forward = hops < hop::MAX_HOPS;
        let deadline = tokio::time::Instant::now() + LEAVE_WAIT;
        loop {
            if !self.node.is_live() {
                if may_forward {
                    if let Some(to) = self.cached_elsewhere(tenant, from) {
                        return to;
                    }
                }
                return Route::Unavailable(format!(
                    "node {} has no live lease ({})",
                    self.node.id(),
                    health_str(self.node.health())
                ));
            }
            match self.table.enter(tenant) {
                Enter::Serve(g) => return Route::Serve(g),
                Enter::Wait(mut rx) => {
                    // Given up right now (a drain, a move, the idle reaper): route again after.
                    if tokio::time::timeout_at(deadline, rx.changed()).await.is_err() {
                        return Route::Unavailable(format!("{tenant} is being moved"));
                    }
                    continue;
                }
                Enter::Absent => {}
            }
            if may_forward {
                if let Some(to) = self.cached_elsewhere(tenant, from) {
                    return to;
                }
                if let Some(to) = self.placed_elsewhere(tenant) {
                    return to;
                }
            }
            match self.node.claim(tenant).await {
                Ok(Claim::Won { revision }) => {
                    self.metrics.claims.with_label_values(&["won"]).inc();
                    match self.table.won(tenant, revision) {
                        Enter::Serve(g) => {
                            self.metrics.owned.set(self.table.len() as i64);
                            return Route::Serve(g);
                        }
                        // A drain began meanwhile: route again.
                        _ => continue,
                    }
                }
                Ok(Claim::OwnedBy { owner, .. }) => {
                    self.metrics.claims.with_label_values(&["lost"]).inc();
                    if owner.node == self.node.id() {
                        // This node's previous lease, not yet expired: nobody may serve it
                        // until etcd deletes that claim.
                        return Route::Unavailable(format!(
                            "{tenant} is still claimed by this node's previous lease"
                        ));
                    }
                    if !may_forward {
                        self.metrics.forwards.with_label_values(&["refused"]).inc();
                        return Route::Unavailable(format!(
                            "{tenant} is owned by {} and this request was forwarded {hops} times already",
                            owner.node
                        ));
                    }
                    return self.forward_to(&owner);
                }
                Err(e) => {
                    self.metrics.claims.with_label_values(&["error"]).inc();
                    return Route::Unavailable(format!("cannot claim {tenant}: {e}"));
                }
            }
        }
    }

    /// Forward a request to `node` at `addr` ([`Relay::forward`]), giving up
    /// with [`RelayError::OwnerGone`] as soon as `node`'s lease is gone: a node paused or cut
    /// off with the request would otherwise hold it for `head_timeout`. (The request is not
    /// sent again: the old owner's worker may have run it.)
    #[allow(clippy::too_many_arguments)]
    pub async fn forward(
        &self,
        node: &str,
        addr: SocketAddr,
        parts: http::request::Parts,
        path: &str,
        body: hyper::body::Incoming,
        hop: &hop::Hop,
        head_timeout: Duration,
    ) -> Result<http::Response<crate::respond::Body>, RelayError> {
        let sent = self.relay.forward(addr, parts, path, body, hop, head_timeout);
        // `node`'s record gone from the node list (read every second): its lease expired.
        // (Not its claim: a node that gives the tenant up in a drain or a move still answers,
        // passing the request on to the new owner.)
        let gone = async {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let nodes = self.nodes.read().unwrap_or_else(|e| e.into_inner());
                if !nodes.is_empty() && !nodes.iter().any(|n| n.id == node) {
                    return;
                }
            }
        };
        tokio::select! {
            r = sent => r,
            () = gone => Err(RelayError::OwnerGone { node: node.to_string() }),
        }
    }

    /// The owner cache names another node, and it is to be believed
    /// ([`believe_cached_owner`]).
    fn cached_elsewhere(&self, tenant: &str, from: Option<&str>) -> Option<Route> {
        let (owner, _) = self.node.cached_owner(tenant)?;
        believe_cached_owner(&owner.node, self.node.id(), from).then(|| self.forward_to(&owner))
    }

    /// Draining, or at capacity: the node rendezvous hashing picks, if it is another.
    fn placed_elsewhere(&self, tenant: &str) -> Option<Route> {
        let draining = self.node.state() == NodeState::Draining;
        if !draining && self.table.len() < self.settings.capacity as usize {
            return None;
        }
        let nodes = self.nodes.read().unwrap_or_else(|e| e.into_inner());
        let others: Vec<NodeInfo> =
            nodes.iter().filter(|n| n.id != self.node.id()).cloned().collect();
        let to = rendezvous(tenant, &others)?;
        Some(self.forward_to(&Owner { node: to.id.clone(), addr: to.addr.clone() }))
    }

    /// Forward to `owner`, if its address is one of the configured peers.
    fn forward_to(&self, owner: &Owner) -> Route {
        match owner.addr.parse::<SocketAddr>() {
            Ok(addr) if self.settings.is_peer(addr.ip()) => {
                Route::Forward { node: owner.node.clone(), addr }
            }
            _ => Route::Unavailable(format!(
                "node {} advertises {}, which is not among the configured `peers`",
                owner.node, owner.addr
            )),
        }
    }

    async fn refresh_nodes(&self) {
        match self.node.nodes().await {
            Ok(n) => {
                self.metrics.nodes.set(n.len() as i64);
                *self.nodes.write().unwrap_or_else(|e| e.into_inner()) = n;
            }
            Err(e) => tracing::debug!("cluster: cannot list the nodes: {e}"),
        }
    }

    /// Follow this node's health until `closing`: stop every pool when fenced (before the
    /// lease can expire and another node start them), forget every claim when the lease is
    /// lost.
    pub async fn follow_health(
        self: Arc<Self>,
        registry: Arc<Registry>,
        closing: impl std::future::Future<Output = ()>,
    ) {
        let mut rx = self.node.watch_health();
        tokio::pin!(closing);
        loop {
            tokio::select! {
                r = rx.changed() => if r.is_err() { return },
                _ = &mut closing => return,
            }
            let h = *rx.borrow_and_update();
            self.metrics.fences.with_label_values(&[health_str(h)]).inc();
            self.metrics.live.set(i64::from(h == Health::Live));
            match h {
                Health::Live => tracing::info!("cluster: live again"),
                Health::Fenced => {
                    tracing::warn!(
                        "cluster: fenced (no lease renewal in time): stopping every pool"
                    );
                    registry.stop_all(true).await;
                }
                Health::Lost => {
                    tracing::warn!("cluster: lease lost: every claim is void");
                    registry.stop_all(true).await;
                    self.table.clear();
                    self.metrics.owned.set(0);
                }
            }
        }
    }

    /// Every [`TICK`] until `closing`: read the node list, and give up the claims of tenants
    /// unused for their `idle_timeout` (the pool stopped first, then the claim released).
    pub async fn reap(
        self: Arc<Self>,
        registry: Arc<Registry>,
        idle: impl Fn(&str) -> Duration,
        closing: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(closing);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = &mut closing => return,
            }
            self.refresh_nodes().await;
            if !self.node.is_live() || self.releases_paused.load(Ordering::SeqCst) {
                continue;
            }
            for tenant in self.table.owned() {
                let busy = registry
                    .pools()
                    .iter()
                    .any(|p| p.spec.name == tenant && (p.in_flight() > 0 || p.queued() > 0));
                if busy {
                    continue;
                }
                if let Some(rev) = self.table.leave_if_idle(&tenant, idle(&tenant)) {
                    self.give_up(&registry, &tenant, rev, "idle").await;
                }
            }
        }
    }

    /// Stop `tenant`'s pool and release its claim (the table entry is leaving).
    async fn give_up(&self, registry: &Registry, tenant: &str, revision: i64, cause: &str) {
        let pool = registry.pools().into_iter().find(|p| p.spec.name == tenant);
        registry.remove(tenant);
        if let Some(p) = pool {
            p.wait_stopped().await;
        }
        match self.node.release(tenant, revision).await {
            Ok(_) => {
                tracing::info!(tenant, cause, "cluster: pool stopped, claim released");
                self.metrics.releases.with_label_values(&[cause]).inc();
                self.table.forget(tenant);
            }
            Err(e) => {
                // The pool is stopped; the claim stays (a later request restarts it here).
                tracing::warn!(tenant, "cluster: cannot release the claim: {e}");
                self.table.stay(tenant);
            }
        }
        self.metrics.owned.set(self.table.len() as i64);
    }

    /// Mark this node draining and move its tenants away one by one: new requests for a
    /// tenant wait, those in flight finish, its pool stops, its claim is released, and the
    /// waiting requests go to the node rendezvous hashing picks. Returns how many went.
    pub async fn drain(&self, registry: &Registry) -> Result<usize, ClusterError> {
        if self.handed_off.load(Ordering::SeqCst) {
            // The claims belong to the process that replaced this one.
            return Ok(0);
        }
        self.node.set_state(NodeState::Draining).await?;
        self.refresh_nodes().await;
        let mut n = 0;
        // A request forwarded here by a node whose owner cache lagged may claim a tenant
        // again during the drain: a few passes catch those.
        for _ in 0..5 {
            let owned = self.table.owned();
            if owned.is_empty() {
                break;
            }
            for tenant in owned {
                let Some(rev) = self.table.leave(&tenant) else { continue };
                let until = tokio::time::Instant::now() + DRAIN_IN_FLIGHT;
                while self.table.in_flight(&tenant) > 0 && tokio::time::Instant::now() < until {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                self.give_up(registry, &tenant, rev, "drain").await;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Give `tenant`, owned here, to node `to`: new requests for it wait, those in flight
    /// finish, its pool stops, and its claim passes to `to` in one etcd transaction; the
    /// waiting requests are then forwarded there.
    pub async fn move_tenant(
        &self,
        registry: &Registry,
        tenant: &str,
        to: &str,
    ) -> Result<(), MoveError> {
        if to == self.node.id() {
            return Err(MoveError::Refused(format!("{tenant} is already on {to}")));
        }
        let nodes = self.nodes.read().unwrap_or_else(|e| e.into_inner()).clone();
        if !nodes.iter().any(|n| n.id == to && n.state == NodeState::Active) {
            return Err(MoveError::Refused(format!("{to} is not a live, active node")));
        }
        let Some(revision) = self.table.leave(tenant) else {
            return Err(MoveError::NotOwner(tenant.to_string()));
        };
        let until = tokio::time::Instant::now() + DRAIN_IN_FLIGHT;
        while self.table.in_flight(tenant) > 0 && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let pool = registry.pools().into_iter().find(|p| p.spec.name == tenant);
        registry.remove(tenant);
        if let Some(p) = pool {
            p.wait_stopped().await;
        }
        let moved = self.node.hand_over(tenant, revision, to).await;
        let result = match moved {
            Ok(true) => {
                tracing::info!(tenant, to, "cluster: pool stopped, tenant handed over");
                self.metrics.releases.with_label_values(&["move"]).inc();
                self.table.forget(tenant);
                Ok(())
            }
            Ok(false) => {
                // The target left meanwhile: keep the tenant (its pool restarts on demand).
                self.table.stay(tenant);
                Err(MoveError::Refused(format!(
                    "{to} left or the claim changed; {tenant} stays here"
                )))
            }
            Err(e) => {
                self.table.stay(tenant);
                Err(MoveError::Cluster(e))
            }
        };
        self.metrics.owned.set(self.table.len() as i64);
        result
    }

    /// Back to taking tenants after a drain.
    pub async fn activate(&self) -> Result<(), ClusterError> {
        self.node.set_state(NodeState::Active).await
    }

    /// Stop the workers first ([`Registry::stop_all`]), then revoke the lease: every claim of
    /// this node goes at once.
    pub async fn leave(&self) {
        self.table.clear();
        if self.handed_off.load(Ordering::SeqCst) {
            // The successor renews the lease and holds the claims.
            self.node.hand_off();
            return;
        }
        match self.node.leave().await {
            Ok(()) => {}
            Err(e) => tracing::warn!("cluster: leaving failed (the lease expires by itself): {e}"),
        }
        self.metrics.live.set(0);
    }

    pub fn status(&self) -> Status {
        let nodes = self.nodes.read().unwrap_or_else(|e| e.into_inner());
        Status {
            node: self.node.id().to_string(),
            health: health_str(self.node.health()),
            state: state_str(self.node.state()),
            owned: self.table.owned(),
            nodes: nodes
                .iter()
                .map(|n| NodeView {
                    id: n.id.clone(),
                    addr: n.addr.clone(),
                    state: state_str(n.state),
                    capacity: n.capacity,
                    owned: n.owned,
                })
                .collect(),
        }
    }

    /// The owner of `tenant` as etcd has it now.
    pub async fn owner(&self, tenant: &str) -> Result<Option<Owner>, ClusterError> {
        Ok(self.node.owner(tenant).await?.map(|(o, _)| o))
    }

    /// Reserve `name` cluster-wide for a signup: `Ok(None)` if the name is taken, else the
    /// record written (to take it back with if the signup fails). A record older than
    /// `stale_after` while no site of that name `exists` is the remains of a signup that never
    /// finished: it is replaced (only if unchanged since read).
    pub async fn reserve_tenant(
        &self,
        name: &str,
        stale_after: Duration,
        exists: bool,
    ) -> Result<Option<Vec<u8>>, ClusterError> {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let record = serde_json::to_vec(&serde_json::json!({
            "node": self.node.id(),
            "created": now.as_secs(),
            // Tells this signup's record from any other's.
            "nonce": format!("{}-{}", std::process::id(), now.as_nanos()),
        }))
        .unwrap_or_default();
        if self.node.create_tenant(name, &record).await? {
            return Ok(Some(record));
        }
        let Some(old) = self.node.tenant(name).await? else {
            // Deleted meanwhile: one more try.
            return Ok(self.node.create_tenant(name, &record).await?.then_some(record));
        };
        let created = serde_json::from_slice::<serde_json::Value>(&old)
            .ok()
            .and_then(|v| v.get("created").and_then(serde_json::Value::as_u64));
        let stale =
            created.is_some_and(|c| now.as_secs() > c.saturating_add(stale_after.as_secs()));
        if exists || !stale {
            return Ok(None);
        }
        tracing::warn!(
            tenant = name,
            "cluster: replacing the record of a signup that never finished"
        );
        if self.node.delete_tenant(name, Some(&old)).await? {
            return Ok(self.node.create_tenant(name, &record).await?.then_some(record));
        }
        Ok(None)
    }

    /// Take back a reservation ([`Cluster::reserve_tenant`]) whose signup failed, or with
    /// `None`, the record of a deleted tenant.
    pub async fn unreserve_tenant(&self, name: &str, record: Option<&[u8]>) {
        if let Err(e) = self.node.delete_tenant(name, record).await {
            tracing::warn!(tenant = name, "cluster: cannot delete the tenant's record: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::believe_cached_owner;

    #[test]
    fn a_forwarded_request_is_not_sent_back_to_its_sender_on_the_caches_word() {
        // The drain's 503: n1 gave d0 up and passed a request to n2, whose cache still named
        // n1; n2 sent it back, and n1, out of hops, refused it.
        assert!(!believe_cached_owner("n1", "n2", Some("n1")));
        assert!(believe_cached_owner("n3", "n2", Some("n1")));
        assert!(believe_cached_owner("n1", "n2", None));
        assert!(!believe_cached_owner("n2", "n2", None));
        assert!(!believe_cached_owner("n2", "n2", Some("n1")));
    }
}

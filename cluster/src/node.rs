//! One node's membership: its lease, the keep-alive and watchdog tasks, and the operations on
//! tenants (claim, release, create) that the router calls.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, LeaseKeepAliveStream, LeaseKeeper,
    PutOptions, Txn, TxnOp, TxnOpResponse,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cache::{self, OwnerCache};
use crate::config::{check_node_id, check_tenant, ClusterConfig};
use crate::error::{from_etcd, timed_out, ClusterError};
use crate::fence::{after_check, after_renewal, Clock, Fence, Health};
use crate::keys::{decode, encode, name_under, Keys, NodeInfo, NodeRecord, NodeState, Owner};

/// The outcome of a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This node owns the tenant (now, or already did). `revision` is the owner key's
    /// modification revision: the token `release` needs.
    Won { revision: i64 },
    /// Another node owns it: forward there.
    OwnedBy { owner: Owner, revision: i64 },
}

/// A joined node. Dropping it stops its tasks (the lease then expires after the ttl);
/// `leave` revokes the lease at once.
pub struct Node {
    inner: Arc<Inner>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

struct Inner {
    cfg: ClusterConfig,
    /// For error messages.
    endpoints: String,
    keys: Keys,
    fence: Fence,
    clock: Clock,
    client: Client,
    health: watch::Sender<Health>,
    /// Send time (on `clock`, in ns) of the last renewal etcd confirmed.
    last_ok: AtomicU64,
    /// The current lease id (0 before the first join).
    lease: AtomicI64,
    state: Mutex<NodeState>,
    /// Tenants this node won under its current lease, with their revisions.
    held: Mutex<HashMap<String, i64>>,
    suspended: AtomicBool,
    stop: watch::Sender<bool>,
    owners: Arc<OwnerCache>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

enum Renewal {
    Renewed,
    Gone,
}

impl Node {
    /// Connects, grants a lease, registers `nodes/<id>` on it (only if no live process holds
    /// that id: a crashed predecessor's record is waited out, at most ttl + request timeout)
    /// and starts the keep-alive and watchdog tasks. Needs a tokio runtime.
    pub async fn join(cfg: ClusterConfig) -> Result<Node, ClusterError> {
        let inner = Inner::connect(cfg).await?;
        let waited = inner.cfg.ttl + inner.cfg.request_timeout;
        let until = tokio::time::Instant::now() + waited;
        loop {
            match inner.register().await {
                Ok(()) => break,
                Err(ClusterError::DuplicateNode { .. }) if tokio::time::Instant::now() < until => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(ClusterError::DuplicateNode { id, .. }) => {
                    return Err(ClusterError::DuplicateNode { id, waited })
                }
                Err(e) => return Err(e),
            }
        }
        tracing::info!(node = %inner.cfg.node_id, lease = inner.lease_id(), "cluster: joined");
        Ok(Node::start(inner))
    }

    /// Takes over the membership of the process this one replaces (a binary upgrade): the
    /// same node id on the same `lease`, so the node's record and its claims stay where they
    /// are (`held()` lists them). Refused unless `nodes/<id>` is on that lease and the lease is alive. Both
    /// processes then renew it; the old one must neither release nor revoke anything.
    pub async fn adopt(cfg: ClusterConfig, lease: i64) -> Result<Node, ClusterError> {
        let inner = Inner::connect(cfg).await?;
        inner.adopt(lease).await?;
        tracing::info!(node = %inner.cfg.node_id, lease, "cluster: took over the lease");
        Ok(Node::start(inner))
    }

    fn start(inner: Arc<Inner>) -> Node {
        let tasks = vec![
            tokio::spawn(keepalive(inner.clone(), inner.stop.subscribe())),
            tokio::spawn(watchdog(inner.clone(), inner.stop.subscribe())),
            tokio::spawn(cache::run(
                inner.client.clone(),
                inner.keys.owners(),
                inner.cfg.request_timeout,
                inner.owners.clone(),
                inner.stop.subscribe(),
            )),
        ];
        Node { inner, tasks: Mutex::new(tasks) }
    }

    /// Stops this process's tasks without touching etcd: the lease, the record and the claims
    /// stay for the process that took them over ([`Node::adopt`]).
    pub fn hand_off(&self) {
        let _ = self.inner.stop.send(true);
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
        self.inner.health.send_replace(Health::Lost);
        lock(&self.inner.held).clear();
    }

    pub fn id(&self) -> &str {
        &self.inner.cfg.node_id
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.inner.cfg
    }

    pub fn fence(&self) -> Fence {
        self.inner.fence
    }

    /// The current lease (changes when the node joins again after `Lost`).
    pub fn lease_id(&self) -> i64 {
        self.inner.lease_id()
    }

    /// For the dispatch path, per request: true only while the health is `Live` *and* the
    /// last confirmed renewal is recent enough by the clock, so a process that was paused
    /// (SIGSTOP, a suspended host) answers false at once, before its tasks have run. No I/O.
    pub fn is_live(&self) -> bool {
        self.inner.is_live()
    }

    /// The health now.
    pub fn health(&self) -> Health {
        *self.inner.health.borrow()
    }

    /// Changes of health, for the task that stops pools on `Fenced` and forgets claims on
    /// `Lost`.
    pub fn watch_health(&self) -> watch::Receiver<Health> {
        self.inner.health.subscribe()
    }

    /// Claims `tenant` for this node: one transaction that creates the owner key on this
    /// node's lease only if it is absent, or else reads it. Refused unless live.
    pub async fn claim(&self, tenant: &str) -> Result<Claim, ClusterError> {
        check_tenant(tenant)?;
        let inner = &self.inner;
        if !inner.is_live() {
            return Err(ClusterError::NotLive(inner.health_now()));
        }
        let lease = inner.lease_id();
        let key = inner.keys.owner(tenant);
        let me = Owner { node: inner.cfg.node_id.clone(), addr: inner.cfg.internal_addr.clone() };
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.clone(),
                encode(&me),
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else([TxnOp::get(key.clone(), None)]);
        let resp = inner.txn(txn).await?;
        if resp.succeeded() {
            let revision =
                resp.header().map(|h| h.revision()).ok_or_else(|| corrupt(&key, "no header"))?;
            // The lease may have been lost while the request was in flight: then the put would
            // have failed, so success means `lease` was live at `revision`.
            lock(&inner.held).insert(tenant.to_string(), revision);
            return Ok(Claim::Won { revision });
        }
        let kv = resp
            .op_responses()
            .into_iter()
            .find_map(|r| match r {
                TxnOpResponse::Get(g) => g.kvs().first().cloned(),
                _ => None,
            })
            .ok_or_else(|| corrupt(&key, "compare failed but the key is absent"))?;
        let owner: Owner = decode(kv.key(), kv.value())?;
        if owner.node == inner.cfg.node_id && kv.lease() == lease {
            let revision = kv.mod_revision();
            lock(&inner.held).insert(tenant.to_string(), revision);
            return Ok(Claim::Won { revision });
        }
        Ok(Claim::OwnedBy { owner, revision: kv.mod_revision() })
    }

    /// Who owns `tenant` now, with the owner key's revision.
    pub async fn owner(&self, tenant: &str) -> Result<Option<(Owner, i64)>, ClusterError> {
        check_tenant(tenant)?;
        let key = self.inner.keys.owner(tenant);
        let resp = self.inner.get(key, None).await?;
        match resp.kvs().first() {
            Some(kv) => Ok(Some((decode(kv.key(), kv.value())?, kv.mod_revision()))),
            None => Ok(None),
        }
    }

    /// The owner of `tenant` as the owner cache (a watch on `owners/`) has it: no I/O, for the
    /// per-request forwarding decision. A hint that may lag etcd a little; `None` also while
    /// the cache is not in sync (then ask `owner` or `claim`).
    pub fn cached_owner(&self, tenant: &str) -> Option<(Owner, i64)> {
        self.inner.owners.get(tenant)
    }

    /// Whether the owner cache follows etcd now.
    pub fn owner_cache_synced(&self) -> bool {
        self.inner.owners.synced()
    }

    /// Gives `tenant` up, only if its owner key is still the one written at `revision` (so a
    /// late release never deletes a later claim, this node's or another's). True if deleted.
    /// Stop the tenant's workers first: once this returns true another node may start them.
    pub async fn release(&self, tenant: &str, revision: i64) -> Result<bool, ClusterError> {
        check_tenant(tenant)?;
        let inner = &self.inner;
        let key = inner.keys.owner(tenant);
        let txn = Txn::new()
            .when([Compare::mod_revision(key.clone(), CompareOp::Equal, revision)])
            .and_then([TxnOp::delete(key, None)]);
        let resp = inner.txn(txn).await?;
        let mut held = lock(&inner.held);
        if held.get(tenant) == Some(&revision) {
            held.remove(tenant);
        }
        Ok(resp.succeeded())
    }

    /// Gives `tenant` to node `to` directly: its owner key, if still the one written at
    /// `revision`, is rewritten to name `to` and put on `to`'s lease, in one transaction (so
    /// there is no moment where a third node could claim it). `Ok(false)`: the key changed
    /// meanwhile, or `to` is not a live node. Stop the tenant's workers first.
    pub async fn hand_over(
        &self,
        tenant: &str,
        revision: i64,
        to: &str,
    ) -> Result<bool, ClusterError> {
        check_tenant(tenant)?;
        check_node_id(to)?;
        let inner = &self.inner;
        let node_key = inner.keys.node(to);
        let resp = inner.get(node_key.clone(), None).await?;
        let Some(kv) = resp.kvs().first() else { return Ok(false) };
        let record: NodeRecord = decode(kv.key(), kv.value())?;
        let (target_lease, target_rev) = (kv.lease(), kv.mod_revision());
        let key = inner.keys.owner(tenant);
        let owner = Owner { node: to.to_string(), addr: record.addr };
        let txn = Txn::new()
            .when([
                Compare::mod_revision(key.clone(), CompareOp::Equal, revision),
                // The target's record (and so its lease) is still the one just read.
                Compare::mod_revision(node_key, CompareOp::Equal, target_rev),
            ])
            .and_then([TxnOp::put(
                key,
                encode(&owner),
                Some(PutOptions::new().with_lease(target_lease)),
            )]);
        let resp = inner.txn(txn).await?;
        let mut held = lock(&inner.held);
        if held.get(tenant) == Some(&revision) {
            held.remove(tenant);
        }
        Ok(resp.succeeded())
    }

    /// Tenants this node won under its current lease, with their revisions (a snapshot).
    pub fn held(&self) -> Vec<(String, i64)> {
        let mut v: Vec<_> = lock(&self.inner.held).iter().map(|(t, r)| (t.clone(), *r)).collect();
        v.sort();
        v
    }

    /// Releases every tenant this node holds, one by one (for a drain: set `Draining` first;
    /// the router stops each tenant's pool before its release, so it would rather walk
    /// `held()` itself and call `release`). Returns how many were released.
    pub async fn release_all(&self) -> Result<usize, ClusterError> {
        let mut n = 0;
        for (tenant, revision) in self.held() {
            if self.release(&tenant, revision).await? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Marks this node active or draining (a draining node is never chosen by `rendezvous`).
    /// Kept across a re-join.
    pub async fn set_state(&self, state: NodeState) -> Result<(), ClusterError> {
        *lock(&self.inner.state) = state;
        self.inner.put_record().await
    }

    pub fn state(&self) -> NodeState {
        *lock(&self.inner.state)
    }

    /// Every live node (each record lives on its node's lease), with how many tenants each
    /// owns, read in one transaction.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, ClusterError> {
        let inner = &self.inner;
        let (nodes_dir, owners_dir) = (inner.keys.nodes(), inner.keys.owners());
        let txn = Txn::new().and_then([
            TxnOp::get(nodes_dir.clone(), Some(GetOptions::new().with_prefix())),
            TxnOp::get(owners_dir.clone(), Some(GetOptions::new().with_prefix())),
        ]);
        let resp = inner.txn(txn).await?;
        let mut gets = resp.op_responses().into_iter().filter_map(|r| match r {
            TxnOpResponse::Get(g) => Some(g),
            _ => None,
        });
        let (Some(nodes), Some(owners)) = (gets.next(), gets.next()) else {
            return Err(corrupt(&nodes_dir, "transaction answered without its two reads"));
        };
        let mut count: HashMap<String, u32> = HashMap::new();
        for kv in owners.kvs() {
            match decode::<Owner>(kv.key(), kv.value()) {
                Ok(o) => *count.entry(o.node).or_default() += 1,
                Err(e) => tracing::warn!("cluster: {e}"),
            }
        }
        let mut out = Vec::new();
        for kv in nodes.kvs() {
            let id = name_under(&nodes_dir, kv.key())?.to_string();
            let r: NodeRecord = decode(kv.key(), kv.value())?;
            let owned = count.get(&id).copied().unwrap_or(0);
            out.push(NodeInfo { id, addr: r.addr, state: r.state, capacity: r.capacity, owned });
        }
        Ok(out)
    }

    /// Creates the persistent record `tenants/<name>` only if it is absent: true if this call
    /// created it. Signup names are unique across the cluster through this. (A record that
    /// holds exactly `record` already counts as this call's: the call may have been made
    /// twice, its first answer lost; records name their signup, so two never match.)
    pub async fn create_tenant(&self, name: &str, record: &[u8]) -> Result<bool, ClusterError> {
        check_tenant(name)?;
        let key = self.inner.keys.tenant(name);
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.clone(), record.to_vec(), None)])
            .or_else([TxnOp::get(key, None)]);
        let resp = self.inner.txn(txn).await?;
        if resp.succeeded() {
            return Ok(true);
        }
        let held = resp.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.value().to_vec()),
            _ => None,
        });
        Ok(held.as_deref() == Some(record))
    }

    /// Deletes `tenants/<name>`: only if it still holds `record` (a signup that failed after
    /// creating it), or whatever it holds with `None` (the tenant was deleted). True if gone.
    pub async fn delete_tenant(
        &self,
        name: &str,
        record: Option<&[u8]>,
    ) -> Result<bool, ClusterError> {
        check_tenant(name)?;
        let key = self.inner.keys.tenant(name);
        let when: Vec<Compare> = match record {
            Some(r) => vec![Compare::value(key.clone(), CompareOp::Equal, r.to_vec())],
            None => Vec::new(),
        };
        let txn = Txn::new().when(when).and_then([TxnOp::delete(key, None)]);
        Ok(self.inner.txn(txn).await?.succeeded())
    }

    /// The record of `tenants/<name>`.
    pub async fn tenant(&self, name: &str) -> Result<Option<Vec<u8>>, ClusterError> {
        check_tenant(name)?;
        let key = self.inner.keys.tenant(name);
        let resp = self.inner.get(key, None).await?;
        Ok(resp.kvs().first().map(|kv| kv.value().to_vec()))
    }

    /// Leaves the cluster: stops the tasks and revokes the lease, which deletes `nodes/<id>`
    /// and every owner key of this node at once. Stop the workers first.
    /// The node is of no further use after it, whatever the outcome.
    pub async fn leave(&self) -> Result<(), ClusterError> {
        let _ = self.inner.stop.send(true);
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
        self.inner.health.send_replace(Health::Lost);
        lock(&self.inner.held).clear();
        let lease = self.inner.lease_id();
        self.inner.lease_revoke(lease).await?;
        tracing::info!(node = %self.inner.cfg.node_id, "cluster: left");
        Ok(())
    }

    /// Test hook: while `true`, the keep-alive task sends no renewal (as if the network to etcd
    /// were cut); the watchdog still runs and fences the node.
    #[doc(hidden)]
    pub fn suspend_keepalive(&self, suspended: bool) {
        self.inner.suspended.store(suspended, Ordering::SeqCst);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.inner.stop.send(true);
        for t in lock(&self.tasks).iter() {
            t.abort();
        }
    }
}

/// The first pause before an etcd call that never reached a member is made again; doubled
/// each time up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(20);
const RETRY_MAX: Duration = Duration::from_millis(200);

/// Whether `e` says the call never reached an etcd member (the connection to the endpoint
/// the client picked failed), so that making it again cannot apply it twice. etcd's own
/// `Unavailable` answers ("etcdserver: leader changed", "request timed out") come from a
/// member that may have applied the call, and are not retried here.
fn never_reached(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_) => true,
        // UNAVAILABLE from the client's own transport, not from a member.
        etcd_client::Error::GRpcStatus(s) => {
            s.code() as i32 == 14 && !s.message().starts_with("etcdserver:")
        }
        _ => false,
    }
}

fn corrupt(key: &str, detail: &str) -> ClusterError {
    ClusterError::Corrupt { key: key.to_string(), detail: detail.to_string() }
}

impl Inner {
    async fn connect(cfg: ClusterConfig) -> Result<Arc<Inner>, ClusterError> {
        cfg.validate()?;
        let endpoints = cfg.endpoints.join(",");
        let opts = ConnectOptions::new()
            .with_connect_timeout(cfg.connect_timeout)
            .with_timeout(cfg.request_timeout)
            // HTTP/2 pings, so a dead connection is noticed without waiting for TCP.
            .with_keep_alive(Duration::from_secs(2), cfg.request_timeout)
            .with_keep_alive_while_idle(true);
        let connect = Client::connect(cfg.endpoints.clone(), Some(opts));
        let client = match tokio::time::timeout(cfg.connect_timeout + cfg.request_timeout, connect)
            .await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(from_etcd(&endpoints, e)),
            Err(_) => return Err(timed_out(&endpoints, cfg.connect_timeout + cfg.request_timeout)),
        };
        let (health, _) = watch::channel(Health::Lost);
        let (stop, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            keys: Keys::new(&cfg.prefix),
            fence: Fence::new(cfg.ttl),
            clock: Clock::new(),
            endpoints,
            client,
            health,
            last_ok: AtomicU64::new(0),
            lease: AtomicI64::new(0),
            state: Mutex::new(NodeState::Active),
            held: Mutex::new(HashMap::new()),
            suspended: AtomicBool::new(false),
            stop,
            owners: Arc::new(OwnerCache::default()),
            cfg,
        });
        Ok(inner)
    }

    /// [`Node::adopt`]'s check: the node's record is on `lease`, which one renewal (whose
    /// send time starts the fence window, as any renewal's) shows alive.
    async fn adopt(&self, lease: i64) -> Result<(), ClusterError> {
        let refused = || {
            ClusterError::Config(format!(
                "cannot take over lease {lease:x} of node {}: it is gone or not this node's",
                self.cfg.node_id
            ))
        };
        let key = self.keys.node(&self.cfg.node_id);
        let record = self.get(key.clone(), None).await?;
        if record.kvs().first().is_none_or(|kv| kv.lease() != lease) {
            return Err(refused());
        }
        let sent = self.clock.now();
        let mut stream = None;
        if let Renewal::Gone = self.once(renew(&self.client, &mut stream, lease)).await? {
            return Err(refused());
        }
        // The claims made under the lease are this process's too.
        let owners = self.keys.owners();
        let held = self.get(owners.clone(), Some(GetOptions::new().with_prefix())).await?;
        {
            let mut mine = lock(&self.held);
            for kv in held.kvs().iter().filter(|kv| kv.lease() == lease) {
                mine.insert(name_under(&owners, kv.key())?.to_string(), kv.mod_revision());
            }
        }
        self.took(lease, sent);
        Ok(())
    }

    fn lease_id(&self) -> i64 {
        self.lease.load(Ordering::SeqCst)
    }

    fn last_ok(&self) -> Duration {
        Duration::from_nanos(self.last_ok.load(Ordering::SeqCst))
    }

    fn is_live(&self) -> bool {
        *self.health.borrow() == Health::Live
            && self.fence.live_at(self.last_ok(), self.clock.now())
    }

    /// The health with the clock applied (what `is_live` sees), for error messages.
    fn health_now(&self) -> Health {
        after_check(&self.fence, *self.health.borrow(), self.last_ok(), self.clock.now())
    }

    /// This process serves on `lease` now, renewed (as far as it knows) at `sent`.
    fn took(&self, lease: i64, sent: Duration) {
        self.lease.store(lease, Ordering::SeqCst);
        self.last_ok.store(nanos(sent), Ordering::SeqCst);
        let now = self.clock.now();
        self.health.send_replace(if self.fence.live_at(sent, now) {
            Health::Live
        } else {
            Health::Fenced
        });
    }

    /// One call, bounded by `request_timeout`, not repeated (for a call that holds state,
    /// such as a keep-alive stream).
    async fn once<T>(
        &self,
        f: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, ClusterError> {
        match tokio::time::timeout(self.cfg.request_timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(from_etcd(&self.endpoints, e)),
            Err(_) => Err(timed_out(&self.endpoints, self.cfg.request_timeout)),
        }
    }

    /// A call `call(client)`, within `request_timeout` in all, made again while it fails
    /// without having reached a member ([`never_reached`]) and another configured member may
    /// answer: the client balances over every endpoint, and with one member of three down a
    /// share of the calls would otherwise fail with that member's connection error although
    /// the cluster has quorum.
    async fn rpc<T, F, Fut>(&self, mut call: F) -> Result<T, ClusterError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = tokio::time::Instant::now() + self.cfg.request_timeout;
        let mut pause = RETRY_FIRST;
        loop {
            match tokio::time::timeout_at(deadline, call(self.client.clone())).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e))
                    if self.cfg.endpoints.len() > 1
                        && never_reached(&e)
                        && tokio::time::Instant::now() + pause < deadline =>
                {
                    tracing::debug!(
                        "cluster: etcd call failed before reaching a member, again: {e}"
                    );
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RETRY_MAX);
                }
                Ok(Err(e)) => return Err(from_etcd(&self.endpoints, e)),
                Err(_) => return Err(timed_out(&self.endpoints, self.cfg.request_timeout)),
            }
        }
    }

    async fn txn(&self, txn: Txn) -> Result<etcd_client::TxnResponse, ClusterError> {
        self.rpc(|mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await
    }

    async fn get(
        &self,
        key: String,
        opts: Option<GetOptions>,
    ) -> Result<etcd_client::GetResponse, ClusterError> {
        self.rpc(|mut c| {
            let (key, opts) = (key.clone(), opts.clone());
            async move { c.get(key, opts).await }
        })
        .await
    }

    async fn lease_grant(&self, ttl: i64) -> Result<etcd_client::LeaseGrantResponse, ClusterError> {
        self.rpc(|mut c| async move { c.lease_grant(ttl, None).await }).await
    }

    async fn lease_revoke(
        &self,
        lease: i64,
    ) -> Result<etcd_client::LeaseRevokeResponse, ClusterError> {
        self.rpc(|mut c| async move { c.lease_revoke(lease).await }).await
    }

    fn record(&self) -> Vec<u8> {
        encode(&NodeRecord {
            addr: self.cfg.internal_addr.clone(),
            state: *lock(&self.state),
            capacity: self.cfg.capacity,
        })
    }

    /// A new lease and `nodes/<id>` on it, created only if absent. On success the node is
    /// `Live` with no claims.
    async fn register(&self) -> Result<(), ClusterError> {
        let sent = self.clock.now();
        let ttl = i64::try_from(self.cfg.ttl.as_secs()).unwrap_or(i64::MAX);
        let lease = self.lease_grant(ttl).await?.id();
        let key = self.keys.node(&self.cfg.node_id);
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, self.record(), Some(PutOptions::new().with_lease(lease)))]);
        let created = match self.txn(txn).await {
            Ok(r) => r.succeeded(),
            Err(e) => {
                let _ = self.lease_revoke(lease).await;
                return Err(e);
            }
        };
        if !created {
            let _ = self.lease_revoke(lease).await;
            return Err(ClusterError::DuplicateNode {
                id: self.cfg.node_id.clone(),
                waited: Duration::ZERO,
            });
        }
        lock(&self.held).clear();
        self.took(lease, sent);
        Ok(())
    }

    /// Rewrites `nodes/<id>` (on the current lease, only if the record is still on it).
    async fn put_record(&self) -> Result<(), ClusterError> {
        let lease = self.lease_id();
        let key = self.keys.node(&self.cfg.node_id);
        let txn = Txn::new()
            .when([Compare::lease(key.clone(), CompareOp::Equal, lease)])
            .and_then([TxnOp::put(key, self.record(), Some(PutOptions::new().with_lease(lease)))]);
        if self.txn(txn).await?.succeeded() {
            Ok(())
        } else {
            Err(ClusterError::NotLive(Health::Lost))
        }
    }

    fn renewed(&self, sent: Duration) {
        let now = self.clock.now();
        self.health.send_if_modified(|h| {
            if *h != Health::Lost {
                let prev = self.last_ok();
                self.last_ok.store(nanos(sent.max(prev)), Ordering::SeqCst);
            }
            let next = after_renewal(&self.fence, *h, self.last_ok(), now);
            let changed = next != *h;
            if changed {
                tracing::info!(node = %self.cfg.node_id, "cluster: lease renewed, {next} again");
            }
            *h = next;
            changed
        });
    }

    fn lost(&self) {
        lock(&self.held).clear();
        let was = self.health.send_replace(Health::Lost);
        if was != Health::Lost {
            tracing::error!(
                node = %self.cfg.node_id,
                lease = self.lease_id(),
                "cluster: etcd says this node's lease is gone: every claim is void; joining again"
            );
        }
    }

    fn check(&self) {
        let now = self.clock.now();
        self.health.send_if_modified(|h| {
            let next = after_check(&self.fence, *h, self.last_ok(), now);
            let changed = next != *h;
            if changed {
                tracing::error!(
                    node = %self.cfg.node_id,
                    "cluster: no lease renewal for {:?}: fenced (stop serving this node's tenants)",
                    self.fence.window()
                );
            }
            *h = next;
            changed
        });
    }
}

/// One renewal: on the open keep-alive stream, or a new one (opening it renews once).
async fn renew(
    client: &Client,
    slot: &mut Option<(LeaseKeeper, LeaseKeepAliveStream)>,
    lease: i64,
) -> Result<Renewal, etcd_client::Error> {
    let Some((keeper, stream)) = slot.as_mut() else {
        let mut c = client.clone();
        return match c.lease_keep_alive(lease).await {
            Ok(pair) => {
                *slot = Some(pair);
                Ok(Renewal::Renewed)
            }
            Err(etcd_client::Error::LeaseKeepAliveError(m)) if m.contains("not found") => {
                Ok(Renewal::Gone)
            }
            Err(e) => Err(e),
        };
    };
    keeper.keep_alive().await?;
    match stream.message().await? {
        Some(r) if r.ttl() > 0 => Ok(Renewal::Renewed),
        Some(_) => Ok(Renewal::Gone),
        None => Err(etcd_client::Error::LeaseKeepAliveError("keep-alive stream closed".into())),
    }
}

/// Renews the lease every `fence.interval()`; after `Lost`, joins again.
async fn keepalive(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
    let mut slot = None;
    let mut failing = false;
    let interval = inner.fence.interval();
    loop {
        // After a failed renewal, again soon: the fence window is about two intervals, and
        // waiting a whole one after a failure (one etcd member of several down, the
        // connection to it refused) could fence a node the cluster would have renewed.
        let wait = if failing { RETRY_MAX } else { interval };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            r = stop.changed() => if r.is_err() || *stop.borrow() { return },
        }
        if inner.suspended.load(Ordering::SeqCst) {
            slot = None;
            continue;
        }
        if *inner.health.borrow() == Health::Lost {
            slot = None;
            match inner.register().await {
                Ok(()) => {
                    tracing::info!(node = %inner.cfg.node_id, lease = inner.lease_id(), "cluster: joined again with a new lease");
                }
                Err(e) => {
                    tracing::warn!(node = %inner.cfg.node_id, "cluster: joining again failed: {e}");
                }
            }
            continue;
        }
        let sent = inner.clock.now();
        let lease = inner.lease_id();
        let bound = inner.cfg.request_timeout.min(interval);
        match tokio::time::timeout(bound, renew(&inner.client, &mut slot, lease)).await {
            Ok(Ok(Renewal::Renewed)) => {
                failing = false;
                inner.renewed(sent);
            }
            Ok(Ok(Renewal::Gone)) => {
                slot = None;
                inner.lost();
            }
            Ok(Err(e)) => {
                slot = None;
                if !failing {
                    tracing::warn!(node = %inner.cfg.node_id, "cluster: lease renewal failed: {}", from_etcd(&inner.endpoints, e));
                }
                failing = true;
                inner.check();
            }
            Err(_) => {
                slot = None;
                if !failing {
                    tracing::warn!(node = %inner.cfg.node_id, "cluster: lease renewal got no answer within {bound:?}");
                }
                failing = true;
                inner.check();
            }
        }
    }
}

/// Fences the node on time, whatever the keep-alive task is waiting for: wakes at the fence
/// deadline of the last confirmed renewal (re-read each time, since renewals move it).
async fn watchdog(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
    loop {
        let now = inner.clock.now();
        let deadline = inner.fence.deadline(inner.last_ok());
        // While live, wake at the deadline; otherwise (fenced, lost) a renewal or a join will
        // move it, and the window is at least two intervals, so looking once per interval is
        // soon enough.
        let wait = if *inner.health.borrow() == Health::Live {
            deadline.saturating_sub(now).clamp(Duration::from_millis(1), inner.fence.interval())
        } else {
            inner.fence.interval()
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            r = stop.changed() => if r.is_err() || *stop.borrow() { return },
        }
        inner.check();
    }
}

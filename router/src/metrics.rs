//! Prometheus metrics, served in the text format at `/metrics` on the admin listener.
//!
//! Two kinds of figures:
//! - request figures (requests by status class, request duration, queue wait, front-door
//!   rejections) are recorded on the request path through label handles resolved once per
//!   tenant ([`TenantMetrics`]): a map look-up and a few atomic adds per request, no
//!   allocation;
//! - pool figures (in flight, queued, workers, RSS, spawns and exits, queue rejections) and
//!   tenant counts are read at scrape time from the registry, the pools and their
//!   [`Counters`], so the supervisor never touches Prometheus.
//!
//! Cardinality: at most `max_tenants` tenants get their own `tenant` label, chosen first come
//! (a tenant keeps its label while it exists; a deleted one's series are removed and its slot
//! freed at the next scrape); every later tenant is aggregated into `tenant="_other"`. Requests that belong to no tenant (unknown site, index page,
//! malformed request) are `tenant="_none"`. Tenant names start with a letter or digit, so
//! neither value can collide with a tenant.
//!
//! Over 500 lines: every metric family is declared, registered and described here, so a new
//! metric is one field, one registration and one line in `docs/metrics.md`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry as PromRegistry, TextEncoder,
};

use crate::outcome::{Reject, RequestMeta};
use paddock_config::Config;
use paddock_supervise::counters::Counters;
use paddock_supervise::monitor::DbSampler;
use paddock_supervise::registry::Registry;

/// The `tenant` label of tenants beyond the bound.
pub const OTHER: &str = "_other";
/// The `tenant` label of requests that reached no tenant.
pub const NONE: &str = "_none";
/// How long the count of known tenants (a directory scan) is reused.
const KNOWN_TTL: Duration = Duration::from_secs(5);

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// Statuses the static-file server answers with (`paddock_static_responses_total{status}`),
/// present at zero from the start.
const STATIC_STATUSES: [&str; 6] = ["200", "206", "304", "404", "405", "416"];
/// The git revision the router was built from (`build.rs`), `unknown` without git.
pub const REVISION: &str = env!("PADDOCK_GIT_REVISION");
const DURATION_BUCKETS: &[f64] =
    &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
const WAIT_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// How a signup ended (`paddock_signups_total{outcome}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signup {
    /// 201: the tenant was provisioned.
    Created,
    /// 409: the name is taken (or another signup for it won).
    Conflict,
    /// 400/422: bad input, invalid or reserved name.
    Invalid,
    /// 429: too many signups from this client.
    RateLimited,
    /// The provisioning command failed or timed out; nothing was kept.
    Failed,
    /// 403: a cross-site post, or a form token missing or expired.
    Forbidden,
}

impl Signup {
    const ALL: [Signup; 6] = [
        Signup::Created,
        Signup::Conflict,
        Signup::Invalid,
        Signup::RateLimited,
        Signup::Failed,
        Signup::Forbidden,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Signup::Created => "created",
            Signup::Conflict => "conflict",
            Signup::Invalid => "invalid",
            Signup::RateLimited => "rate_limited",
            Signup::Failed => "failed",
            Signup::Forbidden => "forbidden",
        }
    }
}

/// Label handles of one `tenant` label value, resolved once.
pub struct TenantMetrics {
    label: Arc<str>,
    requests: [IntCounter; 5],
    duration: Histogram,
    queue_wait: Histogram,
    rejected: [IntCounter; Reject::ALL.len()],
}

impl TenantMetrics {
    /// The `tenant` label value: the tenant's name, `_other` or `_none`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Count one answered request and its duration (until the response head).
    pub fn observe(&self, status: u16, duration: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.requests[class].inc();
        self.duration.observe(duration.as_secs_f64());
    }

    pub fn queue_wait(&self, wait: Duration) {
        self.queue_wait.observe(wait.as_secs_f64());
    }

    pub fn reject(&self, why: Reject) {
        self.rejected[why as usize].inc();
    }

    /// Record what the request path saw: rejection, queue wait, status and duration.
    pub fn record(&self, status: u16, duration: Duration, meta: &RequestMeta) {
        if let Some(r) = meta.rejected {
            self.reject(r);
        }
        if let Some(w) = meta.queue_wait {
            self.queue_wait(w);
        }
        self.observe(status, duration);
    }
}

/// Figures of one label value gathered at scrape time.
#[derive(Default)]
struct PoolSums {
    in_flight: u64,
    queued: u64,
    ready: u64,
    starting: u64,
    rss: u64,
    db_conns: u64,
}

/// Counter totals of one label value gathered at scrape time.
#[derive(Default)]
struct CounterSums {
    spawns: u64,
    connects: u64,
    /// In the order of [`EXIT_REASONS`].
    exits: [u64; 9],
    log_dropped: u64,
    /// Shrinks, stops: in the order of [`EVICTION_KINDS`].
    evictions: [u64; 2],
}

/// `paddock_pool_evictions_total{kind}` values.
const EVICTION_KINDS: [&str; 2] = ["shrink", "stop"];

/// `paddock_worker_exits_total{reason}` values.
const EXIT_REASONS: [&str; 9] = [
    "crash",
    "max_requests",
    "request_timeout",
    "memory_limit",
    "reload",
    "script_changed",
    "idle",
    "zygote_died",
    "zygote_back",
];

impl CounterSums {
    fn add(&mut self, c: &Counters) {
        let g = Counters::get;
        self.spawns += g(&c.spawns);
        self.connects += g(&c.connects);
        let exits = [
            &c.crashes,
            &c.recycles_max_requests,
            &c.recycles_timeout,
            &c.recycles_memory,
            &c.recycles_reload,
            &c.recycles_script,
            &c.idle_stops,
            &c.zygote_deaths,
            &c.recycles_zygote_back,
        ];
        for (sum, c) in self.exits.iter_mut().zip(exits) {
            *sum += g(c);
        }
        self.log_dropped += g(&c.log_lines_dropped);
        self.evictions[0] += g(&c.budget_shrinks);
        self.evictions[1] += g(&c.budget_stops);
    }
}

/// Scrape-time state; its mutex also serialises scrapes.
#[derive(Default)]
struct Scrape {
    /// Known tenants and when they were counted.
    known: Option<(Instant, usize)>,
}

/// The cluster's figures ([`Metrics::cluster`]).
pub struct ClusterMetrics {
    pub live: IntGauge,
    pub nodes: IntGauge,
    pub owned: IntGauge,
    pub forwards: IntCounterVec,
    pub claims: IntCounterVec,
    pub releases: IntCounterVec,
    pub fences: IntCounterVec,
}

/// Every metric, in one Prometheus registry.
pub struct Metrics {
    prom: PromRegistry,
    max_tenants: usize,
    /// Tenants given their own label so far; its lock makes the first-come choice race-free.
    labelled: Mutex<usize>,
    /// Label handles by tenant name (tenants beyond the bound share `other`'s).
    tenants: DashMap<String, Arc<TenantMetrics>>,
    other: Arc<TenantMetrics>,
    none: Arc<TenantMetrics>,
    requests: IntCounterVec,
    duration: HistogramVec,
    queue_wait: HistogramVec,
    rejected: IntCounterVec,
    in_flight: IntGaugeVec,
    queued: IntGaugeVec,
    workers: IntGaugeVec,
    rss: IntGaugeVec,
    db_conns: IntGaugeVec,
    spawns: IntCounterVec,
    connects: IntCounterVec,
    exits: IntCounterVec,
    log_dropped: IntCounterVec,
    evictions: IntCounterVec,
    tenants_known: IntGauge,
    tenants_active: IntGauge,
    tenants_labelled: IntGauge,
    signups: IntCounterVec,
    static_files: IntCounterVec,
    client_timeouts: IntCounterVec,
    connections_open: IntGauge,
    connections_capped: IntCounter,
    admin_connections_open: IntGauge,
    admin_connections_capped: IntCounter,
    scrape: Mutex<Scrape>,
}

fn counter_vec(prom: &PromRegistry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let v = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    prom.register(Box::new(v.clone())).expect("unique metric");
    v
}

fn gauge_vec(prom: &PromRegistry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let v = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    prom.register(Box::new(v.clone())).expect("unique metric");
    v
}

fn gauge(prom: &PromRegistry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    prom.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn histogram_vec(prom: &PromRegistry, name: &str, help: &str, buckets: &[f64]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    let v = HistogramVec::new(opts, &["tenant"]).expect("valid metric");
    prom.register(Box::new(v.clone())).expect("unique metric");
    v
}

/// Raise counter `c` to `total` (scrape-time counters mirror monotonic atomics).
fn raise(c: &IntCounter, total: u64) {
    let cur = c.get();
    if total > cur {
        c.inc_by(total - cur);
    }
}

impl Metrics {
    /// All metrics, at most `max_tenants` of them labelled by tenant.
    pub fn new(max_tenants: usize) -> Metrics {
        let prom = PromRegistry::new();
        let p = &prom;
        let build = gauge_vec(
            p,
            "paddock_build_info",
            "Paddock's version and git revision (always 1).",
            &["version", "revision"],
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION"), REVISION]).set(1);
        // The router's own process_* figures (CPU, memory, descriptors, threads, start time),
        // read from /proc/self at each scrape by the prometheus crate's collector.
        if let Err(e) =
            p.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
        {
            tracing::warn!("no process_* metrics: {e}");
        }
        let requests = counter_vec(
            p,
            "paddock_requests_total",
            "Requests answered, by tenant and status class.",
            &["tenant", "class"],
        );
        let duration = histogram_vec(
            p,
            "paddock_request_duration_seconds",
            "Time from the request's arrival to its response head, by tenant.",
            DURATION_BUCKETS,
        );
        let queue_wait = histogram_vec(
            p,
            "paddock_queue_wait_seconds",
            "Time a request waited for a slot in its tenant's pool, by tenant.",
            WAIT_BUCKETS,
        );
        let rejected = counter_vec(
            p,
            "paddock_rejected_requests_total",
            "Requests refused by the router itself, by tenant and reason.",
            &["tenant", "reason"],
        );
        let signups = counter_vec(
            p,
            "paddock_signups_total",
            "Self-service signups, by outcome.",
            &["outcome"],
        );
        for s in Signup::ALL {
            signups.with_label_values(&[s.as_str()]);
        }
        let static_files = counter_vec(
            p,
            "paddock_static_responses_total",
            "Static files answered by the router itself (never reaching a pool), by status.",
            &["status"],
        );
        for status in STATIC_STATUSES {
            static_files.with_label_values(&[status]);
        }
        let client_timeouts = counter_vec(
            p,
            "paddock_client_timeouts_total",
            "Client connections closed because the client was too slow, by kind (send: it \
             read nothing of the response for `send_timeout`).",
            &["kind"],
        );
        client_timeouts.with_label_values(&["send"]);
        let connections_capped = IntCounter::new(
            "paddock_connections_capped_total",
            "Times the front door stopped accepting because `max_connections` were open.",
        )
        .expect("valid metric");
        p.register(Box::new(connections_capped.clone())).expect("unique metric");
        let admin_connections_capped = IntCounter::new(
            "paddock_admin_connections_capped_total",
            "Times the admin listener stopped accepting because its `max_connections` were open.",
        )
        .expect("valid metric");
        p.register(Box::new(admin_connections_capped.clone())).expect("unique metric");
        let m = Metrics {
            max_tenants,
            labelled: Mutex::new(0),
            tenants: DashMap::new(),
            other: Arc::new(handles(OTHER, &requests, &duration, &queue_wait, &rejected)),
            none: Arc::new(handles(NONE, &requests, &duration, &queue_wait, &rejected)),
            in_flight: gauge_vec(
                p,
                "paddock_in_flight_requests",
                "Requests being served by a worker now, by tenant.",
                &["tenant"],
            ),
            queued: gauge_vec(
                p,
                "paddock_queued_requests",
                "Requests waiting for a slot now, by tenant.",
                &["tenant"],
            ),
            workers: gauge_vec(
                p,
                "paddock_workers",
                "Worker processes by tenant and state (ready; starting: a slot without a \
                 ready process, being started or restarted).",
                &["tenant", "state"],
            ),
            rss: gauge_vec(
                p,
                "paddock_worker_rss_bytes",
                "Resident memory of the ready worker processes, summed by tenant.",
                &["tenant"],
            ),
            db_conns: gauge_vec(
                p,
                "paddock_tenant_database_connections",
                "Established TCP connections from the tenant's ready worker processes to the \
                 `database_servers`, by tenant.",
                &["tenant"],
            ),
            spawns: counter_vec(
                p,
                "paddock_worker_spawns_total",
                "Worker processes started, by tenant.",
                &["tenant"],
            ),
            connects: counter_vec(
                p,
                "paddock_worker_connections_total",
                "Connections opened to worker processes, by tenant; requests without a body reuse idle ones.",
                &["tenant"],
            ),
            exits: counter_vec(
                p,
                "paddock_worker_exits_total",
                "Worker processes that ended, by tenant and reason.",
                &["tenant", "reason"],
            ),
            log_dropped: counter_vec(
                p,
                "paddock_worker_log_lines_dropped_total",
                "Worker stderr lines not logged because the tenant logged over its rate, by tenant.",
                &["tenant"],
            ),
            evictions: counter_vec(
                p,
                "paddock_pool_evictions_total",
                "Pools shrunk to one process or stopped to make room in max_workers_total, by tenant and kind.",
                &["tenant", "kind"],
            ),
            tenants_known: gauge(
                p,
                "paddock_tenants_known",
                "Tenants that exist: discovered directories plus configured tenants.",
            ),
            tenants_active: gauge(p, "paddock_tenants_active", "Tenants with a running pool."),
            tenants_labelled: gauge(
                p,
                "paddock_metrics_labelled_tenants",
                "Tenants with their own `tenant` label (the rest are `_other`).",
            ),
            requests,
            duration,
            queue_wait,
            rejected,
            signups,
            static_files,
            client_timeouts,
            connections_open: gauge(p, "paddock_connections_open", "Client connections open now."),
            connections_capped,
            admin_connections_open: gauge(
                p,
                "paddock_admin_connections_open",
                "Connections open now on the admin listener.",
            ),
            admin_connections_capped,
            scrape: Mutex::new(Scrape::default()),
            prom,
        };
        // Every counter family has a sample from the start: the worker counters of
        // `_other` (where no tenant's figures are yet) at zero.
        m.spawns.with_label_values(&[OTHER]);
        m.connects.with_label_values(&[OTHER]);
        m.log_dropped.with_label_values(&[OTHER]);
        for reason in EXIT_REASONS {
            m.exits.with_label_values(&[OTHER, reason]);
        }
        for kind in EVICTION_KINDS {
            m.evictions.with_label_values(&[OTHER, kind]);
        }
        m
    }

    /// Label handles for tenant `name`: its own the first `max_tenants` times a new name is
    /// seen, `_other`'s after that. Cheap once resolved (one map look-up).
    pub fn tenant(&self, name: &str) -> Arc<TenantMetrics> {
        if let Some(h) = self.tenants.get(name) {
            return h.clone();
        }
        let mut labelled = self.labelled.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = self.tenants.get(name) {
            return h.clone();
        }
        let h = if *labelled < self.max_tenants {
            *labelled += 1;
            self.tenants_labelled.set(*labelled as i64);
            Arc::new(handles(
                name,
                &self.requests,
                &self.duration,
                &self.queue_wait,
                &self.rejected,
            ))
        } else {
            self.other.clone()
        };
        self.tenants.insert(name.to_string(), h.clone());
        h
    }

    /// Give up the label of tenant `name`, which no longer exists: its series are removed
    /// and its slot under the bound is free. The tenants aggregated into `_other` so far are
    /// looked up afresh, so the next one seen takes the slot.
    fn forget(&self, name: &str) {
        let mut labelled = self.labelled.lock().unwrap_or_else(|e| e.into_inner());
        let Some((_, h)) = self.tenants.remove(name) else { return };
        if Arc::ptr_eq(&h, &self.other) {
            return;
        }
        *labelled = labelled.saturating_sub(1);
        self.tenants_labelled.set(*labelled as i64);
        // Absent series (never created) are no error worth reporting.
        for class in CLASSES {
            let _ = self.requests.remove_label_values(&[name, class]);
        }
        for r in Reject::ALL {
            let _ = self.rejected.remove_label_values(&[name, r.as_str()]);
        }
        for reason in EXIT_REASONS {
            let _ = self.exits.remove_label_values(&[name, reason]);
        }
        for kind in EVICTION_KINDS {
            let _ = self.evictions.remove_label_values(&[name, kind]);
        }
        let _ = self.duration.remove_label_values(&[name]);
        let _ = self.queue_wait.remove_label_values(&[name]);
        let _ = self.spawns.remove_label_values(&[name]);
        let _ = self.connects.remove_label_values(&[name]);
        let _ = self.log_dropped.remove_label_values(&[name]);
        if *labelled < self.max_tenants {
            self.tenants.retain(|_, h| !Arc::ptr_eq(h, &self.other));
        }
    }

    /// Release the labels of labelled tenants that are gone (deleted through the API, their
    /// directory removed, or dropped from the file) once their pool has left the registry,
    /// whose counters of them are dropped too. A disabled tenant still exists and keeps its
    /// label. One tenant look-up (a `stat`) per labelled tenant.
    fn release_gone(&self, registry: &Registry, config: &Config) {
        let labelled: Vec<String> = self
            .tenants
            .iter()
            .filter(|e| !Arc::ptr_eq(e.value(), &self.other))
            .map(|e| e.key().clone())
            .collect();
        for name in labelled {
            if config.tenant(&name).is_none() && registry.forget(&name) {
                self.forget(&name);
            }
        }
    }

    /// Label handles for requests that reached no tenant.
    pub fn no_tenant(&self) -> &Arc<TenantMetrics> {
        &self.none
    }

    /// Handles for an optional tenant name.
    pub fn for_request(&self, tenant: Option<&str>) -> Arc<TenantMetrics> {
        match tenant {
            Some(t) => self.tenant(t),
            None => self.none.clone(),
        }
    }

    /// Count a signup outcome.
    pub fn signup(&self, outcome: Signup) {
        self.signups.with_label_values(&[outcome.as_str()]).inc();
    }

    /// Count a response of the static-file server (200, 206, 304, 404, 405, 416).
    /// Register the cluster's families (a node with `[cluster]` only) and hand out their
    /// handles; every label value is present at zero from the start.
    pub fn cluster(&self) -> ClusterMetrics {
        let p = &self.prom;
        let m = ClusterMetrics {
            live: gauge(p, "paddock_cluster_live", "1 while this node holds a live lease (serves its tenants), else 0."),
            nodes: gauge(p, "paddock_cluster_nodes", "Nodes with a live lease, as last read from etcd."),
            owned: gauge(p, "paddock_cluster_owned_tenants", "Tenants this node owns now."),
            forwards: counter_vec(
                p,
                "paddock_cluster_forwards_total",
                "Requests for tenants of other nodes, by result (ok: forwarded and answered;                  error: the owner could not be reached; refused: a forwarded request for a tenant                  this node does not own, answered 503).",
                &["result"],
            ),
            claims: counter_vec(
                p,
                "paddock_cluster_claims_total",
                "Ownership claims made before starting a tenant, by result (won; lost: another                  node owns it; error: etcd did not answer or this node has no live lease).",
                &["result"],
            ),
            releases: counter_vec(
                p,
                "paddock_cluster_releases_total",
                "Claims given up after the tenant's pool stopped, by cause (idle, drain, move).",
                &["cause"],
            ),
            fences: counter_vec(
                p,
                "paddock_cluster_fence_events_total",
                "Changes of this node's health, by the health entered (fenced: no renewal in                  time, its pools stopped; lost: the lease is gone, its claims forgotten; live).",
                &["health"],
            ),
        };
        for r in ["ok", "error", "refused"] {
            m.forwards.with_label_values(&[r]);
        }
        for r in ["won", "lost", "error"] {
            m.claims.with_label_values(&[r]);
        }
        for c in ["idle", "drain", "move"] {
            m.releases.with_label_values(&[c]);
        }
        for h in ["fenced", "lost", "live"] {
            m.fences.with_label_values(&[h]);
        }
        m
    }

    pub fn static_response(&self, status: u16) {
        self.static_files.with_label_values(&[&status.to_string()]).inc();
    }

    /// The counter of client timeouts of `kind` (`send`), to hand to each connection.
    pub fn client_timeouts(&self, kind: &str) -> IntCounter {
        self.client_timeouts.with_label_values(&[kind])
    }

    /// `paddock_connections_open` and `paddock_connections_capped_total`, for the cap.
    pub fn connection_handles(&self) -> (IntGauge, IntCounter) {
        (self.connections_open.clone(), self.connections_capped.clone())
    }

    /// The same two for the admin listener's cap.
    pub fn admin_connection_handles(&self) -> (IntGauge, IntCounter) {
        (self.admin_connections_open.clone(), self.admin_connections_capped.clone())
    }

    /// Read the pools and counters, then encode every metric in the text format. Blocking
    /// (reads `/proc` and, every few seconds, the sites directory).
    pub fn render(&self, registry: &Registry, config: &Config) -> String {
        let mut scrape = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        self.release_gone(registry, config);
        self.collect_pools(registry, &config.database_servers);
        self.collect_counters(registry);
        let known = match scrape.known {
            Some((at, n)) if at.elapsed() < KNOWN_TTL => n,
            _ => {
                let n = config.count_tenants();
                scrape.known = Some((Instant::now(), n));
                n
            }
        };
        self.tenants_known.set(known as i64);
        let mut out = String::new();
        if let Err(e) = TextEncoder::new().encode_utf8(&self.prom.gather(), &mut out) {
            tracing::error!("cannot encode metrics: {e}");
        }
        out
    }

    fn collect_pools(&self, registry: &Registry, databases: &[std::net::SocketAddr]) {
        let mut sums: HashMap<Arc<str>, PoolSums> = HashMap::new();
        let mut db = DbSampler::new(databases);
        let mut active = 0;
        for p in registry.pools() {
            if p.is_stopping() {
                continue;
            }
            active += 1;
            let h = self.tenant(&p.spec.name);
            let s = sums.entry(h.label.clone()).or_default();
            let ready = p.ready_pids();
            s.in_flight += p.in_flight() as u64;
            s.queued += p.queued() as u64;
            s.ready += ready.len() as u64;
            s.starting += p.process_budget().saturating_sub(ready.len()) as u64;
            s.rss += ready
                .iter()
                .filter_map(|&pid| paddock_supervise::monitor::rss_bytes(pid))
                .sum::<u64>();
            s.db_conns += db.count(&ready);
        }
        self.tenants_active.set(active);
        // Tenants whose pool stopped lose their series instead of showing stale figures.
        for v in [&self.in_flight, &self.queued, &self.workers, &self.rss, &self.db_conns] {
            v.reset();
        }
        let g = |x: u64| i64::try_from(x).unwrap_or(i64::MAX);
        for (label, s) in sums {
            let l: &str = &label;
            self.in_flight.with_label_values(&[l]).set(g(s.in_flight));
            self.queued.with_label_values(&[l]).set(g(s.queued));
            self.workers.with_label_values(&[l, "ready"]).set(g(s.ready));
            self.workers.with_label_values(&[l, "starting"]).set(g(s.starting));
            self.rss.with_label_values(&[l]).set(g(s.rss));
            if !databases.is_empty() {
                self.db_conns.with_label_values(&[l]).set(g(s.db_conns));
            }
        }
    }

    fn collect_counters(&self, registry: &Registry) {
        let mut sums: HashMap<Arc<str>, CounterSums> = HashMap::new();
        for (name, c) in registry.counters() {
            let h = self.tenant(&name);
            sums.entry(h.label.clone()).or_default().add(&c);
        }
        for (label, s) in sums {
            let l: &str = &label;
            raise(&self.spawns.with_label_values(&[l]), s.spawns);
            raise(&self.connects.with_label_values(&[l]), s.connects);
            for (reason, n) in EXIT_REASONS.iter().zip(s.exits) {
                raise(&self.exits.with_label_values(&[l, reason]), n);
            }
            raise(&self.log_dropped.with_label_values(&[l]), s.log_dropped);
            for (kind, n) in EVICTION_KINDS.iter().zip(s.evictions) {
                raise(&self.evictions.with_label_values(&[l, kind]), n);
            }
        }
    }
}

/// Resolve (and so create at zero) every request series of one label value.
fn handles(
    label: &str,
    requests: &IntCounterVec,
    duration: &HistogramVec,
    queue_wait: &HistogramVec,
    rejected: &IntCounterVec,
) -> TenantMetrics {
    TenantMetrics {
        label: Arc::from(label),
        requests: CLASSES.map(|c| requests.with_label_values(&[label, c])),
        duration: duration.with_label_values(&[label]),
        queue_wait: queue_wait.with_label_values(&[label]),
        rejected: Reject::ALL.map(|r| rejected.with_label_values(&[label, r.as_str()])),
    }
}

/// Discovered tenants (directories under `sites` holding the marker) plus configured ones.
#[cfg(test)]
mod tests;

//! The HTTP front door: accept connections, route each request, hand it to a pool, stream the
//! answer back, and log one access line per request.
//!
//! Over 500 lines: the request path, from accept to the worker, reads top to bottom in one
//! file (about 80 lines of it are its unit tests); the decisions it calls live elsewhere
//! (`route`, `refusal`, `auth`, `statics`, `forward`).

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use http::{header, HeaderMap, Method, Request, Response, Version};
use hyper::body::Incoming;
use paddock_proto::{BodyKind, RequestHead};
use tokio::net::{TcpListener, TcpStream};

use crate::clientio::{ClientIo, ConnLimit};
use crate::forward;
use crate::forwarded;
use crate::index;
use crate::metrics::Metrics;
use crate::outcome::RequestMeta;
use crate::phase::{self, Phase, Phases};
use crate::probe::FsProbe;
use crate::refusal::Refusal;
use crate::respond;
use crate::respond::Body;
use crate::route::{self, Decision, Routed};
use paddock_config::{Config, Overrides};
use paddock_rules::diag::Diagnostics;
use paddock_rules::path::Target;
use paddock_rules::RequestInfo;
use paddock_supervise::counters::Reason;
use paddock_supervise::pool::PoolError;
use paddock_supervise::registry::Registry;

mod access;
mod conn;
mod fresh;
mod host;

/// Shared by every connection.
pub struct State {
    config: RwLock<Arc<Config>>,
    probe: RwLock<Arc<FsProbe>>,
    overrides: Overrides,
    pub registry: Arc<Registry>,
    /// Prometheus metrics (`/metrics` on the admin listener).
    pub metrics: Metrics,
    /// The cap on open client connections (`max_connections`).
    pub connections: ConnLimit,
    /// The admin listener's (`[admin] max_connections`).
    pub admin_connections: ConnLimit,
    /// The shutdown phase every task of the server stops from.
    pub phases: Arc<Phases>,
    /// Asks for a binary upgrade (the admin API's `POST /upgrade`, as SIGUSR2).
    pub upgrade: crate::upgrade::Trigger,
    pub(crate) upgrade_requests: crate::upgrade::Requests,
    /// This node's place in a cluster (`[cluster]`), set once it has joined.
    cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
}

impl State {
    /// Whether a tenant may keep its pool ([`crate::discovery::still_served`] against the
    /// configuration in force at each call), for the monitor.
    pub fn served(self: &Arc<Self>) -> paddock_supervise::monitor::Served {
        let state = self.clone();
        Arc::new(move |name: &str| crate::discovery::still_served(&state.config(), name))
    }

    pub fn new(
        config: Config,
        overrides: Overrides,
        registry: Arc<Registry>,
        phases: Arc<Phases>,
    ) -> Self {
        let probe = Arc::new(FsProbe::for_config(&config));
        let max_tenants = config
            .admin
            .as_ref()
            .map_or(paddock_config::DEFAULT_METRICS_MAX_TENANTS, |a| a.metrics_max_tenants);
        let metrics = Metrics::new(max_tenants);
        let (open, capped) = metrics.connection_handles();
        let (admin_open, admin_capped) = metrics.admin_connection_handles();
        let (upgrade, upgrade_requests) = crate::upgrade::channel();
        State {
            upgrade,
            upgrade_requests,
            connections: ConnLimit::new(config.max_connections, open, capped),
            admin_connections: ConnLimit::new(admin_max(&config), admin_open, admin_capped),
            metrics,
            config: RwLock::new(Arc::new(config)),
            probe: RwLock::new(probe),
            overrides,
            registry,
            phases,
            cluster: std::sync::OnceLock::new(),
        }
    }

    /// The cluster this node has joined, if any.
    pub fn cluster(&self) -> Option<&Arc<crate::cluster::Cluster>> {
        self.cluster.get()
    }

    pub(crate) fn set_cluster(&self, c: Arc<crate::cluster::Cluster>) {
        let _ = self.cluster.set(c);
    }

    pub fn config(&self) -> Arc<Config> {
        self.config.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn probe(&self) -> Arc<FsProbe> {
        self.probe.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Re-read the configuration (SIGHUP). A bad file is refused with its errors and the
    /// running configuration stays; pools whose process settings changed are replaced gracefully, and
    /// pools of tenants that no longer exist are stopped.
    pub fn reload(&self) -> Result<(), Diagnostics> {
        crate::notify::reloading();
        let done = self.reload_config();
        crate::notify::ready(match &done {
            Ok(()) => "serving; configuration reloaded",
            Err(_) => "serving; the reloaded configuration was refused (see the log)",
        });
        done
    }

    /// Start the zygote of every Python configuration the tenants are known to use before any
    /// of them is asked for ([`crate::discovery::zygote_specs`]), so that a first request waits only for its
    /// fork. In the background; at boot and on reload.
    pub fn warm_zygotes(&self) {
        self.registry.warm_zygotes(&crate::discovery::zygote_specs(&self.config()));
    }

    fn reload_config(&self) -> Result<(), Diagnostics> {
        let old = self.config();
        let new = match &old.source {
            Some(path) => Config::load(path, &self.overrides)?,
            None => Config::from_overrides(&self.overrides)?,
        };
        let probe = Arc::new(FsProbe::for_config(&new));
        let new = Arc::new(new);
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = new.clone();
        *self.probe.write().unwrap_or_else(|e| e.into_inner()) = probe;
        self.connections.resize(new.max_connections);
        self.admin_connections.resize(admin_max(&new));
        self.warm_zygotes();
        for pool in self.registry.pools() {
            match new.tenant(&pool.spec.name) {
                None => self.registry.remove(&pool.spec.name),
                Some(spec) if !spec.same_workers(&pool.spec) => {
                    self.registry.replace_gracefully(spec, Reason::Reload)
                }
                // Admission applies to the running pool; request settings are read per request.
                Some(spec) => pool.set_admission(spec.settings.admission),
            }
        }
        Ok(())
    }
}

/// The admin listener's connection cap in `config`.
fn admin_max(config: &Config) -> usize {
    config
        .admin
        .as_ref()
        .map_or(paddock_config::DEFAULT_ADMIN_MAX_CONNECTIONS, |a| a.max_connections)
}

/// The longest a drain waits for just-accepted connections to send their first request
/// ([`fresh`]).
const FRESH_SETTLE: Duration = Duration::from_secs(2);

/// Accept connections on `listener` while the server is [`Phase::Running`]. In
/// [`Phase::Draining`] open connections finish their current request, up to `drain_timeout`;
/// then (or at once, in a fast stop) they are closed. Returns in [`Phase::Stopping`].
pub async fn serve(listener: TcpListener, state: Arc<State>) {
    serve_side(listener, state, Side::Public).await
}

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The front door: clients.
    Public,
    /// The node-to-node listener of a cluster: requests other nodes forward, from the
    /// configured `peers` only, each with its [`crate::cluster::hop::Hop`] marker.
    Internal,
}

/// [`serve`] for either listener.
pub async fn serve_side(listener: TcpListener, state: Arc<State>, side: Side) {
    serve_all(listener, None, state, side).await
}

/// [`serve`] on the plain listener and, with `[tls]`, the HTTPS one: one accept loop and one
/// drain for both, so that neither closes the other's connections when it is done.
pub async fn serve_with_tls(
    listener: TcpListener,
    tls: Option<(TcpListener, tokio_rustls::TlsAcceptor)>,
    state: Arc<State>,
) {
    serve_all(listener, tls, state, Side::Public).await
}

/// `accept` on `l`, or never when there is no such listener.
async fn accept_on(l: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

async fn serve_all(
    listener: TcpListener,
    tls: Option<(TcpListener, tokio_rustls::TlsAcceptor)>,
    state: Arc<State>,
    side: Side,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let fresh = Arc::new(fresh::Fresh::default());
    let send_timeouts = state.metrics.client_timeouts("send");
    let phases = state.phases.clone();
    let not_running = || phase::reached(phases.subscribe(), |p| !p.accepting());
    let (tls_listener, acceptor) = match tls {
        Some((l, a)) => (Some(l), Some(a)),
        None => (None, None),
    };
    loop {
        // The permit comes before `accept`: at the cap, clients wait in the backlog.
        let permit = tokio::select! {
            p = state.connections.acquire() => p,
            _ = not_running() => break,
        };
        let accepted = tokio::select! {
            r = listener.accept() => r.map(|x| (x, false)),
            r = accept_on(tls_listener.as_ref()) => r.map(|x| (x, true)),
            _ = not_running() => break,
        };
        let ((stream, peer), tls) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if side == Side::Internal
            && !state.cluster().is_some_and(|c| c.settings().is_peer(peer.ip()))
        {
            tracing::warn!(client = %peer, "internal listener: refused a connection from outside `peers`");
            continue;
        }
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().unwrap_or(peer);
        let link = conn::Link { peer, local, side, tls };
        let cfg = state.config();
        let send_timeout = cfg.send_timeout;
        let send_timeouts = send_timeouts.clone();
        let mark = fresh.mark();
        let watcher = graceful.watcher();
        let st = state.clone();
        let acceptor = acceptor.clone().filter(|_| tls);
        // HTTP/2 with prior knowledge on the plain front door only: the internal listener's
        // peers speak HTTP/1.1.
        let h2c = side == Side::Public && cfg.h2c;
        let handshake_timeout = cfg.header_read_timeout;
        let closing = phase::reached(state.phases.subscribe(), Phase::closing);
        tokio::spawn(async move {
            let _permit = permit;
            let work = async {
                let Some(acceptor) = acceptor else {
                    let plain = match h2c {
                        true => conn::sniff(&stream, handshake_timeout).await?,
                        false => conn::Protocols::Http1,
                    };
                    let io = ClientIo::new(stream, send_timeout, send_timeouts);
                    return conn::serve(io, st.clone(), link, mark, plain, watcher).await;
                };
                let io = ClientIo::new(stream, send_timeout, send_timeouts);
                let stream = tokio::time::timeout(handshake_timeout, acceptor.accept(io))
                    .await
                    .map_err(|_| "TLS handshake timed out (header_read_timeout)")??;
                let protocols = conn::negotiated(stream.get_ref().1.alpn_protocol());
                conn::serve(stream, st.clone(), link, mark, protocols, watcher).await
            };
            tokio::select! {
                r = work => if let Err(e) = r { conn::ended(&st, peer, e.as_ref()) },
                // Dropping the connection closes it, and ends the request it carries.
                _ = closing => tracing::debug!(client = %peer, "connection closed: shutting down"),
            }
        });
    }
    drop(tls_listener);
    drop(listener);
    if phases.get() == Phase::Draining {
        let drain = state.config().drain_timeout;
        // Connections accepted just now have their request on the way: read it first.
        tokio::select! {
            _ = fresh.settled(drain.min(FRESH_SETTLE)) => {}
            _ = phase::reached(phases.subscribe(), Phase::closing) => return,
        }
        tokio::select! {
            r = tokio::time::timeout(drain, graceful.shutdown()) => match r {
                Ok(()) => {
                    phases.advance(Phase::Stopping { fast: false });
                    return;
                }
                Err(_) => {
                    tracing::warn!("connections still open after {drain:?} (drain_timeout); closing them");
                    phases.advance(Phase::Stopping { fast: true });
                }
            },
            // A second signal: the phase moved on by itself.
            _ = phase::reached(phases.subscribe(), Phase::closing) => {}
        }
        // `graceful` was consumed by the drain; the connections' tasks close them.
        return;
    }
    // A fast stop: every connection's task closes it on seeing the phase. Give them a moment
    // to do so before the pools stop.
    let _ = tokio::time::timeout(Duration::from_secs(1), graceful.shutdown()).await;
}

async fn handle(
    st: Arc<State>,
    req: Request<Incoming>,
    raw: Option<Vec<u8>>,
    link: conn::Link,
) -> Response<Body> {
    let started = Instant::now();
    let method = req.method().clone();
    let raw = raw.unwrap_or_else(|| {
        req.uri()
            .path_and_query()
            .map(|p| p.as_str().as_bytes().to_vec())
            .unwrap_or_else(|| b"/".to_vec())
    });
    let target_text = String::from_utf8_lossy(&raw).into_owned();
    let mut meta = RequestMeta::default();
    let (parts, incoming) = req.into_parts();
    let expects_continue = parts.headers.contains_key(header::EXPECT);
    let req = Request::from_parts(parts, ());
    let mut body = Some(incoming);
    let (tenant, mut resp) = dispatch(&st, req, &mut body, &raw, link, &mut meta).await;
    if let Some(unread) = body {
        // Answered before the body was read: drain it, or announce the close, so that the
        // client's next request on this connection is not lost.
        if expects_continue || !drain(unread).await {
            resp.headers_mut().insert(header::CONNECTION, http::HeaderValue::from_static("close"));
        }
    }
    let elapsed = started.elapsed();
    let status = resp.status().as_u16();
    st.metrics.for_request(tenant.as_deref()).record(status, elapsed, &meta);
    let line = access::Line {
        client: link.peer.ip(),
        method,
        target: target_text,
        tenant,
        status,
        started,
        head_ms: elapsed.as_millis() as u64,
        queue_ms: meta.queue_wait.unwrap_or_default().as_millis() as u64,
    };
    resp.map(|body| access::logged(body, line))
}

/// Most of a body the router reads and drops after answering without it.
const DRAIN_BYTES: usize = 64 * 1024;
/// How long it waits for that body.
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Read and drop a body the answer did not need; false if it is larger than [`DRAIN_BYTES`],
/// slower than [`DRAIN_TIME`] or broken (the connection must then close).
async fn drain(mut body: Incoming) -> bool {
    use http_body_util::BodyExt;
    use hyper::body::Body as _;
    let deadline = tokio::time::Instant::now() + DRAIN_TIME;
    let mut seen = 0usize;
    while !body.is_end_stream() {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                seen += frame.data_ref().map_or(0, |d| d.len());
                if seen > DRAIN_BYTES {
                    return false;
                }
            }
            Ok(None) => return true,
            Ok(Some(Err(_))) | Err(_) => return false,
        }
    }
    true
}

/// Route and answer one request. `body` is taken only when the request goes to a worker.
async fn dispatch(
    st: &State,
    mut req: Request<()>,
    body: &mut Option<Incoming>,
    raw: &[u8],
    link: conn::Link,
    meta: &mut RequestMeta,
) -> (Option<String>, Response<Body>) {
    let conn::Link { peer, local, side, tls } = link;
    let cfg = st.config();
    // A hop marker is believed on the internal listener only, and never reaches an app.
    let hop = match side {
        Side::Internal => match crate::cluster::hop::Hop::parse(req.headers()) {
            Ok(h) => Some(h),
            Err(why) => return (None, Refusal::bad_request(why).answer(meta)),
        },
        Side::Public => None,
    };
    req.headers_mut().remove(crate::cluster::hop::HEADER);
    let target = match Target::parse(raw) {
        Ok(t) => t,
        Err(e) => return (None, Refusal::from(e).answer(meta)),
    };
    if req.method() == Method::CONNECT {
        return (None, Refusal::connect_not_supported().answer(meta));
    }
    let host = match host::request_host(&mut req) {
        Ok(h) => h,
        Err(why) => return (None, Refusal::bad_request(why).answer(meta)),
    };
    // A forwarded request: the client as the node it reached saw it.
    let (client, peer, local) = match &hop {
        Some(h) => (
            forwarded::Client { addr: h.client, https: h.https },
            SocketAddr::new(h.client, h.client_port),
            SocketAddr::new(local.ip(), h.server_port),
        ),
        None => {
            let client = forwarded::resolve(&cfg.trusted_proxies, peer.ip(), tls, req.headers());
            (client, peer, local)
        }
    };
    let remote = client.addr.to_string();
    let server = server_name(&host, local);
    let info = RequestInfo {
        path: &target.normalised,
        query: &target.query,
        method: req.method().as_str().as_bytes(),
        host: host.as_bytes(),
        headers: req.headers(),
        remote_addr: remote.as_bytes(),
        https: client.https,
        server_name: server.as_bytes(),
        server_port: local.port(),
    };
    let probe = st.probe();
    let decision = route::decide(&cfg, &target, &info, probe.as_ref());
    let routed = match decision {
        Decision::Tenant(r) => r,
        Decision::Index => return (None, index::respond(cfg.clone()).await),
        Decision::NotFound => return (None, Refusal::not_found().answer(meta)),
        Decision::Forbidden => return (None, Refusal::forbidden().answer(meta)),
        Decision::Gone => return (None, Refusal::gone().answer(meta)),
        Decision::Redirect { status, location } => {
            return (None, respond::redirect(status, &location))
        }
        Decision::BadRequest(why) => return (None, Refusal::bad_request(why).answer(meta)),
    };
    let name = routed.spec.name.clone();
    tracing::Span::current().record("tenant", name.as_str());
    if crate::discovery::is_disabled(&cfg, &routed.spec) {
        return (Some(name), Refusal::disabled().answer(meta));
    }
    let hops = hop.as_ref().map_or(0, |h| h.hops);
    let from = hop.as_ref().map(|h| h.node.as_str());
    let conn = Conn { raw, host: &host, client, peer, local, hops, from };
    (Some(name), to_tenant(st, *routed, req, body, &target, conn, meta).await)
}

/// What the request head needs to know beyond hyper's request.
struct Conn<'a> {
    /// The request target exactly as the client sent it.
    raw: &'a [u8],
    host: &'a str,
    /// The client as reported to the app (behind trusted proxies, the original one).
    client: forwarded::Client,
    peer: SocketAddr,
    local: SocketAddr,
    /// Node-to-node hops it made to get here (0: straight from a client).
    hops: u8,
    /// The node that forwarded it here, if one did.
    from: Option<&'a str>,
}

async fn to_tenant(
    st: &State,
    routed: Routed,
    req: Request<()>,
    body_in: &mut Option<Incoming>,
    target: &Target,
    conn: Conn<'_>,
    meta: &mut RequestMeta,
) -> Response<Body> {
    let streams = body_in.as_ref().is_some_and(|b| !hyper::body::Body::is_end_stream(b));
    let Some(body) = body_kind(req.headers(), streams) else {
        return Refusal::bad_request("Invalid request body framing.").answer(meta);
    };
    if let BodyKind::Length(n) = body {
        if n > routed.spec.settings.request.max_body {
            return Refusal::body_too_large().answer(meta);
        }
    }
    let auth = routed.spec.settings.request.auth.as_ref();
    let access = match crate::auth::shared().check(auth, &routed.path_info, req.headers()).await {
        Ok(a) => a,
        Err(challenge) => return challenge.answer(meta),
    };
    // Static files answer here, behind auth but before any pool is started or admitted to.
    let cfg = st.config();
    let statics = cfg.static_files(&routed.spec.name);
    if let Some(hit) =
        crate::statics::find(statics, &routed.spec, cfg.sites.as_deref(), &routed.path_info)
    {
        let resp = crate::statics::serve(hit, req.method(), req.headers()).await;
        st.metrics.static_response(resp.status().as_u16());
        return resp;
    }
    // In a cluster, only the tenant's owner serves it; the guard keeps the claim while the
    // request is in flight.
    let _claim = match st.cluster() {
        None => None,
        Some(c) => match c.route(&routed.spec.name, conn.hops, conn.from).await {
            crate::cluster::Route::Serve(g) => Some(g),
            crate::cluster::Route::Forward { node, addr } => {
                return relay(c, &routed, req, body_in, &conn, node, addr, meta).await
            }
            crate::cluster::Route::Unavailable(why) => {
                tracing::warn!("cluster: {why}");
                return Refusal::cluster(
                    "The site cannot be served at the moment; try again shortly.",
                )
                .answer(meta);
            }
        },
    };
    let (pool, permit) = match admit(st, &routed.spec, meta).await {
        Ok(x) => x,
        Err(refusal) => return refusal.answer(meta),
    };
    let Some(incoming) = body_in.take() else {
        return Refusal::internal("The request body is gone.").answer(meta);
    };
    let (parts, ()) = req.into_parts();
    let limits = forward::Limits::of(&routed.spec.settings.request);
    let mut head = request_head(&parts, routed, target, body, &conn);
    access.apply(&mut head.environ);
    let max_head = cfg.max_response_head_bytes;
    match forward::forward(&pool, limits, head, incoming, permit, max_head).await {
        Ok(r) => r,
        Err(e) => {
            // The client's own fault is no failure of the site: logged, not warned about.
            use forward::ForwardError::{BadBody, BodyTimeout, BodyTooLarge};
            match e {
                BadBody | BodyTooLarge(_) | BodyTimeout(_) => tracing::info!("{e}"),
                _ => tracing::warn!("{e}"),
            }
            forward_failed(&e, body).answer(meta)
        }
    }
}

/// Forward the request to `node`, which owns its tenant.
#[allow(clippy::too_many_arguments)]
async fn relay(
    c: &crate::cluster::Cluster,
    routed: &Routed,
    req: Request<()>,
    body_in: &mut Option<Incoming>,
    conn: &Conn<'_>,
    node: String,
    addr: SocketAddr,
    meta: &mut RequestMeta,
) -> Response<Body> {
    let Some(incoming) = body_in.take() else {
        return Refusal::internal("The request body is gone.").answer(meta);
    };
    let (parts, ()) = req.into_parts();
    // The target as the client sent it, where it is a valid URI (8-bit bytes are not: then
    // hyper's escaped form).
    let raw = std::str::from_utf8(conn.raw).ok().filter(|t| t.parse::<http::Uri>().is_ok());
    let path = match raw {
        Some(t) => t.to_string(),
        None => parts.uri.path_and_query().map_or_else(|| "/".to_string(), |p| p.to_string()),
    };
    let hop = crate::cluster::hop::Hop {
        node: c.node_id().to_string(),
        client: conn.client.addr,
        client_port: conn.peer.port(),
        https: conn.client.https,
        server_port: conn.local.port(),
        hops: conn.hops + 1,
    };
    let s = &routed.spec.settings;
    // The owner may have to start the pool and queue the request first.
    let head_timeout = s.process.startup_timeout
        + s.admission.queue_timeout
        + s.request.request_timeout
        + Duration::from_secs(5);
    match c.forward(&node, addr, parts, &path, incoming, &hop, head_timeout).await {
        Ok(r) => {
            c.metrics.forwards.with_label_values(&["ok"]).inc();
            r
        }
        Err(e) => {
            c.metrics.forwards.with_label_values(&["error"]).inc();
            tracing::warn!(to = %node, "cluster: {e}");
            let refusal = match e {
                crate::cluster::RelayError::Timeout { .. } => {
                    Refusal::from(&forward::ForwardError::Timeout(head_timeout))
                }
                _ => Refusal::cluster(
                    "The server that runs this site cannot be reached; try again shortly.",
                ),
            };
            refusal.closing().answer(meta)
        }
    }
}

/// Find (or start) the tenant's pool and take a slot in it. A pool stopped under our feet (a
/// reload replaced it) is looked up again, in the new configuration, so a reload fails no
/// request. The time spent in `Pool::admit` goes to `meta.queue_wait`.
async fn admit(
    st: &State,
    spec: &paddock_config::tenant::TenantSpec,
    meta: &mut RequestMeta,
) -> Result<(Arc<paddock_supervise::pool::Pool>, tokio::sync::OwnedSemaphorePermit), Refusal> {
    let mut tries = 0;
    let mut spec = spec.clone();
    loop {
        tries += 1;
        let pool = match st.registry.get_or_start(spec.clone()).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("{e}");
                return Err(Refusal::from(&e));
            }
        };
        let waiting = Instant::now();
        let admitted = pool.admit().await;
        *meta.queue_wait.get_or_insert(Duration::ZERO) += waiting.elapsed();
        match admitted {
            Ok(permit) => return Ok((pool, permit)),
            Err(PoolError::Stopped { .. }) if tries < 3 => {
                // A reload replaced the pool: look the tenant up in the configuration now in
                // force, or the retry would replace the new pool with the settings it replaced.
                match st.config().tenant(&spec.name) {
                    Some(now) => spec = now,
                    None => return Err(Refusal::not_found()),
                }
            }
            Err(e) => {
                tracing::warn!("{e}");
                return Err(Refusal::from(&e));
            }
        }
    }
}

fn request_head(
    parts: &http::request::Parts,
    routed: Routed,
    target: &Target,
    body: BodyKind,
    conn: &Conn<'_>,
) -> RequestHead {
    // As mod_ssl sets it; before the configured values, which may override it.
    let mut environ: Vec<(Vec<u8>, Vec<u8>)> =
        conn.client.https.then(|| (b"HTTPS".to_vec(), b"on".to_vec())).into_iter().collect();
    environ.extend(
        routed
            .spec
            .settings
            .request
            .environ
            .iter()
            .map(|(k, v)| (k.clone().into_bytes(), v.clone().into_bytes())),
    );
    environ.extend(routed.rule_environ.into_iter().map(|(k, v)| (k.into_bytes(), v)));
    RequestHead {
        method: parts.method.as_str().as_bytes().to_vec(),
        script_name: routed.script_name,
        path_info: routed.path_info,
        query_string: target.query.clone(),
        request_uri: conn.raw.to_vec(),
        protocol: match parts.version {
            Version::HTTP_10 => b"HTTP/1.0".to_vec(),
            // As Apache's mod_http2 reports it.
            Version::HTTP_2 => b"HTTP/2.0".to_vec(),
            _ => b"HTTP/1.1".to_vec(),
        },
        scheme: if conn.client.https { b"https".to_vec() } else { b"http".to_vec() },
        server_name: server_name(conn.host, conn.local).into_bytes(),
        server_port: conn.local.port(),
        remote_addr: conn.client.addr.to_string().into_bytes(),
        remote_port: conn.peer.port(),
        body,
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect(),
        environ,
    }
}

/// The answer to a failed forward. A request that had a body may have left part of it unread
/// (a broken or oversized body, a worker that failed or timed out while it was being sent):
/// hyper then ends the connection after the answer, so the answer says so.
fn forward_failed(e: &forward::ForwardError, body: BodyKind) -> Refusal {
    match body {
        BodyKind::Empty => Refusal::from(e),
        _ => Refusal::from(e).closing(),
    }
}

/// The size of a request's head as sent, counting one byte of whitespace where the syntax
/// needs it (the raw target when it was rewritten, else the URI hyper parsed).
fn head_bytes<B>(req: &Request<B>, raw_target: Option<&[u8]>) -> usize {
    let target = raw_target.map_or_else(|| req.uri().to_string().len(), <[u8]>::len);
    // "METHOD TARGET HTTP/1.1\r\n" ... "\r\n"
    let line = req.method().as_str().len() + 1 + target + 1 + 8 + 2 + 2;
    line + req.headers().iter().map(|(k, v)| k.as_str().len() + 2 + v.len() + 2).sum::<usize>()
}

/// hyper's `max_buf_size` bounds its read buffer, not the head: a head that arrives in one
/// large read can pass it almost twofold. The configured limit is enforced here exactly.
/// How the client delimits its body. hyper has already refused conflicting framing.
/// `streams`: a body follows the head, as an HTTP/2 request without `content-length` says by
/// not ending its stream (HTTP/2 has no `Transfer-Encoding`).
fn body_kind(h: &HeaderMap, streams: bool) -> Option<BodyKind> {
    if h.contains_key(header::TRANSFER_ENCODING) {
        return Some(BodyKind::Chunked);
    }
    match h.get(header::CONTENT_LENGTH) {
        None if streams => Some(BodyKind::Chunked),
        None => Some(BodyKind::Empty),
        Some(v) => match v.to_str().ok()?.trim().parse::<u64>().ok()? {
            0 => Some(BodyKind::Empty),
            n => Some(BodyKind::Length(n)),
        },
    }
}

/// `SERVER_NAME`: the Host header without its port, else the local address.
fn server_name(host: &str, local: SocketAddr) -> String {
    let name = if host.starts_with('[') {
        host.split_inclusive(']').next().unwrap_or(host)
    } else {
        host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
    };
    if name.is_empty() {
        local.ip().to_string()
    } else {
        name.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use forward::ForwardError;

    /// A 100 KiB header passed a 64 KiB `max_header_bytes` when it arrived in one read.
    #[test]
    fn head_bytes_counts_the_whole_head() {
        let req = Request::builder()
            .method("GET")
            .uri("/a/pid")
            .header("host", "x")
            .header("x-big", "v".repeat(100 << 10))
            .body(())
            .expect("request");
        let n = head_bytes(&req, None);
        // "GET /a/pid HTTP/1.1\r\n" + "host: x\r\n" + "x-big: " + 100 KiB + "\r\n" + "\r\n"
        assert_eq!(n, 21 + 9 + 7 + (100 << 10) + 2 + 2);
        assert!(n > 64 << 10);
        assert_eq!(head_bytes(&req, Some(b"/a/\xe9")), n - 6 + 4);
        let r = Refusal::head_too_large().into_response();
        assert_eq!(r.status(), http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert_eq!(r.headers()[header::CONNECTION], "close");
    }

    /// A bad chunked body used to get a 400 without `Connection: close`, and then the close.
    #[test]
    fn a_failed_forward_with_a_body_announces_the_close() {
        for e in [
            ForwardError::BadBody,
            ForwardError::BodyTooLarge(1),
            ForwardError::WorkerGone,
            ForwardError::Timeout(Duration::from_secs(1)),
        ] {
            for body in [BodyKind::Chunked, BodyKind::Length(10)] {
                let r = forward_failed(&e, body).into_response();
                assert_eq!(r.headers()[header::CONNECTION], "close", "{e:?}");
            }
        }
        let r = forward_failed(&ForwardError::WorkerGone, BodyKind::Empty).into_response();
        assert!(!r.headers().contains_key(header::CONNECTION));
    }
}

//! The admin listener: the operator's JSON API and the signup page, and `/metrics` for
//! Prometheus. It has its own address (loopback by default) and is never reachable through
//! the public front door.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::clientio::ClientIo;
use crate::front::State;
use crate::respond;
use crate::respond::Body;

pub mod api;
mod claim;
mod csrf;
mod error;
mod json;
mod owner;
mod page;
mod ratelimit;
pub mod signup;
pub mod siteuser;
pub(crate) mod tenants;
pub mod tokens;

/// What the admin listener keeps for the server's lifetime: the server's state, and what only
/// the admin endpoints use. One per server (`run` makes it), so two servers in one process
/// share none of it.
pub struct Admin {
    pub state: Arc<State>,
    /// Public signups per client address (`signup_limit` per `signup_window`).
    page_limit: ratelimit::RateLimit,
    /// The signup form's token key.
    csrf: csrf::Key,
    /// Provisioning commands running at once.
    provisioning: tokio::sync::Semaphore,
    /// Site names being created.
    claims: claim::Claims,
    /// The API's bearer tokens (`tokens_file`, re-read when it changes).
    tokens: tokens::Tokens,
}

impl Admin {
    pub fn new(state: Arc<State>) -> Admin {
        Admin {
            state,
            page_limit: ratelimit::RateLimit::default(),
            csrf: csrf::Key::random(),
            provisioning: tokio::sync::Semaphore::new(signup::CONCURRENT_PROVISIONING),
            claims: claim::Claims::default(),
            tokens: tokens::Tokens::default(),
        }
    }
}

/// Serve the admin listener until `shutdown` resolves (the server's `Stopping` phase).
///
/// The admin listener faces whoever may sign up, so it has the front door's defences: a cap on
/// open connections taken before `accept`, `send_timeout` on every write, and
/// `header_read_timeout`.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>) {
    let state = admin.state.clone();
    let send_timeouts = state.metrics.client_timeouts("send");
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let phases = state.phases.clone();
    // Accept while the front door does: after an upgrade's hand-over the successor answers
    // the admin API, and a shutdown takes no new signup.
    let not_running = || crate::phase::reached(phases.subscribe(), |p| !p.accepting());
    loop {
        let permit = tokio::select! {
            p = state.admin_connections.acquire() => p,
            _ = not_running() => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("admin accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = not_running() => break,
        };
        let cfg = state.config();
        let stream = ClientIo::new(stream, cfg.send_timeout, send_timeouts.clone());
        let ad = admin.clone();
        let svc = service_fn(move |req| {
            let ad = ad.clone();
            async move { Ok::<_, Infallible>(handle(ad, req, peer).await) }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(cfg.header_read_timeout)
            .serve_connection(TokioIo::new(stream), svc);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = conn.await {
                tracing::debug!(client = %peer, "admin connection ended: {e}");
            }
        });
    }
    drop(listener);
    // Requests in flight (a signup provisioning a site) finish, as the front door's do, up to
    // `drain_timeout`; a fast stop does not wait.
    let drain = state.config().drain_timeout;
    let fast = crate::phase::reached(phases.subscribe(), |p| {
        matches!(p, crate::phase::Phase::Stopping { fast: true } | crate::phase::Phase::Stopped)
    });
    tokio::select! {
        r = tokio::time::timeout(drain, graceful.shutdown()) => if r.is_err() {
            tracing::warn!("admin requests still running after {drain:?} (drain_timeout); closing them");
        },
        _ = fast => {}
    }
}

async fn handle(ad: Arc<Admin>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let st = &ad.state;
    match req.uri().path() {
        "/healthz" => respond::page(StatusCode::OK, "ok"),
        "/signup" => page::handle(&ad, req, peer).await,
        p if p.starts_with("/api/") => api::handle(&ad, req, peer).await,
        "/metrics" if st.config().admin.as_ref().is_some_and(|a| a.metrics_token) => {
            match api::authorize(&ad, &st.config(), req.headers()) {
                Ok(()) => metrics(st).await,
                Err(denied) => *denied,
            }
        }
        "/metrics" => metrics(st).await,
        _ => respond::page(StatusCode::NOT_FOUND, "No such admin resource."),
    }
}

/// The `/metrics` response: everything in the Prometheus text format.
async fn metrics(st: &Arc<State>) -> Response<Body> {
    let st = st.clone();
    let text = tokio::task::spawn_blocking(move || {
        let cfg = st.config();
        st.metrics.render(&st.registry, &cfg)
    })
    .await;
    match text {
        Ok(text) => {
            let mut r = Response::new(respond::full(text));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r.headers_mut()
                .insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => {
            tracing::error!("metrics collection failed: {e}");
            respond::page(StatusCode::INTERNAL_SERVER_ERROR, "Metrics collection failed.")
        }
    }
}

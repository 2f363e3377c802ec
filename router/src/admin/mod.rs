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
mod tenants;
pub mod tokens;

/// Serve the admin listener until `shutdown` resolves (the server's `Stopping` phase).
///
/// The admin listener faces whoever may sign up, so it has the front door's defences: a cap on
/// open connections taken before `accept`, `send_timeout` on every write, and
/// `header_read_timeout`.
pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let send_timeouts = state.metrics.client_timeouts("send");
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = state.admin_connections.acquire() => p,
            _ = &mut shutdown => return,
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
            _ = &mut shutdown => return,
        };
        let cfg = state.config();
        let stream = ClientIo::new(stream, cfg.send_timeout, send_timeouts.clone());
        let st = state.clone();
        let svc = service_fn(move |req| {
            let st = st.clone();
            async move { Ok::<_, Infallible>(handle(st, req, peer).await) }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(cfg.header_read_timeout)
            .serve_connection(TokioIo::new(stream), svc);
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = conn.await {
                tracing::debug!(client = %peer, "admin connection ended: {e}");
            }
        });
    }
}

async fn handle(_st: Arc<State>, req: Request<Incoming>, _peer: SocketAddr) -> Response<Body> {
    match req.uri().path() {
        "/healthz" => respond::page(StatusCode::OK, "ok"),
        "/signup" => page::handle(_st, req, _peer).await,
        p if p.starts_with("/api/") => api::handle(_st, req, _peer).await,
        "/metrics" if _st.config().admin.as_ref().is_some_and(|a| a.metrics_token) => {
            match api::authorize(&_st.config(), req.headers()) {
                Ok(()) => metrics(&_st).await,
                Err(denied) => *denied,
            }
        }
        "/metrics" => metrics(&_st).await,
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

//! The operator's JSON API under `/api/v1`, described in `docs/openapi.yaml`. Every request
//! needs `Authorization: Bearer TOKEN` (401 without, 403 with a token not in `tokens_file`).
//! Errors are `{"error": "..."}`. Each changing request is logged (`paddock::admin`), never
//! with its token or password.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::json::{describe, error, info, json_response, ok, with_tenant};
use super::signup::{self, SignupRequest};
use super::tenants;
use super::tokens::Denied;
use super::Admin;
use crate::front::State;
use crate::respond::Body;
use paddock_config::Config;
use paddock_supervise::pool::Pool;

/// Largest request body the API reads.
pub const MAX_BODY: usize = 64 * 1024;

/// Check the bearer token for an admin resource (also usable for `/metrics`): `Err` holds
/// the 401 or 403 answer.
pub fn authorize(
    ad: &Admin,
    cfg: &Config,
    headers: &http::HeaderMap,
) -> Result<(), Box<Response<Body>>> {
    let file = cfg.admin.as_ref().and_then(|a| a.tokens_file.as_deref());
    match ad.tokens.check(file, headers) {
        Ok(()) => Ok(()),
        Err(Denied::Missing) => {
            let mut r = error(StatusCode::UNAUTHORIZED, "a bearer token is required");
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer realm=\"paddock\""),
            );
            Err(Box::new(r))
        }
        Err(Denied::Wrong) => {
            Err(Box::new(error(StatusCode::FORBIDDEN, "this token is not accepted")))
        }
    }
}

pub async fn handle(ad: &Admin, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let cfg = ad.state.config();
    if let Err(r) = authorize(ad, &cfg, req.headers()) {
        return *r;
    }
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = route(ad, &cfg, req, &method, &path).await;
    if method != Method::GET {
        tracing::info!(target: "paddock::admin", client = %peer.ip(), %method, path, status = resp.status().as_u16());
    }
    resp
}

async fn route(
    ad: &Admin,
    cfg: &Config,
    req: Request<Incoming>,
    method: &Method,
    path: &str,
) -> Response<Body> {
    let st = &*ad.state;
    let rest = path.strip_prefix("/api/v1").unwrap_or("");
    let segs: Vec<&str> = rest.trim_end_matches('/').split('/').skip(1).collect();
    let m = method.clone();
    match (segs.as_slice(), m) {
        (["tenants"], Method::GET) => list(st, cfg),
        (["tenants"], Method::POST) => match read_json::<SignupRequest>(req).await {
            Ok(r) => create(ad, &r).await,
            Err(e) => {
                st.metrics.signup(crate::metrics::Signup::Invalid);
                *e
            }
        },
        (["tenants", name], Method::GET) => with_tenant(cfg, name, |t| ok(info(st, cfg, &t))),
        (["tenants", name], Method::DELETE) => tenants::delete(st, cfg, name).await,
        (["tenants", name, "disable"], Method::POST) => tenants::set_disabled(st, cfg, name, true),
        (["tenants", name, "enable"], Method::POST) => tenants::set_disabled(st, cfg, name, false),
        (["tenants", name, "restart"], Method::POST) => tenants::restart(st, cfg, name),
        (["reload"], Method::POST) => match st.reload() {
            Ok(()) => ok(json!({ "reloaded": true })),
            Err(d) => error(StatusCode::UNPROCESSABLE_ENTITY, &d.to_string()),
        },
        (["upgrade"], Method::POST) => match st.upgrade.upgrade().await {
            Ok(pid) => ok(json!({ "upgraded": true, "pid": pid })),
            Err(r) if r.busy => error(StatusCode::CONFLICT, &r.why),
            Err(r) => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("upgrade failed, the running process serves on: {}", r.why),
            ),
        },
        (["cluster", ..], m) => cluster(st, req, &segs[1..], m).await,
        (["tenants"], _) => not_allowed("GET, POST"),
        (["tenants", _], _) => not_allowed("GET, DELETE"),
        (["tenants", _, "disable" | "enable" | "restart"] | ["reload"] | ["upgrade"], _) => {
            not_allowed("POST")
        }
        _ => error(StatusCode::NOT_FOUND, "no such API resource"),
    }
}

/// `/api/v1/cluster...`: this node's view of the cluster, a tenant's owner, drain, move.
async fn cluster(st: &State, req: Request<Incoming>, segs: &[&str], m: Method) -> Response<Body> {
    let Some(c) = st.cluster() else {
        return error(StatusCode::NOT_FOUND, "this node is not part of a cluster (no [cluster])");
    };
    match (segs, m) {
        ([], Method::GET) => ok(json!(c.status())),
        (["tenants", name], Method::GET) => match c.owner(name).await {
            Ok(owner) => ok(json!({
                "tenant": name,
                "owner": owner.map(|o| json!({ "node": o.node, "addr": o.addr })),
            })),
            Err(e) => cluster_error(&e),
        },
        (["tenants", name, "move"], Method::POST) => {
            #[derive(serde::Deserialize)]
            struct Move {
                to: String,
            }
            let to = match read_json::<Move>(req).await {
                Ok(m) => m.to,
                Err(e) => return *e,
            };
            match c.move_tenant(&st.registry, name, &to).await {
                Ok(()) => ok(json!({ "tenant": name, "owner": to })),
                Err(crate::cluster::MoveError::NotOwner(_)) => {
                    let owner = c.owner(name).await.ok().flatten().map(|o| o.node);
                    let why = match owner {
                        Some(o) => format!("{name} is owned by {o}: ask that node's admin API"),
                        None => format!("{name} is owned by no node; its next request starts it"),
                    };
                    error(StatusCode::CONFLICT, &why)
                }
                Err(crate::cluster::MoveError::Refused(why)) => error(StatusCode::CONFLICT, &why),
                Err(crate::cluster::MoveError::Cluster(e)) => cluster_error(&e),
            }
        }
        (["drain"], Method::POST) => match c.drain(&st.registry).await {
            Ok(n) => ok(json!({ "released": n })),
            Err(e) => cluster_error(&e),
        },
        (["activate"], Method::POST) => match c.activate().await {
            Ok(()) => ok(json!({ "state": "active" })),
            Err(e) => cluster_error(&e),
        },
        ([], _) | (["tenants", _], _) => not_allowed("GET"),
        (["tenants", _, "move"] | ["drain"] | ["activate"], _) => not_allowed("POST"),
        _ => error(StatusCode::NOT_FOUND, "no such API resource"),
    }
}

/// 503 when etcd cannot be reached or this node has no live lease, else 500.
fn cluster_error(e: &paddock_cluster::ClusterError) -> Response<Body> {
    let status = if e.is_unavailable() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    error(status, &e.to_string())
}

fn list(st: &State, cfg: &Config) -> Response<Body> {
    // One look at the running pools for the whole list: there may be thousands of tenants.
    let pools: HashMap<String, Arc<Pool>> =
        st.registry.pools().into_iter().map(|p| (p.spec.name.clone(), p)).collect();
    let all: Vec<Value> =
        cfg.all_tenants().iter().map(|t| describe(st, cfg, t, pools.get(&t.name))).collect();
    ok(json!({ "tenants": all }))
}

async fn create(ad: &Admin, r: &SignupRequest) -> Response<Body> {
    match signup::create(ad, r).await {
        Ok(spec) => {
            let cfg = ad.state.config();
            json_response(StatusCode::CREATED, &info(&ad.state, &cfg, &spec))
        }
        Err(e) => signup_error(&e),
    }
}

/// The JSON error for a failed signup (with `Retry-After` when rate-limited).
pub fn signup_error(e: &signup::SignupError) -> Response<Body> {
    let mut r = error(e.status(), &e.to_string());
    if let signup::SignupError::RateLimited(secs) = e {
        if let Ok(v) = http::HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    r
}

/// Read a JSON body of at most [`MAX_BODY`] bytes: 400 if it is not valid JSON of the
/// expected shape, 413 if too large.
pub async fn read_json<T: serde::de::DeserializeOwned>(
    req: Request<Incoming>,
) -> Result<T, Box<Response<Body>>> {
    let bytes = read_body(req).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, &format!("invalid JSON body: {e}"))))
}

pub async fn read_body(req: Request<Incoming>) -> Result<Bytes, Box<Response<Body>>> {
    let status = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => return Ok(b.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            (StatusCode::PAYLOAD_TOO_LARGE, "the request body is too large".to_string())
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("cannot read the body: {e}")),
    };
    Err(Box::new(error(status.0, &status.1)))
}

fn not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here");
    r.headers_mut().insert(header::ALLOW, http::HeaderValue::from_static(allow));
    r
}

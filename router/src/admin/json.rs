//! The admin API's JSON answers, and a tenant as the API shows it.

use std::sync::Arc;

use http::{header, Response, StatusCode};
use serde_json::{json, Value};

use crate::front::State;
use crate::respond;
use crate::respond::Body;
use paddock_config::Config;
use paddock_supervise::pool::Pool;

/// Run `f` on the tenant `name`, or answer 404.
pub fn with_tenant(
    cfg: &Config,
    name: &str,
    f: impl FnOnce(paddock_config::tenant::TenantSpec) -> Response<Body>,
) -> Response<Body> {
    match cfg.tenant(name) {
        Some(t) => f(t),
        None => error(StatusCode::NOT_FOUND, &format!("no tenant named `{name}`")),
    }
}

/// A tenant as the API shows it: where it lives, whether it is disabled, and its pool (null
/// when no pool runs: tenants cost nothing until their first request).
pub fn info(st: &State, cfg: &Config, t: &paddock_config::tenant::TenantSpec) -> Value {
    let pool = st.registry.pools().into_iter().find(|p| p.spec.name == t.name);
    describe(st, cfg, t, pool.as_ref())
}

/// `start_error`: why the last start of its pool failed (`null` if none did since the last
/// start that worked), so an operator sees the cause without reading the log.
pub fn describe(
    st: &State,
    cfg: &Config,
    t: &paddock_config::tenant::TenantSpec,
    pool: Option<&Arc<Pool>>,
) -> Value {
    let start_error = st.registry.start_failure(&t.name).map(
        |f| json!({ "error": f.error, "at": humantime::format_rfc3339_seconds(f.at).to_string() }),
    );
    let pool = pool.map(|p| {
        let (status, error) = match p.status() {
            paddock_supervise::pool::Status::Starting => ("starting", None),
            paddock_supervise::pool::Status::Ready => ("ready", None),
            paddock_supervise::pool::Status::Failed(why) => ("failed", Some(why.to_string())),
            paddock_supervise::pool::Status::Stopped => ("stopped", None),
        };
        json!({
            "status": status,
            "error": error,
            "processes": p.spec.settings.process.processes,
            "threads": p.spec.settings.process.threads,
            "ready_pids": p.ready_pids(),
            "in_flight": p.in_flight(),
            "queued": p.queued(),
            "parked": p.is_parked(),
            "user": p.identity.user_name,
        })
    });
    json!({
        "name": t.name,
        "dir": t.dir.display().to_string(),
        "mount": t.mount,
        "url": format!("{}{}/", public_url(cfg), t.mount),
        "configured": cfg.tenants.contains_key(&t.name),
        "disabled": crate::discovery::is_disabled(cfg, t),
        "pool": pool,
        "start_error": start_error,
    })
}

/// Public base URL of the front door (no trailing slash).
pub fn public_url(cfg: &Config) -> String {
    cfg.admin
        .as_ref()
        .and_then(|a| a.signup.public_url.clone())
        .unwrap_or_else(|| format!("http://{}", cfg.listen))
}

pub fn ok(v: Value) -> Response<Body> {
    json_response(StatusCode::OK, &v)
}

pub fn error(status: StatusCode, msg: &str) -> Response<Body> {
    json_response(status, &json!({ "error": msg }))
}

pub fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let mut text = v.to_string();
    text.push('\n');
    let mut r = Response::new(respond::full(text));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    r
}

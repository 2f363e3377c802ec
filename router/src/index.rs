//! The index of tenants served at the mount point (`/trac/`), like Trac's own project index
//! for `TRAC_ENV_PARENT_DIR`, but without starting any worker.
//!
//! Each tenant's `conf/trac.ini` is a file its tenant controls: it is read beneath the tenant
//! directory with no symlink, only if it is a regular file of at most
//! [`TRAC_INI_CAP`](paddock_sys::safefs::TRAC_INI_CAP) bytes, and the whole page is built on the
//! blocking pool, never on the async threads.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use http::{header, Response, StatusCode};

use crate::respond::Body;
use crate::respond::{escape, full};
use paddock_config::tenant::TenantSpec;
use paddock_config::Config;
use paddock_sys::safefs::{self, Place};

/// The index page, built on the blocking pool (it lists the sites directory and reads a file
/// per tenant).
pub async fn respond(cfg: Arc<Config>) -> Response<Body> {
    match tokio::task::spawn_blocking(move || render(&cfg)).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("index page failed: {e}");
            crate::respond::page(StatusCode::INTERNAL_SERVER_ERROR, "The index is unavailable.")
        }
    }
}

/// Render the index page: the configured template, or the built-in one. Blocking.
pub fn render(cfg: &Config) -> Response<Body> {
    let tenants = cfg.list_tenants();
    let mut items = String::new();
    for t in &tenants {
        let (name, descr) = project_info(t);
        items.push_str(&format!(
            "<li><a href=\"{href}/\">{name}</a>{descr}</li>\n",
            href = escape(&t.mount),
            name = escape(&name),
            descr = if descr.is_empty() {
                String::new()
            } else {
                format!(" &mdash; {}", escape(&descr))
            },
        ));
    }
    let list = if tenants.is_empty() {
        "<p>No projects yet.</p>".to_string()
    } else {
        format!("<ul class=\"tenants\">\n{items}</ul>")
    };
    let title = escape(&cfg.index_title);
    let html = match &cfg.index_template {
        Some(t) => t.replace("{{title}}", &title).replace("{{tenants}}", &list),
        None => format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
             <body><h1>{title}</h1>\n{list}\n</body></html>\n"
        ),
    };
    let mut r = Response::new(full(html));
    *r.status_mut() = StatusCode::OK;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, "text/html; charset=utf-8".parse().expect("static"));
    r
}

/// `[project] name` and `descr` from a Trac tenant's `conf/trac.ini`, falling back to the
/// tenant name. Read only for the index page.
fn project_info(t: &TenantSpec) -> (String, String) {
    let text = match safefs::read(&Place::beneath(&t.dir, "conf/trac.ini"), safefs::TRAC_INI_CAP) {
        Ok((bytes, _)) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            warn_once(t.dir.join("conf/trac.ini"), &t.name, &e);
            String::new()
        }
    };
    let mut in_project = false;
    let (mut name, mut descr) = (String::new(), String::new());
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_project = line == "[project]";
        } else if in_project {
            if let Some((k, v)) = line.split_once('=') {
                match k.trim() {
                    "name" => name = v.trim().to_string(),
                    "descr" => descr = v.trim().to_string(),
                    _ => {}
                }
            }
        }
    }
    if name.is_empty() || name == "My Project" {
        name = t.name.clone();
    }
    if descr == "My example project" {
        descr.clear();
    }
    (name, descr)
}

/// Log a skipped `trac.ini` once per file (until the set is full, then it starts over).
fn warn_once(file: PathBuf, tenant: &str, e: &std::io::Error) {
    static WARNED: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);
    let mut warned = WARNED.lock().unwrap_or_else(|p| p.into_inner());
    let set = warned.get_or_insert_with(HashSet::new);
    if set.len() >= 10_000 {
        set.clear();
    }
    if set.insert(file) {
        tracing::warn!(tenant, "index: conf/trac.ini skipped, the tenant is listed by name: {e}");
    }
}

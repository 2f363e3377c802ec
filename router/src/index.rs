//! The index of tenants served at the mount point (`/trac/`), like Trac's own project index
//! for `TRAC_ENV_PARENT_DIR`, but without starting any worker.

use http::{header, Response, StatusCode};

use crate::config::Config;
use crate::forward::Body;
use crate::respond::{escape, full};
use crate::tenant::TenantSpec;

/// Render the index page: the configured template, or the built-in one.
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
    let text = std::fs::read_to_string(t.dir.join("conf/trac.ini")).unwrap_or_default();
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

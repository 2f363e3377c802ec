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
    let projects: Vec<Project> = tenants
        .iter()
        .map(|t| {
            let (name, descr) = project_info(t);
            Project { mount: t.mount.clone(), name, descr }
        })
        .collect();
    let title = escape(&cfg.index_title);
    let signup = signup_url(cfg);
    let mut r = match &cfg.index_template {
        Some(t) => {
            // A custom template gets the list as it always did (the same markup), and may
            // place the count and the signup link too.
            let html = t
                .replace("{{title}}", &title)
                .replace("{{tenants}}", &plain_list(&projects))
                .replace("{{count}}", &projects.len().to_string())
                .replace("{{signup}}", &signup.as_deref().map(signup_link).unwrap_or_default());
            Response::new(full(html))
        }
        None => {
            let mut r = Response::new(full(builtin_page(&title, &projects, signup.as_deref())));
            r.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                http::HeaderValue::from_str(&format!(
                    "default-src 'none'; style-src 'unsafe-inline'; script-src '{}'; img-src data:",
                    script_hash()
                ))
                .expect("base64 is a valid header value"),
            );
            r
        }
    };
    *r.status_mut() = StatusCode::OK;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, "text/html; charset=utf-8".parse().expect("static"));
    r
}

/// One listed tenant.
struct Project {
    mount: String,
    name: String,
    descr: String,
}

/// Where the signup page is, when signup is on: `[admin] signup_url`, else the admin
/// listener's `/signup`.
fn signup_url(cfg: &Config) -> Option<String> {
    let admin = cfg.admin.as_ref().filter(|a| a.signup.enabled)?;
    Some(
        admin
            .signup
            .signup_url
            .clone()
            .unwrap_or_else(|| format!("http://{}/signup", admin.listen)),
    )
}

fn signup_link(url: &str) -> String {
    format!("<a class=\"signup\" href=\"{}\">Start a new project</a>", escape(url))
}

/// The list a custom template's `{{tenants}}` receives (unchanged since templates exist).
fn plain_list(projects: &[Project]) -> String {
    if projects.is_empty() {
        return "<p>No projects yet.</p>".to_string();
    }
    let mut items = String::new();
    for p in projects {
        items.push_str(&format!(
            "<li><a href=\"{href}/\">{name}</a>{descr}</li>\n",
            href = escape(&p.mount),
            name = escape(&p.name),
            descr = match p.descr.is_empty() {
                true => String::new(),
                false => format!(" &mdash; {}", escape(&p.descr)),
            },
        ));
    }
    format!("<ul class=\"tenants\">\n{items}</ul>")
}

/// The filter: hides the projects whose name, description and path do not all contain the
/// words typed; the count follows. Without JavaScript every project is shown.
const FILTER_SCRIPT: &str = r##"
(function () {
  var input = document.getElementById("filter");
  var items = Array.prototype.slice.call(document.querySelectorAll("#projects > li"));
  var shown = document.getElementById("shown");
  var none = document.getElementById("no-match");
  input.hidden = false;
  input.addEventListener("input", function () {
    var words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    var n = 0;
    items.forEach(function (li) {
      var text = li.getAttribute("data-search");
      var hit = words.every(function (w) { return text.indexOf(w) >= 0; });
      li.hidden = !hit;
      if (hit) n++;
    });
    shown.textContent = words.length ? n + " of " + items.length + " shown" : "";
    none.hidden = n > 0;
  });
})();
"##;

/// `sha256-...` of [`FILTER_SCRIPT`], for the page's Content-Security-Policy.
fn script_hash() -> &'static str {
    use base64::Engine;
    use sha2::Digest;
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        let digest = sha2::Sha256::digest(FILTER_SCRIPT.as_bytes());
        format!("sha256-{}", base64::engine::general_purpose::STANDARD.encode(digest))
    })
}

const STYLE: &str = "
:root { color-scheme: light dark; --fg: #1d2125; --muted: #5f6b76; --bg: #f6f7f9;
  --card: #fff; --line: #dde1e6; --accent: #2a62c9; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6e8eb; --muted: #9aa5b1;
  --bg: #16181b; --card: #1f2226; --line: #30353b; --accent: #7aa7ff; } }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, \"Segoe UI\", Roboto, sans-serif;
  color: var(--fg); background: var(--bg); }
header { background: var(--card); border-bottom: 1px solid var(--line); }
.wrap { max-width: 60rem; margin: 0 auto; padding: 1.25rem 1.5rem; }
header .wrap { display: flex; flex-wrap: wrap; align-items: baseline; gap: .5rem 1.5rem; }
h1 { margin: 0; font-size: 1.6rem; font-weight: 650; }
.count { color: var(--muted); }
.signup { margin-left: auto; padding: .45rem .9rem; border-radius: .4rem; background: var(--accent);
  color: #fff; text-decoration: none; font-weight: 600; }
.signup:hover, .signup:focus { filter: brightness(1.1); }
#filter { width: 100%; margin: 0 0 1rem; padding: .6rem .8rem; font: inherit; color: inherit;
  background: var(--card); border: 1px solid var(--line); border-radius: .4rem; }
#filter:focus { outline: 2px solid var(--accent); outline-offset: 1px; }
#shown { color: var(--muted); font-size: .9rem; margin: -.5rem 0 .75rem; min-height: 1em; }
#projects { list-style: none; margin: 0; padding: 0; display: grid; gap: .75rem;
  grid-template-columns: repeat(auto-fill, minmax(16rem, 1fr)); }
#projects li { background: var(--card); border: 1px solid var(--line); border-radius: .5rem; }
#projects li[hidden] { display: none; }
#projects a { display: block; padding: .9rem 1rem; color: inherit; text-decoration: none;
  height: 100%; border-radius: .5rem; }
#projects a:hover, #projects a:focus { outline: 2px solid var(--accent); }
.name { display: block; font-weight: 600; color: var(--accent); overflow-wrap: anywhere; }
.descr { display: block; margin-top: .25rem; color: var(--fg); }
.path { display: block; margin-top: .4rem; color: var(--muted); font-size: .85rem;
  font-family: ui-monospace, monospace; overflow-wrap: anywhere; }
.empty { color: var(--muted); }
";

/// The built-in page: a header with the title, the number of projects and the signup link,
/// a filter box, and a card per project (name, description, address).
fn builtin_page(title: &str, projects: &[Project], signup: Option<&str>) -> String {
    let mut cards = String::new();
    for p in projects {
        let search = format!("{} {} {}", p.name, p.descr, p.mount).to_lowercase();
        cards.push_str(&format!(
            "<li data-search=\"{search}\"><a href=\"{href}/\"><span class=\"name\">{name}</span>{descr}\
             <span class=\"path\">{path}/</span></a></li>\n",
            search = escape(&search),
            href = escape(&p.mount),
            name = escape(&p.name),
            path = escape(&p.mount),
            descr = match p.descr.is_empty() {
                true => String::new(),
                false => format!("<span class=\"descr\">{}</span>", escape(&p.descr)),
            },
        ));
    }
    let count = match projects.len() {
        1 => "1 project".to_string(),
        n => format!("{n} projects"),
    };
    let body = if projects.is_empty() {
        "<p class=\"empty\">No projects yet.</p>".to_string()
    } else {
        format!(
            "<input id=\"filter\" type=\"search\" placeholder=\"Filter projects\" \
             aria-label=\"Filter projects\" autocomplete=\"off\" hidden>\n\
             <p id=\"shown\" aria-live=\"polite\"></p>\n\
             <ul id=\"projects\">\n{cards}</ul>\n\
             <p id=\"no-match\" class=\"empty\" hidden>No project matches.</p>\n\
             <script>{FILTER_SCRIPT}</script>"
        )
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head>\n<body>\
         <header><div class=\"wrap\"><h1>{title}</h1><span class=\"count\">{count}</span>{signup}</div></header>\n\
         <main class=\"wrap\">\n{body}\n</main>\n</body></html>\n",
        signup = signup.map(signup_link).unwrap_or_default(),
    )
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

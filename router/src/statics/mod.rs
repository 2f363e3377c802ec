//! Static files served by the router straight from disk, as Apache's `Alias` does in a classic
//! Trac deployment (`/chrome/common` → Trac's `htdocs`, `/chrome/site` → the site's `htdocs`):
//! such requests never start a pool nor take one of its slots.
//!
//! Only mapped prefixes are served, matched on the tenant's `PATH_INFO` (below its mount) once
//! normalised; a miss below a mapped prefix is a 404 from the router (as with `Alias`), never a
//! fall-through to the app. A path below a mapped prefix, as sent or once normalised, that has
//! `.` or `..` segments is a 404 too. See `docs/static.md`.

mod body;
mod conditional;
mod resolve;
mod respond;

use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderMap, Method, Response};

use crate::respond::Body;
use paddock_config::statics::StaticSettings;
use paddock_config::tenant::TenantSpec;
use paddock_rules::path;
use paddock_sys::safefs::Place;

pub use conditional::{parse_range, Ranged, Validators};
pub use resolve::Miss;

/// A request for a static file: where to look, what for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The mapped directory; `None` when it cannot be known (`{virtualenv}` without one).
    pub root: Option<PathBuf>,
    /// Where trust in `root` ends: below a tenant directory, nothing is followed.
    pub place: Option<Place>,
    /// The normalised path below the prefix, e.g. `/css/trac.css`.
    pub rest: Vec<u8>,
    pub max_age: Duration,
    /// Refused before looking (dot segments); served as 404.
    pub refused: bool,
}

/// The mapping of a tenant's static settings whose prefix `path_info` falls under, with the
/// rest of the path; `None` sends the request to the app.
pub fn lookup<'a>(
    settings: &'a StaticSettings,
    path_info: &[u8],
) -> Option<(&'a str, Vec<u8>, bool)> {
    if settings.mappings.is_empty() {
        return None;
    }
    let normalised = path::normalise(path_info);
    let dotted = path_info.split(|&b| b == b'/').any(|s| s == b"." || s == b"..");
    for (prefix, _) in &settings.mappings {
        if let Some(rest) = below(&normalised, prefix.as_bytes()) {
            return Some((prefix, rest.to_vec(), dotted));
        }
    }
    if dotted {
        // As sent, below a prefix that normalising left: refused, not handed to the app.
        let collapsed = collapse(path_info);
        for (prefix, _) in &settings.mappings {
            if below(&collapsed, prefix.as_bytes()).is_some() {
                return Some((prefix, Vec::new(), true));
            }
        }
    }
    None
}

/// The static file `path_info` of tenant `spec` names, if it falls under a mapping.
pub fn find(
    settings: &StaticSettings,
    spec: &TenantSpec,
    sites: Option<&std::path::Path>,
    path_info: &[u8],
) -> Option<Hit> {
    let (prefix, rest, refused) = lookup(settings, path_info)?;
    let dir = settings.mappings.iter().find(|(p, _)| p == prefix).map(|(_, d)| d.as_str())?;
    let root = expand(dir, spec, sites);
    let place = root.as_deref().map(|r| Place::of(r, Some(&spec.dir), sites));
    Some(Hit { root, place, rest, max_age: settings.max_age, refused })
}

/// Fill a directory's placeholders for one tenant; `None` if it needs a missing virtualenv.
pub fn expand(dir: &str, spec: &TenantSpec, sites: Option<&std::path::Path>) -> Option<PathBuf> {
    let venv = spec.settings.process.virtualenv.as_deref();
    if dir.contains("{virtualenv}") && venv.is_none() {
        return None;
    }
    let sites = sites.map(|s| s.display().to_string()).unwrap_or_default();
    let dir = dir
        .replace("{tenant_dir}", &spec.dir.display().to_string())
        .replace("{tenant}", &spec.name)
        .replace("{sites}", &sites)
        .replace("{virtualenv}", venv.unwrap_or_default());
    Some(PathBuf::from(dir))
}

/// Answer a request for a static file.
pub async fn serve(hit: Hit, method: &Method, headers: &HeaderMap) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        return respond::method_not_allowed();
    }
    let (Some(root), false) = (hit.place.clone(), hit.refused) else {
        return respond::not_found();
    };
    let rest = hit.rest.clone();
    let opened = tokio::task::spawn_blocking(move || resolve::open(&root, &rest)).await;
    match opened {
        Ok(Ok(file)) => respond::file(file, &hit, method, headers).await,
        Ok(Err(miss)) => {
            tracing::debug!(path = %String::from_utf8_lossy(&hit.rest), "static file not served: {miss}");
            respond::not_found()
        }
        Err(e) => {
            tracing::error!("static file lookup failed: {e}");
            respond::not_found()
        }
    }
}

/// `rest` when `path` is `prefix` or below it (segment boundary).
fn below<'a>(path: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let rest = path.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with(b"/")).then_some(rest)
}

/// `path` with empty segments dropped but dot segments kept.
fn collapse(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len() + 1);
    for segment in path.split(|&b| b == b'/').filter(|s| !s.is_empty()) {
        out.push(b'/');
        out.extend_from_slice(segment);
    }
    out
}

#[cfg(test)]
mod tests;

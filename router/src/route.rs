//! From a request to a decision: which tenant, with which `SCRIPT_NAME`/`PATH_INFO` and extra
//! environ, or a response the router gives itself (index, 403, 404, redirect, 400).
//!
//! Rules run first, on the normalised path; if they pick no tenant and answer nothing, the
//! default mounts apply: configured tenants at their `mount`, discovered ones at
//! `<mount>/<name>`, the longest matching prefix winning. Whatever decided, the raw path must
//! name the same mount literally, or the request is refused (400).

use paddock_config::tenant::TenantSpec;
use paddock_config::Config;
use paddock_rules::path::{self, PathError, Target};
use paddock_rules::{Action, FileProbe, RequestInfo};

/// Rule variable that picks the tenant.
pub const TENANT_VAR: &str = "paddock.tenant";
/// Rule variable that overrides `SCRIPT_NAME`.
pub const SCRIPT_NAME_VAR: &str = "paddock.script_name";

#[derive(Debug)]
pub enum Decision {
    Tenant(Box<Routed>),
    Index,
    NotFound,
    Forbidden,
    Gone,
    Redirect { status: u16, location: Vec<u8> },
    BadRequest(&'static str),
}

/// A request bound for a tenant's pool.
#[derive(Debug)]
pub struct Routed {
    pub spec: TenantSpec,
    pub script_name: Vec<u8>,
    pub path_info: Vec<u8>,
    /// Environ entries from rules (`E=var:value`), applied over the tenant's `environ`.
    pub rule_environ: Vec<(String, Vec<u8>)>,
}

/// Decide where `target` goes. `info.path` must be `target.normalised`.
pub fn decide(
    cfg: &Config,
    target: &Target,
    info: &RequestInfo<'_>,
    probe: &dyn FileProbe,
) -> Decision {
    let mut rewritten: Option<Target> = None;
    let mut vars = Vec::new();
    if !cfg.rules.is_empty() {
        let out = cfg.rules.evaluate(info, probe);
        match out.action {
            Action::Forbidden => return Decision::Forbidden,
            Action::Gone => return Decision::Gone,
            Action::Redirect { status, location } => {
                return Decision::Redirect { status, location }
            }
            Action::Continue => {}
        }
        if out.path != target.normalised || out.query != target.query {
            let mut raw = encode_path(&out.path);
            if !out.query.is_empty() {
                raw.push(b'?');
                raw.extend_from_slice(&out.query);
            }
            match Target::parse(&raw) {
                Ok(t) => rewritten = Some(t),
                Err(_) => {
                    return Decision::BadRequest("a rule rewrote the path into an invalid one")
                }
            }
        }
        vars = out.vars;
    }
    let target = rewritten.as_ref().unwrap_or(target);
    let var = |name: &str| {
        vars.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
    };
    let chosen = var(TENANT_VAR);
    let script_override = var(SCRIPT_NAME_VAR);
    let rule_environ: Vec<(String, Vec<u8>)> =
        vars.into_iter().filter(|(k, _)| !k.to_ascii_lowercase().starts_with("paddock.")).collect();

    let (spec, mount) = match chosen {
        Some(name) => {
            let Some(spec) = std::str::from_utf8(&name).ok().and_then(|n| cfg.tenant(n)) else {
                return Decision::NotFound;
            };
            let mount = match script_override {
                Some(s) => s,
                None if has_prefix(&target.normalised, spec.mount.as_bytes()) => {
                    spec.mount.clone().into_bytes()
                }
                None => Vec::new(),
            };
            (spec, mount)
        }
        None => match default_route(cfg, &target.normalised) {
            Default::Tenant(spec) => {
                let mount = script_override.unwrap_or_else(|| spec.mount.clone().into_bytes());
                (*spec, mount)
            }
            Default::Index => return Decision::Index,
            Default::None => return Decision::NotFound,
        },
    };
    match path::split_mount(target, &mount) {
        Ok(split) => Decision::Tenant(Box::new(Routed {
            spec,
            script_name: split.script_name,
            path_info: split.path_info,
            rule_environ,
        })),
        Err(PathError::CrossesMount) => {
            Decision::BadRequest("the path names a different site once normalised")
        }
        Err(_) => Decision::BadRequest("invalid request path"),
    }
}

enum Default {
    Tenant(Box<TenantSpec>),
    Index,
    None,
}

/// Default mounts, longest prefix first.
fn default_route(cfg: &Config, path: &[u8]) -> Default {
    let mut best: Option<TenantSpec> = None;
    let mut consider = |spec: TenantSpec| {
        if has_prefix(path, spec.mount.as_bytes())
            && best.as_ref().is_none_or(|b| spec.mount.len() > b.mount.len())
        {
            best = Some(spec);
        }
    };
    for (name, t) in &cfg.tenants {
        // Only a tenant whose mount the path is under is worth resolving (that expands its
        // settings): with many configured tenants, the others cost a comparison each.
        let Some(mount) = &t.mount else { continue };
        if has_prefix(path, mount.as_bytes()) {
            if let Some(spec) = cfg.tenant(name) {
                consider(spec);
            }
        }
    }
    let mount = cfg.mount.as_bytes();
    let at_mount = path == mount
        || (path.len() == mount.len() + 1 && path.starts_with(mount) && path.ends_with(b"/"));
    if let Some(rest) = path.strip_prefix(mount).and_then(|r| r.strip_prefix(b"/")) {
        let seg = rest.split(|&b| b == b'/').next().unwrap_or_default();
        if let Some(spec) = std::str::from_utf8(seg).ok().and_then(|n| cfg.tenant(n)) {
            consider(spec);
        }
    }
    match best {
        Some(spec) => Default::Tenant(Box::new(spec)),
        None if at_mount && cfg.index && (cfg.sites.is_some() || !cfg.tenants.is_empty()) => {
            Default::Index
        }
        None => Default::None,
    }
}

/// Percent-encode a decoded path so that parsing it again gives the same bytes back.
fn encode_path(p: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(p.len());
    for &b in p {
        if b.is_ascii_alphanumeric() || b"/-._~!$&'()*+,;=:@".contains(&b) {
            out.push(b);
        } else {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    out
}

/// `path` is `prefix` or continues it with `/` (segment boundary). `` prefixes everything.
fn has_prefix(path: &[u8], prefix: &[u8]) -> bool {
    path.starts_with(prefix)
        && (path.len() == prefix.len() || path[prefix.len()] == b'/' || prefix.is_empty())
}

#[cfg(test)]
mod tests;

//! `static` and `static_max_age`: the static files a tenant's router serves from disk, with
//! Trac's two `Alias` lines as the default for Trac tenants.

use std::collections::BTreeMap;
use std::time::Duration;

use super::file::TenantSection;
use super::units::parse_duration;
use super::Validator;

/// Default `Cache-Control: max-age` of static files: Trac's links to its chrome carry no
/// version, so a changed file must not stay cached for long.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(3600);

/// The entry point every Trac default mapping depends on.
pub const TRAC_APP: &str = "trac.web.main:dispatch_request";

/// A tenant's static mappings, validated; directories may still hold placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticSettings {
    /// (URL prefix below the mount, directory), longest prefix first.
    pub mappings: Vec<(String, String)>,
    /// `Cache-Control: max-age`; zero sends `no-cache` (always revalidate).
    pub max_age: Duration,
}

impl Default for StaticSettings {
    fn default() -> Self {
        StaticSettings { mappings: Vec::new(), max_age: DEFAULT_MAX_AGE }
    }
}

/// Placeholders a static directory may use.
const PLACEHOLDERS: [&str; 4] = ["{tenant}", "{tenant_dir}", "{sites}", "{virtualenv}"];

/// Where a virtualenv keeps Trac's own `htdocs` (the worker embeds CPython 3.11).
const TRAC_HTDOCS: &str = "{virtualenv}/lib/python3.11/site-packages/trac/htdocs";

/// Validate the static mappings of a merged section (defaults already under it).
pub(super) fn validate(v: &mut Validator<'_>, s: &TenantSection) -> StaticSettings {
    let venv = s.virtualenv.as_ref().map(|x| x.get_ref().as_str()).filter(|x| !x.is_empty());
    let mut map = trac_defaults(s, venv);
    let base = super::Config::base_dir(Some(v.file));
    for (prefix, dir) in s.statics.iter().flatten() {
        let span = Some(dir.span());
        if let Err(e) = check_prefix(prefix) {
            v.err(span, e);
            continue;
        }
        let dir = dir.get_ref();
        if dir.is_empty() {
            map.remove(prefix);
            continue;
        }
        if let Err(e) = check_dir(dir, venv.is_some()) {
            v.err(span, format!("`static` \"{prefix}\": {e}"));
            continue;
        }
        let dir = if dir.starts_with('/') || dir.starts_with('{') {
            dir.clone()
        } else {
            base.join(dir).display().to_string()
        };
        map.insert(prefix.clone(), dir);
    }
    let max_age = match &s.static_max_age {
        Some(m) => parse_duration(m.get_ref()).unwrap_or_else(|e| {
            v.err(Some(m.span()), format!("`static_max_age`: {e}"));
            DEFAULT_MAX_AGE
        }),
        None => DEFAULT_MAX_AGE,
    };
    let mut mappings: Vec<(String, String)> = map.into_iter().collect();
    mappings.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
    StaticSettings { mappings, max_age }
}

/// A Trac tenant (Trac's entry point, one environment in `trac.env_path`) gets Trac's own
/// resources at `/chrome/common` (from the virtualenv, when Trac is installed there) and the site's at
/// `/chrome/site`, as `trac-admin deploy` writes for Apache. A parent-dir pool (no
/// `trac.env_path`) has its chrome below each project's path, so it gets none.
fn trac_defaults(s: &TenantSection, venv: Option<&str>) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    if s.app.as_ref().map(|a| a.get_ref().as_str()) != Some(TRAC_APP) {
        return map;
    }
    let env_path = s.environ.as_ref().and_then(|e| e.get("trac.env_path"));
    let Some(env_path) = env_path.filter(|p| !p.is_empty()) else { return map };
    map.insert("/chrome/site".to_string(), format!("{}/htdocs", env_path.trim_end_matches('/')));
    // Only where Trac really is: an editable install (`pip install -e`) keeps its htdocs in
    // the source tree, and Trac then serves /chrome/common itself. Checked at each (re)load;
    // a virtualenv path with placeholders is taken as given.
    if let Some(venv) = venv {
        let installed = TRAC_HTDOCS.replace("{virtualenv}", venv);
        if venv.contains('{') || std::path::Path::new(&installed).is_dir() {
            map.insert("/chrome/common".to_string(), TRAC_HTDOCS.to_string());
        }
    }
    map
}

/// A prefix is a normalised path below the mount: `/chrome/common`, not `/` (that would hide
/// the whole app), no trailing slash, no empty, `.` or `..` segments.
fn check_prefix(prefix: &str) -> Result<(), String> {
    match super::normalise_mount(prefix) {
        Ok(p) if p.is_empty() => {
            Err(format!("`static` prefix `{prefix}` would hide the whole app; use a path such as \"/chrome/site\""))
        }
        Ok(p) if p == prefix => Ok(()),
        Ok(p) => Err(format!("`static` prefix `{prefix}` must be written `{p}`")),
        Err(e) => Err(format!("`static` prefix: {e}")),
    }
}

/// Only known placeholders; `{virtualenv}` only with a virtualenv.
fn check_dir(dir: &str, has_venv: bool) -> Result<(), String> {
    let mut rest = dir;
    while let Some(open) = rest.find('{') {
        let after = &rest[open..];
        let Some(close) = after.find('}') else {
            return Err(format!("unclosed `{{` in `{dir}`"));
        };
        let name = &after[..=close];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder `{name}` (use {{tenant}}, {{tenant_dir}}, {{sites}} or {{virtualenv}})"
            ));
        }
        if name == "{virtualenv}" && !has_venv {
            return Err("uses {virtualenv} but no `virtualenv` is configured".to_string());
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert!(check_prefix("/chrome/common").is_ok());
        for bad in ["/", "", "chrome", "/chrome/", "/a//b", "/a/../b", "/a/./b", "/a%2fb"] {
            assert!(check_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn placeholders() {
        assert!(check_dir("{tenant_dir}/htdocs", false).is_ok());
        assert!(check_dir("/srv/{tenant}/x{sites}", false).is_ok());
        assert!(check_dir("{virtualenv}/x", true).is_ok());
        assert!(check_dir("{virtualenv}/x", false).is_err());
        assert!(check_dir("{tenant_dr}/x", false).is_err());
        assert!(check_dir("{tenant_dir/x", false).is_err());
    }
}

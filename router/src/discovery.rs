//! Live discovery: which tenants exist right now, and which are switched off.
//!
//! There is no index to keep fresh. A request resolves its tenant with one `stat` of the
//! marker file ([`Config::tenant`]), so a directory that appears under `sites` is served by
//! the very next request and one that disappears answers 404 at once; thousands of idle
//! tenants cost nothing, not even an inotify watch. What a `stat` per request cannot do is
//! stop the pool of a tenant nobody asks for any more: the monitor asks [`still_served`] for
//! every running pool once a second and stops those whose tenant is gone or disabled.
//!
//! A disabled tenant keeps its directory and gets a marker file, [`DISABLED_MARKER`], in it:
//! the flag survives restarts, needs no database, and costs one more `stat` per request.

use std::sync::Arc;

use crate::config::Config;
use crate::front::State;
use crate::tenant::TenantSpec;

/// File in a tenant directory that switches the tenant off (503) until it is removed.
pub const DISABLED_MARKER: &str = ".paddock-disabled";

/// The tenant is disabled (its directory holds the marker).
pub fn is_disabled(spec: &TenantSpec) -> bool {
    std::fs::symlink_metadata(spec.dir.join(DISABLED_MARKER)).is_ok()
}

/// The tenant still exists and is not disabled: its pool may keep running.
pub fn still_served(cfg: &Config, name: &str) -> bool {
    cfg.tenant(name).is_some_and(|t| !is_disabled(&t))
}

/// [`still_served`] against the current configuration of `state`, for the monitor.
pub fn served_by(state: Arc<State>) -> crate::monitor::Served {
    Arc::new(move |name: &str| still_served(&state.config(), name))
}

/// Every tenant right now: configured ones and discovered ones, sorted by name. Unlike the
/// index page, this includes tenants mounted elsewhere.
pub fn all_tenants(cfg: &Config) -> Vec<TenantSpec> {
    let mut names: Vec<String> = cfg.tenants.keys().cloned().collect();
    if let Some(sites) = &cfg.sites {
        names.extend(crate::tenant::scan(sites, &cfg.marker));
    }
    names.sort();
    names.dedup();
    names.iter().filter_map(|n| cfg.tenant(n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;

    #[test]
    fn disabled_and_gone_tenants_are_not_served() {
        let dir = tempfile::tempdir().expect("tempdir");
        let site = dir.path().join("one");
        std::fs::create_dir_all(site.join("conf")).expect("mkdir");
        std::fs::write(site.join("conf/trac.ini"), "").expect("write");
        std::fs::create_dir_all(dir.path().join("bare")).expect("mkdir");
        let ov = Overrides { sites: Some(dir.path().to_path_buf()), ..Overrides::default() };
        let cfg = Config::from_overrides(&ov).expect("config");
        assert!(still_served(&cfg, "one"));
        assert_eq!(all_tenants(&cfg).iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["one"]);
        std::fs::write(site.join(DISABLED_MARKER), "").expect("write");
        assert!(!still_served(&cfg, "one"));
        std::fs::remove_file(site.join(DISABLED_MARKER)).expect("rm");
        std::fs::remove_dir_all(&site).expect("rm");
        assert!(!still_served(&cfg, "one"));
        assert!(!still_served(&cfg, "bare"));
    }
}

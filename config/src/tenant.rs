//! Tenants: names, where they live, and how a name becomes a runnable pool description.
//!
//! A tenant is either configured (`[tenants.NAME]`) or discovered: a directory under `sites`
//! holding the marker file (a regular file, reached with no symlink). Discovery is a `stat` at
//! request time, so a new directory is live at once and thousands of idle tenants cost
//! nothing.

use std::path::{Path, PathBuf};

use super::{Config, PoolSettings};

/// Everything needed to start and route to one tenant's pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantSpec {
    pub name: String,
    pub dir: PathBuf,
    /// URL prefix used when no rule chose another (`/trac/demo-1`, or `` at the root).
    pub mount: String,
    pub settings: PoolSettings,
}

impl TenantSpec {
    /// Whether a pool started for `self` serves `other` as it is: the same tenant, directory
    /// and process settings. Admission settings apply to the running pool and request
    /// settings are read per request, so neither needs new workers.
    pub fn same_workers(&self, other: &TenantSpec) -> bool {
        self.name == other.name
            && self.dir == other.dir
            && self.settings.process == other.settings.process
    }
}

/// Tenant names: 1 to 63 of `[A-Za-z0-9._-]`, starting with a letter or digit. This keeps
/// names safe as path components, socket names and metric labels.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Unix user/group names as `useradd` accepts them (also numeric ids).
pub fn valid_unix_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

impl Config {
    /// Resolve `name` to a tenant, or `None` if there is no such tenant right now.
    pub fn tenant(&self, name: &str) -> Option<TenantSpec> {
        if !valid_name(name) {
            return None;
        }
        if let Some(t) = self.tenants.get(name) {
            let dir = t.dir.clone().or_else(|| self.sites.as_ref().map(|s| s.join(name)))?;
            let mount = t.mount.clone().unwrap_or_else(|| format!("{}/{name}", self.mount));
            let settings = t.settings.expand(name, &dir, self.sites.as_deref());
            return Some(TenantSpec { name: name.to_string(), dir, mount, settings });
        }
        let dir = self.sites.as_ref()?.join(name);
        if !has_marker(&dir, &self.marker) {
            return None;
        }
        let settings = self.defaults.expand(name, &dir, self.sites.as_deref());
        Some(TenantSpec {
            name: name.to_string(),
            dir,
            mount: format!("{}/{name}", self.mount),
            settings,
        })
    }

    /// The name of every tenant right now: configured ones and the directories under `sites`
    /// that hold the marker, sorted, each once. The one list the index, the admin API and the
    /// metrics count are built from.
    pub fn tenant_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.tenants.keys().cloned().collect();
        if let Some(sites) = &self.sites {
            names.extend(scan(sites, &self.marker));
        }
        names.sort();
        names.dedup();
        names
    }

    /// Every tenant right now, sorted by name (including those mounted elsewhere).
    pub fn all_tenants(&self) -> Vec<TenantSpec> {
        self.tenant_names().iter().filter_map(|n| self.tenant(n)).collect()
    }

    /// How many tenants exist right now.
    pub fn count_tenants(&self) -> usize {
        self.tenant_names().len()
    }

    /// Tenants listed on the index page: those mounted under the index's mount point.
    pub fn list_tenants(&self) -> Vec<TenantSpec> {
        let mut all = self.all_tenants();
        all.retain(|t| t.mount == format!("{}/{}", self.mount, t.name));
        all
    }
}

/// Names of the directories under `sites` that hold `marker`.
fn scan(sites: &Path, marker: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(sites) else {
        tracing::warn!(sites = %sites.display(), "cannot read the sites directory");
        return Vec::new();
    };
    rd.filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| valid_name(n) && has_marker(&sites.join(n), marker))
        .collect()
}

/// `dir` holds `marker` as a regular file, found with no symlink below `dir`. Runs inline on
/// the request path: it only takes an `O_PATH` descriptor (which opens nothing, so a FIFO
/// cannot block it) and `fstat`s it: openat2, statx, close.
pub fn has_marker(dir: &Path, marker: &Path) -> bool {
    paddock_sys::safefs::is_file(&paddock_sys::safefs::Place::beneath(dir, marker))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["demo-1", "a", "Site_2", "x.y", "0abc"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", ".", "..", ".hidden", "-x", "a/b", "a b", "é", &"x".repeat(64)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}

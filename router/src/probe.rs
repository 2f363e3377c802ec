//! The router's [`FileProbe`]: where the rules' file tests (`-f`, `-d`, `-s`) may look.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use paddock_rules::{path, FileProbe, FileTest};

use paddock_config::Config;
use paddock_sys::safefs::{self, Place};

/// The real [`FileProbe`], confined to `roots`.
///
/// A path answers `false` unless it is absolute and lexically inside a root (checked before
/// any system call). Below a tenant directory (an entry of `sites`, or a configured `dir`),
/// the tenant's, no symlink is followed ([`safefs::stat`]: an `O_PATH` open, which
/// never blocks, and `fstat`). Elsewhere the path must still be inside once symlinks are
/// resolved; the final test then runs on the resolved path without following a last-moment
/// symlink.
#[derive(Debug, Clone, Default)]
pub struct FsProbe {
    pub roots: Vec<PathBuf>,
    /// `roots` with symlinks resolved, once: a root that did not exist then is resolved at
    /// each test instead, until the next reload.
    canonical: Vec<PathBuf>,
    sites: Option<PathBuf>,
    tenant_dirs: Vec<PathBuf>,
}

impl FsProbe {
    /// Confined to `roots`, none of them known as tenant directories.
    pub fn new(roots: Vec<PathBuf>) -> Self {
        let canonical = roots.iter().filter_map(|r| std::fs::canonicalize(r).ok()).collect();
        FsProbe { roots, canonical, sites: None, tenant_dirs: Vec::new() }
    }

    /// Confined to the configuration's roots, knowing which directories are tenants'.
    pub fn for_config(cfg: &Config) -> Self {
        let dirs = cfg.tenants.values().filter_map(|t| t.dir.as_deref());
        let tenant_dirs = dirs.filter_map(path::lexical_normalise).collect();
        FsProbe { sites: cfg.sites.clone(), tenant_dirs, ..FsProbe::new(cfg.file_roots.clone()) }
    }

    /// Where trust ends for `path`, if it lies in a tenant directory.
    fn tenant_place(&self, path: &Path) -> Option<Place> {
        let norm = path::lexical_normalise(path)?;
        let dir = self.tenant_dirs.iter().find(|d| norm.starts_with(d));
        match Place::of(&norm, dir.map(PathBuf::as_path), self.sites.as_deref()) {
            Place::Operator(_) => None,
            place => Some(place),
        }
    }
}

fn kind_matches(meta: &std::fs::Metadata, kind: FileTest) -> bool {
    match kind {
        FileTest::File => meta.is_file(),
        FileTest::Dir => meta.is_dir(),
        FileTest::NonEmptyFile => meta.is_file() && meta.len() > 0,
    }
}

impl FileProbe for FsProbe {
    fn test(&self, path: &[u8], kind: FileTest) -> bool {
        let path = Path::new(OsStr::from_bytes(path));
        if !path::lexically_within(path, &self.roots) {
            return false;
        }
        if let Some(place) = self.tenant_place(path) {
            return safefs::stat(&place).is_ok_and(|m| kind_matches(&m, kind));
        }
        let resolved = if self.canonical.len() == self.roots.len() {
            path::resolve_within_canonical(path, &self.roots, &self.canonical)
        } else {
            path::resolve_within(path, &self.roots)
        };
        let Some(resolved) = resolved else { return false };
        // `resolved` has no symlinks left; symlink_metadata refuses one swapped in since.
        std::fs::symlink_metadata(&resolved).is_ok_and(|m| kind_matches(&m, kind))
    }
}

#[cfg(test)]
mod tests;

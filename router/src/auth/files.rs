//! htpasswd files read on demand and kept while they do not change.
//!
//! Every lookup `stat`s the file (about a microsecond; only protected requests look up) and
//! re-reads it when its device, inode, size, mtime or ctime differ from the cached copy, so a
//! user added or removed while serving counts from the next request. A file modified less than
//! [`RACY`] before it was read might change again within the same timestamp tick; such a copy
//! is not trusted and the file is read again on each lookup until it is older.
//!
//! The router may be root and the file may lie in a tenant's directory, so it is reached
//! through [`safefs`]: no symlink below the tenant directory (nor as the last component of an
//! operator's path), a regular file only (a FIFO cannot hang the open), at most
//! [`HTPASSWD_CAP`] bytes. Reading blocks: [`Files::get`] runs on the blocking pool, and only
//! the metadata-only [`Files::cached`] runs on the async threads.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::htpasswd::{self, Stored};
use crate::filestamp::FileVersion;
use paddock_sys::safefs::{self, Place, HTPASSWD_CAP};

const RACY: Duration = Duration::from_secs(2);
/// Problems remembered so each is logged once; forgotten past this many.
const MAX_WARNED: usize = 10_000;

/// One parsed version of a file.
#[derive(Debug)]
pub struct Loaded {
    version: FileVersion,
    /// Modified so recently that a later change might keep the same version.
    racy: bool,
    pub users: HashMap<String, Stored>,
}

/// Cache of htpasswd files by path.
#[derive(Default)]
pub struct Files {
    loaded: Mutex<HashMap<PathBuf, Arc<Loaded>>>,
    /// Last error per file, so a failing file is logged when its state changes, not per hit.
    errors: Mutex<HashMap<PathBuf, String>>,
    warned: Mutex<HashSet<String>>,
}

impl Files {
    /// The cached copy of `place` if it is still current: one `O_PATH` open and `fstat`,
    /// which never opens the file itself, so it may run on the async threads. `None`: call
    /// [`Files::get`] off them.
    pub fn cached(&self, place: &Place) -> Option<Arc<Loaded>> {
        let meta = safefs::stat(place).ok().filter(|m| m.is_file())?;
        let version = FileVersion::of(&meta);
        let loaded = lock(&self.loaded);
        let l = loaded.get(&place.path())?;
        (l.version == version && !l.racy).then(|| l.clone())
    }

    /// The current contents of `place`; `None` (logged) when it cannot be read. Blocking.
    pub fn get(&self, place: &Place) -> Option<Arc<Loaded>> {
        let path = &place.path();
        match self.try_get(place) {
            Ok(l) => {
                if lock(&self.errors).remove(path).is_some() {
                    tracing::info!(file = %path.display(), "htpasswd file readable again");
                }
                Some(l)
            }
            Err(e) => {
                let e = e.to_string();
                let mut errors = lock(&self.errors);
                if errors.get(path) != Some(&e) {
                    tracing::error!(
                        file = %path.display(),
                        "cannot read htpasswd file: {e}; protected pages refuse every login until it is fixed"
                    );
                    errors.insert(path.to_path_buf(), e);
                }
                lock(&self.loaded).remove(path);
                None
            }
        }
    }

    fn try_get(&self, place: &Place) -> std::io::Result<Arc<Loaded>> {
        if let Some(l) = self.cached(place) {
            return Ok(l);
        }
        let path = &place.path();
        // Read through the open file and stat that, so contents and version belong together.
        let (bytes, meta) = safefs::read(place, HTPASSWD_CAP)?;
        let parsed = htpasswd::parse(&bytes);
        self.warn_once(path, &parsed.problems);
        let age = meta.modified().ok().and_then(|m| SystemTime::now().duration_since(m).ok());
        let loaded = Arc::new(Loaded {
            version: FileVersion::of(&meta),
            racy: age.is_none_or(|a| a < RACY),
            users: parsed.users,
        });
        lock(&self.loaded).insert(path.to_path_buf(), loaded.clone());
        tracing::debug!(file = %path.display(), users = loaded.users.len(), "htpasswd file loaded");
        Ok(loaded)
    }

    fn warn_once(&self, path: &Path, problems: &[String]) {
        let mut warned = lock(&self.warned);
        for p in problems {
            let key = format!("{}\0{p}", path.display());
            if warned.len() >= MAX_WARNED {
                warned.clear();
            }
            if warned.insert(key) {
                tracing::warn!(file = %path.display(), "htpasswd: {p}");
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rereads_on_change_and_forgets_missing_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("users");
        let files = Files::default();
        let path = &Place::Operator(path);
        assert!(files.get(path).is_none(), "missing file");
        std::fs::write(path.path(), "a:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n").expect("write");
        let first = files.get(path).expect("loaded");
        assert!(first.users.contains_key("a") && first.racy);
        // Same length, same second: only a racy copy guarantees the change is seen.
        std::fs::write(path.path(), "b:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n").expect("write");
        let second = files.get(path).expect("loaded");
        assert!(second.users.contains_key("b") && !second.users.contains_key("a"));
        std::fs::remove_file(path.path()).expect("rm");
        assert!(files.get(path).is_none());
        assert!(lock(&files.loaded).is_empty());
    }

    #[test]
    fn settled_files_are_not_reread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("users");
        std::fs::write(&path, "a:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n").expect("write");
        let old = SystemTime::now() - Duration::from_secs(60);
        let f = std::fs::File::options().write(true).open(&path).expect("open");
        f.set_modified(old).expect("set mtime");
        let files = Files::default();
        let first = files.get(&Place::Operator(path.clone())).expect("loaded");
        assert!(!first.racy);
        let again = files.cached(&Place::Operator(path)).expect("cached");
        assert!(Arc::ptr_eq(&first, &again), "unchanged file is served from the cache");
    }
}

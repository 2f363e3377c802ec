//! Bearer tokens for the admin API, read from `tokens_file`.
//!
//! One token per line; blank lines and `#` comments are skipped. Only SHA-256 digests are
//! kept in memory, and a presented token is hashed and compared with every digest in
//! constant time (no early exit), so neither the tokens nor their prefixes leak through
//! timing. The file is `stat`ed on each API request and re-read when it changed (device,
//! inode, size, mtime or ctime), so adding or revoking a token needs no reload. A missing or
//! unreadable file refuses every token (logged once per state, never with file contents).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::filestamp::FileVersion;
use http::{header, HeaderMap};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A file changed this recently might change again within one timestamp tick: read it again.
const RACY: Duration = Duration::from_secs(2);

/// Why a request is not authorised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No `Authorization: Bearer` header: 401.
    Missing,
    /// A token that is not in the file (or no file): 403.
    Wrong,
}

struct Loaded {
    path: PathBuf,
    version: FileVersion,
    racy: bool,
    digests: Arc<Vec<[u8; 32]>>,
}

/// The token file's digests, cached while the file does not change.
#[derive(Default)]
pub struct Tokens {
    loaded: Mutex<Option<Loaded>>,
    /// Last problem logged, so a broken file is logged when its state changes, not per request.
    last_error: Mutex<Option<String>>,
}

impl Tokens {
    /// Check the request's bearer token against `file` (`None`: no token is valid).
    pub fn check(&self, file: Option<&Path>, headers: &HeaderMap) -> Result<(), Denied> {
        let presented = bearer(headers).ok_or(Denied::Missing)?;
        let Some(file) = file else { return Err(Denied::Wrong) };
        let digests = self.digests(file);
        let want: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        // Look at every digest whatever matched, so timing says nothing about which did.
        let mut ok = subtle::Choice::from(0u8);
        for d in digests.iter() {
            ok |= d.ct_eq(&want);
        }
        if bool::from(ok) {
            Ok(())
        } else {
            Err(Denied::Wrong)
        }
    }

    fn digests(&self, file: &Path) -> Arc<Vec<[u8; 32]>> {
        match self.load(file) {
            Ok(d) => {
                if lock(&self.last_error).take().is_some() {
                    tracing::info!(file = %file.display(), "admin tokens file readable again");
                }
                d
            }
            Err(e) => {
                let e = e.to_string();
                let mut last = lock(&self.last_error);
                if last.as_deref() != Some(e.as_str()) {
                    tracing::error!(file = %file.display(), "cannot read the admin tokens file: {e}; every API request is refused");
                    *last = Some(e);
                }
                *lock(&self.loaded) = None;
                Arc::new(Vec::new())
            }
        }
    }

    fn load(&self, file: &Path) -> std::io::Result<Arc<Vec<[u8; 32]>>> {
        let version = FileVersion::of(&std::fs::metadata(file)?);
        if let Some(l) = lock(&self.loaded).as_ref() {
            if l.path == file && l.version == version && !l.racy {
                return Ok(l.digests.clone());
            }
        }
        let mut f = std::fs::File::open(file)?;
        let meta = f.metadata()?;
        let mut text = String::new();
        std::io::Read::read_to_string(&mut f, &mut text)?;
        let digests = Arc::new(parse(&text));
        let age = meta.modified().ok().and_then(|m| SystemTime::now().duration_since(m).ok());
        tracing::debug!(file = %file.display(), tokens = digests.len(), "admin tokens loaded");
        *lock(&self.loaded) = Some(Loaded {
            path: file.to_path_buf(),
            version: FileVersion::of(&meta),
            racy: age.is_none_or(|a| a < RACY),
            digests: digests.clone(),
        });
        Ok(digests)
    }
}

/// SHA-256 digests of the tokens in a tokens file's text.
fn parse(text: &str) -> Vec<[u8; 32]> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|t| Sha256::digest(t.as_bytes()).into())
        .collect()
}

/// The token of an `Authorization: Bearer TOKEN` header (scheme case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = v.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, v.parse().expect("header"));
        h
    }

    #[test]
    fn comments_and_blank_lines_are_skipped() {
        let d = parse("# ops\n\n  alpha  \n#beta\nbeta gamma\n");
        assert_eq!(d.len(), 2);
        let alpha: [u8; 32] = Sha256::digest(b"alpha").into();
        assert_eq!(d[0], alpha);
    }

    #[test]
    fn bearer_scheme_only() {
        assert_eq!(bearer(&auth("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&auth("bearer   abc ")), Some("abc"));
        assert_eq!(bearer(&auth("Basic abc")), None);
        assert_eq!(bearer(&auth("Bearer ")), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }

    #[test]
    fn checks_and_follows_file_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("tokens");
        let t = Tokens::default();
        assert_eq!(t.check(Some(&file), &HeaderMap::new()), Err(Denied::Missing));
        assert_eq!(t.check(Some(&file), &auth("Bearer one")), Err(Denied::Wrong), "no file");
        std::fs::write(&file, "# tokens\none\n").expect("write");
        assert_eq!(t.check(Some(&file), &auth("Bearer one")), Ok(()));
        assert_eq!(t.check(Some(&file), &auth("Bearer two")), Err(Denied::Wrong));
        assert_eq!(t.check(None, &auth("Bearer one")), Err(Denied::Wrong), "no tokens_file");
        // Same size, same second: the racy copy is read again.
        std::fs::write(&file, "# tokens\ntwo\n").expect("write");
        assert_eq!(t.check(Some(&file), &auth("Bearer one")), Err(Denied::Wrong), "revoked");
        assert_eq!(t.check(Some(&file), &auth("Bearer two")), Ok(()));
        std::fs::remove_file(&file).expect("rm");
        assert_eq!(t.check(Some(&file), &auth("Bearer two")), Err(Denied::Wrong), "file gone");
    }
}

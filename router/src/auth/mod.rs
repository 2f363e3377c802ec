//! HTTP Basic authentication in front of a tenant, as Apache's
//! `<Location /trac/login> AuthType Basic AuthUserFile ... Require valid-user`.
//!
//! A tenant with an `auth` section has some of its paths (PATH_INFO, inside the tenant)
//! protected. A request for one of them needs `Authorization: Basic` credentials that match
//! the tenant's htpasswd file, or it gets 401 with `WWW-Authenticate`; a request that passes
//! reaches the app with `REMOTE_USER` (the user name, a Unicode string) and `AUTH_TYPE=Basic`.
//! For such a tenant the router owns those two environ keys: values from `environ` or rules
//! are dropped, so nothing but a checked password can set them. The `Authorization` header
//! itself is passed on untouched (as `HTTP_AUTHORIZATION`).
//!
//! bcrypt and apr1 checks (tens of ms, resp. a few hundred µs of CPU) run on the blocking pool,
//! at most one per core at a time; successful checks are remembered for a few minutes
//! ([`verified`]).

mod apr1;
pub mod basic;
mod files;
pub mod htpasswd;
mod verified;

use std::path::Path;
use std::sync::{Arc, OnceLock};

use http::HeaderMap;
use tokio::sync::Semaphore;

pub use basic::{challenge_value, credentials, Credentials, Unusable};
use paddock_config::auth::AuthSettings;

use crate::refusal::Refusal;
use htpasswd::Stored;

/// Shared state of the checks: the htpasswd cache and recent verifications.
pub struct Authenticator {
    files: Arc<files::Files>,
    verified: verified::Verified,
    /// Bounds concurrent bcrypt checks, so a flood of wrong passwords cannot fill the
    /// blocking pool or starve other work of CPU.
    slow: Arc<Semaphore>,
}

/// The process's authenticator. Its caches are keyed by file path, so one instance serves
/// every tenant and survives configuration reloads.
pub fn shared() -> &'static Authenticator {
    static SHARED: OnceLock<Authenticator> = OnceLock::new();
    SHARED.get_or_init(Authenticator::default)
}

impl Default for Authenticator {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        Authenticator {
            files: Arc::default(),
            verified: verified::Verified::default(),
            slow: Arc::new(Semaphore::new(cores)),
        }
    }
}

/// The outcome of a check that let the request through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The tenant has `auth`: the router owns `REMOTE_USER` and `AUTH_TYPE`.
    managed: bool,
    user: Option<String>,
}

impl Access {
    /// The authenticated user, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Put the outcome into the request's extra environ entries.
    pub fn apply(&self, environ: &mut Vec<(Vec<u8>, Vec<u8>)>) {
        if !self.managed {
            return;
        }
        environ.retain(|(k, _)| {
            !k.eq_ignore_ascii_case(b"REMOTE_USER") && !k.eq_ignore_ascii_case(b"AUTH_TYPE")
        });
        if let Some(user) = &self.user {
            environ.push((b"REMOTE_USER".to_vec(), user.clone().into_bytes()));
            environ.push((b"AUTH_TYPE".to_vec(), b"Basic".to_vec()));
        }
    }
}

impl Authenticator {
    /// Check a request for a tenant with `settings`, whose path inside the tenant is
    /// `path_info`. `Err` is the answer instead (401 with the challenge).
    pub async fn check(
        &self,
        settings: Option<&AuthSettings>,
        path_info: &[u8],
        headers: &HeaderMap,
    ) -> Result<Access, Refusal> {
        let Some(s) = settings else { return Ok(Access { managed: false, user: None }) };
        if !s.protects(path_info) {
            return Ok(Access { managed: true, user: None });
        }
        let deny = || Refusal::unauthorized(basic::challenge(&s.realm));
        let creds = basic::credentials(headers).map_err(|why| {
            tracing::debug!(?why, "no usable Basic credentials; sending the challenge");
            deny()
        })?;
        let file = Path::new(&s.htpasswd);
        let Some(loaded) = self.load(s.htpasswd_place()).await else { return Err(deny()) };
        let Some(stored) = loaded.users.get(&creds.user).cloned() else {
            tracing::info!(user = ?creds.user, file = %file.display(), "authentication failed: no such user");
            return Err(deny());
        };
        drop(loaded);
        if self.verify(file, &creds, stored).await {
            Ok(Access { managed: true, user: Some(creds.user) })
        } else {
            tracing::info!(user = ?creds.user, file = %file.display(), "authentication failed: wrong password");
            Err(deny())
        }
    }

    /// The htpasswd file: from the cache when it is unchanged (metadata only, inline), else
    /// read on the blocking pool.
    async fn load(&self, place: paddock_sys::safefs::Place) -> Option<Arc<files::Loaded>> {
        if let Some(l) = self.files.cached(&place) {
            return Some(l);
        }
        let files = self.files.clone();
        tokio::task::spawn_blocking(move || files.get(&place)).await.unwrap_or(None)
    }

    async fn verify(&self, file: &Path, creds: &Credentials, stored: Stored) -> bool {
        let fp = stored.fingerprint();
        let keys: Vec<verified::Key> =
            creds.passwords.iter().map(|p| self.verified.key(file, &creds.user, &fp, p)).collect();
        if keys.iter().any(|k| self.verified.hit(k)) {
            return true;
        }
        let matched = if stored.is_slow() {
            let Ok(_permit) = self.slow.clone().acquire_owned().await else { return false };
            let passwords = creds.passwords.clone();
            let job = move || passwords.iter().position(|p| stored.verify(p));
            tokio::task::spawn_blocking(job).await.unwrap_or(None)
        } else {
            creds.passwords.iter().position(|p| stored.verify(p))
        };
        match matched.and_then(|i| keys.get(i)) {
            Some(k) => {
                self.verified.insert(*k);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests;

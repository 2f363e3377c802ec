//! Creating a tenant (the API's `POST /api/v1/tenants` and the public signup page).
//!
//! 1. The name must be a lowercase DNS label, not reserved and not taken.
//! 2. The name is claimed by creating `<sites>/.creating-NAME` (see `claim`). As root, the
//!    site's own user is created (see `siteuser`), or the shared `signup_user` is used, and the
//!    claim is handed to it.
//! 3. The provisioning commands run in that directory, as the user who will own the tenant,
//!    at umask 027, with a scrubbed environment and one deadline for them all; on timeout the
//!    whole process group is killed. Their output is kept for the error message.
//! 4. The admin user's bcrypt entry goes into `htpasswd`, then the directory is renamed to
//!    `<sites>/NAME` (never replacing anything). Discovery sees it from the next request on.
//!
//! Any failure discards the claim (and a user made for it): nothing half-made stays behind.

use std::path::Path;

use super::claim::Claim;
use super::error::internal;
pub use super::error::SignupError;
use super::owner::Owner;
use super::Admin;
use crate::metrics::Signup;
use paddock_config::tenant::TenantSpec;
use paddock_config::{Config, SignupConfig};
use paddock_supervise::command::{self, CommandError, TenantCommand};
use paddock_sys::Creds;

/// Names no one may sign up for: they collide with paths or roles people expect.
pub const RESERVED: [&str; 18] = [
    "admin", "api", "www", "static", "chrome", "login", "logout", "signup", "metrics", "healthz",
    "paddock", "trac", "root", "mail", "about", "help", "prefs", "register",
];
/// Provisioning commands running at once; more signups wait their turn.
pub(super) const CONCURRENT_PROVISIONING: usize = 2;
/// bcrypt cost of the admin user's htpasswd entry (about 80 ms to check).
const BCRYPT_COST: u32 = 10;
/// umask of the provisioning commands: nothing of a new site is readable by other users.
const PROVISION_UMASK: u32 = 0o027;

/// What the client asks for.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    pub name: String,
    pub admin_user: String,
    pub password: String,
}

/// Create the tenant `req.name`; the returned spec is live at once. The outcome is counted
/// in `paddock_signups_total`.
pub async fn create(ad: &Admin, req: &SignupRequest) -> Result<TenantSpec, SignupError> {
    let result = create_tenant(ad, req).await;
    ad.state.metrics.signup(match &result {
        Ok(_) => Signup::Created,
        Err(e) => e.outcome(),
    });
    result
}

async fn create_tenant(ad: &Admin, req: &SignupRequest) -> Result<TenantSpec, SignupError> {
    let cfg = ad.state.config();
    let sc =
        cfg.admin.as_ref().map(|a| &a.signup).ok_or_else(|| {
            SignupError::Unavailable("the admin listener is not configured".into())
        })?;
    check_name(&req.name, &sc.reserved)?;
    check_user(&req.admin_user)?;
    check_password(&req.password)?;
    let sites = cfg.sites.clone().ok_or_else(|| {
        SignupError::Unavailable("no `sites` directory is configured for new tenants".into())
    })?;
    if let Some(p) = cfg.signup_auth_problem() {
        return Err(SignupError::Unavailable(format!("signup is not set up right: {p}")));
    }
    let name = req.name.as_str();
    if taken(&cfg, &sites, name) {
        return Err(SignupError::Taken(name.into()));
    }
    let owner = super::owner::resolve(sc, cfg.allow_root).map_err(SignupError::Unavailable)?;
    let site_user = match owner {
        Owner::PerSite => Some(super::siteuser::name_for(&sc.site_user, name)?),
        _ => None,
    };
    let mut claim = Claim::take(&ad.claims, &sites, name)?;
    if std::fs::symlink_metadata(sites.join(name)).is_ok() {
        return Err(SignupError::Taken(name.into()));
    }
    // In a cluster the name must be free on every node: one etcd record per name.
    let reserved = match ad.state.cluster() {
        None => None,
        Some(c) => match c.reserve_tenant(name).await {
            Ok(Some(record)) => Some((c.clone(), record)),
            Ok(None) => return Err(SignupError::Taken(name.into())),
            Err(e) => return Err(SignupError::Unavailable(format!("the cluster registry: {e}"))),
        },
    };
    let made = async {
        let creds = match (owner, site_user) {
            (Owner::Shared(c), _) => Some(c),
            (_, Some(u)) => Some(claim.new_user(&u, sc.site_uids, &sites.join(name)).await?),
            _ => None,
        };
        if let Some(c) = &creds {
            claim.hand_over(c)?;
        }
        let _permit =
            ad.provisioning.acquire().await.map_err(|_| internal("shutting down".into()))?;
        let vars = Vars::new(&cfg, sc, &claim.dir, &sites, req);
        provision(sc, &vars, &claim.dir, creds.clone()).await.inspect_err(|e| {
            tracing::error!(tenant = %name, "signup: {e}");
        })?;
        if !claim.has_file(&cfg.marker) {
            let m = cfg.marker.display();
            return Err(SignupError::Provision(format!("the commands did not create {m}")));
        }
        let entry = htpasswd_entry(&req.admin_user, &req.password).await?;
        claim
            .write_new("htpasswd", &entry, creds.as_ref())
            .map_err(|e| internal(format!("cannot write {}/htpasswd: {e}", claim.dir.display())))?;
        claim.commit(&sites.join(name))?;
        let spec =
            cfg.tenant(name).ok_or_else(|| internal(format!("`{name}` does not resolve")))?;
        Ok(spec)
    }
    .await;
    if let (Err(_), Some((c, record))) = (&made, &reserved) {
        c.unreserve_tenant(name, Some(record)).await;
    }
    let spec = made?;
    tracing::info!(tenant = %name, admin_user = %req.admin_user, "signup: tenant created");
    Ok(spec)
}

/// A lowercase DNS label (1-63 of `[a-z0-9-]`, no `-` at either end), not reserved.
pub fn check_name(name: &str, extra_reserved: &[String]) -> Result<(), SignupError> {
    let bad = |why: &str| Err(SignupError::Invalid(format!("site name `{name}`: {why}")));
    if name.is_empty() || name.len() > 63 {
        return bad("use 1 to 63 characters");
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return bad("use lowercase letters, digits and `-` only");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return bad("it may not start or end with `-`");
    }
    if RESERVED.contains(&name) || extra_reserved.iter().any(|r| r == name) {
        return bad("this name is reserved");
    }
    Ok(())
}

/// Trac user names: safe in htpasswd and on `trac-admin`'s command line; not a Trac group
/// (`anonymous`, `authenticated`) nor an all-uppercase permission name.
pub fn check_user(user: &str) -> Result<(), SignupError> {
    let bad = |why: &str| Err(SignupError::Invalid(format!("admin user `{user}`: {why}")));
    let b = user.as_bytes();
    if b.is_empty() || b.len() > 64 {
        return bad("use 1 to 64 characters");
    }
    if !b[0].is_ascii_alphanumeric()
        || !b.iter().all(|c| c.is_ascii_alphanumeric() || b"._@-".contains(c))
    {
        return bad("use letters, digits, `.`, `_`, `@` and `-`, starting with a letter or digit");
    }
    if matches!(user, "anonymous" | "authenticated") || !b.iter().any(u8::is_ascii_lowercase) {
        return bad("this name is reserved by Trac (use at least one lowercase letter)");
    }
    Ok(())
}

/// 8 to 72 bytes (bcrypt reads no further), no control characters.
pub fn check_password(p: &str) -> Result<(), SignupError> {
    if p.len() < 8 || p.len() > 72 || p.chars().any(char::is_control) {
        return Err(SignupError::Invalid(
            "password: use 8 to 72 bytes, without control characters".into(),
        ));
    }
    Ok(())
}

/// A tenant, a configured name, or anything at all at `<sites>/NAME`.
fn taken(cfg: &Config, sites: &Path, name: &str) -> bool {
    cfg.tenants.contains_key(name)
        || cfg.tenant(name).is_some()
        || std::fs::symlink_metadata(sites.join(name)).is_ok()
}

/// Placeholder values for the provisioning commands.
struct Vars(Vec<(&'static str, String)>);

impl Vars {
    fn new(cfg: &Config, sc: &SignupConfig, dir: &Path, sites: &Path, req: &SignupRequest) -> Vars {
        let final_dir = sites.join(&req.name);
        let venv = cfg.defaults.expand(&req.name, &final_dir, Some(sites)).process.virtualenv;
        let trac_admin = match &venv {
            Some(v) => format!("{}/bin/trac-admin", v.trim_end_matches('/')),
            None => "trac-admin".to_string(),
        };
        let _ = sc;
        Vars(vec![
            ("{name}", req.name.clone()),
            ("{dir}", dir.display().to_string()),
            ("{final_dir}", final_dir.display().to_string()),
            ("{sites}", sites.display().to_string()),
            ("{venv}", venv.unwrap_or_default()),
            ("{trac_admin}", trac_admin),
            ("{admin_user}", req.admin_user.clone()),
        ])
    }

    fn expand(&self, arg: &str) -> String {
        self.0.iter().fold(arg.to_string(), |s, (k, v)| s.replace(k, v))
    }
}

/// Run every provisioning command in `dir` as `owner`, all within `provision_timeout`.
async fn provision(
    sc: &SignupConfig,
    vars: &Vars,
    dir: &Path,
    owner: Option<Creds>,
) -> Result<(), SignupError> {
    let deadline = tokio::time::Instant::now() + sc.provision_timeout;
    // The provisioning commands run the tenant's code (its trac-admin, plugins): they get the
    // built-in pool limits.
    let limits = paddock_supervise::spawn::limits(&Default::default(), owner.as_ref());
    for argv in &sc.provision {
        let argv: Vec<String> = argv.iter().map(|a| vars.expand(a)).collect();
        if argv.is_empty() {
            continue;
        }
        let c = TenantCommand {
            argv: &argv,
            dir,
            creds: owner.clone(),
            umask: PROVISION_UMASK,
            limits,
        };
        match command::run(&c, deadline).await {
            Ok(_) => {}
            Err(CommandError::Timeout { shown, .. }) => {
                let t = sc.provision_timeout;
                return Err(SignupError::Provision(format!(
                    "`{shown}` timed out (provision_timeout = {t:?})"
                )));
            }
            Err(e) => return Err(SignupError::Provision(e.to_string())),
        }
    }
    Ok(())
}

/// `user:bcrypt-hash` and a newline (the hash computed off the async threads).
async fn htpasswd_entry(user: &str, password: &str) -> Result<String, SignupError> {
    let pw = password.to_string();
    let hash = tokio::task::spawn_blocking(move || bcrypt::hash(pw, BCRYPT_COST))
        .await
        .map_err(|e| internal(format!("bcrypt task failed: {e}")))?
        .map_err(|e| internal(format!("bcrypt failed: {e}")))?;
    Ok(format!("{user}:{hash}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "demo-1", "0abc", &"x".repeat(63)] {
            assert!(check_name(ok, &[]).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", "é", "admin", "metrics", &"x".repeat(64)] {
            assert!(check_name(bad, &[]).is_err(), "{bad}");
        }
        assert!(check_name("acme", &["acme".into()]).is_err());
    }

    #[test]
    fn users_and_passwords() {
        for ok in ["alice", "a.b@c-d_e", "Bob"] {
            assert!(check_user(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", "a b", "a'b", "a:b", "anonymous", "TRAC_ADMIN", "ADMIN"] {
            assert!(check_user(bad).is_err(), "{bad}");
        }
        assert!(check_password("long enough").is_ok());
        assert!(check_password("short").is_err());
        assert!(check_password("new\nline!").is_err());
        assert!(check_password(&"x".repeat(73)).is_err());
    }
}

//! `[admin]` keys for tenant management and self-service signup, after validation.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::file::AdminSection;
use super::units::parse_duration;
use super::Validator;

/// Placeholders a provisioning command may use.
pub const PLACEHOLDERS: [&str; 7] =
    ["{name}", "{dir}", "{final_dir}", "{sites}", "{venv}", "{trac_admin}", "{admin_user}"];

/// Tenant management and signup settings.
#[derive(Debug, Clone)]
pub struct SignupConfig {
    /// Serve `/signup` (no token, rate-limited).
    pub enabled: bool,
    /// Public base URL of the front door without trailing slash; `None`: `http://<listen>`.
    pub public_url: Option<String>,
    /// Archive of deleted tenants; `None`: `<sites>/.archive`.
    pub archive_dir: Option<PathBuf>,
    /// Argv lists run in order, placeholders not yet filled.
    pub provision: Vec<Vec<String>>,
    pub provision_timeout: Duration,
    pub user: Option<String>,
    pub group: Option<String>,
    /// Public signups per client address per `window`; 0: no limit.
    pub limit: u32,
    pub window: Duration,
    /// Operator-reserved names (lowercase), besides the built-in list.
    pub reserved: Vec<String>,
}

/// Trac: create the environment, then make the signing-up user its administrator.
pub fn default_provision() -> Vec<Vec<String>> {
    let cmd = |a: &[&str]| a.iter().map(|s| s.to_string()).collect();
    vec![
        cmd(&["{trac_admin}", "{dir}", "initenv", "{name}", "sqlite:db/trac.db"]),
        cmd(&["{trac_admin}", "{dir}", "permission", "add", "{admin_user}", "TRAC_ADMIN"]),
    ]
}

impl SignupConfig {
    /// Where deleted tenants go.
    pub fn archive_dir(&self, sites: Option<&Path>) -> Option<PathBuf> {
        self.archive_dir.clone().or_else(|| sites.map(|s| s.join(".archive")))
    }
}

pub(super) fn validate(
    v: &mut Validator<'_>,
    s: &AdminSection,
    abs: &dyn Fn(&str) -> PathBuf,
) -> SignupConfig {
    let public_url = s.public_url.as_ref().and_then(|u| {
        let t = u.get_ref().trim_end_matches('/');
        let ok = (t.starts_with("http://") || t.starts_with("https://"))
            && !t.contains(|c: char| c.is_whitespace() || c.is_control() || c == '"');
        if !ok {
            v.err(Some(u.span()), "admin `public_url` must be an http:// or https:// URL");
        }
        ok.then(|| t.to_string())
    });
    let provision = match &s.provision {
        None => default_provision(),
        Some(p) => {
            for cmd in p.get_ref() {
                if cmd.first().is_none_or(|c| c.is_empty()) {
                    v.err(Some(p.span()), "admin `provision`: every command needs a program");
                }
                for arg in cmd {
                    if let Some(bad) = unknown_placeholder(arg) {
                        v.err(
                            Some(p.span()),
                            format!(
                                "admin `provision`: unknown placeholder `{bad}` (use {})",
                                PLACEHOLDERS.join(", ")
                            ),
                        );
                    }
                }
            }
            p.get_ref().clone()
        }
    };
    let mut duration = |field: &Option<toml::Spanned<String>>, name: &str, default: u64| {
        let d = Duration::from_secs(default);
        match field {
            None => d,
            Some(t) => match parse_duration(t.get_ref()) {
                Ok(x) if !x.is_zero() => x,
                Ok(_) => {
                    v.err(Some(t.span()), format!("admin `{name}` must be more than 0"));
                    d
                }
                Err(e) => {
                    v.err(Some(t.span()), format!("admin `{name}`: {e}"));
                    d
                }
            },
        }
    };
    let provision_timeout = duration(&s.provision_timeout, "provision_timeout", 120);
    let window = duration(&s.signup_window, "signup_window", 600);
    let limit = match &s.signup_limit {
        None => 5,
        Some(n) => u32::try_from(*n.get_ref()).unwrap_or_else(|_| {
            v.err(Some(n.span()), "admin `signup_limit` must be 0 (no limit) or more");
            5
        }),
    };
    let mut unix = |field: &Option<toml::Spanned<String>>, what: &str| {
        field.as_ref().map(|u| {
            if !crate::tenant::valid_unix_name(u.get_ref()) {
                v.err(
                    Some(u.span()),
                    format!("admin `{what}`: `{}` is not a valid name", u.get_ref()),
                );
            }
            u.get_ref().clone()
        })
    };
    let user = unix(&s.signup_user, "signup_user");
    let group = unix(&s.signup_group, "signup_group");
    SignupConfig {
        enabled: s.signup.unwrap_or(true),
        public_url,
        archive_dir: s.archive_dir.as_ref().map(|a| abs(a.get_ref())),
        provision,
        provision_timeout,
        user,
        group,
        limit,
        window,
        reserved: s.reserved_names.iter().flatten().map(|n| n.to_ascii_lowercase()).collect(),
    }
}

/// The first `{...}` in `arg` that is not a known placeholder.
fn unknown_placeholder(arg: &str) -> Option<String> {
    let mut rest = arg;
    while let Some(start) = rest.find('{') {
        let tail = &rest[start..];
        let end = tail.find('}').map(|e| e + 1).unwrap_or(tail.len());
        let ph = &tail[..end];
        if !PLACEHOLDERS.contains(&ph) {
            return Some(ph.to_string());
        }
        rest = &tail[end..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders() {
        assert_eq!(unknown_placeholder("{venv}/bin/trac-admin"), None);
        assert_eq!(unknown_placeholder("x{name}-{dir}"), None);
        assert_eq!(unknown_placeholder("{nmae}").as_deref(), Some("{nmae}"));
        assert_eq!(unknown_placeholder("a{b").as_deref(), Some("{b"));
    }
}

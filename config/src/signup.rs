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
    /// Public address of the signup page (linked from the index); `None`:
    /// `http://<admin listen>/signup`.
    pub signup_url: Option<String>,
    /// Archive of deleted tenants; `None`: `<sites>/.archive`.
    pub archive_dir: Option<PathBuf>,
    /// Argv lists run in order, placeholders not yet filled.
    pub provision: Vec<Vec<String>>,
    pub provision_timeout: Duration,
    /// As root: one shared user for every new site (opt-in); `None`: one user per site.
    pub user: Option<String>,
    pub group: Option<String>,
    /// Name of each new site's own user, with `{name}`.
    pub site_user: String,
    /// uids (and gids) of the sites' own users, inclusive.
    pub site_uids: (u32, u32),
    /// Public signups per client address per `window`; 0: no limit.
    pub limit: u32,
    pub window: Duration,
    /// Operator-reserved names (lowercase), besides the built-in list.
    pub reserved: Vec<String>,
}

/// Default `site_user` and `site_uid_min`/`site_uid_max`.
pub const SITE_USER: &str = "site-{name}";
pub const SITE_UIDS: (u32, u32) = (30000, 39999);

/// Trac: create the environment, then make the signing-up user its administrator. Unless
/// `plugin_upload`, the plugin panel is switched off: an uploaded plugin is code run as the
/// site's user, which TRAC_ADMIN alone should not give.
pub fn default_provision(plugin_upload: bool) -> Vec<Vec<String>> {
    let cmd = |a: &[&str]| a.iter().map(|s| s.to_string()).collect();
    let mut v = vec![
        cmd(&["{trac_admin}", "{dir}", "initenv", "{name}", "sqlite:db/trac.db"]),
        cmd(&["{trac_admin}", "{dir}", "permission", "add", "{admin_user}", "TRAC_ADMIN"]),
    ];
    if !plugin_upload {
        let panel = "trac.admin.web_ui.PluginAdminPanel";
        v.push(cmd(&["{trac_admin}", "{dir}", "config", "set", "components", panel, "disabled"]));
    }
    v
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
    let mut url = |field: &Option<toml::Spanned<String>>, name: &str| {
        field.as_ref().and_then(|u| {
            let t = u.get_ref().trim_end_matches('/');
            let ok = (t.starts_with("http://") || t.starts_with("https://"))
                && !t.contains(|c: char| c.is_whitespace() || c.is_control() || c == '"');
            if !ok {
                v.err(Some(u.span()), format!("admin `{name}` must be an http:// or https:// URL"));
            }
            ok.then(|| t.to_string())
        })
    };
    let public_url = url(&s.public_url, "public_url");
    let signup_url = url(&s.signup_url, "signup_url");
    let provision = match &s.provision {
        None => default_provision(s.signup_plugin_upload.unwrap_or(false)),
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
    let site_user = site_user(v, s);
    let site_uids = site_uids(v, s);
    SignupConfig {
        enabled: s.signup.unwrap_or(true),
        public_url,
        signup_url,
        archive_dir: s.archive_dir.as_ref().map(|a| abs(a.get_ref())),
        provision,
        provision_timeout,
        user,
        group,
        site_user,
        site_uids,
        limit,
        window,
        reserved: s.reserved_names.iter().flatten().map(|n| n.to_ascii_lowercase()).collect(),
    }
}

/// `site_user`: `{name}` is required (one user per site), the rest must make a user name.
fn site_user(v: &mut Validator<'_>, s: &AdminSection) -> String {
    let Some(p) = &s.site_user else { return SITE_USER.to_string() };
    let sample = p.get_ref().replace("{name}", "a");
    if !p.get_ref().contains("{name}") || !crate::tenant::valid_unix_name(&sample) {
        v.err(
            Some(p.span()),
            "admin `site_user` must be a user name holding `{name}`, such as \"site-{name}\"",
        );
    }
    p.get_ref().clone()
}

fn site_uids(v: &mut Validator<'_>, s: &AdminSection) -> (u32, u32) {
    let mut get = |f: &Option<toml::Spanned<i64>>, name: &str, d: u32| match f {
        None => d,
        Some(n) => u32::try_from(*n.get_ref()).ok().filter(|&u| u >= 1000).unwrap_or_else(|| {
            v.err(Some(n.span()), format!("admin `{name}` must be a uid from 1000 up"));
            d
        }),
    };
    let (lo, hi) = (
        get(&s.site_uid_min, "site_uid_min", SITE_UIDS.0),
        get(&s.site_uid_max, "site_uid_max", SITE_UIDS.1),
    );
    if lo > hi {
        v.err(
            s.site_uid_min.as_ref().map(|n| n.span()),
            "admin `site_uid_min` is above `site_uid_max`",
        );
    }
    (lo, hi)
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

//! `[defaults.auth]` / `[tenants.NAME.auth]`: the section as written, its validation, and the
//! settings a tenant runs with (placeholders expanded by [`AuthSettings::expand`]).

use std::fmt;
use std::ops::Range;
use std::path::Path;

use regex::bytes::Regex;
use serde::Deserialize;
use toml::Spanned;

/// Paths protected when the section does not say: Trac's login page.
pub const DEFAULT_PATHS: [&str; 1] = ["/login"];
/// Realm when the section does not say.
pub const DEFAULT_REALM: &str = "Trac";

/// The `auth` table as written; merged key by key over the one of `[defaults]`.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct AuthSection {
    /// Apache htpasswd file (bcrypt, `$apr1$` MD5 or `{SHA}` entries).
    pub htpasswd: Option<Spanned<String>>,
    /// Realm sent in `WWW-Authenticate` (may be empty).
    pub realm: Option<Spanned<String>>,
    /// Paths inside the tenant (PATH_INFO) that need credentials: segment prefixes, or
    /// regular expressions when they start with `^`. `[]` turns authentication off.
    pub paths: Option<Spanned<Vec<Spanned<String>>>>,
}

impl AuthSection {
    /// `self` with every unset key taken from `base`.
    pub fn over(&self, base: &AuthSection) -> AuthSection {
        AuthSection {
            htpasswd: self.htpasswd.clone().or_else(|| base.htpasswd.clone()),
            realm: self.realm.clone().or_else(|| base.realm.clone()),
            paths: self.paths.clone().or_else(|| base.paths.clone()),
        }
    }

    /// Merge two optional sections (tenant over defaults).
    pub fn merge(a: &Option<AuthSection>, b: &Option<AuthSection>) -> Option<AuthSection> {
        match (a, b) {
            (Some(a), Some(b)) => Some(a.over(b)),
            (a, b) => a.clone().or_else(|| b.clone()),
        }
    }
}

/// Validated authentication settings of one pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    /// The htpasswd file; absolute once expanded (relative paths are resolved from the
    /// configuration file's directory at validation).
    pub htpasswd: String,
    pub realm: String,
    pub paths: Vec<PathRule>,
    /// The tenant directory and `sites` (filled by expansion): an `htpasswd` below either is
    /// the tenant's file, reached with no symlink (see [`paddock_sys::safefs`]).
    pub tenant_dir: Option<std::path::PathBuf>,
    pub sites: Option<std::path::PathBuf>,
}

/// One entry of `paths`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathRule {
    /// `/login`: the path itself and everything below it (segment boundary). Stored without
    /// a trailing slash, so `/` is the empty prefix and protects everything.
    Prefix(String),
    /// `^...`: a regular expression matched against the path bytes.
    Regex(Pattern),
}

/// A compiled regular expression compared by its source (PoolSettings must be `Eq`).
#[derive(Clone)]
pub struct Pattern(pub Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for Pattern {}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0.as_str())
    }
}

/// A problem in the section: where (a span of the config text, if known) and what.
pub type Problem = (Option<Range<usize>>, String);

/// Validate a merged section. `None` when authentication is off (no section, or `paths = []`);
/// problems are returned for the caller to report with file and line.
pub fn validate(s: Option<&AuthSection>, base_dir: &Path) -> (Option<AuthSettings>, Vec<Problem>) {
    let Some(s) = s else { return (None, Vec::new()) };
    let mut problems = Vec::new();
    let mut paths = Vec::new();
    match &s.paths {
        None => paths.extend(DEFAULT_PATHS.iter().map(|p| PathRule::Prefix(p.to_string()))),
        Some(list) => {
            for p in list.get_ref() {
                match path_rule(p.get_ref()) {
                    Ok(r) => paths.push(r),
                    Err(e) => problems.push((Some(p.span()), e)),
                }
            }
            if list.get_ref().is_empty() {
                return (None, problems);
            }
        }
    }
    let realm = s.realm.as_ref().map(|r| r.get_ref().clone());
    let realm = realm.unwrap_or_else(|| DEFAULT_REALM.to_string());
    if realm.chars().any(char::is_control) {
        problems.push((
            s.realm.as_ref().map(|r| r.span()),
            "`auth.realm` must not contain control characters".to_string(),
        ));
    }
    let any_span = || {
        let p = s.paths.as_ref().map(|p| p.span());
        p.or_else(|| s.realm.as_ref().map(|r| r.span()))
    };
    let htpasswd = match &s.htpasswd {
        Some(h) if h.get_ref().trim().is_empty() => {
            problems.push((Some(h.span()), "`auth.htpasswd` must name a file".to_string()));
            String::new()
        }
        Some(h) => resolve(h.get_ref(), base_dir),
        None => {
            problems.push((any_span(), "`auth` needs `htpasswd = \"PATH\"`".to_string()));
            String::new()
        }
    };
    (Some(AuthSettings { htpasswd, realm, paths, tenant_dir: None, sites: None }), problems)
}

/// Relative paths are resolved from the configuration file's directory, unless they start
/// with a placeholder that expands to an absolute path.
fn resolve(p: &str, base_dir: &Path) -> String {
    if Path::new(p).is_absolute() || p.starts_with("{tenant_dir}") || p.starts_with("{sites}") {
        p.to_string()
    } else {
        base_dir.join(p).display().to_string()
    }
}

fn path_rule(p: &str) -> Result<PathRule, String> {
    if p.starts_with('^') {
        return regex::bytes::RegexBuilder::new(p)
            .nest_limit(paddock_rules::NEST_LIMIT)
            .build()
            .map(|r| PathRule::Regex(Pattern(r)))
            .map_err(|e| format!("`auth.paths`: invalid regular expression `{p}`: {e}"));
    }
    if !p.starts_with('/') {
        return Err(format!("`auth.paths`: `{p}` must start with `/` (a path) or `^` (a regex)"));
    }
    Ok(PathRule::Prefix(p.trim_end_matches('/').to_string()))
}

impl AuthSettings {
    /// Fill the placeholders (`x` is the tenant's expansion function).
    pub fn expand(&self, x: &dyn Fn(&str) -> String) -> AuthSettings {
        AuthSettings {
            htpasswd: x(&self.htpasswd),
            realm: x(&self.realm),
            paths: self.paths.clone(),
            tenant_dir: self.tenant_dir.clone(),
            sites: self.sites.clone(),
        }
    }

    /// The same settings for the tenant living in `dir`.
    pub fn within(mut self, dir: &Path, sites: Option<&Path>) -> AuthSettings {
        self.tenant_dir = Some(dir.to_path_buf());
        self.sites = sites.map(Path::to_path_buf);
        self
    }

    /// Where the htpasswd file lies: in the tenant's reach or the operator's.
    pub fn htpasswd_place(&self) -> paddock_sys::safefs::Place {
        let file = Path::new(&self.htpasswd);
        paddock_sys::safefs::Place::of(file, self.tenant_dir.as_deref(), self.sites.as_deref())
    }

    /// Whether `path_info` (the path inside the tenant, as the app will see it) needs
    /// credentials. The normalised form is checked too, so `/./login` or `//login` cannot
    /// slip past a rule an application would still route to its login page.
    pub fn protects(&self, path_info: &[u8]) -> bool {
        let normalised = paddock_rules::path::normalise(path_info);
        self.paths.iter().any(|r| r.matches(path_info) || r.matches(&normalised))
    }
}

impl PathRule {
    pub fn matches(&self, path: &[u8]) -> bool {
        match self {
            PathRule::Prefix(p) => {
                let p = p.as_bytes();
                path.starts_with(p) && (path.len() == p.len() || path[p.len()] == b'/')
            }
            PathRule::Regex(r) => r.0.is_match(path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(paths: &[&str]) -> AuthSettings {
        let rules = paths.iter().map(|p| path_rule(p).expect("valid")).collect();
        AuthSettings {
            htpasswd: "/x".into(),
            realm: String::new(),
            paths: rules,
            tenant_dir: None,
            sites: None,
        }
    }

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        let s = settings(&["/login"]);
        for yes in ["/login", "/login/", "/login/x", "//login", "/./login", "/x/../login"] {
            assert!(s.protects(yes.as_bytes()), "{yes}");
        }
        for no in ["/loginx", "/", "", "/wiki/login", "/Login"] {
            assert!(!s.protects(no.as_bytes()), "{no}");
        }
        let trailing = settings(&["/login/"]);
        assert!(trailing.protects(b"/login") && !trailing.protects(b"/loginx"));
    }

    #[test]
    fn root_protects_everything() {
        let s = settings(&["/"]);
        for p in ["", "/", "/wiki", "/login/x"] {
            assert!(s.protects(p.as_bytes()), "{p}");
        }
    }

    #[test]
    fn regexes_match_bytes() {
        let s = settings(&["^/(admin|prefs)(/|$)", "^/wiki/é"]);
        assert!(s.protects(b"/admin") && s.protects(b"/prefs/x"));
        assert!(!s.protects(b"/administrator") && !s.protects(b"/x/admin"));
        assert!(s.protects("/wiki/été".as_bytes()));
        assert!(!s.protects(b"/wiki/\xe9t\xe9"), "latin-1 bytes are not UTF-8 é");
    }

    #[test]
    fn validation_reports_bad_entries() {
        let sec = AuthSection {
            htpasswd: None,
            realm: Some(Spanned::new(1..2, "a\nb".into())),
            paths: Some(Spanned::new(
                3..4,
                vec![Spanned::new(5..6, "login".into()), Spanned::new(7..8, "^(".into())],
            )),
        };
        let (_, problems) = validate(Some(&sec), Path::new("/etc"));
        let msgs: Vec<String> = problems.iter().map(|(_, m)| m.clone()).collect();
        assert_eq!(problems.len(), 4, "{msgs:?}");
        assert_eq!(problems[0].0, Some(5..6));
        assert!(msgs[0].contains("must start with `/`"));
        assert!(msgs[1].contains("invalid regular expression"));
        assert!(msgs[2].contains("control characters"));
        assert!(msgs[3].contains("htpasswd"));
    }

    #[test]
    fn defaults_and_resolution() {
        let sec = AuthSection {
            htpasswd: Some(Spanned::new(0..1, "users".into())),
            ..AuthSection::default()
        };
        let (s, problems) = validate(Some(&sec), Path::new("/etc/paddock"));
        let s = s.expect("on");
        assert!(problems.is_empty());
        assert_eq!(s.htpasswd, "/etc/paddock/users");
        assert_eq!(s.realm, DEFAULT_REALM);
        assert_eq!(s.paths, vec![PathRule::Prefix("/login".into())]);
        let off = AuthSection { paths: Some(Spanned::new(0..1, vec![])), ..sec.clone() };
        assert_eq!(validate(Some(&off), Path::new("/")).0, None);
        let tenant =
            AuthSection { htpasswd: Some(Spanned::new(0..1, "{tenant_dir}/pw".into())), ..sec };
        let s = validate(Some(&tenant), Path::new("/etc")).0.expect("on");
        let x = |v: &str| v.replace("{tenant_dir}", "/srv/a");
        assert_eq!(s.expand(&x).htpasswd, "/srv/a/pw");
    }
}

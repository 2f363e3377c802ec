//! Configuration: load the TOML file (or build from flags alone), validate everything once,
//! and report problems as `file:line: what is wrong`.
//!
//! Over 500 lines: [`Config`], every top-level setting and the one validation pass that fills
//! it stay together, so a setting is added in one place (its section types are in `file.rs`,
//! its per-tenant half in `settings.rs`).

pub mod auth;
pub mod cluster;
mod file;
pub mod limits;
mod settings;
mod signup;
pub mod statics;
pub mod tenant;
pub mod tls;
pub mod units;
mod unknown;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use toml::Spanned;

pub use file::{AdminSection, FileConfig, RuleEntry, TenantSection};
pub use settings::{
    AdmissionSettings, Limits, OpsSettings, PoolSettings, ProcessSettings, RequestSettings,
};
pub use signup::{default_provision, SignupConfig};

use paddock_rules::diag::{line_of, Diagnostic, Diagnostics};
use paddock_rules::{self as rules, RuleSet};

const DEFAULT_HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
const DEFAULT_MAX_HEAD: usize = 64 * 1024;
const DEFAULT_SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
const DEFAULT_DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Long against a Trac start (0.2-1 s of CPU): at most `max_workers_total` stops per 30 s.
pub const DEFAULT_MIN_RESIDENCY: std::time::Duration = std::time::Duration::from_secs(30);

/// Default HTTP/2 streams in flight per connection: a page and its resources at once, as
/// browsers fetch them, without letting one connection take a tenant's whole queue.
pub const DEFAULT_HTTP2_MAX_STREAMS: u32 = 100;
/// Above this, one connection could hold more requests than the tenants' queues.
const MAX_HTTP2_MAX_STREAMS: i64 = 1000;

/// Default front-door address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Validated configuration: what the server runs with.
#[derive(Debug)]
pub struct Config {
    /// The file it came from, if any (for messages and reload).
    pub source: Option<PathBuf>,
    pub listen: SocketAddr,
    pub sites: Option<PathBuf>,
    /// Mount of discovered tenants without trailing slash: `/trac`, or `` for the root.
    pub mount: String,
    pub marker: PathBuf,
    pub index: bool,
    pub index_title: String,
    pub index_template: Option<String>,
    pub rules: RuleSet,
    /// Directories rule file tests may look into (sites, tenant dirs, `file_test_roots`).
    pub file_roots: Vec<PathBuf>,
    pub runtime_dir: Option<PathBuf>,
    /// The router's durable state, out of every tenant's reach (`<sites>/.paddock` by
    /// default); `None` without `sites` or `state_dir`: tenants cannot be disabled.
    pub state_dir: Option<PathBuf>,
    pub worker_bin: Option<PathBuf>,
    pub allow_root: bool,
    /// Most worker processes across all tenants; 0: no limit (default: from the memory).
    pub max_workers_total: usize,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Database servers (TCP address and port) whose connections from the tenants' workers
    /// `/metrics` counts (`paddock_tenant_database_connections`).
    pub database_servers: Vec<SocketAddr>,
    pub header_read_timeout: std::time::Duration,
    pub max_header_bytes: usize,
    pub max_response_head_bytes: usize,
    /// Most client connections open at once (more wait before `accept`).
    pub max_connections: usize,
    /// A client connection whose writes make no progress this long is closed.
    pub send_timeout: std::time::Duration,
    /// After SIGTERM, open client connections get this long to finish before they are closed.
    pub drain_timeout: std::time::Duration,
    /// A pool runs at least this long (since its start or last unpark) before it may be
    /// stopped to make room under `max_workers_total` (read at start).
    pub min_residency: std::time::Duration,
    /// The admin listener, if any.
    pub admin: Option<AdminConfig>,
    /// `[cluster]`: this node is one of several on etcd; `None`: a node alone.
    pub cluster: Option<cluster::ClusterSettings>,
    /// `[tls]`: the HTTPS listener; `None`: plain HTTP only.
    pub tls: Option<tls::TlsSettings>,
    /// Most HTTP/2 streams in flight on one connection (both listeners).
    pub http2_max_concurrent_streams: u32,
    /// HTTP/2 with prior knowledge on the plain listener.
    pub h2c: bool,
    /// Settings for discovered tenants.
    pub defaults: PoolSettings,
    /// Static files of discovered tenants. Kept out of [`PoolSettings`] so that changing
    /// them on reload restarts no pool.
    pub static_defaults: statics::StaticSettings,
    /// Explicitly configured tenants.
    pub tenants: BTreeMap<String, TenantConfig>,
}

/// `[admin]` after validation.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    pub tokens_file: Option<PathBuf>,
    pub metrics_token: bool,
    /// Tenants that get their own `tenant` label in `/metrics`; the rest are `_other`.
    pub metrics_max_tenants: usize,
    /// Most connections open at once on the admin listener.
    pub max_connections: usize,
    /// Tenant management and self-service signup.
    pub signup: SignupConfig,
}

/// Default admin address: loopback only.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9180";

/// Default cap on the admin listener's open connections.
pub const DEFAULT_ADMIN_MAX_CONNECTIONS: usize = 256;

/// Default bound on tenants labelled in `/metrics`.
pub const DEFAULT_METRICS_MAX_TENANTS: usize = 100;

/// One `[tenants.NAME]` after validation.
#[derive(Debug, Clone)]
pub struct TenantConfig {
    pub dir: Option<PathBuf>,
    /// Explicit mount (`` for the root), if the tenant has one.
    pub mount: Option<String>,
    pub settings: PoolSettings,
    pub statics: statics::StaticSettings,
}

/// Flags given on the command line; they override the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    /// `--admin ADDR`: enable the admin listener there.
    pub admin: Option<String>,
    pub sites: Option<PathBuf>,
    pub virtualenv: Option<PathBuf>,
    pub worker_bin: Option<PathBuf>,
    pub runtime_dir: Option<PathBuf>,
    pub allow_root: bool,
}

impl Config {
    /// Read and validate `path`, then apply `ov`.
    pub fn load(path: &Path, ov: &Overrides) -> Result<Config, Diagnostics> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Diagnostics(vec![Diagnostic::new(path, 0, format!("cannot read config: {e}"))])
        })?;
        Self::from_text(&text, path, ov)
    }

    /// Validate `text` as if read from `path` (relative paths in it resolve against `path`'s
    /// directory), then apply `ov`.
    pub fn from_text(text: &str, path: &Path, ov: &Overrides) -> Result<Config, Diagnostics> {
        let (parsed, unknown) = unknown::parse(text, path).map_err(Diagnostics)?;
        Validator { file: path, text, errors: unknown }.finish(parsed, ov, Some(path))
    }

    /// Configuration from flags alone (`paddock serve --sites DIR`).
    pub fn from_overrides(ov: &Overrides) -> Result<Config, Diagnostics> {
        let file = Path::new("<command line>");
        Validator { file, text: "", errors: Vec::new() }.finish(FileConfig::default(), ov, None)
    }

    /// Static-file settings of tenant `name` (configured, else the defaults).
    pub fn static_files(&self, name: &str) -> &statics::StaticSettings {
        self.tenants.get(name).map_or(&self.static_defaults, |t| &t.statics)
    }

    /// Settings that are valid but probably not what the operator wants, each a line for
    /// `paddock check` and the start-up log.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let file = self.source.as_deref().unwrap_or(Path::new("<command line>")).display();
        if self.admin.as_ref().is_some_and(|a| a.signup.enabled) {
            if self.max_workers_total == 0 {
                out.push(format!(
                    "{file}: warning: signup is on and `max_workers_total` is 0 (no limit): \
                     anonymous visits to every signed-up site start a pool (about 50 MB each); \
                     leave it unset (derived from the memory) or set a cap"
                ));
            }
            if self.defaults.request.auth.is_none() {
                out.push(format!(
                    "{file}: warning: signup is on without [defaults.auth]: the admins of new \
                     sites can never log in (add [defaults.auth] htpasswd = \"{{tenant_dir}}/htpasswd\")"
                ));
            }
            if let Some(p) = self.signup_auth_problem() {
                out.push(format!(
                    "{file}: warning: signup is on, but {p}; signup is refused until then"
                ));
            }
        }
        out
    }

    /// Why the first admin signup writes into a new site's `htpasswd` (`<sites>/<name>/htpasswd`)
    /// would not be the file the new site's `[defaults.auth]` reads (a migrated Apache host's
    /// shared `AuthUserFile`, say), so that new admins would get 401; `None` when it is.
    /// Signup refuses to create sites while this holds, and `paddock check` warns of it.
    pub fn signup_auth_problem(&self) -> Option<String> {
        let sites = self.sites.as_ref()?;
        let written = self.defaults.request.auth.as_ref()?.htpasswd.clone();
        let probe = "new-site";
        let dir = sites.join(probe);
        let expanded = self.defaults.expand(probe, &dir, Some(sites));
        let read = expanded.request.auth.as_ref()?.htpasswd.clone();
        (Path::new(&read) != dir.join("htpasswd")).then(|| {
            format!(
                "[defaults.auth] htpasswd is `{written}` while signup writes each new site's \
                 first admin into <site>/htpasswd, so that admin would get 401: set htpasswd = \
                 \"{{tenant_dir}}/htpasswd\" (a file shared by sites would also let one site's \
                 signup user log in to all of them)"
            )
        })
    }

    /// Where the config file lives; relative paths in it are resolved from there.
    fn base_dir(source: Option<&Path>) -> PathBuf {
        source
            .and_then(|p| p.parent())
            .map(|p| if p.as_os_str().is_empty() { Path::new(".") } else { p })
            .unwrap_or(Path::new("."))
            .to_path_buf()
    }
}

/// Collects every problem in one pass so the operator sees them all at once.
struct Validator<'a> {
    file: &'a Path,
    text: &'a str,
    errors: Vec<Diagnostic>,
}

impl Validator<'_> {
    fn err(&mut self, span: Option<std::ops::Range<usize>>, msg: impl Into<String>) {
        let line = span.map(|s| line_of(self.text, s.start)).unwrap_or(0);
        self.errors.push(Diagnostic::new(self.file, line, msg));
    }

    /// The errors in the order of the file: this file's by line (those about the whole
    /// file, line 0, last), then other files' (rules files), each once: a `[defaults]` value
    /// is validated again in every tenant it is merged into.
    fn sorted(self) -> Diagnostics {
        let mut all = self.errors;
        all.sort_by(|a, b| {
            let key = |d: &Diagnostic| (d.file != self.file, d.file.clone(), d.line == 0, d.line);
            key(a).cmp(&key(b))
        });
        let mut seen = std::collections::HashSet::new();
        all.retain(|d| seen.insert((d.file.clone(), d.line, d.message.clone())));
        Diagnostics(all)
    }

    fn err_at(&mut self, line: usize, msg: impl Into<String>) {
        self.errors.push(Diagnostic::new(self.file, line, msg));
    }

    /// Line of the first header mentioning `[tenants.NAME` (quoted or not); 0 if not found.
    fn table_line(&self, name: &str) -> usize {
        let keys = [format!("tenants.{name}"), format!("tenants.\"{name}\"")];
        self.text
            .lines()
            .position(|l| {
                let l = l.trim_start().trim_start_matches('[').trim_start();
                keys.iter().any(|k| l.starts_with(k.as_str()))
            })
            .map(|i| i + 1)
            .unwrap_or(0)
    }

    fn finish(
        mut self,
        f: FileConfig,
        ov: &Overrides,
        source: Option<&Path>,
    ) -> Result<Config, Diagnostics> {
        let base = Config::base_dir(source);
        let abs = |p: &str| -> PathBuf {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };

        let listen_text = ov
            .listen
            .clone()
            .or_else(|| f.listen.as_ref().map(|l| l.get_ref().clone()))
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen = match listen_text.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                let span = f.listen.as_ref().map(|l| l.span());
                self.err(span, format!("`{listen_text}` is not an address such as 127.0.0.1:8080"));
                SocketAddr::from(([127, 0, 0, 1], 8080))
            }
        };

        let sites = ov.sites.clone().or_else(|| f.sites.as_ref().map(|s| abs(s.get_ref())));
        let mount = match f.mount.as_ref() {
            None => "/trac".to_string(),
            Some(m) => match normalise_mount(m.get_ref()) {
                Ok(m) => m,
                Err(e) => {
                    self.err(Some(m.span()), e);
                    String::new()
                }
            },
        };
        let marker = f.marker.as_ref().map(|m| m.get_ref().as_str()).unwrap_or("conf/trac.ini");
        if Path::new(marker).is_absolute() || marker.split('/').any(|s| s == "..") {
            let span = f.marker.as_ref().map(|m| m.span());
            self.err(span, "`marker` must be a path inside the tenant directory, without `..`");
        }

        let index_template = f.index_template.as_ref().and_then(|t| {
            let p = abs(t.get_ref());
            match std::fs::read_to_string(&p) {
                Ok(s) => Some(s),
                Err(e) => {
                    self.err(Some(t.span()), format!("cannot read {}: {e}", p.display()));
                    None
                }
            }
        });

        let rules = self.rules(&f, &abs);

        let mut builtin = settings::builtin_section();
        if let Some(v) = &ov.virtualenv {
            builtin.virtualenv = Some(toml::Spanned::new(0..0, v.display().to_string()));
        }
        let defaults_section = f.defaults.clone().unwrap_or_default().over(&builtin);
        if let Some(d) = &f.defaults {
            if let Some(span) =
                d.dir.as_ref().map(|x| x.span()).or(d.mount.as_ref().map(|x| x.span()))
            {
                self.err(Some(span), "`dir` and `mount` belong in [tenants.NAME], not [defaults]");
            }
        }
        let defaults = settings::validate(&mut self, &defaults_section);
        let static_defaults = statics::validate(&mut self, &defaults_section);

        let mut tenants = BTreeMap::new();
        let mut file_roots: Vec<PathBuf> = sites.iter().cloned().collect();
        for (name, s) in &f.tenants {
            let at = self.table_line(name);
            if !tenant::valid_name(name) {
                self.err_at(
                    at,
                    format!("tenant name `{name}` is not valid: use letters, digits, `-`, `_` and `.`, at most 63, starting with a letter or digit"),
                );
            }
            let dir = s.dir.as_ref().map(|d| abs(d.get_ref()));
            if dir.is_none() && sites.is_none() {
                self.err_at(
                    at,
                    format!("tenant `{name}` needs `dir` (no `sites` directory is configured)"),
                );
            }
            file_roots.extend(dir.iter().cloned());
            let tmount = s.mount.as_ref().and_then(|m| match normalise_mount(m.get_ref()) {
                Ok(v) => Some(v),
                Err(e) => {
                    self.err(Some(m.span()), e);
                    None
                }
            });
            let merged = s.over(&defaults_section);
            let settings = settings::validate(&mut self, &merged);
            let statics = statics::validate(&mut self, &merged);
            tenants.insert(name.clone(), TenantConfig { dir, mount: tmount, settings, statics });
        }
        for root in &f.file_test_roots {
            file_roots.push(abs(root.get_ref()));
        }

        let max_workers_total = self.max_workers(&f);
        let database_servers = self.database_servers(&f);
        let admin = self.admin(&f, ov, &abs);
        let cluster = f.cluster.as_ref().and_then(|c| {
            let mut found = Vec::new();
            let settings = cluster::validate(c, |span, m| found.push((span, m)));
            // A missing key is reported at the section's header.
            let header =
                self.text.lines().position(|l| l.trim() == "[cluster]").map_or(0, |i| i + 1);
            for (span, m) in found {
                match span {
                    Some(_) => self.err(span, m),
                    None => self.err_at(header, m),
                }
            }
            settings
        });
        let tls = f.tls.as_ref().and_then(|t| {
            let mut found = Vec::new();
            let settings = tls::validate(t, &abs, |span, m| found.push((span, m)));
            let header = self.text.lines().position(|l| l.trim() == "[tls]").map_or(0, |i| i + 1);
            for (span, m) in found {
                match span {
                    Some(_) => self.err(span, m),
                    None => self.err_at(header, m),
                }
            }
            settings
        });
        let http2_max_concurrent_streams = self.http2_streams(&f);
        let front = self.front_limits(&f);
        let send_timeout = self.send_timeout(&f);
        let drain_timeout = self.drain_timeout(&f);
        let min_residency = self.min_residency(&f);
        let max_connections = self.max_connections(&f);
        if sites.is_none() && tenants.is_empty() {
            self.err(None, "nothing to serve: give `sites` (or --sites DIR) or at least one [tenants.NAME] with `dir`");
        }
        let state_dir = f
            .state_dir
            .as_ref()
            .map(|d| abs(d.get_ref()))
            .or_else(|| sites.as_ref().map(|s| s.join(".paddock")));
        if !self.errors.is_empty() {
            return Err(self.sorted());
        }
        Ok(Config {
            source: source.map(Path::to_path_buf),
            listen,
            sites,
            mount,
            marker: PathBuf::from(marker),
            index: f.index.unwrap_or(true),
            index_title: f.index_title.unwrap_or_else(|| "Available projects".to_string()),
            index_template,
            rules,
            file_roots,
            runtime_dir: ov
                .runtime_dir
                .clone()
                .or_else(|| f.runtime_dir.as_ref().map(|r| abs(r.get_ref()))),
            state_dir,
            worker_bin: ov
                .worker_bin
                .clone()
                .or_else(|| f.worker_bin.as_ref().map(|w| abs(w.get_ref()))),
            allow_root: ov.allow_root || f.allow_root.unwrap_or(false),
            max_workers_total,
            admin,
            cluster,
            tls,
            http2_max_concurrent_streams,
            h2c: f.h2c.unwrap_or(true),
            trusted_proxies: front.0,
            database_servers,
            header_read_timeout: front.1,
            max_header_bytes: front.2,
            max_response_head_bytes: front.3,
            send_timeout,
            drain_timeout,
            min_residency,
            max_connections,
            defaults,
            static_defaults,
            tenants,
        })
    }

    /// `database_servers`: IP address and port each (no host names: nothing is resolved at
    /// load; no socket paths: only TCP peers can be told from `/proc`).
    fn database_servers(&mut self, f: &FileConfig) -> Vec<SocketAddr> {
        let mut out = Vec::new();
        for s in &f.database_servers {
            match s.get_ref().parse::<SocketAddr>() {
                Ok(a) => out.push(a),
                Err(_) => self.err(
                    Some(s.span()),
                    format!(
                        "`database_servers`: `{}` is not an IP address and port (e.g. \"127.0.0.1:5432\", \"[::1]:5432\"); only TCP connections are counted",
                        s.get_ref()
                    ),
                ),
            }
        }
        out
    }

    /// Trusted proxies and the front door's limits.
    fn front_limits(
        &mut self,
        f: &FileConfig,
    ) -> (Vec<ipnet::IpNet>, std::time::Duration, usize, usize) {
        let mut nets = Vec::new();
        for p in &f.trusted_proxies {
            match crate::units::parse_nets(std::slice::from_ref(p.get_ref())) {
                Ok(n) => nets.extend(n),
                Err(e) => self.err(Some(p.span()), format!("`trusted_proxies`: {e}")),
            }
        }
        let timeout = match &f.header_read_timeout {
            Some(t) => units::parse_duration(t.get_ref()).unwrap_or_else(|e| {
                self.err(Some(t.span()), format!("`header_read_timeout`: {e}"));
                DEFAULT_HEADER_READ_TIMEOUT
            }),
            None => DEFAULT_HEADER_READ_TIMEOUT,
        };
        let mut size = |field: &Option<toml::Spanned<String>>, name: &str, min: u64| -> usize {
            match field {
                Some(v) => match units::parse_size(v.get_ref()) {
                    Ok(n) if n >= min => n as usize,
                    Ok(_) => {
                        self.err(Some(v.span()), format!("`{name}` must be at least {min} bytes"));
                        DEFAULT_MAX_HEAD
                    }
                    Err(e) => {
                        self.err(Some(v.span()), format!("`{name}`: {e}"));
                        DEFAULT_MAX_HEAD
                    }
                },
                None => DEFAULT_MAX_HEAD,
            }
        };
        // hyper needs room for at least one read buffer.
        let head = size(&f.max_header_bytes, "max_header_bytes", 8192);
        let resp = size(&f.max_response_head_bytes, "max_response_head_bytes", 1024);
        (nets, timeout, head, resp)
    }

    fn http2_streams(&mut self, f: &FileConfig) -> u32 {
        let Some(n) = &f.http2_max_concurrent_streams else { return DEFAULT_HTTP2_MAX_STREAMS };
        match u32::try_from(*n.get_ref()) {
            Ok(v) if (1..=MAX_HTTP2_MAX_STREAMS).contains(n.get_ref()) => v,
            _ => {
                let m = format!(
                    "`http2_max_concurrent_streams` {} must be from 1 to {MAX_HTTP2_MAX_STREAMS}",
                    n.get_ref()
                );
                self.err(Some(n.span()), m);
                DEFAULT_HTTP2_MAX_STREAMS
            }
        }
    }

    fn max_connections(&mut self, f: &FileConfig) -> usize {
        let default = limits::default_max_connections();
        self.count(&f.max_connections, "`max_connections`", 1, default)
    }

    /// An integer setting of at least `min` (`what` names it in the error); `default` when it
    /// is absent or, after the error, too small.
    fn count(
        &mut self,
        field: &Option<Spanned<i64>>,
        what: &str,
        min: i64,
        default: usize,
    ) -> usize {
        match field {
            Some(n) if *n.get_ref() >= min => usize::try_from(*n.get_ref()).unwrap_or(usize::MAX),
            Some(n) => {
                self.err(Some(n.span()), format!("{what} must be {min} or more"));
                default
            }
            None => default,
        }
    }

    fn send_timeout(&mut self, f: &FileConfig) -> std::time::Duration {
        let Some(t) = &f.send_timeout else { return DEFAULT_SEND_TIMEOUT };
        match units::parse_duration(t.get_ref()) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                self.err(Some(t.span()), "`send_timeout` must be more than 0");
                DEFAULT_SEND_TIMEOUT
            }
            Err(e) => {
                self.err(Some(t.span()), format!("`send_timeout`: {e}"));
                DEFAULT_SEND_TIMEOUT
            }
        }
    }

    /// `drain_timeout`: 0 is allowed (SIGTERM then closes connections at once).
    fn drain_timeout(&mut self, f: &FileConfig) -> std::time::Duration {
        let Some(t) = &f.drain_timeout else { return DEFAULT_DRAIN_TIMEOUT };
        units::parse_duration(t.get_ref()).unwrap_or_else(|e| {
            self.err(Some(t.span()), format!("`drain_timeout`: {e}"));
            DEFAULT_DRAIN_TIMEOUT
        })
    }

    /// `min_residency`: 0 is allowed (any idle pool may be stopped at once, as an LRU cache).
    fn min_residency(&mut self, f: &FileConfig) -> std::time::Duration {
        let Some(t) = &f.min_residency else { return DEFAULT_MIN_RESIDENCY };
        units::parse_duration(t.get_ref()).unwrap_or_else(|e| {
            self.err(Some(t.span()), format!("`min_residency`: {e}"));
            DEFAULT_MIN_RESIDENCY
        })
    }

    fn admin(
        &mut self,
        f: &FileConfig,
        ov: &Overrides,
        abs: &dyn Fn(&str) -> PathBuf,
    ) -> Option<AdminConfig> {
        let section =
            f.admin.clone().or_else(|| ov.admin.as_ref().map(|_| AdminSection::default()))?;
        let text = ov
            .admin
            .clone()
            .or_else(|| section.listen.as_ref().map(|l| l.get_ref().clone()))
            .unwrap_or_else(|| DEFAULT_ADMIN_LISTEN.to_string());
        let listen = match text.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                let span = section.listen.as_ref().map(|l| l.span());
                self.err(
                    span,
                    format!("admin `listen`: `{text}` is not an address such as 127.0.0.1:9180"),
                );
                return None;
            }
        };
        let metrics_max_tenants = self.count(
            &section.metrics_max_tenants,
            "admin `metrics_max_tenants`",
            0,
            DEFAULT_METRICS_MAX_TENANTS,
        );
        let max_connections = self.count(
            &section.max_connections,
            "admin `max_connections`",
            1,
            DEFAULT_ADMIN_MAX_CONNECTIONS,
        );
        Some(AdminConfig {
            listen,
            max_connections,
            tokens_file: section.tokens_file.as_ref().map(|t| abs(t.get_ref())),
            metrics_token: section.metrics_token.unwrap_or(false),
            metrics_max_tenants,
            signup: signup::validate(self, &section, abs),
        })
    }

    fn max_workers(&mut self, f: &FileConfig) -> usize {
        match &f.max_workers_total {
            Some(n) if *n.get_ref() >= 0 => *n.get_ref() as usize,
            Some(n) => {
                self.err(Some(n.span()), "`max_workers_total` must be 0 (no limit) or more");
                0
            }
            None => limits::default_max_workers(),
        }
    }

    fn rules(&mut self, f: &FileConfig, abs: &dyn Fn(&str) -> PathBuf) -> RuleSet {
        let mut set = RuleSet::default();
        if let Some(rf) = &f.rules_file {
            let p = abs(rf.get_ref());
            match std::fs::read_to_string(&p) {
                Ok(text) => match rules::parse_apache(&text, &p) {
                    Ok(r) => set.extend(r),
                    Err(d) => self.errors.extend(d.0),
                },
                Err(e) => self
                    .err(Some(rf.span()), format!("cannot read rules file {}: {e}", p.display())),
            }
        }
        for entry in &f.rules {
            let line = line_of(self.text, entry.span().start);
            let e = entry.get_ref();
            let conds: Vec<&str> = e.conditions.iter().map(String::as_str).collect();
            match rules::parse_rule(&conds, &e.rule, self.file, line) {
                Ok(rule) => set.extend([rule]),
                Err(d) => self.errors.extend(d.0),
            }
        }
        set
    }
}

/// `/trac/` → `/trac`, `/` → ``; must start with `/`, no `.`/`..` or empty segments.
pub fn normalise_mount(m: &str) -> Result<String, String> {
    if !m.starts_with('/') {
        return Err(format!("mount `{m}` must start with `/`"));
    }
    let trimmed = m.trim_end_matches('/');
    for seg in trimmed.split('/').skip(1) {
        if seg.is_empty() || seg == "." || seg == ".." || seg.contains(['%', '?', '#']) {
            return Err(format!("mount `{m}` has an invalid segment `{seg}`"));
        }
    }
    Ok(trimmed.to_string())
}

#[cfg(test)]
mod tests;

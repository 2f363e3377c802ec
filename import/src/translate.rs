//! From the directives httpd would read to a Paddock [`Model`], a rules file and notes.
//!
//! Every `WSGIScriptAlias` becomes a tenant at its URL; a `WSGIScriptAliasMatch` whose
//! rewrite rules name the site's environment under one directory becomes `sites`/`mount`
//! discovery (the rules are kept, the variable naming the daemon process group renamed
//! `paddock.tenant`); each `WSGIDaemonProcess` gives its tenant's pool settings, and where
//! mod_wsgi's defaults differ from Paddock's the mod_wsgi value is written out. `SetEnv` is
//! `environ`, `Alias` below a tenant is `static`, Basic auth in `<Location(Match)>` is `auth`.
//! Several `<VirtualHost>`s are told apart by `%{HTTP_HOST}` rules, the first being the
//! default one, as in httpd.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::conf::{quote, Directive};
use crate::load::Loaded;
use crate::model::{strings, Model, Pool};
use crate::report::Note;
use crate::script::{self, Script};

/// mod_wsgi's `WSGIDaemonProcess` defaults that differ from Paddock's.
const WSGI_PROCESSES: i64 = 1;
const WSGI_THREADS: i64 = 15;
/// Rule variable that picks the pool.
const TENANT_VAR: &str = "paddock.tenant";
/// A tenant name no tenant can have (not a valid name): routing to it answers 404.
const NO_TENANT: &str = ".none";

/// What the translation produced.
#[derive(Debug, Default)]
pub struct Output {
    pub model: Model,
    /// The rules file's text; empty when there are no rules.
    pub rules: String,
    pub notes: Vec<Note>,
}

/// Directives that need no equivalent: logging, modules, the MPM, access control that only
/// allowed everyone, and what Paddock does by itself.
const IGNORED: &[(&str, &str)] = &[
    ("LoadModule", "Paddock has no modules to load"),
    ("LoadFile", "Paddock has no modules to load"),
    ("ServerAdmin", "not used by Paddock"),
    ("ServerTokens", "not used by Paddock"),
    ("ServerSignature", "not used by Paddock"),
    ("ErrorLog", "Paddock logs to stderr (journald under systemd)"),
    ("CustomLog", "Paddock's access log is its `paddock::access` log target"),
    ("LogLevel", "Paddock's log level is PADDOCK_LOG"),
    ("LogFormat", "Paddock's access log has its own format (--log-format json)"),
    ("TransferLog", "Paddock's access log is its `paddock::access` log target"),
    ("PidFile", "Paddock runs in the foreground (systemd)"),
    ("Mutex", "not used by Paddock"),
    ("DefaultRuntimeDir", "Paddock's is `runtime_dir`"),
    (
        "Timeout",
        "Paddock's client timeouts are header_read_timeout, send_timeout, body_read_timeout",
    ),
    ("KeepAlive", "Paddock keeps connections alive"),
    ("KeepAliveTimeout", "Paddock keeps connections alive"),
    ("MaxKeepAliveRequests", "Paddock keeps connections alive"),
    ("StartServers", "Apache's MPM; Paddock's front door is one process"),
    ("ServerLimit", "Apache's MPM; Paddock's front door is one process"),
    ("ThreadsPerChild", "Apache's MPM; Paddock's front door is one process"),
    ("MaxRequestWorkers", "Apache's MPM; bound Paddock with max_connections"),
    ("MinSpareThreads", "Apache's MPM"),
    ("MaxSpareThreads", "Apache's MPM"),
    ("MaxConnectionsPerChild", "Apache's MPM"),
    ("HostnameLookups", "Paddock never looks up client names"),
    ("AccessFileName", "Paddock reads no .htaccess files"),
    ("AllowOverride", "Paddock reads no .htaccess files"),
    ("Options", "Paddock serves no directory listings, CGI or SSI"),
    ("DirectoryIndex", "Paddock maps no URL to a document root"),
    ("DocumentRoot", "Paddock maps no URL to a document root (unknown URLs are 404)"),
    ("TypesConfig", "Paddock's static files get their type from the file name"),
    ("AddDefaultCharset", "the app sets its own Content-Type"),
    ("Order", "Apache 2.2 access control that Paddock does not need"),
    ("Allow", "Apache 2.2 access control that Paddock does not need"),
    ("Deny", "Apache 2.2 access control that Paddock does not need"),
    ("Satisfy", "Apache 2.2 access control that Paddock does not need"),
    ("ServerRoot", "used to resolve Include and relative paths"),
    ("ServerName", "used to tell virtual hosts apart"),
    ("ServerAlias", "used to tell virtual hosts apart"),
    ("UseCanonicalName", "Paddock passes the Host header on"),
    ("TraceEnable", "Paddock answers TRACE like any method, to the app"),
    ("WSGISocketPrefix", "Paddock's sockets are in `runtime_dir`"),
    ("WSGIRestrictEmbedded", "Paddock runs no app inside the front door"),
    ("WSGIPassAuthorization", "Paddock passes the Authorization header to the app"),
    ("WSGIScriptReloading", "Paddock restarts a pool when its script changes (`watch_files`)"),
    ("AuthBasicProvider", "the htpasswd file is the one provider"),
];

/// One `<VirtualHost>` or the main server.
#[derive(Debug, Default)]
struct Scope<'a> {
    vhost: Option<&'a Directive>,
    names: Vec<String>,
    items: Vec<&'a Directive>,
}

/// A tenant made from a `WSGIScriptAlias`.
#[derive(Debug, Clone)]
struct Made {
    name: String,
    mount: String,
    scope: usize,
    script: PathBuf,
}

/// `sites` discovery made from a `WSGIScriptAliasMatch`.
#[derive(Debug, Clone)]
struct Sites {
    mount: String,
    dir: String,
    scope: usize,
    /// The environment variable naming the pool (`trac.process_group`), renamed in rules.
    group_var: Option<String>,
}

struct Tr<'a> {
    out: Output,
    scopes: Vec<Scope<'a>>,
    daemons: BTreeMap<String, &'a Directive>,
    user: Option<String>,
    group: Option<String>,
    server_root: Option<PathBuf>,
    made: Vec<Made>,
    sites: Option<Sites>,
    used_daemons: Vec<String>,
}

/// Translate what [`crate::load::load`] read.
pub fn translate(loaded: &Loaded) -> Output {
    let mut t = Tr {
        out: Output::default(),
        scopes: vec![Scope::default()],
        daemons: BTreeMap::new(),
        user: None,
        group: None,
        server_root: None,
        made: Vec::new(),
        sites: None,
        used_daemons: Vec::new(),
    };
    t.out.notes.extend(loaded.notes.iter().cloned());
    for d in &loaded.directives {
        if d.is("VirtualHost") {
            let mut s = Scope { vhost: Some(d), ..Default::default() };
            for c in d.children.iter().flatten() {
                if c.is("ServerName") || c.is("ServerAlias") {
                    s.names.extend(c.args.iter().map(|a| a.to_ascii_lowercase()));
                }
                s.items.push(c);
            }
            t.scopes.push(s);
        } else {
            t.scopes[0].items.push(d);
        }
    }
    t.run();
    t.out
}

fn setting(d: &Directive) -> String {
    d.render()
}

impl<'a> Tr<'a> {
    fn note(&mut self, n: Note) {
        self.out.notes.push(n);
    }

    fn run(&mut self) {
        self.globals();
        for i in 0..self.scopes.len() {
            self.aliases(i);
        }
        self.defaults();
        for i in 0..self.scopes.len() {
            self.scope_directives(i);
        }
        self.unused_daemons();
        self.rules();
        self.top();
    }

    /// Server-wide directives: users, daemon process groups, listen addresses, Python.
    fn globals(&mut self) {
        let items: Vec<&'a Directive> =
            self.scopes.iter().flat_map(|s| s.items.iter().copied()).collect();
        let mut listen = Vec::new();
        for d in items {
            if d.is("User") {
                self.user = d.arg(0).map(str::to_string);
            } else if d.is("Group") {
                self.group = d.arg(0).map(str::to_string);
            } else if d.is("ServerRoot") {
                self.server_root = d.arg(0).map(PathBuf::from);
            } else if d.is("WSGIDaemonProcess") {
                if let Some(name) = d.arg(0) {
                    self.daemons.insert(name.to_string(), d);
                }
            } else if d.is("Listen") {
                listen.push(d);
            }
        }
        if let Some(first) = listen.first() {
            let addr = first.arg(0).unwrap_or("80");
            let addr =
                if addr.contains(':') { addr.to_string() } else { format!("0.0.0.0:{addr}") };
            self.out.model.top.set(
                "listen",
                addr.as_str(),
                Some(format!("Listen {}", first.arg(0).unwrap_or(""))),
            );
            for d in &listen[1..] {
                self.note(Note::skipped(d, "Paddock listens on one address (`listen`); put a proxy or a second instance in front for more"));
            }
        }
    }

    /// Resolve `p` as httpd does: relative paths are below ServerRoot.
    fn path(&self, p: &str) -> String {
        if Path::new(p).is_absolute() {
            return p.to_string();
        }
        match &self.server_root {
            Some(r) => r.join(p).display().to_string(),
            None => p.to_string(),
        }
    }

    /// Every directive of scope `i` and, for a virtual host, of the main server (inherited),
    /// with the sections they are in.
    fn directives_in(&self, i: usize) -> Vec<&'a Directive> {
        let mut v: Vec<&'a Directive> = Vec::new();
        if i != 0 {
            v.extend(self.scopes[0].items.iter().copied().filter(|d| !d.is("VirtualHost")));
        }
        v.extend(self.scopes[i].items.iter().copied());
        v
    }

    /// `WSGIProcessGroup` for a script at `script` mounted at `mount` in scope `i`: its own
    /// `process-group=` option, the `<Directory>` holding the script, a `<Location>` above the
    /// mount, then the virtual host's and the server's.
    fn process_group(
        &self,
        i: usize,
        alias: &Directive,
        mount: &str,
        script: &str,
    ) -> Option<String> {
        if let Some(pg) = alias.args.iter().skip(2).find_map(|a| a.strip_prefix("process-group=")) {
            return Some(pg.to_string());
        }
        let mut best: Option<(usize, String)> = None;
        for s in self.directives_in(i) {
            let Some(children) = &s.children else { continue };
            let Some(arg) = s.arg(0) else { continue };
            let applies = (s.is("Directory") && under(script, arg))
                || (s.is("Location") && under(mount, arg));
            if !applies {
                continue;
            }
            if let Some(g) = children.iter().rev().find(|c| c.is("WSGIProcessGroup")) {
                if best.as_ref().is_none_or(|(len, _)| arg.len() >= *len) {
                    best = Some((arg.len(), g.arg(0).unwrap_or("").to_string()));
                }
            }
        }
        if let Some((_, g)) = best {
            return Some(g);
        }
        let own = self.scopes[i].items.iter().rev().find(|d| d.is("WSGIProcessGroup"));
        let server = self.scopes[0].items.iter().rev().find(|d| d.is("WSGIProcessGroup"));
        own.or(server).and_then(|d| d.arg(0)).map(str::to_string)
    }

    /// Whether the app runs in the main interpreter (`WSGIApplicationGroup %{GLOBAL}`) in scope
    /// `i` for `script`; the directive found, if any.
    fn application_group(&self, i: usize, alias: &Directive, script: &str) -> Option<String> {
        if let Some(g) =
            alias.args.iter().skip(2).find_map(|a| a.strip_prefix("application-group="))
        {
            return Some(g.to_string());
        }
        for s in self.directives_in(i) {
            let Some(children) = &s.children else { continue };
            if s.is("Directory") && s.arg(0).is_some_and(|a| under(script, a)) {
                if let Some(g) = children.iter().find(|c| c.is("WSGIApplicationGroup")) {
                    return g.arg(0).map(str::to_string);
                }
            }
        }
        self.directives_in(i)
            .iter()
            .rev()
            .find(|d| d.is("WSGIApplicationGroup"))
            .and_then(|d| d.arg(0))
            .map(str::to_string)
    }

    fn unique_name(&self, wanted: &str, scope: usize) -> String {
        let mut base = tenant_name(wanted);
        if base.is_empty() {
            base = "site".to_string();
        }
        if scope != 0 && self.made.iter().any(|m| m.name == base) {
            if let Some(host) = self.scopes[scope].names.first() {
                let label = tenant_name(host.split('.').next().unwrap_or(""));
                let label = if label.is_empty() { "vhost".to_string() } else { label };
                base = format!("{label}-{base}");
            }
        }
        // ASCII by now: a byte count is a character count.
        base.truncate(60);
        let mut name = base.clone();
        let mut n = 2;
        while self.made.iter().any(|m| m.name == name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        name
    }

    /// `WSGIScriptAlias` and `WSGIScriptAliasMatch` of scope `i`.
    fn aliases(&mut self, i: usize) {
        let items: Vec<&'a Directive> = self.scopes[i].items.clone();
        for d in items {
            if d.is("WSGIScriptAlias") {
                self.script_alias(i, d);
            } else if d.is("WSGIScriptAliasMatch") {
                self.script_alias_match(i, d);
            }
        }
    }

    fn script_alias(&mut self, i: usize, d: &'a Directive) {
        let (Some(url), Some(script)) = (d.arg(0), d.arg(1)) else {
            self.note(Note::skipped(d, "needs a URL and a script"));
            return;
        };
        let script = self.path(script);
        let mount = match url.trim_end_matches('/') {
            "" => "/".to_string(),
            m => m.to_string(),
        };
        let group = self.process_group(i, d, &mount, &script);
        let daemon = group.as_deref().filter(|g| *g != "%{GLOBAL}" && !g.is_empty());
        if let Some(g) = daemon.filter(|g| g.starts_with("%{")) {
            self.note(Note::skipped(d, format!("process group `{g}` is chosen per request; only WSGIScriptAliasMatch with rewrite rules is translated so")));
        }
        let daemon_dir = daemon.and_then(|g| self.daemons.get(g).copied());
        let wanted = match daemon {
            Some(g) if daemon_dir.is_some() && !self.used_daemons.iter().any(|u| u == g) => {
                g.to_string()
            }
            _ => match mount.rsplit('/').next() {
                Some("") | None => "root".to_string(),
                Some(last) => last.to_string(),
            },
        };
        let name = self.unique_name(&wanted, i);
        let mut pool = Pool::default();
        pool.comments.push(format!("{}: {}", d.at(), setting(d)));
        pool.keys.set("mount", mount.as_str(), None);
        let mut dir: Option<String> = None;
        match script::classify(Path::new(&script)) {
            Script::Trac(tr) => {
                pool.comments.push(format!(
                    "{script} is the stock Trac script: Trac's module app (the default `app`) runs it, with router-served /chrome"
                ));
                if let Some(e) = &tr.env_path {
                    dir = Some(e.clone());
                    pool.environ.set(
                        "trac.env_path",
                        e.as_str(),
                        Some(format!("TRAC_ENV in {script}")),
                    );
                }
                if let Some(p) = &tr.parent_dir {
                    dir = Some(p.clone());
                    pool.environ.set(
                        "trac.env_path",
                        "",
                        Some("empty: Trac picks the project from the URL".to_string()),
                    );
                    pool.environ.set(
                        "trac.env_parent_dir",
                        p.as_str(),
                        Some(format!("TRAC_ENV_PARENT_DIR in {script}")),
                    );
                }
                if let Some(t) = &tr.index_template {
                    pool.environ.set("trac.env_index_template", t.as_str(), None);
                }
                if let Some(e) = &tr.egg_cache {
                    pool.env.set("PYTHON_EGG_CACHE", e.as_str(), Some(format!("as in {script}")));
                }
            }
            Script::Other(why) => {
                pool.keys.set("app", script.as_str(), Some("WSGIScriptAlias script".to_string()));
                pool.environ.set(
                    "trac.env_path",
                    "",
                    Some("Apache set none; empty drops Paddock's default {tenant_dir}".to_string()),
                );
                self.note(Note::changed(d, format!("{script} stays a script app ({why}): Paddock serves no static files for it unless `static` says so; check the Alias lines below")));
            }
        }
        match self.application_group(i, d, &script).as_deref() {
            Some("%{GLOBAL}") => {}
            other => self.note(Note::changed(d, format!(
                "WSGIApplicationGroup {}: Paddock always runs the app in the main interpreter, as %{{GLOBAL}} (what Trac needs)",
                other.unwrap_or("not set (mod_wsgi's default %{RESOURCE}, a sub-interpreter)")
            ))),
        }
        match daemon_dir {
            Some(dd) => {
                if let Some(g) = daemon {
                    self.used_daemons.push(g.to_string());
                }
                let home = self.daemon(dd, &mut pool);
                if dir.is_none() {
                    dir = home;
                }
            }
            None => {
                if let Some(g) = daemon.filter(|g| !g.starts_with("%{")) {
                    self.note(Note::skipped(d, format!("WSGIProcessGroup `{g}` names no WSGIDaemonProcess (mod_wsgi answers 500); the tenant gets mod_wsgi's defaults")));
                }
                self.embedded(d, &mut pool);
            }
        }
        // Environment from SetEnv trac.env_path in scope.
        let dir = dir.or_else(|| {
            let script_dir = Path::new(&script).parent()?;
            Some(script_dir.display().to_string())
        });
        if let Some(dir) = dir {
            pool.keys.set(
                "dir",
                dir.as_str(),
                Some("the pool runs as its owner unless `user` is set".to_string()),
            );
        }
        self.out.model.tenants.push((name.clone(), pool));
        self.made.push(Made { name, mount, scope: i, script: PathBuf::from(script) });
    }

    /// A tenant with no daemon process group: it ran inside Apache's own processes.
    fn embedded(&mut self, d: &Directive, pool: &mut Pool) {
        pool.comments.push(
            "embedded mode in Apache (no daemon process group): sized as mod_wsgi's daemon default"
                .to_string(),
        );
        pool.keys.set("processes", WSGI_PROCESSES, Some("embedded mode ran in Apache's children; mod_wsgi's daemon default (Paddock's default is 2)".to_string()));
        pool.keys.set(
            "threads",
            WSGI_THREADS,
            Some("mod_wsgi's daemon default (Paddock's default is 4)".to_string()),
        );
        if let Some(u) = &self.user {
            pool.keys.set(
                "user",
                u.as_str(),
                Some("Apache's User: embedded mode ran as it".to_string()),
            );
        }
        if let Some(g) = &self.group {
            pool.keys.set("group", g.as_str(), Some("Apache's Group".to_string()));
        }
        self.out.notes.push(Note::changed(d, "embedded mode: the app ran in Apache's own processes (as Apache's User); Paddock gives it its own pool, processes = 1, threads = 15"));
    }

    /// Apply a `WSGIDaemonProcess` to `pool`; its `home=`, if any.
    fn daemon(&mut self, d: &Directive, pool: &mut Pool) -> Option<String> {
        let name = d.arg(0).unwrap_or("");
        let mut home = None;
        let mut seen = Vec::new();
        let src = |o: &str| Some(format!("WSGIDaemonProcess {name} {o}"));
        for opt in d.args.iter().skip(1) {
            let Some((k, v)) = opt.split_once('=') else {
                self.note(Note::skipped(d, format!("option `{opt}` has no value")).option(opt));
                continue;
            };
            let k = k.to_ascii_lowercase();
            seen.push(k.clone());
            let num = v.parse::<i64>().ok().filter(|n| *n >= 0);
            let bad = |this: &mut Self| {
                this.note(Note::skipped(d, format!("`{opt}`: not a number")).option(&k))
            };
            match k.as_str() {
                "processes" => match num {
                    Some(n) => pool.keys.set("processes", n, src(opt)),
                    None => bad(self),
                },
                "threads" => match num {
                    Some(n) => pool.keys.set("threads", n, src(opt)),
                    None => bad(self),
                },
                "user" => pool.keys.set("user", v, src(opt)),
                "group" => pool.keys.set("group", v, src(opt)),
                "maximum-requests" => match num {
                    Some(n) => pool.keys.set("max_requests", n, src(opt)),
                    None => bad(self),
                },
                "inactivity-timeout" | "request-timeout" | "graceful-timeout" | "queue-timeout"
                | "startup-timeout" => match num {
                    Some(n) => {
                        let key = match k.as_str() {
                            "inactivity-timeout" => "idle_timeout",
                            "request-timeout" => "request_timeout",
                            "graceful-timeout" => "graceful_timeout",
                            "queue-timeout" => "queue_timeout",
                            _ => "startup_timeout",
                        };
                        pool.keys.set(key, format!("{n}s"), src(opt));
                    }
                    None => bad(self),
                },
                "python-home" => pool.keys.set("virtualenv", v, src(opt)),
                "python-path" => {
                    let parts: Vec<String> =
                        v.split(':').filter(|p| !p.is_empty()).map(str::to_string).collect();
                    pool.keys.set("python_path", strings(&parts), src(opt));
                }
                "home" => {
                    home = Some(v.to_string());
                    self.note(Note::changed(d, format!("`{opt}`: a Paddock worker's working directory is its tenant directory (`dir`), used here when the site's environment is not known")).option("home"));
                }
                "umask" => {
                    let digits = v.trim_start_matches('0');
                    let m = if digits.is_empty() { "000".to_string() } else { format!("{digits:0>3}") };
                    if u32::from_str_radix(&m, 8).is_ok_and(|x| x <= 0o777) {
                        pool.keys.set("umask", m.as_str(), src(opt));
                    } else {
                        self.note(Note::skipped(d, format!("`{opt}` is not an octal umask")).option("umask"));
                    }
                }
                "lang" => pool.keys.set("lang", v, src(opt)),
                "locale" => {
                    pool.env.set("LC_ALL", v, src(opt));
                    self.note(Note::changed(d, format!("`{opt}`: set as LC_ALL in the workers' environment (mod_wsgi calls setlocale)")).option("locale"));
                }
                "display-name" => self.note(Note::ignored(d, format!("`{opt}`: Paddock does not rename its worker processes (ps shows paddock-worker)")).option("display-name")),
                "virtual-memory-limit" => match num {
                    Some(n) => pool.keys.set("rlimit_as", n.to_string(), src(opt)),
                    None => bad(self),
                },
                "supplementary-groups" => self.note(Note::skipped(d, format!("`{opt}`: Paddock gives a pool its user's groups (from /etc/group)")).option(&k)),
                _ => self.note(Note::skipped(d, format!("`{opt}`: Paddock has no equivalent option")).option(&k)),
            }
        }
        if !seen.iter().any(|k| k == "processes") {
            pool.keys.set(
                "processes",
                WSGI_PROCESSES,
                Some("mod_wsgi's default (Paddock's default is 2)".to_string()),
            );
        }
        if !seen.iter().any(|k| k == "threads") {
            pool.keys.set(
                "threads",
                WSGI_THREADS,
                Some("mod_wsgi's default (Paddock's default is 4)".to_string()),
            );
        }
        if !seen.iter().any(|k| k == "user") {
            if let Some(u) = &self.user {
                pool.keys.set(
                    "user",
                    u.as_str(),
                    Some("Apache's User: mod_wsgi's default for a daemon".to_string()),
                );
            }
        }
        if !seen.iter().any(|k| k == "group") {
            if let Some(g) = &self.group {
                pool.keys.set(
                    "group",
                    g.as_str(),
                    Some("Apache's Group: mod_wsgi's default for a daemon".to_string()),
                );
            }
        }
        let unset: Vec<&str> = [
            ("inactivity-timeout", "idle_timeout 10m"),
            ("request-timeout", "request_timeout 60s"),
            ("queue-timeout", "queue_timeout 30s"),
        ]
        .iter()
        .filter(|(k, _)| !seen.iter().any(|s| s == k))
        .map(|(_, p)| *p)
        .collect();
        if !unset.is_empty() {
            pool.comments.push(format!(
                "mod_wsgi had no limit where this daemon set none; Paddock's defaults apply: {}",
                unset.join(", ")
            ));
        }
        home
    }

    fn script_alias_match(&mut self, i: usize, d: &'a Directive) {
        let (Some(re), Some(script)) = (d.arg(0), d.arg(1)) else {
            self.note(Note::skipped(d, "needs a regular expression and a script"));
            return;
        };
        let script = self.path(script);
        let Some(mount) = site_prefix(re) else {
            self.note(Note::skipped(d, format!("`{re}` is not of the form ^/PREFIX/([^/]+): only one site per path segment is translated (sites discovery)")));
            return;
        };
        if self.sites.is_some() {
            self.note(Note::skipped(d, "Paddock has one `sites` directory; a second WSGIScriptAliasMatch is not translated"));
            return;
        }
        let group = self.process_group(i, d, &mount, &script);
        let group_var = group
            .as_deref()
            .and_then(|g| g.strip_prefix("%{ENV:"))
            .and_then(|g| g.strip_suffix('}'))
            .map(str::to_string);
        // The sites directory: `E=trac.env_path:/DIR/%1` in the scope's rules, or `$1` in the
        // script path (a script per site).
        let mut dir = None;
        for r in self.directives_in(i) {
            if r.is("RewriteRule") {
                if let Some(flags) = r.arg(2) {
                    for f in flags.trim_start_matches('[').trim_end_matches(']').split(',') {
                        if let Some(v) = f
                            .strip_prefix("E=trac.env_path:")
                            .or_else(|| f.strip_prefix("env=trac.env_path:"))
                        {
                            if let Some(base) =
                                v.strip_suffix("/%1").or_else(|| v.strip_suffix("/$1"))
                            {
                                dir = Some(base.to_string());
                            }
                        }
                    }
                }
            }
        }
        let per_site_script =
            script.find("/$1/").map(|p| (script[..p].to_string(), script[p + 4..].to_string()));
        if dir.is_none() {
            dir = per_site_script.as_ref().map(|(b, _)| b.clone());
        }
        let Some(dir) = dir else {
            self.note(Note::skipped(d, "the sites' directory is not known: no RewriteRule sets E=trac.env_path:/DIR/%1 and the script path has no $1"));
            return;
        };
        let app = match &per_site_script {
            Some((_, rest)) => {
                let first = Path::new(&dir).join("*").join(rest);
                // Look at any one site's script.
                let one = glob::glob(&first.display().to_string())
                    .ok()
                    .and_then(|mut g| g.find_map(Result::ok));
                match one.map(|p| script::classify(&p)) {
                    Some(Script::Trac(_)) => None,
                    _ => Some(format!("{{tenant_dir}}/{rest}")),
                }
            }
            None => match script::classify(Path::new(&script)) {
                Script::Trac(_) => None,
                Script::Other(why) => {
                    self.note(Note::changed(d, format!("{script} stays a script app ({why})")));
                    Some(script.clone())
                }
            },
        };
        let defaults = &mut self.out.model.defaults;
        defaults.comments.push(format!("{}: {}", d.at(), setting(d)));
        match app {
            None => defaults.comments.push(format!("{script} is the stock Trac script: Trac's module app (the default `app`) runs each site")),
            Some(a) => defaults.keys.set("app", a.as_str(), Some("the WSGIScriptAliasMatch script".to_string())),
        }
        let shared =
            group.as_deref().filter(|g| !g.starts_with("%{") && !g.is_empty()).map(str::to_string);
        if let Some(g) = shared {
            if let Some(dd) = self.daemons.get(&g).copied() {
                self.used_daemons.push(g.clone());
                let mut pool = std::mem::take(&mut self.out.model.defaults);
                self.daemon(dd, &mut pool);
                self.out.model.defaults = pool;
                self.note(Note::changed(dd, format!("all sites shared daemon process group `{g}`; Paddock gives each site its own pool of this size")));
            }
        } else if group_var.is_none() {
            let mut pool = std::mem::take(&mut self.out.model.defaults);
            self.embedded(d, &mut pool);
            self.out.model.defaults = pool;
        }
        self.sites = Some(Sites { mount, dir, scope: i, group_var });
    }

    /// `[defaults]`: Python settings of the server, mod_wsgi's sizes for discovered sites.
    fn defaults(&mut self) {
        let server: Vec<&'a Directive> = self.scopes[0].items.clone();
        for d in server {
            if d.is("WSGIPythonHome") {
                if let Some(v) = d.arg(0) {
                    self.out.model.defaults.keys.set("virtualenv", v, Some(setting(d)));
                }
            } else if d.is("WSGIPythonPath") {
                if let Some(v) = d.arg(0) {
                    let parts: Vec<String> =
                        v.split(':').filter(|p| !p.is_empty()).map(str::to_string).collect();
                    self.out.model.defaults.keys.set(
                        "python_path",
                        strings(&parts),
                        Some(setting(d)),
                    );
                }
            }
        }
        let Some(sites) = self.sites.clone() else { return };
        // A daemon per site, named as the site (WSGIProcessGroup %{ENV:...} = the site name).
        if sites.group_var.is_some() {
            let d = &mut self.out.model.defaults;
            if !d.keys.contains("processes") {
                d.keys.set(
                    "processes",
                    WSGI_PROCESSES,
                    Some("mod_wsgi's default (Paddock's default is 2)".to_string()),
                );
                d.keys.set(
                    "threads",
                    WSGI_THREADS,
                    Some("mod_wsgi's default (Paddock's default is 4)".to_string()),
                );
            }
            let names: Vec<(String, &'a Directive)> = self
                .daemons
                .iter()
                .filter(|(n, _)| !self.used_daemons.contains(n))
                .map(|(n, d)| (n.clone(), *d))
                .collect();
            for (name, dd) in names {
                if !paddock_config::tenant::valid_name(&name) {
                    self.note(Note::skipped(dd, format!("`{name}` cannot be a tenant name")));
                    continue;
                }
                self.used_daemons.push(name.clone());
                let mut pool = Pool::default();
                pool.comments.push(format!("{}: {}", dd.at(), setting(dd)));
                pool.comments.push(format!("site {name}, discovered in {}", sites.dir));
                self.daemon(dd, &mut pool);
                self.out.model.tenants.push((name.clone(), pool));
                self.made.push(Made {
                    name,
                    mount: format!("{}/{}", sites.mount, dd.arg(0).unwrap_or("")),
                    scope: sites.scope,
                    script: PathBuf::new(),
                });
            }
        }
    }

    /// Scope `i`'s other directives (and sections).
    fn scope_directives(&mut self, i: usize) {
        let items: Vec<&'a Directive> = self.scopes[i].items.clone();
        for d in items {
            self.directive(i, d, None);
        }
    }

    /// The tenants a directive in scope `i` applies to, inside a section `section` (or at the
    /// scope's level): `Some(names)`, with `"*"` for `[defaults]`.
    fn targets(&self, i: usize, section: Option<&Directive>) -> Result<Vec<Target>, String> {
        let in_scope = |m: &&Made| i == 0 || m.scope == i;
        match section {
            None => {
                let mut v: Vec<Target> = if i == 0 {
                    vec![Target::Defaults]
                } else {
                    self.made
                        .iter()
                        .filter(|m| m.scope == i)
                        .map(|m| Target::Tenant(m.name.clone(), String::new()))
                        .collect()
                };
                if i != 0 && self.sites.as_ref().is_some_and(|s| s.scope == i) {
                    v.push(Target::Defaults);
                }
                Ok(v)
            }
            Some(s) => {
                let arg = s.arg(0).unwrap_or("");
                if s.is("Location") {
                    let mut best: Option<&Made> = None;
                    for m in self.made.iter().filter(in_scope) {
                        if under(arg, &m.mount)
                            && best.is_none_or(|b| m.mount.len() > b.mount.len())
                        {
                            best = Some(m);
                        }
                    }
                    if let Some(m) = best {
                        let rest = if m.mount == "/" { arg } else { &arg[m.mount.len()..] };
                        return Ok(vec![Target::Tenant(m.name.clone(), rest.to_string())]);
                    }
                    if let Some(sites) = &self.sites {
                        if let Some(rest) = arg.strip_prefix(&format!("{}/", sites.mount)) {
                            let (name, below) =
                                rest.split_once('/').map_or((rest, ""), |(n, b)| (n, b));
                            let below =
                                if below.is_empty() { String::new() } else { format!("/{below}") };
                            return Ok(vec![Target::Tenant(name.to_string(), below)]);
                        }
                    }
                    let covered: Vec<Target> = self
                        .made
                        .iter()
                        .filter(in_scope)
                        .filter(|m| under(&m.mount, arg))
                        .map(|m| Target::Tenant(m.name.clone(), String::new()))
                        .collect();
                    if !covered.is_empty() {
                        return Ok(covered);
                    }
                    Err(format!("<Location {arg}> is not below any translated site"))
                } else if s.is("LocationMatch") {
                    // Apache searches the URL for an unanchored pattern (Trac's own wiki
                    // writes `<LocationMatch "/trac/[^/]+/login">`): it matches where the
                    // path below the site starts with the rest, or wherever the whole
                    // pattern appears further in; Paddock's path regexes see the path below
                    // the site, so both are kept.
                    let (re, widen) = match arg.strip_prefix('^') {
                        Some(re) => (re, None),
                        None => (arg, Some(arg)),
                    };
                    let path_regex = |rest: &str| match widen {
                        None => rest.to_string(),
                        Some(whole) => format!("(?:{rest})|{whole}"),
                    };
                    if let Some(sites) = &self.sites {
                        for seg in ["/[^/]+", "/([^/]+)"] {
                            if let Some(rest) = re.strip_prefix(&format!("{}{seg}", sites.mount)) {
                                return Ok(vec![Target::DefaultsRegex(path_regex(rest))]);
                            }
                        }
                    }
                    for m in self.made.iter().filter(in_scope) {
                        if m.mount != "/" {
                            if let Some(rest) = re.strip_prefix(&m.mount) {
                                return Ok(vec![Target::TenantRegex(
                                    m.name.clone(),
                                    path_regex(rest),
                                )]);
                            }
                        }
                    }
                    Err(format!(
                        "<LocationMatch {arg}> does not start with a translated site's URL"
                    ))
                } else if s.is("Directory") {
                    let v: Vec<Target> = self
                        .made
                        .iter()
                        .filter(in_scope)
                        .filter(|m| {
                            !m.script.as_os_str().is_empty()
                                && under(&m.script.display().to_string(), arg)
                        })
                        .map(|m| Target::Tenant(m.name.clone(), String::new()))
                        .collect();
                    if v.is_empty() && self.sites.as_ref().is_some_and(|_| true) {
                        return Ok(vec![Target::Defaults]);
                    }
                    Ok(v)
                } else {
                    Err(format!("<{}> sections are not translated", s.name))
                }
            }
        }
    }

    fn pool_of(&mut self, t: &Target) -> &mut Pool {
        match t {
            Target::Defaults | Target::DefaultsRegex(_) => &mut self.out.model.defaults,
            Target::Tenant(n, _) | Target::TenantRegex(n, _) => self.out.model.tenant_mut(n),
        }
    }

    fn directive(&mut self, i: usize, d: &'a Directive, section: Option<&'a Directive>) {
        let name = d.name.to_ascii_lowercase();
        if let Some(children) = &d.children {
            if d.is("VirtualHost") {
                return;
            }
            if d.is("Location")
                || d.is("LocationMatch")
                || d.is("Directory")
                || d.is("DirectoryMatch")
                || d.is("Files")
                || d.is("FilesMatch")
            {
                if section.is_some() {
                    self.note(Note::skipped(d, "nested sections are not translated"));
                    return;
                }
                let has_auth = children.iter().any(|c| c.is("AuthType") || c.is("AuthUserFile"));
                if has_auth {
                    self.auth(i, d);
                }
                for c in children {
                    if has_auth
                        && (c.is("AuthType")
                            || c.is("AuthUserFile")
                            || c.is("AuthName")
                            || c.is("Require")
                            || c.is("AuthBasicProvider"))
                    {
                        continue;
                    }
                    self.directive(i, c, Some(d));
                }
                return;
            }
            self.note(Note::skipped(d, format!("<{}> sections are not translated", d.name)));
            return;
        }
        match name.as_str() {
            "wsgiscriptalias"
            | "wsgiscriptaliasmatch"
            | "wsgidaemonprocess"
            | "listen"
            | "user"
            | "group"
            | "wsgipythonhome"
            | "wsgipythonpath" => {
                if section.is_some() && name.starts_with("wsgiscriptalias") {
                    self.note(Note::skipped(d, "not allowed in a section"));
                }
            }
            "wsgiprocessgroup" => {
                let g = d.arg(0).unwrap_or("");
                if g != "%{GLOBAL}" && !g.starts_with("%{ENV:") && !self.daemons.contains_key(g) {
                    self.note(Note::skipped(d, format!("`{g}` names no WSGIDaemonProcess")));
                }
            }
            "wsgiapplicationgroup" => {}
            "setenv" => {
                let (Some(k), v) = (d.arg(0), d.arg(1).unwrap_or("")) else {
                    self.note(Note::skipped(d, "SetEnv without a name"));
                    return;
                };
                match self.targets(i, section) {
                    Ok(ts) if !ts.is_empty() => {
                        for t in ts {
                            if let Target::Tenant(_, rest) = &t {
                                if !rest.is_empty() && rest != "/" {
                                    self.note(Note::changed(d, format!("applies to the whole site, not only below `{rest}`: `environ` is per tenant")));
                                }
                            }
                            let c = Some(format!("{}: {}", d.at(), setting(d)));
                            self.pool_of(&t).environ.set(k, v, c);
                            if k == "trac.env_path" {
                                if let Target::Tenant(n, _) = &t {
                                    self.out.model.tenant_mut(n).keys.set("dir", v, Some("SetEnv trac.env_path: the pool runs as its owner unless `user` is set".to_string()));
                                }
                            }
                        }
                    }
                    Ok(_) => self.note(Note::skipped(d, "no translated site is in its scope")),
                    Err(why) => self.note(Note::skipped(d, why)),
                }
            }
            "alias" => self.alias(i, d, section),
            "aliasmatch" => self.alias_match(d),
            "rewriteengine" | "rewritecond" | "rewriterule" => {
                if section.is_some() {
                    self.note(Note::skipped(d, "per-directory rewrite rules (in a section) are not translated: move them to the server or virtual host"));
                }
            }
            "rewritebase" | "rewritemap" | "rewriteoptions" | "rewritelock" => {
                self.note(Note::skipped(d, "not supported by Paddock's rules (docs/rules.md)"));
            }
            "require" => {
                let a = d.args.join(" ").to_ascii_lowercase();
                if a == "all granted" {
                    self.note(Note::ignored(d, "everyone is allowed: Paddock's default"));
                } else {
                    self.note(Note::skipped(
                        d,
                        "access control other than Basic auth's valid-user is not translated",
                    ));
                }
            }
            _ => match IGNORED.iter().find(|(n, _)| n.eq_ignore_ascii_case(&d.name)) {
                Some((_, why)) => self.note(Note::ignored(d, *why)),
                None => self.note(Note::skipped(d, "Paddock has no equivalent")),
            },
        }
    }

    fn alias(&mut self, i: usize, d: &'a Directive, section: Option<&'a Directive>) {
        if section.is_some() {
            self.note(Note::skipped(d, "Alias in a section"));
            return;
        }
        let (Some(url), Some(dir)) = (d.arg(0), d.arg(1)) else {
            self.note(Note::skipped(d, "needs a URL and a directory"));
            return;
        };
        let url = url.trim_end_matches('/');
        let dir = self.path(dir.trim_end_matches('/'));
        let mut best: Option<Made> = None;
        for m in self.made.iter().filter(|m| i == 0 || m.scope == i || m.scope == 0) {
            if under(url, &m.mount)
                && url != m.mount
                && best.as_ref().is_none_or(|b| m.mount.len() > b.mount.len())
            {
                best = Some(m.clone());
            }
        }
        let target = match best {
            Some(m) => Some((
                m.name.clone(),
                if m.mount == "/" { url.to_string() } else { url[m.mount.len()..].to_string() },
            )),
            None => self.sites.as_ref().and_then(|s| {
                let rest = url.strip_prefix(&format!("{}/", s.mount))?;
                let (name, below) = rest.split_once('/')?;
                Some((name.to_string(), format!("/{below}")))
            }),
        };
        match target {
            Some((name, prefix)) => {
                let c = Some(format!("{}: {}", d.at(), setting(d)));
                self.out.model.tenant_mut(&name).statics.set(&prefix, dir.as_str(), c);
            }
            None => self.note(Note::skipped(d, "not below a translated site's URL: Paddock serves static files only below a tenant's mount")),
        }
    }

    /// `AliasMatch ^/trac/[^/]+/chrome/common/(.*) /dir/$1` for every discovered site.
    fn alias_match(&mut self, d: &'a Directive) {
        let (Some(re), Some(target)) = (d.arg(0), d.arg(1)) else {
            self.note(Note::skipped(d, "needs a regular expression and a directory"));
            return;
        };
        let parsed = self.sites.as_ref().and_then(|s| {
            let rest = re.strip_prefix('^')?.strip_prefix(&s.mount)?;
            let rest = rest.strip_prefix("/[^/]+").or_else(|| rest.strip_prefix("/([^/]+)"))?;
            let rest = rest.strip_suffix('$').unwrap_or(rest);
            let prefix = rest.strip_suffix("/(.*)").or_else(|| rest.strip_suffix("(/.*)"))?;
            if prefix.is_empty() || prefix.contains(['(', '[', '*', '+', '?', '\\', '.', '|']) {
                return None;
            }
            let dir = target
                .strip_suffix("/$1")
                .or_else(|| target.strip_suffix("/$2"))
                .or_else(|| target.strip_suffix("$1"))
                .or_else(|| target.strip_suffix("$2"))?;
            let dir = match dir.strip_prefix(&format!("{}/$1/", s.dir)) {
                Some(below) => format!("{{tenant_dir}}/{below}"),
                None => dir.to_string(),
            };
            if dir.contains('$') {
                return None;
            }
            Some((prefix.to_string(), dir))
        });
        match parsed {
            Some((prefix, dir)) => {
                let c = Some(format!("{}: {}", d.at(), setting(d)));
                self.out.model.defaults.statics.set(&prefix, dir.as_str(), c);
            }
            None => self.note(Note::skipped(d, "only AliasMatch ^SITES_MOUNT/[^/]+/PREFIX/(.*) DIR/$1 (a static directory for every discovered site) is translated")),
        }
    }

    /// Basic authentication in a `<Location>`/`<LocationMatch>`.
    fn auth(&mut self, i: usize, s: &'a Directive) {
        let children = s.children.as_deref().unwrap_or(&[]);
        let find = |n: &str| children.iter().rev().find(|c| c.is(n));
        let kind = find("AuthType").and_then(|d| d.arg(0)).unwrap_or("");
        if !kind.eq_ignore_ascii_case("basic") {
            self.note(Note::skipped(s, format!("AuthType `{kind}`: Paddock does HTTP Basic only")));
            return;
        }
        let Some(file) = find("AuthUserFile").and_then(|d| d.arg(0)) else {
            self.note(Note::skipped(
                s,
                "Basic auth without AuthUserFile (another provider) is not translated",
            ));
            return;
        };
        let file = self.path(file);
        let realm = find("AuthName").and_then(|d| d.arg(0)).unwrap_or("");
        let requires: Vec<&Directive> = children.iter().filter(|c| c.is("Require")).collect();
        if !requires.iter().any(|r| {
            r.args.len() == 1 && r.arg(0).is_some_and(|a| a.eq_ignore_ascii_case("valid-user"))
        }) || requires.len() != 1
        {
            self.note(Note::skipped(s, "only `Require valid-user` is translated (any user in the file may log in); this block is left out, so its paths are not protected"));
            return;
        }
        if let Some(p) = find("AuthBasicProvider").and_then(|d| d.arg(0)) {
            if !p.eq_ignore_ascii_case("file") {
                self.note(Note::skipped(
                    s,
                    format!("AuthBasicProvider {p}: only the htpasswd file is translated"),
                ));
                return;
            }
        }
        let targets = match self.targets(i, Some(s)) {
            Ok(t) if !t.is_empty() => t,
            Ok(_) => {
                self.note(Note::skipped(s, "no translated site is below it"));
                return;
            }
            Err(why) => {
                self.note(Note::skipped(s, why));
                return;
            }
        };
        for t in targets {
            let path = match &t {
                Target::Defaults => "/".to_string(),
                Target::Tenant(_, rest) if rest.is_empty() => "/".to_string(),
                Target::Tenant(_, rest) => rest.clone(),
                Target::DefaultsRegex(r) | Target::TenantRegex(_, r) => format!("^{r}"),
            };
            let at = format!("{}: <{} {}>", s.at(), s.name, s.arg(0).unwrap_or(""));
            let pool = self.pool_of(&t);
            let same = pool.auth.get_str("htpasswd").is_none_or(|h| h == file)
                && pool.auth.get_str("realm").is_none_or(|r| r == realm);
            if !same {
                self.note(Note::skipped(s, "a second Basic auth block with another AuthUserFile or AuthName for the same site: Paddock has one per site"));
                continue;
            }
            let pool = self.pool_of(&t);
            let mut paths: Vec<String> = pool
                .auth
                .get("paths")
                .and_then(|v| v.as_array())
                .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            if !paths.contains(&path) {
                paths.push(path);
            }
            pool.auth.set("htpasswd", file.as_str(), Some(format!("AuthUserFile, {at}")));
            pool.auth.set("realm", realm, Some("AuthName".to_string()));
            pool.auth.set("paths", strings(&paths), Some("Require valid-user here".to_string()));
        }
    }

    fn unused_daemons(&mut self) {
        let unused: Vec<&'a Directive> = self
            .daemons
            .iter()
            .filter(|(n, _)| !self.used_daemons.contains(n))
            .map(|(_, d)| *d)
            .collect();
        for d in unused {
            self.note(Note::skipped(
                d,
                "no translated WSGIScriptAlias uses this daemon process group",
            ));
        }
    }

    /// The rules file: each scope's rewrite rules (with the pool variable renamed and, with
    /// several virtual hosts, a Host condition), then the Host rules choosing tenants.
    fn rules(&mut self) {
        let vhosts = self.scopes.len() - 1;
        let mut out: Vec<String> = Vec::new();
        let group_var = self.sites.as_ref().and_then(|s| s.group_var.clone());
        for i in 0..self.scopes.len() {
            let guard = if vhosts >= 2 && i != 0 { self.host_guard(i) } else { None };
            let items: Vec<&'a Directive> = self.scopes[i].items.clone();
            let rewrites: Vec<&'a Directive> = items
                .into_iter()
                .filter(|d| d.is("RewriteEngine") || d.is("RewriteCond") || d.is("RewriteRule"))
                .collect();
            if rewrites.is_empty() {
                continue;
            }
            let on = rewrites
                .iter()
                .rev()
                .find(|d| d.is("RewriteEngine"))
                .and_then(|d| d.arg(0))
                .is_some_and(|a| a.eq_ignore_ascii_case("on"));
            if !on {
                for d in rewrites.iter().filter(|d| !d.is("RewriteEngine")) {
                    self.note(Note::ignored(
                        d,
                        "RewriteEngine is not On in this context: the rule never ran in Apache",
                    ));
                }
                continue;
            }
            let what = match self.scopes[i].vhost {
                Some(v) => format!("<VirtualHost {}> at {}", v.args.join(" "), v.at()),
                None => "main server".to_string(),
            };
            out.push(format!("# Rules of the {what}."));
            let mut block: Vec<&'a Directive> = Vec::new();
            for d in rewrites {
                if d.is("RewriteEngine") {
                    continue;
                }
                block.push(d);
                if d.is("RewriteRule") {
                    let b = std::mem::take(&mut block);
                    self.rule_block(&b, guard.as_deref(), group_var.as_deref(), &mut out);
                }
            }
            for d in block {
                self.note(Note::skipped(d, "RewriteCond with no RewriteRule after it"));
            }
        }
        if vhosts >= 2 {
            self.host_rules(&mut out);
        }
        if !out.is_empty() {
            let mut text = String::from("# Made by paddock import-apache from Apache's rewrite rules (docs/rules.md).\n# `paddock.tenant` picks the pool; every other E= variable is a WSGI environ entry.\nRewriteEngine On\n\n");
            for l in out {
                text.push_str(&l);
                text.push('\n');
            }
            self.out.rules = text;
        }
    }

    /// One rule and its conditions, checked with Paddock's own parser; a block it refuses is
    /// written commented out and reported.
    fn rule_block(
        &mut self,
        block: &[&'a Directive],
        guard: Option<&str>,
        group_var: Option<&str>,
        out: &mut Vec<String>,
    ) {
        let mut lines = Vec::new();
        if let Some(g) = guard {
            lines.push(format!("RewriteCond {g}"));
        }
        let mut renamed = false;
        for d in block {
            let mut args = d.args.clone();
            if let Some(var) = group_var {
                for a in args.iter_mut() {
                    let env = format!("%{{ENV:{var}}}");
                    if a.contains(&env) {
                        *a = a.replace(&env, &format!("%{{ENV:{TENANT_VAR}}}"));
                        renamed = true;
                    }
                }
                let flags = if d.is("RewriteRule") { args.get_mut(2) } else { None };
                if let Some(f) = flags.filter(|f| f.starts_with('[')) {
                    let inner = f.trim_start_matches('[').trim_end_matches(']');
                    let parts: Vec<String> = inner
                        .split(',')
                        .map(|p| {
                            for pre in ["E=", "e=", "env="] {
                                if let Some(rest) = p.strip_prefix(pre) {
                                    if let Some(v) = rest
                                        .strip_prefix(var)
                                        .filter(|v| v.is_empty() || v.starts_with(':'))
                                    {
                                        renamed = true;
                                        return format!("{pre}{TENANT_VAR}{v}");
                                    }
                                }
                            }
                            p.to_string()
                        })
                        .collect();
                    *f = format!("[{}]", parts.join(","));
                }
            }
            let mut line = d.name.clone();
            for a in &args {
                line.push(' ');
                line.push_str(&quote(a));
            }
            lines.push(line);
        }
        let first = block[0];
        let text = format!("RewriteEngine On\n{}\n", lines.join("\n"));
        match paddock_rules::parse_apache(&text, &first.file) {
            Ok(_) => {
                let from: Vec<String> = block.iter().map(|d| d.at()).collect();
                let mut c = format!("# from {}", from.join(", "));
                if renamed {
                    c.push_str(&format!(
                        " (`{}` renamed `{TENANT_VAR}`: it named the daemon process group)",
                        group_var.unwrap_or("")
                    ));
                }
                out.push(c);
                out.extend(lines);
                out.push(String::new());
            }
            Err(e) => {
                let why = e
                    .to_string()
                    .lines()
                    .map(|l| l.split_once(": ").map_or(l, |(_, m)| m).to_string())
                    .collect::<Vec<_>>()
                    .join("; ");
                for d in block {
                    if d.is("RewriteRule") {
                        self.note(Note::skipped(
                            d,
                            format!("Paddock's rules refuse it: {why}; written commented out"),
                        ));
                    }
                }
                out.push(format!("# NOT TRANSLATED (from {}): {why}", first.at()));
                out.extend(lines.iter().map(|l| format!("# {l}")));
                out.push(String::new());
            }
        }
    }

    /// `%{HTTP_HOST} ...` for scope `i`: its names, or for the first virtual host (httpd's
    /// default for a name no host has) every name but the other hosts'.
    fn host_guard(&self, i: usize) -> Option<String> {
        let pattern = |names: &[String]| -> String {
            let alts: Vec<String> = names.iter().map(|n| glob_to_regex(n)).collect();
            format!("^(?:{})(?::[0-9]+)?$", alts.join("|"))
        };
        if i == 1 {
            let others: Vec<String> =
                self.scopes[2..].iter().flat_map(|s| s.names.clone()).collect();
            if others.is_empty() {
                return None;
            }
            return Some(format!("%{{HTTP_HOST}} !{} [NC]", pattern(&others)));
        }
        let names = &self.scopes[i].names;
        if names.is_empty() {
            return Some("%{HTTP_HOST} =.no-server-name".to_string());
        }
        Some(format!("%{{HTTP_HOST}} {} [NC]", pattern(names)))
    }

    /// With several virtual hosts, the tenant of each host's mounts, by Host.
    fn host_rules(&mut self, out: &mut Vec<String>) {
        out.push("# Virtual hosts: Paddock has one front door, so the Host header picks the site; a name".to_string());
        out.push("# no host has goes to the first <VirtualHost>, as in Apache.".to_string());
        let server_tenants = self.made.iter().any(|m| m.scope == 0);
        for i in 1..self.scopes.len() {
            let guard = self.host_guard(i);
            let mut mine: Vec<Made> = self
                .made
                .iter()
                .filter(|m| m.scope == i && !m.script.as_os_str().is_empty())
                .cloned()
                .collect();
            mine.sort_by_key(|m| std::cmp::Reverse(m.mount.len()));
            let host = self.scopes[i].vhost.map(|v| v.at()).unwrap_or_default();
            for m in &mine {
                if let Some(g) = &guard {
                    out.push(format!("RewriteCond {g}"));
                }
                let pat = if m.mount == "/" {
                    "^/".to_string()
                } else {
                    format!("^{}(/|$)", regex_escape(&m.mount))
                };
                out.push(format!("RewriteRule {pat} - [E={TENANT_VAR}:{},L]", m.name));
            }
            let has_sites = self.sites.as_ref().is_some_and(|s| s.scope == i);
            if !server_tenants && !has_sites {
                out.push(format!("# Anything else on the host of {host} is not a site: 404 (no tenant has this name)."));
                if let Some(g) = &guard {
                    out.push(format!("RewriteCond {g}"));
                }
                out.push(format!("RewriteRule ^/ - [E={TENANT_VAR}:{NO_TENANT},L]"));
            }
            out.push(String::new());
        }
        if self.sites.as_ref().is_some_and(|s| s.scope != 0) {
            self.out.notes.push(Note {
                file: PathBuf::new(),
                line: 0,
                directive: "WSGIScriptAliasMatch".to_string(),
                kind: crate::report::Kind::Changed,
                why: "discovered sites answer on every host name, not only their virtual host's"
                    .to_string(),
            });
        }
    }

    /// Top-level keys: sites and mount for discovery, `index`, the rules file.
    fn top(&mut self) {
        let m = &mut self.out.model;
        if let Some(s) = &self.sites {
            m.top.set(
                "sites",
                s.dir.as_str(),
                Some("from E=trac.env_path in the rewrite rules".to_string()),
            );
            m.top.set("mount", s.mount.as_str(), Some("WSGIScriptAliasMatch prefix".to_string()));
        }
        m.top.set(
            "index",
            false,
            Some("Apache served no list of sites; true shows Paddock's at the mount".to_string()),
        );
        if !self.out.rules.is_empty() {
            m.top.set("rules_file", "paddock.rules", None);
        }
        // Order of tenants as made; keys of each in a fixed order for readability.
        for (_, p) in m.tenants.iter_mut() {
            p.keys.entries.sort_by_key(|e| key_rank(&e.key));
        }
        m.defaults.keys.entries.sort_by_key(|e| key_rank(&e.key));
    }
}

fn key_rank(k: &str) -> usize {
    const ORDER: &[&str] = &[
        "dir",
        "mount",
        "app",
        "virtualenv",
        "python_path",
        "user",
        "group",
        "processes",
        "threads",
    ];
    ORDER.iter().position(|o| *o == k).unwrap_or(ORDER.len())
}

#[derive(Debug, Clone)]
enum Target {
    Defaults,
    /// `[defaults]`, for a regex below each site (`LocationMatch`).
    DefaultsRegex(String),
    /// A tenant, with the path below its mount the section names (empty: the whole site).
    Tenant(String, String),
    TenantRegex(String, String),
}

/// `path` is `base` or below it (by path segments; `base` may end in `/`).
fn under(path: &str, base: &str) -> bool {
    let b = base.trim_end_matches('/');
    if b.is_empty() {
        return path.starts_with('/');
    }
    path == b || path.strip_prefix(b).is_some_and(|r| r.starts_with('/'))
}

/// `^/trac/([^/]+)` (optionally followed by what matches the rest of the path) → `/trac`.
fn site_prefix(re: &str) -> Option<String> {
    let r = re.strip_prefix('^')?;
    for seg in ["/([^/]+)", "/([^/]*)", "/(\\w+)", "/([-\\w]+)"] {
        if let Some(i) = r.find(seg) {
            let prefix = &r[..i];
            let rest = &r[i + seg.len()..];
            let plain = !prefix.contains(['(', '[', '*', '+', '?', '\\', '.', '|', '$']);
            let rest_ok =
                matches!(rest, "" | "$" | "(/.*)?$" | "(/.*)?" | "/?" | ".*" | "(.*)" | "(.*)$");
            if plain && rest_ok && (prefix.is_empty() || prefix.starts_with('/')) {
                return Some(prefix.to_string());
            }
        }
    }
    None
}

fn regex_escape(s: &str) -> String {
    regex::escape(s)
}

/// A `ServerName`/`ServerAlias` (with `*` and `?`) as a regex.
fn glob_to_regex(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        match c {
            '*' => out.push_str("[^:]*"),
            '?' => out.push('.'),
            c => out.push_str(&regex::escape(&c.to_string())),
        }
    }
    out
}

/// `raw` made into a tenant name: ASCII letters, digits, `-`, `_` and `.` kept, anything else
/// (any other byte an Apache file may hold) a `-`, and no leading `-`, `_` or `.`.
fn tenant_name(raw: &str) -> String {
    let name: String = raw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '-' })
        .collect();
    name.trim_start_matches(['-', '_', '.']).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_names_are_ascii_whatever_the_file_holds() {
        assert_eq!(tenant_name("site-1"), "site-1");
        assert_eq!(tenant_name("._caf\u{e9} b"), "caf--b");
        assert_eq!(tenant_name("\u{8d}\u{8b}x"), "x");
    }

    #[test]
    fn site_prefixes() {
        assert_eq!(site_prefix("^/trac/([^/]+)").as_deref(), Some("/trac"));
        assert_eq!(site_prefix("^/([^/]+)(/.*)?$").as_deref(), Some(""));
        assert_eq!(site_prefix("^/tr.c/([^/]+)"), None);
        assert_eq!(site_prefix("/trac/([^/]+)"), None);
        assert_eq!(site_prefix("^/trac/([^/]+)/x"), None);
    }

    #[test]
    fn under_is_by_segments() {
        assert!(under("/trac/x", "/trac"));
        assert!(under("/trac", "/trac/"));
        assert!(!under("/tracx", "/trac"));
        assert!(under("/anything", "/"));
    }

    #[test]
    fn host_names_become_anchored_patterns() {
        assert_eq!(glob_to_regex("*.example.org"), "[^:]*\\.example\\.org");
    }
}

//! Differential test of `paddock import-apache`: each Apache configuration of mod_wsgi's
//! "Integration With Trac" page (one site embedded, many sites under TRAC_ENV_PARENT_DIR in one
//! daemon, a daemon process per site, per-site daemons chosen by rewrite rules with a shared
//! Basic auth file) and a two-virtual-host one run in a real Apache + mod_wsgi; the same files
//! go through `paddock import-apache`, `paddock serve` runs the result, and both answer the same
//! URLs against the same real Trac 1.6 sites. Status codes must be equal, and so must bodies
//! (ports and Trac's form token normalised) and the WSGI environ an `env.wsgi` app prints.
//!
//! Needs root (Apache switches to the sites' user, as Paddock does) and Debian's apache2 and
//! libapache2-mod-wsgi-py3 (scripts/install-deps.sh).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    chown, ensure_user, free_port, nix_is_root, private, send_raw, trac_env, venv, write, Server,
};

const APACHE: &str = "/usr/sbin/apache2";
const MODULES: &str = "/usr/lib/apache2/modules";
/// The Unix user both servers run the sites as.
const USER: &str = "paddock-e2e-apache";
/// `admin:secret`, in the htpasswd files.
const AUTH: &str = "YWRtaW46c2VjcmV0";

fn skip() -> bool {
    if !nix_is_root() {
        eprintln!(
            "apache_diff: skipped, needs root (Apache and Paddock switch to the sites' user)"
        );
        return true;
    }
    assert!(
        Path::new(APACHE).exists() && Path::new(MODULES).join("mod_wsgi.so").exists(),
        "apache2 and libapache2-mod-wsgi-py3 are missing: run scripts/install-deps.sh as root"
    );
    false
}

/// The environ keys both servers must agree on (the env app prints them).
const ENV_APP: &str = r#"import json
KEYS = ["REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_PROTOCOL",
        "HTTP_HOST", "wsgi.url_scheme", "REMOTE_USER", "AUTH_TYPE", "trac.env_path",
        "test.var"]
# Not wsgi.multiprocess: embedded mode ran in Apache's (many) children; the imported pool has
# processes = 1, so it is False there as in a mod_wsgi daemon of one process.
def application(environ, start_response):
    body = json.dumps({k: environ.get(k) for k in KEYS}, sort_keys=True, indent=1).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
"#;

/// A temporary server root with two Trac sites (`sites/one`, `sites/two`), their scripts, the
/// env app and an htpasswd file.
struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let h = Host { dir };
        ensure_user(USER);
        let sites = h.path("sites");
        std::fs::create_dir_all(&sites).expect("mkdir");
        for s in ["one", "two"] {
            trac_env(&sites.join(s), s);
        }
        private(&sites);
        chown(&sites, USER);
        let stock = |env: &str| {
            format!("import os\nos.environ['TRAC_ENV'] = '{env}'\nimport trac.web.main\napplication = trac.web.main.dispatch_request\n")
        };
        let root = h.root();
        write(&h.path("apache/one/trac.wsgi"), &stock(&format!("{root}/sites/one")));
        write(&h.path("apache/two/trac.wsgi"), &stock(&format!("{root}/sites/two")));
        write(
            &h.path("apache/parent.wsgi"),
            &format!("import os\nos.environ['TRAC_ENV_PARENT_DIR'] = '{root}/sites'\nimport trac.web.main\napplication = trac.web.main.dispatch_request\n"),
        );
        write(
            &h.path("apache/trac.wsgi"),
            "import trac.web.main\napplication = trac.web.main.dispatch_request\n",
        );
        write(&h.path("envapp/env.wsgi"), ENV_APP);
        private(&h.path("envapp"));
        chown(&h.path("envapp"), USER);
        let pw = Command::new("htpasswd")
            .args(["-nbs", "admin", "secret"])
            .output()
            .expect("run htpasswd");
        assert!(pw.status.success(), "htpasswd -nbs failed");
        write(&h.path("htpasswd"), &String::from_utf8_lossy(&pw.stdout));
        h
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn root(&self) -> String {
        self.dir.path().display().to_string()
    }

    /// `etc/httpd.conf`: what a Debian host loads, listening on `port`, then `site`.
    fn httpd_conf(&self, port: u16, site: &str) -> PathBuf {
        let root = self.root();
        let mods = [
            ("mpm_event", "mod_mpm_event.so"),
            ("authz_core", "mod_authz_core.so"),
            ("authz_user", "mod_authz_user.so"),
            ("authn_core", "mod_authn_core.so"),
            ("authn_file", "mod_authn_file.so"),
            ("auth_basic", "mod_auth_basic.so"),
            ("rewrite", "mod_rewrite.so"),
            ("alias", "mod_alias.so"),
            ("env", "mod_env.so"),
            ("mime", "mod_mime.so"),
            ("wsgi", "mod_wsgi.so"),
        ];
        let mut text = format!("ServerRoot {root}/etc\nServerName localhost\n");
        for (m, f) in mods {
            text.push_str(&format!("LoadModule {m}_module {MODULES}/{f}\n"));
        }
        text.push_str(&format!(
            "Listen 127.0.0.1:{port}\nTypesConfig /etc/mime.types\nUser {USER}\nGroup {USER}\nPidFile {root}/run/httpd.pid\nDefaultRuntimeDir {root}/run\nErrorLog {root}/run/error.log\nLogLevel warn\nWSGISocketPrefix {root}/run/wsgi\nInclude site.conf\n"
        ));
        write(
            &self.path("etc/site.conf"),
            &site.replace("ROOT", &root).replace("VENV", &venv().display().to_string()),
        );
        let conf = self.path("etc/httpd.conf");
        write(&conf, &text);
        std::fs::create_dir_all(self.path("run")).expect("mkdir run");
        conf
    }
}

/// A running Apache (`-DFOREGROUND`), stopped by pid when dropped.
struct Apache {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Apache {
    fn start(conf: &Path, port: u16, log: PathBuf) -> Apache {
        let child = Command::new(APACHE)
            .arg("-f")
            .arg(conf)
            .arg("-DFOREGROUND")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start apache2");
        let mut a = Apache { child, addr: SocketAddr::from(([127, 0, 0, 1], port)), log };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(st)) = a.child.try_wait() {
                panic!("apache2 exited ({st}):\n{}", a.log_text());
            }
            if std::net::TcpStream::connect(a.addr).is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "apache2 did not listen within 30 s:\n{}",
                a.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        a
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Apache {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        common::signal(self.child.id(), 15);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request of the set: host, path, with credentials or not, and what is compared.
struct Probe {
    host: Option<&'static str>,
    path: &'static str,
    auth: bool,
    /// Compare bodies (responses from the app); `false`: status only (a page of the server's own).
    body: bool,
}

fn probe(path: &'static str) -> Probe {
    Probe { host: None, path, auth: false, body: true }
}

/// What one server answered, normalised.
#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    location: Option<String>,
    content_type: Option<String>,
    body: String,
}

fn ask(addr: SocketAddr, p: &Probe) -> Answer {
    let host = p.host.map(str::to_string).unwrap_or_else(|| addr.to_string());
    let auth = if p.auth { format!("Authorization: Basic {AUTH}\r\n") } else { String::new() };
    let req = format!("GET {} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n", p.path);
    let r =
        send_raw(addr, req.as_bytes()).unwrap_or_else(|e| panic!("GET {} on {addr}: {e}", p.path));
    let norm = |s: &str| {
        let s = s.replace(&addr.to_string(), "HOST").replace(&format!(":{}", addr.port()), ":PORT");
        let token = regex::Regex::new(r#"(__FORM_TOKEN"? value=")[0-9a-f]+"#).expect("regex");
        let s = token.replace_all(&s, "${1}TOKEN");
        // Trac's relative times ("2 seconds ago") depend on when each server was asked.
        let ago = regex::Regex::new(r">[0-9]+ (second|minute)s? ago<").expect("regex");
        ago.replace_all(&s, ">AGO<").into_owned()
    };
    Answer {
        status: r.status,
        location: r.header("location").map(norm),
        content_type: if p.body { r.header("content-type").map(str::to_string) } else { None },
        body: if p.body { norm(&r.text()) } else { String::new() },
    }
}

/// Run `site` (Apache syntax, `ROOT`/`VENV` replaced) in Apache and, imported, in Paddock;
/// compare the answers to `probes`. Returns the import's report.
fn differential(name: &str, site: &str, probes: &[Probe]) -> String {
    let host = Host::new();
    let port = free_port();
    let conf = host.httpd_conf(port, site);
    let apache_answers: Vec<Answer> = {
        let apache = Apache::start(&conf, port, host.path("run/error.log"));
        let a = probes.iter().map(|p| ask(apache.addr, p)).collect();
        drop(apache);
        a
    };
    let out = host.path("imported");
    let imp = Command::new(&common::bins().0)
        .args(["import-apache"])
        .arg(&conf)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run paddock import-apache");
    let stdout = String::from_utf8_lossy(&imp.stdout).into_owned();
    assert!(
        imp.status.success(),
        "{name}: import-apache failed: {stdout}{}",
        String::from_utf8_lossy(&imp.stderr)
    );
    let config = out.join("paddock.toml");
    let toml = std::fs::read_to_string(&config).expect("paddock.toml written");
    let report = std::fs::read_to_string(out.join("import-report.txt")).expect("report written");
    let server = Server::start(&["--config", config.to_str().expect("utf-8")]);
    let mut diffs = Vec::new();
    for (p, a) in probes.iter().zip(&apache_answers) {
        let b = ask(server.addr, p);
        if &b != a {
            diffs.push(format!(
                "GET {} (host {:?}, auth {}):\n  apache:  {} {:?} {:?}\n  paddock: {} {:?} {:?}\n{}",
                p.path,
                p.host,
                p.auth,
                a.status,
                a.location,
                a.content_type,
                b.status,
                b.location,
                b.content_type,
                first_difference(&a.body, &b.body)
            ));
        } else {
            eprintln!(
                "{name}: GET {} host {:?} auth {}: both {}",
                p.path, p.host, p.auth, a.status
            );
        }
    }
    assert!(
        diffs.is_empty(),
        "{name}: Apache and Paddock differ:\n{}\n--- paddock.toml:\n{toml}\n--- report:\n{report}\n--- paddock log:\n{}",
        diffs.join("\n"),
        server.log_text()
    );
    report
}

fn first_difference(a: &str, b: &str) -> String {
    for (i, (x, y)) in a.lines().zip(b.lines()).enumerate() {
        if x != y {
            return format!("  body line {}:\n    apache:  {x}\n    paddock: {y}", i + 1);
        }
    }
    if a.lines().count() != b.lines().count() {
        return format!(
            "  body lengths: apache {} lines, paddock {} lines",
            a.lines().count(),
            b.lines().count()
        );
    }
    String::new()
}

/// The env app at /env, embedded, with a `SetEnv` and Basic auth on /env/login.
const ENV_SITE: &str = r#"
WSGIScriptAlias /env ROOT/envapp/env.wsgi
SetEnv test.var from-apache
<Directory ROOT/envapp>
  WSGIApplicationGroup %{GLOBAL}
  Require all granted
</Directory>
<Location /env/login>
  AuthType Basic
  AuthName "Env"
  AuthUserFile ROOT/htpasswd
  Require valid-user
</Location>
"#;

fn env_probes() -> Vec<Probe> {
    vec![
        probe("/env/a/b?x=1&y=%20"),
        probe("/env"),
        Probe { auth: true, ..probe("/env/login/x") },
        Probe { body: false, ..probe("/env/login") },
    ]
}

#[test]
fn single_site_embedded() {
    if skip() {
        return;
    }
    let site = format!(
        "WSGIPythonHome VENV\nWSGIScriptAlias /trac ROOT/apache/one/trac.wsgi\n<Directory ROOT/apache/one>\n  WSGIApplicationGroup %{{GLOBAL}}\n  Require all granted\n</Directory>\n<Location /trac/login>\n  AuthType Basic\n  AuthName \"Trac\"\n  AuthUserFile ROOT/htpasswd\n  Require valid-user\n</Location>\n{ENV_SITE}"
    );
    let mut probes = vec![
        probe("/trac/wiki/WikiStart"),
        probe("/trac/chrome/common/css/trac.css"),
        probe("/trac/no/such/page"),
        Probe { body: false, ..probe("/trac/login") },
        Probe { auth: true, ..probe("/trac/login") },
        Probe { body: false, ..probe("/elsewhere") },
    ];
    probes.extend(env_probes());
    let report = differential("single site, embedded", &site, &probes);
    assert!(report.contains("embedded mode"), "{report}");
}

#[test]
fn many_sites_in_one_daemon_with_trac_env_parent_dir() {
    if skip() {
        return;
    }
    let site = format!(
        "WSGIDaemonProcess sites user={USER} group={USER} threads=5 python-home=VENV\nWSGIScriptAlias /trac ROOT/apache/parent.wsgi\n<Directory ROOT/apache>\n  WSGIProcessGroup sites\n  WSGIApplicationGroup %{{GLOBAL}}\n  Require all granted\n</Directory>\nWSGIPythonHome VENV\n{ENV_SITE}"
    );
    let mut probes = vec![
        probe("/trac"),
        probe("/trac/"),
        probe("/trac/one/wiki/WikiStart"),
        probe("/trac/two/chrome/common/css/trac.css"),
        probe("/trac/nosuch/wiki"),
    ];
    probes.extend(env_probes());
    differential("TRAC_ENV_PARENT_DIR, one daemon", &site, &probes);
}

#[test]
fn a_daemon_process_per_site() {
    if skip() {
        return;
    }
    let mut site = String::from("WSGIPythonHome VENV\n");
    for s in ["one", "two"] {
        site.push_str(&format!(
            "WSGIDaemonProcess {s} user={USER} group={USER} threads=5 maximum-requests=100 inactivity-timeout=300 python-home=VENV display-name=%{{GROUP}}\nWSGIScriptAlias /trac/{s} ROOT/apache/{s}/trac.wsgi\n<Directory ROOT/apache/{s}>\n  WSGIProcessGroup {s}\n  WSGIApplicationGroup %{{GLOBAL}}\n  Require all granted\n</Directory>\n<Location /trac/{s}/login>\n  AuthType Basic\n  AuthName \"Trac {s}\"\n  AuthUserFile ROOT/htpasswd\n  Require valid-user\n</Location>\n"
        ));
    }
    site.push_str(ENV_SITE);
    let mut probes = vec![
        probe("/trac/one/wiki/WikiStart"),
        probe("/trac/two/wiki/WikiStart"),
        probe("/trac/one/chrome/common/css/trac.css"),
        Probe { body: false, ..probe("/trac/two/login") },
        Probe { auth: true, ..probe("/trac/two/login") },
        Probe { body: false, ..probe("/trac/three/wiki") },
    ];
    probes.extend(env_probes());
    let report = differential("a daemon per site", &site, &probes);
    assert!(report.contains("display-name"), "{report}");
}

#[test]
fn per_site_daemons_chosen_by_rewrite_rules() {
    if skip() {
        return;
    }
    let site = format!(
        r#"WSGIPythonHome VENV
WSGIDaemonProcess one user={USER} group={USER} threads=5 python-home=VENV
WSGIDaemonProcess two user={USER} group={USER} threads=5 python-home=VENV
RewriteEngine On
RewriteCond %{{REQUEST_URI}} ^/trac/([^/]+)
RewriteCond ROOT/sites/%1/conf/trac.ini !-f
RewriteRule . - [F]
RewriteCond %{{REQUEST_URI}} ^/trac/([^/]+)
RewriteRule . - [E=trac.process_group:%1,E=trac.env_path:ROOT/sites/%1]
WSGIScriptAliasMatch ^/trac/([^/]+) ROOT/apache/trac.wsgi
<Directory ROOT/apache>
  WSGIProcessGroup %{{ENV:trac.process_group}}
  WSGIApplicationGroup %{{GLOBAL}}
  Require all granted
</Directory>
<LocationMatch "/trac/[^/]+/login">
  AuthType Basic
  AuthName "Trac"
  AuthUserFile ROOT/htpasswd
  Require valid-user
</LocationMatch>
{ENV_SITE}"#
    );
    let mut probes = vec![
        probe("/trac/one/wiki/WikiStart"),
        probe("/trac/two/wiki/WikiStart"),
        probe("/trac/two/chrome/common/css/trac.css"),
        Probe { body: false, ..probe("/trac/nosuch/wiki") },
        Probe { body: false, ..probe("/trac/one/login") },
        Probe { auth: true, ..probe("/trac/one/login") },
        // The unanchored LocationMatch also matches deeper in the path, in Apache and here.
        Probe { body: false, ..probe("/trac/one/wiki/trac/x/login") },
    ];
    probes.extend(env_probes());
    differential("rewrite rules", &site, &probes);
}

#[test]
fn two_virtual_hosts() {
    if skip() {
        return;
    }
    let site = format!(
        r#"WSGIPythonHome VENV
WSGIDaemonProcess one user={USER} group={USER} threads=5 python-home=VENV
WSGIDaemonProcess two user={USER} group={USER} threads=5 python-home=VENV
<VirtualHost *:*>
  ServerName one.test
  WSGIScriptAlias /trac ROOT/apache/one/trac.wsgi process-group=one application-group=%{{GLOBAL}}
  WSGIScriptAlias /env ROOT/envapp/env.wsgi application-group=%{{GLOBAL}}
  SetEnv test.var host-one
</VirtualHost>
<VirtualHost *:*>
  ServerName two.test
  ServerAlias www.two.test
  WSGIScriptAlias /trac ROOT/apache/two/trac.wsgi process-group=two application-group=%{{GLOBAL}}
  <Location /trac/login>
    AuthType Basic
    AuthName "Two"
    AuthUserFile ROOT/htpasswd
    Require valid-user
  </Location>
</VirtualHost>
<Directory ROOT>
  Require all granted
</Directory>
"#
    );
    let on = |host: &'static str, path: &'static str| Probe { host: Some(host), ..probe(path) };
    let probes = vec![
        on("one.test", "/trac/wiki/WikiStart"),
        on("two.test", "/trac/wiki/WikiStart"),
        on("www.two.test:80", "/trac/wiki/WikiStart"),
        on("other.test", "/trac/wiki/WikiStart"),
        on("one.test", "/env/x?q=1"),
        on("other.test", "/env/x"),
        Probe { body: false, ..on("two.test", "/env/x") },
        Probe { body: false, ..on("two.test", "/trac/login") },
        Probe { auth: true, ..on("two.test", "/trac/login") },
        Probe { body: false, ..on("one.test", "/trac/login") },
    ];
    differential("two virtual hosts", &site, &probes);
}

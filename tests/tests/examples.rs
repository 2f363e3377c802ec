//! Every configuration in `deploy/examples/`, served end to end against real Trac 1.6.
//!
//! Each test copies the example's files into a fresh temporary directory, replaces `/srv/trac`
//! with that directory (holding the sites, templates, ... the example expects) and
//! `/srv/trac/venv` with the test virtualenv, then runs `paddock serve --config <copy>`
//! (the harness's `--listen` overrides the file's `listen`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{eventually, repo_root, trac_env, venv, Response, Server};

/// Bound for everything that happens in the background (pools starting).
const WAIT: Duration = Duration::from_secs(60);

/// A copy of some of `deploy/examples/` with `/srv/trac` relocated into a temporary directory.
struct Example {
    /// Stands for `/srv/trac`.
    root: tempfile::TempDir,
}

impl Example {
    /// Copy `files` from `deploy/examples/` into `<root>/etc/` (so relative paths such as
    /// `rules_file` and `index_template` keep working), relocating `/srv/trac`.
    fn new(files: &[&str]) -> Example {
        let ex = Example { root: tempfile::tempdir().expect("tempdir") };
        std::fs::create_dir_all(ex.path().join("sites")).expect("mkdir sites");
        common::private(&ex.path().join("sites")); // a tenant directory in parent-dir.toml
        for f in files {
            ex.copy(f, &ex.etc().join(f));
        }
        ex
    }

    fn path(&self) -> &Path {
        self.root.path()
    }

    fn etc(&self) -> PathBuf {
        self.path().join("etc")
    }

    /// `<root>/sites/<name>`.
    fn site(&self, name: &str) -> PathBuf {
        self.path().join("sites").join(name)
    }

    /// Copy one example file to `to`, with `/srv/trac/venv` and `/srv/trac` relocated.
    fn copy(&self, file: &str, to: &Path) {
        let src = repo_root().join("deploy/examples").join(file);
        let text =
            std::fs::read_to_string(&src).unwrap_or_else(|e| panic!("read {}: {e}", src.display()));
        let text =
            text.replace("/srv/trac/venv", utf8(venv())).replace("/srv/trac", utf8(self.path()));
        assert!(!text.contains("/srv/trac"), "{file}: /srv/trac left over");
        common::write(to, &text);
    }

    /// Replace `from` (which must occur) in the copied file `file`.
    fn edit(&self, file: &str, from: &str, to: &str) {
        let path = self.etc().join(file);
        let text = std::fs::read_to_string(&path).expect("read copied example");
        assert!(text.contains(from), "{file} has no {from:?}");
        std::fs::write(&path, text.replacen(from, to, 1)).expect("write copied example");
    }

    /// `paddock serve --config <root>/etc/<file>`.
    fn serve(&self, file: &str) -> Server {
        let config = self.etc().join(file);
        Server::start(&["--config", utf8(&config)])
    }
}

fn utf8(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// GET that must answer 200; the body as text.
fn ok(server: &Server, path: &str) -> String {
    let r = server.get(path);
    assert_eq!(r.status, 200, "GET {path}: {}\nserver log:\n{}", r.text(), server.log_text());
    r.text()
}

fn get_with(server: &Server, path: &str, headers: &str) -> Response {
    server.request(
        format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\n{headers}Connection: close\r\n\r\n",
            server.addr
        )
        .as_bytes(),
    )
}

fn assert_has(html: &str, needle: &str) {
    assert!(html.contains(needle), "expected {needle:?} in:\n{html}");
}

fn assert_lacks(html: &str, needle: &str) {
    assert!(!html.contains(needle), "did not expect {needle:?} in:\n{html}");
}

/// Wait until paddock has exactly `n` worker processes.
fn workers(server: &Server, n: usize) {
    eventually(&format!("{n} worker processes"), WAIT, || server.worker_pids().len() == n);
}

/// single-site.toml: one Trac env at `/trac` (`trac.env_path` in the environ).
#[test]
fn single_site() {
    let ex = Example::new(&["single-site.toml"]);
    trac_env(&ex.path().join("mysite"), "My Single Site");
    let server = ex.serve("single-site.toml");
    assert!(server.worker_pids().is_empty(), "no pool before the first request");

    let html = ok(&server, "/trac/wiki/WikiStart");
    assert_has(&html, "Welcome to Trac");
    assert_has(&html, "My Single Site");
    // SCRIPT_NAME is /trac: Trac's own links are under it.
    assert_has(&html, "href=\"/trac/wiki/TracGuide\"");
    assert_has(&html, "href=\"/trac/timeline\"");
    assert_has(&html, "href=\"/trac/chrome/common/css/trac.css");
    assert_lacks(&html, "href=\"/wiki/");
    // processes = 2
    workers(&server, 2);

    // The mount itself is the site's front page; its static files are served too.
    assert_has(&ok(&server, "/trac"), "My Single Site");
    assert_has(&ok(&server, "/trac/"), "My Single Site");
    assert_has(&ok(&server, "/trac/chrome/common/css/trac.css"), "body");
    // Trac answers for anything below the mount, its own 404 included.
    let missing = server.get("/trac/no-such-handler");
    assert_eq!(missing.status, 404);
    assert_has(&missing.text(), "No handler matched request to /no-such-handler");

    // Nothing outside the mount (index = false), and no prefix match inside a segment.
    for path in ["/other", "/", "/tracker", "/trac-x/wiki"] {
        assert_eq!(server.get(path).status, 404, "GET {path}");
    }
    assert_eq!(server.worker_pids().len(), 2);
}

/// parent-dir.toml: one pool for every site of a parent directory, Trac choosing the site
/// from the URL and rendering its own project index from the custom template.
#[test]
fn parent_dir() {
    let ex = Example::new(&["parent-dir.toml"]);
    ex.copy("index-template.html", &ex.path().join("templates/index-template.html"));
    trac_env(&ex.site("alpha"), "Alpha Project");
    trac_env(&ex.site("beta"), "Beta Project");
    let server = ex.serve("parent-dir.toml");
    assert!(server.worker_pids().is_empty(), "no pool before the first request");

    let a = ok(&server, "/trac/alpha/wiki/WikiStart");
    assert_has(&a, "Alpha Project");
    assert_has(&a, "href=\"/trac/alpha/timeline\"");
    assert_lacks(&a, "Beta Project");
    let b = ok(&server, "/trac/beta/wiki/WikiStart");
    assert_has(&b, "Beta Project");
    assert_has(&b, "href=\"/trac/beta/timeline\"");
    assert_lacks(&b, "Alpha Project");
    // Both sites in the one pool "projects": processes = 2, not 2 per site.
    workers(&server, 2);

    // Trac's own index, from index-template.html with trac.template_vars' title.
    for path in ["/trac/", "/trac"] {
        let index = ok(&server, path);
        assert_has(&index, "<title>Projects</title>");
        assert_has(&index, "<h1>Projects</h1>");
        assert_has(&index, "<li><a href=\"/trac/alpha\">Alpha Project</a></li>");
        assert_has(&index, "<li><a href=\"/trac/beta\">Beta Project</a></li>");
        assert_lacks(&index, "Available Projects"); // Trac's built-in index.html
        assert_lacks(&index, "${");
        assert_lacks(&index, "# for");
        assert_lacks(&index, ".egg-cache"); // the pool's egg cache lives in the parent dir
    }

    // A name with no directory: Trac's "Environment not found".
    let nope = server.get("/trac/nope/wiki");
    assert_eq!(nope.status, 404);
    assert_has(&nope.text(), "Environment not found");
    assert_eq!(server.get("/other").status, 404);
    assert_eq!(server.worker_pids().len(), 2);
}

/// sites.toml: discovered sites, one pool each, Paddock's index from index.html.
#[test]
fn sites() {
    let ex = Example::new(&["sites.toml", "index.html"]);
    trac_env(&ex.site("alpha"), "Alpha Project");
    trac_env(&ex.site("beta"), "Beta Project");
    // "by default each pool runs as the owner of its site directory": as root, give beta
    // to nobody (alpha stays root's, allowed by the harness's --allow-root).
    let as_root = common::nix_is_root();
    if as_root {
        for d in [ex.path().to_path_buf(), ex.path().join("sites")] {
            std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .expect("chmod");
        }
        let st = Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(ex.site("beta"))
            .status()
            .expect("run chown");
        assert!(st.success(), "chown beta");
    }
    let server = ex.serve("sites.toml");

    let index = ok(&server, "/trac/");
    assert_has(&index, "<title>Our projects</title>");
    assert_has(&index, "<h1>Our projects</h1>");
    assert_has(&index, "Served by Paddock.");
    assert_has(&index, "<a href=\"/trac/alpha/\">Alpha Project</a>");
    assert_has(&index, "<a href=\"/trac/beta/\">Beta Project</a>");
    assert_lacks(&index, "{{");
    assert!(server.worker_pids().is_empty(), "the index must not start a pool");

    let a = ok(&server, "/trac/alpha/wiki/WikiStart");
    assert_has(&a, "Alpha Project");
    assert_has(&a, "href=\"/trac/alpha/timeline\"");
    workers(&server, 1); // processes = 1
    let b = ok(&server, "/trac/beta/wiki/WikiStart");
    assert_has(&b, "Beta Project");
    assert_has(&b, "href=\"/trac/beta/timeline\"");
    workers(&server, 2); // a pool of its own
    if as_root {
        let mut uids: Vec<u32> = server.worker_pids().into_iter().map(uid_of).collect();
        uids.sort_unstable();
        assert_eq!(uids, [0, 65534], "alpha's pool as root, beta's as nobody");
    }

    assert_eq!(server.get("/trac/nope/wiki").status, 404);

    // "a new directory holding conf/trac.ini is served at once"
    trac_env(&ex.site("gamma"), "Gamma Project");
    assert_has(&ok(&server, "/trac/"), "<a href=\"/trac/gamma/\">Gamma Project</a>");
    assert_has(&ok(&server, "/trac/gamma/wiki/WikiStart"), "Gamma Project");
    workers(&server, 3);
}

/// Real uid of a process.
fn uid_of(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    let line = status.lines().find(|l| l.starts_with("Uid:")).expect("Uid line");
    line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("uid")
}

/// root.toml: one site at `/`, SCRIPT_NAME empty.
#[test]
fn root() {
    let ex = Example::new(&["root.toml"]);
    trac_env(&ex.path().join("main"), "Root Site");
    let server = ex.serve("root.toml");

    let html = ok(&server, "/wiki/WikiStart");
    assert_has(&html, "Welcome to Trac");
    assert_has(&html, "Root Site");
    assert_has(&html, "href=\"/wiki/TracGuide\"");
    assert_has(&html, "href=\"/timeline\"");
    assert_has(&html, "href=\"/chrome/common/css/trac.css");
    assert_lacks(&html, "href=\"//");

    let front = ok(&server, "/");
    assert_has(&front, "Welcome to Trac");
    assert_has(&front, "Root Site");
    assert_has(&ok(&server, "/chrome/common/css/trac.css"), "body");
    // Every path is the site's: Trac answers, even under /trac.
    for path in ["/trac", "/no-such-handler"] {
        let r = server.get(path);
        assert_eq!(r.status, 404, "GET {path}");
        assert_has(&r.text(), "No handler matched request to ");
        assert_has(&r.text(), "Root Site");
    }
    workers(&server, 2); // default processes
}

/// Locale data for `names` (e.g. `de_DE`, the ISO-8859-1 locale glibc knows by that name):
/// `None` if the host has them all, else a directory of them built with `localedef`, for
/// the workers' `LOCPATH`.
fn locales(names: &[&str], dir: &Path) -> Option<PathBuf> {
    let python = venv().join("bin/python");
    let host_has = |name: &str| {
        Command::new(&python)
            .args(["-c", &format!("import locale; locale.setlocale(locale.LC_ALL, {name:?})")])
            .env_remove("LOCPATH")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if names.iter().all(|n| host_has(n)) {
        return None;
    }
    let out = dir.join("locale");
    std::fs::create_dir_all(&out).expect("mkdir locale");
    for name in names {
        let st = Command::new("localedef")
            .args(["-i", name, "-f", "ISO-8859-1"])
            .arg(out.join(name))
            .output()
            .expect("run localedef (Debian's locales package)");
        assert!(
            out.join(name).join("LC_TIME").exists(),
            "localedef {name} failed (install Debian's `locales`): {}",
            String::from_utf8_lossy(&st.stderr)
        );
    }
    Some(out)
}

/// environ.toml: per-site WSGI environ entries. Trac's `trac.locale` is
/// `locale.setlocale(LC_ALL, ...)` for the request; with Babel (installed with Trac) it does
/// not choose the UI language (that comes from the session, `[trac] default_language` or
/// Accept-Language) but it is the libc locale of dates when no UI language can be
/// negotiated, so a request accepting only an unknown language shows it.
#[test]
fn environ() {
    let ex = Example::new(&["environ.toml"]);
    // The example needs the de_DE and en_US locales on the host (as Apache would): Trac
    // answers 500 "unsupported locale setting" without them. Bring our own if missing.
    if let Some(dir) = locales(&["de_DE", "en_US"], ex.path()) {
        let mut text = std::fs::read_to_string(ex.etc().join("environ.toml")).expect("read");
        text.push_str(&format!("\n[defaults.env]\nLOCPATH = {:?}\n", utf8(&dir)));
        std::fs::write(ex.etc().join("environ.toml"), text).expect("write");
    }
    trac_env(&ex.site("en"), "English Site");
    trac_env(&ex.site("de"), "Deutsche Site");
    let server = ex.serve("environ.toml");

    let date_of = |site: &str| {
        let r =
            get_with(&server, &format!("/trac/{site}/timeline"), "Accept-Language: x-unknown\r\n");
        assert_eq!(r.status, 200, "{}\nserver log:\n{}", r.text(), server.log_text());
        let html = r.text();
        let at = html
            .find("name=\"from\" value=\"")
            .unwrap_or_else(|| panic!("no date field in:\n{html}"));
        let value = &html[at + "name=\"from\" value=\"".len()..];
        value[..value.find('"').expect("end of value")].to_string()
    };
    let is_digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    // de_DE: %x is DD.MM.YYYY
    let de = date_of("de");
    let parts: Vec<&str> = de.split('.').collect();
    assert!(
        parts.len() == 3
            && is_digits(parts[0], 2)
            && is_digits(parts[1], 2)
            && is_digits(parts[2], 4),
        "de_DE date, got {de:?}"
    );
    // en_US: %x is MM/DD/YYYY (the C locale would give MM/DD/YY)
    let en = date_of("en");
    let parts: Vec<&str> = en.split('/').collect();
    assert!(
        parts.len() == 3
            && is_digits(parts[0], 2)
            && is_digits(parts[1], 2)
            && is_digits(parts[2], 4),
        "en_US date, got {en:?}"
    );

    // Each site is its own env (trac.env_path defaults to the site directory).
    assert_has(&ok(&server, "/trac/de/wiki/WikiStart"), "Deutsche Site");
    assert_has(&ok(&server, "/trac/en/wiki/WikiStart"), "English Site");
    workers(&server, 4);
}

/// Run the test suite's environ-dumping WSGI app instead of Trac, with the example otherwise
/// unchanged: `app` is added to the table `table` (e.g. `[defaults]`) of the copied `file`,
/// and each of `sites` gets an empty `conf/trac.ini`.
fn serve_environ_app(ex: &Example, file: &str, table: &str, sites: &[&str]) -> Server {
    let app = repo_root().join("tests/apps/testapps.py");
    ex.edit(file, &format!("{table}\n"), &format!("{table}\napp = {:?}\n", utf8(&app)));
    for site in sites {
        common::write(&ex.site(site).join("conf/trac.ini"), "");
        common::private(&ex.site(site));
    }
    ex.serve(file)
}

/// environ.toml again, every entry checked verbatim: `trac.template_vars` only shows in
/// Trac's project index, which a site with `trac.env_path` never renders.
#[test]
fn environ_entries_reach_the_app() {
    let ex = Example::new(&["environ.toml"]);
    let server = serve_environ_app(&ex, "environ.toml", "[defaults]", &["en", "de"]);
    for (site, locale, vars) in [("en", "en_US", "site=English"), ("de", "de_DE", "site=Deutsch")] {
        let json = ok(&server, &format!("/trac/{site}/x"));
        assert_has(&json, &format!("\"trac.locale\": \"{locale}\""));
        assert_has(&json, &format!("\"trac.template_vars\": \"{vars}\""));
        assert_has(&json, &format!("\"trac.env_path\": \"{}\"", utf8(&ex.site(site))));
        assert_has(&json, &format!("\"SCRIPT_NAME\": \"/trac/{site}\""));
        assert_has(&json, "\"PATH_INFO\": \"/x\"");
    }
}

/// parent-dir.toml's environ verbatim: `"trac.env_path" = ""` drops the default entry.
#[test]
fn parent_dir_environ_entries() {
    let ex = Example::new(&["parent-dir.toml"]);
    let server = serve_environ_app(&ex, "parent-dir.toml", "[tenants.projects]", &["alpha"]);
    let json = ok(&server, "/trac/alpha/x");
    assert_lacks(&json, "\"trac.env_path\"");
    assert_has(&json, &format!("\"trac.env_parent_dir\": \"{}\"", utf8(&ex.path().join("sites"))));
    let template = ex.path().join("templates/index-template.html");
    assert_has(&json, &format!("\"trac.env_index_template\": \"{}\"", utf8(&template)));
    assert_has(&json, "\"trac.template_vars\": \"title=Projects\"");
    assert_has(&json, "\"SCRIPT_NAME\": \"/trac\"");
    assert_has(&json, "\"PATH_INFO\": \"/alpha/x\"");
}

/// per-site-pools.rules' `E=trac.env_path:...` reaches the app; `paddock.tenant` does not.
#[test]
fn per_site_pools_environ_entries() {
    let ex = Example::new(&["per-site-pools.toml", "per-site-pools.rules"]);
    let server = serve_environ_app(&ex, "per-site-pools.toml", "[defaults]", &["alpha"]);
    let json = ok(&server, "/trac/alpha/x");
    assert_has(&json, &format!("\"trac.env_path\": \"{}\"", utf8(&ex.site("alpha"))));
    assert_lacks(&json, "paddock.tenant");
    assert_has(&json, "\"SCRIPT_NAME\": \"/trac/alpha\"");
    assert_has(&json, "\"PATH_INFO\": \"/x\"");
    assert_eq!(server.get("/trac/beta/x").status, 403);
}

/// per-site-pools.toml + .rules: the pool and `trac.env_path` chosen by rewrite rules, 403
/// for a name without `conf/trac.ini`.
#[test]
fn per_site_pools() {
    let ex = Example::new(&["per-site-pools.toml", "per-site-pools.rules"]);
    trac_env(&ex.site("alpha"), "Alpha Project");
    trac_env(&ex.site("beta"), "Beta Project");
    std::fs::create_dir_all(ex.site("notrac/conf")).expect("mkdir");
    let server = ex.serve("per-site-pools.toml");

    // Denied by the first rule: a directory without conf/trac.ini, and no directory at all.
    for path in
        ["/trac/notrac/wiki/WikiStart", "/trac/notrac", "/trac/missing/wiki", "/trac/missing"]
    {
        assert_eq!(server.get(path).status, 403, "GET {path}\nserver log:\n{}", server.log_text());
    }
    assert!(server.worker_pids().is_empty(), "a 403 must not start a pool");

    // /trac/ matches no rule: the index of the discovered sites.
    let index = ok(&server, "/trac/");
    // Paddock's built-in index: a card per site, with its project name.
    assert_has(&index, "<a href=\"/trac/alpha/\"><span class=\"name\">Alpha Project</span>");
    assert_has(&index, "<a href=\"/trac/beta/\"><span class=\"name\">Beta Project</span>");
    assert_lacks(&index, "notrac");

    let a = ok(&server, "/trac/alpha/wiki/WikiStart");
    assert_has(&a, "Alpha Project");
    assert_has(&a, "href=\"/trac/alpha/timeline\"");
    workers(&server, 2);
    let b = ok(&server, "/trac/beta/wiki/WikiStart");
    assert_has(&b, "Beta Project");
    assert_has(&b, "href=\"/trac/beta/timeline\"");
    assert_lacks(&b, "Alpha Project");
    workers(&server, 4); // one pool per site, 2 processes each
}

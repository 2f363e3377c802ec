//! Static files end to end, against real Trac 1.6: `/chrome/common` (Trac's htdocs in the
//! virtualenv) and `/chrome/site` (the site's htdocs) are served by the router from disk,
//! with validators, 304s and ranges, never starting a pool; symlinks out of the root and
//! encoded traversal get 404; a protected tenant's files need credentials; `static` with
//! empty values hands `/chrome/` back to Trac.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::{eventually, free_port, send_raw, trac_env, venv, write, Response, Server};

const CSS: &str = "/trac/demo/chrome/common/css/trac.css";
/// `bob`/`builder` (`htpasswd -s`).
const BOB: &str = "bob:{SHA}9SMYoF5RilWWASry7TjeaKwmpGg=\n";

/// Trac sites `demo` (discovered) and `locked` (every path behind Basic auth) under `sites/`,
/// plus the admin listener for `/metrics`.
struct Setup {
    server: Server,
    admin: SocketAddr,
    sites: PathBuf,
    _dir: tempfile::TempDir,
}

fn start(extra: &str) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let sites = dir.path().join("sites");
    std::fs::create_dir_all(&sites).expect("mkdir");
    trac_env(&sites.join("demo"), "Demo");
    trac_env(&sites.join("locked"), "Locked");
    write(&sites.join("locked/htpasswd"), BOB);
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let config = dir.path().join("paddock.toml");
    write(
        &config,
        &format!(
            "sites = \"{sites}\"\nmount = \"/trac\"\n[admin]\nlisten = \"{admin}\"\n\
             [defaults]\nvirtualenv = \"{venv}\"\nprocesses = 1\n{extra}\n\
             [tenants.locked.auth]\nhtpasswd = \"{{tenant_dir}}/htpasswd\"\npaths = [\"/\"]\n",
            sites = sites.display(),
            venv = venv().display(),
        ),
    );
    let server = Server::start(&["--config", config.to_str().expect("utf-8")]);
    Setup { server, admin, sites, _dir: dir }
}

fn get(server: &Server, path: &str, headers: &str) -> Response {
    let host = server.addr;
    server.request(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n")
            .as_bytes(),
    )
}

fn trac_css_on_disk() -> Vec<u8> {
    let path = venv().join("lib/python3.11/site-packages/trac/htdocs/css/trac.css");
    std::fs::read(path).expect("trac.css in the virtualenv")
}

fn metrics(admin: SocketAddr) -> String {
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n");
    send_raw(admin, req.as_bytes()).expect("GET /metrics").text()
}

fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn assert_no_workers(s: &Setup) {
    assert!(s.server.worker_pids().is_empty(), "a static request started a worker");
}

#[test]
fn trac_chrome_is_served_from_disk_and_never_reaches_python() {
    let s = start("");
    let on_disk = trac_css_on_disk();

    let r = get(&s.server, CSS, "");
    assert_eq!(r.status, 200, "{}", s.server.log_text());
    assert_eq!(r.header("content-type"), Some("text/css"));
    assert_eq!(r.body, on_disk, "the bytes of the file on disk");
    assert_eq!(r.header("content-length"), Some(on_disk.len().to_string().as_str()));
    assert_eq!(r.header("cache-control"), Some("max-age=3600"));
    let etag = r.header("etag").expect("ETag").to_string();
    let date = r.header("last-modified").expect("Last-Modified").to_string();

    // Revalidation by either validator.
    let r = get(&s.server, CSS, &format!("If-None-Match: {etag}\r\n"));
    assert_eq!((r.status, r.body.len()), (304, 0));
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    let r = get(&s.server, CSS, &format!("If-Modified-Since: {date}\r\n"));
    assert_eq!(r.status, 304);

    // Ranges.
    let r = get(&s.server, CSS, "Range: bytes=0-99\r\n");
    assert_eq!(r.status, 206);
    assert_eq!(r.body, on_disk[..100]);
    let want = format!("bytes 0-99/{}", on_disk.len());
    assert_eq!(r.header("content-range"), Some(want.as_str()));
    let r = get(&s.server, CSS, &format!("Range: bytes={}-\r\n", on_disk.len()));
    assert_eq!(r.status, 416);

    // HEAD: the headers, no body; other methods: 405.
    let host = s.server.addr;
    let r = s.server.request(
        format!("HEAD {CSS} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some(on_disk.len().to_string().as_str()));
    assert!(r.body.is_empty());
    let r = s.server.request(
        format!(
            "POST {CSS} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));

    // The site's own htdocs, with a symlink out of it and a dotfile.
    let htdocs = s.sites.join("demo/htdocs");
    write(&htdocs.join("site.css"), "h1 { color: green }\n");
    write(&htdocs.join(".secret"), "hidden\n");
    std::os::unix::fs::symlink("/etc/passwd", htdocs.join("passwd.css")).expect("symlink");
    let r = get(&s.server, "/trac/demo/chrome/site/site.css", "");
    assert_eq!((r.status, r.text().as_str()), (200, "h1 { color: green }\n"));
    for path in [
        "/trac/demo/chrome/site/passwd.css",
        "/trac/demo/chrome/site/.secret",
        "/trac/demo/chrome/site/",
        "/trac/demo/chrome/common/css/",
        "/trac/demo/chrome/common/no-such.css",
        // Encoded dot segments and slashes never leave the root.
        "/trac/demo/chrome/site/%2e%2e/conf/trac.ini",
        "/trac/demo/chrome/site/..%2f..%2fconf%2ftrac.ini",
        "/trac/demo/chrome/site/%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/trac/demo/chrome/common/../site/%2e%2e/conf/trac.ini",
    ] {
        let r = get(&s.server, path, "");
        assert!(r.status == 404 || r.status == 400, "GET {path}: {}", r.status);
        let body = r.text();
        assert!(!body.contains("root:") && !body.contains("[trac]"), "GET {path}: {body}");
    }

    // A protected tenant's static files need credentials too.
    let locked = "/trac/locked/chrome/common/css/trac.css";
    assert_eq!(get(&s.server, locked, "").status, 401);
    let r = get(&s.server, locked, "Authorization: Basic Ym9iOmJ1aWxkZXI=\r\n");
    assert_eq!((r.status, r.body.len()), (200, on_disk.len()));

    // None of this reached Python: no worker, no spawn, and the static responses counted.
    assert_no_workers(&s);
    let m = metrics(s.admin);
    assert_eq!(sample(&m, "paddock_worker_spawns_total{tenant=\"demo\"}"), 0.0, "{m}");
    assert!(sample(&m, "paddock_static_responses_total{status=\"200\"}") >= 4.0, "{m}");
    assert!(sample(&m, "paddock_static_responses_total{status=\"304\"}") >= 2.0, "{m}");
    assert!(sample(&m, "paddock_static_responses_total{status=\"404\"}") >= 5.0, "{m}");

    // The site itself is a real Trac, whose pages link to the chrome served above.
    let r = get(&s.server, "/trac/demo/wiki/WikiStart", "");
    assert_eq!(r.status, 200, "{}", s.server.log_text());
    assert!(r.text().contains("/trac/demo/chrome/common/css/trac.css"), "{}", r.text());
    eventually("demo's worker", Duration::from_secs(30), || !s.server.worker_pids().is_empty());
}

#[test]
fn empty_static_values_hand_chrome_back_to_trac() {
    let s = start("static = { \"/chrome/common\" = \"\", \"/chrome/site\" = \"\" }");
    let r = get(&s.server, CSS, "");
    assert_eq!(r.status, 200, "{}", s.server.log_text());
    assert_eq!(r.body, trac_css_on_disk());
    // Trac's own send_file: Last-Modified but no ETag; and a pool was started for it.
    assert!(r.header("etag").is_none(), "{:?}", r.headers);
    eventually("demo's worker", Duration::from_secs(30), || !s.server.worker_pids().is_empty());
}

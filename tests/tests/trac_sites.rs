//! Two real Trac 1.6 sites discovered from a sites directory, no config file:
//! `paddock serve --sites DIR`.

mod common;

use std::time::Duration;

use common::{eventually, trac_env, venv, Server};

fn two_sites() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    trac_env(&dir.path().join("demo-1"), "Demo One");
    trac_env(&dir.path().join("demo-2"), "Demo Two");
    // Not tenants: no conf/trac.ini, or a name that is not a valid tenant name.
    std::fs::create_dir_all(dir.path().join("not-a-site/conf")).expect("mkdir");
    std::fs::create_dir_all(dir.path().join(".hidden/conf")).expect("mkdir");
    std::fs::write(dir.path().join(".hidden/conf/trac.ini"), "").expect("write");
    dir
}

/// `paddock serve --sites DIR --virtualenv VENV`, no config file.
fn serve(sites: &tempfile::TempDir) -> Server {
    Server::start(&[
        "--sites",
        sites.path().to_str().expect("utf-8"),
        "--virtualenv",
        venv().to_str().expect("utf-8"),
    ])
}

#[test]
fn serves_two_trac_sites_started_on_demand() {
    let sites = two_sites();
    let site_arg = sites.path().to_str().expect("utf-8 path");
    let venv_arg = venv().to_str().expect("utf-8 path");
    let server = Server::start(&["--sites", site_arg, "--virtualenv", venv_arg]);

    // No pool before the first request for it.
    assert!(server.worker_pids().is_empty(), "workers started before any request");

    let index = server.get("/trac/");
    assert_eq!(index.status, 200);
    let html = index.text();
    assert!(html.contains("href=\"/trac/demo-1/\""), "{html}");
    assert!(html.contains("href=\"/trac/demo-2/\""), "{html}");
    assert!(!html.contains("/trac/not-a-site") && !html.contains("/trac/.hidden"), "{html}");
    assert!(server.worker_pids().is_empty(), "the index must not start workers");

    let unknown = server.get("/trac/nope/wiki");
    assert_eq!(unknown.status, 404);
    assert!(unknown.text().contains("<html"), "404 is a short HTML page");
    let not_site = server.get("/trac/not-a-site/");
    assert_eq!(not_site.status, 404);
    assert!(server.worker_pids().is_empty(), "a 404 must never spawn a worker");

    let wiki = server.get("/trac/demo-1/wiki/WikiStart");
    assert_eq!(wiki.status, 200, "{}", server.log_text());
    let text = wiki.text();
    assert!(text.contains("Welcome to Trac"), "{text}");
    assert!(text.contains("Demo One"), "project name from trac.ini: {text}");
    // demo-1's pool only: 2 processes by default.
    eventually("demo-1 has 2 workers", Duration::from_secs(30), || server.worker_pids().len() == 2);

    let timeline = server.get("/trac/demo-2/timeline");
    assert_eq!(timeline.status, 200);
    assert!(timeline.text().contains("Timeline"), "{}", timeline.text());
    eventually("both pools running", Duration::from_secs(30), || server.worker_pids().len() == 4);
    assert!(server.log_text().contains("demo-2"), "worker logs carry the tenant name");
}

#[test]
fn concurrent_requests_to_two_sites() {
    let sites = two_sites();
    let server = serve(&sites);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let server = &server;
                s.spawn(move || {
                    let site = if i % 2 == 0 { "demo-1" } else { "demo-2" };
                    let r = server.get(&format!("/trac/{site}/wiki/WikiStart"));
                    (
                        site,
                        r.status,
                        r.text().contains(if i % 2 == 0 { "Demo One" } else { "Demo Two" }),
                    )
                })
            })
            .collect();
        for h in handles {
            let (site, status, right_site) = h.join().expect("thread");
            assert_eq!(status, 200, "{site}");
            assert!(right_site, "{site} answered with another site's page");
        }
    });
}

#[test]
fn traversal_and_encoded_slashes_never_cross_sites() {
    let sites = two_sites();
    let server = serve(&sites);
    // Raw path names demo-2, normalised path demo-1: refused.
    assert_eq!(server.get("/trac/demo-2/../demo-1/wiki/WikiStart").status, 400);
    assert_eq!(server.get("/trac/demo-2/%2e%2e/demo-1/wiki").status, 400);
    assert_eq!(server.get("/trac/demo-1%2fx/wiki").status, 400);
    // Leaving the mount altogether: nothing there.
    assert_eq!(server.get("/trac/../etc/passwd").status, 404);
    assert_eq!(server.get("/trac/%2e%2e/etc/passwd").status, 404);
    assert!(server.worker_pids().is_empty(), "no refused request may start a pool");
    // Duplicate slashes are only cosmetic.
    let r = server.get("//trac//demo-1//wiki/WikiStart");
    assert_eq!(r.status, 200, "{}", r.text());
    // Inside the site, the app sees its path as sent: Trac answers dot segments itself.
    let dots = server.get("/trac/demo-1/wiki/WikiStart/..");
    assert_ne!(dots.status, 400);
    assert!(!dots.text().contains("Demo Two"));
}

#[test]
fn trac_answers_raw_8bit_paths_itself() {
    let sites = two_sites();
    let server = serve(&sites);
    let host = server.addr.to_string();
    // Raw UTF-8 in the request line: a wiki page name Trac can decode (and that does not exist).
    let r = server.request(
        format!("GET /trac/demo-1/wiki/\u{e9}t\u{e9} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.text().contains("\u{e9}t\u{e9}"), "Trac names the page: {}", r.text());
    // Raw latin-1 bytes: not UTF-8, so Trac itself refuses them.
    let mut raw = b"GET /trac/demo-1/wiki/".to_vec();
    raw.extend_from_slice(b"\xe9t\xe9 HTTP/1.1\r\nHost: ");
    raw.extend_from_slice(host.as_bytes());
    raw.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    let r = server.request(&raw);
    assert_eq!(r.status, 404, "Trac's own answer, not the front door's 400: {}", r.text());
    assert!(r.text().contains("Invalid URL encoding") || r.text().contains("Trac"), "{}", r.text());
}

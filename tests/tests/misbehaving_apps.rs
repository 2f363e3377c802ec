//! Apps that misbehave towards the router (`tests/apps/misbehave.py`): through their stderr
//! (huge lines, invalid UTF-8, floods: `docs/worker.md`, "Logs") and through their responses.
//! The router must stay small, keep relaying and keep serving, and tell the client and the
//! access log the truth.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{eventually, free_port, repo_root, send_raw, write, Response, Server};

const WAIT: Duration = Duration::from_secs(60);

/// One tenant `m` running `misbehave:application`, mounted at `/m`.
fn config(dir: &Path) -> PathBuf {
    let tdir = dir.join("m");
    std::fs::create_dir_all(&tdir).expect("mkdir");
    common::private(&tdir);
    let text = format!(
        "index = false\n[tenants.m]\ndir = \"{}\"\nmount = \"/m\"\napp = \"misbehave:application\"\npython_path = [\"{}\"]\nwatch_files = []\nprocesses = 1\nthreads = 4\n",
        tdir.display(),
        repo_root().join("tests/apps").display()
    );
    let path = dir.join("paddock.toml");
    write(&path, &text);
    path
}

/// The server, and its admin listener for `/metrics`.
fn start(dir: &Path) -> (Server, SocketAddr) {
    let cfg = config(dir);
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let admin_s = admin.to_string();
    let server = Server::start(&["--config", cfg.to_str().expect("utf-8"), "--admin", &admin_s]);
    (server, admin)
}

fn get(addr: SocketAddr, path: &str) -> Response {
    send_raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}"))
}

/// `key` (e.g. `VmRSS`) of `pid`'s /proc status, in KiB.
fn proc_kib(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    s.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("status field")
}

/// The value of the sample line `series` in the text format.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn huge_log_lines_keep_the_router_small() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _) = start(dir.path());
    let r = server.get("/m/log?msg=warm");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log_text());
    let pid = server.child.id();
    let (rss0, hwm0) = (proc_kib(pid, "VmRSS"), proc_kib(pid, "VmHWM"));
    let t = Instant::now();
    let r = server.get("/m/biglines?mib=200");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log_text());
    eventually("the line after the big ones is logged", WAIT, || {
        server.log_text().contains("misbehave: after the big lines")
    });
    let (rss1, hwm1) = (proc_kib(pid, "VmRSS"), proc_kib(pid, "VmHWM"));
    eprintln!(
        "router VmRSS {rss0} -> {rss1} KiB, VmHWM {hwm0} -> {hwm1} KiB; 400 MiB relayed in {:?}",
        t.elapsed()
    );
    let bound = 64 * 1024;
    assert!(rss1 < rss0 + bound, "VmRSS grew from {rss0} to {rss1} KiB");
    assert!(hwm1 < hwm0 + bound, "VmHWM grew from {hwm0} to {hwm1} KiB");
    let log = server.log_text();
    assert_eq!(log.matches("[paddock: line cut at 8 KiB]").count(), 2, "each big line cut once");
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 9 * 1024, "a log line of {longest} bytes");
}

#[test]
fn invalid_utf8_in_the_log_neither_stops_the_relay_nor_kills_the_worker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _) = start(dir.path());
    let r = server.get("/m/badutf8");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log_text());
    let pid = r.text();
    eventually("the lines after the bad bytes are logged", WAIT, || {
        server.log_text().contains("misbehave: line 2 after the bad bytes")
    });
    assert!(server.log_text().contains("misbehave: bad bytes \u{fffd}\u{fffd}"));
    for i in 0..5 {
        let r = server.get(&format!("/m/log?msg=still-{i}"));
        assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log_text());
        assert_eq!(r.text(), pid, "the worker was replaced:\n{}", server.log_text());
    }
    eventually("later lines are logged", WAIT, || server.log_text().contains("misbehave: still-4"));
    assert!(!server.log_text().contains("restarting it"), "{}", server.log_text());
}

#[test]
fn a_log_flood_is_rate_limited_counted_and_summed_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, admin) = start(dir.path());
    let t = Instant::now();
    let r = server.get("/m/spam?n=20000");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log_text());
    // Give the relay time to read all of it, then let the bucket refill a little.
    std::thread::sleep(Duration::from_millis(1500));
    let r = server.get("/m/log?msg=after-the-flood");
    assert_eq!(r.status, 200, "{}", r.text());
    eventually("the line after the flood is logged", WAIT, || {
        server.log_text().contains("misbehave: after-the-flood")
    });
    let secs = t.elapsed().as_secs_f64();
    let log = server.log_text();
    let logged = log.matches("misbehave: spam ").count();
    // A burst of 2000, then 200 a second.
    let most = 2000 + (200.0 * secs) as usize + 10;
    assert!(logged <= most, "{logged} flood lines logged in {secs:.1} s");
    assert!(log.contains("lines (log rate limit"), "no 'dropped N lines' summary");
    let m = get(admin, "/metrics").text();
    let dropped = sample(&m, "paddock_worker_log_lines_dropped_total{tenant=\"m\"}")
        .unwrap_or_else(|| panic!("no dropped-lines counter:\n{m}"));
    eprintln!("{logged} of 20000 flood lines logged, {dropped} dropped, in {secs:.1} s");
    // The worker's own lines share the bucket: they may be among the dropped ones.
    let total = dropped as usize + logged;
    assert!((20000..20100).contains(&total), "{total}: every flood line is logged or counted");
}

#[test]
fn bad_statuses_and_content_lengths_from_the_app_get_502() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _) = start(dir.path());
    for path in [
        "/m/status?line=101+Switching+Protocols",
        "/m/status?line=100+Continue",
        "/m/status?line=600+Beyond",
        "/m/badcl?cl=abc",
        "/m/badcl?cl=-1",
        "/m/twocl",
    ] {
        let r = server.get(path);
        assert_eq!(r.status, 502, "{path}: {} {:?}\n{}", r.status, r.headers, server.log_text());
    }
    let r = server.get("/m/status?line=299+Fine");
    assert_eq!(r.status, 299, "{}", server.log_text());
    // A body shorter than its Content-Length: 502 when the worker's report of it came with
    // the head; when it came in a later read, the head is out and the response is cut (the
    // connection closed short of the announced length). Never an empty reply.
    for _ in 0..5 {
        let r = server.get("/m/shortcl?cl=10");
        let cut = r.status == 200 && r.body.len() < 10 && r.header("connection") == Some("close");
        assert!(
            r.status == 502 || cut,
            "{} {:?} {:?}\n{}",
            r.status,
            r.headers,
            r.body,
            server.log_text()
        );
    }
    assert_eq!(server.get("/m/shortcl?cl=2").text(), "hi");
    // More than announced is cut to the announcement, as mod_wsgi does.
    assert_eq!(server.get("/m/shortcl?cl=1").text(), "h");
    assert_eq!(server.get("/m/pid").status, 200, "the worker still serves");
}

/// A body that stops short of its `Content-Length` after the head went out cannot become a
/// 502 any more: the connection ends early (the client can tell), and the access log says the
/// response was truncated instead of a plain 200.
#[test]
fn a_body_cut_short_after_the_head_ends_the_connection_and_is_logged_as_truncated() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _) = start(dir.path());
    let mut s = std::net::TcpStream::connect(server.addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    let addr = server.addr;
    s.write_all(format!("GET /m/shortbig HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .expect("send");
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{}", &text[..text.len().min(200)]);
    let head_end = text.find("\r\n\r\n").expect("a head") + 4;
    let body = got.len() - head_end;
    assert!(body < 1_000_000, "the client got the whole announced body ({body} bytes)");
    eventually("the access line says truncated", WAIT, || {
        server.log_text().lines().any(|l| {
            l.contains("paddock::access") && l.contains("/m/shortbig") && l.contains("truncated")
        })
    });
    assert!(server.log_text().contains("body shorter than Content-Length"));
    assert_eq!(server.get("/m/pid").status, 200, "the worker still serves");
}

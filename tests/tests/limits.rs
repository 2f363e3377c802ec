//! Global limits end to end: clients that never read their response are cut off after
//! `send_timeout` (their slots freed), and `max_connections` holds the next client waiting
//! before `accept` until an open connection closes; signup posts from another site are
//! refused.

mod adminkit;
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{free_port, send_raw, Server};

/// Start paddock with `top` lines and one test-app tenant `site` (`extra` lines), with an
/// admin listener for `/metrics`; returns the server and the admin address.
fn start(dir: &Path, top: &str, extra: &str) -> (Server, SocketAddr) {
    let path = common::apps_config(dir, top, &[("site", extra)]);
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let a = admin.to_string();
    let server = Server::start(&["--config", path.to_str().expect("utf-8"), "--admin", &a]);
    (server, admin)
}

/// A client that asks for a large response and never reads a byte of it.
fn non_reader(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(b"GET /site/stream?mb=200 HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
    s
}

#[test]
fn clients_that_never_read_do_not_make_a_site_unavailable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = "processes = 1\nthreads = 2\nqueue_timeout = \"30s\"";
    let (server, admin) = start(dir.path(), "send_timeout = \"2s\"", extra);
    assert_eq!(server.get("/site/pid").status, 200, "pool started");
    // Twice as many as the site has slots: two hold them, two wait in the queue.
    let stuck: Vec<TcpStream> = (0..4).map(|_| non_reader(server.addr)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let r = server.get("/site/pid");
    let took = started.elapsed();
    assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log_text());
    // Two rounds of 2 s stalls, then this request: far below queue_timeout.
    assert!(took < Duration::from_secs(20), "answered after {took:?}");
    // For this request to get a slot, three of the four must have been cut off; the fourth
    // stalled at about the same time as the third and follows within moments.
    let timeouts = common::admin_sample(admin, "paddock_client_timeouts_total{kind=\"send\"}");
    assert!(timeouts.is_some_and(|n| n >= 3.0), "{timeouts:?}");
    common::eventually("all four non-readers cut off", Duration::from_secs(10), || {
        common::admin_sample(admin, "paddock_client_timeouts_total{kind=\"send\"}")
            .is_some_and(|n| n >= 4.0)
    });
    drop(stuck);
}

#[test]
fn a_client_that_reads_slowly_but_steadily_gets_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, admin) = start(dir.path(), "send_timeout = \"2s\"", "");
    let mut s = TcpStream::connect(server.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    s.write_all(b"GET /site/stream?mb=8 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("send");
    // Let the buffers fill, then read in pieces with pauses shorter than send_timeout.
    std::thread::sleep(Duration::from_millis(1500));
    let mut total = 0usize;
    let mut buf = vec![0; 1 << 20];
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match s.read(&mut buf).expect("read") {
            0 => break,
            n => total += n,
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(total > 8 << 20, "read {total} bytes");
    let timeouts = common::admin_sample(admin, "paddock_client_timeouts_total{kind=\"send\"}");
    assert_eq!(timeouts, Some(0.0));
}

/// A kept-alive request to the test tenant.
const SITE_PID: &[u8] = b"GET /site/pid HTTP/1.1\r\nHost: x\r\n\r\n";

/// A keep-alive connection that has been served one request (so paddock accepted it).
fn served(addr: SocketAddr, request: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    s.write_all(request).expect("send");
    let mut buf = [0; 4096];
    let n = s.read(&mut buf).expect("answer");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
    s
}

#[test]
fn the_connection_after_max_connections_waits_until_one_closes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, admin) = start(dir.path(), "max_connections = 4", "");
    assert_eq!(server.get("/site/pid").status, 200, "pool started");
    let mut open: Vec<TcpStream> = (0..4).map(|_| served(server.addr, SITE_PID)).collect();
    // The fifth connects (the kernel's backlog) but is neither refused nor served.
    let mut fifth = TcpStream::connect(server.addr).expect("connect: not refused");
    fifth
        .write_all(b"GET /site/pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("send");
    fifth.set_read_timeout(Some(Duration::from_millis(1500))).expect("timeout");
    let mut buf = Vec::new();
    let waited = fifth.read_to_end(&mut buf);
    assert!(waited.is_err() && buf.is_empty(), "served at the cap: {waited:?} {buf:?}");
    assert_eq!(common::admin_sample(admin, "paddock_connections_open"), Some(4.0));
    assert!(
        common::admin_sample(admin, "paddock_connections_capped_total").is_some_and(|n| n >= 1.0)
    );
    // One closes: the fifth is accepted and answered.
    drop(open.pop());
    fifth.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    fifth.read_to_end(&mut buf).expect("answered once room was made");
    assert!(buf.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf));
}

#[test]
fn cross_site_signup_posts_are_refused_and_counted() {
    let admin = format!("provision = {}", adminkit::FAKE_PROVISION);
    let a = adminkit::Admin::start(adminkit::Setup { admin: &admin, ..Default::default() });
    let page = send_raw(a.admin, b"GET /signup HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("page");
    let html = page.text();
    let token = html
        .split("name=\"token\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a token field");
    let host = a.admin.to_string();
    let post = |name: &str, token: &str, extra: &str| {
        let body = format!("token={token}&name={name}&admin_user=bob&password=hunter2%21%21");
        let req = format!(
            "POST /signup HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{extra}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        send_raw(a.admin, req.as_bytes()).expect("post")
    };
    // From another site: refused even with a valid token; without any token: refused.
    let evil = post("evil-one", token, "Origin: http://evil.example\r\n");
    assert_eq!(evil.status, 403, "{}", evil.text());
    let evil = post("evil-two", token, "Referer: http://evil.example/form.html\r\n");
    assert_eq!(evil.status, 403, "{}", evil.text());
    let forged = post("evil-three", "1.00", "");
    assert_eq!(forged.status, 403, "{}", forged.text());
    for name in ["evil-one", "evil-two", "evil-three"] {
        assert!(!a.sites().join(name).exists(), "{name} was created");
    }
    // The same form posted from its own page works.
    let ok = post("own-page", token, &format!("Origin: http://{host}\r\n"));
    assert_eq!(ok.status, 201, "{}", ok.text());
    let m = send_raw(a.admin, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("metrics")
        .text();
    assert!(m.contains("paddock_signups_total{outcome=\"forbidden\"} 3"), "{m}");
    assert!(m.contains("paddock_signups_total{outcome=\"created\"} 1"), "{m}");
}

/// The admin listener (signup faces the public) has a connection cap of its own: at
/// `[admin] max_connections` the next client waits, and is served once one closes.
#[test]
fn the_admin_listener_caps_its_connections_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, admin) = start(dir.path(), "[admin]\nmax_connections = 2", "");
    let healthz = b"GET /healthz HTTP/1.1\r\nHost: admin\r\n\r\n";
    let mut open = vec![served(admin, healthz), served(admin, healthz)];
    let mut third = TcpStream::connect(admin).expect("connect: not refused");
    third
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .expect("send");
    third.set_read_timeout(Some(Duration::from_millis(1500))).expect("timeout");
    let mut buf = Vec::new();
    let waited = third.read_to_end(&mut buf);
    assert!(waited.is_err() && buf.is_empty(), "served at the cap: {waited:?}");
    drop(open.pop());
    third.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    third.read_to_end(&mut buf).expect("answered once room was made");
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let capped = text.lines().find_map(|l| {
        l.strip_prefix("paddock_admin_connections_capped_total ")?.parse::<f64>().ok()
    });
    assert!(capped.is_some_and(|n| n >= 1.0), "{capped:?}");
}

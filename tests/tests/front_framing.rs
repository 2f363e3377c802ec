//! Request framing at the front door over raw TCP: conflicting `Content-Length` and
//! `Transfer-Encoding` are judged per request (an `Upgrade` header hides nothing), and with
//! `h2c = false` an HTTP/2 client on the plain listener gets an answer before the close (h2c
//! itself: `tls.rs`).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{parse_response, Response, Server};

fn start(dir: &std::path::Path) -> Server {
    start_with(dir, "")
}

fn start_with(dir: &std::path::Path, top: &str) -> Server {
    let cfg = common::apps_config(dir, top, &[("apps", "processes = 1")]);
    Server::start(&["--config", cfg.to_str().expect("utf-8")])
}

/// Write `raw` on a new connection and read until the router closes it (bounded).
fn exchange(server: &Server, raw: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(server.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    s.write_all(raw).expect("write");
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    all
}

/// Split `all` into responses framed by `Content-Length` (the router's own pages and `/env`
/// have one).
fn responses(mut all: &[u8]) -> Vec<Response> {
    let mut out = Vec::new();
    for _ in 0..8 {
        let Some(end) = all.windows(4).position(|w| w == b"\r\n\r\n") else { break };
        let head = parse_response(&all[..end + 4]).expect("head");
        let len: usize = head.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        let total = (end + 4 + len).min(all.len());
        out.push(parse_response(&all[..total]).expect("response"));
        all = &all[total..];
    }
    out
}

#[test]
fn a_valid_request_before_a_conflicting_one_is_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let raw = b"GET /apps/env HTTP/1.1\r\nHost: x\r\n\r\n\
        POST /apps/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    let got = responses(&exchange(&server, raw));
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].status, 200, "the valid request: {}", got[0].text());
    assert!(got[0].text().contains("REQUEST_METHOD"));
    assert_eq!(got[1].status, 400, "the conflicting one: {}", got[1].text());
    assert_eq!(got[1].header("connection"), Some("close"));
}

#[test]
fn upgrade_does_not_bypass_the_framing_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    for raw in [
        &b"POST /apps/echo HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"[..],
        b"POST /apps/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\nUpgrade: websocket\r\n\r\n0\r\n\r\n",
    ] {
        let got = responses(&exchange(&server, raw));
        let what = String::from_utf8_lossy(raw);
        assert_eq!(got.first().map(|r| r.status), Some(400), "{what}: {got:?}");
    }
}

#[test]
fn without_h2c_an_http2_preface_gets_an_answer_then_the_close() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_with(dir.path(), "h2c = false");
    let all = exchange(&server, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0");
    let r = parse_response(&all)
        .unwrap_or_else(|e| panic!("no answer ({e}): {:?}", String::from_utf8_lossy(&all)));
    assert!(matches!(r.status, 400 | 505), "{r:?}");
    // The listener still serves HTTP/1 afterwards.
    assert_eq!(server.get("/apps/env").status, 200);
}

#[test]
fn host_must_be_one_valid_host_and_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    for (what, head) in [
        ("HTTP/1.1 without Host", "GET /apps/env HTTP/1.1\r\n"),
        ("two Host headers", "GET /apps/env HTTP/1.1\r\nHost: x\r\nHost: y\r\n"),
        ("a path in Host", "GET /apps/env HTTP/1.1\r\nHost: a.example/trac/x\r\n"),
        ("a user in Host", "GET /apps/env HTTP/1.1\r\nHost: evil@a.example\r\n"),
        ("a bad port", "GET /apps/env HTTP/1.1\r\nHost: a.example:80x\r\n"),
    ] {
        let raw = format!("{head}Connection: close\r\n\r\n");
        let r = server.request(raw.as_bytes());
        assert_eq!(r.status, 400, "{what}: {}", r.text());
        assert!(!r.text().contains("SERVER_NAME"), "{what}: reached the app");
    }
    for (host, name) in [("a.example:8080", "a.example"), ("[::1]:81", "[::1]")] {
        let raw = format!("GET /apps/env HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let r = server.request(raw.as_bytes());
        assert_eq!(r.status, 200, "{host}: {}", r.text());
        assert!(r.text().contains(&format!("\"SERVER_NAME\": \"{name}\"")), "{}", r.text());
    }
    // HTTP/1.0 may omit it.
    let r = server.request(b"GET /apps/env HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200, "{}", r.text());
}

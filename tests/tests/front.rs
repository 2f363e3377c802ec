//! The front door's own defences: slow clients, oversized heads, smuggling, forwarded headers,
//! oversized response headers from an app.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{repo_root, write, Server};

fn start(dir: &Path, top: &str) -> Server {
    let tdir = dir.join("apps");
    std::fs::create_dir_all(&tdir).expect("mkdir");
    common::private(&tdir);
    let cfg = dir.join("paddock.toml");
    write(
        &cfg,
        &format!(
            "index = false\n{top}\n[tenants.apps]\ndir = \"{}\"\nmount = \"/apps\"\napp = \"testapps:application\"\npython_path = [\"{}\"]\nprocesses = 1\n",
            tdir.display(),
            repo_root().join("tests/apps").display()
        ),
    );
    Server::start(&["--config", cfg.to_str().expect("utf-8")])
}

fn env_field(body: &str, key: &str) -> String {
    let at = body.find(&format!("\"{key}\": \"")).unwrap_or_else(|| panic!("no {key} in {body}"));
    let rest = &body[at + key.len() + 5..];
    rest[..rest.find('"').expect("closing quote")].to_string()
}

#[test]
fn slow_header_client_is_cut_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), "header_read_timeout = \"1s\"");
    let mut s = TcpStream::connect(server.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    s.write_all(b"GET /apps/env HTTP/1.1\r\nHost: x\r\n").expect("write");
    let t = Instant::now();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(t.elapsed() < Duration::from_secs(5), "connection held for {:?}", t.elapsed());
    let text = String::from_utf8_lossy(&buf);
    assert!(buf.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
}

#[test]
fn oversized_request_head_is_431() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), "max_header_bytes = \"16K\"");
    let big = "a".repeat(32 * 1024);
    let r = server.request(
        format!("GET /apps/env HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(r.status, 431);
    assert_eq!(server.get("/apps/env").status, 200, "normal requests unaffected");
}

#[test]
fn content_length_with_transfer_encoding_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), "");
    let r = server.request(
        b"POST /apps/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\nGET /apps/env HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(r.status, 400);
    assert!(!r.text().contains("REQUEST_METHOD"), "the smuggled request must not be served");
}

#[test]
fn forwarded_headers_only_from_trusted_proxies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let req = b"GET /apps/env HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n";
    let untrusted = start(dir.path(), "");
    let body = untrusted.request(req).text();
    assert_eq!(env_field(&body, "REMOTE_ADDR"), "127.0.0.1");
    assert_eq!(env_field(&body, "wsgi.url_scheme"), "http");
    drop(untrusted);
    let dir2 = tempfile::tempdir().expect("tempdir");
    let trusted = start(dir2.path(), "trusted_proxies = [\"127.0.0.1\"]");
    let body = trusted.request(req).text();
    assert_eq!(env_field(&body, "REMOTE_ADDR"), "203.0.113.9");
    assert_eq!(env_field(&body, "wsgi.url_scheme"), "https");
}

#[test]
fn oversized_response_headers_from_the_app_are_a_502_with_a_clear_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), "max_response_head_bytes = \"16K\"");
    let r = server.get("/apps/bighead?kb=100");
    assert_eq!(r.status, 502);
    common::eventually("log line", Duration::from_secs(5), || {
        server.log_text().contains("oversized response headers")
    });
    assert_eq!(server.get("/apps/bighead?kb=1").status, 200);
}

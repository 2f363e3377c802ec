//! Keep-alive connections between the router and its workers: requests without a body reuse
//! idle connections, requests with a body get their own, a pool never holds more connections
//! than it has threads (so a new connection never waits behind idle ones), and connections
//! to a process that is gone are never used.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::{eventually, free_port, send_raw, signal, Server};

fn start(dir: &Path, extra: &str) -> (Server, SocketAddr) {
    let cfg = common::apps_config(dir, "", &[("ka", extra)]);
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let admin_s = admin.to_string();
    let server = Server::start(&["--config", cfg.to_str().expect("utf-8"), "--admin", &admin_s]);
    (server, admin)
}

/// `paddock_worker_connections_total` of tenant `ka`.
fn connects(admin: SocketAddr) -> u64 {
    let r = send_raw(admin, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("scrape");
    assert_eq!(r.status, 200, "{}", r.text());
    let series = "paddock_worker_connections_total{tenant=\"ka\"} ";
    r.text()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{}", r.text()))
}

fn post(server: &Server, path: &str, body: &str) -> common::Response {
    server.request(
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
}

#[test]
fn sequential_requests_reuse_connections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, admin) = start(dir.path(), "processes = 2\nthreads = 2");
    for i in 0..200 {
        let r = server.get("/ka/pid");
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
    }
    let n = connects(admin);
    // One request at a time: the first connection is reused every time after.
    assert!((1..=4).contains(&n), "200 requests opened {n} worker connections");
}

#[test]
fn bodies_heads_and_gets_share_a_single_thread() {
    // One thread: each POST needs a connection of its own, so the idle one holding the only
    // thread must be closed first, or the POST would wait for the request timeout.
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, admin) =
        start(dir.path(), "processes = 1\nthreads = 1\nrequest_timeout = \"10s\"");
    for i in 0..15 {
        let r = server.get("/ka/pid");
        assert_eq!(r.status, 200, "GET {i}: {}", r.text());
        let body = format!("body number {i}");
        let r = post(&server, "/ka/echo", &body);
        assert_eq!(r.status, 200, "POST {i}: {}", r.text());
        assert_eq!(r.text(), body);
        let r = server.request(b"HEAD /ka/pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        assert_eq!(r.status, 200, "HEAD {i}");
    }
    // GETs after a HEAD or a GET reuse; every POST connects.
    let n = connects(admin);
    assert!((15..=31).contains(&n), "45 requests opened {n} worker connections");
}

#[test]
fn connections_of_a_killed_worker_are_not_used() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _admin) = start(dir.path(), "processes = 2\nthreads = 1");
    let first = server.get("/ka/pid").text();
    let pid: u32 = first.trim().parse().expect("pid");
    for _ in 0..5 {
        assert_eq!(server.get("/ka/pid").status, 200);
    }
    // The worker is idle with a kept connection when it dies.
    signal(pid, 9);
    eventually("the killed worker to be replaced", Duration::from_secs(20), || {
        server.log_text().contains("restarting it")
            && server.worker_pids().iter().all(|&p| p != pid)
            && server.worker_pids().len() == 2
    });
    for i in 0..30 {
        let r = server.get("/ka/pid");
        assert_eq!(r.status, 200, "request {i} after the kill: {}", r.text());
        assert_ne!(r.text().trim(), pid.to_string());
    }
}

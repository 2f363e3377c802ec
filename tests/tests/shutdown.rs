//! The shutdown phases with the real binaries: SIGTERM drains open connections (up to
//! `drain_timeout`) and refuses new ones, SIGINT closes everything at once, and a request
//! slower than `drain_timeout` is cut off when it passes.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{apps_config, eventually, send_raw, signal, Response, Server};

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

/// One test-app tenant, `/a`, with `top` lines at the top level of the configuration.
fn server(dir: &Path, top: &str) -> Server {
    let config = apps_config(dir, top, &[("a", "processes = 1\nthreads = 2\n")]);
    let server = Server::start(&["--config", config.to_str().expect("utf-8")]);
    assert_eq!(server.get("/a/env").status, 200, "{}", server.log_text());
    server
}

/// Start `/a/sleep?s=SECS` on its own thread and return once the app has begun it.
fn slow_request(server: &Server, dir: &Path, secs: u32) -> JoinHandle<std::io::Result<Response>> {
    let pidfile: PathBuf = dir.join("slow.pid");
    let addr = server.addr;
    let raw = format!(
        "GET /a/sleep?s={secs}&pidfile={} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n",
        pidfile.display()
    );
    let slow = std::thread::spawn(move || send_raw(addr, raw.as_bytes()));
    eventually("the slow request reaches the app", Duration::from_secs(30), || pidfile.exists());
    slow
}

/// Wait (at most `limit`) for paddock to exit; its status and the time it took.
fn exit_within(server: &mut Server, limit: Duration) -> (ExitStatus, Duration) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(st)) = server.child.try_wait() {
            return (st, start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("paddock still running {limit:?} after the signal:\n{}", server.log_text());
}

#[test]
fn sigterm_lets_a_slow_request_finish_and_refuses_new_connections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = server(dir.path(), "drain_timeout = \"60s\"");
    let slow = slow_request(&server, dir.path(), 3);
    signal(server.child.id(), SIGTERM);
    eventually("new connections refused", Duration::from_secs(5), || {
        TcpStream::connect(server.addr).is_err()
    });
    let (status, took) = exit_within(&mut server, Duration::from_secs(90));
    assert!(status.success(), "{status}\n{}", server.log_text());
    let resp = slow.join().expect("thread").expect("the slow request is answered");
    assert_eq!(resp.status, 200, "{}", server.log_text());
    assert!(took >= Duration::from_secs(1), "exited after {took:?}, before the request ended");
    let log = server.log_text();
    for phase in ["phase=\"draining\"", "phase=\"stopping\" fast=false", "phase=\"stopped\""] {
        assert!(log.contains(phase), "no {phase} in the log:\n{log}");
    }
}

#[test]
fn sigint_closes_a_slow_request_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = server(dir.path(), "drain_timeout = \"60s\"");
    let slow = slow_request(&server, dir.path(), 120);
    signal(server.child.id(), SIGINT);
    let (status, took) = exit_within(&mut server, Duration::from_secs(90));
    assert!(status.success(), "{status}\n{}", server.log_text());
    // Far below the drain time (60 s) and the request (120 s): nothing waited for either.
    assert!(took < Duration::from_secs(30), "fast stop took {took:?}:\n{}", server.log_text());
    let resp = slow.join().expect("thread");
    assert!(!resp.as_ref().is_ok_and(|r| r.status == 200), "the slow request completed: {resp:?}");
    let log = server.log_text();
    assert!(!log.contains("phase=\"draining\""), "SIGINT drained:\n{log}");
    assert!(log.contains("phase=\"stopping\" fast=true"), "{log}");
}

#[test]
fn a_second_sigterm_during_the_drain_stops_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = server(dir.path(), "drain_timeout = \"60s\"");
    let slow = slow_request(&server, dir.path(), 120);
    signal(server.child.id(), SIGTERM);
    eventually("the drain", Duration::from_secs(5), || {
        server.log_text().contains("phase=\"draining\"")
    });
    signal(server.child.id(), SIGTERM);
    let (status, took) = exit_within(&mut server, Duration::from_secs(90));
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_secs(30), "took {took:?}:\n{}", server.log_text());
    let resp = slow.join().expect("thread");
    assert!(!resp.as_ref().is_ok_and(|r| r.status == 200), "the slow request completed: {resp:?}");
    assert!(server.log_text().contains("phase=\"stopping\" fast=true"));
}

#[test]
fn drain_timeout_bounds_the_drain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = server(dir.path(), "drain_timeout = \"1s\"");
    let slow = slow_request(&server, dir.path(), 120);
    signal(server.child.id(), SIGTERM);
    let (status, took) = exit_within(&mut server, Duration::from_secs(90));
    assert!(status.success(), "{status}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(30),
        "exited after {took:?}, not after the 1 s drain:\n{}",
        server.log_text()
    );
    let resp = slow.join().expect("thread");
    assert!(!resp.as_ref().is_ok_and(|r| r.status == 200), "the slow request completed: {resp:?}");
    let log = server.log_text();
    assert!(log.contains("(drain_timeout); closing them"), "{log}");
    assert!(log.contains("phase=\"stopping\" fast=true"), "{log}");
}

#[test]
fn a_connection_accepted_before_sigterm_has_its_first_request_answered() {
    // hyper's graceful shutdown alone closes a connection that has not sent its request yet
    // (it looks idle), losing a request its client is sending: the drain reads it first.
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = server(dir.path(), "drain_timeout = \"60s\"");
    let mut conn = TcpStream::connect(server.addr).expect("connect");
    // Accepted (the accept loop runs freely below the connection cap) before the signal.
    std::thread::sleep(Duration::from_millis(300));
    signal(server.child.id(), SIGTERM);
    eventually("the drain", Duration::from_secs(5), || {
        server.log_text().contains("phase=\"draining\"")
    });
    let req = format!("GET /a/env HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr);
    conn.write_all(req.as_bytes()).expect("send");
    conn.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let mut buf = Vec::new();
    // The answer, then the server closes the connection (read to its end; not a timeout).
    // Whether the answer says `Connection: close` depends on whether it was read before or
    // after the drain told the connection so: both are right.
    let read = conn.read_to_end(&mut buf);
    let resp = common::parse_response(&buf).expect("an answer, not a closed connection");
    assert_eq!(resp.status, 200, "{}", server.log_text());
    assert!(read.is_ok(), "the connection was not closed after the answer: {read:?}");
    let (status, _) = exit_within(&mut server, Duration::from_secs(90));
    assert!(status.success());
}

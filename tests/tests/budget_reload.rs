//! A request waiting for room under `max_workers_total` while reloads replace its tenant's
//! pool. Found by the 30-minute soak: the waiting request held a lock on the pool table
//! across its wait, each replacement's switch-over blocked a runtime thread on that lock, and
//! with both threads blocked the router answered nothing, ever (SIGTERM included).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use common::{signal, write, Server};

/// Send a GET on its own thread; the status, or 0 if none came within `secs`.
fn get_bg(addr: SocketAddr, path: &str, secs: u64) -> std::thread::JoinHandle<u16> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    std::thread::spawn(move || get(addr, &req, secs))
}

fn get(addr: SocketAddr, req: &str, secs: u64) -> u16 {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(secs)) else { return 0 };
    let _ = s.set_read_timeout(Some(Duration::from_secs(secs)));
    if s.write_all(req.as_bytes()).is_err() {
        return 0;
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    common::parse_response(&buf).map_or(0, |r| r.status)
}

/// `a` and `b` with one process each under a budget of one; `generation` changes `a`'s
/// settings, so a reload replaces its pool.
fn config(dir: &Path, generation: u32) -> std::path::PathBuf {
    let top =
        "max_workers_total = 1\n[defaults]\nqueue_timeout = \"30s\"\nprocesses = 1\nthreads = 2";
    let a = format!("max_requests = {}", 1000 + generation);
    common::apps_config(dir, top, &[("a", &a), ("b", "")])
}

#[test]
fn reloads_while_a_request_waits_for_room_do_not_stop_the_router() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = config(dir.path(), 0);
    let server = Server::start(&["--config", path.to_str().expect("utf-8")]);
    let addr = server.addr;
    assert_eq!(server.get("/a/pid").status, 200, "a starts");
    // b needs the budget: a (idle, and resident long enough to be evicted: 30 s) is parked
    // to make room; b is then busy for 12 s.
    let busy = get_bg(addr, "/b/sleep?s=12", 80);
    common::eventually("b runs", Duration::from_secs(60), || {
        server.log_text().contains("stopping the longest idle pool")
    });
    std::thread::sleep(Duration::from_secs(2));
    // a is parked and b is not idle: this request waits for room (up to queue_timeout).
    let waiting = get_bg(addr, "/a/pid", 40);
    std::thread::sleep(Duration::from_millis(500));
    // Two reloads that each replace a's pool: each switch-over writes the pool table.
    for generation in 1..=2 {
        write(&path, &std::fs::read_to_string(config(dir.path(), generation)).expect("config"));
        signal(server.child.id(), 1);
        std::thread::sleep(Duration::from_secs(1));
    }
    common::eventually("both replacements switched over", Duration::from_secs(20), || {
        server.log_text().matches("switching to the new pool").count() >= 2
    });
    // The router still answers (b has a free thread), well before b's sleep ends.
    let status = get(addr, "GET /b/pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5);
    assert_eq!(status, 200, "the router stopped answering\n{}", server.log_text());
    assert_eq!(busy.join().expect("busy"), 200);
    // Once b is idle again, the waiting request gets its room.
    assert_eq!(waiting.join().expect("waiting"), 200, "{}", server.log_text());
}

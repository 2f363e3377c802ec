//! Every refusal the router makes is counted under its reason in
//! `paddock_rejected_requests_total`, against the real router and workers: one request per
//! reason, each checked for its status, then every counter read from `/metrics`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{free_port, send_raw, write, Server};

fn rejected(admin: SocketAddr, tenant: &str, reason: &str) -> f64 {
    let series =
        format!("paddock_rejected_requests_total{{reason=\"{reason}\",tenant=\"{tenant}\"}}");
    common::admin_sample(admin, &series).unwrap_or(0.0)
}

/// Send `raw` and return the status of the answer (0 if none came).
fn status(addr: SocketAddr, raw: &[u8]) -> u16 {
    send_raw(addr, raw).map_or(0, |r| r.status)
}

/// A request to `tenant` that holds its only slot for `secs`, on its own thread; returns once
/// the app is running it (it writes its pid to `mark` first).
fn hold(addr: SocketAddr, tenant: &str, secs: u32, mark: &Path) -> std::thread::JoinHandle<u16> {
    let req = format!(
        "GET /{tenant}/sleep?s={secs}&pidfile={} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        mark.display()
    );
    let h = std::thread::spawn(move || status(addr, req.as_bytes()));
    common::eventually("the app holds the slot", Duration::from_secs(20), || mark.exists());
    h
}

#[test]
fn every_refusal_is_counted_under_its_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(&d.join("locked/htpasswd"), "alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n");
    std::fs::create_dir_all(d.join("state/disabled")).expect("mkdir");
    write(&d.join("state/disabled/off"), "disabled by the test\n");
    let one = "processes = 1\nthreads = 1";
    let top = format!(
        "max_header_bytes = \"8K\"\nstate_dir = \"{}\"\n[defaults]\nstartup_timeout = \"5s\"",
        d.join("state").display()
    );
    let locked = format!(
        "auth = {{ htpasswd = \"{}\", paths = [\"/\"] }}",
        d.join("locked/htpasswd").display()
    );
    let full = format!("{one}\nqueue_limit = 0");
    let slow = format!("{one}\nqueue_timeout = \"1s\"");
    let path = common::apps_config(
        d,
        &top,
        &[
            ("site", "max_body = \"10\"\nbody_read_timeout = \"1s\"\nbody_min_rate = 0"),
            ("locked", &locked),
            ("full", &full),
            ("slow", &slow),
            ("off", ""),
        ],
    );
    // A tenant whose app cannot be imported: its pool never becomes ready.
    std::fs::create_dir_all(d.join("broken")).expect("mkdir");
    common::private(&d.join("broken"));
    let broken = format!(
        "[tenants.broken]\ndir = \"{}\"\nmount = \"/broken\"\napp = \"no_such_module:application\"\nwatch_files = []\n",
        d.join("broken").display()
    );
    let text = std::fs::read_to_string(&path).expect("config") + &broken;
    write(&path, &text);
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let a = admin.to_string();
    let server = Server::start(&["--config", path.to_str().expect("utf-8"), "--admin", &a]);
    let addr = server.addr;
    for t in ["/site", "/full", "/slow"] {
        assert_eq!(server.get(&format!("{t}/pid")).status, 200, "{t} starts");
    }

    // bad_request: HTTP/1.1 without Host.
    assert_eq!(status(addr, b"GET /site/pid HTTP/1.1\r\nConnection: close\r\n\r\n"), 400);
    // method_not_allowed: CONNECT.
    assert_eq!(
        status(addr, b"CONNECT /site/pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        405
    );
    // body_too_large: declared over max_body, and a chunked one found over it as it streams.
    let declared = b"POST /site/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello world";
    assert_eq!(status(addr, declared), 413);
    let chunked =
        b"POST /site/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n";
    assert_eq!(status(addr, chunked), 413);
    // body_timeout: 2 of 10 bytes, then nothing.
    {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
        s.write_all(b"POST /site/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
            .expect("send");
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        let r = common::parse_response(&buf).expect("a response");
        assert_eq!(r.status, 408, "{}", r.text());
    }
    // header_too_large: a head over max_header_bytes.
    let big = format!(
        "GET /site/pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
        "v".repeat(9000)
    );
    assert_eq!(status(addr, big.as_bytes()), 431);
    // unauthorized: no credentials for a protected path.
    assert_eq!(server.get("/locked/pid").status, 401);
    // disabled: the state directory says so.
    assert_eq!(server.get("/off/pid").status, 503);
    // unavailable: the app cannot be imported, so the pool never becomes ready.
    assert_eq!(server.get("/broken/pid").status, 503);
    // queue_full: the only slot is held and no request may wait.
    let holder = hold(addr, "full", 3, &d.join("full/held"));
    let started = Instant::now();
    assert_eq!(server.get("/full/pid").status, 503);
    assert!(started.elapsed() < Duration::from_secs(1), "answered at once, not queued");
    assert_eq!(holder.join().expect("holder"), 200);
    // queue_timeout: the only slot is held for longer than queue_timeout.
    let holder = hold(addr, "slow", 4, &d.join("slow/held"));
    assert_eq!(server.get("/slow/pid").status, 503);
    assert_eq!(holder.join().expect("holder"), 200);
    // Routing outcomes are answers, not refusals: a 404 counts under no reason.
    assert_eq!(server.get("/nowhere").status, 404);

    let expect = [
        ("_none", "bad_request", 1.0),
        ("_none", "method_not_allowed", 1.0),
        ("site", "body_too_large", 2.0),
        ("site", "body_timeout", 1.0),
        ("_none", "header_too_large", 1.0),
        ("locked", "unauthorized", 1.0),
        ("off", "disabled", 1.0),
        ("broken", "unavailable", 1.0),
        ("full", "queue_full", 1.0),
        ("slow", "queue_timeout", 1.0),
    ];
    let mut wrong = Vec::new();
    for (tenant, reason, n) in expect {
        let got = rejected(admin, tenant, reason);
        if got != n {
            wrong.push(format!("{tenant}/{reason}: {got}, expected {n}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:?}\n{}", server.log_text());
}

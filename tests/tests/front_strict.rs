//! Strict HTTP/1 at the front door, driven over raw TCP: answers the router gives before
//! reading a body leave the connection usable (or announce its close), and malformed requests
//! get the status a strict server gives, never an application failure.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{parse_response, write, Response, Server};

/// `sha1("password")`, htpasswd's `{SHA}` form.
const HTPASSWD: &str = "erin:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n";

/// Tenants `slow` (body_read_timeout 1s, request_timeout 5s), `small` (max_body 32K), `t` (Basic auth on `/t/login`) and `off` (disabled), and a rule that
/// forbids `/forbidden`.
fn start(dir: &Path) -> Server {
    let state = dir.join("state");
    write(&state.join("disabled/off"), "disabled by the test\n");
    let top =
        format!("state_dir = \"{}\"\n[[rules]]\nrule = \"^/forbidden - [F]\"\n", state.display());
    let cfg = common::apps_config(
        dir,
        &top,
        &[
            ("small", "max_body = \"32K\""),
            ("t", "auth = { htpasswd = \"{tenant_dir}/htpasswd\", paths = [\"/login\"] }"),
            ("off", ""),
            ("slow", "body_read_timeout = \"1s\"\nbody_min_rate = 500\nrequest_timeout = \"5s\""),
        ],
    );
    write(&dir.join("t/htpasswd"), HTPASSWD);
    Server::start(&["--config", cfg.to_str().expect("utf-8")])
}

/// A connection that reads one response at a time, framed by `Content-Length`.
struct Client {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        s.set_write_timeout(Some(Duration::from_secs(10))).expect("timeout");
        Client { s, buf: Vec::new() }
    }

    /// Write `bytes` from a thread of its own: the router may not read them all.
    fn send(&self, bytes: Vec<u8>) -> std::thread::JoinHandle<()> {
        let mut s = self.s.try_clone().expect("clone");
        std::thread::spawn(move || {
            let _ = s.write_all(&bytes);
        })
    }

    /// The next response; `None` if the connection ended first.
    fn response(&mut self) -> Option<Response> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut chunk = [0u8; 16384];
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = parse_response(&self.buf[..end + 4]).ok()?;
                let len: usize = head.header("content-length").and_then(|v| v.parse().ok())?;
                if self.buf.len() >= end + 4 + len {
                    let whole: Vec<u8> = self.buf.drain(..end + 4 + len).collect();
                    return parse_response(&whole).ok();
                }
            }
            if Instant::now() > deadline {
                return None;
            }
            match self.s.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// A request head `method path` with `body` of `kind`.
fn request(head: &str, body: &Body) -> Vec<u8> {
    let mut out = head.as_bytes().to_vec();
    out.extend_from_slice(b"\r\nHost: x\r\n");
    match body {
        Body::Length(n) => {
            out.extend_from_slice(format!("Content-Length: {n}\r\n\r\n").as_bytes());
            out.extend(std::iter::repeat_n(b'a', *n));
        }
        Body::Chunked(n) => {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            for _ in 0..n / 4096 {
                out.extend_from_slice(b"1000\r\n");
                out.extend(std::iter::repeat_n(b'c', 4096));
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
        }
    }
    out
}

#[derive(Debug)]
enum Body {
    Length(usize),
    Chunked(usize),
}

const FOLLOW_UP: &[u8] = b"GET /nothing-here HTTP/1.1\r\nHost: x\r\n\r\n";

/// Each early answer with each body, then a follow-up on the same connection, sent after the
/// answer (`pipelined` false) or right behind the body: the follow-up is answered, or the
/// early answer said `Connection: close`. Bodies within 48 KiB are drained, never a close.
fn check_early(server: &Server, head: &str, status: u16, body: Body, pipelined: bool) {
    let what = format!("{head} with {body:?}, pipelined {pipelined}");
    let mut c = Client::connect(server.addr);
    let mut bytes = request(head, &body);
    if pipelined {
        bytes.extend_from_slice(FOLLOW_UP);
    }
    let writer = c.send(bytes);
    let r = c.response().unwrap_or_else(|| panic!("{what}: no answer\n{}", server.log_text()));
    assert_eq!(r.status, status, "{what}: {}", r.text());
    let closes = r.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
    let small = match body {
        Body::Length(n) | Body::Chunked(n) => n <= 48 * 1024,
    };
    assert!(!(small && closes), "{what}: a small body was not drained");
    if closes {
        // The router closes: the client sees the end, not a reset before the answer.
        let _ = c.s.shutdown(Shutdown::Write);
        return;
    }
    let _ = writer.join();
    if !pipelined {
        c.send(FOLLOW_UP.to_vec()).join().expect("writer");
    }
    let next = c.response().unwrap_or_else(|| {
        panic!("{what}: the follow-up got no answer and no close was announced")
    });
    assert_eq!(next.status, 404, "{what}: follow-up {}", next.text());
}

#[test]
fn early_answers_keep_the_connection_usable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let early = [
        ("POST /nothing-here HTTP/1.1", 404),
        ("POST /t/login HTTP/1.1", 401),
        ("POST /forbidden HTTP/1.1", 403),
        ("POST /off/x HTTP/1.1", 503),
    ];
    for (head, status) in early {
        for pipelined in [false, true] {
            for body in [
                Body::Length(0),
                Body::Length(48 * 1024),
                Body::Length(1024 * 1024),
                Body::Chunked(48 * 1024),
            ] {
                check_early(&server, head, status, body, pipelined);
            }
        }
    }
    // 413 needs a declared body over max_body (32K).
    for pipelined in [false, true] {
        for body in [Body::Length(48 * 1024), Body::Length(1024 * 1024)] {
            check_early(&server, "POST /small/x HTTP/1.1", 413, body, pipelined);
        }
    }
}

/// One request on its own connection; `half_close` ends the client's sending side after it
/// (a body cut short). The answer is read to its end.
fn once(server: &Server, bytes: &[u8], half_close: bool) -> Response {
    let mut c = Client::connect(server.addr);
    c.s.write_all(bytes).expect("write");
    if half_close {
        c.s.shutdown(Shutdown::Write).expect("shutdown");
    }
    c.response().unwrap_or_else(|| panic!("no answer to {:?}\n{}", bytes, server.log_text()))
}

#[test]
fn broken_request_bodies_are_the_clients_fault() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let pid = server.get("/t/pid").text();
    assert!(pid.trim().parse::<u32>().is_ok(), "{pid}");
    let chunked = "POST /t/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    let trailer = format!("0\r\nX-Big: {}\r\n\r\n", "t".repeat(64 * 1024));
    let cases: [(&str, String, bool, u16); 6] = [
        ("bad chunk size", format!("{chunked}zz\r\nabc\r\n0\r\n\r\n"), false, 400),
        ("chunk size overflow", format!("{chunked}fffffffffffffffffff\r\nabc\r\n"), false, 400),
        ("bare LF", format!("{chunked}3\nabc\n0\n\n"), false, 400),
        ("oversized trailers", format!("{chunked}3\r\nabc\r\n{trailer}"), false, 400),
        (
            "closed mid-body",
            "POST /t/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b".into(),
            true,
            400,
        ),
        (
            "chunked over max_body",
            String::from_utf8(request("POST /small/echo HTTP/1.1", &Body::Chunked(48 * 1024)))
                .expect("ascii"),
            false,
            413,
        ),
    ];
    for (what, bytes, half_close, status) in &cases {
        let r = once(&server, bytes.as_bytes(), *half_close);
        assert_eq!(r.status, *status, "{what}: {}\n{}", r.text(), server.log_text());
    }
    // The worker had its say (an aborted body), then serves on: not recycled, no traceback.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.get("/t/pid").text(), pid, "the worker was replaced");
    let log = server.log_text();
    assert!(!log.contains("Traceback"), "a traceback was logged:\n{log}");
    assert!(!log.contains("exception in WSGI app"), "logged as an app failure:\n{log}");
}

#[test]
fn slow_request_bodies_get_408_and_the_worker_stays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let pid = server.get("/slow/pid").text();
    // 10 bytes of 1000, then nothing: 408 after about body_read_timeout, long before the
    // request_timeout that used to answer 504 and recycle the worker.
    let mut c = Client::connect(server.addr);
    let began = Instant::now();
    c.s.write_all(b"POST /slow/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nten bytes!")
        .expect("write");
    let r = c.response().unwrap_or_else(|| panic!("no answer\n{}", server.log_text()));
    assert_eq!(r.status, 408, "{}\n{}", r.text(), server.log_text());
    assert_eq!(r.header("connection"), Some("close"));
    assert!(began.elapsed() < Duration::from_secs(4), "408 after {:?}", began.elapsed());
    // A body at 1000 bytes/s (over body_min_rate) may take longer than body_read_timeout.
    let mut c = Client::connect(server.addr);
    c.s.write_all(
        b"POST /slow/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2500\r\nConnection: close\r\n\r\n",
    )
    .expect("write");
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(500));
        c.s.write_all(&[b'p'; 500]).expect("write");
    }
    // The echo streams its answer (chunked): read it to the close.
    let mut all = Vec::new();
    let _ = c.s.read_to_end(&mut all);
    let r = parse_response(&all).unwrap_or_else(|e| panic!("{e}\n{}", server.log_text()));
    assert_eq!(r.status, 200, "{}", server.log_text());
    assert_eq!(r.body.len(), 2500);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.get("/slow/pid").text(), pid, "the worker was replaced");
    let log = server.log_text();
    assert!(!log.contains("stacks"), "stacks dumped:\n{log}");
    assert!(!log.contains("Traceback"), "a traceback was logged:\n{log}");
}

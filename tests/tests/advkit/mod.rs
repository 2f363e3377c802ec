//! Harness of the adversarial suite: one paddock with an attacked tenant and a bystander
//! tenant of its own pool, a raw client that reads exactly one response at a time and tells a
//! clean end of the connection from a reset, and a bystander that keeps asking the other
//! tenant while an attack runs.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{self, parse_response, write, Response, Server};

/// `sha1("password")`, htpasswd's `{SHA}` form, for `erin`.
pub const HTPASSWD: &str = "erin:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n";

/// How long any single read or write of the suite may wait.
pub const IO_WAIT: Duration = Duration::from_secs(10);

/// The suite's server. Tenants: `a` (the attacked one: Basic auth on `/login`,
/// body_read_timeout 1s at 500 B/s, request_timeout 5s), `b` (the bystander, its own pool),
/// `tiny` (max_body 32K), `one` (processes = 1, threads = 1), `off` (disabled) and `bad` (an app that cannot be
/// imported). Rules forbid `^/forbidden` and `^/b/secret`. header_read_timeout and
/// send_timeout are 2s.
pub struct Suite {
    pub server: Server,
    pub dir: tempfile::TempDir,
}

pub fn start() -> Suite {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let state = d.join("state");
    write(&state.join("disabled/off"), "disabled by the test\n");
    let bad = d.join("bad");
    std::fs::create_dir_all(&bad).expect("mkdir");
    common::private(&bad);
    let top = format!(
        "state_dir = \"{state}\"\nheader_read_timeout = \"2s\"\nsend_timeout = \"2s\"\n\
         [tenants.bad]\ndir = \"{bad}\"\nmount = \"/bad\"\napp = \"no_such_module_here:application\"\n\
         python_path = [\"{bad}\"]\nwatch_files = []\nprocesses = 1\nthreads = 1\n\
         [[rules]]\nrule = \"^/forbidden - [F]\"\n[[rules]]\nrule = \"^/b/secret - [F]\"\n",
        state = state.display(),
        bad = bad.display(),
    );
    let cfg = common::apps_config(
        d,
        &top,
        &[
            (
                "a",
                "processes = 1\nthreads = 2\n\
                 auth = { htpasswd = \"{tenant_dir}/htpasswd\", paths = [\"/login\"] }\n\
                 body_read_timeout = \"1s\"\nbody_min_rate = 500\nrequest_timeout = \"5s\"",
            ),
            ("b", "processes = 1\nthreads = 2"),
            ("tiny", "max_body = \"32K\""),
            ("one", "processes = 1\nthreads = 1\nqueue_timeout = \"20s\""),
            ("off", ""),
        ],
    );
    write(&d.join("a/htpasswd"), HTPASSWD);
    let server = Server::start(&["--config", cfg.to_str().expect("utf-8")]);
    Suite { server, dir }
}

impl Suite {
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// The pid the bystander tenant `b` answers `/b/pid` with.
    pub fn pid_of(&self, tenant: &str) -> String {
        let r = self.server.get(&format!("/{tenant}/pid"));
        assert_eq!(r.status, 200, "/{tenant}/pid: {}", r.text());
        r.text()
    }
}

/// How a read of one response ended when it did not give one.
#[derive(Debug)]
pub enum NoResponse {
    /// The connection ended cleanly; the bytes received before the end (maybe none).
    Eof(Vec<u8>),
    /// A reset or other error, with the bytes received before it.
    Error(std::io::Error, Vec<u8>),
    /// Nothing complete within [`IO_WAIT`].
    Timeout(Vec<u8>),
    /// Bytes that are not an HTTP/1.1 response.
    Garbage(Vec<u8>),
}

/// A raw client connection reading one response at a time.
pub struct Client {
    pub s: TcpStream,
    buf: Vec<u8>,
    writers: Vec<std::thread::JoinHandle<()>>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_millis(250))).expect("timeout");
        s.set_write_timeout(Some(IO_WAIT)).expect("timeout");
        Client { s, buf: Vec::new(), writers: Vec::new() }
    }

    /// Write `bytes` from a thread of its own (the router may not read them all); errors
    /// (the router closed) are ignored.
    pub fn send(&mut self, bytes: Vec<u8>) {
        let mut s = self.s.try_clone().expect("clone");
        self.writers.push(std::thread::spawn(move || {
            let _ = s.write_all(&bytes);
        }));
    }

    /// Wait for the writes started by [`Client::send`] to finish.
    pub fn sent(&mut self) {
        for w in self.writers.drain(..) {
            let _ = w.join();
        }
    }

    /// One response, framed by `Content-Length`, chunked coding or the close.
    pub fn response(&mut self) -> Result<Response, NoResponse> {
        let deadline = Instant::now() + IO_WAIT;
        let mut eof = false;
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                if !self.buf.starts_with(b"HTTP/1.") {
                    return Err(NoResponse::Garbage(self.buf.clone()));
                }
                // The head alone, with an empty chunked body in case it announces one.
                let mut h = self.buf[..end + 4].to_vec();
                h.extend_from_slice(b"0\r\n\r\n");
                let head = parse_response(&h).map_err(|_| NoResponse::Garbage(self.buf.clone()))?;
                let body = &self.buf[end + 4..];
                let chunked = head
                    .header("transfer-encoding")
                    .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
                let len = head.header("content-length").and_then(|v| v.parse::<usize>().ok());
                let total = if chunked {
                    chunked_len(body).map(|n| end + 4 + n)
                } else if let Some(len) = len {
                    (body.len() >= len).then_some(end + 4 + len)
                } else if eof {
                    Some(self.buf.len())
                } else {
                    None
                };
                if let Some(total) = total {
                    let whole: Vec<u8> = self.buf.drain(..total).collect();
                    return parse_response(&whole).map_err(|_| NoResponse::Garbage(whole));
                }
            }
            if eof {
                return Err(NoResponse::Eof(std::mem::take(&mut self.buf)));
            }
            if Instant::now() > deadline {
                return Err(NoResponse::Timeout(std::mem::take(&mut self.buf)));
            }
            match self.fill() {
                Ok(0) => eof = true,
                Ok(_) => {}
                Err(e) if is_wait(&e) => {}
                Err(e) => return Err(NoResponse::Error(e, std::mem::take(&mut self.buf))),
            }
        }
    }

    /// The connection must end cleanly now: EOF, no further bytes, no reset.
    pub fn clean_end(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + IO_WAIT;
        loop {
            if !self.buf.is_empty() {
                return Err(format!(
                    "bytes after the last response: {:?}",
                    String::from_utf8_lossy(&self.buf)
                ));
            }
            if Instant::now() > deadline {
                return Err("the connection stayed open".into());
            }
            match self.fill() {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if is_wait(&e) => {}
                Err(e) => return Err(format!("the connection ended with an error: {e}")),
            }
        }
    }

    fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 65536];
        let n = self.s.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.s.shutdown(std::net::Shutdown::Both);
        self.sent();
    }
}

fn is_wait(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted)
}

/// Length of a complete chunked body at the start of `b` (no trailers expected).
fn chunked_len(b: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let nl = b[at..].windows(2).position(|w| w == b"\r\n")?;
        let text = std::str::from_utf8(&b[at..at + nl]).ok()?;
        let size = usize::from_str_radix(text.split(';').next()?.trim(), 16).ok()?;
        at += nl + 2;
        if size == 0 {
            return (b.len() >= at + 2).then_some(at + 2);
        }
        at += size + 2;
        if b.len() < at {
            return None;
        }
    }
}

/// Whether a response announces the end of its connection.
pub fn closes(r: &Response) -> bool {
    r.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
}

/// Send `bytes` on a new connection and expect `status`; then the follow-up
/// `GET /b/pid` (with `pipelined`, written right behind `bytes`) must get its own 200, or the
/// answer said `Connection: close` and the connection then ends cleanly. Returns the answer.
pub fn expect(
    addr: SocketAddr,
    what: &str,
    bytes: &[u8],
    status: u16,
    pipelined: bool,
) -> Response {
    let mut c = Client::connect(addr);
    let mut out = bytes.to_vec();
    if pipelined {
        out.extend_from_slice(FOLLOW_UP);
    }
    c.send(out);
    let r = c.response().unwrap_or_else(|e| panic!("{what}: no answer: {e:?}"));
    assert_eq!(r.status, status, "{what}: {}", r.text());
    if closes(&r) {
        c.clean_end().unwrap_or_else(|e| panic!("{what}: answered {status} with close, then {e}"));
        return r;
    }
    c.sent();
    if !pipelined {
        c.send(FOLLOW_UP.to_vec());
    }
    let next = c.response().unwrap_or_else(|e| {
        panic!("{what}: the follow-up got no answer ({e:?}) and no close was announced")
    });
    assert_eq!(next.status, 200, "{what}: follow-up: {}", next.text());
    assert!(next.text().trim().parse::<u32>().is_ok(), "{what}: follow-up: {}", next.text());
    r
}

/// The follow-up request of [`expect`]: the bystander's pid.
pub const FOLLOW_UP: &[u8] = b"GET /b/pid HTTP/1.1\r\nHost: x\r\n\r\n";

/// A thread asking `GET path` on fresh connections every 100 ms until stopped, recording
/// every answer that is not a 200.
pub struct Bystander {
    stop: Arc<AtomicBool>,
    failures: Arc<Mutex<Vec<String>>>,
    served: Arc<Mutex<usize>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Bystander {
    pub fn start(addr: SocketAddr, path: &str) -> Bystander {
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let served = Arc::new(Mutex::new(0));
        let (st, f, sv) = (stop.clone(), failures.clone(), served.clone());
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let thread = std::thread::spawn(move || {
            // Bounded: at most ten minutes of 100 ms rounds, whatever happens.
            for _ in 0..6000 {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let began = Instant::now();
                let mut c = Client::connect(addr);
                c.send(req.clone().into_bytes());
                match c.response() {
                    Ok(r) if r.status == 200 && began.elapsed() < Duration::from_secs(5) => {
                        *sv.lock().expect("lock") += 1
                    }
                    Ok(r) => f.lock().expect("lock").push(format!(
                        "{} after {:?}: {}",
                        r.status,
                        began.elapsed(),
                        r.text()
                    )),
                    Err(e) => f.lock().expect("lock").push(format!("{e:?}")),
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Bystander { stop, failures, served, thread: Some(thread) }
    }

    /// Stop, and assert that every request was served and at least `min` were.
    pub fn finish(mut self, min: usize) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("bystander thread");
        }
        let failures = self.failures.lock().expect("lock");
        assert!(failures.is_empty(), "the bystander was not served: {failures:?}");
        let served = *self.served.lock().expect("lock");
        assert!(served >= min, "the bystander was served {served} times, expected {min}");
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `head` (request line, no CRLF) with `Host: x` and a `Content-Length` body of `n` bytes.
pub fn with_body(head: &str, n: usize) -> Vec<u8> {
    let mut out = format!("{head}\r\nHost: x\r\nContent-Length: {n}\r\n\r\n").into_bytes();
    out.extend(std::iter::repeat_n(b'a', n));
    out
}

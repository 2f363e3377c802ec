//! Upgrading the binary with no failed request: SIGUSR2 (or `paddock upgrade`) starts a new
//! `paddock` that takes over the listening sockets while the old one drains. Under load from
//! clients opening a connection per request and clients keeping theirs alive, with a slow
//! request in flight, two upgrades in a row lose nothing; a successor that cannot start
//! leaves the old process serving.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{apps_config, eventually, free_port, send_raw, signal, write, Server};

const SIGUSR2: i32 = 12;
const SIGTERM: i32 = 15;

struct Setup {
    server: Server,
    admin: SocketAddr,
    tokens: std::path::PathBuf,
    config: std::path::PathBuf,
}

fn start(dir: &Path) -> Setup {
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let tokens = dir.join("tokens");
    write(&tokens, "upgrade-test-token\n");
    let top = format!(
        "drain_timeout = \"30s\"\n[admin]\nlisten = \"{admin}\"\ntokens_file = \"{}\"\nsignup = false\n",
        tokens.display()
    );
    let config = apps_config(dir, &top, &[("a", "processes = 2\nthreads = 4\n")]);
    let server = Server::start(&["--config", config.to_str().expect("utf-8")]);
    assert_eq!(server.get("/a/env").status, 200, "{}", server.log_text());
    Setup { server, admin, tokens, config }
}

/// A process this test caused to exist (a successor), stopped by pid when dropped.
struct Successor(u32);

impl Drop for Successor {
    fn drop(&mut self) {
        if alive(self.0) {
            signal(self.0, SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(30);
            while alive(self.0) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Whether `pid` runs and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

/// The pid in the last log line "upgrade: the new process serves" (a successor writes to the
/// same log).
fn successor_pid(log: &str) -> Option<u32> {
    let line = log.lines().rev().find(|l| l.contains("upgrade: the new process serves"))?;
    let at = line.find("pid=")? + 4;
    line[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    /// Keep-alive requests sent again on a new connection because the server had closed the
    /// idle one before reading them (RFC 9112 9.3.1: what clients do for idempotent requests).
    retried: AtomicU64,
    errors: std::sync::Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, why: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut e = self.errors.lock().expect("lock");
        if e.len() < 20 {
            e.push(why);
        }
    }
}

/// One request per connection until `stop`.
fn closing_client(addr: SocketAddr, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let raw = format!("GET /a/pid HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let deadline = Instant::now() + Duration::from_secs(300);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        match send_raw(addr, raw.as_bytes()) {
            Ok(r) if r.status == 200 => tally.ok.fetch_add(1, Ordering::Relaxed),
            Ok(r) => {
                tally.fail(format!("new connection: status {}: {}", r.status, r.text()));
                continue;
            }
            Err(e) => {
                tally.fail(format!("new connection: {e}"));
                continue;
            }
        };
    }
}

/// What reading one response on a kept-alive connection gave.
enum Got {
    Status(u16, bool),
    /// The connection was closed before any byte of a response: the request was not taken.
    ClosedIdle,
    Broken(String),
}

/// Send `GET /a/env` on `conn` and read its response (Content-Length framed).
fn exchange(conn: &mut BufReader<TcpStream>, addr: SocketAddr) -> Got {
    let raw = format!("GET /a/env HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    if conn.get_mut().write_all(raw.as_bytes()).is_err() {
        return Got::ClosedIdle;
    }
    let mut line = String::new();
    match conn.read_line(&mut line) {
        Ok(0) => return Got::ClosedIdle,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Got::ClosedIdle,
        Err(e) => return Got::Broken(format!("status line: {e}")),
        Ok(_) => {}
    }
    let Some(status) = line.split(' ').nth(1).and_then(|s| s.parse::<u16>().ok()) else {
        return Got::Broken(format!("status line {line:?}"));
    };
    let (mut length, mut close) = (None, false);
    loop {
        let mut h = String::new();
        match conn.read_line(&mut h) {
            Ok(0) | Err(_) => return Got::Broken("response head cut".into()),
            Ok(_) if h == "\r\n" => break,
            Ok(_) => {
                let lower = h.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse::<usize>().ok();
                }
                close |= lower.starts_with("connection:") && lower.contains("close");
            }
        }
    }
    let Some(n) = length else { return Got::Broken("no Content-Length".into()) };
    let mut body = vec![0; n];
    match conn.read_exact(&mut body) {
        Ok(()) => Got::Status(status, close),
        Err(e) => Got::Broken(format!("body cut: {e}")),
    }
}

/// Requests on one kept-alive connection, reconnecting when the server closes it, until `stop`.
fn keepalive_client(addr: SocketAddr, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let connect = || TcpStream::connect(addr).map(BufReader::new);
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut conn = None;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let mut c = match conn.take().map_or_else(connect, Ok) {
            Ok(c) => c,
            Err(e) => {
                tally.fail(format!("keep-alive connect: {e}"));
                continue;
            }
        };
        let mut got = exchange(&mut c, addr);
        if matches!(got, Got::ClosedIdle) {
            tally.retried.fetch_add(1, Ordering::Relaxed);
            got = match connect() {
                Ok(mut fresh) => {
                    let g = exchange(&mut fresh, addr);
                    c = fresh;
                    g
                }
                Err(e) => Got::Broken(format!("reconnect: {e}")),
            };
        }
        match got {
            Got::Status(200, close) => {
                tally.ok.fetch_add(1, Ordering::Relaxed);
                if !close {
                    conn = Some(c);
                }
            }
            Got::Status(s, _) => tally.fail(format!("keep-alive: status {s}")),
            Got::ClosedIdle => tally.fail("keep-alive: closed twice in a row".into()),
            Got::Broken(why) => tally.fail(format!("keep-alive: {why}")),
        }
    }
}

fn paddock_upgrade(s: &Setup) -> std::process::Output {
    Command::new(&common::bins().0)
        .args(["upgrade", "--admin", &s.admin.to_string(), "--token-file"])
        .arg(&s.tokens)
        .env_remove("PADDOCK_TOKEN")
        .output()
        .expect("run paddock upgrade")
}

#[test]
fn two_upgrades_under_load_fail_no_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = start(dir.path());
    let addr = s.server.addr;
    let old = s.server.child.id();
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let mut load = Vec::new();
    for i in 0..4 {
        let (stop, tally) = (stop.clone(), tally.clone());
        load.push(std::thread::spawn(move || match i % 2 {
            0 => closing_client(addr, stop, tally),
            _ => keepalive_client(addr, stop, tally),
        }));
    }
    eventually("load flows", Duration::from_secs(30), || tally.ok.load(Ordering::Relaxed) > 50);
    // A request in flight across the first hand-over: the old process finishes it.
    let slow = std::thread::spawn(move || {
        let raw = format!("GET /a/sleep?s=2 HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        send_raw(addr, raw.as_bytes())
    });
    std::thread::sleep(Duration::from_millis(300));

    // 1: SIGUSR2 to the main process, as `systemctl kill -s USR2 --kill-who=main` would.
    signal(old, SIGUSR2);
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Ok(Some(st)) = s.server.child.try_wait() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "the old process never exited:\n{}",
            s.server.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "old process: {status}\n{}", s.server.log_text());
    let first = Successor(successor_pid(&s.server.log_text()).expect("a successor pid in the log"));
    assert!(alive(first.0) && first.0 != old);
    let slow = slow.join().expect("thread").expect("the slow request is answered");
    assert_eq!(slow.status, 200, "the request in flight across the hand-over");
    let at_first = tally.ok.load(Ordering::Relaxed);
    eventually("load flows on the successor", Duration::from_secs(30), || {
        tally.ok.load(Ordering::Relaxed) > at_first + 50
    });

    // 2: `paddock upgrade` through the admin API, which the successor took over too.
    let out = paddock_upgrade(&s);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{said}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.server.log_text()
    );
    let second: u32 = said
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {said:?}"));
    let second = Successor(second);
    eventually("the first successor drains and exits", Duration::from_secs(90), || !alive(first.0));
    let at_second = tally.ok.load(Ordering::Relaxed);
    eventually("load flows on the second successor", Duration::from_secs(30), || {
        tally.ok.load(Ordering::Relaxed) > at_second + 50
    });
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().expect("load thread");
    }
    let (ok, failed) = (tally.ok.load(Ordering::Relaxed), tally.failed.load(Ordering::Relaxed));
    let errors = tally.errors.lock().expect("lock").join("\n");
    eprintln!(
        "upgrade under load: {ok} answered, {failed} failed, {} keep-alive retries",
        tally.retried.load(Ordering::Relaxed)
    );
    assert_eq!(failed, 0, "failed requests:\n{errors}\n{}", s.server.log_text());
    assert!(alive(second.0), "{}", s.server.log_text());
    // The successors' workers are their own: the first one's are gone with it.
    assert!(s.server.get("/a/env").status == 200);
    drop(second);
}

#[test]
fn a_successor_that_cannot_start_leaves_the_old_process_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start(dir.path());
    let good = std::fs::read_to_string(&s.config).expect("config");
    write(&s.config, &format!("{good}\nprocesses = \"many\"\n"));
    let out = paddock_upgrade(&s);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "an upgrade to a refused configuration succeeded");
    assert!(err.contains("upgrade failed") && err.contains("exited"), "{err}");
    let log = s.server.log_text();
    assert!(log.contains("upgrade failed, this process serves on"), "{log}");
    // The successor said why, in the same log.
    assert!(log.contains("processes"), "{log}");
    assert_eq!(s.server.get("/a/env").status, 200);
    let mut s = s;
    assert!(matches!(s.server.child.try_wait(), Ok(None)), "the old process exited");
    // Fixed, the next upgrade goes through.
    write(&s.config, &good);
    signal(s.server.child.id(), SIGUSR2);
    eventually("the old process hands over", Duration::from_secs(90), || {
        matches!(s.server.child.try_wait(), Ok(Some(_)))
    });
    let next = Successor(successor_pid(&s.server.log_text()).expect("successor pid"));
    assert_eq!(s.server.get("/a/env").status, 200, "{}", s.server.log_text());
    drop(next);
}

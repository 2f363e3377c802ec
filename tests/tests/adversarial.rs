//! The adversarial suite: raw bytes over loopback TCP against the real `paddock`, one case at a
//! time. For each case it checks (a) the exact status the router answers, (b) that the
//! connection stays framed (a follow-up request on it gets its own answer) or that the answer
//! said `Connection: close` and the connection then ended cleanly (EOF, no reset, nothing
//! extra), and (c) that another tenant, of its own pool, kept being served meanwhile.

mod advkit;
mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use advkit::{closes, expect, with_body, Bystander, Client, NoResponse};

/// `(what, bytes, status)` cases, each sent sequentially and pipelined (see [`expect`]).
fn run(addr: std::net::SocketAddr, cases: &[(&str, Vec<u8>, u16)]) {
    for (what, bytes, status) in cases {
        for pipelined in [false, true] {
            expect(addr, &format!("{what} (pipelined {pipelined})"), bytes, *status, pipelined);
        }
    }
}

fn post_chunked(path: &str, te: &str, body: &str) -> Vec<u8> {
    format!("POST {path} HTTP/1.1\r\nHost: x\r\n{te}\r\n\r\n{body}").into_bytes()
}

#[test]
fn smuggling_variants_are_refused_and_framing_holds() {
    let suite = advkit::start();
    let addr = suite.addr();
    let pid = suite.pid_of("a");
    let watch = Bystander::start(addr, "/b/pid");
    let te = "Transfer-Encoding: chunked";
    let big_trailer = format!("0\r\nX-Big: {}\r\n\r\n", "t".repeat(64 * 1024));
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "CL+TE",
            post_chunked("/a/echo", "Content-Length: 5\r\nTransfer-Encoding: chunked", "0\r\n\r\n"),
            400,
        ),
        (
            "TE+CL",
            post_chunked("/a/echo", "Transfer-Encoding: chunked\r\nContent-Length: 3", "0\r\n\r\n"),
            400,
        ),
        (
            "two differing Content-Length",
            b"POST /a/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"
                .to_vec(),
            400,
        ),
        (
            "a list in Content-Length",
            b"POST /a/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\nabcd".to_vec(),
            400,
        ),
        (
            "a signed Content-Length",
            b"POST /a/echo HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc".to_vec(),
            400,
        ),
        ("TE chunked, identity", post_chunked("/a/echo", "Transfer-Encoding: chunked, identity", "0\r\n\r\n"), 400),
        ("TE xchunked", post_chunked("/a/echo", "Transfer-Encoding: xchunked", "0\r\n\r\n"), 400),
        ("TE identity", post_chunked("/a/echo", "Transfer-Encoding: identity", "0\r\n\r\n"), 400),
        ("TE with a space before the colon", post_chunked("/a/echo", "Transfer-Encoding : chunked", "0\r\n\r\n"), 400),
        ("TE obs-fold", post_chunked("/a/echo", "Transfer-Encoding:\r\n chunked", "0\r\n\r\n"), 400),
        ("TE obs-fold after a header", post_chunked("/a/echo", "X-A: 1\r\n Transfer-Encoding: chunked", "0\r\n\r\n"), 400),
        ("chunk size overflow", post_chunked("/a/echo", te, "ffffffffffffffffff\r\nabc\r\n0\r\n\r\n"), 400),
        ("invalid hex", post_chunked("/a/echo", te, "zz\r\nabc\r\n0\r\n\r\n"), 400),
        ("a negative chunk size", post_chunked("/a/echo", te, "-3\r\nabc\r\n0\r\n\r\n"), 400),
        ("bare LF in chunk lines", post_chunked("/a/echo", te, "3\nabc\n0\n\n"), 400),
        ("chunk data longer than its size", post_chunked("/a/echo", te, "3\r\nabcdef\r\n0\r\n\r\n"), 400),
        ("oversized trailers", post_chunked("/a/echo", te, &format!("3\r\nabc\r\n{big_trailer}")), 400),
        // Accepted spellings: the body is the chunks' data, the follow-up its own request.
        ("TE with a tab", post_chunked("/a/echo", "Transfer-Encoding:\tchunked", "3\r\nabc\r\n0\r\n\r\n"), 200),
        ("TE in capitals", post_chunked("/a/echo", "Transfer-Encoding: CHUNKED", "3\r\nabc\r\n0\r\n\r\n"), 200),
        ("chunk extensions", post_chunked("/a/echo", te, "3;name=value;x=\"q\"\r\nabc\r\n0;end\r\n\r\n"), 200),
        ("a small trailer", post_chunked("/a/echo", te, "3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n"), 200),
        (
            "two equal Content-Length",
            b"POST /a/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc".to_vec(),
            200,
        ),
        (
            "Upgrade with CL+TE",
            post_chunked(
                "/a/echo",
                "Upgrade: h2c\r\nConnection: Upgrade\r\nContent-Length: 5\r\nTransfer-Encoding: chunked",
                "0\r\n\r\n",
            ),
            400,
        ),
        (
            "Upgrade websocket with TE+CL",
            post_chunked(
                "/a/echo",
                "Transfer-Encoding: chunked\r\nContent-Length: 5\r\nUpgrade: websocket\r\nConnection: Upgrade",
                "0\r\n\r\n",
            ),
            400,
        ),
    ];
    run(addr, &cases);
    // The accepted spellings really were framed as chunked: the body echoed is the data.
    let mut c = Client::connect(addr);
    c.send(post_chunked("/a/echo", "Transfer-Encoding:\tchunked", "3;x=y\r\nabc\r\n0\r\n\r\n"));
    let r = c.response().expect("echo");
    assert_eq!((r.status, r.text().as_str()), (200, "abc"));
    // A valid request pipelined before a smuggling one gets its 200, the bad one a 400.
    let mut c = Client::connect(addr);
    let mut raw = b"GET /a/pid HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    raw.extend(post_chunked(
        "/b/echo",
        "Content-Length: 5\r\nTransfer-Encoding: chunked",
        "0\r\n\r\nGET /b/secret HTTP/1.1\r\nHost: x\r\n\r\n",
    ));
    c.send(raw);
    let first = c.response().expect("the valid request's answer");
    assert_eq!((first.status, first.text()), (200, pid.clone()));
    let second = c.response().expect("the smuggling request's answer");
    assert_eq!(second.status, 400, "{}", second.text());
    assert!(closes(&second), "{second:?}");
    c.clean_end().expect("clean end after the 400");
    // None of this was the worker's failure: the same process serves on.
    assert_eq!(suite.pid_of("a"), pid, "tenant a's worker was replaced");
    watch.finish(1);
}

/// `GET target` with `Host: x`.
fn get(target: &[u8]) -> Vec<u8> {
    let mut out = b"GET ".to_vec();
    out.extend_from_slice(target);
    out.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n\r\n");
    out
}

#[test]
fn path_tricks_never_cross_a_mount_nor_a_rule() {
    let suite = advkit::start();
    let addr = suite.addr();
    let watch = Bystander::start(addr, "/b/pid");
    let long = format!("/a/{}", "x".repeat(100 * 1024));
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("dot-dot into another mount", get(b"/a/../b/pid"), 400),
        ("encoded dot-dot", get(b"/a/%2e%2e/b/pid"), 400),
        ("encoded dot-dot, capitals", get(b"/a/%2E%2E/b/pid"), 400),
        ("encoded slash", get(b"/a/..%2fb/pid"), 400),
        ("encoded slash in the mount", get(b"/a%2fpid"), 400),
        ("dot segment before the mount", get(b"/./b/pid"), 400),
        ("NUL", get(b"/a/x%00y"), 400),
        ("asterisk", b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 400),
        ("a relative target", get(b"a/pid"), 400),
        ("a very long target", get(long.as_bytes()), 414),
        // Rules and auth see the normalised path, however it is spelled.
        ("rule: encoded letter", get(b"/b/%73ecret"), 403),
        ("rule: double slash", get(b"/b//secret"), 403),
        ("rule: dot segment", get(b"/b/./secret"), 403),
        ("rule: dot-dot inside the mount", get(b"/b/x/../secret"), 403),
        ("rule: absolute-form", get(b"http://x/b/secret"), 403),
        ("auth: encoded letter", get(b"/a/%6cogin"), 401),
        ("auth: double slash", get(b"/a//login"), 401),
        ("auth: dot segment", get(b"/a/./login"), 401),
        ("auth: dot-dot", get(b"/a/x/../login"), 401),
    ];
    run(addr, &cases);
    // What reaches an app reaches the tenant its raw path names, with the bytes as sent.
    for (what, target, path_info) in [
        (
            "overlong UTF-8 dots",
            &b"/a/%c0%ae%c0%ae/b/env"[..],
            "/\\u00c0\\u00ae\\u00c0\\u00ae/b/env",
        ),
        ("absolute-form", b"http://x/a/env", "/env"),
        ("raw 8-bit bytes", b"/a/\xe9t\xe9", "/\\u00e9t\\u00e9"),
        ("double slash after the mount", b"//a//env", "/env"),
    ] {
        let r = expect(addr, what, &get(target), 200, false);
        let text = r.text();
        assert!(text.contains("\"SCRIPT_NAME\": \"/a\""), "{what}: {text}");
        assert!(text.contains(&format!("\"PATH_INFO\": \"{path_info}\"")), "{what}: {text}");
    }
    watch.finish(1);
}

#[test]
fn host_must_be_one_valid_host() {
    let suite = advkit::start();
    let addr = suite.addr();
    let watch = Bystander::start(addr, "/b/pid");
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("HTTP/1.1 without Host", b"GET /a/env HTTP/1.1\r\n\r\n".to_vec(), 400),
        ("two Host headers", b"GET /a/env HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n".to_vec(), 400),
        ("a path in Host", b"GET /a/env HTTP/1.1\r\nHost: a.example/trac/x\r\n\r\n".to_vec(), 400),
        ("a user in Host", b"GET /a/env HTTP/1.1\r\nHost: evil@a.example\r\n\r\n".to_vec(), 400),
        ("a bad port", b"GET /a/env HTTP/1.1\r\nHost: a.example:80x\r\n\r\n".to_vec(), 400),
        ("a huge port", b"GET /a/env HTTP/1.1\r\nHost: a.example:123456\r\n\r\n".to_vec(), 400),
        ("an empty Host", b"GET /a/pid HTTP/1.1\r\nHost:\r\n\r\n".to_vec(), 200),
    ];
    run(addr, &cases);
    watch.finish(1);
}

#[test]
fn header_floods_get_431_and_the_close() {
    let suite = advkit::start();
    let addr = suite.addr();
    let watch = Bystander::start(addr, "/b/pid");
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("200 headers", format!("GET /a/pid HTTP/1.1\r\nHost: x\r\n{many}\r\n").into_bytes(), 431),
        (
            "one 100 KiB header",
            format!("GET /a/pid HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "v".repeat(100 << 10))
                .into_bytes(),
            431,
        ),
        (
            "a 1 MiB head",
            format!(
                "GET /a/pid HTTP/1.1\r\nHost: x\r\n{}\r\n",
                "X-Filler: 0123456789abcdef0123456789abcdef\r\n".repeat(24 << 10)
            )
            .into_bytes(),
            431,
        ),
    ];
    for (what, bytes, status) in &cases {
        for pipelined in [false, true] {
            let r = expect(addr, what, bytes, *status, pipelined);
            assert!(closes(&r), "{what}: {r:?}");
        }
    }
    // Just under max_header_bytes (64 KiB) is still served, and the connection goes on.
    let under =
        format!("GET /a/pid HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "v".repeat(60 << 10));
    for pipelined in [false, true] {
        let r = expect(addr, "a 60 KiB header", under.as_bytes(), 200, pipelined);
        assert!(!closes(&r), "{r:?}");
    }
    watch.finish(1);
}

#[test]
fn malformed_heads_get_400() {
    let suite = advkit::start();
    let addr = suite.addr();
    let watch = Bystander::start(addr, "/b/pid");
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("garbage request line", b"HELLO THERE\r\n\r\n".to_vec(), 400),
        ("binary garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(), 400),
        ("HTTP/0.9", b"GET /a/pid\r\n\r\n".to_vec(), 400),
        ("an unknown version", b"GET /a/pid HTTP/3.7\r\nHost: x\r\n\r\n".to_vec(), 400),
        (
            "a space in a header name",
            b"GET /a/pid HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n".to_vec(),
            400,
        ),
        (
            "a control byte in a header name",
            b"GET /a/pid HTTP/1.1\r\nHost: x\r\nX-\x01: v\r\n\r\n".to_vec(),
            400,
        ),
        ("an empty header name", b"GET /a/pid HTTP/1.1\r\nHost: x\r\n: v\r\n\r\n".to_vec(), 400),
        (
            "a header without a colon",
            b"GET /a/pid HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n".to_vec(),
            400,
        ),
        (
            "NUL in a header value",
            b"GET /a/pid HTTP/1.1\r\nHost: x\r\nX-V: a\0b\r\n\r\n".to_vec(),
            400,
        ),
        (
            "CR in a header value",
            b"GET /a/pid HTTP/1.1\r\nHost: x\r\nX-V: a\rb\r\n\r\n".to_vec(),
            400,
        ),
        (
            "two spaces in the request line",
            b"GET  /a/pid HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            400,
        ),
    ];
    run(addr, &cases);
    watch.finish(1);
}

#[test]
fn early_answers_leave_the_connection_framed_or_announce_the_close() {
    let suite = advkit::start();
    let addr = suite.addr();
    let watch = Bystander::start(addr, "/b/pid");
    let early = [
        ("unknown tenant", "POST /nothing-here HTTP/1.1", 404),
        ("unknown path in an app-less mount", "POST /a-not/x HTTP/1.1", 404),
        ("auth-protected path", "POST /a/login HTTP/1.1", 401),
        ("rules-forbidden path", "POST /forbidden HTTP/1.1", 403),
        ("disabled tenant", "POST /off/x HTTP/1.1", 503),
        ("tenant that cannot start", "POST /bad/x HTTP/1.1", 503),
    ];
    for (what, head, status) in early {
        for n in [1024, 60 * 1024, 1024 * 1024] {
            for pipelined in [false, true] {
                let what = format!("{what}, {n} bytes, pipelined {pipelined}");
                let r = expect(addr, &what, &with_body(head, n), status, pipelined);
                assert!(!(n <= 1024 && closes(&r)), "{what}: a 1 KiB body was not drained");
            }
        }
    }
    // 413: a declared body over tenant tiny's max_body (32K), however large.
    for n in [60 * 1024, 1024 * 1024, 1 << 30] {
        for pipelined in [false, true] {
            let what = format!("413, {n} bytes, pipelined {pipelined}");
            let head = "POST /tiny/echo HTTP/1.1\r\nHost: x";
            let mut bytes = format!("{head}\r\nContent-Length: {n}\r\n\r\n").into_bytes();
            bytes.extend(std::iter::repeat_n(b'a', n.min(1 << 20)));
            if n > 1 << 20 {
                // Only the head and 1 MiB are sent: the router must not wait for the rest.
                let mut c = Client::connect(addr);
                c.send(bytes);
                let r = c.response().unwrap_or_else(|e| panic!("{what}: {e:?}"));
                assert_eq!(r.status, 413, "{what}");
                assert!(closes(&r), "{what}: {r:?}");
                c.clean_end().unwrap_or_else(|e| panic!("{what}: {e}"));
            } else {
                expect(addr, &what, &bytes, 413, pipelined);
            }
        }
    }
    // An app that answers without reading its body: the connection stays framed all the same.
    for n in [1024, 60 * 1024, 1024 * 1024] {
        for pipelined in [false, true] {
            let what = format!("app ignoring a {n} byte body, pipelined {pipelined}");
            expect(addr, &what, &with_body("POST /b/pid HTTP/1.1", n), 200, pipelined);
        }
    }
    watch.finish(1);
}

#[test]
fn slowloris_heads_are_cut_off_while_others_are_served() {
    let suite = advkit::start();
    let addr = suite.addr();
    let watch = Bystander::start(addr, "/b/pid");
    let mut c = Client::connect(addr);
    let began = Instant::now();
    let head =
        b"GET /a/pid HTTP/1.1\r\nHost: x\r\nX-Slow: 0123456789012345678901234567890123\r\n\r\n";
    let mut sent = 0;
    // One byte every 500 ms: the 2 s header_read_timeout ends it after a few bytes.
    for &b in head.iter() {
        if c.s.write_all(&[b]).is_err() {
            break;
        }
        sent += 1;
        std::thread::sleep(Duration::from_millis(500));
        if began.elapsed() > Duration::from_secs(8) {
            break;
        }
    }
    let cut = began.elapsed();
    assert!(sent < head.len(), "the whole head was accepted at 2 bytes/s ({cut:?})");
    match c.response() {
        Ok(r) => {
            assert_eq!(r.status, 408, "{r:?}");
            assert!(closes(&r), "{r:?}");
            c.clean_end().expect("clean end after the 408");
        }
        Err(NoResponse::Eof(b)) if b.is_empty() => eprintln!("slowloris: closed without an answer"),
        Err(e) => panic!("the slow head ended badly: {e:?}"),
    }
    assert!(cut < Duration::from_secs(6), "cut off after {cut:?}");
    watch.finish(10);
}

#[test]
fn slow_bodies_get_408_and_the_worker_stays() {
    let suite = advkit::start();
    let addr = suite.addr();
    let pid = suite.pid_of("a");
    let watch = Bystander::start(addr, "/b/pid");
    // A stalled body, then a trickle below body_min_rate (500 B/s).
    for (what, trickle) in [("stalled", false), ("trickling", true)] {
        let mut c = Client::connect(addr);
        let began = Instant::now();
        c.s.write_all(
            b"POST /a/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nten bytes!",
        )
        .expect("write");
        if trickle {
            let mut s = c.s.try_clone().expect("clone");
            std::thread::spawn(move || {
                for _ in 0..40 {
                    if s.write_all(b"tt").is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
        }
        let r = c.response().unwrap_or_else(|e| panic!("{what}: {e:?}"));
        assert_eq!(r.status, 408, "{what}: {}", r.text());
        assert!(closes(&r), "{what}: {r:?}");
        assert!(
            began.elapsed() < Duration::from_secs(4),
            "{what}: 408 after {:?}",
            began.elapsed()
        );
        c.clean_end().unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(suite.pid_of("a"), pid, "tenant a's worker was recycled");
    let workers = suite.server.worker_pids();
    assert!(workers.iter().any(|w| w.to_string() == pid), "{pid} not among {workers:?}");
    assert!(!suite.server.log_text().contains("Traceback"), "{}", suite.server.log_text());
    watch.finish(5);
}

#[test]
fn a_client_that_never_reads_loses_its_slot() {
    let suite = advkit::start();
    let addr = suite.addr();
    let watch = Bystander::start(addr, "/b/pid");
    let pid = suite.pid_of("one");
    // tenant `one` has a single slot; this client takes it and never reads.
    let mut stuck = Client::connect(addr);
    stuck.s.write_all(b"GET /one/stream?mb=200 HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
    std::thread::sleep(Duration::from_millis(300));
    let began = Instant::now();
    let r = advkit::expect(
        addr,
        "the next client of `one`",
        b"GET /one/pid HTTP/1.1\r\nHost: x\r\n\r\n",
        200,
        false,
    );
    assert_eq!(r.text(), pid);
    assert!(began.elapsed() < Duration::from_secs(8), "served after {:?}", began.elapsed());
    // The stuck client's connection was closed: reading it gives what was buffered, then EOF.
    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    let deadline = Instant::now() + Duration::from_secs(10);
    let end = loop {
        assert!(Instant::now() < deadline, "still open after {total} bytes");
        match std::io::Read::read(&mut stuck.s, &mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => total += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => break Err(e),
        }
    };
    end.unwrap_or_else(|e| panic!("the abandoned response ended with {e} after {total} bytes"));
    assert!(total < 200 << 20, "the whole response was sent ({total} bytes)");
    watch.finish(5);
}

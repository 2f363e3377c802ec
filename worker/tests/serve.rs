//! End-to-end tests of `paddock-worker` serving WSGI test apps over the frame protocol.

mod common;

use common::{head, request_frames, Worker};
use paddock_proto::{AbortKind, BodyKind, Frame, Hello, MAX_CHUNK};

#[test]
fn hello_and_simple_get() {
    let w = Worker::start(2);
    let mut c = w.connect();
    let r = c.get("/simple/caf\u{e9}");
    assert_eq!(r.status(), 200, "{}", w.stderr());
    assert_eq!(r.head.as_ref().map(|h| h.reason.clone()), Some(b"OK".to_vec()));
    assert_eq!(r.header("content-type").as_deref(), Some("text/plain"));
    assert_eq!(r.body, "hello /simple/caf\u{e9}".as_bytes());
    assert!(r.ended);
}

#[test]
fn hello_with_wrong_version_is_refused() {
    let w = Worker::start(1);
    let mut c = w.connect_raw();
    c.send(&[Frame::Hello(Hello { version: 999, pid: 1 })]);
    match c.recv() {
        Some(Frame::Abort(a)) => assert_eq!(a.kind, AbortKind::Protocol),
        other => panic!("expected Abort(Protocol), got {other:?}"),
    }
    assert!(c.recv().is_none(), "connection should be closed");
}

#[test]
fn environ_contents() {
    let w = Worker::start(4);
    let mut c = w.connect();
    let mut h = head("GET", "/environ_json/x", "a=1&b=%20", BodyKind::Empty);
    h.headers.extend([
        (b"Cookie".to_vec(), b"a=1".to_vec()),
        (b"Cookie".to_vec(), b"b=2".to_vec()),
        (b"X_Forwarded_For".to_vec(), b"spoofed".to_vec()),
        (b"X-Forwarded-For".to_vec(), b"10.1.1.1".to_vec()),
        (b"Content-Type".to_vec(), b"text/plain".to_vec()),
    ]);
    h.environ = vec![
        (b"REMOTE_USER".to_vec(), "jo\u{e9}".as_bytes().to_vec()),
        (b"trac.env_path".to_vec(), b"/srv/sites/x".to_vec()),
    ];
    let r = c.request(h, b"");
    assert_eq!(r.status(), 200, "{}", w.stderr());
    let env = r.text();
    for want in [
        r#""REQUEST_METHOD": "GET""#,
        r#""SCRIPT_NAME": "/site""#,
        r#""PATH_INFO": "/environ_json/x""#,
        r#""QUERY_STRING": "a=1&b=%20""#,
        r#""REQUEST_URI": "/site/environ_json/x?a=1&b=%20""#,
        r#""SERVER_NAME": "example.org""#,
        r#""SERVER_PORT": "8080""#,
        r#""SERVER_PROTOCOL": "HTTP/1.1""#,
        r#""REMOTE_ADDR": "192.0.2.7""#,
        r#""REMOTE_PORT": "40000""#,
        r#""HTTP_HOST": "example.org:8080""#,
        r#""HTTP_COOKIE": "a=1; b=2""#,
        r#""HTTP_X_FORWARDED_FOR": "10.1.1.1""#,
        r#""CONTENT_TYPE": "text/plain""#,
        r#""REMOTE_USER": "jo\u00e9""#,
        r#""trac.env_path": "/srv/sites/x""#,
        r#""wsgi.url_scheme": "http""#,
        r#""wsgi.version": [1, 0]"#,
        r#""wsgi.multithread": true"#,
        r#""wsgi.multiprocess": false"#,
        r#""wsgi.run_once": false"#,
        r#""wsgi.input_terminated": true"#,
        r#""sys.argv": ["paddock-worker"]"#,
        r#""stdout_is_stderr": true"#,
    ] {
        assert!(env.contains(want), "missing {want} in {env}");
    }
    assert!(!env.contains("CONTENT_LENGTH"), "{env}");
    assert!(!env.contains("spoofed"), "{env}");
}

#[test]
fn wsgiref_validator_accepts_environ_input_and_response() {
    let w = Worker::start(2);
    let mut c = w.connect();
    let body = b"first line\nsecond part";
    let mut h = head("POST", "/validated", "", BodyKind::Length(body.len() as u64));
    h.headers.push((b"Content-Length".to_vec(), body.len().to_string().into_bytes()));
    h.headers.push((b"Content-Type".to_vec(), b"text/plain".to_vec()));
    let r = c.request(h, body);
    assert_eq!(r.status(), 200, "{}", w.stderr());
    assert_eq!(r.text(), "got:first line\nsecond part");
    let r = c.get("/validated");
    assert_eq!(r.status(), 200, "{}", w.stderr());
    assert!(w.stderr().contains("validated app ran"));
}

#[test]
fn post_5_mib_is_echoed_intact() {
    let w = Worker::start(2);
    let mut c = w.connect();
    let body: Vec<u8> = (0..5 * 1024 * 1024u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let mut h = head("POST", "/echo", "", BodyKind::Length(body.len() as u64));
    h.headers.push((b"Content-Length".to_vec(), body.len().to_string().into_bytes()));
    let r = c.request(h, &body);
    assert_eq!(r.status(), 200, "{}", w.stderr());
    assert_eq!(r.header("content-length"), Some(body.len().to_string()));
    assert!(r.body == body, "echoed body differs ({} bytes)", r.body.len());
    assert!(r.largest_frame <= MAX_CHUNK);
}

#[test]
fn chunked_body_with_read_and_readline() {
    let w = Worker::start(1);
    let mut c = w.connect();
    c.send(&[
        Frame::Request(head("POST", "/lines", "", BodyKind::Chunked)),
        Frame::Body(b"line one\nli".to_vec()),
        Frame::Body(b"ne two\nthree\n".to_vec()),
        Frame::Body(Vec::new()),
        Frame::Body(b"four".to_vec()),
        Frame::End,
    ]);
    let r = c.reply();
    assert_eq!(r.status(), 200, "{}", w.stderr());
    let want = r#"{"first": "line one\n", "second": "line", "rest": [" two\n", "three\n", "four"], "after": ""}"#;
    assert_eq!(r.text(), want);
}

#[test]
fn streams_a_20_mib_response() {
    let w = Worker::start(1);
    let mut c = w.connect();
    let r = c.request(head("GET", "/stream", "20", BodyKind::Empty), b"");
    assert_eq!(r.status(), 200, "{}", w.stderr());
    assert_eq!(r.body.len(), 20 << 20);
    let block: Vec<u8> = (0..=255u8).cycle().take(1 << 20).collect();
    assert!(r.body.chunks(1 << 20).all(|c| c == block.as_slice()));
    assert!(r.largest_frame <= MAX_CHUNK);
}

#[test]
fn write_callable_and_file_wrapper() {
    let w = Worker::start(1);
    let mut c = w.connect();
    let r = c.get("/writer");
    assert_eq!((r.status(), r.text().as_str()), (200, "written returned"), "{}", w.stderr());
    let r = c.get("/file_wrapper");
    assert_eq!(r.status(), 200, "{}", w.stderr());
    assert_eq!(r.body, b"0123456789".repeat(1000));
}

#[test]
fn close_is_called_on_success_and_on_error() {
    let w = Worker::start(1);
    let record = w.dir.path().join("closed.txt");
    let mut c = w.connect();
    let mut h = head("GET", "/closing", "", BodyKind::Empty);
    h.environ.push((b"test.close_file".to_vec(), record.to_string_lossy().as_bytes().to_vec()));
    let r = c.request(h.clone(), b"");
    assert_eq!((r.status(), r.text().as_str()), (200, "part1 part2"), "{}", w.stderr());
    assert_eq!(std::fs::read_to_string(&record).expect("record"), "closed\n");
    h.query_string = b"fail".to_vec();
    let r = c.request(h, b"");
    let kind = r.abort.as_ref().map(|a| a.kind);
    assert_eq!(kind, Some(AbortKind::AppErrorAfterHead), "{r:?}");
    assert_eq!(std::fs::read_to_string(&record).expect("record"), "closed\nclosed\n");
    assert!(w.stderr().contains("failing mid-body"));
}

#[test]
fn exc_info_before_and_after_the_head() {
    let w = Worker::start(1);
    let mut c = w.connect();
    let r = c.get("/exc_before");
    assert_eq!((r.status(), r.text().as_str()), (500, "error page"), "{}", w.stderr());
    // One thread: an open idle connection keeps it, so close this one before the next.
    drop(c);
    let mut c = w.connect();
    let r = c.get("/exc_after");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text(), "partial");
    assert_eq!(r.abort.map(|a| a.kind), Some(AbortKind::AppErrorAfterHead));
    assert!(w.stderr().contains("too late"));
}

#[test]
fn each_app_failure_gives_app_error_and_the_worker_keeps_serving() {
    let w = Worker::start(2);
    let cases = [
        ("raise_early", "early failure"),
        ("not_iterable", "not iterable"),
        ("bad_header", "CR, LF or NUL"),
        ("hop_header", "hop-by-hop"),
        ("no_start", "before start_response was called"),
        ("yields_str", "yielded str, not bytes"),
        ("twice", "twice without exc_info"),
        ("panic_str_status", "status must be a str"),
    ];
    for (path, logged) in cases {
        let mut c = w.connect();
        let r = c.get(&format!("/{path}"));
        assert_eq!(r.abort.as_ref().map(|a| a.kind), Some(AbortKind::AppError), "{path}: {r:?}");
        assert!(r.head.is_none(), "{path}: head sent");
        let message = r.abort.map(|a| String::from_utf8_lossy(&a.message).into_owned());
        assert!(message.is_some_and(|m| m.contains(logged)), "{path}: abort message");
        let mut c = w.connect();
        let r = c.get("/simple");
        assert_eq!(r.status(), 200, "after {path}: {}", w.stderr());
        let log = w.stderr();
        assert!(log.contains(logged), "{path}: {logged:?} not logged:\n{log}");
    }
    let log = w.stderr();
    assert!(log.contains("Traceback (most recent call last)"), "{log}");
    // Logged as the worker's own JSON lines at ERROR (the router's relay levels them).
    let failures: Vec<&str> = log.lines().filter(|l| l.contains("early failure")).collect();
    assert!(!failures.is_empty(), "{log}");
    assert!(
        failures.iter().all(|l| l.starts_with('{') && l.contains("\"level\":\"ERROR\"")),
        "{log}"
    );
}

#[test]
fn keep_alive_with_unread_and_half_read_bodies() {
    let w = Worker::start(1);
    let mut c = w.connect();
    let body = vec![b'z'; 300 * 1024];
    let r = c.request(head("POST", "/ignore_body", "", BodyKind::Length(body.len() as u64)), &body);
    assert_eq!((r.status(), r.text().as_str()), (200, "ignored"));
    let r = c.request(head("POST", "/half_read", "", BodyKind::Chunked), &body);
    assert_eq!((r.status(), r.text().as_str()), (200, "half"));
    let r = c.get("/simple");
    assert_eq!((r.status(), r.text().as_str()), (200, "hello /simple"));
}

#[test]
fn an_input_kept_after_its_request_reads_nothing() {
    let w = Worker::start(1);
    let mut c = w.connect();
    let r = c.request(head("POST", "/keep_input", "", BodyKind::Length(4)), b"abcd");
    assert_eq!(r.text(), "kept");
    let r = c.request(head("POST", "/read_kept", "", BodyKind::Length(4)), b"next");
    assert_eq!(r.text(), "stale:");
}

#[test]
fn a_body_that_never_arrives_times_out() {
    let w = Worker::start_with(1, "testapps:dispatch", &["--read-timeout", "1"], |_| {});
    let mut c = w.connect();
    let frames = request_frames(head("POST", "/echo", "", BodyKind::Length(100)), b"abc");
    c.send(&frames[..2]);
    let started = std::time::Instant::now();
    let r = c.reply();
    assert_eq!(r.abort.map(|a| a.kind), Some(AbortKind::AppError), "{}", w.stderr());
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(w.stderr().contains("TimeoutError"), "{}", w.stderr());
}

#[test]
fn requests_run_concurrently_on_several_threads() {
    let w = Worker::start(4);
    let started = std::time::Instant::now();
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let mut c = w.connect();
            c.send(&request_frames(head("GET", "/sleep", "0.5", BodyKind::Empty), b""));
            c
        })
        .collect();
    for mut c in clients {
        assert_eq!(c.reply().text(), "slept");
    }
    assert!(started.elapsed() < std::time::Duration::from_millis(1900), "{:?}", started.elapsed());
}

#[test]
fn content_length_is_enforced() {
    let w = Worker::start(1);
    let mut c = w.connect();
    let r = c.get("/long_length");
    assert_eq!((r.status(), r.text().as_str(), r.ended), (200, "123", true), "{}", w.stderr());
    let r = c.get("/short_length");
    assert_eq!(r.text(), "12345");
    assert_eq!(r.abort.map(|a| a.kind), Some(AbortKind::AppErrorAfterHead));
    let r = c.request(head("HEAD", "/short_length", "", BodyKind::Empty), b"");
    assert_eq!((r.status(), r.ended), (200, true), "HEAD may declare a length it does not send");
}

#[test]
fn gc_freeze_freezes_at_load_and_after_the_first_request_and_cycles_are_still_collected() {
    let state = |c: &mut common::Client| -> (usize, String) {
        let text = c.get("/gc_state").text();
        let (n, collected) = text.split_once(' ').expect("two fields");
        (n.parse().expect("count"), collected.to_owned())
    };
    let w = Worker::start_with(1, "testapps:dispatch", &["--gc-freeze"], |_| {});
    let mut c = w.connect();
    let (at_load, collected) = state(&mut c);
    assert!(at_load > 1000, "modules frozen at load: {at_load}");
    assert_eq!(collected, "True", "new cycles are still collected");
    let (after, collected) = state(&mut c);
    assert!(after > at_load, "frozen again after the first request: {after} <= {at_load}");
    assert_eq!(collected, "True");
    let (later, _) = state(&mut c);
    assert_eq!(later, after, "only once");

    let w = Worker::start(1);
    let mut c = w.connect();
    assert_eq!(state(&mut c), (0, "True".to_owned()), "off without --gc-freeze");
}

#[test]
fn file_wrapper_of_a_regular_file_is_sent_whole_from_its_position_and_closed() {
    let w = Worker::start(1);
    let path = w.dir.path().join("big.bin");
    // Several frames' worth, and not a multiple of the frame size.
    let data: Vec<u8> = (0..(3 * 65536 + 1234)).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&path, &data).expect("write file");
    let p = path.to_string_lossy().into_owned();
    let mut c = w.connect();
    let mut get = |qs: String| c.request(head("GET", "/disk_file", &qs, BodyKind::Empty), b"");
    let r = get(format!("path={p}"));
    assert_eq!(r.status(), 200, "{}", w.stderr());
    assert!(r.body == data, "whole file: {} of {} bytes", r.body.len(), data.len());
    assert!(r.ended);
    let closed = std::fs::read_to_string(format!("{p}.closed")).unwrap_or_default();
    assert_eq!(closed, "closed", "close() of the wrapper's file");
    let r = get(format!("path={p}&skip=100000"));
    assert!(r.body == data[100_000..], "from the file's position");
    // A declared Content-Length caps what is sent.
    let r = get(format!("path={p}&skip=10&length=70000"));
    assert!(r.body == data[10..70_010], "cut to Content-Length: {} bytes", r.body.len());
    // The connection goes on serving.
    assert_eq!(c.get("/simple").status(), 200);
}

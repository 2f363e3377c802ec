//! PEP 3333 through the whole path (client → paddock → worker → app and back), with test apps
//! wrapped in `wsgiref.validate.validator`, which turns any environ or protocol violation by
//! the server into a failed request.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{repo_root, write, Response, Server};

struct Apps {
    server: Server,
    dir: tempfile::TempDir,
}

fn start_apps(extra: &str) -> Apps {
    let dir = tempfile::tempdir().expect("tempdir");
    let tenant = dir.path().join("apps");
    std::fs::create_dir_all(&tenant).expect("mkdir");
    common::private(&tenant);
    let apps = repo_root().join("tests/apps");
    let config = dir.path().join("paddock.toml");
    write(
        &config,
        &format!(
            r#"index = false
[tenants.apps]
dir = "{tenant}"
mount = "/apps"
app = "testapps:application"
python_path = ["{apps}"]
processes = 2
threads = 4
{extra}
"#,
            tenant = tenant.display(),
            apps = apps.display(),
        ),
    );
    let server = Server::start(&["--config", config.to_str().expect("utf-8")]);
    Apps { server, dir }
}

fn environ(r: &Response) -> serde_json_lite::Map {
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json_lite::parse_object(&r.text())
}

#[test]
fn environ_is_complete_and_valid() {
    let a = start_apps("");
    let s = &a.server;
    let host = format!("{}", s.addr);
    let r = s.request(
        format!(
            "GET /apps/env/x%20y?a=1&b=%20 HTTP/1.1\r\nHost: {host}\r\nX-Custom: one\r\nX-Custom: two\r\n\
             Cookie: a=1\r\nCookie: b=2\r\nX_Spoof: evil\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    let env = environ(&r);
    assert_eq!(env.str("REQUEST_METHOD"), "GET");
    assert_eq!(env.str("SCRIPT_NAME"), "/apps");
    assert_eq!(env.str("PATH_INFO"), "/env/x y");
    assert_eq!(env.str("QUERY_STRING"), "a=1&b=%20");
    assert_eq!(env.str("REQUEST_URI"), "/apps/env/x%20y?a=1&b=%20");
    assert_eq!(env.str("HTTP_HOST"), host, "Host passed exactly as sent");
    assert_eq!(env.str("SERVER_PORT"), s.addr.port().to_string());
    assert_eq!(env.str("SERVER_PROTOCOL"), "HTTP/1.1");
    assert_eq!(env.str("REMOTE_ADDR"), "127.0.0.1");
    assert_eq!(env.str("wsgi.url_scheme"), "http");
    assert_eq!(env.str("HTTP_X_CUSTOM"), "one, two");
    assert_eq!(env.str("HTTP_COOKIE"), "a=1; b=2");
    assert!(!env.has("HTTP_X_SPOOF"), "header names with `_` must be dropped");
    assert_eq!(env.raw("wsgi.multithread"), "true");
    assert_eq!(env.raw("wsgi.multiprocess"), "true");
    assert_eq!(env.raw("wsgi.run_once"), "false");
    assert_eq!(env.str("trac.env_path"), a.dir.path().join("apps").to_str().expect("utf-8"));
}

#[test]
fn post_of_5_mib_is_echoed_intact() {
    let a = start_apps("");
    let body: Vec<u8> =
        (0..5 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let mut req = format!(
        "POST /apps/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    let r = a.server.request(&req);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body.len(), body.len());
    assert!(r.body == body, "echoed body differs");
    assert!(r.header("X-Body-Sha256").is_some());
}

#[test]
fn chunked_request_body_is_streamed() {
    let a = start_apps("");
    let mut req = b"POST /apps/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    let mut expect = Vec::new();
    for i in 0..50u8 {
        let chunk = vec![i; 1000 + usize::from(i)];
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(&chunk);
        req.extend_from_slice(b"\r\n");
        expect.extend_from_slice(&chunk);
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let r = a.server.request(&req);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.body == expect,
        "chunked body echoed wrong ({} vs {} bytes)",
        r.body.len(),
        expect.len()
    );
}

#[test]
fn response_of_20_mib_is_streamed() {
    let a = start_apps("");
    let r = a.server.get("/apps/stream?mb=20");
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 20 << 20);
    let block: Vec<u8> = (0..=255u8).collect();
    assert!(r.body.chunks(256).all(|c| c == block.as_slice()), "pattern corrupted");
}

#[test]
fn app_error_is_a_500_for_that_request_only() {
    let a = start_apps("");
    let r = a.server.get("/apps/fail");
    assert_eq!(r.status, 500);
    assert!(!r.text().contains("deliberate"), "tracebacks never reach clients");
    for _ in 0..4 {
        assert_eq!(a.server.get("/apps/env").status, 200, "the worker keeps serving");
    }
    common::eventually("traceback logged with the tenant", Duration::from_secs(10), || {
        let log = a.server.log_text();
        log.lines().any(|l| l.contains("RuntimeError: deliberate failure") && l.contains("apps"))
    });
}

#[test]
fn head_request_has_no_body() {
    let a = start_apps("");
    let r = a.server.request(b"HEAD /apps/env HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
}

#[test]
fn body_over_max_body_is_413() {
    let a = start_apps("max_body = \"1K\"");
    let mut req =
        b"POST /apps/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2048\r\nConnection: close\r\n\r\n"
            .to_vec();
    req.extend_from_slice(&[b'x'; 2048]);
    assert_eq!(a.server.request(&req).status, 413);
}

#[test]
fn many_concurrent_requests() {
    let a = start_apps("");
    std::thread::scope(|sc| {
        let hs: Vec<_> = (0..16)
            .map(|i| {
                let s = &a.server;
                sc.spawn(move || s.get(&format!("/apps/env?i={i}")))
            })
            .collect();
        for (i, h) in hs.into_iter().enumerate() {
            let r = h.join().expect("thread");
            assert_eq!(environ(&r).str("QUERY_STRING"), format!("i={i}"));
        }
    });
}

#[test]
fn app_that_cannot_be_imported_gives_503_not_a_hang() {
    let dir = tempfile::tempdir().expect("tempdir");
    common::private(dir.path());
    let config = dir.path().join("paddock.toml");
    write(
        &config,
        &format!(
            "index = false\n[tenants.broken]\ndir = \"{}\"\nmount = \"/b\"\napp = \"no_such_module_here:application\"\nprocesses = 1\n",
            dir.path().display()
        ),
    );
    let server = Server::start(&["--config", config.to_str().expect("utf-8")]);
    let r = server.get("/b/");
    assert_eq!(r.status, 503);
    assert!(r.header("Retry-After").is_some());
    let log = server.log_text();
    assert!(log.contains("No module named") && log.contains("no_such_module_here"), "{log}");
    let _ = Path::new("unused");
}

/// A tiny JSON reader for the flat objects the test app returns (keeps the e2e package free of
/// dependencies beyond tempfile).
mod serde_json_lite {
    pub struct Map(Vec<(String, String)>);

    impl Map {
        pub fn raw(&self, k: &str) -> &str {
            self.0
                .iter()
                .find(|(a, _)| a == k)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("no {k}"))
        }
        pub fn str(&self, k: &str) -> String {
            let v = self.raw(k);
            assert!(v.starts_with('"'), "{k} is not a string: {v}");
            unescape(&v[1..v.len() - 1])
        }
        pub fn has(&self, k: &str) -> bool {
            self.0.iter().any(|(a, _)| a == k)
        }
    }

    fn unescape(s: &str) -> String {
        let mut out = String::new();
        let mut it = s.chars();
        while let Some(c) = it.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match it.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('u') => {
                    let hex: String = it.by_ref().take(4).collect();
                    out.push(
                        u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32).unwrap_or('?'),
                    );
                }
                Some(o) => out.push(o),
                None => {}
            }
        }
        out
    }

    /// Parse `{"k": v, ...}` where values are strings, numbers, booleans or arrays.
    pub fn parse_object(s: &str) -> Map {
        let b = s.trim().as_bytes();
        assert!(b.first() == Some(&b'{'), "not an object: {s}");
        let mut i = 1;
        let mut out = Vec::new();
        let skip_ws = |i: &mut usize| {
            while *i < b.len() && (b[*i] as char).is_whitespace() {
                *i += 1;
            }
        };
        let read_str = |i: &mut usize| -> (usize, usize) {
            let start = *i;
            *i += 1;
            while b[*i] != b'"' {
                if b[*i] == b'\\' {
                    *i += 1;
                }
                *i += 1;
            }
            *i += 1;
            (start, *i)
        };
        loop {
            skip_ws(&mut i);
            if b[i] == b'}' {
                break;
            }
            let (ks, ke) = read_str(&mut i);
            let key = unescape(&s.trim()[ks + 1..ke - 1]);
            skip_ws(&mut i);
            i += 1; // ':'
            skip_ws(&mut i);
            let vs = i;
            if b[i] == b'"' {
                read_str(&mut i);
            } else {
                let mut depth = 0;
                while i < b.len() && !(depth == 0 && (b[i] == b',' || b[i] == b'}')) {
                    match b[i] {
                        b'[' => depth += 1,
                        b']' => depth -= 1,
                        _ => {}
                    }
                    i += 1;
                }
            }
            out.push((key, s.trim()[vs..i].trim().to_string()));
            skip_ws(&mut i);
            if b[i] == b',' {
                i += 1;
            }
        }
        Map(out)
    }
}

#[test]
fn raw_8bit_request_target_reaches_the_app_byte_for_byte() {
    let a = start_apps("");
    let r = a.server.request(
        b"GET /apps/wiki/\xe9t\xe9?q=\xff HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let env = environ(&r);
    // PEP 3333: one latin-1 character per byte.
    assert_eq!(env.str("PATH_INFO"), "/wiki/\u{e9}t\u{e9}");
    assert_eq!(env.str("REQUEST_URI"), "/apps/wiki/\u{e9}t\u{e9}?q=\u{ff}");
    assert_eq!(env.str("QUERY_STRING"), "q=\u{ff}");
    // The same bytes percent-encoded give the same PATH_INFO.
    let r2 = a.server.get("/apps/wiki/%E9t%E9");
    assert_eq!(environ(&r2).str("PATH_INFO"), "/wiki/\u{e9}t\u{e9}");
}

#[test]
fn dot_segments_inside_the_app_are_passed_as_sent() {
    let a = start_apps("");
    let r = a.server.get("/apps/a/b/../c/./d");
    assert_eq!(environ(&r).str("PATH_INFO"), "/a/b/../c/./d");
}

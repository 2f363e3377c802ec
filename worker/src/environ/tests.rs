use paddock_proto::{BodyKind, RequestHead};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use super::*;

fn h(pairs: &[(&str, &[u8])]) -> Vec<(Vec<u8>, Vec<u8>)> {
    pairs.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.to_vec())).collect()
}

fn get(entries: &[(String, Vec<u8>)], key: &str) -> Option<Vec<u8>> {
    entries.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

#[test]
fn headers_map_to_cgi_names() {
    let e = header_entries(&h(&[
        ("Host", b"example.org:8080"),
        ("X-Forwarded-For", b"10.0.0.1"),
        ("content-type", b"text/plain"),
        ("Content-Length", b"5"),
        ("accept", b"a"),
        ("Accept", b"b"),
    ]));
    assert_eq!(get(&e, "HTTP_HOST").as_deref(), Some(&b"example.org:8080"[..]));
    assert_eq!(get(&e, "HTTP_X_FORWARDED_FOR").as_deref(), Some(&b"10.0.0.1"[..]));
    assert_eq!(get(&e, "CONTENT_TYPE").as_deref(), Some(&b"text/plain"[..]));
    assert_eq!(get(&e, "CONTENT_LENGTH").as_deref(), Some(&b"5"[..]));
    assert_eq!(get(&e, "HTTP_ACCEPT").as_deref(), Some(&b"a, b"[..]));
    assert!(get(&e, "HTTP_CONTENT_TYPE").is_none());
    assert!(get(&e, "HTTP_CONTENT_LENGTH").is_none());
}

#[test]
fn cookies_are_joined_with_semicolons() {
    let e = header_entries(&h(&[("Cookie", b"a=1"), ("cookie", b"b=2")]));
    assert_eq!(get(&e, "HTTP_COOKIE").as_deref(), Some(&b"a=1; b=2"[..]));
}

#[test]
fn underscore_and_invalid_names_are_dropped() {
    let e = header_entries(&h(&[
        ("X_Forwarded_For", b"evil"),
        ("X-Forwarded-For", b"good"),
        ("Bad Name", b"x"),
        ("", b"x"),
    ]));
    assert_eq!(e, vec![("HTTP_X_FORWARDED_FOR".to_owned(), b"good".to_vec())]);
}

fn statics(py: Python<'_>) -> Statics {
    Statics {
        version: PyTuple::new(py, [1, 0]).expect("tuple").unbind(),
        errors: py.None(),
        file_wrapper: py.None(),
        multithread: true,
        multiprocess: false,
    }
}

#[test]
fn environ_decodes_latin1_paths_and_utf8_extras() {
    Python::attach(|py| {
        let head = RequestHead {
            method: b"GET".to_vec(),
            script_name: b"/trac/site".to_vec(),
            path_info: b"/wiki/caf\xe9".to_vec(),
            query_string: b"a=1".to_vec(),
            request_uri: b"/trac/site/wiki/caf%E9?a=1".to_vec(),
            protocol: b"HTTP/1.1".to_vec(),
            scheme: b"https".to_vec(),
            server_name: b"example.org".to_vec(),
            server_port: 443,
            remote_addr: b"192.0.2.1".to_vec(),
            remote_port: 5555,
            body: BodyKind::Empty,
            headers: h(&[("Host", b"Example.org"), ("X-Name", b"\xff")]),
            environ: h(&[("REMOTE_USER", "jo\u{e9}".as_bytes()), ("raw", b"\xe9")]),
        };
        let env = build(py, &statics(py), &head, py.None().into_bound(py)).expect("environ");
        let s = |k: &str| -> String {
            env.get_item(k).expect("get").expect(k).extract::<String>().expect("str")
        };
        assert_eq!(s("PATH_INFO"), "/wiki/caf\u{e9}");
        assert_eq!(s("SCRIPT_NAME"), "/trac/site");
        assert_eq!(s("HTTP_HOST"), "Example.org");
        assert_eq!(s("HTTP_X_NAME"), "\u{ff}");
        assert_eq!(s("REMOTE_USER"), "jo\u{e9}");
        assert_eq!(s("raw"), "\u{e9}");
        assert_eq!(s("SERVER_PORT"), "443");
        assert_eq!(s("REMOTE_PORT"), "5555");
        assert_eq!(s("wsgi.url_scheme"), "https");
        assert!(env.get_item("CONTENT_TYPE").expect("get").is_none());
        let multithread = env.get_item("wsgi.multithread").expect("get").expect("set");
        assert!(multithread.extract::<bool>().expect("bool"));
        let _: &Bound<'_, PyDict> = &env;
    });
}

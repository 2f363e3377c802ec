//! Building the PEP 3333 environ dict of one request, with the GIL held, as each worker thread
//! does before calling the app.
//!
//! `cargo bench -p paddock-worker --bench environ` (add `-- --test` for a one-pass smoke run).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use paddock_proto::{BodyKind, RequestHead};
use paddock_worker::bench::{build_environ, Statics};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

fn pairs(items: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    items.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())).collect()
}

/// A browser's GET of a Trac wiki page as the router hands it over: 12 headers, 3 extras.
fn request_head() -> RequestHead {
    RequestHead {
        method: b"GET".to_vec(),
        script_name: b"/trac/alpha".to_vec(),
        path_info: b"/wiki/WikiStart".to_vec(),
        query_string: b"version=3&action=diff".to_vec(),
        request_uri: b"/trac/alpha/wiki/WikiStart?version=3&action=diff".to_vec(),
        protocol: b"HTTP/1.1".to_vec(),
        scheme: b"https".to_vec(),
        server_name: b"trac.example.org".to_vec(),
        server_port: 443,
        remote_addr: b"203.0.113.42".to_vec(),
        remote_port: 51234,
        body: BodyKind::Empty,
        headers: pairs(&[
            ("Host", "trac.example.org"),
            (
                "User-Agent",
                "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
            ),
            (
                "Accept",
                "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,\
                 image/webp,*/*;q=0.8",
            ),
            ("Accept-Language", "en-GB,en;q=0.7,de;q=0.3"),
            ("Accept-Encoding", "gzip, deflate, br, zstd"),
            ("Referer", "https://trac.example.org/trac/alpha/timeline"),
            ("Cookie", "trac_form_token=5f2c1e0a9b8d7c6e4f3a2b1c; trac_session=0123456789abcdef"),
            ("Connection", "keep-alive"),
            ("Upgrade-Insecure-Requests", "1"),
            ("Sec-Fetch-Dest", "document"),
            ("Sec-Fetch-Mode", "navigate"),
            ("Sec-Fetch-Site", "same-origin"),
        ]),
        environ: pairs(&[
            ("trac.env_path", "/srv/trac/sites/alpha"),
            ("trac.locale", "en_GB"),
            ("trac.base_url", "https://trac.example.org/trac/alpha"),
        ]),
    }
}

fn environ(c: &mut Criterion) {
    let head = request_head();
    Python::attach(|py| {
        let statics = Statics {
            version: PyTuple::new(py, [1, 0]).expect("tuple").unbind(),
            errors: py.import("sys").and_then(|m| m.getattr("stderr")).expect("stderr").unbind(),
            file_wrapper: py.None(),
            multithread: true,
            multiprocess: true,
        };
        let input = py.None().into_bound(py);
        let env = build_environ(py, &statics, &head, input.clone()).expect("environ");
        assert_eq!(env.len(), 12 + 9 + 10 + 3, "every entry is there");
        c.bench_function("environ_build_12_headers", |b| {
            b.iter(|| {
                build_environ(py, &statics, black_box(&head), input.clone()).expect("environ")
            })
        });
    });
}

criterion_group!(benches, environ);
criterion_main!(benches);

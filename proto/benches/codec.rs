//! Codec micro-benchmarks: the frames every request crosses the router–worker socket with.
//!
//! `cargo bench -p paddock-proto` (add `-- --test` for a one-pass smoke run).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use paddock_proto::{decode, encode, BodyKind, Frame, Hello, RequestHead, ResponseHead, VERSION};

fn pairs(items: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    items.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())).collect()
}

/// What the router sends for a browser's GET of a Trac wiki page: 12 headers, 3 extras.
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

/// What a worker answers for a small Trac page: head, one body chunk, End.
fn response_frames() -> Vec<Frame> {
    let head = ResponseHead {
        status: 200,
        reason: b"OK".to_vec(),
        headers: pairs(&[
            ("Content-Type", "text/html;charset=utf-8"),
            ("Content-Length", "2048"),
            ("Cache-Control", "must-revalidate"),
            ("Expires", "Fri, 01 Jan 1999 00:00:00 GMT"),
            ("Set-Cookie", "trac_form_token=5f2c1e0a9b8d7c6e4f3a2b1c; Path=/trac/alpha"),
            ("Content-Security-Policy", "frame-ancestors 'self'"),
            ("X-Frame-Options", "SAMEORIGIN"),
        ]),
    };
    vec![Frame::Response(head), Frame::Body(vec![b'x'; 2048]), Frame::End]
}

fn encode_all(frames: &[Frame], out: &mut Vec<u8>) {
    for f in frames {
        encode(f, out);
    }
}

/// Decodes every frame in `buf`; the count keeps the work observable.
fn decode_all(mut buf: &[u8]) -> usize {
    let mut n = 0;
    while let Ok(Some((frame, used))) = decode(buf) {
        black_box(frame);
        buf = &buf[used..];
        n += 1;
    }
    n
}

fn request(c: &mut Criterion) {
    let head = Frame::Request(request_head());
    let mut wire = Vec::new();
    encode(&head, &mut wire);
    let mut g = c.benchmark_group("request_head");
    g.throughput(Throughput::Bytes(wire.len() as u64));
    g.bench_function("encode", |b| {
        let mut out = Vec::with_capacity(wire.len());
        b.iter(|| {
            out.clear();
            encode(black_box(&head), &mut out);
            black_box(out.len())
        })
    });
    g.bench_function("encode_fresh_vec", |b| {
        b.iter(|| {
            let mut out = Vec::new();
            encode(black_box(&head), &mut out);
            out
        })
    });
    g.bench_function("decode", |b| b.iter(|| decode(black_box(&wire))));
    g.finish();
}

fn response(c: &mut Criterion) {
    let frames = response_frames();
    let mut wire = Vec::new();
    encode_all(&frames, &mut wire);
    let mut g = c.benchmark_group("response_head_body_end");
    g.throughput(Throughput::Bytes(wire.len() as u64));
    g.bench_function("encode", |b| {
        let mut out = Vec::with_capacity(wire.len());
        b.iter(|| {
            out.clear();
            encode_all(black_box(&frames), &mut out);
            black_box(out.len())
        })
    });
    g.bench_function("decode", |b| b.iter(|| decode_all(black_box(&wire))));
    g.finish();
}

/// Buffers holding what each side reads for one request in a single `read`: the worker gets
/// Hello, Request, End; the router gets Hello, Response, Body, End.
fn stream(c: &mut Criterion) {
    let hello = Frame::Hello(Hello { version: VERSION, pid: 4242 });
    let mut to_worker = Vec::new();
    encode_all(&[hello.clone(), Frame::Request(request_head()), Frame::End], &mut to_worker);
    let mut to_router = Vec::new();
    encode_all(&[hello], &mut to_router);
    encode_all(&response_frames(), &mut to_router);
    assert_eq!(decode_all(&to_worker), 3, "fixture decodes whole");
    assert_eq!(decode_all(&to_router), 4, "fixture decodes whole");
    let mut g = c.benchmark_group("stream_decode");
    g.throughput(Throughput::Bytes(to_worker.len() as u64));
    g.bench_function("worker_side_3_frames", |b| b.iter(|| decode_all(black_box(&to_worker))));
    g.throughput(Throughput::Bytes(to_router.len() as u64));
    g.bench_function("router_side_4_frames", |b| b.iter(|| decode_all(black_box(&to_router))));
    g.finish();
}

criterion_group!(benches, request, response, stream);
criterion_main!(benches);

//! Codec micro-benchmarks: the frames every request crosses the router–worker socket with.
//!
//! `cargo bench -p paddock-proto` (add `-- --test` for a one-pass smoke run).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use paddock_proto::fixtures::pairs;
use paddock_proto::{decode, encode, Frame, Hello, ResponseHead, VERSION};

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
    let head = Frame::Request(paddock_proto::fixtures::browser_get());
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
    encode_all(
        &[hello.clone(), Frame::Request(paddock_proto::fixtures::browser_get()), Frame::End],
        &mut to_worker,
    );
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

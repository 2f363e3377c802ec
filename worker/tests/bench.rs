//! Rough throughput figures (ignored by default; run with
//! `cargo test --release -p paddock-worker --test bench -- --ignored --nocapture --test-threads 1`).

mod common;

use std::time::{Duration, Instant};

use common::{head, Worker};
use paddock_proto::BodyKind;

/// CPU time the worker process has used so far (all its threads), from `/proc`.
fn cpu_time(pid: i32) -> Duration {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Duration::ZERO };
    let ns: u64 = tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(ns)
}

#[test]
#[ignore]
fn figures() {
    let w = Worker::start(4);
    let mut c = w.connect();
    let n = 20_000;
    for _ in 0..100 {
        c.get("/simple");
    }
    let frames = common::request_frames(head("GET", "/simple", "", BodyKind::Empty), b"");
    let t = Instant::now();
    for _ in 0..n {
        c.send(&frames);
        assert_eq!(c.reply().status(), 200);
    }
    let dt = t.elapsed();
    println!(
        "GET /simple, one connection: {:.0} req/s, {:.1} µs/request",
        n as f64 / dt.as_secs_f64(),
        dt.as_micros() as f64 / n as f64
    );

    let t = Instant::now();
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let mut c = w.connect();
            std::thread::spawn(move || {
                for _ in 0..n / 4 {
                    assert_eq!(c.get("/simple").status(), 200);
                }
            })
        })
        .collect();
    for h in clients {
        h.join().expect("client");
    }
    let dt = t.elapsed();
    println!("GET /simple, 4 connections: {:.0} req/s", n as f64 / dt.as_secs_f64());

    let t = Instant::now();
    let r = c.request(head("GET", "/stream", "200", BodyKind::Empty), b"");
    let dt = t.elapsed();
    assert_eq!(r.body.len(), 200 << 20);
    println!("200 MiB streamed response: {:.0} MiB/s", 200.0 / dt.as_secs_f64());

    let body = vec![7u8; 50 << 20];
    let t = Instant::now();
    let r = c.request(head("POST", "/echo", "", BodyKind::Length(body.len() as u64)), &body);
    let dt = t.elapsed();
    assert_eq!(r.body.len(), body.len());
    println!("50 MiB POST echoed: {:.0} MiB/s (both ways)", 50.0 / dt.as_secs_f64());
}

/// A new connection per request, as the router does: this is where idle threads waiting for
/// connections matter.
#[test]
#[ignore]
fn connection_per_request() {
    for (threads, clients) in [(4, 1), (16, 1), (16, 4), (64, 1)] {
        let w = Worker::start(threads);
        for _ in 0..200 {
            assert_eq!(w.one_shot(head("GET", "/simple", "", BodyKind::Empty)).status(), 200);
        }
        let n = 20_000;
        let cpu = cpu_time(w.pid());
        let t = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..clients {
                s.spawn(|| {
                    for _ in 0..n / clients {
                        let r = w.one_shot(head("GET", "/simple", "", BodyKind::Empty));
                        assert_eq!(r.status(), 200);
                    }
                });
            }
        });
        let dt = t.elapsed();
        let cpu = cpu_time(w.pid()) - cpu;
        println!(
            "connection per request, {threads} threads, {clients} client(s): {:.0} req/s, \
             worker CPU {:.1} µs/request",
            n as f64 / dt.as_secs_f64(),
            cpu.as_nanos() as f64 / 1000.0 / n as f64
        );
    }
}

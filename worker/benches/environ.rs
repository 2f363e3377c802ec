//! Building the PEP 3333 environ dict of one request, with the GIL held, as each worker thread
//! does before calling the app.
//!
//! `cargo bench -p paddock-worker --bench environ` (add `-- --test` for a one-pass smoke run).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use paddock_worker::bench::{build_environ, Statics};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

fn environ(c: &mut Criterion) {
    let head = paddock_proto::fixtures::browser_get();
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

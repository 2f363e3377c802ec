//! Replays every committed fuzz corpus file (fuzz/corpus/<target>/*) and every regression input
//! (fuzz/regressions/<target>/*) through the same function the libFuzzer target calls, on the
//! stable toolchain: a finding once fixed stays fixed without nightly. docs/fuzzing.md.

#[path = "../../fuzz/src/targets.rs"]
#[allow(clippy::unwrap_used, dead_code)]
mod targets;

use std::path::Path;

#[test]
fn every_corpus_file_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut total = 0;
    for (name, run) in targets::TARGETS {
        let mut files = 0;
        for dir in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else { continue };
            let mut paths: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
            paths.sort();
            for p in paths {
                let data = std::fs::read(&p).unwrap();
                let r = std::panic::catch_unwind(|| run(&data));
                assert!(r.is_ok(), "{name}: {} fails its target", p.display());
                files += 1;
            }
        }
        assert!(files > 0, "target {name} has no committed corpus");
        total += files;
    }
    eprintln!("replayed {total} corpus files");
}

/// Writes the protocol seeds (one encoded stream per file) into fuzz/corpus; run by
/// scripts/fuzz-seeds.sh with `--ignored`. The other targets' seeds come from the unit tests'
/// literals (same script).
#[test]
#[ignore = "writes seed files; scripts/fuzz-seeds.sh"]
fn write_protocol_seeds() {
    use paddock_proto::fixtures::browser_get;
    use paddock_proto::zygote::{self, Creds, WorkerSetup, ZygoteMsg};
    use paddock_proto::{
        self as codec, Abort, AbortKind, BodyKind, Frame, Hello, Ready, ResponseHead, Retire,
    };

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let mut post = browser_get();
    post.body = BodyKind::Length(5);
    post.method = b"POST".to_vec();
    let mut chunked = browser_get();
    chunked.body = BodyKind::Chunked;
    let streams: Vec<Vec<Frame>> = vec![
        vec![Frame::Hello(Hello { version: 1, pid: 42 })],
        vec![Frame::Request(browser_get()), Frame::End],
        vec![Frame::Request(post), Frame::Body(b"a=1&b".to_vec()), Frame::End],
        vec![
            Frame::Request(chunked),
            Frame::Body(vec![0xff; 300]),
            Frame::Body(vec![]),
            Frame::End,
        ],
        vec![
            Frame::Response(ResponseHead {
                status: 200,
                reason: b"OK".to_vec(),
                headers: vec![(b"Content-Type".to_vec(), b"text/html".to_vec())],
            }),
            Frame::Body(b"<html>".to_vec()),
            Frame::End,
        ],
        vec![Frame::Abort(Abort { kind: AbortKind::AppErrorAfterHead, message: b"boom".to_vec() })],
        vec![Frame::Ready(Ready { pid: 7 }), Frame::Retire(Retire { pid: 7, requests: 1000 })],
        vec![Frame::Goodbye],
    ];
    let dir = root.join("frame_codec");
    std::fs::create_dir_all(&dir).unwrap();
    for (i, s) in streams.iter().enumerate() {
        let mut out = Vec::new();
        for f in s {
            codec::encode(f, &mut out);
        }
        std::fs::write(dir.join(format!("seed-{i}")), out).unwrap();
    }
    let dir = root.join("zygote_proto");
    std::fs::create_dir_all(&dir).unwrap();
    let msgs = [
        ZygoteMsg::Spawn { id: 1 },
        ZygoteMsg::Spawned { id: 1, pid: 4242 },
        ZygoteMsg::SpawnFailed { id: 2, message: b"setuid: EPERM".to_vec() },
        ZygoteMsg::Exited { pid: 4242, status: 9 },
    ];
    let mut all = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        let mut out = Vec::new();
        zygote::encode(m, &mut out);
        all.extend_from_slice(&out);
        std::fs::write(dir.join(format!("seed-{i}")), out).unwrap();
    }
    std::fs::write(dir.join("seed-stream"), all).unwrap();
    let setup = WorkerSetup {
        args: vec![b"paddock-worker".to_vec(), b"--app".to_vec(), b"trac.wsgi".to_vec()],
        env: vec![(b"LANG".to_vec(), b"C.UTF-8".to_vec())],
        cwd: b"/srv/trac/sites/alpha".to_vec(),
        umask: 0o027,
        creds: Some(Creds { uid: 1001, gid: 1001, groups: vec![1001, 33] }),
    };
    let mut out = Vec::new();
    zygote::encode_setup(&setup, &mut out).unwrap();
    std::fs::write(dir.join("seed-setup"), out).unwrap();
}

use std::io::Write;
use std::os::unix::net::UnixStream;

use paddock_proto::{encode, BodyKind, Frame};

use super::*;

fn side_with(frames: &[Frame]) -> (ReadSide, UnixStream) {
    let (mut a, b) = UnixStream::pair().expect("socketpair");
    let mut buf = Vec::new();
    for f in frames {
        encode(f, &mut buf);
    }
    a.write_all(&buf).expect("write");
    (ReadSide::new(FrameReader::new(b)), a)
}

fn body(b: &[u8]) -> Frame {
    Frame::Body(b.to_vec())
}

#[test]
fn length_body_never_returns_more_than_declared() {
    let (mut s, _peer) = side_with(&[body(b"hello "), body(b"world, too long"), Frame::End]);
    s.begin(BodyKind::Length(11));
    assert_eq!(s.read(Some(3)).expect("read"), b"hel");
    assert_eq!(s.read(None).expect("read"), b"lo world");
    assert_eq!(s.read(None).expect("read"), b"");
    s.finish().expect("drain");
}

#[test]
fn chunked_body_lines() {
    let (mut s, _peer) = side_with(&[body(b"a\nbb"), body(b"b\n"), body(b"tail"), Frame::End]);
    s.begin(BodyKind::Chunked);
    assert_eq!(s.readline(None).expect("line"), b"a\n");
    assert_eq!(s.readline(Some(2)).expect("line"), b"bb");
    assert_eq!(s.readline(None).expect("line"), b"b\n");
    assert_eq!(s.readline(None).expect("line"), b"tail");
    assert_eq!(s.readline(None).expect("line"), b"");
}

#[test]
fn finish_drains_to_end_and_leaves_next_request() {
    let next = Frame::Request(Default::default());
    let (r, _peer) = side_with(&[body(b"unread"), body(b"more"), Frame::End, next.clone()]);
    let shared = ReadShared::new(r.frames);
    let seq = shared.begin(BodyKind::Length(10));
    assert!(shared.is_current(seq) && shared.lock().is_current(seq));
    shared.finish().expect("drain");
    assert!(!shared.is_current(seq) && !shared.lock().is_current(seq));
    assert_eq!(shared.lock().frames().next_frame().expect("frame"), Some(next));
}

#[test]
fn short_body_and_abort_are_errors() {
    let (mut s, _peer) = side_with(&[body(b"abc"), Frame::End]);
    s.begin(BodyKind::Length(10));
    assert_eq!(s.read(None).expect_err("short").kind(), io::ErrorKind::UnexpectedEof);
    let abort = Frame::Abort(paddock_proto::Abort {
        kind: paddock_proto::AbortKind::ClientGone,
        message: vec![],
    });
    let (mut s, _peer) = side_with(&[body(b"abc"), abort]);
    s.begin(BodyKind::Chunked);
    assert_eq!(s.read(None).expect_err("abort").kind(), io::ErrorKind::ConnectionAborted);
    assert!(!s.broken, "an abort leaves the connection usable");
}

#[test]
fn eof_inside_body_breaks_the_connection() {
    let (mut s, peer) = side_with(&[body(b"abc")]);
    drop(peer);
    s.begin(BodyKind::Chunked);
    assert!(s.read(None).is_err());
    assert!(s.broken);
}

#[test]
fn empty_body_reads_nothing_without_touching_the_socket() {
    let (mut s, _peer) = side_with(&[]);
    s.begin(BodyKind::Empty);
    assert_eq!(s.read(None).expect("read"), b"");
}

//! The 8-bit scanner's unit and property tests (over 500 lines: many small framing cases).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use super::*;
use proptest::prelude::*;
use std::task::Waker;

/// What the scanner made of one input.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    out: Vec<u8>,
    entries: Vec<Option<Vec<u8>>>,
    pass: bool,
}

fn drain(targets: &RawTargets) -> Vec<Option<Vec<u8>>> {
    targets.lock().drain(..).map(|e| e.original).collect()
}

/// Feeds `input` to a bare scanner in pieces of the given sizes (cycled; 0 means "the rest").
fn scan_pieces(input: &[u8], sizes: &[usize]) -> Outcome {
    let targets = RawTargets::new();
    let mut sc = Scanner::new(targets.clone());
    let mut out = Vec::new();
    let mut rest = input;
    let mut sizes = sizes.iter().copied().cycle();
    while !rest.is_empty() {
        let n = match sizes.next() {
            Some(0) | None => rest.len(),
            Some(n) => n.min(rest.len()),
        };
        let (mut piece, next) = rest.split_at(n);
        rest = next;
        while let Some(i) = sc.scan(piece) {
            out.extend_from_slice(&piece[..i]);
            out.extend_from_slice(&percent(piece[i]));
            piece = &piece[i + 1..];
        }
        out.extend_from_slice(piece);
    }
    Outcome { out, entries: drain(&targets), pass: sc.state == State::Pass }
}

/// A reader that hands out its data in pieces of the given sizes (cycled), never pending.
struct Pieces {
    data: Vec<u8>,
    pos: usize,
    sizes: Vec<usize>,
    turn: usize,
}

impl AsyncRead for Pieces {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let want = this.sizes.get(this.turn % this.sizes.len().max(1)).copied().unwrap_or(0);
        this.turn += 1;
        let left = this.data.len() - this.pos;
        let n = if want == 0 { left } else { want.min(left) }.min(buf.remaining());
        buf.put_slice(&this.data[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// Reads all of `input` through [`EightBit`], the inner reader delivering pieces of `sizes`
/// and the caller offering buffers of `cap` bytes (with `prefill` bytes already filled).
fn through_adapter(input: &[u8], sizes: &[usize], cap: usize, prefill: usize) -> Outcome {
    through(EightBit::new, input, sizes, cap, prefill)
}

/// [`through_adapter`] with the adapter `make` builds.
fn through(
    make: fn(Pieces) -> EightBit<Pieces>,
    input: &[u8],
    sizes: &[usize],
    cap: usize,
    prefill: usize,
) -> Outcome {
    let inner = Pieces { data: input.to_vec(), pos: 0, sizes: sizes.to_vec(), turn: 0 };
    let mut io = make(inner);
    let targets = io.targets();
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    let mut storage = vec![0u8; cap + prefill];
    loop {
        let mut rb = ReadBuf::new(&mut storage);
        rb.put_slice(&vec![b'#'; prefill]);
        match Pin::new(&mut io).poll_read(&mut cx, &mut rb) {
            Poll::Ready(Ok(())) => {}
            other => panic!("unexpected {other:?}"),
        }
        assert!(rb.filled()[..prefill].iter().all(|&b| b == b'#'), "prefix clobbered");
        let got = &rb.filled()[prefill..];
        if got.is_empty() {
            break;
        }
        out.extend_from_slice(got);
    }
    Outcome { out, entries: drain(&targets), pass: io.is_passthrough() }
}

/// Checks `input` against the expectation in every way of cutting it we can afford.
fn check(input: &[u8], out: &[u8], entries: &[Option<&[u8]>], pass: bool) {
    let want = Outcome {
        out: out.to_vec(),
        entries: entries.iter().map(|e| e.map(<[u8]>::to_vec)).collect(),
        pass,
    };
    assert_eq!(scan_pieces(input, &[0]), want, "whole input");
    assert_eq!(scan_pieces(input, &[1]), want, "one byte at a time");
    for cut in 1..input.len() {
        assert_eq!(scan_pieces(input, &[cut, 0]), want, "split at {cut}");
    }
    for cap in [1, 2, 3, 5, 4096] {
        for sizes in [&[0][..], &[1], &[7, 3]] {
            let got = through_adapter(input, sizes, cap, 0);
            assert_eq!(got, want, "adapter, reads of {sizes:?}, buffer {cap}");
        }
    }
    assert_eq!(through_adapter(input, &[0], 4, 3), want, "adapter, prefilled buffer");
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

const GET_8BIT: &[u8] = b"GET /caf\xe9 HTTP/1.1\r\nHost: t\r\n\r\n";
const GET_8BIT_OUT: &[u8] = b"GET /caf%E9 HTTP/1.1\r\nHost: t\r\n\r\n";

#[test]
fn single_get_with_8bit_target() {
    check(
        b"GET /wiki/\xe9t\xe9 HTTP/1.1\r\nHost: trac\r\n\r\n",
        b"GET /wiki/%E9t%E9 HTTP/1.1\r\nHost: trac\r\n\r\n",
        &[Some(b"/wiki/\xe9t\xe9")],
        false,
    );
}

#[test]
fn escapes_are_uppercase_and_cover_every_high_byte() {
    let target: Vec<u8> = (0x80..=0xffu8).collect();
    let input = cat(&[b"GET /", &target, b" HTTP/1.1\r\n\r\n"]);
    let escaped: Vec<u8> = target.iter().flat_map(|&b| format!("%{b:02X}").into_bytes()).collect();
    let out = cat(&[b"GET /", &escaped, b" HTTP/1.1\r\n\r\n"]);
    let original = cat(&[b"/", &target]);
    check(&input, &out, &[Some(&original)], false);
}

#[test]
fn ascii_in_targets_is_never_touched() {
    // `%`, existing escapes, query and fragment characters stay as sent: no entry either.
    let input = b"GET /a%e9%zz?x=%41&y=~#f HTTP/1.1\r\n\r\nOPTIONS * HTTP/1.1\r\n\r\n";
    check(input, input, &[None, None], false);
}

#[test]
fn pipelined_only_second_rewritten() {
    let input = cat(&[
        b"GET /plain HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /b\xff?q=\xc3\xa9 HTTP/1.1\r\n\r\n",
    ]);
    let out =
        cat(&[b"GET /plain HTTP/1.1\r\nHost: t\r\n\r\n", b"GET /b%FF?q=%C3%A9 HTTP/1.1\r\n\r\n"]);
    check(&input, &out, &[None, Some(b"/b\xff?q=\xc3\xa9")], false);
}

#[test]
fn absolute_form_and_utf8_targets_are_rewritten() {
    check(
        b"GET http://h/\xc3\xa9t\xc3\xa9 HTTP/1.1\r\n\r\n",
        b"GET http://h/%C3%A9t%C3%A9 HTTP/1.1\r\n\r\n",
        &[Some(b"http://h/\xc3\xa9t\xc3\xa9")],
        false,
    );
}

#[test]
fn content_length_body_passes_unchanged() {
    let body: &[u8] = b"\xe9\xff\r\nGET /\xe9 HTTP/1.1\r\nContent-Length: 1\r\n\r\n\x80";
    let head =
        format!("POST /submit HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n", body.len());
    let input = cat(&[head.as_bytes(), body, GET_8BIT]);
    let out = cat(&[head.as_bytes(), body, GET_8BIT_OUT]);
    check(&input, &out, &[None, Some(b"/caf\xe9")], false);
}

#[test]
fn repeated_equal_content_lengths_and_zero_length() {
    let input = cat(&[
        b"POST /a HTTP/1.1\r\ncontent-length: 2\r\nCONTENT-LENGTH:  2 \r\n\r\n\xe9\xe9",
        b"POST /b HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
        GET_8BIT,
    ]);
    let out = cat(&[
        b"POST /a HTTP/1.1\r\ncontent-length: 2\r\nCONTENT-LENGTH:  2 \r\n\r\n\xe9\xe9",
        b"POST /b HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
        GET_8BIT_OUT,
    ]);
    check(&input, &out, &[None, None, Some(b"/caf\xe9")], false);
}

#[test]
fn chunked_body_with_crlf_and_8bit_data_then_trailer() {
    let chunked: &[u8] = b"5;name=\"v\"\r\n\xe9\r\n\xe9\xe9\r\n\
        a \t\r\nGET /\xe9 H\r\n\r\n\
        1\r\n\xff\r\n\
        0\r\nX-Check: \xe9t\xe9\r\nX-Other: 1\r\n\r\n";
    let head: &[u8] = b"POST /upload HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n";
    let input = cat(&[head, chunked, GET_8BIT]);
    let out = cat(&[head, chunked, GET_8BIT_OUT]);
    check(&input, &out, &[None, Some(b"/caf\xe9")], false);
}

#[test]
fn chunked_without_trailer_and_uppercase_hex() {
    let body: &[u8] = b"A\r\n0123456789\r\n000\r\n\r\n";
    let head: &[u8] = b"PUT /x HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n";
    let input = cat(&[head, body, GET_8BIT]);
    let out = cat(&[head, body, GET_8BIT_OUT]);
    check(&input, &out, &[None, Some(b"/caf\xe9")], false);
}

#[test]
fn header_values_with_8bit_bytes_are_unchanged() {
    let input =
        cat(&[b"GET /x HTTP/1.1\r\nX-Name: \xe9t\xe9\r\nReferer: http://h/\xe9\r\n\r\n", GET_8BIT]);
    let out = cat(&[
        b"GET /x HTTP/1.1\r\nX-Name: \xe9t\xe9\r\nReferer: http://h/\xe9\r\n\r\n",
        GET_8BIT_OUT,
    ]);
    check(&input, &out, &[None, Some(b"/caf\xe9")], false);
}

#[test]
fn leading_empty_lines_and_bare_lf() {
    check(
        b"\r\n\n\r\nGET /\xe9 HTTP/1.0\nHost: t\n\nGET /\xea HTTP/1.1\r\n\r\n",
        b"\r\n\n\r\nGET /%E9 HTTP/1.0\nHost: t\n\nGET /%EA HTTP/1.1\r\n\r\n",
        &[Some(b"/\xe9"), Some(b"/\xea")],
        false,
    );
}

#[test]
fn http2_preface_is_cut_after_its_request_line() {
    let preface: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";
    for sizes in [&[0][..], &[1], &[7, 3], &[16, 0], &[15, 0]] {
        for cap in [1, 5, 4096] {
            let got = through_adapter(preface, sizes, cap, 0);
            assert_eq!(got.out, b"PRI * HTTP/2.0\r\n", "reads of {sizes:?}, buffer {cap}");
        }
    }
    // Only at the start of a connection, and only that exact line.
    let later = cat(&[GET_8BIT, preface]);
    assert_eq!(through_adapter(&later, &[0], 4096, 0).out, cat(&[GET_8BIT_OUT, preface]));
    let near: &[u8] = b"PRI * HTTP/2.1\r\n\r\n";
    assert_eq!(through_adapter(near, &[1], 4096, 0).out, near);
}

/// With HTTP/2 allowed, the preface and the binary frames after it (8-bit bytes included)
/// pass untouched, and nothing is queued.
#[test]
fn http2_passes_whole_when_allowed() {
    let conn: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0\0\0\x05\x01\x05\0\0\0\x01\x82\x84\xe9\xff\n";
    for sizes in [&[0][..], &[1], &[7, 3], &[16, 0], &[15, 0]] {
        for cap in [1, 5, 4096] {
            let got = through(|p| EightBit::new(p).allowing_h2(), conn, sizes, cap, 0);
            assert_eq!(got.out, conn, "reads of {sizes:?}, buffer {cap}");
            assert!(
                got.entries.is_empty() && got.pass,
                "reads of {sizes:?}, buffer {cap}: {:?}, pass {}",
                got.entries,
                got.pass
            );
        }
    }
    // HTTP/1.1 is unchanged.
    let got = through(|p| EightBit::new(p).allowing_h2(), GET_8BIT, &[0], 4096, 0);
    assert_eq!(got.out, GET_8BIT_OUT);
}

#[test]
fn fifo_pops_in_order() {
    let targets = RawTargets::new();
    assert!(targets.push(None));
    assert!(targets.push(Some(b"/\xe9".to_vec())));
    assert_eq!(targets.len(), 2);
    assert_eq!(targets.pop(), None);
    assert_eq!(targets.pop(), Some(b"/\xe9".to_vec()));
    assert!(targets.is_empty());
    assert_eq!(targets.pop(), None, "empty queue reads as not rewritten");
}

/// The conflict flag of each request queued for `input`, in order.
fn conflicts(input: &[u8]) -> Vec<bool> {
    let targets = RawTargets::new();
    let mut sc = Scanner::new(targets.clone());
    let mut rest = input;
    while let Some(i) = sc.scan(rest) {
        rest = &rest[i + 1..];
    }
    let uri: http::Uri = "/".parse().unwrap();
    let mut out = Vec::new();
    while !targets.is_empty() {
        out.push(targets.pop_request(&uri).framing_conflict);
    }
    out
}

#[test]
fn framing_conflict_belongs_to_its_request() {
    let good = b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nokGET / HTTP/1.1\r\n\r\n";
    let bad = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(conflicts(&cat(&[good, bad])), [false, false, true]);
    assert_eq!(conflicts(bad), [true]);
    // An Upgrade header before the conflict no longer hides it, nor after it.
    let up = b"POST / HTTP/1.1\r\nUpgrade: h2c\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(conflicts(up), [true]);
    let up_last =
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\nUpgrade: x\r\n\r\n";
    assert_eq!(conflicts(up_last), [true]);
    assert_eq!(conflicts(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"), [false]);
}

#[test]
fn pop_for_checks_the_parsed_uri() {
    let targets = RawTargets::new();
    let uri = |s: &str| s.parse::<http::Uri>().unwrap();
    targets.push(Some(b"/wiki/\xe9t\xe9?q=\xff#frag\xe9".to_vec()));
    targets.push(Some(b"/wiki/\xe9".to_vec()));
    targets.push(Some(b"HTTP://Host/\xe9".to_vec()));
    targets.push(None);
    assert_eq!(
        targets.pop_for(&uri("/wiki/%E9t%E9?q=%FF")),
        Some(b"/wiki/\xe9t\xe9?q=\xff#frag\xe9".to_vec())
    );
    assert_eq!(targets.pop_for(&uri("/other/%E9")), None, "mismatch is dropped");
    assert_eq!(targets.pop_for(&uri("http://host/%E9")), Some(b"HTTP://Host/\xe9".to_vec()));
    assert_eq!(targets.pop_for(&uri("/")), None);
    assert!(targets.is_empty());
}

/// After `first` the scanner must give up: `first` and an 8-bit GET behind it pass unchanged,
/// and only `entries` (for `first`'s request line) are queued.
fn gives_up(first: &[u8], entries: &[Option<&[u8]>]) {
    let input = cat(&[first, GET_8BIT]);
    check(&input, &input, entries, true);
}

#[test]
fn ambiguous_framing_switches_to_passthrough() {
    let one: &[Option<&[u8]>] = &[None];
    for first in [
        &b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 0x3\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: \xe9, chunked\r\n\r\n",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET /chat HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        b"GET / HTTP/1.1\r\nX-Folded: a\r\n b\r\n\r\n",
        b"GET / HTTP/1.1\r\nX-Space : a\r\n\r\n",
        b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n",
        b"GET / HTTP/1.1\r\nX-\xe9: a\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 1\r2\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\rx\r\n\r\n",
        b"GET / HTTP/1.1\r\n: empty name\r\n\r\n",
        b"GET / HTTP/2.0\r\n\r\n",
        b"GET / HTTP/1.1 \r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n 1\r\nx\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1 1\r\nx\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\nx\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;a\rb\r\nx\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: a\n\r\n",
    ] {
        gives_up(first, one);
    }
}

#[test]
fn unparseable_request_lines_switch_to_passthrough() {
    // Nothing is queued for a request line hyper refuses before reading its target.
    gives_up(b"\x16\x03\x01\x02\x00", &[]);
    gives_up(b"G(T / HTTP/1.1\r\n\r\n", &[]);
    gives_up(b"\rGET / HTTP/1.1\r\n\r\n", &[]);
    gives_up(b"GET  / HTTP/1.1\r\n\r\n", &[]);
    gives_up(b"GET /a\tb HTTP/1.1\r\n\r\n", &[]);
    // HTTP/0.9: the line ends inside the target; hyper refuses it.
    let input = cat(&[b"GET /\xe9\r\n", GET_8BIT]);
    let out = cat(&[b"GET /%E9\r\n", GET_8BIT]);
    check(&input, &out, &[], true);
}

#[test]
fn connect_switches_to_passthrough() {
    gives_up(b"CONNECT h\xe9:443 HTTP/1.1\r\nHost: h\r\n\r\n", &[None]);
    // Only the exact method: CONNECTX and CONNEC are ordinary methods.
    let input = b"CONNEC /\xe9 HTTP/1.1\r\n\r\nCONNECTX /\xe9 HTTP/1.1\r\n\r\n";
    let out = b"CONNEC /%E9 HTTP/1.1\r\n\r\nCONNECTX /%E9 HTTP/1.1\r\n\r\n";
    check(input, out, &[Some(b"/\xe9"), Some(b"/\xe9")], false);
}

#[test]
fn over_long_heads_switch_to_passthrough() {
    let long = vec![b'a'; MAX_HEAD_BYTES];
    let header = cat(&[b"GET / HTTP/1.1\r\nX-Long: ", &long, b"\r\n\r\n"]);
    let got = scan_pieces(&cat(&[&header, GET_8BIT]), &[1000]);
    assert_eq!(got.out, cat(&[&header, GET_8BIT]));
    assert_eq!(got.entries, vec![None]);
    assert!(got.pass);

    let lines = vec![b'\n'; MAX_HEAD_BYTES + 1];
    let got = scan_pieces(&cat(&[&lines, GET_8BIT]), &[0]);
    assert_eq!(got.out, cat(&[&lines, GET_8BIT]));
    assert!(got.entries.is_empty() && got.pass);

    // A huge target: given up inside the target, nothing queued.
    let target = vec![0xe9u8; MAX_HEAD_BYTES];
    let got = scan_pieces(&cat(&[b"GET /", &target, b" HTTP/1.1\r\n\r\n"]), &[777]);
    assert!(got.entries.is_empty() && got.pass);

    // Chunk-size lines have their own budget.
    let ext = vec![b'e'; MAX_HEAD_BYTES];
    let body = cat(&[b"1;", &ext, b"\r\nx\r\n0\r\n\r\n"]);
    let head: &[u8] = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    let got = scan_pieces(&cat(&[head, &body, GET_8BIT]), &[4096]);
    assert!(got.pass);
}

#[test]
fn big_bodies_are_skipped_by_count() {
    // A body longer than any budget is fine: it is never buffered.
    let body = vec![0xe9u8; 3 * MAX_HEAD_BYTES];
    let head = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len());
    let input = cat(&[head.as_bytes(), &body, GET_8BIT]);
    let got = scan_pieces(&input, &[8191]);
    assert_eq!(got.out, cat(&[head.as_bytes(), &body, GET_8BIT_OUT]));
    assert_eq!(got.entries, vec![None, Some(b"/caf\xe9".to_vec())]);
    assert!(!got.pass);
}

#[test]
fn queue_is_bounded() {
    let many: Vec<u8> = b"GET / HTTP/1.1\r\n\r\n".repeat(MAX_QUEUED + 5);
    let got = scan_pieces(&many, &[0]);
    assert_eq!(got.entries.len(), MAX_QUEUED);
    assert!(got.pass);
    assert_eq!(got.out, many);
}

#[test]
fn scanners_find_the_first_stop() {
    for len in 0..40 {
        for at in 0..len {
            for stop in [b'\n', b' ', b'\r', 0u8, 0x80, 0xff, 0x20] {
                let mut s = vec![b'a'; len];
                s[at] = stop;
                if stop == b'\n' {
                    assert_eq!(find_lf(&s), Some(at));
                }
                assert_eq!(find_target_stop(&s), Some(at), "{len} {at} {stop}");
            }
            let s: Vec<u8> = (0..len).map(|i| b'!' + (i % 94) as u8).collect();
            assert_eq!(find_target_stop(&s), None);
            assert_eq!(find_lf(&s), None);
        }
    }
}

/// Undoes the adapter's escapes: walks input and output together, an output `%XX` standing for
/// an input byte >= 0x80. Fails if anything was lost, reordered or escaped that should not be.
fn undo_matches(input: &[u8], out: &[u8]) -> bool {
    let (mut i, mut j) = (0, 0);
    while i < input.len() {
        if out.get(j) == Some(&input[i]) {
            j += 1;
        } else if input[i] >= 0x80 && out.get(j..j + 3) == Some(&percent(input[i])[..]) {
            j += 3;
        } else {
            return false;
        }
        i += 1;
    }
    j == out.len()
}

/// HTTP-flavoured fragments, so that random inputs reach deep states of the scanner.
fn http_soup() -> impl Strategy<Value = Vec<u8>> {
    let frag = prop_oneof![
        Just(b"GET ".to_vec()),
        Just(b"POST ".to_vec()),
        Just(b"CONNECT ".to_vec()),
        Just(b"/".to_vec()),
        Just(b" HTTP/1.1".to_vec()),
        Just(b" HTTP/1.0".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n\r\n".to_vec()),
        Just(b"Content-Length: 3".to_vec()),
        Just(b"Transfer-Encoding: chunked".to_vec()),
        Just(b"Upgrade: x".to_vec()),
        Just(b"Host: h".to_vec()),
        Just(b"0".to_vec()),
        Just(b"5;x".to_vec()),
        Just(b"abc".to_vec()),
        Just(b"\xe9".to_vec()),
        Just(b"%".to_vec()),
        any::<u8>().prop_map(|b| vec![b]),
    ];
    prop::collection::vec(frag, 0..80).prop_map(|v| v.concat())
}

fn pieces() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0usize..24, 1..12)
}

/// A well-formed request, serialised, with the expected output and queue entry.
#[derive(Debug, Clone)]
struct Req {
    wire: Vec<u8>,
    out: Vec<u8>,
    entry: Option<Vec<u8>>,
}

fn request() -> impl Strategy<Value = Req> {
    let method = prop::sample::select(vec!["GET", "POST", "PUT", "PROPFIND", "DELETE"]);
    let target_byte = prop_oneof![0x21u8..=0x7e, 0x80u8..=0xff];
    let target = prop::collection::vec(target_byte, 1..24);
    let value_byte = prop_oneof![0x21u8..=0x7e, 0x80u8..=0xff, Just(b' ')];
    let header = (
        prop::sample::select(vec!["Host", "X-Name", "Accept", "Referer"]),
        prop::collection::vec(value_byte.clone(), 0..16),
    );
    let headers = prop::collection::vec(header, 0..4);
    let body = prop_oneof![
        Just(None),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(|b| Some((false, vec![b], vec![]))),
        (
            prop::collection::vec(prop::collection::vec(any::<u8>(), 1..20), 0..4),
            prop::collection::vec(prop::collection::vec(value_byte, 0..8), 0..3),
        )
            .prop_map(|(chunks, trailers)| Some((true, chunks, trailers))),
    ];
    let empty_lines = prop::collection::vec(any::<bool>(), 0..3);
    (empty_lines, method, target, any::<bool>(), headers, body).prop_map(
        |(empty_lines, method, target, crlf, headers, body)| {
            let nl: &[u8] = if crlf { b"\r\n" } else { b"\n" };
            let mut head_rest = Vec::new();
            head_rest.push(b' ');
            head_rest.extend_from_slice(b"HTTP/1.1");
            head_rest.extend_from_slice(nl);
            for (name, value) in &headers {
                head_rest.extend_from_slice(name.as_bytes());
                head_rest.extend_from_slice(b": ");
                head_rest.extend_from_slice(value);
                head_rest.extend_from_slice(nl);
            }
            let mut body_wire = Vec::new();
            match &body {
                None => {}
                Some((false, parts, _)) => {
                    let data = parts.concat();
                    let cl = format!("Content-Length: {}", data.len());
                    head_rest.extend_from_slice(cl.as_bytes());
                    head_rest.extend_from_slice(nl);
                    body_wire = data;
                }
                Some((true, chunks, trailers)) => {
                    head_rest.extend_from_slice(b"Transfer-Encoding: chunked");
                    head_rest.extend_from_slice(nl);
                    for (k, c) in chunks.iter().enumerate() {
                        let size = if k % 2 == 0 {
                            format!("{:x}", c.len())
                        } else {
                            format!("{:X} ;ext=\"\u{3b}\"", c.len())
                        };
                        body_wire.extend_from_slice(size.as_bytes());
                        body_wire.extend_from_slice(b"\r\n");
                        body_wire.extend_from_slice(c);
                        body_wire.extend_from_slice(b"\r\n");
                    }
                    body_wire.extend_from_slice(b"0\r\n");
                    for t in trailers {
                        body_wire.extend_from_slice(b"X-T: ");
                        body_wire.extend_from_slice(t);
                        body_wire.extend_from_slice(b"\r\n");
                    }
                    body_wire.extend_from_slice(b"\r\n");
                }
            }
            head_rest.extend_from_slice(nl);
            head_rest.extend_from_slice(&body_wire);
            let lead: Vec<u8> = empty_lines
                .iter()
                .flat_map(|&c| if c { &b"\r\n"[..] } else { b"\n" })
                .copied()
                .collect();
            let start = cat(&[&lead, method.as_bytes(), b" "]);
            let escaped = escape_8bit(&target);
            let rewritten = escaped != target;
            Req {
                wire: cat(&[&start, &target, &head_rest]),
                out: cat(&[&start, &escaped, &head_rest]),
                entry: rewritten.then_some(target),
            }
        },
    )
}

proptest! {
    #[test]
    fn arbitrary_bytes_are_never_lost(
        input in prop_oneof![prop::collection::vec(any::<u8>(), 0..400), http_soup()],
        sizes in pieces(),
        cap in 1usize..12,
    ) {
        let whole = scan_pieces(&input, &[0]);
        prop_assert!(undo_matches(&input, &whole.out));
        let split = scan_pieces(&input, &sizes);
        prop_assert_eq!(&split, &whole);
        let adapted = through_adapter(&input, &sizes, cap, 0);
        prop_assert_eq!(&adapted, &whole);
        // Entries are exactly the rewritten targets' originals, and nothing else is escaped.
        let originals: usize = whole.entries.iter().flatten().map(|t| t.iter().filter(|&&b| b >= 0x80).count()).sum();
        let escapes = (whole.out.len() - input.len()) / 2;
        prop_assert!(escapes >= originals);
    }

    #[test]
    fn well_formed_streams_are_rewritten_exactly(
        reqs in prop::collection::vec(request(), 1..6),
        sizes in pieces(),
        cap in 1usize..12,
    ) {
        let input: Vec<u8> = reqs.iter().flat_map(|r| r.wire.clone()).collect();
        let want = Outcome {
            out: reqs.iter().flat_map(|r| r.out.clone()).collect(),
            entries: reqs.iter().map(|r| r.entry.clone()).collect(),
            pass: false,
        };
        prop_assert_eq!(&scan_pieces(&input, &sizes), &want);
        prop_assert_eq!(&scan_pieces(&input, &[1]), &want);
        prop_assert_eq!(&through_adapter(&input, &sizes, cap, 0), &want);
    }
}

mod live {
    //! The adapter in front of a real hyper server on a loopback socket.

    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::body::Incoming;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper::{Request, Response};
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Serves connections on a loopback port; every answer describes what the handler saw.
    async fn server() -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let io = EightBit::new(stream);
                let raw_targets = io.targets();
                let svc = service_fn(move |req: Request<Incoming>| {
                    let raw = raw_targets.pop_for(req.uri());
                    async move {
                        let uri = req.uri().to_string();
                        let name = req.headers().get("x-name").map(|v| hex(v.as_bytes()));
                        let body = req.into_body().collect().await?.to_bytes();
                        let text = format!(
                            "uri={uri}\nraw={}\nname={}\nbody={}\n",
                            raw.as_deref().map_or("-".into(), hex),
                            name.unwrap_or_default(),
                            hex(&body),
                        );
                        Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from(text))))
                    }
                });
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(io), svc));
            }
        });
        addr
    }

    /// Reads one response with a Content-Length body; returns (status, body).
    async fn response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> (u16, String) {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed early: {:?}", String::from_utf8_lossy(buf));
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
        let status: u16 = head[9..12].parse().unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed inside a body");
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = String::from_utf8(buf[head_end..head_end + len].to_vec()).unwrap();
        buf.drain(..head_end + len);
        (status, body)
    }

    #[tokio::test]
    async fn http2_preface_is_answered_400_and_closed() {
        let addr = server().await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        // The preface, then an empty SETTINGS frame, as an HTTP/2 client opens.
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0").await.unwrap();
        let mut all = Vec::new();
        tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut all))
            .await
            .expect("closed in time")
            .unwrap();
        assert!(all.starts_with(b"HTTP/1.1 400 "), "{:?}", String::from_utf8_lossy(&all));
    }

    #[tokio::test]
    async fn eight_bit_target_reaches_the_handler() {
        let addr = server().await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /wiki/\xe9t\xe9 HTTP/1.1\r\nHost: t\r\nX-Name: \xe9\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let (status, body) = response(&mut s, &mut buf).await;
        assert_eq!(status, 200);
        assert_eq!(
            body,
            format!("uri=/wiki/%E9t%E9\nraw={}\nname=e9\nbody=\n", hex(b"/wiki/\xe9t\xe9"))
        );
    }

    #[tokio::test]
    async fn keep_alive_post_then_eight_bit_get() {
        let addr = server().await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut buf = Vec::new();
        let body: &[u8] = b"\xe9\r\nGET /\xe9 HTTP/1.1\r\n\r\n\xff";
        let post =
            format!("POST /submit HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n", body.len());
        // Sent in two writes, the second starting in the middle of the body.
        s.write_all(&cat(&[post.as_bytes(), &body[..3]])).await.unwrap();
        s.write_all(&cat(&[&body[3..], b"GET /caf\xe9?x=\xff HTTP/1.1\r\nHost: t\r\n\r\n"]))
            .await
            .unwrap();
        let (status, text) = response(&mut s, &mut buf).await;
        assert_eq!(status, 200);
        assert_eq!(text, format!("uri=/submit\nraw=-\nname=\nbody={}\n", hex(body)));
        let (status, text) = response(&mut s, &mut buf).await;
        assert_eq!(status, 200);
        assert_eq!(
            text,
            format!("uri=/caf%E9?x=%FF\nraw={}\nname=\nbody=\n", hex(b"/caf\xe9?x=\xff"))
        );

        // Then a chunked upload with 8-bit data and a trailer, pipelined with another GET.
        s.write_all(
            b"PUT /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
              3\r\n\xe9\r\n\r\n0\r\nX-T: \xe9\r\n\r\n\
              GET /\xe9t\xe9 HTTP/1.1\r\nHost: t\r\n\r\n",
        )
        .await
        .unwrap();
        let (status, text) = response(&mut s, &mut buf).await;
        assert_eq!(status, 200);
        assert_eq!(text, format!("uri=/up\nraw=-\nname=\nbody={}\n", hex(b"\xe9\r\n")));
        let (status, text) = response(&mut s, &mut buf).await;
        assert_eq!(status, 200);
        assert_eq!(text, format!("uri=/%E9t%E9\nraw={}\nname=\nbody=\n", hex(b"/\xe9t\xe9")));
    }
}

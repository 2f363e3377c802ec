//! The fuzz targets' bodies, shared by the libFuzzer binaries (`fuzz/fuzz_targets/*.rs`, nightly)
//! and the stable replay test (`router/tests/fuzz_corpus.rs`), which runs every committed corpus
//! file through the same function so that plain `cargo test` keeps each finding fixed.
//!
//! Each function takes arbitrary bytes and panics only when a property is broken.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderMap, HeaderName, HeaderValue};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Splits `data` at the first `\0\0` (or returns all of it and nothing).
fn split2(data: &[u8]) -> (&[u8], &[u8]) {
    match data.windows(2).position(|w| w == b"\0\0") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[]),
    }
}

/// Headers from `Name: value` lines; lines that are not valid header fields are skipped.
fn headers_from(bytes: &[u8]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for line in bytes.split(|&b| b == b'\n').take(64) {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        h.append(name, value);
    }
    h
}

// ---------------------------------------------------------------------------------------------
// eightbit: the 8-bit request-target scanner, differential against hyper's own framing.

/// A client connection replayed from memory: reads hand out `data` in pieces whose sizes come
/// from `sizes` (cycled), writes (the responses) are counted and dropped.
struct Replay {
    data: Vec<u8>,
    pos: usize,
    sizes: Vec<usize>,
    turn: usize,
    /// Keep the connection open after the data until this many responses were written: hyper
    /// drops a pipelined request it has not started when the client's end of stream comes
    /// first, which would hide the last request of a model sequence.
    hold: usize,
    responses: usize,
    waker: Option<std::task::Waker>,
}

impl AsyncRead for Replay {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let left = this.data.len() - this.pos;
        if left == 0 && this.responses < this.hold {
            this.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let want = match this.sizes.get(this.turn % this.sizes.len().max(1)) {
            Some(&s) if s > 0 => s,
            _ => left,
        };
        this.turn += 1;
        let n = want.min(left).min(buf.remaining());
        buf.put_slice(&this.data[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Replay {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.responses += buf.windows(9).filter(|w| w == b"HTTP/1.1 ").count();
        if this.responses >= this.hold {
            if let Some(w) = this.waker.take() {
                w.wake();
            }
        }
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// What hyper reads, recorded: sits between hyper and the scanner (or the replay).
struct Record<R> {
    inner: R,
    seen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Record<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Ok(mut s) = this.seen.lock() {
            s.extend_from_slice(&buf.filled()[before..]);
        }
        r
    }
}

impl<R: AsyncWrite + Unpin> AsyncWrite for Record<R> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// One request as hyper framed it behind the scanner.
#[derive(Debug)]
struct Seen {
    uri: http::Uri,
    /// The scanner's queue entry popped for it.
    entry: Option<Vec<u8>>,
    body: Vec<u8>,
}

/// Serves one replayed connection with hyper, behind `EightBit` when `scanner` is set (each
/// request then gets the queue entry the front door would pop for it), and returns what hyper
/// framed and the bytes hyper read.
fn serve(input: &[u8], sizes: Vec<usize>, scanner: bool, hold: usize) -> (Vec<Seen>, Vec<u8>) {
    use http_body_util::BodyExt;
    use paddock_router::eightbit::{EightBit, RawTargets};
    use std::sync::{Arc, Mutex};

    let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        return (Vec::new(), Vec::new());
    };
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let read: Arc<Mutex<Vec<u8>>> = Arc::default();
    let replay =
        Replay { data: input.to_vec(), pos: 0, sizes, turn: 0, hold, responses: 0, waker: None };
    let targets = RawTargets::new();
    let log = seen.clone();
    let t = scanner.then(|| targets.clone());
    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        // As the front door does: pop exactly once per request, first thing.
        let entry = t.as_ref().and_then(|t| t.pop());
        let log = log.clone();
        async move {
            let uri = req.uri().clone();
            let body = match req.into_body().collect().await {
                Ok(b) => b.to_bytes().to_vec(),
                Err(_) => Vec::new(),
            };
            if let Ok(mut l) = log.lock() {
                l.push(Seen { uri, entry, body });
            }
            Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<
                bytes::Bytes,
            >::new()))
        }
    });
    let builder = hyper::server::conn::http1::Builder::new().max_buf_size(64 * 1024).clone();
    rt.block_on(async {
        let limit = std::time::Duration::from_secs(5);
        if scanner {
            let inner = EightBit::with_targets(replay, targets);
            let io = hyper_util::rt::TokioIo::new(Record { inner, seen: read.clone() });
            let _ = tokio::time::timeout(limit, builder.serve_connection(io, service)).await;
        } else {
            let io = hyper_util::rt::TokioIo::new(Record { inner: replay, seen: read.clone() });
            let _ = tokio::time::timeout(limit, builder.serve_connection(io, service)).await;
        }
    });
    let out = std::mem::take(&mut *seen.lock().unwrap_or_else(|e| e.into_inner()));
    let read = std::mem::take(&mut *read.lock().unwrap_or_else(|e| e.into_inner()));
    (out, read)
}

/// Read sizes picked by a selector byte: whole reads, single bytes, a fixed size, or a mix, so
/// that request boundaries fall anywhere in a read.
fn read_sizes(sel: u8) -> Vec<usize> {
    match sel % 4 {
        0 => vec![0],
        1 => vec![1],
        2 => vec![(sel as usize >> 2) + 1],
        _ => vec![3, 1, 7, 64, 2],
    }
}

/// What hyper framed, request by request: target and body.
fn framed(v: &[Seen]) -> Vec<(String, Vec<u8>)> {
    v.iter().map(|s| (s.uri.to_string(), s.body.clone())).collect()
}

/// Whether `out` is a prefix of `input` in which some bytes `>= 0x80` were replaced by their
/// `%XX` escape and nothing else changed.
fn only_escapes(input: &[u8], out: &[u8]) -> Result<(), String> {
    let (mut i, mut j) = (0, 0);
    while j < out.len() {
        let Some(&b) = input.get(i) else {
            return Err(format!("hyper read {} bytes more than the client sent", out.len() - j));
        };
        if out[j] == b {
            j += 1;
        } else if b >= 0x80 && out[j..].starts_with(format!("%{b:02X}").as_bytes()) {
            j += 3;
        } else {
            return Err(format!("client byte {i} ({b:#04x}) reached hyper as {:#04x}", out[j]));
        }
        i += 1;
    }
    Ok(())
}

/// The first byte picks read sizes (so request boundaries fall anywhere in a read), the rest is
/// what a client sends. Properties:
/// - every request hyper frames gets the scanner's entry for that same request: an entry holds
///   the target hyper parsed (once escaped), so the queue never shifts;
/// - the bodies hyper delivers hold exactly the bytes the client sent: the scanner rewrote
///   nothing outside request-targets (checked against hyper alone when the input allows it);
/// - a 7-bit connection is framed by hyper identically with and without the scanner;
/// - hyper reads the client's bytes with only 8-bit bytes replaced by their `%XX` escapes, the
///   same way whatever the read sizes.
pub fn eightbit(data: &[u8]) {
    let Some((&sel, input)) = data.split_first() else { return };
    let sizes = read_sizes(sel);
    let (seen, read) = serve(input, sizes.clone(), true, 0);
    if let Err(e) = only_escapes(input, &read) {
        panic!("the scanner changed more than 8-bit bytes: {e}");
    }
    // The rewrite depends on the bytes only, never on how reads split them: what hyper read
    // with one read size is a prefix of what it read with another (hyper may stop reading
    // earlier or later, e.g. after refusing a request).
    if sel % 4 != 0 {
        let (_, whole) = serve(input, vec![0], true, 0);
        let n = whole.len().min(read.len());
        assert!(
            whole[..n] == read[..n],
            "the scanner rewrote differently with read sizes {sizes:?} than with whole reads"
        );
    }
    for (i, s) in seen.iter().enumerate() {
        if let Some(orig) = &s.entry {
            let escaped = paddock_router::eightbit::escape_8bit(orig);
            let escaped = match escaped.iter().position(|&b| b == b'#') {
                Some(i) => &escaped[..i],
                None => &escaped[..],
            };
            let pq = s.uri.path_and_query().map(|p| p.as_str().as_bytes()).unwrap_or(b"");
            let ok = if s.uri.authority().is_none() {
                escaped == pq || (escaped.is_empty() && pq == b"/")
            } else {
                // Absolute form: what follows the authority is the path and query; none (as in
                // `http://h#frag`) is the path `/` to hyper.
                let after = match escaped.windows(3).position(|w| w == b"://") {
                    Some(i) => &escaped[i + 3..],
                    None => escaped,
                };
                let rest = match after.iter().position(|&b| b == b'/' || b == b'?') {
                    Some(j) => &after[j..],
                    None => &b""[..],
                };
                rest == pq
                    || (rest.is_empty() && pq == b"/")
                    || (rest.first() == Some(&b'?') && pq.strip_prefix(b"/") == Some(rest))
            };
            assert!(
                ok,
                "request {i}: queue entry {orig:?} is not the target hyper parsed ({})",
                s.uri
            );
        }
    }
    if input.iter().all(|&b| b < 0x80) {
        // Nothing to rewrite: the scanner must be invisible.
        let plain = framed(&serve(input, sizes, false, 0).0);
        let behind = framed(&seen);
        assert_eq!(behind, plain, "7-bit input framed differently behind the scanner");
        assert!(seen.iter().all(|s| s.entry.is_none()), "7-bit target queued as rewritten");
    } else {
        // 8-bit bytes: those outside request-targets must reach hyper untouched. Escaping the
        // targets ourselves (each request's target is known from the entries hyper consumed)
        // would need our own framer; instead compare body by body with hyper on the input
        // where every 8-bit byte *in a body* is kept: a rewritten body byte shows up as `%XX`
        // that the client never sent.
        let sent_pct = count_pct(input);
        for s in &seen {
            assert!(
                count_pct(&s.body) <= sent_pct,
                "a body holds more %XX escapes than the client sent: the scanner rewrote a body byte"
            );
        }
    }
}

/// Bytes handed out one by one, then zeros: decodes any fuzz input as a request sequence.
struct Draw<'a>(&'a [u8]);

impl Draw<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn done(&self) -> bool {
        self.0.is_empty()
    }
}

/// Bytes a target may carry: 7-bit ones hyper takes as they are, and any 8-bit byte.
fn target_byte(b: u8) -> u8 {
    const SAFE: &[u8] =
        b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/-._~!$&'()*+,;=:@?";
    if b >= 0x80 {
        b
    } else {
        SAFE[usize::from(b) % SAFE.len()]
    }
}

/// Bytes a header value may carry (obs-text included): never CR, LF or NUL.
fn value_byte(b: u8) -> u8 {
    match b {
        0 | b'\n' | b'\r' => b'v',
        0x01..=0x08 | 0x0b..=0x1f | 0x7f => b'w',
        _ => b,
    }
}

/// One request of the model: what the client sends (8-bit bytes raw in the target) and what
/// hyper must see (the same, with the target's 8-bit bytes escaped).
fn model_request(d: &mut Draw<'_>, raw: &mut Vec<u8>, escaped: &mut Vec<u8>) -> Vec<u8> {
    let ctl = d.byte();
    let method: &[u8] = [&b"GET"[..], b"POST", b"PUT", b"DELETE"][usize::from(ctl & 3)];
    let mut target = vec![b'/'];
    for _ in 0..(d.byte() % 24) {
        target.push(target_byte(d.byte()));
    }
    let mut head = Vec::new();
    head.extend_from_slice(b"Host: fuzz.example\r\n");
    for _ in 0..(d.byte() % 4) {
        head.extend_from_slice(b"X-F: ");
        for _ in 0..(d.byte() % 12) {
            head.push(value_byte(d.byte()));
        }
        head.extend_from_slice(b"\r\n");
    }
    let mut body = Vec::new();
    let mut framing = Vec::new();
    match (ctl >> 2) % 3 {
        0 => {}
        1 => {
            for _ in 0..(d.byte() % 40) {
                body.push(d.byte());
            }
            framing.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
            framing.extend_from_slice(&body);
        }
        _ => {
            head.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            framing.extend_from_slice(b"\r\n");
            for _ in 0..(d.byte() % 4) {
                let n = usize::from(d.byte() % 20) + 1;
                let ext = if d.byte() & 1 == 1 { ";x=y" } else { "" };
                let size = if ctl & 0x40 != 0 { format!("{n:X}") } else { format!("{n:x}") };
                framing.extend_from_slice(format!("{size}{ext}\r\n").as_bytes());
                let chunk: Vec<u8> = (0..n).map(|_| d.byte()).collect();
                framing.extend_from_slice(&chunk);
                framing.extend_from_slice(b"\r\n");
                body.extend_from_slice(&chunk);
            }
            framing.extend_from_slice(b"0\r\n");
            if ctl & 0x80 != 0 {
                framing.extend_from_slice(b"X-Trailer: t\r\n");
            }
            framing.extend_from_slice(b"\r\n");
        }
    }
    if framing.is_empty() {
        framing.extend_from_slice(b"\r\n");
    }
    for (out, t) in [
        (&mut *raw, target.clone()),
        (&mut *escaped, paddock_router::eightbit::escape_8bit(&target)),
    ] {
        out.extend_from_slice(method);
        out.push(b' ');
        out.extend_from_slice(&t);
        out.extend_from_slice(b" HTTP/1.1\r\n");
        out.extend_from_slice(&head);
        out.extend_from_slice(&framing);
    }
    target
}

/// The scanner against hyper on well-formed traffic: a sequence of valid requests (8-bit
/// bytes in targets, header values and bodies; Content-Length and chunked bodies, chunk
/// extensions, trailers) is built twice, as the client sends it and as hyper must see it. hyper
/// behind the scanner must frame the first exactly as plain hyper frames the second, and each
/// rewritten request must get its original target from the queue. Any drift in the scanner's
/// framing (a body length off by one, a missed chunk boundary) fails here, where the raw-byte
/// target only sees that no property was broken.
pub fn eightbit_model(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else { return };
    let mut d = Draw(rest);
    let (mut raw, mut escaped, mut targets) = (Vec::new(), Vec::new(), Vec::new());
    while !d.done() && targets.len() < 8 {
        targets.push(model_request(&mut d, &mut raw, &mut escaped));
    }
    let sizes = read_sizes(sel);
    let n = targets.len();
    let (behind, _) = serve(&raw, sizes.clone(), true, n);
    let (plain, _) = serve(&escaped, sizes, false, n);
    assert_eq!(
        plain.len(),
        targets.len(),
        "plain hyper refused a model request in {:?}; it framed {:?}",
        String::from_utf8_lossy(&escaped),
        plain.iter().map(|s| s.uri.to_string()).collect::<Vec<_>>()
    );
    assert_eq!(framed(&behind), framed(&plain), "framed differently behind the scanner");
    for (i, (s, t)) in behind.iter().zip(&targets).enumerate() {
        let want = t.iter().any(|&b| b >= 0x80).then(|| t.clone());
        assert_eq!(s.entry, want, "request {i}: wrong queue entry");
    }
}

fn count_pct(b: &[u8]) -> usize {
    b.windows(3)
        .filter(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit())
        .count()
}

// ---------------------------------------------------------------------------------------------
// proto: the router<->worker frame codec and the router<->zygote protocol.

/// Decoding never panics; a decoded frame encodes to bytes that decode to the same frame, using
/// exactly the bytes it took; a stream of frames decodes frame after frame.
pub fn frame_codec(data: &[u8]) {
    use paddock_proto as codec;
    let mut rest = data;
    for _ in 0..64 {
        match codec::decode(rest) {
            Ok(Some((frame, used))) => {
                assert!(used > 0 && used <= rest.len(), "decode used {used} of {}", rest.len());
                let mut out = Vec::new();
                codec::encode(&frame, &mut out);
                match codec::decode(&out) {
                    Ok(Some((again, n))) => {
                        assert_eq!(again, frame, "encode/decode round trip changed the frame");
                        assert_eq!(n, out.len(), "re-decoding left bytes over");
                    }
                    other => panic!("a frame we encoded does not decode: {other:?} {frame:?}"),
                }
                // A prefix of a frame is never a different frame.
                if out.len() > 1 {
                    if let Ok(Some((f, _))) = codec::decode(&out[..out.len() - 1]) {
                        panic!("a truncated encoding decoded as {f:?}");
                    }
                }
                rest = &rest[used..];
            }
            Ok(None) | Err(_) => return,
        }
    }
}

/// Same properties for the zygote protocol, and the worker setup record.
pub fn zygote_proto(data: &[u8]) {
    use paddock_proto::zygote;
    let mut rest = data;
    for _ in 0..64 {
        match zygote::decode(rest) {
            Ok(Some((msg, used))) => {
                assert!(used > 0 && used <= rest.len());
                let mut out = Vec::new();
                zygote::encode(&msg, &mut out);
                match zygote::decode(&out) {
                    Ok(Some((again, n))) => {
                        assert_eq!(again, msg);
                        assert_eq!(n, out.len());
                    }
                    other => panic!("an encoded zygote message does not decode: {other:?}"),
                }
                rest = &rest[used..];
            }
            Ok(None) | Err(_) => break,
        }
    }
    if let Ok(setup) = zygote::decode_setup(data) {
        let mut out = Vec::new();
        if zygote::encode_setup(&setup, &mut out).is_ok() {
            match zygote::decode_setup(&out) {
                Ok(again) => assert_eq!(again, setup, "setup round trip changed it"),
                Err(e) => panic!("an encoded setup does not decode: {e:?}"),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// rules: the Apache-syntax parser and the evaluator.

struct ByteProbe(u8);

impl paddock_rules::FileProbe for ByteProbe {
    fn test(&self, path: &[u8], kind: paddock_rules::FileTest) -> bool {
        let k = kind as u8;
        (path.len() as u8 ^ self.0 ^ k) & 1 == 1
    }
}

/// Rules text, `\0\0`, then a request (path, `?query`, then header lines after a newline).
/// Parsing never panics; evaluating any request against any rule set that parsed never panics
/// and terminates (the engine bounds its own rounds).
pub fn rules(data: &[u8]) {
    let (text, req) = split2(data);
    let Ok(text) = std::str::from_utf8(text) else { return };
    // The same text as one TOML `[[rules]]` entry: every line but the last a condition, the
    // last the rule (what `conditions = [...]`, `rule = "..."` hand to the parser).
    let lines: Vec<&str> = text.lines().take(16).collect();
    let toml = lines.split_last().and_then(|(rule, conds)| {
        paddock_rules::parse_rule(conds, rule, Path::new("fuzz.toml"), 1)
            .ok()
            .map(|r| paddock_rules::RuleSet::new(vec![r]))
    });
    let set = paddock_rules::parse_apache(text, Path::new("fuzz.rules")).ok();
    if set.is_none() && toml.is_none() {
        return;
    }
    let (line, header_lines) = match req.iter().position(|&b| b == b'\n') {
        Some(i) => (&req[..i], &req[i + 1..]),
        None => (req, &b""[..]),
    };
    let (path, query) = match line.iter().position(|&b| b == b'?') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &b""[..]),
    };
    let headers = headers_from(header_lines);
    let info = paddock_rules::RequestInfo {
        path,
        query,
        method: b"GET",
        host: b"fuzz.example",
        headers: &headers,
        remote_addr: b"192.0.2.1",
        https: path.first() == Some(&b's'),
        server_name: b"fuzz.example",
        server_port: 80,
    };
    let probe = ByteProbe(data.len() as u8);
    for set in set.iter().chain(toml.iter()) {
        let _ = set.evaluate(&info, &probe);
    }
}

// ---------------------------------------------------------------------------------------------
// path: request-target parsing and normalisation.

/// Normalisation is idempotent, always absolute, free of dot segments and `//`; splitting at
/// a mount never yields a PATH_INFO that escapes it.
pub fn path(data: &[u8]) {
    use paddock_rules::path;
    let (raw, mount) = split2(data);
    let n = path::normalise(raw);
    assert!(n.starts_with(b"/"), "not absolute: {n:?}");
    assert_eq!(path::normalise(&n), n, "normalise is not idempotent");
    for bad in [&b"//"[..], b"/./", b"/../"] {
        assert!(!n.windows(bad.len()).any(|w| w == bad), "{bad:?} left in {n:?}");
    }
    assert!(!n.ends_with(b"/.") && !n.ends_with(b"/.."), "dot segment at the end of {n:?}");
    let _ = path::percent_decode(raw);
    if let Ok(t) = path::Target::parse(raw) {
        assert_eq!(t.normalised, path::normalise(&t.decoded));
        let Ok(mount) = std::str::from_utf8(mount) else { return };
        let Ok(mount) = paddock_config::normalise_mount(mount) else { return };
        if let Ok(split) = path::split_mount(&t, mount.as_bytes()) {
            let m = mount.trim_end_matches('/').as_bytes();
            assert_eq!(split.script_name, m, "script name is not the mount");
            // Routing is on the normalised path: it must lie inside the mount.
            assert!(
                t.normalised.starts_with(m)
                    && (t.normalised.len() == m.len()
                        || t.normalised.get(m.len()) == Some(&b'/')
                        || m.is_empty()),
                "split at {m:?} although the normalised path {:?} is outside it",
                t.normalised
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// auth: htpasswd files and Basic credentials.

/// Parsing never panics; fast hashes (SHA) verify without panicking. bcrypt and apr1 are not
/// verified here: their cost is the point of them (a cost-31 bcrypt line takes hours).
pub fn htpasswd(data: &[u8]) {
    use paddock_router::auth::htpasswd;
    let parsed = htpasswd::parse(data);
    for (user, stored) in parsed.users.iter().take(16) {
        if !stored.is_slow() {
            let _ = stored.verify(user.as_bytes());
        }
    }
    let _ = htpasswd::classify(&String::from_utf8_lossy(data));
    for p in &parsed.problems {
        // Problems are fixed messages with a line number: they must not echo the file (user
        // names, hashes; a copy of /etc/shadow must not reach the log), so their length does
        // not grow with the input.
        assert!(p.starts_with("line ") && p.len() < 160, "problem echoes its input: {p:?}");
    }
}

/// `Authorization` header values: decoding never panics.
pub fn basic(data: &[u8]) {
    use paddock_router::auth::basic;
    let _ = basic::decode_text(data);
    let mut h = HeaderMap::new();
    for value in data.split(|&b| b == b'\n').take(3) {
        if let Ok(v) = HeaderValue::from_bytes(value) {
            h.append(http::header::AUTHORIZATION, v);
        }
    }
    let _ = basic::credentials(&h);
}

// ---------------------------------------------------------------------------------------------
// forwarded: Forwarded / X-Forwarded-For / X-Forwarded-Proto from trusted proxies.

/// Resolution never panics, and a peer that is not trusted is always the client.
pub fn forwarded(data: &[u8]) {
    use paddock_router::forwarded;
    let (nets, rest) = split2(data);
    let nets: Vec<String> =
        String::from_utf8_lossy(nets).split(',').take(8).map(|s| s.trim().to_string()).collect();
    let nets = paddock_config::units::parse_nets(&nets).unwrap_or_default();
    let headers = headers_from(rest);
    let peers = [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ];
    for peer in peers {
        for tls in [false, true] {
            let c = forwarded::resolve(&nets, peer, tls, &headers);
            if !nets.iter().any(|n| n.contains(&peer)) {
                assert_eq!(c.addr, peer, "an untrusted peer's headers were believed");
                assert_eq!(c.https, tls, "an untrusted peer chose the scheme");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// hop: the `Paddock-Hop` marker between cluster nodes.

/// Any `Paddock-Hop` headers: refused or parsed, never a panic; what parses writes back to a
/// value that parses to the same hop, and is never a second header's doing.
pub fn hop(data: &[u8]) {
    use paddock_router::cluster::hop::{Hop, HEADER};
    let mut h = HeaderMap::new();
    for line in data.split(|&b| b == b'\n').take(4) {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            h.append(HEADER, v);
        }
    }
    if let Ok(hop) = Hop::parse(&h) {
        assert_eq!(h.get_all(HEADER).iter().count(), 1, "a repeated marker was believed");
        let mut again = HeaderMap::new();
        again.insert(HEADER, hop.value());
        assert_eq!(Hop::parse(&again), Ok(hop));
    }
}

// ---------------------------------------------------------------------------------------------
// config: the paddock.toml loader.

/// Any text: a config or file:line diagnostics, never a panic; each diagnostic names the file.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let file = Path::new("/nonexistent/paddock-fuzz/paddock.toml");
    let ov = paddock_config::Overrides::default();
    if let Err(d) = paddock_config::Config::from_text(text, file, &ov) {
        let shown = d.to_string();
        assert!(shown.contains("paddock"), "diagnostics do not name the file: {shown}");
    }
}

/// Apache configuration text (`paddock import-apache`): parsing, `Define`s, sections and the
/// translation never panic, every directive keeps the line it starts on, and what is written
/// (TOML, rules) parses ([`paddock_import::check_text`]; no file the text names is included).
pub fn apache_conf(data: &[u8]) {
    paddock_import::check_text(&String::from_utf8_lossy(data));
}

/// A target: its name (the corpus directory) and its body.
pub type Target = (&'static str, fn(&[u8]));

/// Every target by name, for the replay test.
pub const TARGETS: &[Target] = &[
    ("eightbit", eightbit),
    ("eightbit_model", eightbit_model),
    ("frame_codec", frame_codec),
    ("zygote_proto", zygote_proto),
    ("rules", rules),
    ("path", path),
    ("htpasswd", htpasswd),
    ("basic", basic),
    ("forwarded", forwarded),
    ("hop", hop),
    ("config", config),
    ("apache_conf", apache_conf),
];

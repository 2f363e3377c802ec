//! Accepting request-targets that contain raw 8-bit bytes.
//!
//! hyper turns every request-target into an [`http::Uri`], which refuses bytes that are not
//! ASCII (or not valid UTF-8), so `GET /wiki/\xe9t\xe9 HTTP/1.1` would be answered 400 before
//! our handler ever runs. Apache and mod_wsgi accept such targets, and applications such as Trac
//! expect to see the bytes in PATH_INFO and answer on their own.
//!
//! [`EightBit`] sits between the accepted socket and hyper. It follows the HTTP/1.1 message
//! framing of what the client sends (request line, header lines, then no body, a
//! `Content-Length` body or a chunked body, then the next request) and, inside each request-target
//! only, rewrites every byte `>= 0x80` as `%XX`. Percent-decoding gives the same bytes back, so
//! PATH_INFO is unchanged. The target as sent is queued in [`RawTargets`], one entry per request
//! line, for the handler to use as REQUEST_URI:
//!
//! ```no_run
//! # use paddock_router::eightbit::EightBit;
//! # async fn f(stream: tokio::net::TcpStream) {
//! let io = EightBit::new(stream);
//! let raw_targets = io.targets();
//! // in the service, first thing for every request: `let raw = raw_targets.pop_for(req.uri());`
//! let io = hyper_util::rt::TokioIo::new(io);
//! # }
//! ```
//!
//! Anything the scanner does not fully understand, or that two parsers could frame differently
//! (both `Content-Length` and `Transfer-Encoding`, conflicting lengths, a final coding other than
//! `chunked`, over-long lines, `Upgrade`, `CONNECT`, ...), switches the connection to pass-through
//! for good: from then on bytes are forwarded untouched, nothing more is queued, and hyper makes
//! its own decision (usually 400). Entries therefore always describe a prefix of the connection's
//! requests, and a handler that finds the queue empty simply uses the URI hyper parsed.
//!
//! The framing rules mirror hyper 1.x's (`httparse` for heads, hyper's chunked decoder). Where
//! the two could differ, either the scanner gives up (hyper then decides alone) or hyper refuses
//! the message and closes the connection; the scanner never finds a request boundary where
//! hyper, going on with the connection, finds none, so queue entries cannot shift.
//!
//! Over 500 lines: one hand-written scanner that must frame exactly as hyper does, kept in one
//! file so it can be read against hyper's and is fuzzed as a unit (`eightbit`,
//! `eightbit_model`); its tests are in `eightbit/tests.rs`.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Longest request head (leading empty lines, request line and header lines), chunk-size line or
/// trailer section the scanner follows; anything longer switches the connection to pass-through.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Most entries queued and not yet popped. hyper reads at most one buffer ahead of the request it
/// is serving, so this is only reached by a client pipelining thousands of tiny requests; the
/// connection then goes to pass-through.
pub const MAX_QUEUED: usize = 1024;

/// The request line an HTTP/2 client opens with (its "connection preface" goes on with
/// `\r\nSM\r\n\r\n`). hyper's HTTP/1 server closes such a connection without a word when it
/// has the whole 24-byte preface in its buffer; handed only this line, it answers 400.
const H2_REQUEST_LINE: &[u8] = b"PRI * HTTP/2.0\r\n";

/// Per-connection FIFO of request-targets as the client sent them.
///
/// One entry is queued per request line, in order: `Some(original target)` when the adapter
/// percent-encoded bytes in it, `None` when it left the target alone, with whether that
/// request's head had conflicting framing. Clones share the queue.
#[derive(Clone, Debug, Default)]
pub struct RawTargets(Arc<Mutex<VecDeque<Entry>>>);

/// What the scanner learnt about one request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Entry {
    original: Option<Vec<u8>>,
    /// Both `Content-Length` and `Transfer-Encoding` in this request's head.
    conflict: bool,
}

/// The entry of one request as the handler takes it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Popped {
    /// The target as sent, when it was rewritten (see [`RawTargets::pop_for`]).
    pub original: Option<Vec<u8>>,
    /// The head had both `Content-Length` and `Transfer-Encoding`. hyper lets the latter win
    /// and drops the former, but such a request is how requests are smuggled past other
    /// proxies, so the front door refuses it (and closes the connection).
    pub framing_conflict: bool,
}

impl RawTargets {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the entry of the oldest request not yet popped: the original target if it was
    /// rewritten, `None` if it was not rewritten or if nothing was queued for it (pass-through).
    ///
    /// The handler must pop exactly once per request hyper hands it, first thing, so that the
    /// queue stays in step with hyper.
    pub fn pop(&self) -> Option<Vec<u8>> {
        self.lock().pop_front().and_then(|e| e.original)
    }

    /// Like [`pop`](Self::pop), but returns the original only if percent-encoding its 8-bit bytes
    /// gives back the target hyper parsed into `uri`. A mismatch would mean the queue fell out of
    /// step with hyper; the entry is dropped and `None` returned, so the caller falls back to
    /// `uri`, which decodes to the same path anyway.
    pub fn pop_for(&self, uri: &http::Uri) -> Option<Vec<u8>> {
        self.pop_request(uri).original
    }

    /// The whole entry of the oldest request, its target checked as by
    /// [`pop_for`](Self::pop_for). A framing conflict is reported even when the target does
    /// not match: refusing is the safe side.
    pub fn pop_request(&self, uri: &http::Uri) -> Popped {
        let Some(entry) = self.lock().pop_front() else { return Popped::default() };
        let original = match entry.original {
            Some(o) if matches_uri(&o, uri) => Some(o),
            Some(_) => {
                tracing::debug!(%uri, "raw request-target does not match the parsed one; ignored");
                None
            }
            None => None,
        };
        Popped { original, framing_conflict: entry.conflict }
    }

    /// Marks the newest entry (the request whose head is being read) as conflicting.
    fn set_framing_conflict(&self) {
        if let Some(e) = self.lock().back_mut() {
            e.conflict = true;
        }
    }

    /// Number of entries not yet popped.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push(&self, entry: Option<Vec<u8>>) -> bool {
        let mut q = self.lock();
        if q.len() >= MAX_QUEUED {
            return false;
        }
        q.push_back(Entry { original: entry, conflict: false });
        true
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Entry>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `original` with every byte `>= 0x80` written as `%XX`, exactly as the adapter rewrites it.
pub fn escape_8bit(original: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(original.len() + 16);
    for &b in original {
        if b >= 0x80 {
            out.extend_from_slice(&percent(b));
        } else {
            out.push(b);
        }
    }
    out
}

fn matches_uri(original: &[u8], uri: &http::Uri) -> bool {
    let escaped = escape_8bit(original);
    // http::Uri drops a fragment; hyper never sees one otherwise.
    let escaped = match escaped.iter().position(|&b| b == b'#') {
        Some(i) => &escaped[..i],
        None => &escaped[..],
    };
    let pq = uri.path_and_query().map(|p| p.as_str().as_bytes()).unwrap_or(b"");
    if uri.authority().is_none() {
        escaped == pq || (escaped.is_empty() && pq == b"/")
    } else {
        // Absolute form: the scheme and authority may be re-rendered (case), the path is not.
        escaped.ends_with(pq)
    }
}

/// An I/O object that percent-encodes 8-bit bytes in HTTP/1.1 request-targets on the read side
/// and forwards writes unchanged. See the module documentation.
#[derive(Debug)]
pub struct EightBit<S> {
    inner: S,
    scanner: Scanner,
    /// Rewritten bytes that did not fit into the caller's buffer, delivered before reading more.
    pending: Vec<u8>,
    pending_pos: usize,
    /// Reused copy of the not yet scanned rest of a read that needed rewriting.
    scratch: Vec<u8>,
    /// Bytes of the connection's start that matched [`H2_REQUEST_LINE`] so far; `None` once
    /// they differ.
    preface: Option<usize>,
    /// An HTTP/2 preface was cut after its request line: nothing more is read.
    h2_refused: bool,
    /// An HTTP/2 preface passes whole, and the connection after it ([`EightBit::allowing_h2`]).
    h2_allowed: bool,
}

impl<S> EightBit<S> {
    /// Wraps `inner` with a new, empty [`RawTargets`] queue (see [`targets`](Self::targets)).
    pub fn new(inner: S) -> Self {
        Self::with_targets(inner, RawTargets::new())
    }

    /// Wraps `inner`, queueing original targets into `targets`.
    pub fn with_targets(inner: S, targets: RawTargets) -> Self {
        EightBit {
            inner,
            scanner: Scanner::new(targets),
            pending: Vec::new(),
            pending_pos: 0,
            scratch: Vec::new(),
            preface: Some(0),
            h2_refused: false,
            h2_allowed: false,
        }
    }

    /// Lets a connection that opens with HTTP/2's preface through untouched, for a server
    /// that speaks HTTP/2 as well (h2c with prior knowledge, or HTTP/2 negotiated by TLS):
    /// HTTP/2 frames carry no HTTP/1 request line to rewrite, and nothing is queued.
    pub fn allowing_h2(mut self) -> Self {
        self.h2_allowed = true;
        self
    }

    /// A handle on this connection's queue of original targets.
    pub fn targets(&self) -> RawTargets {
        self.scanner.targets.clone()
    }

    /// Whether the connection was switched to pass-through (no more rewriting).
    pub fn is_passthrough(&self) -> bool {
        self.scanner.state == State::Pass
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Whether the client opened with HTTP/2's preface (hyper then answers 400 and closes).
    pub fn is_h2_preface(&self) -> bool {
        self.h2_refused
    }

    /// Follows the connection's first bytes `fresh` against [`H2_REQUEST_LINE`]; returns how
    /// many of them to deliver (fewer than all only when the line just completed).
    fn check_preface(&mut self, fresh: &[u8]) -> usize {
        let Some(seen) = self.preface else { return fresh.len() };
        let want = &H2_REQUEST_LINE[seen..];
        let n = want.len().min(fresh.len());
        if fresh[..n] != want[..n] {
            self.preface = None;
            return fresh.len();
        }
        if n < want.len() {
            self.preface = Some(seen + n);
            return fresh.len();
        }
        self.preface = None;
        if self.h2_allowed {
            // A read that stopped inside the line may have queued its target (`*`).
            self.scanner.targets.lock().clear();
            self.scanner.state = State::Pass;
            return fresh.len();
        }
        self.h2_refused = true;
        n
    }
}

/// Appends `bytes` to the caller's buffer as far as it has room, and the rest to `pending`.
fn emit(buf: &mut ReadBuf<'_>, pending: &mut Vec<u8>, bytes: &[u8]) {
    let n = bytes.len().min(buf.remaining());
    buf.put_slice(&bytes[..n]);
    pending.extend_from_slice(&bytes[n..]);
}

impl<S: AsyncRead + Unpin> AsyncRead for EightBit<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if this.pending_pos < this.pending.len() {
            let n = buf.remaining().min(this.pending.len() - this.pending_pos);
            buf.put_slice(&this.pending[this.pending_pos..this.pending_pos + n]);
            this.pending_pos += n;
            if this.pending_pos == this.pending.len() {
                this.pending.clear();
                this.pending_pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        if this.h2_refused {
            // End of stream: hyper has all it needs to refuse the connection.
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        if this.preface.is_some() {
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            let keep = this.check_preface(&buf.filled()[before..]);
            buf.set_filled(before + keep);
        } else if this.scanner.state == State::Pass {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        } else {
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        }
        let fresh = &buf.filled()[before..];
        // Hot path: nothing to rewrite, the bytes stay where the inner reader put them.
        let Some(at) = this.scanner.scan(fresh) else {
            return Poll::Ready(Ok(()));
        };
        // Slow path: keep the bytes before `at` in place, re-emit the rest with escapes; what
        // does not fit waits in `pending`.
        let byte = fresh[at];
        let mut rest = std::mem::take(&mut this.scratch);
        rest.clear();
        rest.extend_from_slice(&fresh[at + 1..]);
        buf.set_filled(before + at);
        emit(buf, &mut this.pending, &percent(byte));
        let mut tail = &rest[..];
        while let Some(j) = this.scanner.scan(tail) {
            emit(buf, &mut this.pending, &tail[..j]);
            emit(buf, &mut this.pending, &percent(tail[j]));
            tail = &tail[j + 1..];
        }
        emit(buf, &mut this.pending, tail);
        this.scratch = rest;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for EightBit<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

fn percent(b: u8) -> [u8; 3] {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    [b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0x0f)]]
}

/// Where the scanner is in the client's byte stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Before a request line; empty lines are skipped.
    Idle,
    /// After the `\r` of an empty line before a request line.
    IdleCr,
    Method,
    Target,
    /// After the target, up to the end of the request line.
    Version,
    Header,
    /// `Content-Length` body bytes still to come.
    Body(u64),
    ChunkSize,
    ChunkData(u64),
    /// The CRLF after chunk data.
    ChunkCr,
    ChunkLf,
    /// Trailer lines after the last chunk, up to the empty line.
    Trailer,
    /// Gave up: everything is forwarded untouched from now on.
    Pass,
}

/// The incremental HTTP/1.1 framing follower behind [`EightBit`].
#[derive(Debug)]
struct Scanner {
    state: State,
    /// Bytes spent in the current head, chunk-size line or trailer section.
    used: usize,
    /// A line (without its `\n`) started in an earlier read.
    line: Vec<u8>,
    /// The current target's bytes from earlier reads (or earlier slices of this read).
    target: Vec<u8>,
    /// The current target had a byte >= 0x80.
    escaped: bool,
    method_len: usize,
    /// The method read so far is a prefix of `CONNECT`.
    connect: bool,
    http10: bool,
    content_length: Option<u64>,
    /// `Some(final coding is chunked)` once a `Transfer-Encoding` header was seen (last one wins,
    /// as in hyper).
    chunked: Option<bool>,
    /// An `Upgrade` header: the connection may stop being HTTP after this head.
    upgrade: bool,
    targets: RawTargets,
}

impl Scanner {
    fn new(targets: RawTargets) -> Self {
        Scanner {
            state: State::Idle,
            used: 0,
            line: Vec::new(),
            target: Vec::new(),
            escaped: false,
            method_len: 0,
            connect: true,
            http10: false,
            content_length: None,
            chunked: None,
            upgrade: false,
            targets,
        }
    }

    fn pass(&mut self) {
        self.state = State::Pass;
        self.line = Vec::new();
        self.target = Vec::new();
    }

    /// Counts `n` more bytes against [`MAX_HEAD_BYTES`]; false (and pass-through) if over.
    fn spend(&mut self, n: usize) -> bool {
        self.used = self.used.saturating_add(n);
        if self.used > MAX_HEAD_BYTES {
            self.pass();
            return false;
        }
        true
    }

    /// Enters a line-based state with a fresh byte budget.
    fn begin(&mut self, state: State) {
        self.state = state;
        self.used = 0;
    }

    /// Advances over `data`, the next bytes of the stream. Returns `Some(i)` when `data[i]` is a
    /// byte of a request-target that must be written as `%XX`; the scanner has then consumed
    /// `data[..=i]` and the caller continues with `data[i + 1..]`. `None`: all of `data` was
    /// consumed and is forwarded as is.
    fn scan(&mut self, data: &[u8]) -> Option<usize> {
        let mut pos = 0;
        // Start of the part of `data` that belongs to the current target.
        let mut seg = 0;
        while pos < data.len() {
            match self.state {
                State::Pass => return None,
                State::Idle => match data[pos] {
                    b'\n' => {
                        pos += 1;
                        if !self.spend(1) {
                            return None;
                        }
                    }
                    b'\r' => {
                        pos += 1;
                        self.state = State::IdleCr;
                        if !self.spend(1) {
                            return None;
                        }
                    }
                    _ => {
                        self.state = State::Method;
                        self.method_len = 0;
                        self.connect = true;
                        self.http10 = false;
                        self.content_length = None;
                        self.chunked = None;
                        self.upgrade = false;
                    }
                },
                State::IdleCr => {
                    if data[pos] != b'\n' {
                        self.pass();
                        return None;
                    }
                    pos += 1;
                    self.state = State::Idle;
                    if !self.spend(1) {
                        return None;
                    }
                }
                State::Method => {
                    let b = data[pos];
                    pos += 1;
                    if !self.spend(1) {
                        return None;
                    }
                    if b == b' ' {
                        if self.connect && self.method_len == CONNECT.len() {
                            // Tunnels are not HTTP after the head: leave them to hyper.
                            self.targets.push(None);
                            self.pass();
                            return None;
                        }
                        self.state = State::Target;
                        self.escaped = false;
                        self.target.clear();
                        seg = pos;
                    } else if is_tchar(b) {
                        self.connect = self.connect && CONNECT.get(self.method_len) == Some(&b);
                        self.method_len += 1;
                    } else {
                        self.pass();
                        return None;
                    }
                }
                State::Target => {
                    let Some(k) = find_target_stop(&data[pos..]) else {
                        let n = data.len() - pos;
                        if self.spend(n) {
                            self.target.extend_from_slice(&data[seg..]);
                        }
                        return None;
                    };
                    let at = pos + k;
                    if !self.spend(k + 1) {
                        return None;
                    }
                    let b = data[at];
                    if b >= 0x80 {
                        self.escaped = true;
                        self.target.extend_from_slice(&data[seg..=at]);
                        return Some(at);
                    }
                    if b != b' ' {
                        // A control byte, or the end of an HTTP/0.9 line: hyper refuses these.
                        self.pass();
                        return None;
                    }
                    if at == seg && self.target.is_empty() {
                        // Empty target (two spaces): hyper refuses it.
                        self.pass();
                        return None;
                    }
                    let entry = if self.escaped {
                        let mut original = std::mem::take(&mut self.target);
                        original.extend_from_slice(&data[seg..at]);
                        Some(original)
                    } else {
                        self.target.clear();
                        None
                    };
                    if !self.targets.push(entry) {
                        self.pass();
                        return None;
                    }
                    pos = at + 1;
                    self.state = State::Version;
                }
                State::Version | State::Header | State::ChunkSize | State::Trailer => {
                    let rest = &data[pos..];
                    let Some(k) = find_lf(rest) else {
                        if self.spend(rest.len()) {
                            self.line.extend_from_slice(rest);
                        }
                        return None;
                    };
                    if !self.spend(k + 1) {
                        return None;
                    }
                    let mut carried = std::mem::take(&mut self.line);
                    if carried.is_empty() {
                        self.on_line(&rest[..k]);
                    } else {
                        carried.extend_from_slice(&rest[..k]);
                        self.on_line(&carried);
                        carried.clear();
                    }
                    if self.state != State::Pass {
                        self.line = carried;
                    }
                    pos += k + 1;
                }
                State::Body(n) | State::ChunkData(n) => {
                    let avail = data.len() - pos;
                    let take = usize::try_from(n).map_or(avail, |n| n.min(avail));
                    pos += take;
                    // `take <= n`, so this cannot underflow.
                    let left = n - take as u64;
                    self.state = match (self.state, left) {
                        (State::Body(_), 0) => {
                            self.used = 0;
                            State::Idle
                        }
                        (State::Body(_), _) => State::Body(left),
                        (_, 0) => State::ChunkCr,
                        _ => State::ChunkData(left),
                    };
                }
                State::ChunkCr => {
                    if data[pos] != b'\r' {
                        self.pass();
                        return None;
                    }
                    pos += 1;
                    self.state = State::ChunkLf;
                }
                State::ChunkLf => {
                    if data[pos] != b'\n' {
                        self.pass();
                        return None;
                    }
                    pos += 1;
                    self.begin(State::ChunkSize);
                }
            }
        }
        if self.state == State::Target {
            // The target continues in the next read.
            self.target.extend_from_slice(&data[seg.min(data.len())..]);
        }
        None
    }

    /// Handles a complete line (without its `\n`) in a line-based state.
    fn on_line(&mut self, line: &[u8]) {
        match self.state {
            State::Version => {
                let version = line.strip_suffix(b"\r").unwrap_or(line);
                match version {
                    b"HTTP/1.1" => self.http10 = false,
                    b"HTTP/1.0" => self.http10 = true,
                    _ => return self.pass(),
                }
                self.state = State::Header;
            }
            State::Header => {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.is_empty() {
                    self.end_of_head();
                } else if !self.header(line) {
                    self.pass();
                }
            }
            State::ChunkSize => match chunk_size(line) {
                Some(0) => self.begin(State::Trailer),
                Some(n) => self.state = State::ChunkData(n),
                None => self.pass(),
            },
            State::Trailer => match line.strip_suffix(b"\r") {
                Some([]) => self.begin(State::Idle),
                Some(field) if !field.contains(&b'\r') => {}
                _ => self.pass(),
            },
            _ => self.pass(),
        }
    }

    /// Records what a header line means for framing; false if the scanner must give up.
    fn header(&mut self, line: &[u8]) -> bool {
        // One pass over the name: tchar bytes up to the colon. This also refuses obsolete line
        // folding and whitespace before the colon, as httparse does.
        let mut colon = 0;
        loop {
            match line.get(colon) {
                Some(b':') if colon > 0 => break,
                Some(&b) if is_tchar(b) => colon += 1,
                _ => return false,
            }
        }
        let name = &line[..colon];
        // Other headers do not matter for framing; if hyper refuses one (a stray CR, say) it
        // closes the connection anyway.
        if name.eq_ignore_ascii_case(b"content-length") {
            let Some(n) = decimal(trim_ows(&line[colon + 1..])) else {
                return false;
            };
            if self.content_length.is_some_and(|prev| prev != n) {
                return false;
            }
            self.content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.chunked = Some(final_coding_is_chunked(trim_ows(&line[colon + 1..])));
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            // Given up at the end of the head, once its framing has been judged.
            self.upgrade = true;
        }
        true
    }

    fn end_of_head(&mut self) {
        if self.chunked.is_some() && self.content_length.is_some() {
            self.targets.set_framing_conflict();
        }
        if self.upgrade {
            return self.pass();
        }
        match (self.chunked, self.content_length) {
            (Some(true), None) if !self.http10 => self.begin(State::ChunkSize),
            (Some(_), _) => self.pass(),
            (None, Some(n)) if n > 0 => self.state = State::Body(n),
            (None, _) => self.begin(State::Idle),
        }
    }
}

const CONNECT: &[u8] = b"CONNECT";

/// RFC 9110 `tchar`: the bytes of methods and header names.
const TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    t
};

fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// A `Content-Length` value as hyper reads it: ASCII digits only, no sign, no list.
fn decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// Whether the last coding of a `Transfer-Encoding` value is `chunked`, as hyper decides it
/// (a value with bytes hyper cannot read as text is not).
fn final_coding_is_chunked(value: &[u8]) -> bool {
    if !value.iter().all(|&b| b == b'\t' || (b' '..=b'~').contains(&b)) {
        return false;
    }
    let last = value.rsplit(|&b| b == b',').next().unwrap_or(value);
    trim_ows(last).eq_ignore_ascii_case(b"chunked")
}

/// Parses a chunk-size line (without its `\n`) as hyper's decoder does: hex digits, optional
/// whitespace, optional `;extension`, then `\r`. `None` if hyper would refuse it.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\r")?;
    if line.contains(&b'\r') {
        return None;
    }
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return None;
    }
    let mut size = 0u64;
    for &b in &line[..digits] {
        let d = char::from(b).to_digit(16)?;
        size = size.checked_mul(16)?.checked_add(u64::from(d))?;
    }
    match trim_ows_start(&line[digits..]) {
        [] | [b';', ..] => Some(size),
        _ => None,
    }
}

fn trim_ows_start(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    s
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Index of the first `\n` in `s`, eight bytes at a time.
fn find_lf(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    for chunk in s.chunks_exact(8) {
        let Ok(word) = <[u8; 8]>::try_from(chunk) else { break };
        let x = u64::from_ne_bytes(word) ^ (LO * u64::from(b'\n'));
        if x.wrapping_sub(LO) & !x & HI != 0 {
            break;
        }
        i += 8;
    }
    s[i..].iter().position(|&b| b == b'\n').map(|p| i + p)
}

/// Index of the first byte in `s` that ends or interrupts a request-target run: `>= 0x80`, or
/// `<= 0x20` (space, control bytes, CR, LF). Eight bytes at a time.
fn find_target_stop(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    for chunk in s.chunks_exact(8) {
        let Ok(word) = <[u8; 8]>::try_from(chunk) else { break };
        let x = u64::from_ne_bytes(word);
        // High bit set, or (for bytes < 0x80) less than 0x21.
        if (x & HI) | (x.wrapping_sub(LO * 0x21) & !x & HI) != 0 {
            break;
        }
        i += 8;
    }
    s[i..].iter().position(|&b| b >= 0x80 || b <= b' ').map(|p| i + p)
}

#[cfg(test)]
mod tests;

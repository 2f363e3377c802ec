//! Relaying what a worker (or a zygote) writes to stderr into the router's log, one log event
//! per line, tagged with its tenant, pid and slot.
//!
//! The bytes come from tenant code, so nothing about them is trusted: a line is at most
//! [`MAX_LINE`] bytes (the rest of a longer one is skipped as it arrives, never buffered),
//! bytes that are not UTF-8 are replaced, and the relay reads until the pipe's end whatever it
//! carries (a relay that stopped would leave the worker writing into a closed pipe). Each
//! tenant may log [`LINES_PER_SEC`] lines a second with bursts of [`BURST`] (a token bucket in
//! its [`Counters`], shared by its workers); lines beyond are counted
//! (`paddock_worker_log_lines_dropped_total`) and summed up in one line once relaying resumes.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::counters::{Counters, BURST, LINES_PER_SEC};

/// Longest line relayed, in bytes; a longer one is cut there and marked.
pub const MAX_LINE: usize = 8 * 1024;
/// Appended to a line cut at [`MAX_LINE`].
const CUT_MARK: &str = " [paddock: line cut at 8 KiB]";
/// Read errors in a row after which the relay gives up (a pipe does not fail like this).
const MAX_READ_ERRORS: u32 = 100;

/// Where relayed lines come from, for their log fields.
#[derive(Debug, Clone)]
pub struct Source {
    pub tenant: String,
    pub pid: u32,
    pub slot: usize,
}

/// Splits a byte stream into lines of at most [`MAX_LINE`] bytes, holding at most that much.
#[derive(Debug, Default)]
pub struct LineCutter {
    buf: Vec<u8>,
    /// The current line was cut: skip up to its newline.
    skipping: bool,
}

impl LineCutter {
    /// Feed the next bytes; `emit(line, cut)` gets each complete line (without its newline)
    /// and, as soon as it is known to be too long, the first [`MAX_LINE`] bytes of a long one.
    pub fn feed(&mut self, mut bytes: &[u8], mut emit: impl FnMut(&[u8], bool)) {
        while !bytes.is_empty() {
            let room = MAX_LINE - self.buf.len();
            match bytes.iter().position(|&b| b == b'\n') {
                Some(nl) => {
                    let part = &bytes[..nl];
                    if !std::mem::take(&mut self.skipping) {
                        let cut = part.len() > room;
                        self.buf.extend_from_slice(&part[..part.len().min(room)]);
                        emit(&self.buf, cut);
                        self.buf.clear();
                    }
                    bytes = &bytes[nl + 1..];
                }
                None if self.skipping => return,
                None if bytes.len() > room => {
                    self.buf.extend_from_slice(&bytes[..room]);
                    emit(&self.buf, true);
                    self.buf.clear();
                    self.skipping = true;
                    return;
                }
                None => {
                    self.buf.extend_from_slice(bytes);
                    return;
                }
            }
        }
    }

    /// The end of the stream: a last line without newline, if any.
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8], bool)) {
        if !self.buf.is_empty() {
            emit(&self.buf, false);
        }
        self.buf.clear();
        self.skipping = false;
    }
}

/// The text of one line: a trailing CR dropped, invalid UTF-8 replaced; a cut line loses a
/// character split by the cut and gets [`CUT_MARK`].
pub fn line_text(line: &[u8], cut: bool) -> String {
    let mut line = line.strip_suffix(b"\r").unwrap_or(line);
    if cut {
        line = &line[..complete_utf8_len(line)];
    }
    let mut text = String::from_utf8_lossy(line).into_owned();
    if cut {
        text.push_str(CUT_MARK);
    }
    text
}

/// `b`'s length without a UTF-8 sequence left incomplete at its end.
fn complete_utf8_len(b: &[u8]) -> usize {
    // The last lead byte within the last 4 bytes, and the length it announces.
    for back in 1..=b.len().min(4) {
        let i = b.len() - back;
        let want = match b[i] {
            0x00..=0x7f => 1,
            0x80..=0xbf => continue,
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            _ => 4,
        };
        return if back < want { i } else { b.len() };
    }
    b.len()
}

/// Relay `err` to the log until its end, rate-limited by `counters`' bucket.
pub fn relay(
    err: impl AsyncRead + Unpin + Send + 'static,
    source: Source,
    counters: Arc<Counters>,
) {
    tokio::spawn(run(err, source, counters));
}

async fn run(mut err: impl AsyncRead + Unpin, source: Source, counters: Arc<Counters>) {
    let mut cutter = LineCutter::default();
    let mut out = Out { source, counters, dropped: 0 };
    let mut chunk = vec![0u8; 16 * 1024];
    let mut errors = 0;
    loop {
        match err.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => {
                errors = 0;
                cutter.feed(&chunk[..n], |line, cut| out.line(line, cut));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                errors += 1;
                if errors >= MAX_READ_ERRORS {
                    let s = &out.source;
                    tracing::warn!(tenant = %s.tenant, pid = s.pid, slot = s.slot, "cannot read the worker's stderr any more: {e}");
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    cutter.finish(|line, cut| out.line(line, cut));
    out.summary();
}

/// One of the worker's own log events: it writes them as JSON lines (`worker/src/log.rs`).
#[derive(Debug, PartialEq, Eq)]
pub struct WorkerEvent {
    pub level: tracing::Level,
    pub message: String,
    /// Where in the worker it was logged (`paddock_worker::serve`).
    pub target: String,
    /// Its other fields as `key=value` pairs, sorted by key. They are the worker's
    /// (and so the tenant's) words: relayed inside this one field, they can never stand in for
    /// the router's own `tenant`, `pid` or `slot`.
    pub fields: String,
}

/// A line the worker's subscriber wrote: a JSON object with a known `level` and a string
/// `message`; `None` for anything else, which is relayed as it came (at INFO).
pub fn parse_event(text: &str) -> Option<WorkerEvent> {
    if !text.starts_with('{') {
        return None;
    }
    let serde_json::Value::Object(map) = serde_json::from_str(text).ok()? else { return None };
    let level = match map.get("level")?.as_str()? {
        "ERROR" => tracing::Level::ERROR,
        "WARN" => tracing::Level::WARN,
        "INFO" => tracing::Level::INFO,
        "DEBUG" => tracing::Level::DEBUG,
        "TRACE" => tracing::Level::TRACE,
        _ => return None,
    };
    let message = map.get("message")?.as_str()?.to_string();
    let target = map.get("target").and_then(|t| t.as_str()).unwrap_or_default().to_string();
    let fields = map
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "level" | "message" | "target" | "timestamp"))
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect::<Vec<_>>()
        .join(" ");
    Some(WorkerEvent { level, message, target, fields })
}

/// The log side of one relay.
struct Out {
    source: Source,
    counters: Arc<Counters>,
    /// Lines dropped since the last one logged.
    dropped: u64,
}

impl Out {
    fn line(&mut self, line: &[u8], cut: bool) {
        if !self.counters.log_line_allowed() {
            self.dropped += 1;
            return;
        }
        self.summary();
        let s = &self.source;
        let text = line_text(line, cut);
        let Some(ev) = (!cut).then(|| parse_event(&text)).flatten() else {
            // Anything else the process wrote (Python's own stderr, a C library): as it came.
            tracing::info!(target: "paddock::worker", tenant = %s.tenant, pid = s.pid, slot = s.slot, "{text}");
            return;
        };
        let fields = (!ev.fields.is_empty()).then_some(ev.fields.as_str());
        macro_rules! relay {
            ($level:expr) => {
                tracing::event!(target: "paddock::worker", $level, tenant = %s.tenant, pid = s.pid,
                    slot = s.slot, worker_target = %ev.target, fields = fields, "{}", ev.message)
            };
        }
        match ev.level {
            tracing::Level::ERROR => relay!(tracing::Level::ERROR),
            tracing::Level::WARN => relay!(tracing::Level::WARN),
            tracing::Level::INFO => relay!(tracing::Level::INFO),
            tracing::Level::DEBUG => relay!(tracing::Level::DEBUG),
            _ => relay!(tracing::Level::TRACE),
        }
    }

    /// The "dropped N lines" line, if lines were dropped since the last one logged.
    fn summary(&mut self) {
        let n = std::mem::take(&mut self.dropped);
        if n > 0 {
            let s = &self.source;
            tracing::warn!(target: "paddock::worker", tenant = %s.tenant, pid = s.pid, slot = s.slot, dropped = n,
                "dropped {n} lines (log rate limit: {LINES_PER_SEC} lines/s, bursts of {BURST})");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_workers_json_lines_keep_their_level_and_fields() {
        let ev = parse_event(
            r#"{"level":"WARN","message":"slow request","ms":1200,"path":"/x","target":"paddock_worker::serve"}"#,
        )
        .expect("an event");
        assert_eq!(ev.level, tracing::Level::WARN);
        assert_eq!(ev.message, "slow request");
        assert_eq!(ev.target, "paddock_worker::serve");
        assert_eq!(ev.fields, "ms=1200 path=/x");
        // The worker's fields never become the router's: they stay inside `fields`.
        let forged =
            parse_event(r#"{"level":"ERROR","message":"m","tenant":"other"}"#).expect("event");
        assert_eq!(forged.fields, "tenant=other");
        for raw in [
            "plain text",
            "{not json",
            r#"{"level":"LOUD","message":"m"}"#,
            r#"{"level":"INFO"}"#,
            "[1,2]",
        ] {
            assert_eq!(parse_event(raw), None, "{raw}");
        }
    }

    use super::*;

    fn cut_all(chunks: &[&[u8]]) -> Vec<(Vec<u8>, bool)> {
        let mut c = LineCutter::default();
        let mut out = Vec::new();
        for ch in chunks {
            c.feed(ch, |l, cut| out.push((l.to_vec(), cut)));
            assert!(c.buf.len() <= MAX_LINE);
        }
        c.finish(|l, cut| out.push((l.to_vec(), cut)));
        out
    }

    #[test]
    fn lines_split_across_chunks() {
        let out = cut_all(&[b"one\ntw", b"o\n\nthr", b"ee"]);
        let want: Vec<(Vec<u8>, bool)> =
            [&b"one"[..], b"two", b"", b"three"].iter().map(|l| (l.to_vec(), false)).collect();
        assert_eq!(out, want);
    }

    #[test]
    fn long_lines_are_cut_once_and_the_rest_skipped() {
        let exact = vec![b'x'; MAX_LINE];
        let out = cut_all(&[&exact, b"\n"]);
        assert_eq!(out, vec![(exact.clone(), false)], "exactly MAX_LINE is not cut");

        // 200 chunks of 16 KiB without a newline, then a normal line.
        let big = vec![b'y'; 16 * 1024];
        let mut chunks: Vec<&[u8]> = vec![&big; 200];
        chunks.push(b"tail of the long line\nnext\n");
        let out = cut_all(&chunks);
        let sizes: Vec<(usize, bool)> = out.iter().map(|(l, c)| (l.len(), *c)).collect();
        assert_eq!(out.len(), 2, "{sizes:?}");
        assert_eq!(out[0], (vec![b'y'; MAX_LINE], true));
        assert_eq!(out[1], (b"next".to_vec(), false));

        // Cut inside one chunk that also ends the line.
        let mut one = vec![b'z'; MAX_LINE + 10];
        one.extend_from_slice(b"\nafter\n");
        let want = vec![(vec![b'z'; MAX_LINE], true), (b"after".to_vec(), false)];
        assert_eq!(cut_all(&[&one]), want);
    }

    #[test]
    fn text_is_decoded_lossily_and_cut_lines_are_marked() {
        assert_eq!(line_text(b"ok\r", false), "ok");
        assert_eq!(line_text(b"bad \xff\xfe byte", false), "bad \u{fffd}\u{fffd} byte");
        // A cut through "é" (c3 a9) drops its first half instead of showing a replacement.
        assert_eq!(line_text(b"caf\xc3", true), format!("caf{CUT_MARK}"));
        assert_eq!(line_text("café".as_bytes(), true), format!("café{CUT_MARK}"));
        assert_eq!(line_text(b"\xe2\x82", true), CUT_MARK);
        assert_eq!(complete_utf8_len("a€".as_bytes()), 4);
    }

    #[test]
    fn counters_count_what_the_bucket_refuses() {
        let c = Counters::default();
        let allowed = (0..2500).filter(|_| c.log_line_allowed()).count();
        assert!((2000..2010).contains(&allowed), "{allowed}");
        assert_eq!(Counters::get(&c.log_lines_dropped), 2500 - allowed as u64);
    }
}

//! One client connection, once accepted: the TLS handshake if it came in on the HTTPS
//! listener, then HTTP/1.1 or HTTP/2 (by ALPN on TLS; by its preface, h2c with prior knowledge,
//! on the plain listener), and the service that hands each request to [`super::handle`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{field, Instrument};

use super::{fresh, head_bytes, Side, State};
use crate::eightbit::EightBit;
use crate::outcome::{Reject, RequestMeta};
use crate::refusal::Refusal;

/// Streams a client may reset before the server has taken them up; one more and the
/// connection gets GOAWAY (ENHANCE_YOUR_CALM): the "rapid reset" attack (CVE-2023-44487).
/// h2's own default, stated here so that it cannot change under us.
pub const H2_MAX_PENDING_ACCEPT_RESETS: usize = 20;
/// Streams the server may reset for the client's errors on one connection before it closes
/// it (CVE-2025-8671, "made you reset").
pub const H2_MAX_LOCAL_ERROR_RESETS: usize = 1024;
/// An HTTP/2 connection is pinged after this long without frames, and closed when the ping
/// gets no answer within as long: dead peers do not hold a connection slot.
const H2_KEEPALIVE: Duration = Duration::from_secs(20);

/// Where a connection came from, and how.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub side: Side,
    /// It came in on the HTTPS listener: the app sees `https`.
    pub tls: bool,
}

/// What a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocols {
    Http1,
    Http2,
}

/// HTTP/2's connection preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether a plain connection opens with HTTP/2's preface (h2c with prior knowledge), told
/// from its first bytes without reading them: hyper then reads the stream exactly as it
/// would have without the check, so HTTP/1 behaves as before (hyper-util's own detection
/// reads them, which changes how hyper's read buffer grows, and with it which of 414 and
/// 431 an over-long head gets). Waits at most `limit` for bytes that tell.
pub async fn sniff(stream: &tokio::net::TcpStream, limit: Duration) -> std::io::Result<Protocols> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = [0u8; PREFACE.len()];
    loop {
        let n =
            tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await.map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no request within header_read_timeout",
                )
            })??;
        if n == 0 || buf[..n] != PREFACE[..n] {
            return Ok(Protocols::Http1);
        }
        if n == PREFACE.len() {
            return Ok(Protocols::Http2);
        }
        // A preface cut short: the rest is on its way (peek would return at once).
        if tokio::time::Instant::now() >= deadline {
            return Ok(Protocols::Http1);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The protocol ALPN chose on a TLS connection (HTTP/1.1 when the client offered none).
pub fn negotiated(alpn: Option<&[u8]>) -> Protocols {
    match alpn {
        Some(b"h2") => Protocols::Http2,
        _ => Protocols::Http1,
    }
}

/// Serve HTTP on `io` until the client or the drain ends it. A connection that has not
/// started a request within `header_read_timeout` is closed (hyper's own timer only covers
/// HTTP/1 heads).
pub async fn serve<S>(
    io: S,
    st: Arc<State>,
    link: Link,
    mark: Arc<fresh::Mark>,
    protocols: Protocols,
    watcher: Watcher,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let cfg = st.config();
    // hyper refuses 8-bit bytes in request targets; the adapter escapes them on the way in
    // and hands the original bytes over, one queue entry per request. HTTP/2 passes whole.
    let io = match protocols {
        Protocols::Http1 => EightBit::new(io),
        Protocols::Http2 => EightBit::new(io).allowing_h2(),
    };
    let raw_targets = io.targets();
    let max_head = cfg.max_header_bytes;
    let started = Arc::new(AtomicBool::new(false));
    let first = started.clone();
    let svc = service_fn(move |req: Request<Incoming>| {
        mark.started();
        first.store(true, Ordering::Relaxed);
        let st = st.clone();
        let popped = raw_targets.pop_request(req.uri());
        let (raw, smuggling) = (popped.original, popped.framing_conflict);
        let too_large = head_bytes(&req, raw.as_deref()) > max_head;
        // Every line logged while the request is handled (and its body streams: see
        // `access::logged`) carries these; `tenant` and `pid` are recorded once known.
        let span = tracing::info_span!(
            "request",
            client = %link.peer.ip(),
            tenant = field::Empty,
            pid = field::Empty
        );
        async move {
            let early = match (too_large, smuggling) {
                (true, _) => Some(Refusal::head_too_large()),
                (false, true) => {
                    tracing::warn!(target: "paddock::access", "refused a request with both Content-Length and Transfer-Encoding");
                    Some(Refusal::conflicting_framing())
                }
                (false, false) => None,
            };
            if let Some(refusal) = early {
                let mut meta = RequestMeta::default();
                let resp = refusal.answer(&mut meta);
                st.metrics.no_tenant().record(resp.status().as_u16(), Duration::ZERO, &meta);
                return Ok::<_, Infallible>(resp);
            }
            Ok::<_, Infallible>(super::handle(st, req, raw, link).await)
        }
        .instrument(span)
    });
    let builder = builder(&cfg, protocols);
    let conn = watcher.watch(builder.serve_connection(TokioIo::new(io), svc).into_owned());
    tokio::pin!(conn);
    tokio::select! {
        r = &mut conn => return r,
        _ = tokio::time::sleep(cfg.header_read_timeout) => {}
    }
    if !started.load(Ordering::Relaxed) {
        return Err(format!(
            "no request within {:?} (header_read_timeout)",
            cfg.header_read_timeout
        )
        .into());
    }
    conn.await
}

fn builder(cfg: &paddock_config::Config, protocols: Protocols) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_read_timeout)
        .max_buf_size(cfg.max_header_bytes);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(cfg.http2_max_concurrent_streams)
        // h2 counts each field as its name, value and 32 bytes; near enough to the HTTP/1
        // count that one `max_header_bytes` bounds both.
        .max_header_list_size(u32::try_from(cfg.max_header_bytes).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(H2_MAX_PENDING_ACCEPT_RESETS)
        .max_local_error_reset_streams(H2_MAX_LOCAL_ERROR_RESETS)
        .keep_alive_interval(H2_KEEPALIVE)
        .keep_alive_timeout(H2_KEEPALIVE);
    match protocols {
        Protocols::Http1 => b.http1_only(),
        Protocols::Http2 => b.http2_only(),
    }
}

/// Log how a connection ended; a head over `max_header_bytes` is counted.
pub fn ended(st: &State, peer: SocketAddr, e: &(dyn std::error::Error + 'static)) {
    if e.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_parse_too_large) {
        st.metrics.no_tenant().reject(Reject::HeadTooLarge);
    }
    tracing::debug!(client = %peer, "connection ended: {e}");
}

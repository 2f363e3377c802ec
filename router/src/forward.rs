//! Carry one request to a worker over the tenant's Unix socket and stream the answer back.
//! Bodies flow both ways in frames, never buffered whole.
//!
//! Requests without a body go over a kept-alive connection when the pool has an idle one
//! (no connect, no accept, no `Hello` round); a connection returns to the pool once its
//! response has ended. Requests with a body get a connection of their own, so that a request
//! that can never be sent again (its body is being streamed) only ever goes to a worker that
//! has committed to it with its `Hello`.

use std::io;
use std::sync::Arc;

use http::{HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use paddock_proto::{encode, AbortKind, BodyKind, Frame, Hello, RequestHead, ResponseHead};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use crate::respond::Body;
use body::{Link, WorkerBody};
use paddock_supervise::conn::WorkerConn;
use paddock_supervise::frames::{FrameReader, ReadError};
use paddock_supervise::pool::Pool;
pub use upload::Limits;
use upload::{write_request, WriteError};

mod body;
mod upload;

/// Why forwarding failed; [`crate::respond`] maps each to a status.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("cannot connect to the worker socket: {0}")]
    Connect(io::Error),
    #[error("the worker closed the connection before answering")]
    WorkerGone,
    #[error("the application failed: {0}")]
    AppError(String),
    #[error("the worker did not answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("protocol error from the worker: {0}")]
    Protocol(String),
    #[error("oversized response headers from worker {pid}: {size} bytes, limit {limit} (max_response_head_bytes)")]
    HeadTooLarge { size: usize, limit: usize, pid: u32 },
    #[error("the request body exceeds the limit of {0} bytes")]
    BodyTooLarge(u64),
    #[error("the client's request body is invalid or ended early")]
    BadBody,
    #[error("the request body did not arrive within body_read_timeout ({0:?}, extended by body_min_rate)")]
    BodyTimeout(std::time::Duration),
}

/// How long a failed exchange waits for its body writer to say whether the client's body was
/// the cause.
const WRITER_GRACE: std::time::Duration = std::time::Duration::from_millis(200);

/// Attempts for a request whose worker closed the connection before starting it.
const RETRIES: u32 = 3;

/// A request ran past `request_timeout`: have the worker print every thread's Python stack
/// (operators always ask where it was stuck), and replace that process once its other
/// requests are done.
fn stuck(pool: &Pool, pid: u32, timeout: std::time::Duration) {
    serving(pid);
    tracing::warn!("request exceeded request_timeout ({timeout:?}); the Python stacks of the worker follow, and it will be replaced");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGUSR2,
    );
    pool.recycle_pid(pid, paddock_supervise::counters::Reason::Timeout);
}

/// The worker `pid` serves the request: from here on its log lines say so (the request's
/// span, `front::serve`).
fn serving(pid: u32) {
    tracing::Span::current().record("pid", pid);
}

/// Response headers that describe one connection and are not passed on (RFC 9110 7.6.1, plus
/// the `Proxy-Connection`, `Trailer` and `Proxy-Authenticate` of older proxies). The worker
/// already refuses the app's hop-by-hop headers by PEP 3333's own list (`worker/src/response.rs`);
/// this is the router's rule for what it forwards, whoever produced the response.
const CONNECTION_SPECIFIC: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authenticate",
];

/// Send `head` and `body` to a worker of `pool`; return the response as it starts to arrive.
/// The slot `permit` is held until the response body has ended. `settings` come from the
/// tenant's per-request settings in the configuration now in force (not from the pool, which
/// only knows what its workers were started from).
pub async fn forward(
    pool: &Arc<Pool>,
    settings: Limits,
    head: RequestHead,
    body: Incoming,
    permit: OwnedSemaphorePermit,
    max_head: usize,
) -> Result<Response<Body>, ForwardError> {
    let deadline = Instant::now() + settings.request_timeout;
    let is_head = head.method.eq_ignore_ascii_case(b"HEAD");
    let (link, pid, resp) = if head.body == BodyKind::Empty {
        let (conn, resp) = exchange_kept(pool, settings, head, deadline).await?;
        let pid = conn.pid;
        (Link::Kept(conn), pid, resp)
    } else {
        exchange_split(pool, settings, head, body, deadline).await?
    };
    let (builder, declared) = response_builder(&resp, max_head, pid)?;
    let body = match link {
        // No body can follow (hyper would not even ask for one): take the `End` now so the
        // connection is idle again at once.
        Link::Kept(mut conn) if is_head || matches!(resp.status, 204 | 304) => {
            if tokio::time::timeout_at(deadline, skip_to_end(&mut conn.reader)).await == Ok(true) {
                pool.put_conn(conn);
            }
            drop(permit);
            http_body_util::Empty::new().map_err(|never| match never {}).boxed()
        }
        link => {
            let mut body = WorkerBody::new(link, Arc::clone(pool), permit, declared);
            body.prefetch().map_err(ForwardError::Protocol)?;
            body.boxed()
        }
    };
    builder.body(body).map_err(|e| ForwardError::Protocol(e.to_string()))
}

/// A request without a body, over an idle connection or a new one. A connection on which the
/// worker said `Goodbye` (retiring) or that closed before the worker's `Hello` never started
/// the request: it is sent again, up to [`RETRIES`] times.
async fn exchange_kept(
    pool: &Arc<Pool>,
    settings: Limits,
    head: RequestHead,
    deadline: Instant,
) -> Result<(WorkerConn, ResponseHead), ForwardError> {
    let mut request = Vec::with_capacity(512);
    encode(&Frame::Request(head), &mut request);
    encode(&Frame::End, &mut request);
    let timeout = settings.request_timeout;
    for attempt in 1..=RETRIES {
        let (mut conn, fresh) = match pool.take_conn() {
            Some(c) => {
                serving(c.pid);
                (c, false)
            }
            None => (connect(pool).await?, true),
        };
        let wrote = if fresh {
            let mut first = hello_bytes();
            first.extend_from_slice(&request);
            conn.reader.get_mut().write_all(&first).await
        } else {
            conn.reader.get_mut().write_all(&request).await
        };
        // A failed write leaves what the worker sent readable: a Goodbye says it never read.
        if wrote.is_err() && fresh {
            continue;
        }
        if fresh {
            match tokio::time::timeout_at(deadline, read_hello(&mut conn.reader)).await {
                Err(_) => return Err(ForwardError::Timeout(timeout)),
                Ok(Err(ForwardError::WorkerGone)) => {
                    tracing::debug!(attempt, "worker closed before answering; retrying");
                    continue;
                }
                Ok(Err(e)) => return Err(e),
                Ok(Ok(pid)) => {
                    serving(pid);
                    conn.pid = pid;
                }
            }
        }
        match tokio::time::timeout_at(deadline, read_head(&mut conn.reader)).await {
            Err(_) => {
                stuck(pool, conn.pid, timeout);
                return Err(ForwardError::Timeout(timeout));
            }
            Ok(Ok(Some(resp))) => return Ok((conn, resp)),
            Ok(Ok(None)) => {
                tracing::debug!(attempt, "worker retiring said goodbye; retrying");
            }
            Ok(Err(e)) => return Err(e),
        }
    }
    Err(ForwardError::WorkerGone)
}

/// A request with a body, on a connection of its own: the body is streamed by a task of its
/// own while the response is read, and the connection is closed afterwards.
async fn exchange_split(
    pool: &Arc<Pool>,
    settings: Limits,
    head: RequestHead,
    body: Incoming,
    deadline: Instant,
) -> Result<(Link, u32, ResponseHead), ForwardError> {
    let timeout = settings.request_timeout;
    let limit = settings.max_body;
    let pace = settings.pace;
    let slot = pool.reserve_conn();
    let stream = UnixStream::connect(&pool.socket_path).await.map_err(ForwardError::Connect)?;
    let (rd, wr) = stream.into_split();
    let mut preamble = hello_bytes();
    encode(&Frame::Request(head), &mut preamble);
    let mut writer = tokio::spawn(write_request(wr, preamble, body, limit, pace));
    let mut reader = FrameReader::new(rd);
    let pid = match tokio::time::timeout_at(deadline, read_hello(&mut reader)).await {
        Err(_) => return Err(ForwardError::Timeout(timeout)),
        Ok(r) => r?,
    };
    serving(pid);
    // A broken or oversized body is the client's fault: answer it at once, whatever the
    // application makes of the `Abort` it was sent instead of the rest of the body.
    let mut written = false;
    let head = {
        let read = tokio::time::timeout_at(deadline, read_head(&mut reader));
        tokio::pin!(read);
        tokio::select! {
            biased;
            w = &mut writer => match w {
                Ok(Err(WriteError::TooLarge)) => return Err(ForwardError::BodyTooLarge(limit)),
                Ok(Err(WriteError::Client)) => return Err(ForwardError::BadBody),
                Ok(Err(WriteError::Slow)) => return Err(ForwardError::BodyTimeout(pace.timeout)),
                _ => {
                    written = true;
                    read.await
                }
            },
            h = &mut read => h,
        }
    };
    match head {
        Err(_) => {
            stuck(pool, pid, timeout);
            Err(ForwardError::Timeout(timeout))
        }
        Ok(Ok(Some(resp))) => Ok((Link::Split { reader, _open: slot }, pid, resp)),
        Ok(Ok(None)) => Err(ForwardError::Protocol("goodbye on a new connection".into())),
        Ok(Err(e)) => {
            // The writer stopping on a bad body makes the worker fail (its `wsgi.input` read
            // raised); report the cause rather than its effect.
            if !written {
                match tokio::time::timeout(WRITER_GRACE, writer).await {
                    Ok(Ok(Err(WriteError::TooLarge))) => {
                        return Err(ForwardError::BodyTooLarge(limit))
                    }
                    Ok(Ok(Err(WriteError::Client))) => return Err(ForwardError::BadBody),
                    Ok(Ok(Err(WriteError::Slow))) => {
                        return Err(ForwardError::BodyTimeout(pace.timeout))
                    }
                    _ => {}
                }
            }
            Err(e)
        }
    }
}

async fn connect(pool: &Pool) -> Result<WorkerConn, ForwardError> {
    let slot = pool.reserve_conn();
    let stream = UnixStream::connect(&pool.socket_path).await.map_err(ForwardError::Connect)?;
    Ok(WorkerConn { reader: FrameReader::new(stream), pid: 0, slot })
}

fn hello_bytes() -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    let hello = Hello { version: paddock_proto::VERSION, pid: std::process::id() };
    encode(&Frame::Hello(hello), &mut out);
    out
}

/// Check the response head and turn it into a response builder; with it, the app's
/// `Content-Length`.
fn response_builder(
    head: &ResponseHead,
    max_head: usize,
    pid: u32,
) -> Result<(http::response::Builder, Option<u64>), ForwardError> {
    let head_size: usize =
        head.reason.len() + head.headers.iter().map(|(k, v)| k.len() + v.len() + 4).sum::<usize>();
    if head_size > max_head {
        return Err(ForwardError::HeadTooLarge { size: head_size, limit: max_head, pid });
    }
    // An app cannot switch protocols or send interim answers through WSGI, and a code
    // above 599 is not HTTP: both would leave the client with a broken exchange.
    if !(200..=599).contains(&head.status) {
        return Err(ForwardError::Protocol(format!("invalid status {}", head.status)));
    }
    let status = StatusCode::from_u16(head.status)
        .map_err(|_| ForwardError::Protocol(format!("invalid status {}", head.status)))?;
    let declared = content_length(head)?;
    let mut resp = Response::builder().status(status);
    for (k, v) in &head.headers {
        let name = HeaderName::from_bytes(k).map_err(|_| {
            ForwardError::Protocol(format!("invalid header name {:?}", String::from_utf8_lossy(k)))
        })?;
        if CONNECTION_SPECIFIC.contains(&name.as_str()) {
            continue;
        }
        let value = HeaderValue::from_bytes(v)
            .map_err(|_| ForwardError::Protocol(format!("invalid value for header {name}")))?;
        resp = resp.header(name, value);
    }
    Ok((resp, declared))
}

/// The app's `Content-Length`, checked: every value a plain decimal number and all of them
/// equal (RFC 9110 8.6); otherwise the response cannot be framed honestly.
fn content_length(head: &ResponseHead) -> Result<Option<u64>, ForwardError> {
    let mut found: Option<u64> = None;
    for (k, v) in &head.headers {
        if !k.eq_ignore_ascii_case(b"content-length") {
            continue;
        }
        let text = std::str::from_utf8(v).unwrap_or("").trim_matches([' ', '\t']);
        let n = (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse::<u64>().ok())
            .flatten()
            .ok_or_else(|| {
                ForwardError::Protocol(format!(
                    "invalid Content-Length {:?}",
                    String::from_utf8_lossy(v)
                ))
            })?;
        if found.is_some_and(|f| f != n) {
            return Err(ForwardError::Protocol("Content-Length values differ".to_string()));
        }
        found = Some(n);
    }
    Ok(found)
}

/// Read up to the response's `End`, dropping body bytes no client may see (a `HEAD` answer,
/// a 304); false if the connection broke first.
async fn skip_to_end<R>(reader: &mut FrameReader<R>) -> bool
where
    R: tokio::io::AsyncRead + Unpin,
{
    loop {
        match reader.next().await {
            Ok(Some(Frame::Body(_))) => {}
            Ok(Some(Frame::End)) => return true,
            _ => return false,
        }
    }
}

fn read_error(e: ReadError) -> ForwardError {
    match e {
        ReadError::Broken => ForwardError::WorkerGone,
        ReadError::Protocol(msg) => ForwardError::Protocol(msg),
    }
}

/// The worker's `Hello`: its pid, which says which process serves this request.
async fn read_hello<R>(reader: &mut FrameReader<R>) -> Result<u32, ForwardError>
where
    R: tokio::io::AsyncRead + Unpin,
{
    match reader.next().await.map_err(read_error)? {
        Some(Frame::Hello(h)) if h.version == paddock_proto::VERSION => Ok(h.pid),
        Some(Frame::Hello(h)) => {
            Err(ForwardError::Protocol(format!("worker speaks protocol version {}", h.version)))
        }
        Some(f) => Err(ForwardError::Protocol(format!("expected hello, got {:?}", f.frame_type()))),
        None => Err(ForwardError::WorkerGone),
    }
}

/// The response head; `None` if the worker said `Goodbye` instead (it never read the request).
async fn read_head<R>(reader: &mut FrameReader<R>) -> Result<Option<ResponseHead>, ForwardError>
where
    R: tokio::io::AsyncRead + Unpin,
{
    match reader.next().await.map_err(read_error)? {
        Some(Frame::Response(h)) => Ok(Some(h)),
        Some(Frame::Goodbye) => Ok(None),
        Some(Frame::Abort(a)) if a.kind == AbortKind::AppError => {
            Err(ForwardError::AppError(String::from_utf8_lossy(&a.message).into_owned()))
        }
        Some(Frame::Abort(a)) => {
            Err(ForwardError::Protocol(String::from_utf8_lossy(&a.message).into_owned()))
        }
        Some(f) => Err(ForwardError::Protocol(format!(
            "expected a response head, got {:?}",
            f.frame_type()
        ))),
        None => Err(ForwardError::WorkerGone),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(status: u16, headers: &[(&str, &str)]) -> ResponseHead {
        ResponseHead {
            status,
            reason: b"X".to_vec(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect(),
        }
    }

    fn refused(h: &ResponseHead) -> bool {
        matches!(response_builder(h, 64 * 1024, 1), Err(ForwardError::Protocol(_)))
    }

    #[test]
    fn interim_and_out_of_range_statuses_are_refused() {
        for status in [100, 101, 103, 199, 600, 999] {
            assert!(refused(&head(status, &[])), "{status} accepted");
        }
        for status in [200, 204, 304, 404, 599] {
            assert!(!refused(&head(status, &[])), "{status} refused");
        }
    }

    #[test]
    fn content_length_must_be_one_decimal_number() {
        assert_eq!(
            content_length(&head(200, &[("Content-Length", "12")])).ok().flatten(),
            Some(12)
        );
        assert!(!refused(&head(200, &[("content-length", "5"), ("Content-Length", " 5")])));
        for bad in ["", "-1", "+5", "0x10", "1 2", "5,5", "99999999999999999999999", "\u{e9}"] {
            assert!(refused(&head(200, &[("Content-Length", bad)])), "{bad:?} accepted");
        }
        assert!(refused(&head(200, &[("Content-Length", "5"), ("content-length", "6")])));
    }
}

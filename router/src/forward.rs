//! Carry one request to a worker over the tenant's Unix socket and stream the answer back.
//! Bodies flow both ways in frames, never buffered whole.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame as BodyFrame, Incoming};
use paddock_proto::{decode, encode, encode_body_header, AbortKind, Frame, Hello, RequestHead};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use crate::pool::Pool;

/// Response body type of the whole front door.
pub type Body = BoxBody<Bytes, io::Error>;

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
}

/// Attempts for a request whose worker closed the connection before starting it.
const RETRIES: u32 = 3;

/// A request ran past `request_timeout`: have the worker print every thread's Python stack
/// (operators always ask where it was stuck), and replace that process once its other
/// requests are done.
fn stuck(pool: &Pool, pid: u32, timeout: std::time::Duration) {
    tracing::warn!(tenant = %pool.spec.name, pid, "request exceeded request_timeout ({timeout:?}); the Python stacks of the worker follow, and it will be replaced");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGUSR2,
    );
    pool.recycle_pid(pid, crate::supervisor::Reason::Timeout);
}

/// Headers that describe one hop and must not be passed on.
const HOP_BY_HOP: [&str; 8] = [
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
pub async fn forward(
    pool: &Arc<Pool>,
    head: RequestHead,
    body: Incoming,
    permit: OwnedSemaphorePermit,
    max_head: usize,
) -> Result<Response<Body>, ForwardError> {
    let has_body = head.body != paddock_proto::BodyKind::Empty;
    let mut preamble = Vec::with_capacity(1024);
    encode(
        &Frame::Hello(Hello { version: paddock_proto::VERSION, pid: std::process::id() }),
        &mut preamble,
    );
    encode(&Frame::Request(head), &mut preamble);
    if !has_body {
        encode(&Frame::End, &mut preamble);
    }
    let limit = pool.spec.settings.max_body;
    let timeout = pool.spec.settings.request_timeout;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut body = has_body.then_some(body);
    let mut attempt = 0;
    let (mut reader, pid, writer) = loop {
        attempt += 1;
        let stream = UnixStream::connect(&pool.socket_path).await.map_err(ForwardError::Connect)?;
        let (rd, wr) = stream.into_split();
        let writer = tokio::spawn(write_request(wr, preamble.clone(), body.take(), limit));
        let mut reader = FrameReader { rd, buf: Vec::with_capacity(16 * 1024), start: 0 };
        match tokio::time::timeout_at(deadline, read_hello(&mut reader)).await {
            Err(_) => return Err(ForwardError::Timeout(timeout)),
            // The worker closed before its Hello: it never started this request (a process
            // retiring at that moment). Safe to send again when there is no body to replay.
            Ok(Err(ForwardError::WorkerGone)) if !has_body && attempt < RETRIES => {
                tracing::debug!(tenant = %pool.spec.name, attempt, "worker closed before answering; retrying");
                continue;
            }
            Ok(Err(e)) => return Err(e),
            Ok(Ok(pid)) => break (reader, pid, writer),
        }
    };
    let head = match tokio::time::timeout_at(deadline, read_head(&mut reader)).await {
        Err(_) => {
            stuck(pool, pid, timeout);
            return Err(ForwardError::Timeout(timeout));
        }
        Ok(Err(e)) => {
            // A body over the limit makes the writer stop; report that rather than its effect.
            if writer.is_finished() {
                if let Ok(Err(WriteError::TooLarge)) = writer.await {
                    return Err(ForwardError::BodyTooLarge(limit));
                }
            }
            return Err(e);
        }
        Ok(Ok(h)) => h,
    };
    let head_size: usize =
        head.reason.len() + head.headers.iter().map(|(k, v)| k.len() + v.len() + 4).sum::<usize>();
    if head_size > max_head {
        return Err(ForwardError::HeadTooLarge { size: head_size, limit: max_head, pid });
    }
    let mut resp = Response::builder().status(
        StatusCode::from_u16(head.status)
            .map_err(|_| ForwardError::Protocol(format!("invalid status {}", head.status)))?,
    );
    for (k, v) in &head.headers {
        let name = HeaderName::from_bytes(k).map_err(|_| {
            ForwardError::Protocol(format!("invalid header name {:?}", String::from_utf8_lossy(k)))
        })?;
        if HOP_BY_HOP.contains(&name.as_str()) {
            continue;
        }
        let value = HeaderValue::from_bytes(v)
            .map_err(|_| ForwardError::Protocol(format!("invalid value for header {name}")))?;
        resp = resp.header(name, value);
    }
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(pump(reader, tx, permit));
    resp.body(ChannelBody { rx }.boxed()).map_err(|e| ForwardError::Protocol(e.to_string()))
}

#[derive(Debug)]
enum WriteError {
    Io,
    Client,
    TooLarge,
}

/// Write the preamble, then the client's body as frames, then `End`.
async fn write_request(
    mut wr: OwnedWriteHalf,
    preamble: Vec<u8>,
    body: Option<Incoming>,
    limit: u64,
) -> Result<OwnedWriteHalf, WriteError> {
    wr.write_all(&preamble).await.map_err(|_| WriteError::Io)?;
    let Some(mut body) = body else { return Ok(wr) };
    let mut total: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| WriteError::Client)?;
        let Ok(data) = frame.into_data() else { continue };
        total += data.len() as u64;
        if total > limit {
            return Err(WriteError::TooLarge);
        }
        for chunk in data.chunks(paddock_proto::MAX_CHUNK) {
            wr.write_all(&encode_body_header(chunk.len())).await.map_err(|_| WriteError::Io)?;
            wr.write_all(chunk).await.map_err(|_| WriteError::Io)?;
        }
    }
    let mut end = Vec::with_capacity(5);
    encode(&Frame::End, &mut end);
    wr.write_all(&end).await.map_err(|_| WriteError::Io)?;
    Ok(wr)
}

/// The worker's `Hello`: its pid, which says which process serves this request.
async fn read_hello(reader: &mut FrameReader) -> Result<u32, ForwardError> {
    match reader.next().await? {
        Some(Frame::Hello(h)) if h.version == paddock_proto::VERSION => Ok(h.pid),
        Some(Frame::Hello(h)) => {
            Err(ForwardError::Protocol(format!("worker speaks protocol version {}", h.version)))
        }
        Some(f) => Err(ForwardError::Protocol(format!("expected hello, got {:?}", f.frame_type()))),
        None => Err(ForwardError::WorkerGone),
    }
}

async fn read_head(reader: &mut FrameReader) -> Result<paddock_proto::ResponseHead, ForwardError> {
    match reader.next().await? {
        Some(Frame::Response(h)) => Ok(h),
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

/// Move body frames from the worker to the client until `End`; holds the pool slot till then.
async fn pump(
    mut reader: FrameReader,
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
    _permit: OwnedSemaphorePermit,
) {
    loop {
        let item = match reader.next().await {
            Ok(Some(Frame::Body(b))) => Ok(Bytes::from(b)),
            Ok(Some(Frame::End)) => return,
            Ok(Some(Frame::Abort(a))) => Err(io::Error::other(format!(
                "the application failed while sending its response: {}",
                String::from_utf8_lossy(&a.message)
            ))),
            Ok(Some(f)) => Err(io::Error::other(format!(
                "unexpected {:?} frame in a response body",
                f.frame_type()
            ))),
            Ok(None) => Err(io::Error::other(
                "the worker closed the connection in the middle of a response",
            )),
            Err(e) => Err(io::Error::other(e.to_string())),
        };
        let failed = item.is_err();
        if let Err(e) = &item {
            tracing::warn!("response truncated: {e}");
        }
        // A send error means the client went away: dropping the reader closes the socket, and
        // the worker stops writing and calls the app's close().
        if tx.send(item).await.is_err() || failed {
            return;
        }
    }
}

/// Incremental frame reader over the worker connection.
struct FrameReader {
    rd: OwnedReadHalf,
    buf: Vec<u8>,
    start: usize,
}

impl FrameReader {
    async fn next(&mut self) -> Result<Option<Frame>, ForwardError> {
        loop {
            match decode(&self.buf[self.start..]) {
                Ok(Some((f, n))) => {
                    self.start += n;
                    return Ok(Some(f));
                }
                Ok(None) => {}
                Err(e) => return Err(ForwardError::Protocol(e.to_string())),
            }
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            self.buf.reserve(64 * 1024);
            let n = self.rd.read_buf(&mut self.buf).await.map_err(|_| ForwardError::WorkerGone)?;
            if n == 0 {
                return if self.buf.is_empty() { Ok(None) } else { Err(ForwardError::WorkerGone) };
            }
        }
    }
}

/// A response body fed by the pump task.
struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, io::Error>>,
}

impl HttpBody for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<BodyFrame<Bytes>, io::Error>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|r| r.map(BodyFrame::data)))
    }
}

//! The request body on its way to a worker: the client's body re-framed as `Body` frames,
//! bounded by `max_body` and paced by `body_read_timeout` and `body_min_rate`.

use http_body_util::BodyExt;
use hyper::body::Incoming;
use paddock_config::RequestSettings;
use paddock_proto::{encode, encode_body_header, AbortKind, Frame};
use tokio::io::AsyncWriteExt;
use tokio::net::unix::OwnedWriteHalf;
use tokio::time::Instant;

#[derive(Debug)]
pub(super) enum WriteError {
    Io,
    Client,
    TooLarge,
    /// Slower than `body_read_timeout` and `body_min_rate` allow.
    Slow,
}

/// What one exchange with a worker may take, from the tenant's [`RequestSettings`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub(super) request_timeout: std::time::Duration,
    pub(super) max_body: u64,
    pub(super) pace: Pace,
}

impl Limits {
    pub fn of(s: &RequestSettings) -> Limits {
        Limits {
            request_timeout: s.request_timeout,
            max_body: s.max_body,
            pace: Pace { timeout: s.body_read_timeout, min_rate: s.body_min_rate },
        }
    }
}

/// How long a request body may take (mod_reqtimeout's `body=` with `MinRate`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Pace {
    pub(super) timeout: std::time::Duration,
    /// Bytes per second that buy one more second; 0: none.
    min_rate: u64,
}

impl Pace {
    /// The deadline after `received` bytes of a body started at `start`.
    fn deadline(&self, start: Instant, received: u64) -> Instant {
        let extra = received.checked_div(self.min_rate).unwrap_or(0);
        start + self.timeout + std::time::Duration::from_secs(extra.min(u32::MAX as u64))
    }
}

/// Write the preamble, then the client's body as frames, then `End`.
pub(super) async fn write_request(
    mut wr: OwnedWriteHalf,
    preamble: Vec<u8>,
    mut body: Incoming,
    limit: u64,
    pace: Pace,
) -> Result<OwnedWriteHalf, WriteError> {
    let start = Instant::now();
    wr.write_all(&preamble).await.map_err(|_| WriteError::Io)?;
    let mut total: u64 = 0;
    loop {
        let next = tokio::time::timeout_at(pace.deadline(start, total), body.frame()).await;
        let frame = match next {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(_) => return Err(abort(&mut wr, WriteError::Slow, "body too slow").await),
        };
        let Ok(frame) = frame else {
            return Err(abort(&mut wr, WriteError::Client, "invalid or truncated body").await);
        };
        let Ok(data) = frame.into_data() else { continue };
        total += data.len() as u64;
        if total > limit {
            return Err(abort(&mut wr, WriteError::TooLarge, "body over max_body").await);
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

/// Tell the worker the body ends here with an error (its `wsgi.input` read fails cleanly).
async fn abort(wr: &mut OwnedWriteHalf, why: WriteError, message: &str) -> WriteError {
    let mut out = Vec::with_capacity(64);
    let abort = paddock_proto::Abort { kind: AbortKind::ClientGone, message: message.into() };
    encode(&Frame::Abort(abort), &mut out);
    let _ = wr.write_all(&out).await;
    why
}

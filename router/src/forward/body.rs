//! The response body as it comes from the worker: frames are read straight from the worker
//! connection as the client takes them (no task, no channel in between), and at the response's
//! `End` the connection goes back to the pool before the request's slot is freed.
//!
//! A body must match the app's `Content-Length`: what already arrived with the head is checked
//! before the head is sent ([`WorkerBody::prefetch`], so a small response that is too short
//! or too long is answered 502), the rest as it streams (the response is then cut: the client
//! sees the connection end early instead of a body it cannot tell is wrong).

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame as BodyFrame};
use paddock_proto::Frame;
use tokio::net::unix::OwnedReadHalf;
use tokio::sync::OwnedSemaphorePermit;

use paddock_supervise::conn::{OpenSlot, WorkerConn};
use paddock_supervise::frames::{FrameReader, ReadError};
use paddock_supervise::pool::Pool;

/// The worker connection a response comes over.
pub enum Link {
    /// A connection that is kept for further requests once this response has ended.
    Kept(WorkerConn),
    /// The read half of a connection used for this request only; it counts as open until the
    /// response is done.
    Split { reader: FrameReader<OwnedReadHalf>, _open: OpenSlot },
}

impl Link {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Frame>, ReadError>> {
        match self {
            Link::Kept(c) => c.reader.poll_frame(cx),
            Link::Split { reader, .. } => reader.poll_frame(cx),
        }
    }

    fn buffered_frame(&mut self) -> Result<Option<Frame>, ReadError> {
        match self {
            Link::Kept(c) => c.reader.buffered_frame(),
            Link::Split { reader, .. } => reader.buffered_frame(),
        }
    }
}

pub struct WorkerBody {
    /// `None` once the response has ended (or failed).
    link: Option<Link>,
    pool: Arc<Pool>,
    /// The request's pool slot, freed when the response ends or the client goes away.
    permit: Option<OwnedSemaphorePermit>,
    /// Body bytes read with the head, not yet handed to the client.
    pending: VecDeque<Bytes>,
    /// The app's `Content-Length`, and how many body bytes came so far.
    declared: Option<u64>,
    sent: u64,
}

impl WorkerBody {
    pub fn new(
        link: Link,
        pool: Arc<Pool>,
        permit: OwnedSemaphorePermit,
        declared: Option<u64>,
    ) -> Self {
        WorkerBody {
            link: Some(link),
            pool,
            permit: Some(permit),
            pending: VecDeque::new(),
            declared,
            sent: 0,
        }
    }

    /// Take the body frames that arrived with the head (never waits), and check them against
    /// the `Content-Length` while the status can still say what went wrong (the error: why the
    /// response is not valid). A body that ended here frees its connection and slot at once.
    pub fn prefetch(&mut self) -> Result<(), String> {
        while let Some(link) = self.link.as_mut() {
            match link.buffered_frame() {
                Ok(None) => return Ok(()),
                Ok(Some(Frame::Body(b))) => {
                    self.count(b.len())?;
                    self.pending.push_back(Bytes::from(b));
                }
                Ok(Some(Frame::End)) => {
                    self.check_end()?;
                    self.finish();
                }
                // After a head, any abort leaves the response incomplete (the worker has
                // logged why): a bad gateway, like a body that does not match its length.
                Ok(Some(Frame::Abort(a))) => {
                    return Err(format!(
                        "the application's response is incomplete: {}",
                        String::from_utf8_lossy(&a.message)
                    ))
                }
                Ok(Some(f)) => {
                    return Err(format!("unexpected {:?} frame in a response body", f.frame_type()))
                }
                Err(ReadError::Broken) => return Ok(()),
                Err(ReadError::Protocol(e)) => return Err(e),
            }
        }
        Ok(())
    }

    /// Count `n` more body bytes; an error once they go past the `Content-Length`.
    fn count(&mut self, n: usize) -> Result<(), String> {
        self.sent += n as u64;
        match self.declared {
            Some(limit) if self.sent > limit => {
                Err(format!("the application sent more than its Content-Length of {limit} bytes"))
            }
            _ => Ok(()),
        }
    }

    /// At the body's end: an error if it is shorter than the `Content-Length`.
    fn check_end(&self) -> Result<(), String> {
        match self.declared {
            Some(limit) if self.sent < limit => Err(format!(
                "the application's body ended after {} of the {limit} bytes its Content-Length announced",
                self.sent
            )),
            _ => Ok(()),
        }
    }

    /// The response ended cleanly: keep the connection, then free the slot, in that order, so
    /// the request the slot admits next finds the connection idle.
    fn finish(&mut self) {
        if let Some(Link::Kept(conn)) = self.link.take() {
            self.pool.put_conn(conn);
        }
        self.permit = None;
    }

    fn fail(&mut self, msg: String) -> Poll<Option<Result<BodyFrame<Bytes>, io::Error>>> {
        // The request's span (entered by `access::Logged`) names the tenant and worker.
        tracing::warn!("response truncated: {msg}");
        // Dropping the connection tells the worker to stop writing and call the app's close().
        self.link = None;
        self.permit = None;
        Poll::Ready(Some(Err(io::Error::other(msg))))
    }
}

impl HttpBody for WorkerBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<BodyFrame<Bytes>, io::Error>>> {
        if let Some(b) = self.pending.pop_front() {
            return Poll::Ready(Some(Ok(BodyFrame::data(b))));
        }
        let Some(link) = self.link.as_mut() else { return Poll::Ready(None) };
        match ready!(link.poll_frame(cx)) {
            Ok(Some(Frame::Body(b))) => match self.count(b.len()) {
                Ok(()) => Poll::Ready(Some(Ok(BodyFrame::data(Bytes::from(b))))),
                Err(e) => self.fail(e),
            },
            Ok(Some(Frame::End)) => match self.check_end() {
                Ok(()) => {
                    self.finish();
                    Poll::Ready(None)
                }
                Err(e) => self.fail(e),
            },
            Ok(Some(Frame::Abort(a))) => self.fail(format!(
                "the application failed while sending its response: {}",
                String::from_utf8_lossy(&a.message)
            )),
            Ok(Some(f)) => {
                self.fail(format!("unexpected {:?} frame in a response body", f.frame_type()))
            }
            Ok(None) | Err(ReadError::Broken) => {
                self.fail("the worker closed the connection in the middle of a response".into())
            }
            Err(ReadError::Protocol(e)) => self.fail(e),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.link.is_none() && self.pending.is_empty()
    }
}

impl Drop for WorkerBody {
    /// A client that goes away drops the body unread: a connection whose response already
    /// ended in the bytes read so far is still good to keep. (`HEAD`, 204 and 304 answers
    /// never get here: [`super::forward`] takes their `End` at once.)
    fn drop(&mut self) {
        if let Some(Link::Kept(conn)) = &mut self.link {
            if let Ok(Some(Frame::End)) = conn.reader.buffered_frame() {
                self.finish();
            }
        }
    }
}

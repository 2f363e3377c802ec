//! The response body as it comes from the worker: frames are read straight from the worker
//! connection as the client takes them (no task, no channel in between), and at the response's
//! `End` the connection goes back to the pool before the request's slot is freed.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame as BodyFrame};
use paddock_proto::Frame;
use tokio::net::unix::OwnedReadHalf;
use tokio::sync::OwnedSemaphorePermit;

use super::conn::{OpenSlot, WorkerConn};
use super::frames::{FrameReader, ReadError};
use crate::pool::Pool;

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
}

pub struct WorkerBody {
    /// `None` once the response has ended (or failed).
    link: Option<Link>,
    pool: Arc<Pool>,
    /// The request's pool slot, freed when the response ends or the client goes away.
    permit: Option<OwnedSemaphorePermit>,
}

impl WorkerBody {
    pub fn new(link: Link, pool: Arc<Pool>, permit: OwnedSemaphorePermit) -> Self {
        WorkerBody { link: Some(link), pool, permit: Some(permit) }
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
        tracing::warn!(tenant = %self.pool.spec.name, "response truncated: {msg}");
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
        let Some(link) = self.link.as_mut() else { return Poll::Ready(None) };
        match ready!(link.poll_frame(cx)) {
            Ok(Some(Frame::Body(b))) => Poll::Ready(Some(Ok(BodyFrame::data(Bytes::from(b))))),
            Ok(Some(Frame::End)) => {
                self.finish();
                Poll::Ready(None)
            }
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
        self.link.is_none()
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

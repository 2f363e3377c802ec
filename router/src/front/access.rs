//! The access log: one line per request, written when the response is over, so that it says
//! what the client really got (a response cut short after its head shows as such, not as the
//! status its head carried).

use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use crate::respond::Body;

/// What the access line says besides the outcome.
pub struct Line {
    pub client: std::net::IpAddr,
    pub method: http::Method,
    pub target: String,
    pub tenant: Option<String>,
    pub status: u16,
    pub started: Instant,
    /// Until the response head was ready.
    pub head_ms: u64,
    pub queue_ms: u64,
}

/// How a response ended, as the access line shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The whole body was handed to the connection.
    Complete,
    /// The body failed on our side (the worker broke off, or its body did not match its
    /// `Content-Length`): the client saw the connection end early.
    Truncated,
    /// The client went away (or stopped reading past `send_timeout`) before the end.
    ClientGone,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Complete => "complete",
            Outcome::Truncated => "truncated",
            Outcome::ClientGone => "client_gone",
        }
    }
}

/// A response body that writes the access line when it is dropped.
pub struct Logged {
    inner: Body,
    line: Line,
    bytes: u64,
    outcome: Option<Outcome>,
    /// The request's span, entered while the body streams and for the access line, which
    /// are outside the request's future.
    span: tracing::Span,
}

/// Wrap `body` so that `line` is logged once the response is over, in the current span.
pub fn logged(body: Body, line: Line) -> Body {
    let span = tracing::Span::current();
    Logged { inner: body, line, bytes: 0, outcome: None, span }.boxed()
}

impl Logged {
    /// How the response ended: as last seen, else done if nothing is left to send, else
    /// abandoned by the client.
    fn outcome(&self) -> Outcome {
        match self.outcome {
            Some(o) => o,
            None if self.inner.is_end_stream() => Outcome::Complete,
            None => Outcome::ClientGone,
        }
    }
}

impl HttpBody for Logged {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let _in = this.span.enter();
        let r = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &r {
            Some(Ok(f)) => {
                let n = f.data_ref().map_or(0, |d| d.len() as u64);
                this.bytes += n;
            }
            Some(Err(_)) => this.outcome = Some(Outcome::Truncated),
            None => this.outcome = Some(Outcome::Complete),
        }
        Poll::Ready(r)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let outcome = self.outcome();
        let l = &self.line;
        let _in = self.span.enter();
        tracing::info!(
            target: "paddock::access",
            client = %l.client,
            method = %l.method,
            target = %l.target,
            tenant = l.tenant.as_deref().unwrap_or("-"),
            status = l.status,
            ms = l.started.elapsed().as_millis() as u64,
            head_ms = l.head_ms,
            queue_ms = l.queue_ms,
            bytes = self.bytes,
            outcome = outcome.as_str(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;
    use std::collections::VecDeque;

    /// A body that hands out `frames`, then ends.
    struct Frames(VecDeque<Result<Frame<Bytes>, std::io::Error>>);

    impl HttpBody for Frames {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front())
        }
        fn is_end_stream(&self) -> bool {
            self.0.is_empty()
        }
    }

    fn line() -> Line {
        Line {
            client: std::net::Ipv4Addr::LOCALHOST.into(),
            method: http::Method::GET,
            target: "/".into(),
            tenant: None,
            status: 200,
            started: Instant::now(),
            head_ms: 0,
            queue_ms: 0,
        }
    }

    fn outcome_of(body: Body, read_all: bool) -> (Outcome, u64) {
        let span = tracing::Span::none();
        let mut l = Logged { inner: body, line: line(), bytes: 0, outcome: None, span };
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        rt.block_on(async {
            if read_all {
                while let Some(Ok(_)) = l.frame().await {}
            } else {
                let _ = l.frame().await;
            }
        });
        (l.outcome(), l.bytes)
    }

    #[test]
    fn a_body_read_to_its_end_is_complete() {
        let body = Full::new(Bytes::from_static(b"hello")).map_err(|n| match n {}).boxed();
        assert_eq!(outcome_of(body, true), (Outcome::Complete, 5));
    }

    #[test]
    fn a_failing_body_is_truncated_and_an_abandoned_one_client_gone() {
        let frames = || {
            Frames(VecDeque::from([
                Ok(Frame::data(Bytes::from_static(b"abc"))),
                Err(std::io::Error::other("worker gone")),
            ]))
            .boxed()
        };
        assert_eq!(outcome_of(frames(), true), (Outcome::Truncated, 3));
        assert_eq!(outcome_of(frames(), false), (Outcome::ClientGone, 3));
    }
}

//! Reading frames from a worker connection, by polling, into a buffer the connection keeps
//! across requests (no allocation per request on a reused connection).

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use paddock_proto::{Frame, FrameBuffer};
use tokio::io::{AsyncRead, ReadBuf};

/// Initial buffer: a full body frame (64 KiB) and its header fit without growing.
const INITIAL: usize = 80 * 1024;

/// Why a frame could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The stream ended in the middle of a frame, or reading failed.
    Broken,
    /// The bytes are not a valid frame.
    Protocol(String),
}

/// Incremental frame reader over the sans-I/O [`FrameBuffer`].
pub struct FrameReader<R> {
    io: R,
    buf: FrameBuffer,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(io: R) -> Self {
        Self::with_capacity(io, INITIAL)
    }

    /// A reader whose buffer starts (and shrinks back) at `initial` bytes: small for a
    /// control pipe, which carries only a few small frames.
    pub fn with_capacity(io: R, initial: usize) -> Self {
        FrameReader { io, buf: FrameBuffer::new(initial) }
    }

    pub fn get_ref(&self) -> &R {
        &self.io
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.io
    }

    /// Bytes read and not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.buffered()
    }

    /// The next frame if a whole one is already buffered; never reads.
    pub fn buffered_frame(&mut self) -> Result<Option<Frame>, ReadError> {
        self.buf.frame().map_err(|e| ReadError::Protocol(e.to_string()))
    }

    /// The next frame; `Ok(None)` at a clean end of stream (between frames).
    pub fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Frame>, ReadError>> {
        loop {
            if let Some(f) = self.buffered_frame()? {
                return Poll::Ready(Ok(Some(f)));
            }
            let mut rb = ReadBuf::new(self.buf.spare());
            if ready!(Pin::new(&mut self.io).poll_read(cx, &mut rb)).is_err() {
                return Poll::Ready(Err(ReadError::Broken));
            }
            let n = rb.filled().len();
            if n == 0 {
                return Poll::Ready(if self.buffered() == 0 {
                    Ok(None)
                } else {
                    Err(ReadError::Broken)
                });
            }
            self.buf.filled(n);
        }
    }

    pub async fn next(&mut self) -> Result<Option<Frame>, ReadError> {
        std::future::poll_fn(|cx| self.poll_frame(cx)).await
    }

    /// Give back memory a large frame made the buffer take, before the connection idles.
    pub fn shrink(&mut self) {
        self.buf.shrink();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paddock_proto::{encode, MAX_PAYLOAD};
    use tokio::io::AsyncWriteExt;

    fn frames() -> Vec<Frame> {
        vec![
            Frame::Body(vec![7; 100]),
            Frame::Body(vec![1; paddock_proto::MAX_CHUNK]),
            Frame::Body(vec![2; MAX_PAYLOAD]),
            Frame::End,
            Frame::Goodbye,
        ]
    }

    #[tokio::test]
    async fn reads_frames_split_anywhere() {
        let mut wire = Vec::new();
        for f in frames() {
            encode(&f, &mut wire);
        }
        for step in [1usize, 3, 4096, 70_000, wire.len()] {
            let (a, mut b) = tokio::io::duplex(256 * 1024);
            let bytes = wire.clone();
            let w = tokio::spawn(async move {
                for chunk in bytes.chunks(step) {
                    b.write_all(chunk).await.unwrap();
                }
            });
            let mut r = FrameReader::new(a);
            for f in frames() {
                assert_eq!(r.next().await.unwrap(), Some(f), "step {step}");
            }
            w.await.unwrap();
            assert_eq!(r.next().await.unwrap(), None);
        }
    }

    #[tokio::test]
    async fn truncated_frame_is_broken_and_garbage_is_an_error() {
        let mut wire = Vec::new();
        encode(&Frame::Body(vec![1; 10]), &mut wire);
        wire.truncate(8);
        let mut r = FrameReader::new(&wire[..]);
        assert!(matches!(r.next().await, Err(ReadError::Broken)));
        let mut r = FrameReader::new(&[200u8, 0, 0, 0, 0][..]);
        assert!(matches!(r.next().await, Err(ReadError::Protocol(_))));
    }
}

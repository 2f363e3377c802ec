//! A response body that streams a byte range of a file in chunks, never the whole file.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::{AsyncRead, ReadBuf};

/// Bytes read per frame.
const CHUNK: u64 = 64 * 1024;

/// `remaining` bytes of `file` from its current position.
pub struct FileBody {
    file: tokio::fs::File,
    remaining: u64,
}

impl FileBody {
    pub fn new(file: tokio::fs::File, len: u64) -> FileBody {
        FileBody { file, remaining: len }
    }
}

impl HttpBody for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let mut chunk = vec![0u8; this.remaining.min(CHUNK) as usize];
        let mut buf = ReadBuf::new(&mut chunk);
        match Pin::new(&mut this.file).poll_read(cx, &mut buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len();
                if n == 0 {
                    // The file shrank after its length was sent: cut the response short.
                    this.remaining = 0;
                    let e = io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while sent");
                    return Poll::Ready(Some(Err(e)));
                }
                this.remaining -= n as u64;
                chunk.truncate(n);
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::AsyncSeekExt;

    #[tokio::test]
    async fn streams_the_range_in_chunks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big.bin");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).expect("write");
        let mut file = tokio::fs::File::open(&path).await.expect("open");
        file.seek(io::SeekFrom::Start(10)).await.expect("seek");
        let mut body = FileBody::new(file, 150_000);
        let mut got = Vec::new();
        let mut frames = 0;
        while let Some(frame) = body.frame().await {
            let data = frame.expect("frame").into_data().expect("data");
            assert!(data.len() as u64 <= CHUNK);
            got.extend_from_slice(&data);
            frames += 1;
            assert!(frames < 100, "bounded");
        }
        assert_eq!(got, &data[10..150_010]);
        assert!(frames >= 3, "{frames} frames");
    }
}

//! Frame I/O on one router connection: a buffered frame reader and a writer that sends body
//! chunks with vectored writes, so a response body is never copied into one big buffer.

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::BorrowedFd;
use std::os::unix::net::UnixStream;

use paddock_proto::{encode, encode_body_header, Frame, FrameBuffer, FRAME_HEADER_LEN, MAX_CHUNK};

/// Initial read buffer: one full body frame and its header fit, so a body chunk usually
/// arrives with a single `read`.
const READ_BUF: usize = MAX_CHUNK + 4 * FRAME_HEADER_LEN;
/// Most body frames sent by one `writev`.
const FRAMES_PER_WRITE: usize = 16;

/// Reads whole frames from the connection, over the sans-I/O [`FrameBuffer`].
#[derive(Debug)]
pub struct FrameReader {
    stream: UnixStream,
    buf: FrameBuffer,
}

impl FrameReader {
    pub fn new(stream: UnixStream) -> Self {
        Self { stream, buf: FrameBuffer::new(READ_BUF) }
    }

    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// Whether bytes of a next frame are already buffered (then polling the socket would lie).
    pub fn has_buffered(&self) -> bool {
        self.buf.buffered() > 0
    }

    /// The next frame; `Ok(None)` on a clean end of stream between frames. A decode error or an
    /// end of stream inside a frame is an `io::Error` (the connection is unusable).
    pub fn next_frame(&mut self) -> io::Result<Option<Frame>> {
        loop {
            match self.buf.frame() {
                Ok(Some(frame)) => return Ok(Some(frame)),
                Ok(None) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
            let n = match self.stream.read(self.buf.spare()) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A socket read timeout shows up as EAGAIN; name it for what it is.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "read from router timed out",
                    ))
                }
                Err(e) => return Err(e),
            };
            if n == 0 {
                if self.has_buffered() {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "eof inside a frame"));
                }
                return Ok(None);
            }
            self.buf.filled(n);
        }
    }
}

/// Writes frames to the connection.
#[derive(Debug)]
pub struct FrameWriter {
    stream: UnixStream,
    scratch: Vec<u8>,
}

impl FrameWriter {
    pub fn new(stream: UnixStream) -> Self {
        Self { stream, scratch: Vec::with_capacity(1024) }
    }

    /// Encode `frame` into the pending buffer without sending it yet.
    pub fn queue(&mut self, frame: &Frame) {
        encode(frame, &mut self.scratch);
    }

    /// Send the pending buffer, if any.
    pub fn flush(&mut self) -> io::Result<()> {
        let r = self.stream.write_all(&self.scratch);
        self.scratch.clear();
        r
    }

    pub fn send(&mut self, frame: &Frame) -> io::Result<()> {
        self.queue(frame);
        self.flush()
    }

    /// Send the pending buffer followed by `data` as body frames of at most [`MAX_CHUNK`]
    /// bytes, and an `End` frame if `end`. The pending bytes (usually the response head) go out
    /// in the same `writev` as the first chunk.
    pub fn send_body(&mut self, data: &[u8], end: bool) -> io::Result<()> {
        let mut chunks = data.chunks(MAX_CHUNK).peekable();
        let end_frame = [paddock_proto::FrameType::End as u8, 0, 0, 0, 0];
        let mut first = true;
        let result = loop {
            let mut headers = [[0u8; FRAME_HEADER_LEN]; FRAMES_PER_WRITE];
            let batch: Vec<&[u8]> = chunks.by_ref().take(FRAMES_PER_WRITE).collect();
            let last = chunks.peek().is_none();
            let mut slices = Vec::with_capacity(2 * batch.len() + 2);
            if first {
                slices.push(IoSlice::new(&self.scratch));
            }
            for (h, c) in headers.iter_mut().zip(&batch) {
                *h = encode_body_header(c.len());
            }
            for (h, c) in headers.iter().zip(&batch) {
                slices.push(IoSlice::new(h));
                slices.push(IoSlice::new(c));
            }
            if last && end {
                slices.push(IoSlice::new(&end_frame));
            }
            first = false;
            if let Err(e) = write_all_vectored(&mut self.stream, &mut slices) {
                break Err(e);
            }
            if last {
                break Ok(());
            }
        };
        self.scratch.clear();
        result
    }
}

/// `Write::write_all_vectored` is unstable; this is the same loop.
impl FrameWriter {
    /// Send the pending buffer, then `len` bytes of `file` from `offset` as body frames, each
    /// frame's bytes with `sendfile(2)`: from the page cache to the socket, never through this
    /// process. A file that ends early is an error (a frame's length is already sent), after
    /// which the connection cannot be used.
    pub fn send_file(&mut self, file: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
        let mut pos = i64::try_from(offset).map_err(io::Error::other)?;
        let mut left = len;
        while left > 0 {
            let chunk = left.min(MAX_CHUNK as u64) as usize;
            let header = encode_body_header(chunk);
            let mut slices = [IoSlice::new(&self.scratch), IoSlice::new(&header)];
            write_all_vectored(&mut self.stream, &mut slices)?;
            self.scratch.clear();
            let mut sent = 0;
            while sent < chunk {
                match nix::sys::sendfile::sendfile(&self.stream, file, Some(&mut pos), chunk - sent)
                {
                    Ok(0) => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the file is shorter than when its response started",
                        ))
                    }
                    Ok(n) => sent += n,
                    Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            left -= chunk as u64;
        }
        Ok(())
    }
}

fn write_all_vectored(w: &mut impl Write, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        match w.write_vectored(slices) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "router closed")),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_split_into_max_chunk_frames_with_head_and_end() {
        let (a, b) = UnixStream::pair().expect("socketpair");
        let mut w = FrameWriter::new(a);
        let mut r = FrameReader::new(b);
        let data: Vec<u8> = (0..(MAX_CHUNK * 20 + 7)).map(|i| i as u8).collect();
        let sender = std::thread::spawn(move || {
            w.queue(&Frame::End);
            w.send_body(&data, true).expect("send");
            data
        });
        assert_eq!(r.next_frame().expect("frame"), Some(Frame::End));
        let mut got = Vec::new();
        loop {
            match r.next_frame().expect("frame") {
                Some(Frame::Body(b)) => {
                    assert!(b.len() <= MAX_CHUNK);
                    got.extend_from_slice(&b);
                }
                Some(Frame::End) => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(got, sender.join().expect("join"));
    }

    #[test]
    fn eof_inside_a_frame_is_an_error() {
        let (mut a, b) = UnixStream::pair().expect("socketpair");
        let mut r = FrameReader::new(b);
        a.write_all(&[3, 0, 0, 0, 10, 1, 2]).expect("write");
        drop(a);
        assert!(r.next_frame().is_err());
    }
}

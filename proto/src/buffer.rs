//! The one frame accumulator, sans I/O: bytes go in through [`FrameBuffer::spare`] and
//! [`FrameBuffer::filled`], whole frames come out of [`FrameBuffer::frame`]. The router's
//! async worker connections, the worker's blocking router connections and the control pipe
//! each wrap it with their own kind of read, so the buffering (compaction, growth bounded by
//! the frame length the header announces, shrinking after a large frame) is written once and
//! tested without sockets.

use crate::{decode, DecodeError, Frame, FRAME_HEADER_LEN, MAX_PAYLOAD};

/// Bytes received and not yet decoded are `buf[start..end]`.
#[derive(Debug)]
pub struct FrameBuffer {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The size the buffer starts with and shrinks back to.
    initial: usize,
}

impl FrameBuffer {
    /// A buffer of `initial` bytes (at least a frame header); it grows for a larger frame.
    pub fn new(initial: usize) -> FrameBuffer {
        let initial = initial.max(FRAME_HEADER_LEN);
        FrameBuffer { buf: vec![0; initial], start: 0, end: 0, initial }
    }

    /// Bytes received and not yet decoded.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// The next whole frame, if one is buffered. An error means the peer broke the protocol:
    /// the stream cannot be read further.
    pub fn frame(&mut self) -> Result<Option<Frame>, DecodeError> {
        let Some((frame, used)) = decode(&self.buf[self.start..self.end])? else {
            return Ok(None);
        };
        self.start += used;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        Ok(Some(frame))
    }

    /// Room for the next read: at least the rest of the pending frame (its header says how
    /// much; never more than the largest legal frame), made by compacting and then growing.
    /// Never empty.
    pub fn spare(&mut self) -> &mut [u8] {
        let pending = &self.buf[self.start..self.end];
        let need = if pending.len() >= FRAME_HEADER_LEN {
            let len = u32::from_be_bytes([pending[1], pending[2], pending[3], pending[4]]);
            FRAME_HEADER_LEN + (len as usize).min(MAX_PAYLOAD)
        } else {
            FRAME_HEADER_LEN
        };
        if self.start > 0 && (self.start + need > self.buf.len() || self.end == self.buf.len()) {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if need > self.buf.len() {
            self.buf.resize(need, 0);
        }
        if self.end == self.buf.len() {
            // A whole frame is buffered and another begins: decode before reading more.
            // (Callers always call `frame` first, so this is only reached with a frame's
            // worth of room missing; grow by one header so the slice is never empty.)
            self.buf.resize(self.buf.len() + FRAME_HEADER_LEN, 0);
        }
        &mut self.buf[self.end..]
    }

    /// `n` bytes were written at the start of the last [`spare`](Self::spare) slice.
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Give back the memory a large frame made the buffer take, once nothing is pending.
    pub fn shrink(&mut self) {
        if self.buffered() == 0 && self.buf.len() > self.initial {
            self.buf = vec![0; self.initial];
            self.start = 0;
            self.end = 0;
        }
    }

    /// The buffer's current size (for tests and memory accounting).
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{encode, Ready, Retire};

    fn feed(b: &mut FrameBuffer, mut bytes: &[u8], step: usize) -> Vec<Frame> {
        let mut out = Vec::new();
        // Bounded: every round consumes at least one byte.
        for _ in 0..=bytes.len() {
            while let Some(f) = b.frame().expect("valid") {
                out.push(f);
            }
            if bytes.is_empty() {
                break;
            }
            let spare = b.spare();
            assert!(!spare.is_empty());
            let n = step.min(spare.len()).min(bytes.len());
            spare[..n].copy_from_slice(&bytes[..n]);
            b.filled(n);
            bytes = &bytes[n..];
        }
        out
    }

    fn frames() -> (Vec<Frame>, Vec<u8>) {
        let fs = vec![
            Frame::Ready(Ready { pid: 7 }),
            Frame::Body(vec![b'x'; 100_000]),
            Frame::Retire(Retire { pid: 7, requests: 3 }),
            Frame::End,
        ];
        let mut bytes = Vec::new();
        for f in &fs {
            encode(f, &mut bytes);
        }
        (fs, bytes)
    }

    #[test]
    fn any_split_of_the_stream_gives_the_same_frames() {
        let (want, bytes) = frames();
        for step in [1, 2, 5, 7, 64, 4096, 1 << 20] {
            let mut b = FrameBuffer::new(16);
            assert_eq!(feed(&mut b, &bytes, step), want, "step {step}");
            assert_eq!(b.buffered(), 0);
        }
    }

    #[test]
    fn grows_to_the_announced_frame_and_shrinks_back() {
        let (_, bytes) = frames();
        let mut b = FrameBuffer::new(64);
        feed(&mut b, &bytes, 4096);
        assert!(b.capacity() >= 100_000 + FRAME_HEADER_LEN);
        assert!(b.capacity() <= 100_000 + 64 + 2 * FRAME_HEADER_LEN, "{}", b.capacity());
        b.shrink();
        assert_eq!(b.capacity(), 64);
    }

    #[test]
    fn an_oversized_header_is_refused_before_growing() {
        let mut b = FrameBuffer::new(64);
        let mut bad = vec![crate::FrameType::Body as u8];
        bad.extend_from_slice(&((MAX_PAYLOAD as u32) + 1).to_be_bytes());
        let spare = b.spare();
        spare[..bad.len()].copy_from_slice(&bad);
        b.filled(bad.len());
        assert!(b.frame().is_err());
        assert!(b.capacity() <= 64 + FRAME_HEADER_LEN);
    }

    #[test]
    fn shrink_keeps_a_pending_frame() {
        let (_, bytes) = frames();
        let mut b = FrameBuffer::new(32);
        let spare = b.spare();
        spare[..3].copy_from_slice(&bytes[..3]);
        b.filled(3);
        b.shrink();
        assert_eq!(b.buffered(), 3);
    }
}

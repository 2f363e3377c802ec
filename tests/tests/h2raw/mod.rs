//! Just enough HTTP/2 to break its rules on purpose: the client preface, HEADERS with a
//! literal (never Huffman) HPACK block, RST_STREAM, and a frame reader. Blocking std sockets,
//! every read bounded by a deadline.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const GOAWAY: u8 = 0x7;
pub const REFUSED_STREAM: u32 = 0x7;
pub const CANCEL: u32 = 0x8;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

/// One frame as read.
#[derive(Debug)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// RST_STREAM's error code.
    pub fn code(&self) -> u32 {
        u32_at(&self.payload, 0)
    }

    /// GOAWAY's error code (after the last stream id).
    pub fn goaway_code(&self) -> u32 {
        u32_at(&self.payload, 4)
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).map_or(u32::MAX, |x| u32::from_be_bytes([x[0], x[1], x[2], x[3]]))
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.extend([kind, flags]);
    out.extend(stream.to_be_bytes());
    out.extend(payload);
    out
}

/// A HEADERS frame for `method path` on `stream`; `end` closes the stream (no body).
pub fn headers(stream: u32, method: &str, path: &str, end: bool) -> Vec<u8> {
    // Indexed :method GET (2) or POST (3) and :scheme http (6); :path (4) and :authority (1)
    // as literals with an indexed name, not indexed.
    let mut block = vec![if method == "POST" { 0x83 } else { 0x82 }, 0x86];
    for (index, value) in [(4u8, path), (1, "h2.test")] {
        block.push(index);
        block.push(value.len() as u8);
        block.extend(value.as_bytes());
    }
    frame(HEADERS, 0x4 | u8::from(end), stream, &block)
}

pub fn rst(stream: u32, code: u32) -> Vec<u8> {
    frame(RST_STREAM, 0, stream, &code.to_be_bytes())
}

/// An HTTP/2 connection with prior knowledge.
pub struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
    eof: bool,
}

impl Conn {
    /// Connect, send the preface and an empty SETTINGS.
    pub fn open(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
        s.set_write_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let mut c = Conn { s, buf: Vec::new(), eof: false };
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        hello.extend(frame(0x4, 0, 0, &[]));
        c.send(&hello);
        c
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).expect("write");
    }

    /// Frames read until `stop` holds for one (included), the connection ends, or `limit`.
    pub fn until(&mut self, limit: Duration, mut stop: impl FnMut(&Frame) -> bool) -> Vec<Frame> {
        let deadline = Instant::now() + limit;
        let mut out = Vec::new();
        while Instant::now() < deadline {
            while let Some(f) = self.parse() {
                let done = stop(&f);
                out.push(f);
                if done {
                    return out;
                }
            }
            if self.eof || !self.fill() {
                break;
            }
        }
        out
    }

    /// Whether the server closes the connection within `limit` (frames before are dropped).
    pub fn closed_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline && !self.eof {
            if !self.fill() {
                return true;
            }
            self.buf.clear();
        }
        self.eof
    }

    /// Read what is there; false when the connection ended.
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16384];
        match self.s.read(&mut chunk) {
            Ok(0) => {
                self.eof = true;
                false
            }
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                true
            }
            Err(_) => {
                self.eof = true;
                false
            }
        }
    }

    fn parse(&mut self) -> Option<Frame> {
        if self.buf.len() < 9 {
            return None;
        }
        let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
        if self.buf.len() < 9 + len {
            return None;
        }
        let f = Frame {
            kind: self.buf[3],
            flags: self.buf[4],
            stream: u32_at(&self.buf, 5) & 0x7fff_ffff,
            payload: self.buf[9..9 + len].to_vec(),
        };
        self.buf.drain(..9 + len);
        Some(f)
    }
}

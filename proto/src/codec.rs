//! Encode and decode frames. Pure functions over byte slices: no I/O, no panics on any input.

use crate::frame::{
    Abort, AbortKind, BodyKind, Fields, Frame, FrameType, Hello, Ready, RequestHead, ResponseHead,
    Retire,
};
use crate::{FRAME_HEADER_LEN, MAX_FIELDS, MAX_PAYLOAD};

/// Why a byte sequence is not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    #[error("frame payload of {0} bytes exceeds the limit of {MAX_PAYLOAD}")]
    TooLarge(u64),
    #[error("frame payload ends early while reading {0}")]
    Truncated(&'static str),
    #[error("{0} trailing bytes after the payload fields")]
    TrailingBytes(usize),
    #[error("{0} entries exceed the limit of {MAX_FIELDS}")]
    TooManyFields(u32),
    #[error("invalid value for {0}")]
    Invalid(&'static str),
}

/// Decode one frame from the start of `buf`.
///
/// `Ok(None)`: not enough bytes yet. `Ok(Some((frame, used)))`: a frame and the number of bytes
/// it took. An error means the stream is broken and the connection must be dropped.
pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, DecodeError> {
    let Some((ty, mut r, total)) = envelope(buf, FrameType::from_u8)? else { return Ok(None) };
    let frame = match ty {
        FrameType::Hello => Frame::Hello(Hello { version: r.u16("version")?, pid: r.u32("pid")? }),
        FrameType::Ready => Frame::Ready(Ready { pid: r.u32("pid")? }),
        FrameType::Retire => {
            Frame::Retire(Retire { pid: r.u32("pid")?, requests: r.u64("requests")? })
        }
        FrameType::Body => Frame::Body(r.rest().to_vec()),
        FrameType::End => Frame::End,
        FrameType::Goodbye => Frame::Goodbye,
        FrameType::Request => Frame::Request(decode_request(&mut r)?),
        FrameType::Response => Frame::Response(ResponseHead {
            status: r.u16("status")?,
            reason: r.bytes("reason")?,
            headers: r.pairs("headers")?,
        }),
        FrameType::Abort => {
            let kind = AbortKind::from_u16(r.u16("abort kind")?)
                .ok_or(DecodeError::Invalid("abort kind"))?;
            Frame::Abort(Abort { kind, message: r.bytes("abort message")? })
        }
    };
    r.finish()?;
    Ok(Some((frame, total)))
}

/// The envelope every message shares (`type: u8`, `len: u32`, payload): `Ok(None)` until `buf`
/// holds a whole one, else its type (checked by `known` from the first byte on, so a garbage
/// stream fails fast), a reader over its payload and its size.
pub(crate) fn envelope<T>(
    buf: &[u8],
    known: impl Fn(u8) -> Option<T>,
) -> Result<Option<(T, Reader<'_>, usize)>, DecodeError> {
    let Some(&t) = buf.first() else { return Ok(None) };
    let ty = known(t).ok_or(DecodeError::UnknownType(t))?;
    if buf.len() < FRAME_HEADER_LEN {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(DecodeError::TooLarge(len as u64));
    }
    let total = FRAME_HEADER_LEN + len;
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some((ty, Reader { buf: &buf[FRAME_HEADER_LEN..total] }, total)))
}

fn decode_request(r: &mut Reader<'_>) -> Result<RequestHead, DecodeError> {
    Ok(RequestHead {
        method: r.bytes("method")?,
        script_name: r.bytes("script_name")?,
        path_info: r.bytes("path_info")?,
        query_string: r.bytes("query_string")?,
        request_uri: r.bytes("request_uri")?,
        protocol: r.bytes("protocol")?,
        scheme: r.bytes("scheme")?,
        server_name: r.bytes("server_name")?,
        server_port: r.u16("server_port")?,
        remote_addr: r.bytes("remote_addr")?,
        remote_port: r.u16("remote_port")?,
        body: match r.u8("body kind")? {
            0 => BodyKind::Empty,
            1 => BodyKind::Length(r.u64("content length")?),
            2 => BodyKind::Chunked,
            _ => return Err(DecodeError::Invalid("body kind")),
        },
        headers: r.pairs("headers")?,
        environ: r.pairs("environ")?,
    })
}

/// Append the encoding of `frame` to `out`.
///
/// # Panics
/// Never for frames within the limits; a payload over [`MAX_PAYLOAD`] is a bug in the caller
/// (split bodies into [`crate::MAX_CHUNK`] pieces) and is caught by a debug assertion.
pub fn encode(frame: &Frame, out: &mut Vec<u8>) {
    let start = out.len();
    out.push(frame.frame_type() as u8);
    out.extend_from_slice(&[0; 4]);
    match frame {
        Frame::Hello(h) => {
            out.extend_from_slice(&h.version.to_be_bytes());
            out.extend_from_slice(&h.pid.to_be_bytes());
        }
        Frame::Ready(r) => out.extend_from_slice(&r.pid.to_be_bytes()),
        Frame::Retire(r) => {
            out.extend_from_slice(&r.pid.to_be_bytes());
            out.extend_from_slice(&r.requests.to_be_bytes());
        }
        Frame::Body(b) => out.extend_from_slice(b),
        Frame::End | Frame::Goodbye => {}
        Frame::Request(h) => encode_request(h, out),
        Frame::Response(h) => {
            out.extend_from_slice(&h.status.to_be_bytes());
            put_bytes(out, &h.reason);
            put_pairs(out, &h.headers);
        }
        Frame::Abort(a) => {
            out.extend_from_slice(&(a.kind as u16).to_be_bytes());
            put_bytes(out, &a.message);
        }
    }
    let len = out.len() - start - FRAME_HEADER_LEN;
    debug_assert!(len <= MAX_PAYLOAD, "frame payload {len} over the limit");
    out[start + 1..start + FRAME_HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
}

/// The 5-byte header of a body frame of `len` bytes, for vectored writes that send the chunk
/// itself without copying it.
pub fn encode_body_header(len: usize) -> [u8; FRAME_HEADER_LEN] {
    let l = (len as u32).to_be_bytes();
    [FrameType::Body as u8, l[0], l[1], l[2], l[3]]
}

fn encode_request(h: &RequestHead, out: &mut Vec<u8>) {
    for field in [
        &h.method,
        &h.script_name,
        &h.path_info,
        &h.query_string,
        &h.request_uri,
        &h.protocol,
        &h.scheme,
        &h.server_name,
    ] {
        put_bytes(out, field);
    }
    out.extend_from_slice(&h.server_port.to_be_bytes());
    put_bytes(out, &h.remote_addr);
    out.extend_from_slice(&h.remote_port.to_be_bytes());
    match h.body {
        BodyKind::Empty => out.push(0),
        BodyKind::Length(n) => {
            out.push(1);
            out.extend_from_slice(&n.to_be_bytes());
        }
        BodyKind::Chunked => out.push(2),
    }
    put_pairs(out, &h.headers);
    put_pairs(out, &h.environ);
}

pub(crate) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

pub(crate) fn put_pairs(out: &mut Vec<u8>, pairs: &[(Vec<u8>, Vec<u8>)]) {
    out.extend_from_slice(&(pairs.len() as u32).to_be_bytes());
    for (k, v) in pairs {
        put_bytes(out, k);
        put_bytes(out, v);
    }
}

/// Bounds-checked cursor over one payload.
pub(crate) struct Reader<'a> {
    pub(crate) buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A payload is all fields: bytes left over are an error.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }

    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated(what));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    pub(crate) fn bytes(&mut self, what: &'static str) -> Result<Vec<u8>, DecodeError> {
        let n = self.u32(what)? as usize;
        Ok(self.take(n, what)?.to_vec())
    }

    pub(crate) fn pairs(&mut self, what: &'static str) -> Result<Fields, DecodeError> {
        let n = self.u32(what)?;
        if n as usize > MAX_FIELDS {
            return Err(DecodeError::TooManyFields(n));
        }
        // Each pair needs at least 8 bytes, so `n` is also bounded by the payload itself.
        if (n as usize).saturating_mul(8) > self.buf.len() {
            return Err(DecodeError::Truncated(what));
        }
        let mut v = Vec::with_capacity(n as usize);
        for _ in 0..n {
            v.push((self.bytes(what)?, self.bytes(what)?));
        }
        Ok(v)
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
}

#[cfg(test)]
mod tests;

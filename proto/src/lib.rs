//! Paddock's framed protocol between the router and its worker processes.
//!
//! Every frame is `type: u8`, `len: u32` (big endian), then `len` bytes of payload. The codec is
//! pure and total: [`decode`] takes any bytes and answers "need more", a frame and how many
//! bytes it used, or a typed error. Lengths are checked against [`MAX_PAYLOAD`] before anything
//! is allocated, so a hostile or broken peer can never make either side allocate without bound.
//!
//! A connection carries, from the router: [`Frame::Hello`], then any number of requests, each
//! [`Frame::Request`] + zero or more [`Frame::Body`] + [`Frame::End`]. From the worker:
//! [`Frame::Hello`], then per request [`Frame::Response`] + [`Frame::Body`]* + [`Frame::End`],
//! or [`Frame::Abort`] when the application failed before it produced a response head.
//! The worker's control pipe carries [`Frame::Ready`], later perhaps a [`Frame::Retire`] (two with
//! `--retire-lead`: the first asks for the successor ahead of time).
//!
//! See `docs/protocol.md` for the byte layout of each payload.

mod buffer;
mod codec;
mod frame;
pub mod zygote;

#[doc(hidden)]
pub mod fixtures;

pub use buffer::FrameBuffer;
pub use codec::{decode, encode, encode_body_header, DecodeError};
pub use frame::{
    Abort, AbortKind, BodyKind, Frame, FrameType, Hello, Ready, RequestHead, ResponseHead, Retire,
};

/// Protocol version carried in [`Hello`]; bumped on any incompatible change.
pub const VERSION: u16 = 1;
/// Bytes before every payload: one type byte and a 32-bit length.
pub const FRAME_HEADER_LEN: usize = 5;
/// Largest payload either side accepts (request and response heads included).
pub const MAX_PAYLOAD: usize = 1 << 20;
/// Largest body chunk a sender should put in one [`Frame::Body`].
pub const MAX_CHUNK: usize = 64 * 1024;
/// Most header or environ entries in one head.
pub const MAX_FIELDS: usize = 1024;

//! Frame types. Byte strings stay byte strings: HTTP carries 8-bit bytes in paths and header
//! values, and PEP 3333 hands them to the app one latin-1 character per byte.

/// Name/value byte-string pairs, in order (headers, environ entries).
pub type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// One decoded frame.
// A request head is much larger than the other variants, but frames are short-lived values
// moved once from the decoder to their consumer; boxing would add an allocation per request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// First frame each side sends on a connection.
    Hello(Hello),
    /// Start of a request (router to worker).
    Request(RequestHead),
    /// A chunk of request or response body.
    Body(Vec<u8>),
    /// End of a request body or of a response.
    End,
    /// Start of a response (worker to router).
    Response(ResponseHead),
    /// The request cannot be completed (either direction).
    Abort(Abort),
    /// Worker control pipe: the process has loaded its app and accepts connections.
    Ready(Ready),
    /// Worker control pipe: the process reached `--max-requests` and asks to be replaced. It
    /// keeps serving until the router sends SIGTERM.
    Retire(Retire),
    /// Worker to router, on an idle connection that served a request already: the worker is
    /// shutting down and closes this connection without reading anything more from it. A
    /// request the router wrote on it was never started and may be sent again elsewhere.
    Goodbye,
}

/// Wire type byte of each frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameType {
    Hello = 1,
    Request = 2,
    Body = 3,
    End = 4,
    Response = 5,
    Abort = 6,
    Ready = 7,
    Retire = 8,
    Goodbye = 9,
}

impl FrameType {
    pub fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Hello,
            2 => Self::Request,
            3 => Self::Body,
            4 => Self::End,
            5 => Self::Response,
            6 => Self::Abort,
            7 => Self::Ready,
            8 => Self::Retire,
            9 => Self::Goodbye,
            _ => return None,
        })
    }
}

impl Frame {
    pub fn frame_type(&self) -> FrameType {
        match self {
            Frame::Hello(_) => FrameType::Hello,
            Frame::Request(_) => FrameType::Request,
            Frame::Body(_) => FrameType::Body,
            Frame::End => FrameType::End,
            Frame::Response(_) => FrameType::Response,
            Frame::Abort(_) => FrameType::Abort,
            Frame::Ready(_) => FrameType::Ready,
            Frame::Retire(_) => FrameType::Retire,
            Frame::Goodbye => FrameType::Goodbye,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub version: u16,
    /// Process id of the sender.
    pub pid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    pub pid: u32,
}

/// A worker's request to be replaced (sent once, on its control pipe).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retire {
    pub pid: u32,
    /// Requests the process has completed when it sent this frame.
    pub requests: u64,
}

/// How the request body is delimited, as the client sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyKind {
    /// No body: no `Body` frames follow, but `End` still does.
    #[default]
    Empty,
    /// `Content-Length` bytes follow in `Body` frames.
    Length(u64),
    /// Length unknown (chunked transfer coding); `Body` frames until `End`.
    Chunked,
}

/// Everything the worker needs to build a PEP 3333 environ.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestHead {
    pub method: Vec<u8>,
    /// Mount point of the app (`SCRIPT_NAME`), percent-decoded.
    pub script_name: Vec<u8>,
    /// Rest of the path after `script_name`, percent-decoded bytes (`PATH_INFO`).
    pub path_info: Vec<u8>,
    /// Query without the `?`, exactly as sent.
    pub query_string: Vec<u8>,
    /// The request target exactly as sent (`REQUEST_URI`).
    pub request_uri: Vec<u8>,
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub protocol: Vec<u8>,
    /// `http` or `https`.
    pub scheme: Vec<u8>,
    pub server_name: Vec<u8>,
    pub server_port: u16,
    pub remote_addr: Vec<u8>,
    pub remote_port: u16,
    pub body: BodyKind,
    /// Header names as sent (any case) and values as bytes, in order.
    pub headers: Fields,
    /// Extra environ entries chosen by the router (`trac.env_path`, `REMOTE_USER`, ...).
    pub environ: Fields,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResponseHead {
    pub status: u16,
    pub reason: Vec<u8>,
    pub headers: Fields,
}

/// Why a request was abandoned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum AbortKind {
    /// The application failed before sending a response head (router answers 500).
    AppError = 1,
    /// The application failed after the head; the response is truncated.
    AppErrorAfterHead = 2,
    /// Router to worker: the client went away; stop producing output.
    ClientGone = 3,
    /// The peer broke the protocol.
    Protocol = 4,
}

impl AbortKind {
    pub fn from_u16(v: u16) -> Option<Self> {
        Some(match v {
            1 => Self::AppError,
            2 => Self::AppErrorAfterHead,
            3 => Self::ClientGone,
            4 => Self::Protocol,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Abort {
    pub kind: AbortKind,
    /// Short description for logs (never shown to clients).
    pub message: Vec<u8>,
}

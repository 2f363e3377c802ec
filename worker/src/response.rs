//! The response side of a request: `start_response`, the `write` callable and the state they
//! share with the serve loop.
//!
//! As on the read side, the connection's write half sits behind a mutex that is held only for
//! plain Rust work or for socket writes with the GIL released, never while Python code runs.

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::{Arc, Mutex, TryLockError};

use paddock_proto::{Abort, AbortKind, Frame, ResponseHead};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyTuple};

use crate::conn::FrameWriter;
use crate::environ::is_tchar;
use crate::input::lock;

/// Headers a WSGI app may not set (PEP 3333: exactly `wsgiref.util.is_hop_by_hop`'s list, so
/// an app that runs under wsgiref runs here). Not the router's list of headers it does not
/// forward (`forward.rs`, `CONNECTION_SPECIFIC`): that one follows RFC 9110 instead.
const WSGI_HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
];

/// The write half of a connection plus the state of the current response.
#[derive(Debug)]
pub struct WriteSide {
    writer: FrameWriter,
    seq: u64,
    active: bool,
    started: bool,
    pending: Option<ResponseHead>,
    head_sent: bool,
    /// `Content-Length` declared by the app, if any, and body bytes sent so far.
    declared: Option<u64>,
    sent: u64,
    status: u16,
    head_request: bool,
    /// The last chunk of a body known in full (a list result), sent with `End` in one write.
    held: Vec<u8>,
    /// A write failed: the router went away; the connection is closed after this request.
    pub broken: bool,
}

pub type SharedWriteSide = Arc<Mutex<WriteSide>>;

/// How a response ended, for the serve loop's log and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Complete,
    Aborted(AbortKind),
}

impl WriteSide {
    pub fn new(writer: FrameWriter) -> Self {
        Self {
            writer,
            seq: 0,
            active: false,
            started: false,
            pending: None,
            head_sent: false,
            declared: None,
            sent: 0,
            status: 0,
            head_request: false,
            held: Vec::new(),
            broken: false,
        }
    }

    pub fn send_frame(&mut self, frame: &Frame) -> io::Result<()> {
        self.writer.send(frame)
    }

    /// Start a new response; returns its sequence number.
    pub fn begin(&mut self, head_request: bool) -> u64 {
        self.seq += 1;
        self.active = true;
        self.started = false;
        self.pending = None;
        self.head_sent = false;
        self.declared = None;
        self.sent = 0;
        self.head_request = head_request;
        self.held.clear();
        self.seq
    }

    pub fn is_current(&self, seq: u64) -> bool {
        self.active && self.seq == seq
    }

    pub fn started(&self) -> bool {
        self.started
    }

    pub fn head_sent(&self) -> bool {
        self.head_sent
    }

    fn check_usable(&self) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "the router connection is gone"));
        }
        Ok(())
    }

    /// Send body bytes, preceded by the head if it is still pending. Empty data sends nothing:
    /// PEP 3333 delays the head until the first non-empty chunk.
    pub fn send(&mut self, data: &[u8]) -> io::Result<()> {
        let Some(data) = self.take_body(data)? else { return Ok(()) };
        let r = self.writer.send_body(data, false);
        self.note(r)
    }

    /// Like [`WriteSide::send`] for the last chunk of a body, when no code of the app can run
    /// before the response ends (a list result): it goes out with `End`, in one write.
    pub fn hold_last(&mut self, data: &[u8]) -> io::Result<()> {
        if let Some(data) = self.take_body(data)? {
            self.held.extend_from_slice(data);
        }
        Ok(())
    }

    /// Send `len` bytes of a regular file from `offset` with `sendfile(2)` (see
    /// [`FrameWriter::send_file`]), cut to the declared `Content-Length`.
    pub fn send_file(&mut self, file: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
        self.check_usable()?;
        let room = self.declared.map_or(u64::MAX, |d| d.saturating_sub(self.sent));
        let len = len.min(room);
        if len == 0 {
            return Ok(());
        }
        self.queue_head();
        self.sent += len;
        let r = self.writer.send_file(file, offset, len);
        self.note(r)
    }

    /// Account for body bytes about to go out: cut to the declared length, head queued first;
    /// `None` when nothing is left to send.
    fn take_body<'d>(&mut self, data: &'d [u8]) -> io::Result<Option<&'d [u8]>> {
        self.check_usable()?;
        let data = self.within_declared(data);
        if data.is_empty() {
            return Ok(None);
        }
        self.queue_head();
        self.sent += data.len() as u64;
        Ok(Some(data))
    }

    /// `data`, cut to what the declared `Content-Length` leaves room for.
    fn within_declared<'d>(&self, data: &'d [u8]) -> &'d [u8] {
        let mut data = data;
        if let Some(limit) = self.declared {
            // Never send more than the app declared: the router frames the client response
            // by that header.
            let room = usize::try_from(limit.saturating_sub(self.sent)).unwrap_or(usize::MAX);
            if data.len() > room {
                tracing::warn!(
                    declared = limit,
                    "app sent more than its Content-Length; truncated"
                );
                data = &data[..room];
            }
        }
        data
    }

    fn queue_head(&mut self) {
        if let Some(head) = self.pending.take() {
            self.writer.queue(&Frame::Response(head));
            self.head_sent = true;
        }
    }

    fn note(&mut self, r: io::Result<()>) -> io::Result<()> {
        if r.is_err() {
            self.broken = true;
        }
        r
    }

    /// End the response normally: head (if still pending) and `End` in one write. A body
    /// shorter than the declared `Content-Length` is reported as truncated instead.
    pub fn finish(&mut self) -> io::Result<Ending> {
        self.active = false;
        self.check_usable()?;
        if !self.started {
            return self.abort(AbortKind::AppError, "start_response was not called");
        }
        let no_body = self.head_request || no_body_status(self.status);
        if !no_body && self.head_sent && self.declared.is_some_and(|d| self.sent < d) {
            return self.abort(AbortKind::AppErrorAfterHead, "body shorter than Content-Length");
        }
        self.queue_head();
        let held = std::mem::take(&mut self.held);
        let r = self.writer.send_body(&held, true);
        self.held = held;
        self.held.clear();
        self.note(r).map(|()| Ending::Complete)
    }

    /// Abandon the response: `AppError` before the head went out, `AppErrorAfterHead` after.
    pub fn fail(&mut self, message: &str) -> io::Result<Ending> {
        let kind = if self.head_sent { AbortKind::AppErrorAfterHead } else { AbortKind::AppError };
        self.abort(kind, message)
    }

    fn abort(&mut self, kind: AbortKind, message: &str) -> io::Result<Ending> {
        self.active = false;
        self.check_usable()?;
        if !self.held.is_empty() {
            // What the app produced still goes out, before the abort that truncates it.
            let held = std::mem::take(&mut self.held);
            let r = self.writer.send_body(&held, false);
            self.note(r)?;
        }
        let frame = Frame::Abort(Abort { kind, message: message.as_bytes().to_vec() });
        let r = self.writer.send(&frame);
        self.note(r).map(|()| Ending::Aborted(kind))
    }
}

fn no_body_status(status: u16) -> bool {
    status < 200 || status == 204 || status == 304
}

/// Parse a WSGI status line: three digits, then an optional reason after one space.
pub fn parse_status(s: &str) -> Result<(u16, Vec<u8>), String> {
    let b = s.as_bytes();
    let valid = b.len() >= 3
        && b[..3].iter().all(u8::is_ascii_digit)
        && (b.len() == 3 || b[3] == b' ')
        && b[0] != b'0';
    if !valid {
        return Err(format!("invalid status {s:?}: expected \"NNN Reason\""));
    }
    let code = s[..3].parse::<u16>().map_err(|e| e.to_string())?;
    let reason = latin1_bytes(s.get(4..).unwrap_or(""), "status reason")?;
    Ok((code, reason))
}

/// Validate one header and return it as bytes (name as given, value latin-1 encoded).
pub fn check_header(name: &str, value: &str) -> Result<(Vec<u8>, Vec<u8>), String> {
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(format!("invalid header name {name:?}"));
    }
    if WSGI_HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h)) {
        return Err(format!("hop-by-hop header {name:?} is not allowed from a WSGI app"));
    }
    Ok((name.as_bytes().to_vec(), latin1_bytes(value, name)?))
}

/// Encode as ISO-8859-1, refusing characters past U+00FF and CR, LF, NUL (header injection).
fn latin1_bytes(s: &str, what: &str) -> Result<Vec<u8>, String> {
    s.chars()
        .map(|c| match u8::try_from(u32::from(c)) {
            Ok(b'\r' | b'\n' | 0) => Err(format!("{what}: CR, LF or NUL in {s:?}")),
            Ok(b) => Ok(b),
            Err(_) => Err(format!("{what}: {c:?} is not latin-1 in {s:?}")),
        })
        .collect()
}

/// Python-side checks of `start_response` arguments, producing the response head.
fn head_from_python(
    status: &Bound<'_, PyAny>,
    headers: &Bound<'_, PyAny>,
) -> PyResult<(ResponseHead, Option<u64>)> {
    let status = status
        .cast::<PyString>()
        .map_err(|_| PyTypeError::new_err("status must be a str"))?
        .to_str()?;
    let (code, reason) = parse_status(status).map_err(PyValueError::new_err)?;
    let mut head = ResponseHead { status: code, reason, headers: Vec::new() };
    let mut declared = None;
    for item in headers.try_iter()? {
        let item = item?;
        let pair = item
            .cast::<PyTuple>()
            .ok()
            .filter(|t| t.len() == 2)
            .ok_or_else(|| PyTypeError::new_err("each header must be a (name, value) tuple"))?;
        let text = |i: usize| -> PyResult<String> {
            let v = pair.get_item(i)?;
            let s = v.cast::<PyString>().map_err(|_| {
                PyTypeError::new_err(format!("header names and values must be str, not {v:?}"))
            })?;
            Ok(s.to_str()?.to_owned())
        };
        let (name, value) = check_header(&text(0)?, &text(1)?).map_err(PyValueError::new_err)?;
        if name.eq_ignore_ascii_case(b"content-length") {
            declared = std::str::from_utf8(&value).ok().and_then(|v| v.trim().parse().ok());
        }
        head.headers.push((name, value));
    }
    Ok((head, declared))
}

/// The `start_response` callable of one request.
#[pyclass(frozen, module = "paddock")]
pub struct StartResponse {
    side: SharedWriteSide,
    seq: u64,
}

impl StartResponse {
    pub fn new(side: SharedWriteSide, seq: u64) -> Self {
        Self { side, seq }
    }
}

#[pymethods]
impl StartResponse {
    #[pyo3(signature = (status, headers, exc_info=None))]
    fn __call__(
        &self,
        status: &Bound<'_, PyAny>,
        headers: &Bound<'_, PyAny>,
        exc_info: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<WriteCallable> {
        let exc_info = exc_info.filter(|e| !e.is_none());
        let (started, head_sent) = {
            let side = lock(&self.side);
            if !side.is_current(self.seq) {
                return Err(PyRuntimeError::new_err(
                    "start_response called after the request ended",
                ));
            }
            (side.started, side.head_sent)
        };
        match exc_info {
            // PEP 3333: too late to change the status; re-raise the app's own error.
            Some(info) if head_sent => return Err(PyErr::from_value(info.get_item(1)?)),
            None if started => {
                return Err(PyRuntimeError::new_err("start_response called twice without exc_info"))
            }
            _ => {}
        }
        // Python code (iterating `headers`) runs before the lock is taken again.
        let (head, declared) = head_from_python(status, headers)?;
        let mut side = lock(&self.side);
        if !side.is_current(self.seq) || side.head_sent {
            return Err(PyRuntimeError::new_err("response head already sent"));
        }
        side.status = head.status;
        side.pending = Some(head);
        side.declared = declared;
        side.started = true;
        Ok(WriteCallable { side: Arc::clone(&self.side), seq: self.seq })
    }
}

/// The legacy `write(data)` callable returned by `start_response`.
#[pyclass(frozen, module = "paddock")]
pub struct WriteCallable {
    side: SharedWriteSide,
    seq: u64,
}

#[pymethods]
impl WriteCallable {
    fn __call__(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let data =
            data.cast::<PyBytes>().map_err(|_| PyTypeError::new_err("write() needs bytes"))?;
        send_bytes(py, &self.side, self.seq, data.as_bytes())
    }
}

/// Send one body chunk with the GIL released (used by `write()` and the serve loop).
/// Send a regular file's bytes with `sendfile(2)`, the GIL released.
pub fn send_file(
    py: Python<'_>,
    side: &SharedWriteSide,
    seq: u64,
    file: BorrowedFd<'_>,
    offset: u64,
    len: u64,
) -> PyResult<()> {
    py.detach(|| {
        let mut side = lock(side);
        if !side.is_current(seq) {
            return Err(PyRuntimeError::new_err("the request ended"));
        }
        if !side.started {
            return Err(PyRuntimeError::new_err("body produced before start_response was called"));
        }
        side.send_file(file, offset, len).map_err(PyErr::from)
    })
}

pub fn send_bytes(py: Python<'_>, side: &SharedWriteSide, seq: u64, data: &[u8]) -> PyResult<()> {
    send_or_hold(py, side, seq, data, false)
}

/// Largest last chunk that is copied to go out with `End` rather than sent on its own.
pub const HOLD_MAX: usize = 64 * 1024;

/// Send `data`, or with `hold` keep it to go out with the response's `End` (see
/// [`WriteSide::hold_last`]).
pub fn send_or_hold(
    py: Python<'_>,
    side: &SharedWriteSide,
    seq: u64,
    data: &[u8],
    hold: bool,
) -> PyResult<()> {
    if data.is_empty() {
        // Nothing to send, and PEP 3333 lets an app yield b"" before start_response.
        return Ok(());
    }
    let put = |side: &mut WriteSide| {
        if !side.is_current(seq) {
            return Err(PyRuntimeError::new_err("write() called after the request ended"));
        }
        if !side.started {
            return Err(PyRuntimeError::new_err("body produced before start_response was called"));
        }
        if hold {
            side.hold_last(data).map_err(PyErr::from)
        } else {
            side.send(data).map_err(PyErr::from)
        }
    };
    // Holding a chunk only copies it (no I/O): done with the GIL kept, which spares a GIL
    // hand-over (futex calls, a thread switch) per response, unless another thread has the
    // side, which may be blocked in a write: then wait for it without the GIL.
    if hold {
        let free = match side.try_lock() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        };
        if let Some(mut guard) = free {
            return put(&mut guard);
        }
    }
    py.detach(|| put(&mut lock(side)))
}

#[cfg(test)]
mod tests;

//! `wsgi.input`: the request body streamed from the router connection.
//!
//! The connection's read side lives behind a mutex shared by the serve loop and the [`Input`]
//! object handed to the application. The mutex is only ever taken with the GIL released, and
//! nothing acquires the GIL while holding it, so the two can never deadlock. Each request has
//! a sequence number: an `Input` kept by the application after its request ended sees a
//! different number and reads `b""` instead of the next request's frames.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use paddock_proto::{BodyKind, Frame};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::conn::FrameReader;

/// The read half of a connection plus the state of the current request body.
#[derive(Debug)]
pub struct ReadSide {
    frames: FrameReader,
    seq: u64,
    active: bool,
    /// Bytes the application may still read (`Length` bodies); `None` for chunked bodies.
    remaining: Option<u64>,
    /// `End` or `Abort` seen: no more frames belong to this request.
    done: bool,
    /// Why the body cannot be read further (client gone, truncated body, protocol error).
    failed: Option<(io::ErrorKind, String)>,
    /// Set on an I/O or protocol error: the connection must be closed after this request.
    pub broken: bool,
    chunk: Vec<u8>,
    pos: usize,
}

/// The read side plus the sequence number of the request in progress (0: none), readable
/// without the lock so that a stale `Input` never waits behind the serve loop.
#[derive(Debug)]
pub struct ReadShared {
    side: Mutex<ReadSide>,
    current: AtomicU64,
}

pub type SharedReadSide = Arc<ReadShared>;

impl ReadShared {
    pub fn new(frames: FrameReader) -> SharedReadSide {
        Arc::new(Self { side: Mutex::new(ReadSide::new(frames)), current: AtomicU64::new(0) })
    }

    pub fn lock(&self) -> MutexGuard<'_, ReadSide> {
        lock(&self.side)
    }

    /// Start a request body; returns its sequence number.
    pub fn begin(&self, body: BodyKind) -> u64 {
        let seq = self.lock().begin(body);
        self.current.store(seq, Ordering::SeqCst);
        seq
    }

    /// End the request: detach its `Input`s, then drain the unread body.
    pub fn finish(&self) -> io::Result<()> {
        self.current.store(0, Ordering::SeqCst);
        self.lock().finish()
    }

    fn is_current(&self, seq: u64) -> bool {
        self.current.load(Ordering::SeqCst) == seq
    }

    /// Whether the router aborted the current request's body (the client sent a broken body,
    /// too much of it, or too slowly): the router has answered already, and an exception the
    /// application raises on that is the client's doing, not the application's failure.
    pub fn aborted_by_router(&self) -> bool {
        matches!(self.lock().failed, Some((io::ErrorKind::ConnectionAborted, _)))
    }
}

/// Lock ignoring poisoning: a panic while holding the lock already dooms the connection, and
/// the state it leaves is still memory-safe to look at.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ReadSide {
    pub fn new(frames: FrameReader) -> Self {
        Self {
            frames,
            seq: 0,
            active: false,
            remaining: None,
            done: true,
            failed: None,
            broken: false,
            chunk: Vec::new(),
            pos: 0,
        }
    }

    pub fn frames(&mut self) -> &mut FrameReader {
        &mut self.frames
    }

    /// Start a new request body; returns its sequence number.
    fn begin(&mut self, body: BodyKind) -> u64 {
        self.seq += 1;
        self.active = true;
        self.remaining = match body {
            BodyKind::Empty => Some(0),
            BodyKind::Length(n) => Some(n),
            BodyKind::Chunked => None,
        };
        self.done = false;
        self.failed = None;
        self.chunk.clear();
        self.pos = 0;
        self.seq
    }

    /// Skip whatever body frames the application did not read, up to the request's `End`, and
    /// detach any `Input` still referring to the request.
    fn finish(&mut self) -> io::Result<()> {
        self.active = false;
        self.chunk.clear();
        self.pos = 0;
        while !self.done {
            self.next_body_frame()?;
        }
        Ok(())
    }

    fn is_current(&self, seq: u64) -> bool {
        self.active && self.seq == seq
    }

    /// Read the next frame of the body into `chunk`.
    fn next_body_frame(&mut self) -> io::Result<()> {
        let frame = match self.frames.next_frame() {
            Ok(f) => f,
            Err(e) => return Err(self.fail_connection(e.kind(), e.to_string())),
        };
        match frame {
            Some(Frame::Body(b)) => {
                self.chunk = b;
                self.pos = 0;
            }
            Some(Frame::End) => {
                self.done = true;
                if self.remaining.is_some_and(|r| r > 0) && self.active {
                    return Err(self.fail(io::ErrorKind::UnexpectedEof, "request body ended early"));
                }
            }
            Some(Frame::Abort(a)) => {
                self.done = true;
                let msg = format!("router aborted the request body ({:?})", a.kind);
                return Err(self.fail(io::ErrorKind::ConnectionAborted, &msg));
            }
            Some(other) => {
                let msg =
                    format!("unexpected {:?} frame inside a request body", other.frame_type());
                return Err(self.fail_connection(io::ErrorKind::InvalidData, msg));
            }
            None => {
                let msg = "router closed the connection inside a request body".to_owned();
                return Err(self.fail_connection(io::ErrorKind::UnexpectedEof, msg));
            }
        }
        Ok(())
    }

    fn fail(&mut self, kind: io::ErrorKind, msg: &str) -> io::Error {
        self.failed = Some((kind, msg.to_owned()));
        io::Error::new(kind, msg)
    }

    fn fail_connection(&mut self, kind: io::ErrorKind, msg: String) -> io::Error {
        self.broken = true;
        self.done = true;
        self.fail(kind, &msg)
    }

    /// Make unread bytes available in `chunk`; `false` at the end of the body.
    fn fill(&mut self) -> io::Result<bool> {
        loop {
            if let Some((kind, msg)) = &self.failed {
                return Err(io::Error::new(*kind, msg.clone()));
            }
            if self.remaining == Some(0) {
                return Ok(false);
            }
            if self.pos < self.chunk.len() {
                return Ok(true);
            }
            if self.done {
                return Ok(false);
            }
            self.next_body_frame()?;
        }
    }

    /// Up to `max` unread bytes of the current chunk, never past the declared length.
    fn available(&self, max: usize) -> &[u8] {
        let mut n = (self.chunk.len() - self.pos).min(max);
        if let Some(r) = self.remaining {
            n = n.min(usize::try_from(r).unwrap_or(usize::MAX));
        }
        &self.chunk[self.pos..self.pos + n]
    }

    fn consume(&mut self, n: usize, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        if let Some(r) = self.remaining.as_mut() {
            *r = r.saturating_sub(n as u64);
        }
    }

    /// Read up to `size` bytes (all of the body if `None`), blocking until that many arrived or
    /// the body ended, like a file's `read`.
    pub fn read(&mut self, size: Option<usize>) -> io::Result<Vec<u8>> {
        let want = size.unwrap_or(usize::MAX);
        let mut out = Vec::new();
        while out.len() < want && self.fill()? {
            let n = self.available(want - out.len()).len();
            self.consume(n, &mut out);
        }
        Ok(out)
    }

    /// Read up to and including the next `\n`, at most `size` bytes.
    pub fn readline(&mut self, size: Option<usize>) -> io::Result<Vec<u8>> {
        let want = size.unwrap_or(usize::MAX);
        let mut out = Vec::new();
        while out.len() < want && self.fill()? {
            let avail = self.available(want - out.len());
            let (n, found) = match avail.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (avail.len(), false),
            };
            self.consume(n, &mut out);
            if found {
                break;
            }
        }
        Ok(out)
    }
}

/// The `wsgi.input` object.
#[pyclass(frozen, module = "paddock")]
pub struct Input {
    side: SharedReadSide,
    seq: u64,
}

impl Input {
    pub fn new(side: SharedReadSide, seq: u64) -> Self {
        Self { side, seq }
    }

    /// Run `f` on the read side with the GIL released; an `Input` that outlived its request
    /// gets `default` without touching the connection.
    fn with_side<T, F>(&self, py: Python<'_>, default: T, f: F) -> PyResult<T>
    where
        T: Send,
        F: FnOnce(&mut ReadSide) -> io::Result<T> + Send,
    {
        if !self.side.is_current(self.seq) {
            return Ok(default);
        }
        py.detach(|| {
            let mut side = self.side.lock();
            if !side.is_current(self.seq) {
                return Ok(default);
            }
            f(&mut side)
        })
        .map_err(PyErr::from)
    }
}

/// Python's convention: `None` or a negative size means "no limit".
fn limit(size: Option<isize>) -> Option<usize> {
    size.and_then(|s| usize::try_from(s).ok())
}

#[pymethods]
impl Input {
    #[pyo3(signature = (size=None))]
    fn read<'py>(&self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        let data = self.with_side(py, Vec::new(), |s| s.read(limit(size)))?;
        Ok(PyBytes::new(py, &data))
    }

    #[pyo3(signature = (size=None))]
    fn readline<'py>(&self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        let data = self.with_side(py, Vec::new(), |s| s.readline(limit(size)))?;
        Ok(PyBytes::new(py, &data))
    }

    #[pyo3(signature = (hint=None))]
    fn readlines<'py>(&self, py: Python<'py>, hint: Option<isize>) -> PyResult<Bound<'py, PyList>> {
        let hint = limit(hint).filter(|&h| h > 0).unwrap_or(usize::MAX);
        let lines = self.with_side(py, Vec::new(), |s| {
            let (mut lines, mut total) = (Vec::new(), 0usize);
            while total < hint {
                let line = s.readline(None)?;
                if line.is_empty() {
                    break;
                }
                total = total.saturating_add(line.len());
                lines.push(line);
            }
            Ok(lines)
        })?;
        PyList::new(py, lines.iter().map(|l| PyBytes::new(py, l)))
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let line = self.with_side(py, Vec::new(), |s| s.readline(None))?;
        Ok((!line.is_empty()).then(|| PyBytes::new(py, &line)))
    }
}

#[cfg(test)]
mod tests;

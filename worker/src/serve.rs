//! Accepting router connections and serving requests on them.
//!
//! Each worker thread stays attached to the interpreter for its whole life (so Python
//! thread-locals, such as Trac's per-thread database connections, survive across requests) and
//! releases the GIL around every accept, poll, read and write.
//!
//! Shutdown never drops a request this process took: a connection once accepted gets its first
//! request served, however late its bytes come (up to the read timeout); only connections idle
//! between requests are closed. The worker's `Hello` goes out only with that commitment, so a
//! router that sees the connection end before `Hello` knows the request never started.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use paddock_proto::{Abort, AbortKind, Frame, Hello, RequestHead, VERSION};
use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

use crate::app::FileWrapper;
use crate::conn::{FrameReader, FrameWriter};
use crate::control::Control;
use crate::environ::{self, Statics};
use crate::input::{lock, Input, ReadShared, SharedReadSide};
use crate::response::{
    send_file, send_or_hold, Ending, SharedWriteSide, StartResponse, WriteSide, HOLD_MAX,
};
use crate::{log, sys};

/// What every worker thread shares.
pub struct Shared {
    pub app: Py<PyAny>,
    pub statics: Statics,
    pub listener: UnixListener,
    /// Read end of the shutdown self-pipe: readable once SIGTERM arrived.
    pub wake: OwnedFd,
    /// Longest wait for the router's bytes: its `Hello` and first request on a connection just
    /// accepted, or the rest of a request (a body that never arrives).
    pub read_timeout: Duration,
    /// The control pipe and the count of completed requests (`--max-requests`).
    pub control: Control,
    /// Requests of this process between their head and their end.
    pub in_flight: AtomicUsize,
    /// `--gc-freeze`: freeze once more after the first request that ends alone.
    pub freeze_pending: AtomicBool,
}

/// Body of one worker thread: accept and serve connections until shutdown.
pub fn worker_thread(shared: &Shared, waiter: &sys::AcceptWait) {
    Python::attach(|py| loop {
        match py.detach(|| accept(shared, waiter)) {
            Ok(Some(stream)) => serve_guarded(py, shared, stream),
            Ok(None) => return,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::error!("accept failed: {e}");
                py.detach(|| std::thread::sleep(Duration::from_millis(100)));
            }
        }
    })
}

/// Wait for a connection; `None` once shutdown was requested. The listener is non-blocking:
/// the kernel wakes one waiting thread of the pool per connection, but a thread of another
/// process that comes back from a request may take it first.
fn accept(shared: &Shared, waiter: &sys::AcceptWait) -> io::Result<Option<UnixStream>> {
    loop {
        if sys::shutdown_requested() {
            return Ok(None);
        }
        // Woken for a connection in the same instant as the shutdown signal, take it anyway:
        // the wake-up was exclusive, so no other process of the pool heard of it, and left in
        // the backlog it would wait for the next connection to wake somebody.
        if !waiter.wait()?.connection {
            continue;
        }
        match shared.listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false)?;
                return Ok(Some(stream));
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::Interrupted
                        | io::ErrorKind::ConnectionAborted
                ) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Serve one connection; a panic closes that connection and leaves the thread serving.
fn serve_guarded(py: Python<'_>, shared: &Shared, stream: UnixStream) {
    let r = catch_unwind(AssertUnwindSafe(|| serve_connection(py, shared, stream)));
    match r {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::info!("connection closed: {e}"),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!("panic while serving a connection (closed): {msg}");
        }
    }
}

/// Requests after which a process freezes its objects even if it has never been alone.
const FREEZE_BY: u64 = 20;

fn serve_connection(py: Python<'_>, shared: &Shared, stream: UnixStream) -> io::Result<()> {
    stream.set_read_timeout(Some(shared.read_timeout))?;
    let write: SharedWriteSide =
        Arc::new(Mutex::new(WriteSide::new(FrameWriter::new(stream.try_clone()?))));
    // A third handle, to wait for the next request without holding the read side's lock.
    let idle = stream.try_clone()?;
    let read = ReadShared::new(FrameReader::new(stream));
    let mut next = py.detach(|| first_request(&read, &write))?;
    while let Some(head) = next {
        // Counted before any Python object of the request exists (that needs the GIL, which
        // a thread freezing holds).
        shared.in_flight.fetch_add(1, Ordering::AcqRel);
        let keep = handle_request(py, shared, &read, &write, head);
        let alone = shared.in_flight.fetch_sub(1, Ordering::AcqRel) == 1;
        // The app's lasting state (Trac: the environment, its components and templates) now
        // exists, and no other request's objects do. A process busy from its first request
        // on may never be alone: it freezes after FREEZE_BY requests anyway (the objects of
        // the requests then in flight are frozen with it, once), or its every collection
        // walks the app's whole state (the bench: Trac 176 req/s against 246-264 for peers
        // freezing after their first request).
        let due = alone || shared.control.completed() >= FREEZE_BY;
        if due && shared.freeze_pending.swap(false, Ordering::AcqRel) {
            crate::app::gc_freeze(py);
        }
        if !keep {
            break;
        }
        next = py.detach(|| next_request(shared, &idle, &read, &write))?;
    }
    Ok(())
}

fn protocol_error(write: &SharedWriteSide, msg: String) -> io::Error {
    let abort = Frame::Abort(Abort { kind: AbortKind::Protocol, message: msg.clone().into() });
    // Best effort: the router may already be gone.
    let _ = lock(write).send_frame(&abort);
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// The router's `Hello` and first request head, each waited for up to the read timeout, also
/// after SIGTERM: nobody else will serve a connection this process accepted. Only then, with
/// the request certain to run, our `Hello` goes out (its pid tells the router which process
/// to send SIGUSR2 if the request overruns). `None`: the router closed first.
fn first_request(
    read: &SharedReadSide,
    write: &SharedWriteSide,
) -> io::Result<Option<RequestHead>> {
    let hello = read.lock().frames().next_frame()?;
    match hello {
        Some(Frame::Hello(h)) if h.version == VERSION => {}
        Some(Frame::Hello(h)) => {
            let msg =
                format!("unsupported protocol version {} (worker speaks {VERSION})", h.version);
            return Err(protocol_error(write, msg));
        }
        Some(f) => {
            return Err(protocol_error(write, format!("expected Hello, got {:?}", f.frame_type())))
        }
        None => return Ok(None),
    }
    let head = loop {
        let frame = read.lock().frames().next_frame()?;
        match frame {
            None => return Ok(None),
            Some(Frame::Request(head)) => break head,
            Some(Frame::Abort(a)) if a.kind == AbortKind::ClientGone => {}
            Some(f) => {
                let msg = format!("expected Request, got {:?}", f.frame_type());
                return Err(protocol_error(write, msg));
            }
        }
    };
    let hello = Hello { version: VERSION, pid: std::process::id() };
    lock(write).send_frame(&Frame::Hello(hello))?;
    Ok(Some(head))
}

/// Wait for the next request head on a connection that served one already. `None` on end of
/// stream, or when shutting down with no request's bytes buffered or readable: then `Goodbye`
/// goes out first, so a request the router wrote at that moment is known never to have
/// started. An idle connection waits without a timeout: the router owns its lifetime.
fn next_request(
    shared: &Shared,
    idle: &UnixStream,
    read: &SharedReadSide,
    write: &SharedWriteSide,
) -> io::Result<Option<RequestHead>> {
    loop {
        if !read.lock().frames().has_buffered() {
            let ready = sys::poll_in(&[idle.as_fd(), shared.wake.as_fd()], -1)?;
            if !ready[0] {
                if ready[1] {
                    // Say so before closing: a request the router writes from now on was never
                    // read, and it may send it again to another process.
                    let _ = lock(write).send_frame(&Frame::Goodbye);
                    return Ok(None);
                }
                continue;
            }
        }
        let frame = read.lock().frames().next_frame()?;
        match frame {
            None => return Ok(None),
            Some(Frame::Request(head)) => return Ok(Some(head)),
            // The router gave up on a request that already ended: nothing left to stop.
            Some(Frame::Abort(a)) if a.kind == AbortKind::ClientGone => {}
            Some(f) => {
                let msg = format!("expected Request, got {:?}", f.frame_type());
                return Err(protocol_error(write, msg));
            }
        }
    }
}

/// Run one request to its end; `false` if the connection must be closed afterwards.
fn handle_request(
    py: Python<'_>,
    shared: &Shared,
    read: &SharedReadSide,
    write: &SharedWriteSide,
    head: RequestHead,
) -> bool {
    let started = Instant::now();
    let read_seq = read.begin(head.body);
    let write_seq = lock(write).begin(head.method.eq_ignore_ascii_case(b"HEAD"));
    let outcome = run_app(py, shared, &head, (read, read_seq), (write, write_seq));
    let client_gone = lock(write).broken;
    let failure = match &outcome {
        Ok(()) => None,
        Err(e) if client_gone => {
            tracing::info!("router connection lost during the response: {e}");
            Some("client gone".to_owned())
        }
        Err(e) if read.aborted_by_router() => {
            tracing::info!("request body aborted by the router; the application gave up: {e}");
            Some("request body aborted".to_owned())
        }
        Err(e) => {
            let what = format!(
                "exception in WSGI app for {} {}",
                String::from_utf8_lossy(&head.method),
                String::from_utf8_lossy(&head.request_uri)
            );
            log::python_error(py, e, &what);
            // For the router's log only (never shown to clients): the exception, kept short.
            Some(e.to_string().chars().take(200).collect())
        }
    };
    // One GIL hand-over for the end: the response's last write, what is left of the request
    // body, and the count towards max_requests.
    let (ended, drained) = py.detach(|| {
        let mut w = lock(write);
        let ended = match failure {
            None => w.finish(),
            Some(msg) => w.fail(&msg),
        };
        drop(w);
        let drained = read.finish();
        shared.control.request_done();
        (ended, drained)
    });
    if let Ok(Ending::Aborted(kind)) = ended {
        if outcome.is_ok() {
            tracing::error!(
                "response ended early ({kind:?}): body shorter than its Content-Length"
            );
        }
    }
    tracing::debug!(
        method = %String::from_utf8_lossy(&head.method),
        uri = %String::from_utf8_lossy(&head.request_uri),
        ms = started.elapsed().as_millis() as u64,
        "request done"
    );
    ended.is_ok() && drained.is_ok() && !read.lock().broken && !lock(write).broken
}

/// Call the app and send its result; the result's `close()` runs before the response's `End`
/// goes out, whatever happened while iterating.
fn run_app(
    py: Python<'_>,
    shared: &Shared,
    head: &RequestHead,
    (read, read_seq): (&SharedReadSide, u64),
    (write, write_seq): (&SharedWriteSide, u64),
) -> PyResult<()> {
    let input = Bound::new(py, Input::new(Arc::clone(read), read_seq))?;
    let environ = environ::build(py, &shared.statics, head, input.into_any())?;
    let start_response = Bound::new(py, StartResponse::new(Arc::clone(write), write_seq))?;
    let result = shared.app.bind(py).call1((environ, start_response))?;
    let sent = send_iterable(py, &result, write, write_seq);
    let closed = match result.getattr_opt(intern!(py, "close")) {
        Ok(Some(close)) => close.call0().map(drop),
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    };
    match (sent, closed) {
        (Err(e), Err(c)) => {
            log::python_error(py, &c, "close() of the WSGI result failed too");
            Err(e)
        }
        (sent, closed) => sent.and(closed),
    }
}

fn send_iterable(
    py: Python<'_>,
    result: &Bound<'_, PyAny>,
    write: &SharedWriteSide,
    seq: u64,
) -> PyResult<()> {
    if let Ok(wrapper) = result.cast::<FileWrapper>() {
        if let Some((fd, offset, len)) = wrapper.get().regular_file(py) {
            send_file(py, write, seq, fd.as_fd(), offset, len)?;
            return Ok(());
        }
    }
    // A list or tuple holds the whole body and runs no app code when iterated or closed: its
    // last chunk can go out together with the response's end, in one write.
    let known =
        if result.is_exact_instance_of::<PyList>() || result.is_exact_instance_of::<PyTuple>() {
            result.len()?
        } else {
            usize::MAX
        };
    for (i, item) in result.try_iter()?.enumerate() {
        let item = item?;
        let bytes = item.cast::<PyBytes>().map_err(|_| {
            let ty = item.get_type().name().map(|n| n.to_string()).unwrap_or_default();
            PyTypeError::new_err(format!("WSGI app yielded {ty}, not bytes"))
        })?;
        let data = bytes.as_bytes();
        let hold = i + 1 == known && data.len() <= HOLD_MAX;
        send_or_hold(py, write, seq, data, hold)?;
    }
    if !lock(write).started() {
        return Err(pyo3::exceptions::PyRuntimeError::new_err(
            "WSGI app returned without calling start_response",
        ));
    }
    Ok(())
}

//! The control pipe to the router: one `Ready` once the app is loaded and the threads run, then
//! a `Retire` once `--max-requests` requests are completed, never in the other order. With
//! `--retire-lead N`, one more `Retire` comes first, N requests before that one, for the router
//! to start the successor ahead of time. The pipe stays open for the process's life (its EOF
//! tells the router the worker is gone).

use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use paddock_proto::{encode, Frame, Ready, Retire};

use crate::input::lock;

/// The control pipe and the request count that decides when to ask for retirement.
#[derive(Debug)]
pub struct Control<W = File> {
    state: Mutex<State<W>>,
    /// Requests after which to send `Retire`; 0: never.
    max_requests: u64,
    /// Requests after which to send the early `Retire` (`max_requests - lead`); 0: none.
    early_at: u64,
    /// Requests completed by all threads of the process.
    completed: AtomicU64,
}

#[derive(Debug)]
struct State<W> {
    /// `None` without `--control-fd` (development): the frames are only logged.
    pipe: Option<W>,
    ready_sent: bool,
    /// `Retire` frames that became due before `Ready` went out.
    retire_due: Vec<Retire>,
}

impl<W: Write> Control<W> {
    /// `lead`: requests before `max_requests` at which to send the early `Retire` (none if
    /// 0; at the first request if `lead >= max_requests`).
    pub fn new(pipe: Option<W>, max_requests: u64, lead: u64) -> Self {
        let state = State { pipe, ready_sent: false, retire_due: Vec::new() };
        let early_at = match (max_requests, lead) {
            (0, _) | (_, 0) => 0,
            (max, lead) => max.saturating_sub(lead).max(1),
        };
        Self { state: Mutex::new(state), max_requests, early_at, completed: AtomicU64::new(0) }
    }

    /// Report `Ready`, followed by the `Retire` frames that became due first.
    pub fn ready(&self) {
        let mut state = lock(&self.state);
        state.ready_sent = true;
        state.send(&Frame::Ready(Ready { pid: std::process::id() }));
        for retire in std::mem::take(&mut state.retire_due) {
            state.send(&Frame::Retire(retire));
        }
    }

    /// Count one completed request. Exactly one caller sees the count reach the early point,
    /// and one `--max-requests`, and sends that `Retire`; the process goes on serving until
    /// the router sends SIGTERM.
    pub fn request_done(&self) {
        let n = self.completed.fetch_add(1, Ordering::SeqCst).wrapping_add(1);
        if self.max_requests == 0 || (n != self.max_requests && n != self.early_at) {
            return;
        }
        if n == self.max_requests {
            tracing::info!(
                requests = n,
                "max requests reached: asking the router for a replacement"
            );
        } else {
            tracing::debug!(
                requests = n,
                "max requests near: telling the router to start the successor"
            );
        }
        let retire = Retire { pid: std::process::id(), requests: n };
        let mut state = lock(&self.state);
        if state.ready_sent {
            state.send(&Frame::Retire(retire));
        } else {
            state.retire_due.push(retire);
        }
    }

    /// Requests completed so far.
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::SeqCst)
    }
}

impl<W: Write> State<W> {
    fn send(&mut self, frame: &Frame) {
        let Some(pipe) = self.pipe.as_mut() else { return };
        let mut buf = Vec::with_capacity(32);
        encode(frame, &mut buf);
        // At most two small frames are ever written, far below a pipe's buffer, so this never
        // blocks for long even if the router does not read.
        if let Err(e) = pipe.write_all(&buf) {
            tracing::warn!("cannot write {:?} to the control pipe: {e}", frame.frame_type());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use paddock_proto::decode;

    use super::*;

    /// A pipe stand-in whose bytes the test can read back.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            lock(&self.0).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn frames(sink: &Sink) -> Vec<Frame> {
        let bytes = lock(&sink.0).clone();
        let mut rest = bytes.as_slice();
        let mut out = Vec::new();
        while let Some((f, used)) = decode(rest).expect("valid frames") {
            out.push(f);
            rest = &rest[used..];
        }
        assert!(rest.is_empty());
        out
    }

    fn retire(requests: u64) -> Frame {
        Frame::Retire(Retire { pid: std::process::id(), requests })
    }

    #[test]
    fn one_retire_from_many_threads() {
        let sink = Sink::default();
        let control = Arc::new(Control::new(Some(sink.clone()), 500, 0));
        control.ready();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let c = Arc::clone(&control);
                std::thread::spawn(move || (0..1000).for_each(|_| c.request_done()))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().expect("thread"));
        assert_eq!(control.completed(), 8000);
        let ready = Frame::Ready(Ready { pid: std::process::id() });
        assert_eq!(frames(&sink), [ready, retire(500)]);
    }

    #[test]
    fn retire_due_before_ready_waits_for_it() {
        let sink = Sink::default();
        let control = Control::new(Some(sink.clone()), 1, 0);
        control.request_done();
        assert!(frames(&sink).is_empty());
        control.ready();
        control.request_done();
        let ready = Frame::Ready(Ready { pid: std::process::id() });
        assert_eq!(frames(&sink), [ready, retire(1)]);
    }

    #[test]
    fn an_early_retire_comes_lead_requests_before_the_last() {
        let sink = Sink::default();
        let control = Arc::new(Control::new(Some(sink.clone()), 100, 30));
        control.ready();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let c = Arc::clone(&control);
                std::thread::spawn(move || (0..50).for_each(|_| c.request_done()))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().expect("thread"));
        let ready = Frame::Ready(Ready { pid: std::process::id() });
        assert_eq!(frames(&sink), [ready, retire(70), retire(100)]);
        // A lead as long as the process's life: the successor starts at the first request.
        let sink = Sink::default();
        let control = Control::new(Some(sink.clone()), 5, 9);
        control.request_done();
        control.ready();
        (0..9).for_each(|_| control.request_done());
        let ready = Frame::Ready(Ready { pid: std::process::id() });
        assert_eq!(frames(&sink), [ready, retire(1), retire(5)]);
    }

    #[test]
    fn zero_means_never() {
        let sink = Sink::default();
        let control = Control::new(Some(sink.clone()), 0, 3);
        control.ready();
        (0..100).for_each(|_| control.request_done());
        assert_eq!(frames(&sink).len(), 1);
    }
}

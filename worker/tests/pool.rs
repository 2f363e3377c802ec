//! Worker processes as the router runs them: sharing one inherited listening socket, each with
//! a control pipe. The inherited descriptors are made inheritable only for the duration of one
//! spawn, under a lock, so no other child of this test binary keeps a copy (a stray copy of a
//! control pipe's write end would hide the worker's EOF).

mod common;

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{head, hello, request_frames, Worker, STEP};
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use paddock_proto::{decode, BodyKind, Frame, Ready, Retire};

static SPAWN: Mutex<()> = Mutex::new(());

fn set_cloexec(fd: RawFd, on: bool) {
    let flags = if on { FdFlag::FD_CLOEXEC } else { FdFlag::empty() };
    fcntl(fd, FcntlArg::F_SETFD(flags)).expect("F_SETFD");
}

/// Start a worker on `listener` (bound at `socket`) with a control pipe; returns it and the
/// pipe's read end.
fn spawn(
    listener: &UnixListener,
    socket: &Path,
    threads: u16,
    extra: &[&str],
) -> (Worker, Control) {
    let dir = common::test_dir();
    let _guard = SPAWN.lock().unwrap_or_else(|e| e.into_inner());
    let (read, write): (OwnedFd, OwnedFd) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe2");
    let (lfd, cfd) = (listener.as_raw_fd(), write.as_raw_fd());
    set_cloexec(lfd, false);
    set_cloexec(cfd, false);
    let child = common::command(dir.path(), threads, "testapps:dispatch")
        .args(["--listen-fd", &lfd.to_string(), "--control-fd", &cfd.to_string()])
        .args(extra)
        .spawn()
        .expect("spawn paddock-worker");
    set_cloexec(lfd, true);
    drop(write);
    let worker = Worker { dir, socket: socket.to_path_buf(), child };
    (worker, Control::new(read))
}

/// The read end of a control pipe, read without blocking.
struct Control {
    pipe: File,
    buf: Vec<u8>,
    eof: bool,
}

impl Control {
    fn new(fd: OwnedFd) -> Self {
        fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).expect("O_NONBLOCK");
        Control { pipe: File::from(fd), buf: Vec::new(), eof: false }
    }

    /// Every frame received so far.
    fn frames(&mut self) -> Vec<Frame> {
        let mut chunk = [0u8; 256];
        while !self.eof {
            match self.pipe.read(&mut chunk) {
                Ok(0) => self.eof = true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => break,
            }
        }
        let mut rest = self.buf.as_slice();
        let mut out = Vec::new();
        while let Some((f, used)) = decode(rest).expect("valid control frame") {
            out.push(f);
            rest = &rest[used..];
        }
        out
    }

    /// Frames once there are `n` of them, or once the pipe ended.
    fn wait_for(&mut self, n: usize) -> Vec<Frame> {
        let deadline = Instant::now() + STEP;
        loop {
            let frames = self.frames();
            if frames.len() >= n || self.eof || Instant::now() > deadline {
                return frames;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// All frames up to EOF, which comes when the worker is gone.
    fn until_eof(&mut self) -> Vec<Frame> {
        self.wait_for(usize::MAX)
    }
}

fn simple() -> paddock_proto::RequestHead {
    head("GET", "/simple", "", BodyKind::Empty)
}

fn sigterm(w: &Worker) {
    kill(Pid::from_raw(w.pid()), Signal::SIGTERM).expect("kill");
}

#[test]
fn max_requests_sends_one_retire_and_the_worker_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("tenant.sock");
    let listener = UnixListener::bind(&socket).expect("bind");
    let (mut w, mut control) = spawn(&listener, &socket, 4, &["--max-requests", "3"]);
    let pid = w.child.id();
    assert_eq!(control.wait_for(1), [Frame::Ready(Ready { pid })], "{}", w.stderr());
    for _ in 0..2 {
        assert_eq!(w.one_shot(simple()).status(), 200);
    }
    assert_eq!(control.frames().len(), 1, "Retire before the third request");
    assert_eq!(w.one_shot(simple()).status(), 200);
    let retire = Frame::Retire(Retire { pid, requests: 3 });
    assert_eq!(control.wait_for(2), [Frame::Ready(Ready { pid }), retire.clone()]);
    // Requests 4..=10, on several threads at once: all served by the same process.
    std::thread::scope(|s| {
        let clients: Vec<_> = (4..=10)
            .map(|_| {
                s.spawn(|| {
                    let mut c = w.connect_raw();
                    let mut frames = vec![hello()];
                    frames
                        .extend(request_frames(head("GET", "/sleep", "0.1", BodyKind::Empty), b""));
                    c.send(&frames);
                    (c.reply(), c.hello.map(|h| h.pid))
                })
            })
            .collect();
        for c in clients {
            let (r, served_by) = c.join().expect("client");
            assert_eq!((r.text().as_str(), served_by), ("slept", Some(pid)));
        }
    });
    sigterm(&w);
    assert_eq!(w.wait_exit(STEP).and_then(|s| s.code()), Some(0), "{}", w.stderr());
    assert_eq!(control.until_eof(), [Frame::Ready(Ready { pid }), retire]);
    assert!(w.stderr().contains("max requests reached"), "{}", w.stderr());
}

#[test]
fn after_sigterm_the_backlog_is_left_to_the_other_processes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("tenant.sock");
    let listener = UnixListener::bind(&socket).expect("bind");
    let (mut old, mut control) = spawn(&listener, &socket, 1, &[]);
    assert_eq!(control.wait_for(1).len(), 1, "{}", old.stderr());
    let mut busy = old.connect();
    busy.send(&request_frames(head("GET", "/sleep", "1", BodyKind::Empty), b""));
    std::thread::sleep(Duration::from_millis(300));
    // The only thread is busy: this one waits in the listen backlog, as the router writes it.
    let mut waiting = old.connect_raw();
    let mut frames = vec![hello()];
    frames.extend(request_frames(simple(), b""));
    waiting.send(&frames);
    sigterm(&old);
    assert_eq!(busy.reply().text(), "slept", "{}", old.stderr());
    assert_eq!(old.wait_exit(STEP).and_then(|s| s.code()), Some(0), "{}", old.stderr());
    assert_eq!(control.until_eof().len(), 1);
    // Not accepted by the old worker: no byte came back, the connection is still pending.
    waiting.stream.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    let mut byte = [0u8; 1];
    let pending = waiting.stream.read(&mut byte);
    assert!(pending.is_err(), "the retiring worker touched a backlog connection: {pending:?}");
    waiting.stream.set_read_timeout(Some(STEP)).expect("timeout");
    let (new, _control) = spawn(&listener, &socket, 1, &[]);
    let r = waiting.reply();
    assert_eq!(r.text(), "hello /simple", "{}", new.stderr());
    assert_eq!(waiting.hello.map(|h| h.pid), Some(new.child.id()));
}

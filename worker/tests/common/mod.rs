//! Shared helpers: start the real `paddock-worker` on a socket in a tempdir and speak frames
//! to it. Every wait is bounded by a count or a deadline; only the child we started is killed.
#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use paddock_proto::{
    decode, encode, Abort, BodyKind, Frame, Hello, RequestHead, ResponseHead, MAX_CHUNK, VERSION,
};

pub const TEST_APPS: &str = include_str!("../apps/testapps.py");
/// Longest any single test step may take before the test fails instead of hanging.
pub const STEP: Duration = Duration::from_secs(30);

/// A tempdir holding the test apps.
pub fn test_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("testapps.py"), TEST_APPS).expect("write apps");
    dir
}

/// The worker's command line without a listening socket; stderr goes to `dir/stderr.log`.
pub fn command(dir: &Path, threads: u16, app: &str) -> Command {
    let stderr = File::create(dir.join("stderr.log")).expect("stderr file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_paddock-worker"));
    cmd.args(["--tenant", "test", "--app", app, "--threads", &threads.to_string()])
        .arg("--python-path")
        .arg(dir)
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    cmd
}

pub struct Worker {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub child: Child,
}

impl Worker {
    /// Start a worker serving `testapps:dispatch` with `threads` threads.
    pub fn start(threads: u16) -> Worker {
        Self::start_with(threads, "testapps:dispatch", &[], |_| {})
    }

    /// Start a worker for `app`, after `prepare` populated its tempdir.
    pub fn start_with(
        threads: u16,
        app: &str,
        extra: &[&str],
        prepare: impl FnOnce(&Path),
    ) -> Worker {
        let dir = test_dir();
        prepare(dir.path());
        let socket = dir.path().join("worker.sock");
        let child = command(dir.path(), threads, app)
            .arg("--listen-path")
            .arg(&socket)
            .args(extra)
            .spawn()
            .expect("spawn paddock-worker");
        Worker { dir, socket, child }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Connect, retrying while the socket file appears, without any frame exchanged.
    pub fn connect_raw(&self) -> Client {
        let deadline = Instant::now() + STEP;
        let stream = loop {
            match UnixStream::connect(&self.socket) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => panic!("connect: {e}\n{}", self.stderr()),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        stream.set_read_timeout(Some(STEP)).expect("timeout");
        Client::new(stream)
    }

    /// Connect and send our `Hello`. The worker answers its own `Hello` only once the first
    /// request has arrived; [`Client::reply`] takes it from the front of the first reply.
    pub fn connect(&self) -> Client {
        let mut c = self.connect_raw();
        c.send(&[hello()]);
        c
    }

    /// What the router does: a new connection per request, `Hello`, head, body and `End` in
    /// one write.
    pub fn one_shot(&self, head: RequestHead) -> Reply {
        let mut c = self.connect_raw();
        let mut frames = vec![hello()];
        frames.extend(request_frames(head, b""));
        c.send(&frames);
        c.reply()
    }

    /// Wait (bounded) for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            // Short, so that tests can time the exit itself.
            std::thread::sleep(Duration::from_millis(2));
        }
        None
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid")
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Only our own child, by its pid.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub struct Client {
    pub stream: UnixStream,
    buf: Vec<u8>,
    /// The worker's `Hello`, once it came.
    pub hello: Option<Hello>,
}

/// The router's `Hello`.
pub fn hello() -> Frame {
    Frame::Hello(Hello { version: VERSION, pid: std::process::id() })
}

/// What the worker answered to one request.
#[derive(Debug, Default)]
pub struct Reply {
    pub head: Option<ResponseHead>,
    pub body: Vec<u8>,
    pub abort: Option<Abort>,
    pub largest_frame: usize,
    pub ended: bool,
}

impl Reply {
    pub fn status(&self) -> u16 {
        self.head.as_ref().map_or(0, |h| h.status)
    }

    pub fn header(&self, name: &str) -> Option<String> {
        let h = self.head.as_ref()?;
        let (_, v) = h.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))?;
        Some(String::from_utf8_lossy(v).into_owned())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn head(method: &str, path: &str, query: &str, body: BodyKind) -> RequestHead {
    let uri = if query.is_empty() { path.to_owned() } else { format!("{path}?{query}") };
    RequestHead {
        method: method.into(),
        script_name: b"/site".to_vec(),
        path_info: path.into(),
        query_string: query.into(),
        request_uri: format!("/site{uri}").into_bytes(),
        protocol: b"HTTP/1.1".to_vec(),
        scheme: b"http".to_vec(),
        server_name: b"example.org".to_vec(),
        server_port: 8080,
        remote_addr: b"192.0.2.7".to_vec(),
        remote_port: 40000,
        body,
        headers: vec![(b"Host".to_vec(), b"example.org:8080".to_vec())],
        environ: vec![],
    }
}

/// A request's frames: head, body in `MAX_CHUNK` pieces, End.
pub fn request_frames(head: RequestHead, body: &[u8]) -> Vec<Frame> {
    let mut frames = vec![Frame::Request(head)];
    frames.extend(body.chunks(MAX_CHUNK).map(|c| Frame::Body(c.to_vec())));
    frames.push(Frame::End);
    frames
}

impl Client {
    pub fn new(stream: UnixStream) -> Client {
        Client { stream, buf: Vec::new(), hello: None }
    }

    pub fn send(&mut self, frames: &[Frame]) {
        let mut out = Vec::new();
        for f in frames {
            encode(f, &mut out);
        }
        self.stream.write_all(&out).expect("send frames");
    }

    /// Next frame, `None` at end of stream (or a read error such as a reset).
    pub fn recv(&mut self) -> Option<Frame> {
        loop {
            if let Some((frame, used)) = decode(&self.buf).expect("valid frame from worker") {
                self.buf.drain(..used);
                return Some(frame);
            }
            let mut chunk = [0; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Read one whole reply (up to End or Abort), after the worker's `Hello` if it is still
    /// due.
    pub fn reply(&mut self) -> Reply {
        let mut r = Reply::default();
        loop {
            match self.recv() {
                Some(Frame::Hello(h)) if self.hello.is_none() => {
                    assert_eq!(h.version, VERSION);
                    self.hello = Some(h);
                }
                Some(Frame::Response(h)) => r.head = Some(h),
                Some(Frame::Body(b)) => {
                    r.largest_frame = r.largest_frame.max(b.len());
                    r.body.extend_from_slice(&b);
                }
                Some(Frame::End) => {
                    r.ended = true;
                    return r;
                }
                Some(Frame::Abort(a)) => {
                    r.abort = Some(a);
                    return r;
                }
                Some(other) => panic!("unexpected frame {other:?}"),
                None => return r,
            }
        }
    }

    /// Send a request (from a helper thread, so a large body cannot deadlock against the
    /// response) and read the reply.
    pub fn request(&mut self, head: RequestHead, body: &[u8]) -> Reply {
        let frames = request_frames(head, body);
        if body.len() <= 16 * 1024 {
            // Fits in the socket buffer: no deadlock possible, no thread needed.
            self.send(&frames);
            return self.reply();
        }
        let mut w = self.stream.try_clone().expect("clone");
        let writer = std::thread::spawn(move || {
            let mut out = Vec::new();
            for f in &frames {
                encode(f, &mut out);
            }
            // The worker may close early (app error); the reply tells what happened.
            let _ = w.write_all(&out);
        });
        let r = self.reply();
        writer.join().expect("writer thread");
        r
    }

    pub fn get(&mut self, path: &str) -> Reply {
        self.request(head("GET", path, "", BodyKind::Empty), b"")
    }
}

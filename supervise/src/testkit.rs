//! Fake workers for unit tests: tokio tasks of the test process that stand in for worker
//! processes through the [`Starter`] seam, so a real [`Pool`] (its slots, admission, idle
//! connections) and a real `Registry` run on them unchanged.
//!
//! A fake writes real frames on a real control pipe ([`Control::pipe`]) and accepts real
//! connections on the pool's listening socket; it is never a process, so no signal ever
//! leaves the test ([`Proc::in_process`]). Its pids start at [`FIRST_PID`], above any pid
//! Linux hands out.
//!
//! Over 500 lines: test support only (never built into the router), the fake worker and its
//! knobs kept together so a test reads as one scenario.

use std::collections::VecDeque;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use paddock_config::tenant::TenantSpec;
use paddock_config::{Config, Overrides, PoolSettings};
use paddock_proto::{encode, Frame, Hello, Ready, RequestHead, ResponseHead, Retire};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::conn::WorkerConn;
use crate::control::Control;
use crate::counters::Counters;
use crate::frames::FrameReader;
use crate::identity::Identity;
use crate::launch::Launch;
use crate::pool::Pool;
use crate::spawn::{InProcessEnd, Proc, Stop};
use crate::spawn::{Starter, Starting};

/// Linux pids stay below 2^22 (`pid_max`'s ceiling): a fake's pid is no process's.
pub const FIRST_PID: u32 = 1 << 23;

/// Bound of every wait in these tests (virtual time: it costs nothing when it passes).
pub const PATIENCE: Duration = Duration::from_secs(600);

/// How a fake starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// `Ready` at once.
    Ready,
    /// `Ready` after this long.
    ReadyAfter(Duration),
    /// Never `Ready` (runs until it is killed).
    NeverReady,
    /// Exits with code 3 (its app could not be loaded) before `Ready`.
    Fails,
    /// Cannot even be started (as when the worker binary is missing).
    SpawnError,
}

/// What one fake does.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub start: Start,
    /// Send `Retire` once it has answered this many requests (`--max-requests`), and with
    /// a `--retire-lead` (the pool's), an early one that many requests before.
    pub retire_after: Option<u64>,
}

impl Plan {
    pub fn start(start: Start) -> Plan {
        Plan { start, retire_after: None }
    }
}

/// How a fake ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Told to finish (SIGTERM's stand-in): said `Goodbye` on its connections and exited 0.
    Terminated,
    /// Killed (SIGKILL's stand-in).
    Killed,
    /// Its `Proc` was dropped (what `kill_on_drop` does to a process).
    Dropped,
    /// Exited by itself with this code.
    Exited(i32),
}

/// What a fake's connections are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnOrder {
    Open,
    Goodbye,
    Close,
}

enum Cmd {
    Retire,
    Exit(i32),
}

/// What happened to one fake.
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub ready_at: Option<Instant>,
    /// When it was told to stop (terminate or kill).
    pub stopped_at: Option<Instant>,
    /// The pool's `ready_pids()` at that moment (see [`Fakes::observe`]).
    pub ready_pids_at_stop: Option<Vec<u32>>,
    pub ending: Option<Ending>,
    /// Requests answered.
    pub requests: u64,
    /// Connections accepted.
    pub accepted: usize,
    /// `Retire` frames sent.
    pub retires: usize,
    /// The `--retire-lead` it was started with.
    pub lead: u64,
    /// `Goodbye` frames sent.
    pub goodbyes: usize,
}

/// The test's handle on one fake worker.
pub struct Fake {
    pub pid: u32,
    pub slot: usize,
    cmds: mpsc::UnboundedSender<Cmd>,
    /// One per accepted connection, in accept order.
    conns: Mutex<Vec<watch::Sender<ConnOrder>>>,
    record: Mutex<Record>,
    ended: watch::Sender<Option<Ending>>,
}

impl Fake {
    pub fn record(&self) -> Record {
        lock(&self.record).clone()
    }

    fn note(&self, f: impl FnOnce(&mut Record)) {
        f(&mut lock(&self.record));
    }

    /// Wait (at most [`PATIENCE`]) until it has ended.
    pub async fn ended(&self) -> Ending {
        let mut rx = self.ended.subscribe();
        let r = tokio::time::timeout(PATIENCE, rx.wait_for(Option::is_some)).await;
        let ending = r.expect("the fake did not end").expect("the fake's record went away");
        (*ending).expect("checked by wait_for")
    }

    /// Send `Retire` on the control pipe now.
    pub fn retire(&self) {
        let _ = self.cmds.send(Cmd::Retire);
    }

    /// Exit by itself with `code` (a crash).
    pub fn exit(&self, code: i32) {
        let _ = self.cmds.send(Cmd::Exit(code));
    }

    /// Its `n`-th accepted connection (0 first) says `Goodbye` and closes.
    pub fn goodbye(&self, n: usize) {
        self.order(n, ConnOrder::Goodbye);
    }

    /// Its `n`-th accepted connection closes without a word (as when the process died).
    pub fn close(&self, n: usize) {
        self.order(n, ConnOrder::Close);
    }

    fn order(&self, n: usize, o: ConnOrder) {
        let conns = lock(&self.conns);
        conns.get(n).expect("no such connection").send_replace(o);
    }

    fn order_all(&self, o: ConnOrder) {
        for c in lock(&self.conns).iter() {
            c.send_replace(o);
        }
    }
}

struct FakesState {
    plans: VecDeque<Plan>,
    default: Plan,
    workers: Vec<Arc<Fake>>,
    next_pid: u32,
    spawn_errors: usize,
}

/// A [`Starter`] of fakes: each start takes the next queued [`Plan`] (then the default one).
pub struct Fakes {
    state: Mutex<FakesState>,
    /// The pool whose `ready_pids()` a fake records when it is told to stop.
    observed: Arc<Mutex<Weak<Pool>>>,
}

impl Fakes {
    pub fn new(default: Plan) -> Arc<Fakes> {
        Arc::new(Fakes {
            state: Mutex::new(FakesState {
                plans: VecDeque::new(),
                default,
                workers: Vec::new(),
                next_pid: FIRST_PID,
                spawn_errors: 0,
            }),
            observed: Arc::new(Mutex::new(Weak::new())),
        })
    }

    /// Fakes that are ready at once.
    pub fn ready() -> Arc<Fakes> {
        Fakes::new(Plan::start(Start::Ready))
    }

    /// The next start follows `plan` (queued plans go first, in order).
    pub fn then(&self, plan: Plan) {
        lock(&self.state).plans.push_back(plan);
    }

    /// Starts after the queued plans follow `plan`.
    pub fn set_default(&self, plan: Plan) {
        lock(&self.state).default = plan;
    }

    /// Every fake started so far, in start order.
    pub fn workers(&self) -> Vec<Arc<Fake>> {
        lock(&self.state).workers.clone()
    }

    pub fn worker(&self, pid: u32) -> Arc<Fake> {
        self.workers().into_iter().find(|w| w.pid == pid).expect("no fake with this pid")
    }

    /// Starts that failed with [`Start::SpawnError`].
    pub fn spawn_errors(&self) -> usize {
        lock(&self.state).spawn_errors
    }

    /// Let the fakes record `pool.ready_pids()` when they are told to stop.
    pub fn observe(&self, pool: &Arc<Pool>) {
        *lock(&self.observed) = Arc::downgrade(pool);
    }

    fn start_fake(&self, launch: &Launch<'_>, slot: usize) -> std::io::Result<(Proc, Control)> {
        let mut st = lock(&self.state);
        let plan = st.plans.pop_front().unwrap_or(st.default);
        if plan.start == Start::SpawnError {
            st.spawn_errors += 1;
            return Err(std::io::Error::other("a fake that cannot start"));
        }
        let pid = st.next_pid;
        st.next_pid += 1;
        let (proc, end) = Proc::in_process(pid);
        let (control, ctl) = Control::pipe()?;
        let listener = launch.listener.try_clone()?;
        listener.set_nonblocking(true)?;
        let listener = UnixListener::from_std(listener)?;
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let fake = Arc::new(Fake {
            pid,
            slot,
            cmds: cmd_tx,
            conns: Mutex::new(Vec::new()),
            record: Mutex::new(Record { lead: launch.retire_lead, ..Record::default() }),
            ended: watch::channel(None).0,
        });
        st.workers.push(fake.clone());
        let life = Life { fake, plan, ctl, end, listener, cmds: cmd_rx };
        tokio::spawn(life.run(self.observed.clone()));
        Ok((proc, control))
    }
}

impl Starter for Fakes {
    fn start<'a>(&'a self, launch: &'a Launch<'a>, slot: usize) -> Starting<'a> {
        Box::pin(async move { self.start_fake(launch, slot) })
    }
}

/// One fake's task and what it owns.
struct Life {
    fake: Arc<Fake>,
    plan: Plan,
    ctl: pipe::Sender,
    end: InProcessEnd,
    listener: UnixListener,
    cmds: mpsc::UnboundedReceiver<Cmd>,
}

impl Life {
    async fn run(mut self, observed: Arc<Mutex<Weak<Pool>>>) {
        let ending = self.live(&observed).await;
        drop(self.ctl);
        drop(self.listener);
        let fake = &self.fake;
        match ending {
            Ending::Terminated => {
                fake.order_all(ConnOrder::Goodbye);
                self.end.exit(ExitStatus::from_raw(0));
            }
            Ending::Killed => {
                fake.order_all(ConnOrder::Close);
                self.end.exit(ExitStatus::from_raw(libc::SIGKILL));
            }
            Ending::Exited(code) => {
                fake.order_all(ConnOrder::Close);
                self.end.exit(ExitStatus::from_raw(code << 8));
            }
            Ending::Dropped => fake.order_all(ConnOrder::Close),
        }
        fake.note(|r| r.ending = Some(ending));
        fake.ended.send_replace(Some(ending));
    }

    async fn live(&mut self, observed: &Mutex<Weak<Pool>>) -> Ending {
        let pid = self.fake.pid;
        let ready_after = match self.plan.start {
            Start::Ready => Some(Duration::ZERO),
            Start::ReadyAfter(d) => Some(d),
            Start::NeverReady => None,
            Start::Fails | Start::SpawnError => return Ending::Exited(3),
        };
        let until_ready = async {
            match ready_after {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = until_ready => {}
            stop = self.end.stops.recv() => return self.stopped(stop, observed),
        }
        if write_frame(&mut self.ctl, &Frame::Ready(Ready { pid })).await.is_err() {
            return Ending::Exited(1);
        }
        self.fake.note(|r| r.ready_at = Some(Instant::now()));
        let (served_tx, mut served_rx) = mpsc::unbounded_channel::<()>();
        loop {
            tokio::select! {
                stop = self.end.stops.recv() => return self.stopped(stop, observed),
                accepted = self.listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let (tx, rx) = watch::channel(ConnOrder::Open);
                    lock(&self.fake.conns).push(tx);
                    self.fake.note(|r| r.accepted += 1);
                    tokio::spawn(serve_conn(self.fake.clone(), stream, served_tx.clone(), rx));
                }
                Some(()) = served_rx.recv() => {
                    let mut requests = 0;
                    self.fake.note(|r| {
                        r.requests += 1;
                        requests = r.requests;
                    });
                    let lead = self.fake.record().lead;
                    let early = self.plan.retire_after.filter(|_| lead > 0).map(|max| max.saturating_sub(lead).max(1));
                    let due = self.plan.retire_after == Some(requests) || early == Some(requests);
                    if due && self.send_retire(requests).await.is_err() {
                        return Ending::Exited(1);
                    }
                }
                cmd = self.cmds.recv() => match cmd {
                    Some(Cmd::Retire) => {
                        let requests = self.fake.record().requests;
                        if self.send_retire(requests).await.is_err() {
                            return Ending::Exited(1);
                        }
                    }
                    Some(Cmd::Exit(code)) => return Ending::Exited(code),
                    // The handle lives in this task too: never.
                    None => return Ending::Dropped,
                },
            }
        }
    }

    async fn send_retire(&mut self, requests: u64) -> std::io::Result<()> {
        let pid = self.fake.pid;
        write_frame(&mut self.ctl, &Frame::Retire(Retire { pid, requests })).await?;
        self.fake.note(|r| r.retires += 1);
        Ok(())
    }

    fn stopped(&self, stop: Option<Stop>, observed: &Mutex<Weak<Pool>>) -> Ending {
        let ready = lock(observed).upgrade().map(|p| p.ready_pids());
        self.fake.note(|r| {
            r.stopped_at = Some(Instant::now());
            r.ready_pids_at_stop = ready;
        });
        match stop {
            Some(Stop::Terminate) => Ending::Terminated,
            Some(Stop::Kill) => Ending::Killed,
            None => Ending::Dropped,
        }
    }
}

/// One connection of a fake: `Hello`, then a `Response` and `End` for each request's `End`,
/// until it is told otherwise or the router closes it.
async fn serve_conn(
    fake: Arc<Fake>,
    stream: UnixStream,
    served: mpsc::UnboundedSender<()>,
    mut order: watch::Receiver<ConnOrder>,
) {
    let (rd, mut wr) = stream.into_split();
    let hello = Hello { version: paddock_proto::VERSION, pid: fake.pid };
    if write_frame(&mut wr, &Frame::Hello(hello)).await.is_err() {
        return;
    }
    let mut reader = FrameReader::new(rd);
    loop {
        let now = *order.borrow_and_update();
        match now {
            ConnOrder::Open => {}
            ConnOrder::Goodbye => {
                if write_frame(&mut wr, &Frame::Goodbye).await.is_ok() {
                    fake.note(|r| r.goodbyes += 1);
                }
                return;
            }
            ConnOrder::Close => return,
        }
        tokio::select! {
            frame = reader.next() => match frame {
                Ok(Some(Frame::End)) => {
                    let head = ResponseHead { status: 200, reason: b"OK".to_vec(), headers: Default::default() };
                    let mut out = Vec::new();
                    encode(&Frame::Response(head), &mut out);
                    encode(&Frame::End, &mut out);
                    if wr.write_all(&out).await.is_err() {
                        return;
                    }
                    let _ = served.send(());
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return,
            },
            changed = order.changed() => if changed.is_err() {
                return;
            },
        }
    }
}

async fn write_frame(w: &mut (impl AsyncWrite + Unpin), f: &Frame) -> std::io::Result<()> {
    let mut out = Vec::new();
    encode(f, &mut out);
    w.write_all(&out).await
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The built-in pool settings, with these processes and threads.
pub fn settings(processes: usize, threads: usize) -> PoolSettings {
    // Something to serve, or there is no configuration; the settings are the built-in ones.
    let ov = Overrides { sites: Some(std::env::temp_dir()), ..Overrides::default() };
    let cfg = Config::from_overrides(&ov).expect("the built-in configuration");
    let mut s = cfg.defaults;
    s.process.processes = processes;
    s.process.threads = threads;
    s.process.min_processes = 0;
    s
}

/// A tenant living in `dir`.
pub fn spec(name: &str, dir: &Path, settings: PoolSettings) -> TenantSpec {
    TenantSpec {
        name: name.to_string(),
        dir: dir.to_path_buf(),
        mount: format!("/{name}"),
        settings,
    }
}

/// The identity of the user running the tests (no credentials to switch to).
pub fn identity() -> Identity {
    let me = nix::unistd::Uid::effective();
    let user = nix::unistd::User::from_uid(me).ok().flatten();
    Identity { creds: None, user_name: user.map(|u| u.name).unwrap_or_else(|| me.to_string()) }
}

/// A pool of `spec` on `fakes`, its socket in `dir`.
pub fn pool(spec: TenantSpec, dir: &Path, fakes: &Arc<Fakes>) -> Arc<Pool> {
    let bin = "/nonexistent/paddock-worker".into();
    let counters = Arc::new(Counters::default());
    let starts = Arc::new(tokio::sync::Semaphore::new(tokio::sync::Semaphore::MAX_PERMITS));
    let pool = Pool::start_with(spec, identity(), dir, bin, counters, fakes.clone(), starts)
        .expect("the pool's socket");
    fakes.observe(&pool);
    pool
}

/// Run `f` for at most [`PATIENCE`].
pub async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(PATIENCE, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: not within {PATIENCE:?}"),
    }
}

/// Wait until `pool`'s status satisfies `f`.
pub async fn until_status(pool: &Pool, f: impl FnMut(&crate::pool::Status) -> bool) {
    let mut rx = pool.subscribe();
    within("the pool's status", rx.wait_for(f)).await.expect("the pool's status channel");
}

/// Wait until `f` holds, checking each virtual millisecond (at most [`PATIENCE`]).
pub async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A new connection to one of `pool`'s workers, as the router makes one: counted, then
/// connected, and named by the worker's `Hello`.
pub async fn connect(pool: &Pool) -> WorkerConn {
    let slot = pool.reserve_conn();
    let stream = within("connect", UnixStream::connect(&pool.socket_path)).await.expect("connect");
    let mut reader = FrameReader::new(stream);
    let pid = match within("the worker's Hello", reader.next()).await {
        Ok(Some(Frame::Hello(h))) => h.pid,
        other => panic!("expected a Hello, got {other:?}"),
    };
    WorkerConn { reader, pid, slot }
}

/// One request on `conn`, answered.
pub async fn request(conn: &mut WorkerConn) {
    let mut out = Vec::new();
    encode(&Frame::Request(RequestHead::default()), &mut out);
    encode(&Frame::End, &mut out);
    within("writing a request", conn.reader.get_mut().write_all(&out)).await.expect("write");
    match within("the response", conn.reader.next()).await {
        Ok(Some(Frame::Response(h))) => assert_eq!(h.status, 200),
        other => panic!("expected a Response, got {other:?}"),
    }
    assert!(matches!(within("the response's end", conn.reader.next()).await, Ok(Some(Frame::End))));
}

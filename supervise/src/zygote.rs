//! Zygotes: one template process per Python configuration (worker binary, virtualenv, python
//! path, `LANG`, preload list) that has initialised Python and imported the preload modules,
//! and forks tenant workers on request (`paddock-worker zygote`, `docs/zygote.md`).
//!
//! A zygote is started on the first spawn that needs it and replaced when it dies. It runs
//! with the router's credentials (root, as a rule) and imports code, so it is used only when
//! every directory Python imports from is writable by root (or the router's user) alone;
//! otherwise, and whenever the zygote fails, the worker is started directly. Its children are
//! watched through pidfds (they are not the router's children) and their exit status comes
//! from the zygote, which reaps them.
//!
//! Over 500 lines: the zygote's start, its socket protocol, the forked workers' handles and
//! the per-configuration map form one state machine; about 80 lines are its unit tests.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::socket::{
    recv, sendmsg, socketpair, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType,
};
use paddock_proto::zygote::{self as msg, ZygoteMsg};
use paddock_proto::{FRAME_HEADER_LEN, MAX_PAYLOAD};
use tokio::io::unix::AsyncFd;
use tokio::process::Command;
use tokio::sync::{oneshot, watch};

use crate::launch::Launch;
use crate::logrelay::Source;
use paddock_config::tenant::TenantSpec;
use paddock_sys::{self as sys, ChildSetup};

/// What Trac's default app preloads: its request dispatcher and the modules of Trac 1.6's
/// built-in components (its `trac.plugins` entry points without the optional MySQL and Textile
/// ones: what `trac.loader` imports for every environment).
pub const TRAC_PRELOAD: &[&str] = &[
    "trac.web.main",
    "trac.about",
    "trac.admin.console",
    "trac.admin.web_ui",
    "trac.attachment",
    "trac.db.postgres_backend",
    "trac.db.sqlite_backend",
    "trac.mimeview.patch",
    "trac.mimeview.pygments",
    "trac.mimeview.rst",
    "trac.notification.api",
    "trac.notification.mail",
    "trac.notification.prefs",
    "trac.prefs.web_ui",
    "trac.search.web_ui",
    "trac.ticket.admin",
    "trac.ticket.batch",
    "trac.ticket.notification",
    "trac.ticket.query",
    "trac.ticket.report",
    "trac.ticket.roadmap",
    "trac.ticket.web_ui",
    "trac.timeline.web_ui",
    "trac.versioncontrol.admin",
    "trac.versioncontrol.svn_authz",
    "trac.versioncontrol.web_ui",
    "trac.web.auth",
    "trac.web.session",
    "trac.wiki.admin",
    "trac.wiki.interwiki",
    "trac.wiki.macros",
    "trac.wiki.web_api",
    "trac.wiki.web_ui",
    "tracopt.perm.authz_policy",
    "tracopt.perm.config_perm_provider",
    "tracopt.ticket.clone",
    "tracopt.ticket.commit_updater",
    "tracopt.ticket.deleter",
];

/// After a zygote could not start, or died before it was warm, its key is not tried again
/// for this long.
const RETRY_AFTER: Duration = Duration::from_secs(30);
/// A zygote that lived this long before it died is replaced at once; quicker deaths in a row
/// delay the next one more and more ([`zygote_backoff`]).
const HEALTHY_AFTER: Duration = Duration::from_secs(60);
/// The longest delay before a new zygote.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long a new zygote may take to preload before it counts as failed to warm.
const WARM_TIMEOUT: Duration = Duration::from_secs(300);

/// One distinct Python configuration.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub worker_bin: PathBuf,
    pub virtualenv: Option<String>,
    pub python_path: Vec<String>,
    pub lang: String,
    pub preload: Vec<String>,
}

/// The zygote key of `pool`, or `None` when the pool has no preload list.
pub fn key(pool: &Launch<'_>) -> Option<Key> {
    key_of(pool.spec, pool.worker_bin)
}

/// The zygote key of tenant `spec`'s workers started from `worker_bin`.
pub fn key_of(spec: &TenantSpec, worker_bin: &Path) -> Option<Key> {
    let s = &spec.settings;
    let preload = preload_list(&s.process.app, s.process.preload.as_deref());
    (!preload.is_empty()).then(|| Key {
        worker_bin: worker_bin.to_path_buf(),
        virtualenv: s.process.virtualenv.clone(),
        python_path: s.process.python_path.clone(),
        lang: s.process.lang.clone(),
        preload,
    })
}

/// The configured list, or by default [`TRAC_PRELOAD`] for a Trac app and nothing otherwise.
pub fn preload_list(app: &str, configured: Option<&[String]>) -> Vec<String> {
    match configured {
        Some(list) => list.to_vec(),
        None if app.starts_with("trac.") && !app.contains('/') => {
            TRAC_PRELOAD.iter().map(|m| m.to_string()).collect()
        }
        None => Vec::new(),
    }
}

/// What is known of one key's zygotes.
struct Entry {
    running: Option<Arc<Zygote>>,
    /// No zygote of this key is started before this (after failures and quick deaths).
    retry_at: Option<Instant>,
    /// A zygote of this key died after it had served: slots start workers directly until a
    /// new one is warm, then rejoin it.
    lost: bool,
    /// Zygotes of this key in a row that died younger than [`HEALTHY_AFTER`].
    deaths: u32,
    /// Counts the zygotes of this key that became warm; direct workers wait for a change.
    warm: watch::Sender<u64>,
}

impl Default for Entry {
    fn default() -> Self {
        Entry { running: None, retry_at: None, lost: false, deaths: 0, warm: watch::Sender::new(0) }
    }
}

/// How a pool's next worker is started.
pub enum Route {
    /// Forked by this zygote.
    Fork(Arc<Zygote>),
    /// Directly; `rejoin` changes when a zygote of the pool's key is warm again (its zygote
    /// died: the worker is then replaced by a forked one).
    Direct { rejoin: Option<watch::Receiver<u64>> },
}

fn registry() -> &'static Mutex<HashMap<Key, Entry>> {
    static ZYGOTES: std::sync::OnceLock<Mutex<HashMap<Key, Entry>>> = std::sync::OnceLock::new();
    ZYGOTES.get_or_init(Default::default)
}

fn lock() -> std::sync::MutexGuard<'static, HashMap<Key, Entry>> {
    registry().lock().unwrap_or_else(|e| e.into_inner())
}

/// The delay before a zygote replaces one that died, after `deaths` quick deaths in a row:
/// none for the first, then 0.5 s doubling up to [`MAX_BACKOFF`].
fn zygote_backoff(deaths: u32) -> Duration {
    match deaths {
        0 | 1 => Duration::ZERO,
        n => Duration::from_millis(500).saturating_mul(1 << (n - 2).min(16)).min(MAX_BACKOFF),
    }
}

/// How `pool`'s next worker starts: through the zygote of its configuration (started if
/// needed; on a first start the spawn waits for it to preload), or directly when the pool has
/// no preload list, its Python directories are not trusted, its zygote keeps failing, or its
/// zygote died and the new one is not warm yet (then the worker rejoins it once it is).
pub async fn route(pool: &Launch<'_>) -> Route {
    let direct = Route::Direct { rejoin: None };
    let Some(key) = key(pool) else { return direct };
    let mut map = lock();
    let e = map.entry(key.clone()).or_default();
    if let Some(z) = e.running.as_ref().filter(|z| !z.is_dead()) {
        return match z.is_warm() || !e.lost {
            true => Route::Fork(z.clone()),
            false => Route::Direct { rejoin: Some(e.warm.subscribe()) },
        };
    }
    e.running = None;
    if e.retry_at.is_some_and(|t| Instant::now() < t) {
        return Route::Direct { rejoin: e.lost.then(|| e.warm.subscribe()) };
    }
    drop(map);
    if let Err(why) = trusted(&key) {
        tracing::warn!(tenant = %pool.spec.name, "no zygote, starting workers directly: {why}");
        lock().entry(key).or_default().retry_at = Some(Instant::now() + RETRY_AFTER);
        return direct;
    }
    let mut map = lock();
    let e = map.entry(key.clone()).or_default();
    // Another slot may have started it meanwhile.
    if e.running.as_ref().is_none_or(|z| z.is_dead()) {
        match Zygote::start(key) {
            Ok(z) => e.running = Some(z),
            Err(e2) => {
                tracing::warn!(tenant = %pool.spec.name, "cannot start a zygote, starting workers directly: {e2}");
                e.retry_at = Some(Instant::now() + RETRY_AFTER);
                return direct;
            }
        }
    }
    match e.running.clone() {
        Some(z) if z.is_warm() || !e.lost => Route::Fork(z),
        _ => Route::Direct { rejoin: Some(e.warm.subscribe()) },
    }
}

/// Start the zygote of `key` now, in the background, unless one runs or its key is waiting
/// out a failure: at boot and on reload, for every Python configuration the tenants use, so
/// that a tenant's first request waits only for its fork, not for Python and the preload.
/// (One zygote per configuration, never per tenant: it holds nothing of any tenant's.)
pub fn warm(key: Key) {
    {
        let map = lock();
        if let Some(e) = map.get(&key) {
            let running = e.running.as_ref().is_some_and(|z| !z.is_dead());
            if running || e.retry_at.is_some_and(|t| Instant::now() < t) {
                return;
            }
        }
    }
    tracing::info!(preload = key.preload.len(), virtualenv = ?key.virtualenv, "starting a zygote ahead of the first request");
    restart_after(key, Duration::ZERO);
}

/// Start the zygote of `key` after `delay` unless one runs by then: the replacement of one
/// that died after serving (its tenants' workers rejoin it when it is warm), or [`warm`]'s.
fn restart_after(key: Key, delay: Duration) {
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        if let Err(why) = trusted(&key) {
            tracing::warn!("no zygote, starting workers directly: {why}");
            lock().entry(key).or_default().retry_at = Some(Instant::now() + RETRY_AFTER);
            return;
        }
        let mut map = lock();
        let e = map.entry(key.clone()).or_default();
        if e.running.as_ref().is_some_and(|z| !z.is_dead()) {
            return;
        }
        match Zygote::start(key) {
            Ok(z) => e.running = Some(z),
            Err(err) => {
                tracing::warn!("cannot start a new zygote, workers keep starting directly: {err}");
                e.retry_at = Some(Instant::now() + RETRY_AFTER);
            }
        }
    });
}

/// Every directory Python imports from in the zygote must be writable by root or the router's
/// own user alone, and so must every directory above it (a sticky one such as `/tmp` is fine
/// above): otherwise a tenant could plant code that the zygote runs with the router's rights.
pub fn trusted(key: &Key) -> Result<(), String> {
    let mut dirs: Vec<PathBuf> = key.python_path.iter().map(PathBuf::from).collect();
    if let Some(v) = &key.virtualenv {
        let venv = PathBuf::from(v);
        let lib = venv.join("lib");
        let site = std::fs::read_dir(&lib)
            .map(|rd| rd.flatten().map(|e| e.path().join("site-packages")).collect::<Vec<_>>())
            .unwrap_or_default();
        dirs.extend([venv, lib]);
        dirs.extend(site.into_iter().filter(|p| p.is_dir()));
    }
    let me = nix::unistd::geteuid().as_raw();
    for d in &dirs {
        check_dir(d, me, true)?;
    }
    Ok(())
}

fn check_dir(dir: &Path, me: u32, leaf: bool) -> Result<(), String> {
    // Python imports through the path as written: whoever may write a directory on it could
    // re-point a symlink there after this check, so those count as well as the target's.
    check_chain(dir, me, leaf, false)?;
    let real = dir.canonicalize().map_err(|e| format!("{}: {e}", dir.display()))?;
    check_chain(&real, me, leaf, true)
}

/// `dir` and each directory above it: owned by root or `me`, not group/world-writable (a
/// sticky one above is fine). Without `follow`, entries are `lstat`ed and a symlink itself is
/// skipped (its directory, the next one up, is what decides where it points).
fn check_chain(dir: &Path, me: u32, leaf: bool, follow: bool) -> Result<(), String> {
    let mut cur: Option<&Path> = Some(dir);
    let mut first = leaf;
    while let Some(p) = cur.filter(|p| !p.as_os_str().is_empty()) {
        let m = if follow { std::fs::metadata(p) } else { std::fs::symlink_metadata(p) };
        let m = m.map_err(|e| format!("{}: {e}", p.display()))?;
        cur = p.parent();
        if m.file_type().is_symlink() {
            first = false;
            continue;
        }
        if m.uid() != 0 && m.uid() != me {
            return Err(format!(
                "{} (imported from by the zygote) is owned by uid {}, not root",
                p.display(),
                m.uid()
            ));
        }
        let sticky_above = !first && m.mode() & 0o1000 != 0;
        if m.mode() & 0o022 != 0 && !sticky_above {
            return Err(format!(
                "{} (imported from by the zygote) is group- or world-writable (mode {:o})",
                p.display(),
                m.mode() & 0o7777
            ));
        }
        first = false;
    }
    Ok(())
}

/// A running zygote: its socket and the requests waiting for answers.
pub struct Zygote {
    key: Key,
    pid: u32,
    started: Instant,
    sock: AsyncFd<OwnedFd>,
    next_id: AtomicU32,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    dead: bool,
    /// Has answered a request: its preload is done ([`Zygote::probe`]).
    warm: bool,
    pending: HashMap<u32, oneshot::Sender<Result<u32, String>>>,
    exits: HashMap<u32, oneshot::Sender<i32>>,
    /// Exits reported before anybody waited for them.
    early: HashMap<u32, i32>,
}

impl Zygote {
    fn start(key: Key) -> io::Result<Arc<Zygote>> {
        let (ours, theirs) =
            socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)?;
        fcntl(ours.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
        let theirs_high = sys::dup_high(theirs.as_raw_fd())?;
        drop(theirs);
        let mut cmd = Command::new(&key.worker_bin);
        cmd.arg("zygote");
        for p in &key.python_path {
            cmd.arg("--python-path").arg(p);
        }
        if let Some(v) = &key.virtualenv {
            cmd.arg("--virtualenv").arg(v);
        }
        for m in &key.preload {
            cmd.arg("--preload").arg(m);
        }
        cmd.env_clear();
        cmd.env("PATH", "/usr/local/bin:/usr/bin:/bin");
        cmd.env("LANG", &key.lang);
        cmd.env("HOME", "/nonexistent");
        if let Ok(level) = std::env::var("PADDOCK_WORKER_LOG") {
            cmd.env("PADDOCK_LOG", level);
        }
        cmd.current_dir("/");
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        cmd.kill_on_drop(true);
        sys::prepare(
            &mut cmd,
            ChildSetup {
                creds: None,
                umask: 0o022,
                fds: vec![(theirs_high.as_raw_fd(), 3)],
                cgroup_procs: None,
                // Keeps its capabilities: it switches its children's uid (they drop theirs).
                confine: None,
            },
        );
        let mut child = cmd.spawn()?;
        drop(theirs_high);
        let pid = child.id().unwrap_or(0);
        if let Some(err) = child.stderr.take() {
            // Its own bucket: no tenant code runs in a zygote.
            let source = Source { tenant: "(zygote)".to_string(), pid, slot: 0 };
            crate::logrelay::relay(err, source, Default::default());
        }
        tracing::info!(pid, preload = key.preload.len(), "zygote started");
        let z = Arc::new(Zygote {
            key,
            pid,
            started: Instant::now(),
            sock: sys::async_fd(ours)?,
            next_id: AtomicU32::new(1),
            state: Mutex::new(State::default()),
        });
        let reader = z.clone();
        tokio::spawn(async move {
            reader.read_loop().await;
            reader.died();
            let status = child.wait().await;
            tracing::warn!(pid = reader.pid, "zygote ended ({status:?}); its workers finish their requests and are started again");
        });
        let prober = z.clone();
        tokio::spawn(async move { prober.probe().await });
        Ok(z)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_dead(&self) -> bool {
        self.lock().dead
    }

    fn is_warm(&self) -> bool {
        self.lock().warm
    }

    /// Find out when the zygote has preloaded: it reads requests only then, and it answers a
    /// `Spawn` without descriptors (the readiness probe) with `SpawnFailed` without forking. Then the zygote is warm and the direct workers of its key rejoin it.
    async fn probe(self: Arc<Self>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.lock().pending.insert(id, tx);
        let mut out = Vec::new();
        msg::encode(&ZygoteMsg::Spawn { id }, &mut out);
        let answered = match self.send(&out, &[]).await {
            Ok(()) => matches!(tokio::time::timeout(WARM_TIMEOUT, rx).await, Ok(Ok(_))),
            Err(_) => false,
        };
        if !answered {
            self.lock().pending.remove(&id);
            return;
        }
        self.lock().warm = true;
        let ms = self.started.elapsed().as_millis() as u64;
        tracing::info!(pid = self.pid, ms, "zygote warm");
        if let Some(e) = lock().get(&self.key) {
            if e.running.as_ref().is_some_and(|z| Arc::ptr_eq(z, &self)) {
                e.warm.send_modify(|n| *n += 1);
            }
        }
    }

    /// Fork a worker with the descriptors `fds` (listener, control pipe's write end, stderr
    /// pipe's write end, sealed setup memfd: `spawn.rs`), waiting at most `timeout` for the
    /// answer. The message itself carries only a request id (`docs/zygote.md`).
    pub async fn spawn(&self, fds: [RawFd; 4], timeout: Duration) -> io::Result<Forked> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.lock();
            if st.dead {
                return Err(io::Error::other("the zygote is gone"));
            }
            st.pending.insert(id, tx);
        }
        let mut out = Vec::new();
        msg::encode(&ZygoteMsg::Spawn { id }, &mut out);
        if let Err(e) = self.send(&out, &fds).await {
            self.lock().pending.remove(&id);
            return Err(e);
        }
        let pid = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Ok(pid))) => pid,
            Ok(Ok(Err(why))) => return Err(io::Error::other(why)),
            Ok(Err(_)) => return Err(io::Error::other("the zygote died")),
            Err(_) => {
                self.lock().pending.remove(&id);
                return Err(io::Error::other(format!("no answer from the zygote in {timeout:?}")));
            }
        };
        let pidfd = sys::pidfd_open(pid)?;
        let (etx, erx) = oneshot::channel();
        {
            let mut st = self.lock();
            st.warm = true;
            if let Some(status) = st.early.remove(&pid) {
                let _ = etx.send(status);
            } else if !st.dead {
                st.exits.insert(pid, etx);
            }
        }
        tracing::debug!(pid, zygote = self.pid, "worker forked by the zygote");
        Ok(Forked { pid, pidfd: sys::async_fd(pidfd)?, exit: erx, orphaned: false, ended: None })
    }

    async fn send(&self, out: &[u8], fds: &[RawFd]) -> io::Result<()> {
        let iov = [io::IoSlice::new(out)];
        let rights = [ControlMessage::ScmRights(fds)];
        let cmsg: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
        loop {
            let mut guard = self.sock.writable().await?;
            let r = guard.try_io(|s| {
                sendmsg::<()>(s.as_raw_fd(), &iov, cmsg, MsgFlags::MSG_NOSIGNAL, None)
                    .map_err(io::Error::from)
            });
            match r {
                Ok(r) => return r.map(|_| ()),
                Err(_would_block) => continue,
            }
        }
    }

    async fn read_loop(&self) {
        let mut buf = vec![0u8; FRAME_HEADER_LEN + MAX_PAYLOAD];
        loop {
            let Ok(mut guard) = self.sock.readable().await else { return };
            let n = match guard.try_io(|s| {
                recv(s.as_raw_fd(), &mut buf, MsgFlags::empty()).map_err(io::Error::from)
            }) {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(n)) => n,
                Err(_would_block) => continue,
            };
            match msg::decode(&buf[..n]) {
                Ok(Some((m, used))) if used == n => self.dispatch(m),
                other => {
                    tracing::error!(pid = self.pid, "bad message from the zygote: {other:?}");
                    return;
                }
            }
        }
    }

    fn dispatch(&self, m: ZygoteMsg) {
        let mut st = self.lock();
        match m {
            ZygoteMsg::Spawned { id, pid } => match st.pending.remove(&id) {
                Some(tx) => {
                    let _ = tx.send(Ok(pid));
                }
                // Its spawn timed out: nobody supervises this worker, so it must not run.
                None => {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            },
            ZygoteMsg::SpawnFailed { id, message } => {
                if let Some(tx) = st.pending.remove(&id) {
                    let _ = tx.send(Err(String::from_utf8_lossy(&message).into_owned()));
                }
            }
            ZygoteMsg::Exited { pid, status } => match st.exits.remove(&pid) {
                Some(tx) => {
                    let _ = tx.send(status);
                }
                None => {
                    st.early.insert(pid, status);
                }
            },
            ZygoteMsg::Spawn { .. } => tracing::warn!(pid = self.pid, "zygote sent a Spawn"),
        }
    }

    /// The zygote is gone: fail what waits for it, tell its workers' watchers (the workers get
    /// SIGTERM from the kernel, their parent-death signal), forget it. One that was warm is
    /// replaced, at once or, after quick deaths in a row, with a growing delay; one that died
    /// before (a preload that crashes) is not tried again for [`RETRY_AFTER`].
    fn died(self: &Arc<Self>) {
        let warm = {
            let mut st = self.lock();
            st.dead = true;
            st.pending.clear();
            st.exits.clear();
            st.warm
        };
        let mut map = lock();
        let Some(e) = map.get_mut(&self.key) else { return };
        if !e.running.as_ref().is_some_and(|z| Arc::ptr_eq(z, self)) {
            return;
        }
        e.running = None;
        e.deaths = match self.started.elapsed() < HEALTHY_AFTER {
            true => e.deaths.saturating_add(1),
            false => 1,
        };
        let delay = zygote_backoff(e.deaths);
        if !warm {
            e.retry_at = Some(Instant::now() + delay.max(RETRY_AFTER));
            return;
        }
        e.lost = true;
        e.retry_at = Some(Instant::now() + delay);
        tracing::info!(
            pid = self.pid,
            deaths = e.deaths,
            "a new zygote in {delay:?}; meanwhile workers start directly"
        );
        restart_after(self.key.clone(), delay);
    }
}

/// A worker forked by a zygote.
pub struct Forked {
    pid: u32,
    pidfd: AsyncFd<OwnedFd>,
    /// The zygote's `Exited` report; closed without a value if the zygote died.
    exit: oneshot::Receiver<i32>,
    /// The zygote died before reporting the exit: only the pidfd tells it now.
    orphaned: bool,
    ended: Option<Result<i32, String>>,
}

impl Forked {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether it ended after its zygote died (rather than on its own, reported by the
    /// zygote): then it was killed by its parent-death signal, no fault of its tenant's.
    pub fn orphaned(&self) -> bool {
        self.orphaned
    }

    /// Wait for the end of the process. Its status comes from the zygote; if the zygote died,
    /// from the pidfd, without a status. Cancel-safe.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        // Each state change follows its await directly, so a cancelled wait resumes correctly
        // (the oneshot must never be polled again once it has completed).
        if self.ended.is_none() && !self.orphaned {
            match (&mut self.exit).await {
                Ok(status) => self.ended = Some(Ok(status)),
                Err(_) => self.orphaned = true,
            }
        }
        if self.ended.is_none() {
            let _ = self.pidfd.readable().await;
            self.ended = Some(Err("ended after its zygote (status unknown)".to_string()));
        }
        match &self.ended {
            Some(Ok(status)) => Ok(ExitStatus::from_raw(*status)),
            Some(Err(why)) => Err(io::Error::other(why.clone())),
            None => Err(io::Error::other("not ended")),
        }
    }

    /// SIGKILL through the pidfd: never hits a reused pid.
    pub fn start_kill(&mut self) -> io::Result<()> {
        if self.ended.is_some() {
            return Ok(());
        }
        sys::pidfd_signal(self.pidfd.get_ref(), libc::SIGKILL)
    }
}

impl Drop for Forked {
    /// As `kill_on_drop` for direct children: no worker outlives its supervision.
    fn drop(&mut self) {
        let _ = self.start_kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn preload_defaults_to_trac_for_trac_only() {
        let trac = preload_list("trac.web.main:dispatch_request", None);
        assert_eq!(trac.first().map(String::as_str), Some("trac.web.main"));
        assert!(preload_list("testapps:application", None).is_empty());
        assert!(preload_list("/srv/x/trac.wsgi", None).is_empty());
        assert!(preload_list("trac.web.main:dispatch_request", Some(&[])).is_empty());
        let mine = ["testapps".to_string()];
        assert_eq!(preload_list("x:y", Some(&mine)), mine);
    }

    #[test]
    fn keys_differ_by_python_configuration() {
        let k = Key {
            worker_bin: "/usr/bin/paddock-worker".into(),
            virtualenv: Some("/srv/venv".into()),
            python_path: vec![],
            lang: "C.UTF-8".into(),
            preload: vec!["trac.web.main".into()],
        };
        let same = k.clone();
        assert_eq!(k, same);
        let mut set = std::collections::HashSet::new();
        set.insert(k.clone());
        for other in [
            Key { lang: "de_DE.UTF-8".into(), ..k.clone() },
            Key { virtualenv: None, ..k.clone() },
            Key { python_path: vec!["/srv/lib".into()], ..k.clone() },
            Key { preload: vec![], ..k.clone() },
        ] {
            assert!(set.insert(other), "distinct configurations share a key");
        }
    }

    #[test]
    fn writable_directories_are_not_trusted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lib = dir.path().join("lib");
        std::fs::create_dir(&lib).expect("mkdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let key = |p: &Path| Key {
            worker_bin: "w".into(),
            virtualenv: None,
            python_path: vec![p.display().to_string()],
            lang: "C".into(),
            preload: vec!["m".into()],
        };
        // Owned by us, 0755, under the sticky /tmp: trusted.
        assert_eq!(trusted(&key(&lib)), Ok(()));
        std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        assert!(trusted(&key(&lib)).is_err_and(|e| e.contains("writable")));
        std::fs::set_permissions(&lib, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o775))
            .expect("chmod");
        assert!(trusted(&key(&lib)).is_err(), "a writable parent could swap the directory");
        assert!(trusted(&key(Path::new("/nonexistent/zygote"))).is_err());
        // A trusted target behind a symlink in a writable directory: the link can be
        // re-pointed after the check.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let open = dir.path().join("open");
        std::fs::create_dir(&open).expect("mkdir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        std::os::unix::fs::symlink(&lib, open.join("link")).expect("symlink");
        assert_eq!(trusted(&key(&lib)), Ok(()));
        assert!(trusted(&key(&open.join("link"))).is_err_and(|e| e.contains("open")));
        let safe_link = dir.path().join("link");
        std::os::unix::fs::symlink(&lib, &safe_link).expect("symlink");
        assert_eq!(trusted(&key(&safe_link)), Ok(()), "a link in a trusted directory is fine");
    }
}

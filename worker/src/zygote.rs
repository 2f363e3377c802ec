//! `paddock-worker zygote`: a template process that has initialised Python and imported the
//! preload modules once, and forks workers on the router's request. A forked worker first
//! reads its setup from the sealed memfd that came with the request, becomes the tenant
//! (session, groups, gid, uid, umask, cwd, descriptors, environment), then runs the normal
//! worker path, where only the app itself is still to be looked up.
//!
//! The zygote itself never reads a setup: it serves every tenant of its Python configuration,
//! and what it held would be inherited by every worker it forks afterwards (STYLE.md item 20).
//!
//! The zygote is single-threaded, checked before every fork, and forks through Python's
//! `os.fork()` so CPython's own fork hooks run (import lock, `random` reseeding, threading
//! state). It reaps its children and reports each exit to the router. See `docs/zygote.md`.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, IoSliceMut, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use nix::sys::socket::{recvmsg, send, ControlMessageOwned, MsgFlags};
use paddock_proto::zygote::{self as msg, ZygoteMsg};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyModule};

use crate::{app, log, sys, Exit};

mod setup;
use setup::{parse_setup, read_setup};

/// Command line of `paddock-worker zygote` (started by the router; see `docs/zygote.md`).
#[derive(Debug, Clone, Parser)]
#[command(name = "paddock-worker zygote", version, about)]
pub struct ZygoteConfig {
    /// Directories put first on `sys.path`, in order (as a worker's `--python-path`).
    #[arg(long = "python-path")]
    pub python_path: Vec<PathBuf>,
    /// Virtualenv whose site-packages go before the system's.
    #[arg(long)]
    pub virtualenv: Option<PathBuf>,
    /// Modules imported once in the zygote and shared copy-on-write by every worker.
    #[arg(long)]
    pub preload: Vec<String>,
    /// Inherited `SOCK_SEQPACKET` socket to the router.
    #[arg(long, default_value_t = 3)]
    pub socket_fd: i32,
}

/// Set up Python, preload, then serve spawn requests until the router closes the socket.
pub fn run_zygote(cfg: ZygoteConfig) -> Exit {
    if cfg.socket_fd < 3 {
        tracing::error!("--socket-fd {}: must be 3 or more", cfg.socket_fd);
        return Exit::Usage;
    }
    let fds = sys::adopt_socket(cfg.socket_fd).and_then(|sock| {
        let chld = sys::install_sigchld()?;
        sys::redirect_stdout_to_stderr()?;
        Ok((sock, chld))
    });
    let (sock, chld) = match fds {
        Ok(f) => f,
        Err(e) => {
            tracing::error!("setup failed: {e}");
            return Exit::Os;
        }
    };
    let started = Instant::now();
    if !Python::attach(|py| preload(py, &cfg)) {
        return Exit::AppLoad;
    }
    let ms = started.elapsed().as_millis() as u64;
    tracing::info!(modules = cfg.preload.len(), ms, "zygote ready");
    let warmup = if cfg.preload.iter().any(|m| m == "trac.web.main") {
        Python::attach(Warmup::start)
    } else {
        None
    };
    serve(&sock, &chld, warmup)
}

fn preload(py: Python<'_>, cfg: &ZygoteConfig) -> bool {
    if let Err(e) = app::setup_python(py, &cfg.python_path, cfg.virtualenv.as_deref()) {
        log::python_error(py, &e, "cannot set up Python");
        return false;
    }
    for m in &cfg.preload {
        if let Err(e) = py.import(m.as_str()) {
            // One line, no traceback: Trac's optional database backends fail here whenever
            // their driver is not installed, which is normal; workers import what they need.
            let why: String = e.to_string().chars().take(300).collect();
            tracing::warn!("preloading `{m}` skipped: {why}");
        }
    }
    freeze(py);
    true
}

/// What exists now is shared copy-on-write with every worker: a collection in a worker would
/// write to (and so copy) every page holding these objects' GC headers.
fn freeze(py: Python<'_>) {
    let frozen = py.import("gc").and_then(|gc| {
        gc.call_method0("collect")?;
        gc.call_method0("freeze")
    });
    if let Err(e) = frozen {
        log::python_error(py, &e, "gc.freeze failed");
    }
}

/// Trac's warm-up (`python/warmup_trac.py`): pages served from a throwaway environment and
/// Trac's templates compiled into the cache the workers inherit, so Trac's lazy
/// first-request work is done once here. It runs in steps while no request is waiting, so a
/// spawn never waits for it; before a fork the environment is shut down (`pause`). A failure
/// only costs the workers that work.
struct Warmup {
    state: Py<PyAny>,
    started: Instant,
    /// Time spent in steps (the rest of the wall time went to forks and waiting).
    busy: std::time::Duration,
    forks: u32,
}

impl Warmup {
    fn start(py: Python<'_>) -> Option<Warmup> {
        let make = || -> PyResult<Py<PyAny>> {
            let code = CString::new(include_str!("python/warmup_trac.py"))?;
            let module = PyModule::from_code(py, &code, c"warmup_trac.py", c"_paddock_warmup")?;
            Ok(module.getattr("Warmup")?.call0()?.unbind())
        };
        match make() {
            Ok(state) => {
                Some(Warmup { state, started: Instant::now(), busy: Default::default(), forks: 0 })
            }
            Err(e) => {
                log::python_error(py, &e, "Trac warm-up failed (workers do that work instead)");
                None
            }
        }
    }

    /// One step; `false` once there is none left (or on an error, logged).
    fn step(&mut self) -> bool {
        let t = Instant::now();
        let more = Python::attach(|py| {
            match self.state.bind(py).call_method0("step").and_then(|r| r.extract::<bool>()) {
                Ok(more) => more,
                Err(e) => {
                    log::python_error(py, &e, "Trac warm-up failed (workers do that work instead)");
                    false
                }
            }
        });
        self.busy += t.elapsed();
        more
    }

    /// Before a fork: no worker inherits the warm-up's environment or its database.
    fn pause(&mut self) {
        self.forks += 1;
        Python::attach(|py| {
            if let Err(e) = self.state.bind(py).call_method0("pause") {
                log::python_error(py, &e, "Trac warm-up: cannot shut its environment down");
            }
        });
    }

    fn finish(self) {
        let busy_ms = self.busy.as_millis() as u64;
        let wall_ms = self.started.elapsed().as_millis() as u64;
        Python::attach(|py| {
            match self.state.bind(py).call_method0("finish").and_then(|r| r.extract::<String>()) {
                Ok(summary) => tracing::info!(
                    ms = busy_ms,
                    wall_ms,
                    forks = self.forks,
                    "Trac warm-up: {summary}"
                ),
                Err(e) => log::python_error(py, &e, "Trac warm-up: cannot clean up"),
            }
            freeze(py);
        });
    }
}

fn serve(sock: &OwnedFd, chld: &OwnedFd, mut warmup: Option<Warmup>) -> Exit {
    // A `Spawn` is 9 bytes: a bigger packet is truncated, and so refused.
    let mut buf = [0u8; 64];
    loop {
        // While warming up, look for work without waiting and warm up only when there is none.
        let wait = if warmup.is_some() { 0 } else { -1 };
        let ready = match sys::poll_in(&[sock.as_fd(), chld.as_fd()], wait) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("poll failed: {e}");
                return Exit::Os;
            }
        };
        if !ready.contains(&true) {
            if let Some(w) = warmup.as_mut() {
                if !w.step() {
                    if let Some(w) = warmup.take() {
                        w.finish();
                    }
                }
            }
            continue;
        }
        if ready.get(1) == Some(&true) {
            sys::drain_pipe(chld.as_fd());
            while let Some((pid, status)) = sys::reap_child() {
                reply(sock, &ZygoteMsg::Exited { pid, status });
            }
        }
        if ready.first() == Some(&true) {
            let got = receive(sock, &mut buf);
            // Nothing tenant-specific should ever arrive; if it did, it must not stay.
            buf.fill(0);
            match got {
                Ok(None) => {
                    tracing::info!("the router closed the zygote socket; exiting");
                    return Exit::Ok;
                }
                Ok(Some((ZygoteMsg::Spawn { id }, fds))) if fds.is_empty() => {
                    // The router's readiness probe (a `Spawn` with no descriptors): it is
                    // answered only once the preload is done, and never forks.
                    tracing::debug!("readiness probe {id} answered");
                    let message = b"no descriptors: a readiness probe".to_vec();
                    reply(sock, &ZygoteMsg::SpawnFailed { id, message });
                }
                Ok(Some((ZygoteMsg::Spawn { id }, fds))) => {
                    if let Some(w) = warmup.as_mut() {
                        w.pause();
                    }
                    let answer = match spawn(fds) {
                        Ok(pid) => ZygoteMsg::Spawned { id, pid },
                        Err(why) => {
                            tracing::warn!("spawn request {id} refused: {why}");
                            ZygoteMsg::SpawnFailed { id, message: why.into_bytes() }
                        }
                    };
                    reply(sock, &answer);
                }
                Ok(Some((other, _))) => {
                    tracing::warn!("unexpected {:?} message from the router", other.msg_type())
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => tracing::warn!("bad message from the router: {e}"),
            }
        }
    }
}

/// One packet: `Ok(None)` at end of stream.
fn receive(sock: &OwnedFd, buf: &mut [u8]) -> io::Result<Option<(ZygoteMsg, Vec<OwnedFd>)>> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let flags = MsgFlags::MSG_CMSG_CLOEXEC;
    let m = recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut space), flags)?;
    let mut fds = Vec::new();
    for c in m.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            fds.extend(sys::own_received(&raw));
        }
    }
    let (n, truncated) = (m.bytes, m.flags.intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC));
    if n == 0 && fds.is_empty() {
        return Ok(None);
    }
    if truncated {
        return Err(io::Error::other("message or descriptors truncated"));
    }
    match msg::decode(&buf[..n]) {
        Ok(Some((m, used))) if used == n => Ok(Some((m, fds))),
        Ok(_) => Err(io::Error::other("incomplete message")),
        Err(e) => Err(io::Error::other(e)),
    }
}

fn reply(sock: &OwnedFd, m: &ZygoteMsg) {
    let mut out = Vec::with_capacity(64);
    msg::encode(m, &mut out);
    if let Err(e) = send(sock.as_raw_fd(), &out, MsgFlags::MSG_NOSIGNAL) {
        tracing::warn!("cannot answer the router: {e}");
    }
}

/// The descriptors of one `Spawn`, in the order the router sends them.
struct Passed {
    listener: OwnedFd,
    control: OwnedFd,
    stderr: OwnedFd,
    /// Sealed memfd with the tenant's `WorkerSetup`; read by the child only ([`read_setup`]).
    setup: OwnedFd,
}

/// Fork a worker; returns its pid. Nothing is started on an error.
fn spawn(fds: Vec<OwnedFd>) -> Result<u32, String> {
    let [listener, control, stderr, setup]: [OwnedFd; 4] =
        fds.try_into().map_err(|v: Vec<_>| format!("expected 4 descriptors, got {}", v.len()))?;
    let passed = Passed { listener, control, stderr, setup };
    let parent = std::process::id() as libc::pid_t;
    // Read before the fork (the same for every tenant): the child drops capabilities up to it.
    let cap_last = sys::cap_last_cap();
    Python::attach(|py| {
        let py_threads = py
            .import("threading")
            .and_then(|t| t.call_method0("active_count")?.extract::<usize>())
            .map_err(|e| e.to_string())?;
        let threads = sys::thread_count().map_err(|e| e.to_string())?;
        if threads != 1 || py_threads != 1 {
            return Err(format!(
                "not single-threaded ({threads} threads, {py_threads} Python threads): refusing to fork"
            ));
        }
        crate::flush_python_stderr(py);
        let pid: i32 = py
            .import("os")
            .and_then(|os| os.call_method0("fork")?.extract())
            .map_err(|e| format!("fork failed: {e}"))?;
        if pid == 0 {
            child(py, passed, parent, cap_last);
        }
        // Our copies close here: the control pipe's EOF must mean the worker is gone.
        drop(passed);
        Ok(pid as u32)
    })
}

/// The forked child: read the setup, become the tenant, then the normal worker path. Never
/// returns.
fn child(py: Python<'_>, p: Passed, parent: libc::pid_t, cap_last: libc::c_ulong) -> ! {
    let Passed { listener, control, stderr, setup } = p;
    let parsed = read_setup(setup).and_then(parse_setup).and_then(|(setup, cfg, cwd)| {
        // The child joins its cgroup leaf itself, before anything of the tenant's runs.
        let procs = match &cfg.limits.cgroup_procs {
            Some(p) => Some(
                CString::new(std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()))
                    .map_err(|_| "--cgroup-procs contains NUL".to_string())?,
            ),
            None => None,
        };
        Ok((setup, cfg, cwd, procs))
    });
    let (setup, cfg, cwd, cgroup_procs) = match parsed {
        Ok(s) => s,
        Err(why) => {
            // On the worker's own stderr pipe (fd 2 is still the zygote's): the router logs it
            // with the tenant, then sees the worker end before `Ready`.
            // One line (clap's messages have several), so the router logs it as one.
            let why = why.split('\n').filter(|l| !l.trim().is_empty()).collect::<Vec<_>>();
            let _ =
                writeln!(File::from(stderr), "ERROR cannot start the worker: {}", why.join(" "));
            std::process::exit(Exit::Usage as i32);
        }
    };
    let b = sys::Become {
        creds: setup.creds.as_ref(),
        umask: setup.umask,
        cwd: &cwd,
        listener,
        control,
        stderr,
        parent,
        limits: &cfg.limits,
        cgroup_procs: cgroup_procs.as_deref(),
        cap_last,
    };
    if let Err(e) = sys::become_worker(b) {
        tracing::error!("cannot become the tenant's worker: {e}");
        std::process::exit(Exit::Os as i32);
    }
    if let Err(e) = replace_environ(py, &setup.env) {
        log::python_error(py, &e, "cannot set the worker's environment");
        std::process::exit(Exit::Os as i32);
    }
    let code = py.detach(|| crate::run_forked(cfg));
    std::process::exit(code as i32)
}

/// The zygote's environment is replaced wholesale; `os.environb` also calls unsetenv/putenv, so
/// C code and subprocesses see the same.
fn replace_environ(py: Python<'_>, env: &[(Vec<u8>, Vec<u8>)]) -> PyResult<()> {
    let environb = py.import("os")?.getattr("environb")?;
    environb.call_method0("clear")?;
    for (k, v) in env {
        environb.set_item(PyBytes::new(py, k), PyBytes::new(py, v))?;
    }
    Ok(())
}

//! `paddock-worker zygote`: a template process that has initialised Python and imported the
//! preload modules once, and forks workers on the router's request. A forked worker first
//! becomes the tenant (session, groups, gid, uid, umask, cwd, descriptors, environment), then
//! runs the normal worker path, where only the app itself is still to be looked up.
//!
//! The zygote is single-threaded, checked before every fork, and forks through Python's
//! `os.fork()` so CPython's own fork hooks run (import lock, `random` reseeding, threading
//! state). It reaps its children and reports each exit to the router. See `docs/zygote.md`.

use std::ffi::{CString, OsStr, OsString};
use std::io::{self, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use nix::sys::socket::{recvmsg, send, ControlMessageOwned, MsgFlags};
use paddock_proto::zygote::{self as msg, SpawnRequest, ZygoteMsg};
use paddock_proto::{FRAME_HEADER_LEN, MAX_PAYLOAD};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyModule};

use crate::{app, log, sys, Config, Exit};

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
    serve(&sock, &chld)
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
    if cfg.preload.iter().any(|m| m == "trac.web.main") {
        warm_up_trac(py);
    }
    // What exists now is shared copy-on-write with every worker: a collection in a worker
    // would write to (and so copy) every page holding these objects' GC headers.
    let frozen = py.import("gc").and_then(|gc| {
        gc.call_method0("collect")?;
        gc.call_method0("freeze")
    });
    if let Err(e) = frozen {
        log::python_error(py, &e, "gc.freeze failed");
    }
    true
}

/// Serve pages from a throwaway Trac environment (`python/warmup_trac.py`), so Trac's lazy
/// first-request work is done once here. A failure only costs the workers that work.
fn warm_up_trac(py: Python<'_>) {
    let started = Instant::now();
    let run = || -> PyResult<String> {
        let code = CString::new(include_str!("python/warmup_trac.py"))?;
        let module = PyModule::from_code(py, &code, c"warmup_trac.py", c"_paddock_warmup")?;
        module.getattr("warm")?.call0()?.extract()
    };
    match run() {
        Ok(status) => {
            let ms = started.elapsed().as_millis() as u64;
            tracing::info!(ms, "Trac warm-up: {status}")
        }
        Err(e) => log::python_error(py, &e, "Trac warm-up failed (workers do that work instead)"),
    }
}

fn serve(sock: &OwnedFd, chld: &OwnedFd) -> Exit {
    let mut buf = vec![0u8; FRAME_HEADER_LEN + MAX_PAYLOAD];
    loop {
        let ready = match sys::poll_in(&[sock.as_fd(), chld.as_fd()], -1) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("poll failed: {e}");
                return Exit::Os;
            }
        };
        if ready.get(1) == Some(&true) {
            sys::drain_pipe(chld.as_fd());
            while let Some((pid, status)) = sys::reap_child() {
                reply(sock, &ZygoteMsg::Exited { pid, status });
            }
        }
        if ready.first() == Some(&true) {
            match receive(sock, &mut buf) {
                Ok(None) => {
                    tracing::info!("the router closed the zygote socket; exiting");
                    return Exit::Ok;
                }
                Ok(Some((ZygoteMsg::Spawn(req), fds))) => {
                    let id = req.id;
                    let answer = match spawn(req, fds) {
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
    let mut space = nix::cmsg_space!([RawFd; 3]);
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

/// Fork a worker for `req`; returns its pid. Nothing is started on an error.
fn spawn(req: SpawnRequest, fds: Vec<OwnedFd>) -> Result<u32, String> {
    let [listener, control, stderr]: [OwnedFd; 3] =
        fds.try_into().map_err(|v: Vec<_>| format!("expected 3 descriptors, got {}", v.len()))?;
    let cwd = CString::new(req.cwd.clone()).map_err(|_| "working directory contains NUL")?;
    // Parsed here, by the normal worker's parser, so a bad request fails without a child.
    let argv = std::iter::once(OsString::from("paddock-worker"))
        .chain(req.args.iter().map(|a| OsStr::from_bytes(a).to_owned()));
    let cfg = Config::try_parse_from(argv).map_err(|e| e.to_string())?;
    cfg.validate()?;
    let parent = std::process::id() as libc::pid_t;
    // Read before the fork; a child needs nothing from the file system for its limits.
    let cap_last = sys::cap_last_cap();
    let cgroup_procs = match &cfg.limits.cgroup_procs {
        Some(p) => Some(CString::new(p.as_os_str().as_bytes()).map_err(|_| "NUL in path")?),
        None => None,
    };
    let limits = cfg.limits.clone();
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
            let b = sys::Become {
                creds: req.creds.as_ref(),
                umask: req.umask,
                cwd: &cwd,
                listener,
                control,
                stderr,
                parent,
                limits: &limits,
                cgroup_procs: cgroup_procs.as_deref(),
                cap_last,
            };
            child(py, cfg, b, &req.env);
        }
        // Our copies close here: the control pipe's EOF must mean the worker is gone.
        drop((listener, control, stderr));
        Ok(pid as u32)
    })
}

/// The forked child: become the tenant, then the normal worker path. Never returns.
fn child(py: Python<'_>, cfg: Config, b: sys::Become<'_>, env: &[(Vec<u8>, Vec<u8>)]) -> ! {
    if let Err(e) = sys::become_worker(b) {
        tracing::error!("cannot become the tenant's worker: {e}");
        std::process::exit(Exit::Os as i32);
    }
    log::set_tenant(&cfg.tenant);
    if let Err(e) = replace_environ(py, env) {
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

//! Paddock's worker process: embeds CPython, loads one tenant's WSGI application and serves it
//! to the router over the framed protocol of `paddock-proto`.
//!
//! The router starts the process already as the tenant's user, with a listening Unix socket on
//! fd 3. The worker imports the app, reports `Ready` on its control pipe, and then runs
//! `--threads` threads that each accept a router connection and serve its requests (PEP 3333)
//! one after the other. After `--max-requests` it asks for a replacement with `Retire` and
//! goes on serving. SIGTERM stops accepting and exits once the requests of the connections
//! already accepted are done. SIGUSR2 dumps every thread's Python stack to stderr.
//! See `docs/worker.md`.

use std::convert::Infallible;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use clap::Parser;
use pyo3::prelude::*;

mod app;
mod conn;
mod control;
mod environ;
mod input;
mod log;
mod response;
mod serve;
mod sys;
mod zygote;

pub use app::Entry;
pub use log::init as init_logging;
pub use zygote::{run_zygote, ZygoteConfig};

/// Internals for the Criterion benches in `benches/`; not part of the crate's API.
#[doc(hidden)]
pub mod bench {
    pub use crate::environ::{build as build_environ, Statics};
}

/// Stack size of worker threads: Python code recurses deeply (Trac's templates) and the
/// default 2 MiB of Rust threads is less than what CPython gets on a main thread.
const THREAD_STACK: usize = 8 << 20;

/// Command line of `paddock-worker` (the router builds it; see `docs/worker.md`).
#[derive(Debug, Clone, Parser)]
#[command(name = "paddock-worker", version, about)]
pub struct Config {
    /// Tenant name, for logs.
    #[arg(long)]
    pub tenant: String,
    /// WSGI entry: `package.module:callable`, or a script file defining `application`.
    #[arg(long)]
    pub app: String,
    /// Threads serving requests in this process.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: u16,
    /// Processes in the tenant's pool (only sets `wsgi.multiprocess`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub processes: u16,
    /// Directories put first on `sys.path`, in order.
    #[arg(long = "python-path")]
    pub python_path: Vec<PathBuf>,
    /// Virtualenv whose site-packages go before the system's.
    #[arg(long)]
    pub virtualenv: Option<PathBuf>,
    /// Inherited listening Unix socket.
    #[arg(long, default_value_t = 3, conflicts_with = "listen_path")]
    pub listen_fd: i32,
    /// Bind and listen on this path instead (development and tests).
    #[arg(long)]
    pub listen_path: Option<PathBuf>,
    /// Inherited pipe to the router: one `Ready` frame once the app is loaded, one `Retire`
    /// after `--max-requests`.
    #[arg(long)]
    pub control_fd: Option<i32>,
    /// Completed requests after which to ask the router for a replacement (once, on the
    /// control pipe; the worker keeps serving until SIGTERM). 0: never.
    #[arg(long, default_value_t = 0)]
    pub max_requests: u64,
    /// With `--max-requests`: send a first `Retire` this many requests before it, so the
    /// router can start the successor ahead of time. 0: only the one at `--max-requests`.
    #[arg(long, default_value_t = 0)]
    pub retire_lead: u64,
    /// Seconds to wait for the router's bytes inside a request before failing it.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub read_timeout: u64,
    /// `gc.freeze()` once the app is loaded, and again after the first request that ends with
    /// no other in flight (or the 20th, whichever comes first): what the app keeps for good
    /// leaves the cyclic collector's reach.
    #[arg(long)]
    pub gc_freeze: bool,
    /// Seconds in-flight requests get to finish after SIGTERM.
    #[arg(long, default_value_t = 30)]
    pub drain_timeout: u64,
    /// Load the app, then exit 0 without serving (3 with the traceback if it cannot be
    /// loaded): `paddock check` starts the worker this way, as the tenant's user, to check
    /// exactly what a start runs. No descriptor is taken.
    #[arg(long)]
    pub check: bool,
    /// Limits a worker forked by a zygote sets on itself before its uid change (a worker the
    /// router starts directly gets them from the router, which ignores these flags).
    #[command(flatten)]
    pub limits: Limits,
}

/// Resource limits and the cgroup of a forked worker (`become_worker`); 0: leave as is.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Limits {
    /// `RLIMIT_NOFILE` (soft = hard).
    #[arg(long, default_value_t = 0)]
    pub rlimit_nofile: u64,
    /// `RLIMIT_NPROC` (soft = hard).
    #[arg(long, default_value_t = 0)]
    pub rlimit_nproc: u64,
    /// `RLIMIT_AS` in bytes (soft = hard).
    #[arg(long, default_value_t = 0)]
    pub rlimit_as: u64,
    /// `RLIMIT_CORE` in bytes (soft = hard); absent: leave.
    #[arg(long)]
    pub rlimit_core: Option<u64>,
    /// The `cgroup.procs` of this worker's cgroup, joined before anything else.
    #[arg(long)]
    pub cgroup_procs: Option<PathBuf>,
}

/// Process exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Shut down after SIGTERM/SIGINT.
    Ok = 0,
    /// The application could not be loaded (traceback on stderr).
    AppLoad = 3,
    /// Bad command line.
    Usage = 64,
    /// An OS resource (socket, pipe, thread) could not be set up.
    Os = 71,
}

impl Config {
    /// Checks clap cannot express; returns the parsed entry.
    pub fn validate(&self) -> Result<Entry, String> {
        // 0-2 are stdio, and fd 1 is pointed at stderr at start-up.
        let listen = self.listen_path.is_none().then_some(("--listen-fd", self.listen_fd));
        let control = self.control_fd.map(|fd| ("--control-fd", fd));
        for (flag, fd) in listen.into_iter().chain(control) {
            if fd < 3 {
                return Err(format!("{flag} {fd}: must be 3 or more"));
            }
        }
        if self.control_fd.is_some() && listen.map(|(_, fd)| fd) == self.control_fd {
            return Err("--listen-fd and --control-fd must differ".to_owned());
        }
        Entry::parse(&self.app)
    }
}

/// Set up, load the app, serve until SIGTERM. Logging must be initialised by the caller.
pub fn run(cfg: Config) -> Exit {
    run_with(cfg, true)
}

/// The same in a worker forked by a zygote: Python is initialised and set up already (same
/// virtualenv and python path), the preloaded modules imported; only the app is looked up.
pub(crate) fn run_forked(cfg: Config) -> Exit {
    run_with(cfg, false)
}

fn run_with(cfg: Config, setup_python: bool) -> Exit {
    let entry = match cfg.validate() {
        Ok(e) => e,
        Err(msg) => {
            tracing::error!("{msg}");
            return Exit::Usage;
        }
    };
    if cfg.check {
        return check_app(&cfg, &entry, setup_python);
    }
    // File descriptors first: nothing else in the process may have taken fd 3 or 4 yet.
    let (listener, control, wake) = match take_fds(&cfg) {
        Ok(fds) => fds,
        Err(e) => {
            tracing::error!("setup failed: {e}");
            return Exit::Os;
        }
    };
    let Some((app, statics)) = load_python(&cfg, &entry, setup_python) else {
        return Exit::AppLoad;
    };
    if cfg.gc_freeze {
        Python::attach(app::gc_freeze);
    }
    let read_timeout = Duration::from_secs(cfg.read_timeout);
    let control = control::Control::new(control, cfg.max_requests, cfg.retire_lead);
    let shared = Arc::new(serve::Shared {
        app,
        statics,
        listener,
        wake,
        read_timeout,
        control,
        in_flight: AtomicUsize::new(0),
        freeze_pending: AtomicBool::new(cfg.gc_freeze),
    });
    let (threads, done) = match spawn_threads(&shared, cfg.threads) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("cannot start worker threads: {e}");
            return Exit::Os;
        }
    };
    shared.control.ready();
    tracing::info!(app = %cfg.app, threads = cfg.threads, "ready");
    wait_for_shutdown(&shared);
    drain(&shared, &threads, &done, Duration::from_secs(cfg.drain_timeout));
    Exit::Ok
}

/// `--check`: import the app as a start would, and exit.
fn check_app(cfg: &Config, entry: &Entry, setup_python: bool) -> Exit {
    if let Err(e) = sys::redirect_stdout_to_stderr() {
        tracing::error!("setup failed: {e}");
        return Exit::Os;
    }
    match load_python(cfg, entry, setup_python) {
        Some(_) => {
            tracing::info!(app = %cfg.app, "the application loads");
            Exit::Ok
        }
        None => Exit::AppLoad,
    }
}

/// `major.minor` of the Python this binary embeds (`paddock-worker python-version`), which a
/// virtualenv must match (`lib/pythonX.Y`).
pub fn python_version() -> String {
    Python::attach(|py| {
        let v = py.version_info();
        format!("{}.{}", v.major, v.minor)
    })
}

type Fds = (UnixListener, Option<File>, std::os::fd::OwnedFd);

fn take_fds(cfg: &Config) -> io::Result<Fds> {
    let listener = match &cfg.listen_path {
        Some(path) => {
            // A socket file left by a previous run would make bind fail; never touch other files.
            if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
                std::fs::remove_file(path)?;
            }
            UnixListener::bind(path)?
        }
        None => sys::adopt_listener(cfg.listen_fd)?,
    };
    listener.set_nonblocking(true)?;
    let control = cfg.control_fd.map(sys::adopt_pipe).transpose()?;
    let wake = sys::install_shutdown_signals()?;
    sys::redirect_stdout_to_stderr()?;
    Ok((listener, control, wake))
}

/// Prepare the interpreter (unless a zygote did) and import the app; on failure log the
/// traceback, a line per log event, at ERROR.
fn load_python(cfg: &Config, entry: &Entry, setup: bool) -> Option<(Py<PyAny>, environ::Statics)> {
    Python::attach(|py| {
        let prepared = match setup {
            true => app::setup_python(py, &cfg.python_path, cfg.virtualenv.as_deref()),
            false => Ok(()),
        };
        let loaded = prepared
            .and_then(|()| app::load(py, entry))
            .and_then(|a| Ok((a, app::statics(py, cfg.threads.into(), cfg.processes.into())?)));
        match loaded {
            Ok(v) => Some(v),
            Err(e) => {
                flush_python_stderr(py);
                let what = format!("cannot load the WSGI application `{}`", cfg.app);
                log::python_error(py, &e, &what);
                None
            }
        }
    })
}

pub(crate) fn flush_python_stderr(py: Python<'_>) {
    if let Ok(stderr) = py.import("sys").and_then(|s| s.getattr("stderr")) {
        let _ = stderr.call_method0("flush");
    }
}

/// The threads, and a receiver that disconnects once every one of them has ended (each holds
/// a sender it drops on the way out, panics included).
type Threads = (Vec<JoinHandle<()>>, mpsc::Receiver<Infallible>);

fn spawn_threads(shared: &Arc<serve::Shared>, n: u16) -> io::Result<Threads> {
    let (alive, done) = mpsc::channel::<Infallible>();
    let threads = (0..n)
        .map(|i| {
            let shared = Arc::clone(shared);
            let alive = alive.clone();
            // Made here so that running out of descriptors fails the start-up, not a thread.
            let waiter = sys::AcceptWait::new(shared.listener.as_fd(), shared.wake.as_fd())?;
            std::thread::Builder::new().name(format!("wsgi-{i}")).stack_size(THREAD_STACK).spawn(
                move || {
                    serve::worker_thread(&shared, &waiter);
                    drop(alive);
                },
            )
        })
        .collect::<io::Result<_>>()?;
    Ok((threads, done))
}

fn wait_for_shutdown(shared: &serve::Shared) {
    while !sys::shutdown_requested() {
        if let Err(e) = sys::poll_in(&[shared.wake.as_fd()], -1) {
            tracing::error!("waiting for signals failed: {e}");
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// Give the requests of accepted connections until `limit` to finish; return as soon as the
/// last thread ends.
fn drain(
    shared: &serve::Shared,
    threads: &[JoinHandle<()>],
    done: &mpsc::Receiver<Infallible>,
    limit: Duration,
) {
    let requests = shared.control.completed();
    tracing::info!(requests, "shutting down: no new connections, draining in-flight requests");
    let all_done = match done.recv_timeout(limit) {
        Ok(never) => match never {},
        Err(mpsc::RecvTimeoutError::Disconnected) => true,
        Err(mpsc::RecvTimeoutError::Timeout) => false,
    };
    let busy = if all_done { 0 } else { threads.iter().filter(|t| !t.is_finished()).count() };
    if busy == 0 {
        Python::attach(flush_python_stderr);
        tracing::info!("all requests done, exiting");
    } else {
        tracing::warn!(busy, "drain timeout: exiting with requests still running");
    }
}

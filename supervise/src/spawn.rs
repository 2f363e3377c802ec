//! Starting one `paddock-worker` process: command line, scrubbed environment, credentials,
//! inherited descriptors, and the control pipe it reports on; directly (fork + exec by tokio)
//! or forked by a zygote.

use std::ffi::{OsStr, OsString};
use std::future::Future;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;

use nix::fcntl::{fcntl, FcntlArg, OFlag, SealFlag};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
use paddock_proto::zygote::{encode_setup, Creds, WorkerSetup};
use tokio::net::unix::pipe;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use crate::cgroup;
use crate::control::Control;
use crate::identity::Identity;
use crate::launch::Launch;
use crate::logrelay::{self, Source};
use crate::zygote::{self, Forked};
use paddock_config::tenant::TenantSpec;
use paddock_sys::{self as sys, ChildSetup, Limits};

/// A worker process (the router's own child, or one forked by a zygote: see `zygote.rs`) and
/// the group its descendants live in, killed as soon as the worker has ended. Or, for tests,
/// a stand-in that is no process at all ([`Proc::in_process`]): every signal goes through
/// `Proc`, so one never reaches a process of the machine that happens to have a fake's pid.
pub struct Proc {
    kind: Kind,
    group: Group,
    /// For a worker started directly because its zygote had died: changes when a new one is
    /// warm (see [`Proc::zygote_back`]).
    rejoin: Option<tokio::sync::watch::Receiver<u64>>,
}

enum Kind {
    Direct(Child),
    Forked(Forked),
    InProcess(InProcess),
}

/// A worker that is a task of this process (a test's fake): its stop orders go down a channel,
/// its exit comes back through another.
struct InProcess {
    pid: u32,
    stops: mpsc::UnboundedSender<Stop>,
    exit: watch::Receiver<Option<ExitStatus>>,
}

/// What an in-process worker is told where a process would get a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM: stop accepting, finish what was accepted, exit.
    Terminate,
    /// SIGKILL.
    Kill,
}

/// The worker's end of an in-process [`Proc`]: the orders it is given, and how it reports
/// its exit. Dropped without [`InProcessEnd::exit`], the worker counts as killed (SIGKILL).
pub struct InProcessEnd {
    pub stops: mpsc::UnboundedReceiver<Stop>,
    exit: watch::Sender<Option<ExitStatus>>,
}

impl InProcessEnd {
    /// End the worker with `status` (what [`Proc::wait`] returns).
    pub fn exit(&self, status: ExitStatus) {
        self.exit.send_replace(Some(status));
    }
}

/// The wait status of a process killed by `sig`.
fn killed_by(sig: Signal) -> ExitStatus {
    ExitStatus::from_raw(sig as i32)
}

/// Where a worker's descendants are: its cgroup leaf, or (without cgroup2) its process group,
/// led by the worker since its `setsid`.
enum Group {
    Leaf(cgroup::Leaf),
    Pgid(u32),
    Ended,
}

impl Proc {
    /// A worker that is no process: `pid` is only its name (it is never signalled). The
    /// returned end is the worker's: it receives what [`Proc::terminate`] and
    /// [`Proc::start_kill`] order and reports the exit [`Proc::wait`] returns.
    pub fn in_process(pid: u32) -> (Proc, InProcessEnd) {
        let (stop_tx, stop_rx) = mpsc::unbounded_channel();
        let (exit_tx, exit_rx) = watch::channel(None);
        let proc = Proc {
            kind: Kind::InProcess(InProcess { pid, stops: stop_tx, exit: exit_rx }),
            group: Group::Ended,
            rejoin: None,
        };
        (proc, InProcessEnd { stops: stop_rx, exit: exit_tx })
    }

    pub fn id(&self) -> u32 {
        match &self.kind {
            Kind::Direct(c) => c.id().unwrap_or(0),
            Kind::Forked(f) => f.pid(),
            Kind::InProcess(p) => p.pid,
        }
    }

    /// Wait until the process has ended, then kill what it left behind. Cancel-safe.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        let status = match &mut self.kind {
            Kind::Direct(c) => c.wait().await,
            Kind::Forked(f) => f.wait().await,
            Kind::InProcess(p) => match p.exit.wait_for(Option::is_some).await {
                Ok(s) => Ok((*s).unwrap_or_else(|| killed_by(Signal::SIGKILL))),
                // Its end was dropped without an exit status: it was killed.
                Err(_) => Ok(killed_by(Signal::SIGKILL)),
            },
        };
        self.end_group();
        status
    }

    /// Whether it ended because its zygote died (not its tenant's fault).
    pub fn orphaned(&self) -> bool {
        matches!(&self.kind, Kind::Forked(f) if f.orphaned())
    }

    /// For a worker started directly because its zygote had died: what [`zygote_back`] waits
    /// on.
    pub fn take_rejoin(&mut self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.rejoin.take()
    }

    /// SIGTERM: the worker stops accepting, finishes what it accepted and exits. Without
    /// waiting; a process whose pid is no longer known (0) is not signalled.
    pub fn terminate(&self) {
        match &self.kind {
            Kind::InProcess(p) => {
                let _ = p.stops.send(Stop::Terminate);
            }
            Kind::Direct(_) | Kind::Forked(_) => {
                let pid = self.id();
                if pid != 0 {
                    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
                }
            }
        }
    }

    /// SIGKILL, without waiting.
    pub fn start_kill(&mut self) -> std::io::Result<()> {
        match &mut self.kind {
            Kind::Direct(c) => c.start_kill(),
            Kind::Forked(f) => f.start_kill(),
            Kind::InProcess(p) => {
                let _ = p.stops.send(Stop::Kill);
                Ok(())
            }
        }
    }

    /// Kill the worker's cgroup leaf (and remove it), or its process group.
    fn end_group(&mut self) {
        match std::mem::replace(&mut self.group, Group::Ended) {
            Group::Leaf(leaf) => drop(leaf),
            // A pgid stays reserved while any member lives, so this cannot hit a stranger
            // unless the group is already empty and its number was reused (see
            // docs/security.md).
            Group::Pgid(pgid) if pgid > 0 => {
                let _ = killpg(Pid::from_raw(pgid as i32), Signal::SIGKILL);
            }
            Group::Pgid(_) | Group::Ended => {}
        }
    }
}

impl Drop for Proc {
    /// Before the process itself is killed and reaped (`kill_on_drop`, `Forked`'s drop), while
    /// its pid is still held.
    fn drop(&mut self) {
        self.end_group();
    }
}

/// A new cgroup leaf for one worker of `pool`; `None` without cgroups (or if it cannot be made:
/// then the process group is the fallback).
fn new_leaf(pool: &Launch<'_>) -> Option<cgroup::Leaf> {
    let group = pool.cgroup?;
    group
        .leaf()
        .map_err(|e| tracing::warn!(tenant = %pool.spec.name, "cannot create a worker cgroup, falling back to its process group: {e}"))
        .ok()
}

fn group_of(leaf: Option<cgroup::Leaf>, pid: u32) -> Group {
    match leaf {
        Some(l) => Group::Leaf(l),
        None => Group::Pgid(pid),
    }
}

/// The rlimits of `pool`'s processes. `RLIMIT_NPROC` counts every process of the uid, so it is
/// only set for a tenant that runs as its own non-root user.
pub fn limits(l: &paddock_config::Limits, creds: Option<&sys::Creds>) -> Limits {
    let own_user = creds.is_some_and(|c| c.uid != 0);
    Limits {
        nofile: l.nofile,
        nproc: if own_user { l.nproc } else { 0 },
        address_space: l.address_space,
        core: Some(l.core),
    }
}

/// A worker being started: the process and its control pipe, once it runs.
pub type Starting<'a> = Pin<Box<dyn Future<Output = std::io::Result<(Proc, Control)>> + Send + 'a>>;

/// How a slot gets its worker. [`Spawn`] starts a real process; unit tests start tasks that
/// stand in for one (`testkit.rs`), so the pool and its slots run unchanged on fakes.
pub trait Starter: Send + Sync {
    fn start<'a>(&'a self, launch: &'a Launch<'a>, slot: usize) -> Starting<'a>;
}

/// The real one: [`spawn`] (direct, or forked by the pool's zygote).
#[derive(Debug, Clone, Copy, Default)]
pub struct Spawn;

impl Starter for Spawn {
    fn start<'a>(&'a self, launch: &'a Launch<'a>, slot: usize) -> Starting<'a> {
        Box::pin(spawn(launch, slot))
    }
}

/// Start one worker of a pool, as the tenant's user, with the listening socket on fd 3 and the
/// control pipe on fd 4. Its stderr is relayed to the log (`logrelay.rs`).
/// Forked by the pool's zygote when it has one; a direct spawn otherwise, or when the zygote
/// fails (a tenant never fails because of its zygote).
pub async fn spawn(pool: &Launch<'_>, slot: usize) -> std::io::Result<(Proc, Control)> {
    let rejoin = match zygote::route(pool).await {
        zygote::Route::Fork(z) => match spawn_forked(pool, slot, &z).await {
            Ok(p) => return Ok(p),
            Err(e) => {
                tracing::warn!(
                    tenant = %pool.spec.name, slot,
                    "zygote spawn failed, starting the worker directly: {e}"
                );
                None
            }
        },
        zygote::Route::Direct { rejoin } => rejoin,
    };
    if rejoin.is_some() {
        tracing::info!(tenant = %pool.spec.name, slot, "the zygote is not back yet: starting the worker directly");
    }
    let (mut proc, control) = spawn_direct(pool, slot)?;
    proc.rejoin = rejoin;
    Ok((proc, control))
}

async fn spawn_forked(
    pool: &Launch<'_>,
    slot: usize,
    z: &Arc<zygote::Zygote>,
) -> std::io::Result<(Proc, Control)> {
    let spec = &pool.spec;
    let (ctl_read, ctl_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let (err_read, err_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let leaf = new_leaf(pool);
    let creds = pool.identity.creds();
    let mut args = worker_args(spec);
    args.extend(lead_args(pool));
    args.extend(forked_limit_args(&limits(&spec.settings.process.limits, creds.as_ref())));
    if let Some(l) = &leaf {
        args.extend(["--cgroup-procs".into(), l.procs_path().into()]);
    }
    let setup = WorkerSetup {
        args: args.iter().map(|a| a.as_bytes().to_vec()).collect(),
        env: worker_env(spec, pool.identity)
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect(),
        cwd: spec.dir.as_os_str().as_bytes().to_vec(),
        umask: spec.settings.process.umask,
        creds: creds.map(|c| Creds { uid: c.uid, gid: c.gid, groups: c.groups }),
    };
    let setup = sealed_setup(&setup)?;
    let fds = [
        pool.listener.as_raw_fd(),
        ctl_write.as_raw_fd(),
        err_write.as_raw_fd(),
        setup.as_raw_fd(),
    ];
    let forked = z.spawn(fds, spec.settings.process.startup_timeout).await?;
    drop((ctl_write, err_write, setup));
    let pid = forked.pid();
    // The child joins the leaf itself (`--cgroup-procs`), right after `setsid`, still root:
    // before any of the tenant's code runs; it exits if it cannot.
    let err = pipe::Receiver::from_owned_fd(err_read)?;
    logrelay::relay(err, Source { tenant: spec.name.clone(), pid, slot }, pool.counters.clone());
    let proc = Proc { kind: Kind::Forked(forked), group: group_of(leaf, pid), rejoin: None };
    Ok((proc, Control::new(ctl_read)?))
}

/// The rlimits for a forked worker to set on itself (`become_worker`); a direct one gets them
/// from `sys::prepare`.
fn forked_limit_args(l: &Limits) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    for (flag, v) in [
        ("--rlimit-nofile", Some(l.nofile)),
        ("--rlimit-nproc", Some(l.nproc)),
        ("--rlimit-as", Some(l.address_space)),
        ("--rlimit-core", l.core),
    ] {
        if let Some(v) = v {
            a.extend([flag.into(), v.to_string().into()]);
        }
    }
    a
}

/// A sealed memfd holding `setup`: the zygote passes it to the child it forks, which alone reads
/// it, so the zygote (shared by every tenant of its Python configuration) never holds a tenant's
/// arguments or environment. Sealed: its content cannot change once sent.
fn sealed_setup(setup: &WorkerSetup) -> std::io::Result<OwnedFd> {
    let mut bytes = Vec::new();
    encode_setup(setup, &mut bytes)
        .map_err(|e| std::io::Error::other(format!("worker setup too large: {e}")))?;
    let flags = MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING;
    let fd = memfd_create(c"paddock-worker-setup", flags)?;
    let mut file = std::fs::File::from(fd);
    file.write_all(&bytes)?;
    let seals = SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_WRITE
        | SealFlag::F_SEAL_SEAL;
    fcntl(file.as_raw_fd(), FcntlArg::F_ADD_SEALS(seals))?;
    Ok(file.into())
}

/// The worker's command line after the program name; the same for both ways of starting it
/// (and for `paddock check`'s trial import, `appcheck.rs`).
/// `--retire-lead`, when this start has one (it needs `--max-requests`).
fn lead_args(pool: &Launch<'_>) -> Vec<OsString> {
    match (pool.spec.settings.process.max_requests, pool.retire_lead) {
        (0, _) | (_, 0) => Vec::new(),
        (_, lead) => vec!["--retire-lead".into(), lead.to_string().into()],
    }
}

pub(crate) fn worker_args(spec: &TenantSpec) -> Vec<OsString> {
    let s = &spec.settings;
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |x: &dyn AsRef<OsStr>| a.push(x.as_ref().to_owned());
    push(&"--tenant");
    push(&spec.name);
    push(&"--app");
    push(&s.process.app);
    push(&"--threads");
    push(&s.process.threads.to_string());
    push(&"--processes");
    push(&s.process.processes.to_string());
    for x in ["--listen-fd", "3", "--control-fd", "4"] {
        push(&x);
    }
    if s.process.max_requests > 0 {
        let jitter = (jitter_fraction() * (s.process.max_requests_jitter as f64 + 1.0)) as u64;
        push(&"--max-requests");
        push(&(s.process.max_requests + jitter.min(s.process.max_requests_jitter)).to_string());
    }
    if s.process.gc_freeze {
        push(&"--gc-freeze");
    }
    for p in &s.process.python_path {
        push(&"--python-path");
        push(p);
    }
    if let Some(v) = &s.process.virtualenv {
        push(&"--virtualenv");
        push(v);
    }
    a
}

/// The worker's whole environment (scrubbed: nothing of the router's leaks).
pub(crate) fn worker_env(spec: &TenantSpec, identity: &Identity) -> Vec<(OsString, OsString)> {
    let s = &spec.settings;
    let mut env: Vec<(OsString, OsString)> = Vec::new();
    let mut set = |k: &str, v: &dyn AsRef<OsStr>| {
        env.retain(|(old, _)| old != k);
        env.push((k.into(), v.as_ref().to_owned()));
    };
    set("PATH", &"/usr/local/bin:/usr/bin:/bin");
    set("HOME", &spec.dir);
    set("USER", &identity.user_name);
    set("LOGNAME", &identity.user_name);
    set("LANG", &s.process.lang);
    set("PYTHON_EGG_CACHE", &spec.dir.join(".egg-cache"));
    set("PADDOCK_TENANT", &spec.name);
    if let Ok(level) = std::env::var("PADDOCK_WORKER_LOG") {
        set("PADDOCK_LOG", &level);
    }
    for (k, v) in &s.process.env {
        set(k, v);
    }
    env
}

/// The command that starts `paddock-worker` for `spec` directly: its arguments, its scrubbed
/// environment, the tenant directory as working directory, and (in the child, before `exec`)
/// its user, umask, rlimits and cgroup, with `fds` moved to their numbers. The one definition
/// of a worker start: a pool's direct spawn and `paddock check`'s trial import both use it.
pub(crate) fn worker_command(
    spec: &TenantSpec,
    identity: &Identity,
    worker_bin: &std::path::Path,
    fds: Vec<(std::os::fd::RawFd, std::os::fd::RawFd)>,
    cgroup_procs: Option<std::os::fd::RawFd>,
) -> Command {
    let s = &spec.settings;
    let mut cmd = Command::new(worker_bin);
    cmd.args(worker_args(spec));
    cmd.env_clear();
    cmd.envs(worker_env(spec, identity));
    cmd.current_dir(&spec.dir);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    cmd.kill_on_drop(true);
    let creds = identity.creds();
    let confine = limits(&s.process.limits, creds.as_ref());
    sys::prepare(
        &mut cmd,
        ChildSetup { creds, umask: s.process.umask, fds, cgroup_procs, confine: Some(confine) },
    );
    cmd
}

fn spawn_direct(pool: &Launch<'_>, slot: usize) -> std::io::Result<(Proc, Control)> {
    let spec = &pool.spec;
    let (ctl_read, ctl_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    // High, close-on-exec copies, so the dup2 onto 3 and 4 in the child never clobbers a source.
    let listen_fd = sys::dup_high(pool.listener.as_raw_fd())?;
    let ctl_fd = sys::dup_high(ctl_write.as_raw_fd())?;
    drop(ctl_write);

    let leaf = new_leaf(pool);
    let fds = vec![(listen_fd.as_raw_fd(), 3), (ctl_fd.as_raw_fd(), 4)];
    let cgroup_procs = leaf.as_ref().map(|l| l.procs_fd().as_raw_fd());
    let mut cmd = worker_command(spec, pool.identity, pool.worker_bin, fds, cgroup_procs);
    cmd.args(lead_args(pool));
    let mut child = cmd.spawn()?;
    drop((listen_fd, ctl_fd));
    let pid = child.id().unwrap_or(0);
    if let Some(err) = child.stderr.take() {
        let source = Source { tenant: spec.name.clone(), pid, slot };
        logrelay::relay(err, source, pool.counters.clone());
    }
    let proc = Proc { kind: Kind::Direct(child), group: group_of(leaf, pid), rejoin: None };
    Ok((proc, Control::new(ctl_read)?))
}

/// Resolves when the zygote a direct worker stood in for is warm again (the worker is then
/// replaced by a forked one); pends forever without `rejoin`. Cancel-safe.
pub async fn zygote_back(rejoin: &mut Option<tokio::sync::watch::Receiver<u64>>) {
    if let Some(rx) = rejoin.as_mut() {
        if rx.changed().await.is_ok() {
            return;
        }
    }
    std::future::pending().await
}

/// A number in [0, 1) from the clock's low bits: enough to spread retries and recycles
/// without a random-number dependency.
pub fn jitter_fraction() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    f64::from(nanos % 1000) / 1000.0
}

//! Replacing the running binary with no failed request, as nginx does: on SIGUSR2 (or
//! `paddock upgrade`, through the admin API) the router starts the `paddock` found at its own
//! path again, with its arguments, handing it the listening sockets. The new process reads its
//! configuration, serves from the same sockets (the kernel's accept queue is shared, so no
//! connection is refused or lost) and says it is ready through a pipe; only then does the old
//! one tell systemd the new main PID, stop accepting and drain: its requests in flight finish,
//! its pools stop. If the new process fails (a configuration it refuses, a binary that does
//! not start, no word within [`READY_TIMEOUT`]) the old one goes on serving and reports why.
//!
//! The hand-over, in the new process's environment (removed at once, so tenant processes
//! never see it): `PADDOCK_LISTEN_FDS=front:3,admin:4,internal:6,tls:7` (the admin,
//! the cluster's internal and the HTTPS listener only when it has them) and `PADDOCK_UPGRADE_FD=5`, the pipe's
//! write end; a cluster node adds `PADDOCK_CLUSTER_LEASE`, its etcd lease, which the new
//! process takes over with the node's claims (`docs/cluster.md`). A listener whose address
//! the new configuration changed is not used: the new process binds the new address instead.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, oneshot};

use crate::phase::{self, Phase, Phases, Stop};

const LISTEN_FDS: &str = "PADDOCK_LISTEN_FDS";
const UPGRADE_FD: &str = "PADDOCK_UPGRADE_FD";
const CLUSTER_LEASE: &str = "PADDOCK_CLUSTER_LEASE";

/// How long the new process may take to load its configuration and listen.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// What the process was started with, read once before anything else runs.
struct Origin {
    exe: Option<PathBuf>,
    args: Vec<std::ffi::OsString>,
}

static ORIGIN: OnceLock<Origin> = OnceLock::new();

/// Listening sockets and the ready pipe handed over by the process this one replaces.
#[derive(Debug, Default)]
pub struct Inherited {
    pub front: Option<std::net::TcpListener>,
    pub admin: Option<std::net::TcpListener>,
    pub internal: Option<std::net::TcpListener>,
    pub tls: Option<std::net::TcpListener>,
    /// The cluster lease of the process this one replaces.
    pub cluster_lease: Option<i64>,
    ready: Option<std::fs::File>,
}

/// Read the hand-over variables and the binary's own path; call first in `main`, while the
/// process has one thread (the variables are removed from the environment). A malformed or
/// foreign variable is an error: the caller refuses to start rather than adopt a wrong fd.
pub fn take_inherited() -> io::Result<Inherited> {
    // The path now, before a package upgrade replaces the file (then `/proc/self/exe` reads
    // "... (deleted)"); the new binary is then found at the same path.
    ORIGIN.get_or_init(|| Origin {
        exe: std::env::current_exe().ok(),
        args: std::env::args_os().skip(1).collect(),
    });
    let fds = std::env::var(LISTEN_FDS).ok();
    let ready = std::env::var(UPGRADE_FD).ok();
    let lease = std::env::var(CLUSTER_LEASE).ok();
    std::env::remove_var(LISTEN_FDS);
    std::env::remove_var(UPGRADE_FD);
    std::env::remove_var(CLUSTER_LEASE);
    let mut inherited = Inherited::default();
    if let Some(l) = lease {
        let id = l
            .parse::<i64>()
            .map_err(|_| io::Error::other(format!("{CLUSTER_LEASE}: not a lease id: {l}")))?;
        inherited.cluster_lease = Some(id);
    }
    if let Some(list) = fds {
        for item in list.split(',').filter(|s| !s.is_empty()) {
            let (name, fd) = parse_item(item)?;
            let l = paddock_sys::inherited_listener(fd)
                .map_err(|e| io::Error::other(format!("{LISTEN_FDS}: {name}: {e}")))?;
            match name {
                "front" => inherited.front = Some(l),
                "admin" => inherited.admin = Some(l),
                "internal" => inherited.internal = Some(l),
                "tls" => inherited.tls = Some(l),
                _ => return Err(io::Error::other(format!("{LISTEN_FDS}: unknown socket {name}"))),
            }
        }
    }
    if let Some(fd) = ready {
        let fd: RawFd = fd
            .parse()
            .ok()
            .filter(|&fd| fd > 2)
            .ok_or_else(|| io::Error::other(format!("{UPGRADE_FD}: not a descriptor: {fd}")))?;
        inherited.ready = Some(paddock_sys::inherited_pipe(fd)?);
    }
    Ok(inherited)
}

fn parse_item(item: &str) -> io::Result<(&str, RawFd)> {
    let bad = || io::Error::other(format!("{LISTEN_FDS}: expected NAME:FD, got {item:?}"));
    let (name, fd) = item.split_once(':').ok_or_else(bad)?;
    Ok((name, fd.parse().map_err(|_| bad())?))
}

impl Inherited {
    /// The inherited listener for `name` if it listens on `want`; else bind `want`.
    pub async fn listener(
        &mut self,
        name: &str,
        want: SocketAddr,
    ) -> io::Result<tokio::net::TcpListener> {
        let slot = match name {
            "admin" => Some(&mut self.admin),
            "front" => Some(&mut self.front),
            "internal" => Some(&mut self.internal),
            "tls" => Some(&mut self.tls),
            _ => None,
        };
        if let Some(l) = slot.and_then(Option::take) {
            match l.local_addr() {
                Ok(have) if same_address(have, want) => {
                    tracing::info!(%have, "{name} listener taken over from the previous process");
                    return tokio::net::TcpListener::from_std(l);
                }
                Ok(have) => {
                    tracing::info!(%have, %want, "{name}: the configuration changed the address; not taking the previous process's listener")
                }
                Err(e) => tracing::warn!("{name}: inherited listener unusable: {e}"),
            }
        }
        tokio::net::TcpListener::bind(want).await
    }

    /// Tell the process being replaced that this one serves (both listeners are ready).
    pub fn announce_ready(&mut self) {
        use std::io::Write;
        if let Some(mut f) = self.ready.take() {
            let line = format!("ready {}\n", std::process::id());
            if let Err(e) = f.write_all(line.as_bytes()) {
                tracing::warn!("cannot tell the previous process that this one is ready: {e}");
            }
        }
    }
}

/// `want`, with port 0 meaning "whatever the old one had" (tests, `listen = "...:0"`).
fn same_address(have: SocketAddr, want: SocketAddr) -> bool {
    have.ip() == want.ip() && (have.port() == want.port() || want.port() == 0)
}

/// Why an upgrade did not happen; the old process serves on.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("an upgrade is already under way")]
    Busy,
    #[error("the server is shutting down")]
    Closing,
    #[error("the path of the running binary is unknown")]
    NoExe,
    #[error("cannot start {exe}: {source}")]
    Spawn { exe: String, source: io::Error },
    #[error("the new process exited before it was ready ({0}); see its log lines above")]
    Exited(String),
    #[error("the new process did not say it was ready within {0:?}; it was stopped")]
    Timeout(Duration),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Why an upgrade asked for through [`Trigger`] did not happen.
#[derive(Debug, Clone)]
pub struct Refused {
    /// Another upgrade or a shutdown is under way (try again later), rather than a failure.
    pub busy: bool,
    pub why: String,
}

impl From<UpgradeError> for Refused {
    fn from(e: UpgradeError) -> Refused {
        Refused {
            busy: matches!(e, UpgradeError::Busy | UpgradeError::Closing),
            why: e.to_string(),
        }
    }
}

type Reply = oneshot::Sender<Result<u32, Refused>>;

/// Asks the upgrade task for an upgrade (the admin API's `POST /upgrade`).
#[derive(Clone)]
pub struct Trigger(mpsc::Sender<Reply>);

/// The receiving end, taken by [`run`] once.
pub struct Requests(Mutex<Option<mpsc::Receiver<Reply>>>);

pub fn channel() -> (Trigger, Requests) {
    let (tx, rx) = mpsc::channel(4);
    (Trigger(tx), Requests(Mutex::new(Some(rx))))
}

impl Trigger {
    /// Upgrade now; the new process's pid, or why not.
    pub async fn upgrade(&self) -> Result<u32, Refused> {
        let (tx, rx) = oneshot::channel();
        self.0.try_send(tx).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => UpgradeError::Busy,
            mpsc::error::TrySendError::Closed(_) => UpgradeError::Closing,
        })?;
        rx.await.map_err(|_| UpgradeError::Closing)?
    }
}

/// The listening sockets to hand over (duplicates, owned here: the front door drops its own
/// copy when it stops accepting).
pub struct Sockets {
    pub front: OwnedFd,
    pub admin: Option<OwnedFd>,
    pub internal: Option<OwnedFd>,
    pub tls: Option<OwnedFd>,
    /// A cluster node hands its lease over too; no claim is released meanwhile.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

/// Serve upgrade requests (SIGUSR2, [`Trigger`]) until the server closes. After a successful
/// hand-over this process drains and stops ([`Stop::Graceful`]); after a failed one it serves
/// on.
pub async fn run(sockets: Sockets, requests: &Requests, phases: Arc<Phases>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Some(mut rx) = requests.0.lock().ok().and_then(|mut r| r.take()) else { return };
    let mut usr2 = match signal(SignalKind::user_defined2()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("cannot install the SIGUSR2 handler ({e}); use `paddock upgrade`");
            None
        }
    };
    let closing = phase::reached(phases.subscribe(), Phase::stopping);
    tokio::pin!(closing);
    loop {
        let reply = tokio::select! {
            Some(()) = async { match usr2.as_mut() { Some(s) => s.recv().await, None => None } } => {
                tracing::info!("SIGUSR2: starting a new process to take over");
                None
            }
            Some(r) = rx.recv() => Some(r),
            _ = &mut closing => return,
        };
        if let Some(c) = &sockets.cluster {
            c.pause_releases(true);
        }
        let outcome = hand_over(&sockets).await;
        if let Some(c) = &sockets.cluster {
            match &outcome {
                Ok(_) => c.handed_off(),
                Err(_) => c.pause_releases(false),
            }
        }
        match &outcome {
            Ok(pid) => {
                tracing::info!(pid, "upgrade: the new process serves; draining this one");
                crate::notify::hand_over(*pid);
                // The successor is this node: nothing is handed to other nodes.
                phases.leave_first(false);
                phases.request(Stop::Graceful);
            }
            Err(e) => tracing::error!("upgrade failed, this process serves on: {e}"),
        }
        let done = outcome.is_ok();
        if let Some(r) = reply {
            let _ = r.send(outcome.map_err(Refused::from));
        }
        if done {
            // Answer later requests (a second `paddock upgrade` racing this one) as refused.
            while let Ok(r) = rx.try_recv() {
                let _ = r.send(Err(UpgradeError::Busy.into()));
            }
            return;
        }
    }
}

async fn hand_over(sockets: &Sockets) -> Result<u32, UpgradeError> {
    let origin = ORIGIN.get().ok_or(UpgradeError::NoExe)?;
    let exe = origin.exe.as_ref().ok_or(UpgradeError::NoExe)?;
    let (read_end, write_end) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| UpgradeError::Io(e.into()))?;
    // Sources above 10, targets 3 to 7: no dup2 overwrites a source it still needs.
    let mut fds = Vec::new();
    let mut names = Vec::new();
    let mut keep = Vec::new();
    // The ready pipe is 5.
    let listeners = [
        ("front", Some(&sockets.front), 3),
        ("admin", sockets.admin.as_ref(), 4),
        ("internal", sockets.internal.as_ref(), 6),
        ("tls", sockets.tls.as_ref(), 7),
    ];
    for (name, fd, target) in listeners {
        let Some(fd) = fd else { continue };
        let high = paddock_sys::dup_high(fd.as_raw_fd())?;
        fds.push((high.as_raw_fd(), target));
        names.push(format!("{name}:{target}"));
        keep.push(high);
    }
    let list = names.join(",");
    let pipe_fd = paddock_sys::dup_high(write_end.as_raw_fd())?;
    fds.push((pipe_fd.as_raw_fd(), 5));
    let mut cmd = std::process::Command::new(exe);
    cmd.args(&origin.args).env(LISTEN_FDS, &list).env(UPGRADE_FD, "5");
    if let Some(c) = &sockets.cluster {
        cmd.env(CLUSTER_LEASE, c.lease_id().to_string());
    }
    paddock_sys::pass_fds(&mut cmd, fds);
    let mut child = tokio::process::Command::from(cmd)
        .spawn()
        .map_err(|source| UpgradeError::Spawn { exe: exe.display().to_string(), source })?;
    // Only the child holds the write end now: EOF means it is gone or gave up.
    drop((keep, pipe_fd, write_end));
    let pid = child.id().unwrap_or(0);
    tracing::info!(pid, exe = %exe.display(), "upgrade: new process started");
    let mut rx = tokio::net::unix::pipe::Receiver::from_owned_fd(read_end)?;
    let mut said = Vec::new();
    let waited = tokio::time::timeout(READY_TIMEOUT, async {
        let mut buf = [0u8; 64];
        loop {
            let n = rx.read(&mut buf).await?;
            said.extend_from_slice(&buf[..n]);
            if n == 0 || said.contains(&b'\n') || said.len() > 256 {
                return Ok::<_, io::Error>(());
            }
        }
    })
    .await;
    let ready = said.starts_with(format!("ready {pid}\n").as_bytes());
    match waited {
        Ok(Ok(())) if ready => Ok(pid),
        Ok(r) => {
            // It closed the pipe without the word: it is exiting, or it speaks another
            // protocol; either way it must not serve beside this one.
            let status = match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
                Ok(Ok(s)) => s.to_string(),
                Ok(Err(e)) => format!("cannot wait for it: {e}"),
                Err(_) => {
                    let _ = child.kill().await;
                    "it did not exit after closing the pipe; killed".to_string()
                }
            };
            if let Err(e) = r {
                tracing::warn!("upgrade: reading the new process's answer: {e}");
            }
            Err(UpgradeError::Exited(status))
        }
        Err(_) => {
            let _ = child.kill().await;
            Err(UpgradeError::Timeout(READY_TIMEOUT))
        }
    }
}

/// Whether this process was started to take over from another (its listeners handed over).
pub fn is_successor(inherited: &Inherited) -> bool {
    inherited.ready.is_some()
}

/// In a successor: once the predecessor (the parent that started it) has exited, remove what
/// it left (its cgroup tree), as a fresh start would.
pub async fn after_predecessor() {
    let parent = std::os::unix::process::parent_id();
    let Ok(fd) = paddock_sys::pidfd_open(parent).and_then(paddock_sys::async_fd) else { return };
    // A pidfd becomes readable when its process ends.
    let _ = fd.readable().await;
    tracing::info!(pid = parent, "upgrade: the previous process has exited");
    paddock_supervise::cgroup::sweep();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_name_a_socket_and_a_descriptor() {
        assert_eq!(parse_item("front:3").unwrap(), ("front", 3));
        assert!(parse_item("front").is_err());
        assert!(parse_item("front:x").is_err());
    }

    #[test]
    fn port_zero_takes_whatever_the_old_process_had() {
        let have: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert!(same_address(have, "127.0.0.1:0".parse().unwrap()));
        assert!(same_address(have, have));
        assert!(!same_address(have, "127.0.0.1:8081".parse().unwrap()));
        assert!(!same_address(have, "0.0.0.0:8080".parse().unwrap()));
    }

    #[test]
    fn a_foreign_descriptor_is_refused() {
        // Standard streams and fds that are not listening sockets are never adopted.
        assert!(paddock_sys::inherited_listener(1).is_err());
        let f = std::fs::File::open("/dev/null").unwrap();
        assert!(paddock_sys::inherited_listener(f.as_raw_fd()).is_err());
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(paddock_sys::inherited_listener(s.as_raw_fd()).is_err());
    }
}

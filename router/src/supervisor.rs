//! Spawns and watches the worker processes of a pool: one task per process slot, restarting
//! its process with jittered exponential back-off when it dies.

use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use paddock_proto::{decode, Frame};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::pool::Pool;
use crate::sys::{self, ChildSetup};

/// A process that lived this long is considered healthy: its next failure starts the back-off
/// again from the beginning.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);
/// Time a stopping worker gets to finish its requests before SIGKILL.
const GRACE: Duration = Duration::from_secs(20);

/// Keep one worker process running for `slot` until the pool stops.
pub async fn run_slot(pool: Arc<Pool>, slot: usize) {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let mut stop = pool.stop_tx.subscribe();
    while !pool.is_stopping() {
        let started = Instant::now();
        match run_once(&pool, slot, &mut stop).await {
            Ok(()) => {}
            Err(why) => {
                tracing::error!(tenant = %pool.spec.name, slot, "{why}");
                pool.start_failed(why);
            }
        }
        if pool.is_stopping() {
            break;
        }
        if started.elapsed() >= HEALTHY_AFTER {
            backoff.reset();
        }
        let wait = backoff.next();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Spawn one process, wait for it to be ready, then until it exits or the pool stops.
/// `Err` means it failed before it became ready.
async fn run_once(
    pool: &Arc<Pool>,
    slot: usize,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    let (mut child, control) = spawn(pool)
        .map_err(|e| format!("cannot start a worker for tenant `{}`: {e}", pool.spec.name))?;
    let pid = child.id().unwrap_or(0);
    let timeout = pool.spec.settings.startup_timeout;
    tokio::select! {
        r = wait_ready(control) => if let Err(e) = r {
            let status = child.wait().await.map(describe).unwrap_or_else(|e| e.to_string());
            return Err(format!("worker {pid} of tenant `{}` {status} before it was ready ({e}); its output is logged above", pool.spec.name));
        },
        status = child.wait() => {
            let status = status.map(describe).unwrap_or_else(|e| e.to_string());
            return Err(format!("worker {pid} of tenant `{}` {status} before it was ready; its output is logged above", pool.spec.name));
        }
        _ = tokio::time::sleep(timeout) => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(format!("worker {pid} of tenant `{}` was not ready within {timeout:?} (startup_timeout)", pool.spec.name));
        }
        _ = stop.changed() => {
            terminate(&mut child, pid).await;
            return Ok(());
        }
    }
    tracing::info!(tenant = %pool.spec.name, slot, pid, "worker ready");
    pool.worker_ready(pid);
    tokio::select! {
        status = child.wait() => {
            pool.worker_gone(pid);
            let status = status.map(describe).unwrap_or_else(|e| e.to_string());
            if !pool.is_stopping() {
                tracing::warn!(tenant = %pool.spec.name, slot, pid, "worker {status}; restarting it");
            }
        }
        _ = stop.changed() => {
            pool.worker_gone(pid);
            terminate(&mut child, pid).await;
        }
    }
    Ok(())
}

/// SIGTERM, then SIGKILL after the grace period.
async fn terminate(child: &mut Child, pid: u32) {
    if pid != 0 {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
    }
    if tokio::time::timeout(GRACE, child.wait()).await.is_err() {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}

fn describe(s: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(3), _) => "could not load its WSGI app (exit code 3)".to_string(),
        (Some(c), _) => format!("exited with code {c}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => "exited".to_string(),
    }
}

/// Read the control pipe until the worker's `Ready` frame (or EOF: it died).
async fn wait_ready(control: OwnedFd) -> Result<(), String> {
    let mut rx = tokio::net::unix::pipe::Receiver::from_owned_fd(control)
        .map_err(|e| format!("control pipe: {e}"))?;
    let mut buf = Vec::with_capacity(64);
    loop {
        match decode(&buf) {
            Ok(Some((Frame::Ready(_), _))) => return Ok(()),
            Ok(Some((other, _))) => {
                return Err(format!("unexpected control frame {:?}", other.frame_type()))
            }
            Ok(None) => {}
            Err(e) => return Err(format!("bad control frame: {e}")),
        }
        let mut chunk = [0u8; 256];
        let n = rx.read(&mut chunk).await.map_err(|e| format!("control pipe: {e}"))?;
        if n == 0 {
            return Err("it closed its control pipe".to_string());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Start one `paddock-worker` for `pool`, as the tenant's user, with the listening socket on
/// fd 3 and the control pipe on fd 4.
fn spawn(pool: &Arc<Pool>) -> std::io::Result<(Child, OwnedFd)> {
    let spec = &pool.spec;
    let s = &spec.settings;
    let (ctl_read, ctl_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    // High, close-on-exec copies, so the dup2 onto 3 and 4 in the child never clobbers a source.
    let listen_fd = sys::dup_high(pool.listener.as_raw_fd())?;
    let ctl_fd = sys::dup_high(ctl_write.as_raw_fd())?;
    drop(ctl_write);

    let mut cmd = Command::new(&pool.worker_bin);
    cmd.arg("--tenant").arg(&spec.name);
    cmd.arg("--app").arg(&s.app);
    cmd.arg("--threads").arg(s.threads.to_string());
    cmd.arg("--processes").arg(s.processes.to_string());
    cmd.args(["--listen-fd", "3", "--control-fd", "4"]);
    for p in &s.python_path {
        cmd.arg("--python-path").arg(p);
    }
    if let Some(v) = &s.virtualenv {
        cmd.arg("--virtualenv").arg(v);
    }
    cmd.env_clear();
    cmd.env("PATH", "/usr/local/bin:/usr/bin:/bin");
    cmd.env("HOME", &spec.dir);
    cmd.env("USER", &pool.identity.user_name);
    cmd.env("LOGNAME", &pool.identity.user_name);
    cmd.env("LANG", &s.lang);
    cmd.env("PYTHON_EGG_CACHE", spec.dir.join(".egg-cache"));
    cmd.env("PADDOCK_TENANT", &spec.name);
    if let Ok(level) = std::env::var("PADDOCK_WORKER_LOG") {
        cmd.env("PADDOCK_LOG", level);
    }
    cmd.envs(&s.env);
    cmd.current_dir(&spec.dir);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    cmd.kill_on_drop(true);
    sys::prepare(
        &mut cmd,
        ChildSetup {
            creds: pool.identity.creds(),
            umask: s.umask,
            fds: vec![(listen_fd.as_raw_fd(), 3), (ctl_fd.as_raw_fd(), 4)],
        },
    );
    let mut child = cmd.spawn()?;
    drop((listen_fd, ctl_fd));
    if let Some(err) = child.stderr.take() {
        let tenant = spec.name.clone();
        let pid = child.id().unwrap_or(0);
        tokio::spawn(async move {
            let mut lines = BufReader::new(err).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::info!(target: "paddock::worker", tenant = %tenant, pid, "{line}");
            }
        });
    }
    Ok((child, ctl_read))
}

/// Exponential back-off with jitter, so many failing pools do not retry in lock-step.
struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    fn new(base: Duration, max: Duration) -> Self {
        Backoff { base, max, attempt: 0 }
    }

    fn reset(&mut self) {
        self.attempt = 0;
    }

    fn next(&mut self) -> Duration {
        let exp = self.base.saturating_mul(1u32 << self.attempt.min(16));
        self.attempt = self.attempt.saturating_add(1);
        let capped = exp.min(self.max);
        // Jitter in [50%, 100%] from the clock's low bits: no RNG dependency needed.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let frac = 0.5 + f64::from(nanos % 1000) / 2000.0;
        capped.mul_f64(frac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let first = b.next();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        for _ in 0..10 {
            assert!(b.next() <= Duration::from_secs(1));
        }
        b.reset();
        assert!(b.next() <= Duration::from_millis(100));
    }
}

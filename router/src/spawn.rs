//! Starting one `paddock-worker` process: command line, scrubbed environment, credentials,
//! inherited descriptors, and the control pipe it reports on.

use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Stdio;
use std::sync::Arc;

use nix::fcntl::OFlag;
use paddock_proto::{decode, Frame};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::unix::pipe;
use tokio::process::{Child, Command};

use crate::pool::Pool;
use crate::sys::{self, ChildSetup};

/// Start one worker for `pool`, as the tenant's user, with the listening socket on fd 3 and the
/// control pipe on fd 4. Its stderr is relayed to the log, each line tagged with the tenant.
pub fn spawn(pool: &Arc<Pool>, slot: usize) -> std::io::Result<(Child, Control)> {
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
    if s.max_requests > 0 {
        let jitter = (jitter_fraction() * (s.max_requests_jitter as f64 + 1.0)) as u64;
        cmd.arg("--max-requests")
            .arg((s.max_requests + jitter.min(s.max_requests_jitter)).to_string());
    }
    if s.gc_freeze {
        cmd.arg("--gc-freeze");
    }
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
    let pid = child.id().unwrap_or(0);
    if let Some(err) = child.stderr.take() {
        let tenant = spec.name.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(err).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::info!(target: "paddock::worker", tenant = %tenant, pid, slot, "{line}");
            }
        });
    }
    Ok((child, Control::new(ctl_read)?))
}

/// Frames a worker sends on its control pipe (`Ready`, `Retire`).
pub struct Control {
    rx: Option<pipe::Receiver>,
    buf: Vec<u8>,
}

impl Control {
    fn new(fd: OwnedFd) -> std::io::Result<Control> {
        Ok(Control { rx: Some(pipe::Receiver::from_owned_fd(fd)?), buf: Vec::with_capacity(64) })
    }

    /// Wait for the `Ready` frame; an error if the pipe closes (the worker died) first.
    pub async fn wait_ready(&mut self) -> Result<(), String> {
        match self.next().await {
            Some(Frame::Ready(_)) => Ok(()),
            Some(other) => Err(format!("unexpected control frame {:?}", other.frame_type())),
            None => Err("it closed its control pipe".to_string()),
        }
    }

    /// The next frame; `None` once the pipe is closed or broken (then it pends forever, so a
    /// `select!` on it waits for the other branches).
    pub async fn next(&mut self) -> Option<Frame> {
        let Some(rx) = self.rx.as_mut() else {
            return std::future::pending().await;
        };
        loop {
            match decode(&self.buf) {
                Ok(Some((f, used))) => {
                    self.buf.drain(..used);
                    return Some(f);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!("bad frame on a worker's control pipe: {e}");
                    self.rx = None;
                    return None;
                }
            }
            let mut chunk = [0u8; 256];
            match rx.read(&mut chunk).await {
                Ok(n) if n > 0 => self.buf.extend_from_slice(&chunk[..n]),
                _ => {
                    self.rx = None;
                    return None;
                }
            }
        }
    }
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

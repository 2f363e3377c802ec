//! A trial start for `paddock check`: one `paddock-worker --check` started exactly as
//! [`spawn`](crate::spawn) starts a worker directly (same command line, scrubbed environment,
//! working directory, umask, rlimits and user), which imports the app and exits without
//! serving. No socket, no control pipe, no cgroup.

use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;

use crate::identity::Identity;
use crate::spawn::worker_command;
use paddock_config::tenant::TenantSpec;

/// Most bytes of the worker's stderr kept for the report (the traceback's end matters).
const STDERR_KEEP: usize = 64 * 1024;

/// Why the trial import failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    /// What happened, one line: `exit code 3 (the app could not be loaded)`, a timeout, ...
    pub what: String,
    /// The worker's stderr (its log lines and the Python traceback), possibly cut at the front.
    pub stderr: String,
}

/// Start `worker_bin --check` for `spec` as `identity`; `Ok` once it exited 0 within
/// `timeout`. On a timeout its whole process group is killed.
pub async fn import_app(
    spec: &TenantSpec,
    identity: &Identity,
    worker_bin: &std::path::Path,
    timeout: Duration,
) -> Result<(), Failed> {
    let mut cmd = worker_command(spec, identity, worker_bin, Vec::new(), None);
    cmd.arg("--check");
    let failed = |what: String, stderr: String| Failed { what, stderr };
    let mut child = cmd.spawn().map_err(|e| {
        failed(format!("cannot start {}: {e}", worker_bin.display()), String::new())
    })?;
    let pid = child.id();
    let mut err = child.stderr.take();
    let read_err = async {
        let mut buf = Vec::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_end(&mut buf).await;
        }
        buf
    };
    let waited = tokio::time::timeout(timeout, async {
        let (status, buf) = tokio::join!(child.wait(), read_err);
        (status, buf)
    })
    .await;
    let text = |buf: &[u8]| {
        let from = buf.len().saturating_sub(STDERR_KEEP);
        String::from_utf8_lossy(&buf[from..]).into_owned()
    };
    match waited {
        Ok((Ok(st), _)) if st.success() => Ok(()),
        Ok((Ok(st), buf)) => {
            let what = match st.code() {
                Some(3) => "exit code 3: the app could not be loaded".to_string(),
                Some(c) => format!("exit code {c}"),
                None => format!("ended by {st}"),
            };
            Err(failed(what, text(&buf)))
        }
        Ok((Err(e), buf)) => Err(failed(format!("cannot wait for it: {e}"), text(&buf))),
        Err(_) => {
            // It leads its own process group (`setsid` in `sys::prepare`).
            if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
            Err(failed(
                format!("the app did not load within {}s (startup_timeout)", timeout.as_secs_f64()),
                String::new(),
            ))
        }
    }
}

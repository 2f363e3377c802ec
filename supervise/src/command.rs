//! One operator command run for a tenant, as the tenant's user: a site's provisioning at
//! signup, its backup. It runs the tenant's code (its `trac-admin`, its plugins), so it gets
//! what a worker gets: the tenant's credentials, the pool limits, a scrubbed environment, a
//! session of its own; and a deadline, after which that whole session is killed.

use std::path::Path;
use std::process::{Output, Stdio};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use paddock_sys::{ChildSetup, Creds, Limits};

/// The command, where and as whom.
pub struct TenantCommand<'a> {
    pub argv: &'a [String],
    /// Working directory, also `HOME`.
    pub dir: &'a Path,
    /// `None`: as the user paddock runs as (not root).
    pub creds: Option<Creds>,
    pub umask: u32,
    pub limits: Limits,
}

/// Why the command did not succeed; each names the command as it ran.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("an empty command")]
    Empty,
    #[error("cannot run `{shown}`: {source}")]
    Spawn { shown: String, source: std::io::Error },
    #[error("`{shown}`: {source}")]
    Wait { shown: String, source: std::io::Error },
    #[error("`{shown}` failed ({status}): {output}")]
    Failed { shown: String, status: std::process::ExitStatus, output: String },
    #[error("`{shown}` did not finish within {after:?}")]
    Timeout { shown: String, after: std::time::Duration },
}

/// Run it; its output once it exited 0 before `deadline`.
pub async fn run(
    c: &TenantCommand<'_>,
    deadline: tokio::time::Instant,
) -> Result<Output, CommandError> {
    let shown = c.argv.join(" ");
    let Some((prog, args)) = c.argv.split_first() else { return Err(CommandError::Empty) };
    let mut cmd = tokio::process::Command::new(prog);
    cmd.args(args)
        .current_dir(c.dir)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", c.dir)
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    paddock_sys::prepare(
        &mut cmd,
        ChildSetup {
            creds: c.creds.clone(),
            umask: c.umask,
            fds: Vec::new(),
            cgroup_procs: None,
            confine: Some(c.limits),
        },
    );
    let child =
        cmd.spawn().map_err(|source| CommandError::Spawn { shown: shown.clone(), source })?;
    let pid = child.id();
    let started = tokio::time::Instant::now();
    match tokio::time::timeout_at(deadline, child.wait_with_output()).await {
        Ok(Ok(out)) if out.status.success() => Ok(out),
        Ok(Ok(out)) => {
            let text = if out.stderr.is_empty() { &out.stdout } else { &out.stderr };
            Err(CommandError::Failed {
                shown,
                status: out.status,
                output: tail(&String::from_utf8_lossy(text)),
            })
        }
        Ok(Err(source)) => Err(CommandError::Wait { shown, source }),
        Err(_) => {
            // It leads its own session (setsid in `prepare`): kill everything it started.
            if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
            Err(CommandError::Timeout { shown, after: deadline.saturating_duration_since(started) })
        }
    }
}

/// Characters of a failed command's output kept in its error.
pub const OUTPUT_TAIL: usize = 1500;

/// The end of a command's output (where the error usually is), trimmed to [`OUTPUT_TAIL`]
/// characters.
pub fn tail(s: &str) -> String {
    let s = s.trim();
    let n = s.chars().count();
    if n <= OUTPUT_TAIL {
        return s.to_string();
    }
    format!("…{}", s.chars().skip(n - OUTPUT_TAIL).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        crate::spawn::limits(&paddock_config::Limits::default(), None)
    }

    #[tokio::test]
    async fn output_failure_and_timeout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let deadline = || tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let ok = argv(&["/bin/sh", "-c", "echo hello; pwd"]);
        let c = TenantCommand {
            argv: &ok,
            dir: dir.path(),
            creds: None,
            umask: 0o027,
            limits: limits(),
        };
        let out = run(&c, deadline()).await.expect("runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.starts_with("hello\n") && text.contains(&*dir.path().to_string_lossy()),
            "{text}"
        );
        let bad = argv(&["/bin/sh", "-c", "echo doomed >&2; exit 3"]);
        let c = TenantCommand { argv: &bad, ..c };
        match run(&c, deadline()).await {
            Err(CommandError::Failed { output, status, .. }) => {
                assert_eq!(output, "doomed");
                assert_eq!(status.code(), Some(3));
            }
            other => panic!("{other:?}"),
        }
        let slow = argv(&["/bin/sh", "-c", "sleep 30"]);
        let c = TenantCommand { argv: &slow, ..c };
        let soon = tokio::time::Instant::now() + std::time::Duration::from_millis(300);
        assert!(matches!(run(&c, soon).await, Err(CommandError::Timeout { .. })));
        let none: Vec<String> = Vec::new();
        let c = TenantCommand { argv: &none, ..c };
        assert!(matches!(run(&c, deadline()).await, Err(CommandError::Empty)));
    }

    #[test]
    fn the_tail_is_the_end() {
        assert_eq!(tail(" ok \n"), "ok");
        let long = format!("{}é{}", "y".repeat(5000), "end");
        assert_eq!(tail(&long).chars().count(), OUTPUT_TAIL + 1);
        assert!(tail(&long).ends_with("éend") && tail(&long).starts_with('…'));
    }
}

//! Telling the service manager (systemd, `Type=notify`) where the server is: `READY=1` once it
//! listens, `RELOADING=1` with `MONOTONIC_USEC` while a reload runs and `READY=1` again after,
//! `STOPPING=1` when shutdown starts, and a one-line `STATUS`. Without `NOTIFY_SOCKET` (not
//! started by systemd) every call does nothing. A failure to notify is logged once per kind,
//! never fatal: serving matters more than the manager's view of it.

use std::sync::atomic::{AtomicBool, Ordering};

use sd_notify::NotifyState;

/// Set once this process has handed the service over to a successor ([`hand_over`]): its own
/// shutdown is then none of the manager's business.
static HANDED_OVER: AtomicBool = AtomicBool::new(false);

fn send(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() || HANDED_OVER.load(Ordering::Relaxed) {
        return;
    }
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!("cannot notify the service manager: {e}");
    }
}

/// Listening and serving.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload starts (the manager waits for the next `READY=1`).
pub fn reloading() {
    send(&[
        NotifyState::Reloading,
        NotifyState::monotonic_usec_now().unwrap_or(NotifyState::Status("reloading")),
    ]);
}

/// Shutdown started.
pub fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

/// The upgrade's successor `pid` serves now: it becomes the service's main process (so
/// `NotifyAccess=main` accepts its messages from here on), and this process says nothing more
/// (its drain is not the service stopping).
pub fn hand_over(pid: u32) {
    send(&[
        NotifyState::MainPid(pid),
        NotifyState::Ready,
        NotifyState::Status(&format!("upgraded: serving from pid {pid}")),
    ]);
    HANDED_OVER.store(true, Ordering::Relaxed);
}

//! The server's shutdown phases, published on a `watch` that every task stops from.
//!
//! ```text
//! Running --Stop::Graceful--> Draining --drained--> Stopping { fast: false } --> Stopped
//!    |                           |  (drain_timeout passed, or a second stop request)
//!    |                           +--------------------> Stopping { fast: true }  --> Stopped
//!    +------------Stop::Fast----------------------------^
//! ```
//!
//! `Draining`: the front door accepts no more connections and open ones finish their current
//! request (up to `drain_timeout`). `Stopping`: open client connections are closed, the admin
//! listener, reloader and monitor end, and the pools stop; `fast` pools kill their busy
//! workers instead of giving them `graceful_timeout`. Phases only move forward.

use tokio::sync::watch;

/// Where the server is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Accepting and serving.
    Running,
    /// No new connections; open ones finish what they are doing (SIGTERM).
    Draining,
    /// Client connections closed; pools stopping (`fast`: busy workers are killed).
    Stopping { fast: bool },
    /// Every pool has stopped; `run` returns.
    Stopped,
}

impl Phase {
    fn rank(self) -> u8 {
        match self {
            Phase::Running => 0,
            Phase::Draining => 1,
            Phase::Stopping { .. } => 2,
            Phase::Stopped => 3,
        }
    }

    /// Whether new connections are accepted.
    pub fn accepting(self) -> bool {
        self == Phase::Running
    }

    /// Whether open client connections must close now (`Stopping` or later).
    pub fn closing(self) -> bool {
        self.rank() >= 2
    }
}

/// A request to stop, from a signal (or a test).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM: drain, then stop.
    Graceful,
    /// SIGINT, or a second request during a drain: close everything now.
    Fast,
}

/// The phase, owned by the server and shared with whoever asks it to stop.
#[derive(Debug)]
pub struct Phases {
    tx: watch::Sender<Phase>,
}

impl Default for Phases {
    fn default() -> Self {
        Phases::new()
    }
}

impl Phases {
    pub fn new() -> Self {
        Phases { tx: watch::Sender::new(Phase::Running) }
    }

    pub fn get(&self) -> Phase {
        *self.tx.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<Phase> {
        self.tx.subscribe()
    }

    /// Ask the server to stop. While running, `Graceful` starts the drain and `Fast` skips
    /// it; any request during the drain escalates to a fast stop; later ones change nothing.
    pub fn request(&self, stop: Stop) {
        let next = match (self.get(), stop) {
            (Phase::Running, Stop::Graceful) => Phase::Draining,
            (Phase::Running, Stop::Fast) | (Phase::Draining, _) => Phase::Stopping { fast: true },
            _ => return,
        };
        self.advance(next);
    }

    /// Move to `next` if it is later than the current phase (and log the change).
    pub(crate) fn advance(&self, next: Phase) -> bool {
        let moved = self.tx.send_if_modified(|now| {
            if next.rank() <= now.rank() {
                return false;
            }
            *now = next;
            true
        });
        if moved {
            match next {
                Phase::Running => {}
                Phase::Draining => {
                    crate::notify::stopping("draining open connections");
                    tracing::info!(
                        phase = "draining",
                        "shutdown: no longer accepting connections; draining open ones"
                    )
                }
                Phase::Stopping { fast: true } => {
                    crate::notify::stopping("stopping at once");
                    tracing::info!(
                        phase = "stopping",
                        fast = true,
                        "shutdown: closing open connections and stopping pools at once"
                    )
                }
                Phase::Stopping { fast: false } => {
                    crate::notify::stopping("stopping the pools");
                    tracing::info!(
                        phase = "stopping",
                        fast = false,
                        "shutdown: connections drained; stopping pools gracefully"
                    )
                }
                Phase::Stopped => tracing::info!(phase = "stopped", "stopped"),
            }
        }
        moved
    }
}

/// Resolves once `rx` shows a phase for which `pred` holds (or the sender is gone).
pub async fn reached(mut rx: watch::Receiver<Phase>, pred: fn(Phase) -> bool) {
    let _ = rx.wait_for(|p| pred(*p)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigterm_drains_and_a_second_request_escalates() {
        let p = Phases::new();
        let rx = p.subscribe();
        p.request(Stop::Graceful);
        assert_eq!(p.get(), Phase::Draining);
        assert!(!p.get().accepting() && !p.get().closing());
        p.request(Stop::Graceful);
        assert_eq!(p.get(), Phase::Stopping { fast: true });
        assert!(p.get().closing());
        assert!(rx.has_changed().unwrap_or(false));
    }

    #[test]
    fn sigint_skips_the_drain_and_phases_never_go_back() {
        let p = Phases::new();
        p.request(Stop::Fast);
        assert_eq!(p.get(), Phase::Stopping { fast: true });
        assert!(!p.advance(Phase::Draining));
        assert!(!p.advance(Phase::Stopping { fast: false }));
        p.request(Stop::Graceful);
        assert_eq!(p.get(), Phase::Stopping { fast: true });
        assert!(p.advance(Phase::Stopped));
        assert!(!p.advance(Phase::Running));
        assert_eq!(p.get(), Phase::Stopped);
    }

    #[tokio::test]
    async fn reached_resolves_on_the_phase() {
        let p = Phases::new();
        let wait = tokio::spawn(reached(p.subscribe(), Phase::closing));
        p.request(Stop::Graceful);
        tokio::task::yield_now().await;
        assert!(!wait.is_finished());
        p.request(Stop::Fast);
        let done = tokio::time::timeout(std::time::Duration::from_secs(5), wait).await;
        assert!(matches!(done, Ok(Ok(()))));
    }
}

//! The server's shutdown phases, published on a `watch` that every task stops from.
//!
//! ```text
//! Running --Stop::Graceful--> [Leaving -->] Draining --drained--> Stopping { fast: false } --> Stopped
//!    |                           |  (drain_timeout passed, or a second stop request)
//!    |                           +--------------------> Stopping { fast: true }  --> Stopped
//!    +------------Stop::Fast----------------------------^
//! ```
//!
//! `Leaving` (a cluster node only, [`Phases::leave_first`]): the node still accepts and
//! serves while it hands its tenants to other nodes; then `Draining`. A second SIGTERM skips
//! the rest of it.
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
    /// Accepting and serving, while a cluster node moves its tenants to other nodes.
    Leaving,
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
            Phase::Leaving => 1,
            Phase::Draining => 2,
            Phase::Stopping { .. } => 3,
            Phase::Stopped => 4,
        }
    }

    /// Whether new connections are accepted.
    pub fn accepting(self) -> bool {
        matches!(self, Phase::Running | Phase::Leaving)
    }

    /// Whether this process is on its way out (a binary upgrade must not start then).
    pub fn stopping(self) -> bool {
        self != Phase::Running
    }

    /// Whether open client connections must close now (`Stopping` or later).
    pub fn closing(self) -> bool {
        self.rank() >= 3
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
    /// A graceful stop hands the tenants over first ([`Phase::Leaving`]).
    leave_first: std::sync::atomic::AtomicBool,
}

impl Default for Phases {
    fn default() -> Self {
        Phases::new()
    }
}

impl Phases {
    pub fn new() -> Self {
        Phases {
            tx: watch::Sender::new(Phase::Running),
            leave_first: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn get(&self) -> Phase {
        *self.tx.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<Phase> {
        self.tx.subscribe()
    }

    /// Whether a graceful stop goes through [`Phase::Leaving`] (set by a cluster node; unset
    /// when a binary upgrade hands the node to its successor).
    pub fn leave_first(&self, yes: bool) {
        self.leave_first.store(yes, std::sync::atomic::Ordering::SeqCst);
    }

    /// Ask the server to stop. While running, `Graceful` starts the drain (a cluster node
    /// leaves first) and `Fast` skips it; a graceful request while leaving starts the drain;
    /// any other request during the drain escalates to a fast stop; later ones change nothing.
    pub fn request(&self, stop: Stop) {
        let leave = self.leave_first.load(std::sync::atomic::Ordering::SeqCst);
        let next = match (self.get(), stop) {
            (Phase::Running, Stop::Graceful) if leave => Phase::Leaving,
            (Phase::Running | Phase::Leaving, Stop::Graceful) => Phase::Draining,
            (Phase::Running | Phase::Leaving, Stop::Fast) | (Phase::Draining, _) => {
                Phase::Stopping { fast: true }
            }
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
                Phase::Leaving => {
                    crate::notify::stopping("moving this node's tenants to other nodes");
                    tracing::info!(
                        phase = "leaving",
                        "shutdown: moving this node's tenants to other nodes, still serving"
                    )
                }
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

    #[test]
    fn a_cluster_node_leaves_before_it_drains() {
        let p = Phases::new();
        p.leave_first(true);
        p.request(Stop::Graceful);
        assert_eq!(p.get(), Phase::Leaving);
        assert!(p.get().accepting() && p.get().stopping() && !p.get().closing());
        p.request(Stop::Graceful);
        assert_eq!(p.get(), Phase::Draining, "a second SIGTERM skips the rest of the hand-over");
        let p = Phases::new();
        p.leave_first(true);
        p.request(Stop::Graceful);
        p.request(Stop::Fast);
        assert_eq!(p.get(), Phase::Stopping { fast: true });
        let p = Phases::new();
        p.leave_first(true);
        p.leave_first(false);
        p.request(Stop::Graceful);
        assert_eq!(p.get(), Phase::Draining, "handed to a successor: no hand-over");
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

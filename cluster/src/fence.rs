//! Self-fencing, as pure arithmetic on an injected clock: when a node may serve its tenants.
//!
//! etcd expires a lease `ttl` after the last keep-alive it *received*; that is never earlier
//! than `ttl` after the node *sent* it. So a node that counts from the send time of its last
//! successful renewal and stops at `ttl - margin` has stopped `margin` before any other node
//! can claim its tenants, whatever the network or etcd did in between. The clock is
//! `CLOCK_BOOTTIME`, which (unlike `CLOCK_MONOTONIC`) also runs while the machine is
//! suspended, so a suspended and resumed host is fenced at once.

use std::fmt;
use std::time::Duration;

/// The node's standing, as the dispatch path must see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// The lease is renewed in time: claims hold, tenants may be served.
    Live,
    /// No successful renewal for `ttl - margin`: stop dispatching to this node's tenants and
    /// stop their workers now. The claims still exist in etcd (until the lease expires), so no
    /// other node can take them yet; a renewal that succeeds makes the node `Live` again with
    /// its claims intact.
    Fenced,
    /// etcd says the lease is gone (or the node left): every claim is void. The node joins
    /// again with a new lease as soon as etcd answers, and is `Live` with no claims.
    Lost,
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Health::Live => "live",
            Health::Fenced => "fenced",
            Health::Lost => "lost",
        })
    }
}

/// The timing of one lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    pub ttl: Duration,
    /// Time left, when a node fences itself, before its lease can expire: for stopping
    /// workers and for clock-rate differences between this host and etcd's leader.
    pub margin: Duration,
}

impl Fence {
    /// `margin = max(2 s, ttl / 4)`, kept below `ttl` (the configuration requires ttl >= 3 s).
    pub fn new(ttl: Duration) -> Fence {
        let margin = (ttl / 4).max(Duration::from_secs(2)).min(ttl / 2 + ttl / 4);
        Fence { ttl, margin }
    }

    /// How long after a renewal was sent the node may serve: `ttl - margin`.
    pub fn window(&self) -> Duration {
        self.ttl.saturating_sub(self.margin)
    }

    /// Time between renewals: `ttl / 3`, but at least two tries per fence window, so one lost
    /// or slow renewal does not fence the node.
    pub fn interval(&self) -> Duration {
        (self.ttl / 3).min(self.window() / 2).max(Duration::from_millis(100))
    }

    /// Whether a node whose last successful renewal was *sent* at `last_ok` may still serve at
    /// `now` (both on the same clock).
    pub fn live_at(&self, last_ok: Duration, now: Duration) -> bool {
        now < last_ok + self.window()
    }

    /// When that ends.
    pub fn deadline(&self, last_ok: Duration) -> Duration {
        last_ok + self.window()
    }
}

/// The transitions, applied under the health channel's lock by the keep-alive and watchdog
/// tasks. Each returns the new health.
pub(crate) fn after_renewal(
    fence: &Fence,
    current: Health,
    last_ok: Duration,
    now: Duration,
) -> Health {
    match current {
        // A renewal of the lease that was lost cannot bring it back.
        Health::Lost => Health::Lost,
        _ if fence.live_at(last_ok, now) => Health::Live,
        _ => Health::Fenced,
    }
}

pub(crate) fn after_check(
    fence: &Fence,
    current: Health,
    last_ok: Duration,
    now: Duration,
) -> Health {
    match current {
        Health::Live if !fence.live_at(last_ok, now) => Health::Fenced,
        h => h,
    }
}

/// The clock that fencing counts on: `CLOCK_BOOTTIME` where the kernel has it (Linux 2.6.39
/// on), else the monotonic clock of `std::time::Instant`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Clock {
    Boot,
    Instant(std::time::Instant),
}

impl Clock {
    pub(crate) fn new() -> Clock {
        match nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME) {
            Ok(_) => Clock::Boot,
            Err(_) => Clock::Instant(std::time::Instant::now()),
        }
    }

    pub(crate) fn now(&self) -> Duration {
        match self {
            Clock::Boot => match nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME) {
                Ok(ts) => Duration::from(ts),
                // It answered once; should it ever fail, fence rather than serve.
                Err(_) => Duration::MAX / 2,
            },
            Clock::Instant(base) => base.elapsed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: f64) -> Duration {
        Duration::from_secs_f64(x)
    }

    #[test]
    fn margins_and_windows() {
        let f = Fence::new(s(10.0));
        assert_eq!(f.margin, s(2.5));
        assert_eq!(f.window(), s(7.5));
        assert_eq!(f.interval(), s(10.0) / 3);
        let f = Fence::new(s(4.0));
        assert_eq!(f.margin, s(2.0));
        assert_eq!(f.window(), s(2.0));
        assert_eq!(f.interval(), s(1.0));
        let f = Fence::new(s(3.0));
        assert_eq!(f.margin, s(2.0));
        assert_eq!(f.interval(), s(0.5));
        // Long leases: a quarter of the ttl.
        assert_eq!(Fence::new(s(60.0)).margin, s(15.0));
    }

    #[test]
    fn fenced_strictly_before_expiry() {
        for ttl in [3.0, 4.0, 10.0, 30.0] {
            let f = Fence::new(s(ttl));
            let sent = s(100.0);
            // The server expires the lease no earlier than `sent + ttl`.
            let earliest_expiry = sent + f.ttl;
            assert!(f.deadline(sent) + Duration::from_secs(2) <= earliest_expiry, "ttl {ttl}");
            assert!(f.live_at(sent, f.deadline(sent) - s(0.001)));
            assert!(!f.live_at(sent, f.deadline(sent)));
        }
    }

    #[test]
    fn transitions_on_an_injected_clock() {
        let f = Fence::new(s(4.0));
        // Renewed at 10 (sent), answered at 10.1: live until 12.
        let mut h = after_renewal(&f, Health::Live, s(10.0), s(10.1));
        assert_eq!(h, Health::Live);
        h = after_check(&f, h, s(10.0), s(11.9));
        assert_eq!(h, Health::Live);
        h = after_check(&f, h, s(10.0), s(12.0));
        assert_eq!(h, Health::Fenced);
        // A check never revives.
        assert_eq!(after_check(&f, h, s(10.0), s(10.5)), Health::Fenced);
        // A late answer to a renewal sent long ago does not revive either.
        assert_eq!(after_renewal(&f, h, s(10.5), s(12.6)), Health::Fenced);
        // A renewal sent at 12.5 and answered at 12.6 does: the claims were never lost.
        h = after_renewal(&f, h, s(12.5), s(12.6));
        assert_eq!(h, Health::Live);
        // Lost is left only by joining again (a new lease), not by renewing the old one.
        assert_eq!(after_renewal(&f, Health::Lost, s(13.0), s(13.1)), Health::Lost);
        assert_eq!(after_check(&f, Health::Lost, s(13.0), s(20.0)), Health::Lost);
    }

    #[test]
    fn a_pause_fences_without_any_task_running() {
        // What `Node::is_live` computes: the clock alone, after a SIGSTOP of 5 s.
        let f = Fence::new(s(4.0));
        let last_ok = s(50.0);
        assert!(f.live_at(last_ok, s(51.0)));
        assert!(!f.live_at(last_ok, s(56.0)));
    }

    #[test]
    fn the_clock_moves_forward() {
        let c = Clock::new();
        let a = c.now();
        std::thread::sleep(Duration::from_millis(5));
        assert!(c.now() > a);
    }
}

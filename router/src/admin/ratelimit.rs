//! Public signups per client address: at most `limit` in any `window` (a sliding log per
//! address). Memory is bounded: past [`MAX_ADDRESSES`] tracked addresses, expired ones are
//! dropped, and if all are live, new addresses are refused until some expire.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MAX_ADDRESSES: usize = 10_000;

#[derive(Default)]
pub struct RateLimit {
    hits: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl RateLimit {
    /// Count one attempt from `ip`; `Err(wait)` if it is over the limit (not counted then).
    pub fn hit(
        &self,
        ip: IpAddr,
        limit: u32,
        window: Duration,
        now: Instant,
    ) -> Result<(), Duration> {
        if limit == 0 {
            return Ok(());
        }
        let mut hits = self.hits.lock().unwrap_or_else(|e| e.into_inner());
        if hits.len() >= MAX_ADDRESSES && !hits.contains_key(&ip) {
            hits.retain(|_, q| q.back().is_some_and(|&t| now.duration_since(t) < window));
            if hits.len() >= MAX_ADDRESSES {
                return Err(window);
            }
        }
        let q = hits.entry(ip).or_default();
        while q.front().is_some_and(|&t| now.duration_since(t) >= window) {
            q.pop_front();
        }
        if q.len() >= limit as usize {
            let oldest = q.front().copied().unwrap_or(now);
            return Err(window.saturating_sub(now.duration_since(oldest)));
        }
        q.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_window_per_address() {
        let r = RateLimit::default();
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        let w = Duration::from_secs(600);
        let t0 = Instant::now();
        for i in 0..5 {
            assert!(r.hit(a, 5, w, t0 + Duration::from_secs(i)).is_ok());
        }
        let wait = r.hit(a, 5, w, t0 + Duration::from_secs(10)).expect_err("limited");
        assert_eq!(wait, Duration::from_secs(590));
        assert!(r.hit(b, 5, w, t0 + Duration::from_secs(10)).is_ok(), "per address");
        assert!(r.hit(a, 5, w, t0 + Duration::from_secs(600)).is_ok(), "oldest expired");
        assert!(r.hit(a, 0, w, t0).is_ok(), "0: no limit");
    }
}

//! A token bucket, for rate limits.

use std::time::Instant;

/// A token bucket: `rate` tokens a second, at most `burst` saved; full at first use.
#[derive(Debug, Default)]
pub struct Bucket {
    tokens: f64,
    last: Option<Instant>,
}

impl Bucket {
    /// Take one token at `now`; false when there is none.
    pub fn take(&mut self, now: Instant, rate: f64, burst: f64) -> bool {
        self.tokens = match self.last {
            None => burst,
            Some(last) => {
                let earned = now.saturating_duration_since(last).as_secs_f64() * rate;
                (self.tokens + earned).min(burst)
            }
        };
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let mut b = Bucket::default();
        let t0 = Instant::now();
        let allowed = (0..3000).filter(|_| b.take(t0, 200.0, 2000.0)).count();
        assert_eq!(allowed, 2000);
        assert!(!b.take(t0 + Duration::from_millis(1), 200.0, 2000.0));
        // One second later: 200 more, not a new burst.
        let t1 = t0 + Duration::from_secs(1);
        let allowed = (0..1000).filter(|_| b.take(t1, 200.0, 2000.0)).count();
        assert!((199..=201).contains(&allowed), "{allowed}");
        // A long quiet time refills up to the burst only.
        let t2 = t1 + Duration::from_secs(3600);
        let allowed = (0..5000).filter(|_| b.take(t2, 200.0, 2000.0)).count();
        assert_eq!(allowed, 2000);
    }
}

//! Rolling rate estimators and the token-bucket rate limiter, both fed `now` by the caller.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Bytes per second over a rolling window, kept in `BUCKETS` time buckets. Young estimators divide by the time
/// since their first sample so a new peer's rate is not diluted by time it was not connected.
#[derive(Debug, Clone)]
pub struct RateEstimator {
    width: Duration,
    start: Option<Instant>,
    /// (bucket number since `start`, bytes)
    buckets: VecDeque<(u64, u64)>,
    total: u64,
}

const BUCKETS: u32 = 10;

impl RateEstimator {
    pub fn new(window: Duration) -> Self {
        Self {
            width: window / BUCKETS,
            start: None,
            buckets: VecDeque::new(),
            total: 0,
        }
    }

    fn bucket_of(&self, now: Instant) -> u64 {
        let start = self.start.unwrap_or(now);
        (now.saturating_duration_since(start).as_nanos() / self.width.as_nanos().max(1)) as u64
    }

    fn expire(&mut self, cur: u64) {
        while let Some((b, _)) = self.buckets.front() {
            if *b + u64::from(BUCKETS) <= cur {
                self.buckets.pop_front();
            } else {
                break;
            }
        }
    }

    /// Count `bytes` moved at `now`.
    pub fn add(&mut self, now: Instant, bytes: u64) {
        if self.start.is_none() {
            self.start = Some(now);
        }
        self.total += bytes;
        let cur = self.bucket_of(now);
        self.expire(cur);
        match self.buckets.back_mut() {
            Some((b, n)) if *b == cur => *n += bytes,
            _ => self.buckets.push_back((cur, bytes)),
        }
    }

    /// Bytes per second over the window ending at `now`.
    pub fn rate(&self, now: Instant) -> f64 {
        let Some(start) = self.start else { return 0.0 };
        let cur = self.bucket_of(now);
        let sum: u64 = self
            .buckets
            .iter()
            .filter(|(b, _)| *b + u64::from(BUCKETS) > cur)
            .map(|(_, n)| *n)
            .sum();
        let since = now.saturating_duration_since(start);
        let into = since.saturating_sub(self.width * (cur.min(u64::from(u32::MAX)) as u32));
        let span = (self.width * (BUCKETS - 1) + into)
            .min(since)
            .max(Duration::from_millis(250));
        sum as f64 / span.as_secs_f64()
    }

    /// All bytes ever counted.
    pub fn total(&self) -> u64 {
        self.total
    }
}

/// A token bucket. Tokens may go negative: a consumer may take a whole block whenever the balance is positive
/// and then waits out the debt, so limits far below one block per second still average out exactly.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// `rate` bytes per second, at most `burst` bytes saved up (at least one byte).
    pub fn new(now: Instant, rate: u64, burst: u64) -> Self {
        let burst = burst.max(1) as f64;
        Self {
            rate: rate as f64,
            burst,
            tokens: burst,
            last: now,
        }
    }

    pub fn rate(&self) -> u64 {
        self.rate as u64
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
    }

    /// Take `n` bytes if the balance is positive (possibly going into debt); false if the caller must wait.
    pub fn try_take(&mut self, now: Instant, n: u64) -> bool {
        self.refill(now);
        if self.tokens > 0.0 {
            self.tokens -= n as f64;
            true
        } else {
            false
        }
    }

    /// When the balance will be positive again (`now` if it is).
    pub fn ready_at(&mut self, now: Instant) -> Instant {
        self.refill(now);
        if self.tokens > 0.0 || self.rate <= 0.0 {
            return now;
        }
        now + Duration::from_secs_f64((-self.tokens + 1.0) / self.rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolling_rate_follows_window() {
        let t0 = crate::sim::swarm::epoch();
        let mut r = RateEstimator::new(Duration::from_secs(20));
        assert_eq!(r.rate(t0), 0.0);
        for s in 0..40u64 {
            r.add(t0 + Duration::from_secs(s), 1000);
        }
        let v = r.rate(t0 + Duration::from_secs(40));
        assert!((900.0..1100.0).contains(&v), "{v}");
        // Silence for a whole window -> zero.
        assert_eq!(r.rate(t0 + Duration::from_secs(70)), 0.0);
        // A young estimator is not diluted by the window.
        let mut y = RateEstimator::new(Duration::from_secs(20));
        y.add(t0, 0);
        y.add(t0 + Duration::from_secs(1), 2000);
        let v = y.rate(t0 + Duration::from_secs(2));
        assert!((900.0..1100.0).contains(&v), "{v}");
        assert_eq!(y.total(), 2000);
    }

    #[test]
    fn token_bucket_below_one_block_per_second() {
        let t0 = crate::sim::swarm::epoch();
        // 1000 B/s, 16 KiB blocks: one block every ~16 s on average.
        let mut b = TokenBucket::new(t0, 1000, 1000);
        let mut now = t0;
        let mut sent = 0u64;
        let end = t0 + Duration::from_secs(600);
        while now < end {
            if b.try_take(now, 16384) {
                sent += 16384;
            }
            now = b.ready_at(now).max(now + Duration::from_millis(1));
        }
        let avg = sent as f64 / 600.0;
        assert!((950.0..1100.0).contains(&avg), "{avg}");
    }

    #[test]
    fn token_bucket_burst_is_capped() {
        let t0 = crate::sim::swarm::epoch();
        let mut b = TokenBucket::new(t0, 100_000, 50_000);
        let later = t0 + Duration::from_secs(100);
        let mut n = 0;
        while b.try_take(later, 16384) {
            n += 1;
        }
        assert_eq!(
            n, 4,
            "50 000 bytes of burst allow 4 blocks (the last into debt)"
        );
        assert!(b.ready_at(later) > later);
    }
}

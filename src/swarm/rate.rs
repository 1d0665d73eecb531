//! Rolling rate estimators, the token bucket, and [`Limiter`]: a token bucket shared by every torrent (and so
//! every peer) of a process, all fed `now` by the caller.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
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

    /// How many of up to `max` units of `unit` bytes may be taken now (the last possibly into debt), without
    /// taking them: see [`TokenBucket::take`].
    pub fn allowance(&mut self, now: Instant, unit: u64, max: usize) -> usize {
        self.refill(now);
        if self.tokens <= 0.0 {
            return 0;
        }
        let unit = unit.max(1) as f64;
        // Units that fit whole, plus one into debt while a positive remainder is left.
        let n = (self.tokens / unit).ceil();
        if n >= max as f64 {
            max
        } else {
            n as usize
        }
    }

    /// Take `n` bytes unconditionally (the balance may go negative).
    pub fn take(&mut self, now: Instant, n: u64) {
        self.refill(now);
        self.tokens -= n as f64;
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

/// A token bucket shared by every torrent of a session (clone the handle into each [`TorrentConfig`]): all peers
/// of the process draw from one budget. The burst is a quarter second of the rate, at least one block, so a
/// limit below one block per second still averages out exactly (the bucket goes into debt by up to one block).
/// Plain `std` locking, held only for a few arithmetic operations; no clock of its own.
///
/// [`TorrentConfig`]: crate::swarm::actions::TorrentConfig
#[derive(Debug, Clone)]
pub struct Limiter(Arc<Mutex<TokenBucket>>);

impl Limiter {
    /// `rate` bytes per second starting at `now`, burst `max(rate / 4, 16 KiB)`.
    pub fn new(now: Instant, rate: u64) -> Self {
        let burst = (rate / 4).max(u64::from(crate::wire::message::BLOCK_SIZE));
        Self::with_burst(now, rate, burst)
    }

    pub fn with_burst(now: Instant, rate: u64, burst: u64) -> Self {
        Limiter(Arc::new(Mutex::new(TokenBucket::new(now, rate, burst))))
    }

    /// The bucket, locked (a poisoned lock is still usable: the bucket is always consistent).
    pub fn lock(&self) -> MutexGuard<'_, TokenBucket> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn rate(&self) -> u64 {
        self.lock().rate()
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

    #[test]
    fn limiter_below_one_block_per_second_by_allowance() {
        let t0 = crate::sim::swarm::epoch();
        // 2000 B/s: one 16 KiB block every ~8 s; over 800 s about 100 blocks (+ the one-block burst).
        let l = Limiter::new(t0, 2000);
        let mut now = t0;
        let mut blocks = 0u64;
        let end = t0 + Duration::from_secs(800);
        while now < end {
            let mut b = l.lock();
            let n = b.allowance(now, 16384, 8);
            assert!(n <= 1, "the burst is one block at this rate");
            b.take(now, n as u64 * 16384);
            blocks += n as u64;
            now = b.ready_at(now).max(now + Duration::from_millis(1));
        }
        assert!((98..=102).contains(&blocks), "{blocks}");
    }

    #[test]
    fn limiter_clones_share_one_budget() {
        let t0 = crate::sim::swarm::epoch();
        let a = Limiter::new(t0, 64 * 1024);
        let b = a.clone();
        let mut got = [0u64; 2];
        // Two consumers (torrents) drawing 16 KiB blocks in turn for 30 s: together they get the rate once.
        for step in 0..30_000u64 {
            let now = t0 + Duration::from_millis(step);
            for j in 0..2 {
                // Whoever asks first when the budget turns positive gets it: ask in turns.
                let i = (j + step as usize) % 2;
                if [&a, &b][i].lock().try_take(now, 16384) {
                    got[i] += 16384;
                }
            }
        }
        let total = (got[0] + got[1]) as f64 / 30.0;
        assert!(
            (64.0 * 1024.0..68.0 * 1024.0).contains(&total),
            "{total} B/s"
        );
        assert!(got.iter().all(|g| *g > 0), "{got:?}");
    }

    #[test]
    fn limiter_burst_is_a_quarter_second_or_one_block() {
        let t0 = crate::sim::swarm::epoch();
        let later = t0 + Duration::from_secs(1000);
        // 1 MiB/s: 256 KiB saved up at most = 16 blocks.
        let l = Limiter::new(t0, 1 << 20);
        assert_eq!(l.lock().allowance(later, 16384, 1000), 16);
        // 1 KiB/s: one block at most, however long idle.
        let l = Limiter::new(t0, 1024);
        assert_eq!(l.lock().allowance(later, 16384, 1000), 1);
        l.lock().take(later, 16384);
        assert_eq!(l.lock().allowance(later, 16384, 1000), 0);
        assert_eq!(l.rate(), 1024);
    }
}

//! Per-source rate limiting of incoming datagrams: a token bucket per source IP (per IP *and port* for
//! loopback and private addresses, where many honest nodes share one IP), refilling at `rate` per second up to
//! `burst`, so a flooding source is dropped but recovers within seconds once it slows down. The table of sources
//! is capped; when full, idle (refilled) entries are evicted, and if none are, unknown sources share one bucket.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

pub struct RateLimiter {
    rate: f64,
    burst: f64,
    max_sources: usize,
    sources: HashMap<SocketAddr, (f64, Instant)>,
    overflow: (f64, Instant),
}

/// Whether an address is loopback or private (RFC 1918, link-local, unique local): exempt from per-IP rules.
pub fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified()
        }
        IpAddr::V6(v6) => v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

impl RateLimiter {
    pub fn new(rate: f64, burst: f64, max_sources: usize, now: Instant) -> RateLimiter {
        RateLimiter {
            rate,
            burst,
            max_sources,
            sources: HashMap::new(),
            overflow: (burst, now),
        }
    }

    /// Take one token for a datagram from `from`; false means drop it.
    pub fn allow(&mut self, now: Instant, from: SocketAddr) -> bool {
        let key = if is_local(from.ip()) {
            from
        } else {
            SocketAddr::new(from.ip(), 0)
        };
        if !self.sources.contains_key(&key) && self.sources.len() >= self.max_sources {
            self.evict_idle(now);
        }
        let (rate, burst) = (self.rate, self.burst);
        let bucket = if self.sources.contains_key(&key) || self.sources.len() < self.max_sources {
            self.sources.entry(key).or_insert((burst, now))
        } else {
            &mut self.overflow
        };
        let elapsed = now.saturating_duration_since(bucket.1).as_secs_f64();
        bucket.0 = (bucket.0 + elapsed * rate).min(burst);
        bucket.1 = now;
        if bucket.0 >= 1.0 {
            bucket.0 -= 1.0;
            true
        } else {
            false
        }
    }

    fn evict_idle(&mut self, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        self.sources.retain(|_, (tokens, at)| {
            *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < burst
        });
    }

    pub fn sources(&self) -> usize {
        self.sources.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn flood_is_cut_then_recovers_within_seconds() {
        let t0 = crate::sim::dht::epoch();
        let mut rl = RateLimiter::new(50.0, 100.0, 1000, t0);
        let src: SocketAddr = "203.0.113.5:1234".parse().unwrap();
        let other_port: SocketAddr = "203.0.113.5:999".parse().unwrap();
        let allowed = (0..1000).filter(|_| rl.allow(t0, src)).count();
        assert_eq!(allowed, 100);
        assert!(
            !rl.allow(t0, other_port),
            "public IPs are limited per IP, not per port"
        );
        let later = t0 + Duration::from_secs(3);
        assert!(
            (0..100).all(|_| rl.allow(later, src)),
            "recovered after the flood stopped"
        );
        // Loopback: per port, so one flooding local process does not lock out the others.
        let a: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:1001".parse().unwrap();
        while rl.allow(t0, a) {}
        assert!(rl.allow(t0, b));
    }

    #[test]
    fn source_table_is_bounded() {
        let t0 = crate::sim::dht::epoch();
        let mut rl = RateLimiter::new(50.0, 100.0, 64, t0);
        for i in 0..10_000u32 {
            let ip = std::net::Ipv4Addr::from(0x0b00_0000 + i);
            rl.allow(
                t0 + Duration::from_millis(u64::from(i)),
                SocketAddr::new(ip.into(), 1),
            );
            assert!(rl.sources() <= 64);
        }
    }
}

//! Stalled peers (issue 8; DESIGN §5 "a request outstanding past its timeout returns its blocks to the pool"):
//! the pure rules by which the torrent machine times out requests and drops a peer that unchokes us, takes our
//! requests and delivers nothing.
//!
//! - [`Delivery`] (one per connection): how the peer serves our requests — the *gap* before each requested
//!   block (from the later of the block's request and the peer's previous block), smoothed like TCP's SRTT, the
//!   requested blocks it delivered, and the request timeouts since its last block.
//! - [`StallConfig::timeout`]: the request timeout adapts to what the swarm delivers: `factor` × the larger of
//!   the peer's own gap and the median gap of the connected peers, within `[floor, ceiling]` (`ceiling` is
//!   `TorrentConfig::request_timeout`, DESIGN §5's fixed timeout); while no peer has delivered, `ceiling`.
//! - [`Delivery::on_timeout`]: the verdict at a timeout. A peer that never delivered a requested block on this
//!   connection is dropped at its first timeout; one that did is kept (its queue shrinks to one request, as
//!   before) until `max_timeouts` in a row pass with no block between.
//! - [`Stalls`]: an address dropped as stalled is refused (not dialled, its connections closed at once) for
//!   `backoff`, doubled at each repeat up to `max_backoff`; a bounded table. The torrent machine puts the
//!   peers it drops for a protocol violation there too (else the net layer dials them again at once).
//!
//! What this does not punish: a peer that chokes us (legal: its outstanding requests return to the pool at the
//! choke, so nothing of it can time out), a peer we want nothing from (no requests), and an honest peer on a
//! slow or lossy link, which delivers its first block within a few round trips (a 50 ms / 2% loss link: well
//! under a second; the `floor` is 10 s) and whose own gap stretches its timeout afterwards.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Most addresses [`Stalls`] remembers; past it, expired entries go, then the soonest to expire.
pub const MAX_STALLED_ADDRS: usize = 1024;

/// Tuning of the stall rule (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct StallConfig {
    /// The request timeout is this many block gaps.
    pub factor: f64,
    /// The shortest request timeout (also the shortest time a peer gets for its first block).
    pub floor: Duration,
    /// A peer that has delivered is dropped after this many timeouts in a row with no block between.
    pub max_timeouts: u32,
    /// How long an address dropped as stalled is first refused; doubled at each repeat.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for StallConfig {
    fn default() -> Self {
        Self {
            factor: 8.0,
            floor: Duration::from_secs(10),
            max_timeouts: 3,
            backoff: Duration::from_secs(60),
            max_backoff: Duration::from_secs(30 * 60),
        }
    }
}

impl StallConfig {
    /// The request timeout for a peer whose own smoothed gap is `own`, in a swarm whose median gap is `swarm`.
    pub fn timeout(
        &self,
        ceiling: Duration,
        own: Option<Duration>,
        swarm: Option<Duration>,
    ) -> Duration {
        let floor = self.floor.min(ceiling);
        match own.max(swarm) {
            None => ceiling,
            Some(g) => Duration::try_from_secs_f64(g.as_secs_f64() * self.factor)
                .unwrap_or(ceiling)
                .clamp(floor, ceiling),
        }
    }
}

/// The median (upper, for an even count) of the peers' gaps; `None` when no peer has delivered.
pub fn median_gap(gaps: impl Iterator<Item = Duration>) -> Option<Duration> {
    let mut v: Vec<Duration> = gaps.collect();
    v.sort_unstable();
    v.get(v.len() / 2).copied()
}

/// What to do with a peer whose requests timed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Return its requests to the pool; it keeps a single request until it delivers again.
    Keep,
    /// Disconnect it and refuse its address for a while.
    Drop,
}

/// How one connection serves our requests (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivery {
    blocks: u64,
    gap: Option<Duration>,
    timeouts: u32,
}

impl Delivery {
    /// A block we had requested from this peer arrived, `gap` after the later of its request and the previous
    /// block.
    pub fn on_block(&mut self, gap: Duration) {
        self.blocks += 1;
        self.timeouts = 0;
        self.gap = Some(match self.gap {
            None => gap,
            Some(s) => (s * 7 + gap) / 8,
        });
    }

    /// Its outstanding requests timed out.
    pub fn on_timeout(&mut self, cfg: &StallConfig) -> Verdict {
        self.timeouts = self.timeouts.saturating_add(1);
        if self.blocks == 0 || self.timeouts >= cfg.max_timeouts {
            Verdict::Drop
        } else {
            Verdict::Keep
        }
    }

    /// Smoothed gap between its blocks; `None` until it delivered one.
    pub fn gap(&self) -> Option<Duration> {
        self.gap
    }

    /// Requested blocks it delivered on this connection.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }
}

/// Addresses dropped as stalled, each with its repeat count and the instant it is let back.
#[derive(Debug, Clone, Default)]
pub struct Stalls {
    by_addr: BTreeMap<SocketAddr, (u32, Instant)>,
}

impl Stalls {
    /// `addr` was dropped as stalled at `now`: refuse it until the returned instant.
    pub fn record(&mut self, now: Instant, addr: SocketAddr, cfg: &StallConfig) -> Instant {
        if !self.by_addr.contains_key(&addr) && self.by_addr.len() >= MAX_STALLED_ADDRS {
            self.by_addr.retain(|_, (_, until)| *until > now);
            if self.by_addr.len() >= MAX_STALLED_ADDRS {
                let soonest = self
                    .by_addr
                    .iter()
                    .min_by_key(|(_, (_, u))| *u)
                    .map(|(a, _)| *a);
                if let Some(a) = soonest {
                    self.by_addr.remove(&a);
                }
            }
        }
        let e = self.by_addr.entry(addr).or_insert((0, now));
        e.0 = e.0.saturating_add(1);
        let d = cfg
            .backoff
            .saturating_mul(1u32 << (e.0 - 1).min(16))
            .min(cfg.max_backoff);
        e.1 = now + d;
        e.1
    }

    /// Whether `addr` is refused at `now`.
    pub fn refused(&self, now: Instant, addr: &SocketAddr) -> bool {
        self.by_addr
            .get(addr)
            .is_some_and(|(_, until)| now < *until)
    }

    pub fn len(&self) -> usize {
        self.by_addr.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_addr.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;
    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn timeout_adapts_to_the_swarm_within_floor_and_ceiling() {
        let cfg = StallConfig::default();
        // (own gap, swarm median gap, ceiling, expected timeout)
        let cases = [
            (None, None, S(20), S(20)),         // nobody delivered: the fixed timeout
            (None, Some(MS(5)), S(20), S(10)),  // fast swarm (loopback): the floor
            (None, Some(MS(50)), S(20), S(10)), // 50 ms link: still the floor
            (None, Some(MS(1500)), S(20), S(12)), // slow swarm: 8 gaps
            (None, Some(S(4)), S(20), S(20)),   // very slow swarm: capped
            (Some(S(2)), Some(MS(5)), S(20), S(16)), // a slow peer's own gap stretches its timeout
            (Some(MS(5)), Some(S(2)), S(20), S(16)), // a fast peer in a slow swarm: the swarm's
            (None, Some(MS(5)), S(4), S(4)),    // a ceiling under the floor wins
        ];
        for (own, swarm, ceiling, want) in cases {
            assert_eq!(
                cfg.timeout(ceiling, own, swarm),
                want,
                "own {own:?} swarm {swarm:?} ceiling {ceiling:?}"
            );
        }
    }

    #[test]
    fn median_gap_of_the_peers() {
        let cases: [(&[u64], Option<u64>); 4] = [
            (&[], None),
            (&[7], Some(7)),
            (&[30, 10, 20], Some(20)),
            (&[40, 10, 30, 20], Some(30)),
        ];
        for (gaps, want) in cases {
            assert_eq!(
                median_gap(gaps.iter().map(|g| MS(*g))),
                want.map(MS),
                "{gaps:?}"
            );
        }
    }

    /// Each event is a block (`Some(gap ms)`) or a timeout (`None`); the verdict after each timeout.
    #[test]
    fn verdicts_follow_delivery() {
        let cfg = StallConfig::default();
        use Verdict::*;
        let cases: [(&[Option<u64>], &[Verdict]); 5] = [
            // Never delivered: dropped at the first timeout (the silent liar).
            (&[None], &[Drop]),
            // Delivered once, then silent: kept twice, dropped at the third timeout in a row.
            (&[Some(10), None, None, None], &[Keep, Keep, Drop]),
            // A slow honest peer: a block between timeouts resets the count.
            (
                &[
                    Some(900),
                    None,
                    Some(3000),
                    None,
                    None,
                    Some(2000),
                    None,
                    None,
                ],
                &[Keep, Keep, Keep, Keep, Keep],
            ),
            (
                &[Some(1), None, Some(1), None, None, None],
                &[Keep, Keep, Keep, Drop],
            ),
            (&[Some(1), Some(1), Some(1)], &[]),
        ];
        for (events, want) in cases {
            let mut d = Delivery::default();
            let mut got = Vec::new();
            for e in events {
                match e {
                    Some(ms) => d.on_block(MS(*ms)),
                    None => got.push(d.on_timeout(&cfg)),
                }
            }
            assert_eq!(got, *want, "{events:?}");
        }
    }

    #[test]
    fn gap_is_smoothed_like_srtt() {
        let mut d = Delivery::default();
        assert_eq!(d.gap(), None);
        d.on_block(MS(800));
        assert_eq!(d.gap(), Some(MS(800)));
        d.on_block(MS(0));
        assert_eq!(d.gap(), Some(MS(700)));
        for _ in 0..100 {
            d.on_block(MS(8));
        }
        assert!(d.gap().unwrap() < MS(9), "{:?}", d.gap());
        assert_eq!(d.blocks(), 102);
    }

    #[test]
    fn stalled_addresses_are_refused_with_doubling_backoff() {
        let cfg = StallConfig::default();
        let t0 = crate::sim::swarm::epoch();
        let a: SocketAddr = "10.0.0.1:6881".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:6881".parse().unwrap();
        let mut s = Stalls::default();
        assert!(!s.refused(t0, &a));
        assert_eq!(s.record(t0, a, &cfg), t0 + S(60));
        // (seconds after t0, refused a?, refused b?)
        for (secs, ra, rb) in [(0, true, false), (59, true, false), (60, false, false)] {
            assert_eq!(s.refused(t0 + S(secs), &a), ra, "+{secs}s");
            assert_eq!(s.refused(t0 + S(secs), &b), rb, "+{secs}s");
        }
        // Repeats double, up to the cap.
        let expect = [120, 240, 480, 960, 1800, 1800];
        for want in expect {
            let t = t0 + S(100);
            assert_eq!(s.record(t, a, &cfg), t + S(want));
        }
    }

    #[test]
    fn the_stall_table_is_bounded() {
        let cfg = StallConfig::default();
        let t0 = crate::sim::swarm::epoch();
        let mut s = Stalls::default();
        for i in 0..(MAX_STALLED_ADDRS as u32 + 10) {
            let addr = SocketAddr::from((i.to_be_bytes(), 1));
            s.record(t0 + MS(u64::from(i)), addr, &cfg);
            assert!(s.len() <= MAX_STALLED_ADDRS);
        }
        // The newest is remembered; the oldest made room.
        let newest = SocketAddr::from(((MAX_STALLED_ADDRS as u32 + 9).to_be_bytes(), 1));
        assert!(s.refused(t0 + S(1), &newest));
        assert!(!s.refused(t0 + S(1), &SocketAddr::from((0u32.to_be_bytes(), 1))));
    }
}

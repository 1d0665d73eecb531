//! The peer store: peers announced to us per infohash (BEP 5 `announce_peer`), each expiring 30 minutes after
//! its last announce. Bounded three ways (peers per infohash, infohashes, total peers) so a flood of announces
//! cannot exhaust memory: a full infohash replaces its oldest peer, a full store refuses new infohashes.

use crate::metainfo::InfoHash;
use rand::seq::IndexedRandom;
use rand::Rng;
use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

/// How long an announce is kept.
pub const PEER_TTL: Duration = Duration::from_secs(30 * 60);

#[derive(Clone, Copy, Debug)]
pub struct StoreLimits {
    pub peers_per_infohash: usize,
    pub infohashes: usize,
    pub total_peers: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            peers_per_infohash: 500,
            infohashes: 5_000,
            total_peers: 50_000,
        }
    }
}

pub struct PeerStore {
    limits: StoreLimits,
    map: HashMap<InfoHash, Vec<(SocketAddrV4, Instant)>>,
    total: usize,
}

impl PeerStore {
    pub fn new(limits: StoreLimits) -> PeerStore {
        PeerStore {
            limits,
            map: HashMap::new(),
            total: 0,
        }
    }

    /// Record an announce; returns false when the store is full and the peer was not kept.
    pub fn insert(&mut self, now: Instant, info_hash: InfoHash, peer: SocketAddrV4) -> bool {
        if !self.map.contains_key(&info_hash) && self.map.len() >= self.limits.infohashes {
            self.expire(now);
            if self.map.len() >= self.limits.infohashes {
                return false;
            }
        }
        let at_total = self.total >= self.limits.total_peers;
        let list = self.map.entry(info_hash).or_default();
        if let Some(e) = list.iter_mut().find(|(a, _)| *a == peer) {
            e.1 = now;
            return true;
        }
        if list.len() >= self.limits.peers_per_infohash || at_total {
            // Replace the oldest announce of this infohash (if it has any) instead of growing.
            match list.iter_mut().min_by_key(|(_, t)| *t) {
                Some(oldest) => *oldest = (peer, now),
                None => {
                    self.map.remove(&info_hash);
                    return false;
                }
            }
            return true;
        }
        list.push((peer, now));
        self.total += 1;
        true
    }

    /// Up to `max` live peers for `info_hash`, a random sample when there are more.
    pub fn get(
        &self,
        now: Instant,
        info_hash: &InfoHash,
        max: usize,
        rng: &mut impl Rng,
    ) -> Vec<SocketAddrV4> {
        let Some(list) = self.map.get(info_hash) else {
            return Vec::new();
        };
        let live: Vec<SocketAddrV4> = list
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(*t) < PEER_TTL)
            .map(|(a, _)| *a)
            .collect();
        if live.len() <= max {
            live
        } else {
            live.choose_multiple(rng, max).copied().collect()
        }
    }

    /// Drop announces older than [`PEER_TTL`].
    pub fn expire(&mut self, now: Instant) {
        let mut total = 0;
        self.map.retain(|_, list| {
            list.retain(|(_, t)| now.saturating_duration_since(*t) < PEER_TTL);
            total += list.len();
            !list.is_empty()
        });
        self.total = total;
    }

    pub fn total_peers(&self) -> usize {
        self.total
    }
    pub fn infohashes(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{rngs::StdRng, SeedableRng};

    fn peer(i: u32) -> SocketAddrV4 {
        SocketAddrV4::new(i.to_be_bytes().into(), 6881)
    }

    #[test]
    fn expires_after_30_minutes() {
        let t0 = crate::sim::dht::epoch();
        let mut rng = StdRng::seed_from_u64(0);
        let mut s = PeerStore::new(StoreLimits::default());
        let h = InfoHash([1; 20]);
        assert!(s.insert(t0, h, peer(1)));
        assert!(s.insert(t0 + Duration::from_secs(600), h, peer(2)));
        assert_eq!(
            s.get(t0 + Duration::from_secs(1000), &h, 50, &mut rng)
                .len(),
            2
        );
        assert_eq!(s.get(t0 + PEER_TTL, &h, 50, &mut rng), vec![peer(2)]);
        s.expire(t0 + PEER_TTL + Duration::from_secs(600));
        assert_eq!((s.total_peers(), s.infohashes()), (0, 0));
    }

    proptest! {
        #[test]
        fn flood_stays_bounded(ops in proptest::collection::vec((0u8..50, any::<u32>()), 1..2000)) {
            let limits = StoreLimits { peers_per_infohash: 10, infohashes: 20, total_peers: 100 };
            let mut s = PeerStore::new(limits);
            let t0 = crate::sim::dht::epoch();
            for (i, (h, p)) in ops.iter().enumerate() {
                s.insert(t0 + Duration::from_millis(i as u64), InfoHash([*h; 20]), peer(*p));
                prop_assert!(s.infohashes() <= 20);
                prop_assert!(s.total_peers() <= 100);
                prop_assert!(s.map.values().all(|l| l.len() <= 10));
            }
        }
    }
}

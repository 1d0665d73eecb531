//! The choker (DESIGN.md §6) as a pure function of the peers' rates, interest, snub state, time and an RNG.
//! Leeching: the interested, non-snubbed peers that sent us the most over the rolling window take the regular
//! slots, plus optimistic slots given at random to choked interested peers (3× weight for peers connected in
//! the last minute), rotated every 30 s. Seeding: the same slots handed round robin (libtorrent): a peer that has
//! had `piece_length × 20` bytes and been unchoked for over a minute yields its slot.

use std::time::{Duration, Instant};

use rand::Rng;

use super::PeerKey;

/// Choker tuning; defaults are DESIGN.md §6.
#[derive(Debug, Clone, Copy)]
pub struct ChokerConfig {
    /// Total upload slots (regular + optimistic). 0 = never upload.
    pub upload_slots: usize,
    pub optimistic_slots: usize,
    pub rechoke_interval: Duration,
    pub optimistic_interval: Duration,
    /// Peers connected more recently than this get `new_peer_weight` in the optimistic draw.
    pub new_peer_window: Duration,
    pub new_peer_weight: u32,
    /// No block for this long while we wanted one: snubbed.
    pub snub_time: Duration,
    /// Seeding round robin: bytes a peer gets before it yields (piece_length × 20).
    pub seed_rr_bytes: u64,
    pub seed_rr_time: Duration,
}

impl ChokerConfig {
    pub fn new(piece_len: u32) -> Self {
        Self {
            upload_slots: 4,
            optimistic_slots: 1,
            rechoke_interval: Duration::from_secs(10),
            optimistic_interval: Duration::from_secs(30),
            new_peer_window: Duration::from_secs(60),
            new_peer_weight: 3,
            snub_time: Duration::from_secs(60),
            seed_rr_bytes: u64::from(piece_len) * 20,
            seed_rr_time: Duration::ZERO,
        }
    }
}

/// What the choker needs to know about one peer.
#[derive(Debug, Clone, Copy)]
pub struct ChokerPeer {
    pub key: PeerKey,
    /// The peer is interested in us.
    pub interested: bool,
    /// Bytes/s it sent us over the rolling window.
    pub rate_from: f64,
    /// Bytes/s we sent it over the rolling window.
    pub rate_to: f64,
    pub snubbed: bool,
    pub connected_at: Instant,
    /// Currently unchoked by us, and since when.
    pub unchoked_since: Option<Instant>,
    /// When it was last unchoked (None = never): seeding serves the longest-waiting choked peer first.
    pub last_unchoked: Option<Instant>,
    /// Currently holds an optimistic slot.
    pub optimistic: bool,
    /// Bytes we sent it since it was last unchoked.
    pub uploaded_since_unchoke: u64,
}

/// The outcome: exactly these peers are unchoked (sorted), of which `optimistic` hold optimistic slots.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChokeDecision {
    pub unchoke: Vec<PeerKey>,
    pub optimistic: Vec<PeerKey>,
}

/// Decide who is unchoked. `rotate_optimistic` is true when the optimistic period has elapsed.
pub fn rechoke(
    cfg: &ChokerConfig,
    now: Instant,
    seeding: bool,
    peers: &[ChokerPeer],
    rotate_optimistic: bool,
    rng: &mut impl Rng,
) -> ChokeDecision {
    let mut d = ChokeDecision::default();
    if cfg.upload_slots == 0 {
        return d;
    }
    let opt_slots = cfg.optimistic_slots.min(cfg.upload_slots);
    let regular = cfg.upload_slots - opt_slots;
    // Sort key: lower is better. Random tie-break keeps equal peers from being served by index.
    let mut cands: Vec<(u8, f64, u32, &ChokerPeer)> = Vec::new();
    for p in peers.iter().filter(|p| p.interested) {
        let r = rng.random::<u32>();
        if seeding {
            let yielded = p
                .unchoked_since
                .is_some_and(|t| now.saturating_duration_since(t) >= cfg.seed_rr_time)
                && p.uploaded_since_unchoke >= cfg.seed_rr_bytes;
            let class = match (p.unchoked_since.is_some(), yielded) {
                (_, true) => 2,
                (true, false) => 0,
                (false, false) => 1,
            };
            // Choked peers: the one that waited longest since its last unchoke (never = longest) goes first.
            let key = match (class, p.last_unchoked) {
                (1, None) => f64::NEG_INFINITY,
                (1, Some(t)) => -now.saturating_duration_since(t).as_secs_f64(),
                _ => -p.rate_to,
            };
            cands.push((class, key, r, p));
        } else if !p.snubbed {
            cands.push((0, -p.rate_from, r, p));
        }
    }
    cands.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
    d.unchoke
        .extend(cands.iter().take(regular).map(|c| c.3.key));
    // Optimistic slots: keep current holders unless rotating, then weighted draws among the rest.
    let eligible = |p: &ChokerPeer, d: &ChokeDecision| p.interested && !d.unchoke.contains(&p.key);
    if !rotate_optimistic {
        let keep: Vec<PeerKey> = peers
            .iter()
            .filter(|p| p.optimistic && eligible(p, &d))
            .take(opt_slots)
            .map(|p| p.key)
            .collect();
        d.optimistic.extend(&keep);
        d.unchoke.extend(&keep);
    }
    // Slots left unused by too few regular candidates go to optimistic draws too.
    while d.unchoke.len() < cfg.upload_slots {
        let pool: Vec<(&ChokerPeer, u32)> = peers
            .iter()
            .filter(|p| eligible(p, &d))
            .map(|p| {
                let new = now.saturating_duration_since(p.connected_at) < cfg.new_peer_window;
                (p, if new { cfg.new_peer_weight } else { 1 })
            })
            .collect();
        let total: u32 = pool.iter().map(|(_, w)| w).sum();
        if total == 0 {
            break;
        }
        let mut x = rng.random_range(0..total);
        let chosen = pool
            .iter()
            .find(|(_, w)| {
                if x < *w {
                    true
                } else {
                    x -= w;
                    false
                }
            })
            .expect("weighted draw within total")
            .0;
        d.optimistic.push(chosen.key);
        d.unchoke.push(chosen.key);
    }
    d.unchoke.sort();
    d.optimistic.sort();
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, SeedableRng};

    fn peer(t0: Instant, key: u64, interested: bool, rate_from: f64) -> ChokerPeer {
        ChokerPeer {
            key: PeerKey(key),
            interested,
            rate_from,
            rate_to: 0.0,
            snubbed: false,
            connected_at: t0,
            unchoked_since: None,
            last_unchoked: None,
            optimistic: false,
            uploaded_since_unchoke: 0,
        }
    }

    fn keys(v: &[u64]) -> Vec<PeerKey> {
        v.iter().map(|k| PeerKey(*k)).collect()
    }

    #[test]
    fn leeching_table() {
        let t0 = crate::sim::swarm::epoch();
        let now = t0 + Duration::from_secs(600);
        // (rates from peers 1..=n, interested?, snubbed?, expected regular unchokes)
        type Case = (
            &'static [f64],
            &'static [bool],
            &'static [bool],
            &'static [u64],
        );
        let cases: &[Case] = &[
            (&[5., 1., 9., 7., 3.], &[true; 5], &[false; 5], &[3, 4, 1]),
            (
                &[5., 1., 9., 7., 3.],
                &[true, true, false, true, true],
                &[false; 5],
                &[4, 1, 5],
            ),
            (
                &[5., 1., 9., 7., 3.],
                &[true; 5],
                &[false, false, true, false, false],
                &[4, 1, 5],
            ),
            (&[0., 0., 0., 0., 0., 100.], &[true; 6], &[false; 6], &[6]),
        ];
        for (rates, interested, snubbed, expect) in cases {
            let peers: Vec<ChokerPeer> = (0..rates.len())
                .map(|i| ChokerPeer {
                    snubbed: snubbed[i],
                    ..peer(t0, i as u64 + 1, interested[i], rates[i])
                })
                .collect();
            for seed in 0..10 {
                let cfg = ChokerConfig::new(262144);
                let d = rechoke(
                    &cfg,
                    now,
                    false,
                    &peers,
                    true,
                    &mut StdRng::seed_from_u64(seed),
                );
                assert_eq!(
                    d.unchoke.len(),
                    4.min(interested.iter().filter(|x| **x).count())
                );
                for k in *expect {
                    assert!(
                        d.unchoke.contains(&PeerKey(*k)),
                        "{rates:?}: {d:?} lacks {k}"
                    );
                }
                let regular = (0..rates.len())
                    .filter(|i| interested[*i] && !snubbed[*i])
                    .count()
                    .min(3);
                assert_eq!(d.optimistic.len(), d.unchoke.len() - regular);
                for o in &d.optimistic {
                    let p = &peers[(o.0 - 1) as usize];
                    assert!(p.interested, "optimistic slot to an uninterested peer");
                }
            }
        }
    }

    #[test]
    fn optimistic_kept_until_rotation_and_weights_new_peers() {
        let t0 = crate::sim::swarm::epoch();
        let now = t0 + Duration::from_secs(120);
        let mut peers: Vec<ChokerPeer> = (1..=4)
            .map(|k| peer(t0, k, true, 10.0 * k as f64))
            .collect();
        peers.push(ChokerPeer {
            optimistic: true,
            unchoked_since: Some(t0),
            ..peer(t0, 5, true, 0.0)
        });
        peers.push(peer(t0, 6, true, 0.0));
        let cfg = ChokerConfig::new(262144);
        let d = rechoke(
            &cfg,
            now,
            false,
            &peers,
            false,
            &mut StdRng::seed_from_u64(1),
        );
        assert_eq!(d.unchoke, keys(&[2, 3, 4, 5]));
        assert_eq!(d.optimistic, keys(&[5]));
        // Rotation: peer 1 (old) vs peer 7 (connected 10 s ago, 3x weight) vs 5, 6 (old).
        peers.push(peer(now - Duration::from_secs(10), 7, true, 0.0));
        let mut wins = [0u32; 8];
        for seed in 0..4000 {
            let d = rechoke(
                &cfg,
                now,
                false,
                &peers,
                true,
                &mut StdRng::seed_from_u64(seed),
            );
            assert_eq!(d.optimistic.len(), 1);
            wins[d.optimistic[0].0 as usize] += 1;
        }
        // weights 1,1,1,3 over peers 1,5,6,7 -> 7 wins ~half.
        assert!((1700..2300).contains(&wins[7]), "{wins:?}");
        assert!((450..850).contains(&wins[1]), "{wins:?}");
    }

    #[test]
    fn seeding_round_robin_yields() {
        let t0 = crate::sim::swarm::epoch();
        let now = t0 + Duration::from_secs(300);
        let cfg = ChokerConfig {
            optimistic_slots: 0,
            ..ChokerConfig::new(16384)
        };
        let rr = cfg.seed_rr_bytes;
        // (unchoked since secs ago, uploaded since unchoke) for peers 1..=6; expected unchoked set
        type Case<'a> = (&'a [(Option<u64>, u64)], &'a [u64]);
        let two = [
            (Some(70), rr),
            (Some(70), rr),
            (Some(10), 0),
            (Some(10), 0),
            (None, 0),
            (None, 0),
        ];
        let three = [
            (Some(70), rr / 2),
            (Some(70), rr),
            (Some(10), 0),
            (Some(10), 0),
            (None, 0),
            (None, 0),
        ];
        let cases: &[Case] = &[
            // 1-4 unchoked recently: they keep their slots
            (
                &[
                    (Some(10), 0),
                    (Some(10), 0),
                    (Some(10), 0),
                    (Some(10), 0),
                    (None, 0),
                    (None, 0),
                ],
                &[1, 2, 3, 4],
            ),
            // 1 and 2 served long enough: they yield to 5 and 6
            (&two, &[3, 4, 5, 6]),
            // 1 unchoked long but got little: keeps its slot
            (&three, &[1, 3, 4]),
        ];
        for (state, expect) in cases {
            let peers: Vec<ChokerPeer> = state
                .iter()
                .enumerate()
                .map(|(i, (since, up))| ChokerPeer {
                    unchoked_since: since.map(|s| now - Duration::from_secs(s)),
                    uploaded_since_unchoke: *up,
                    rate_to: 100.0,
                    ..peer(t0, i as u64 + 1, true, 0.0)
                })
                .collect();
            for seed in 0..10 {
                let d = rechoke(
                    &cfg,
                    now,
                    true,
                    &peers,
                    false,
                    &mut StdRng::seed_from_u64(seed),
                );
                assert_eq!(d.unchoke.len(), 4);
                for k in *expect {
                    assert!(
                        d.unchoke.contains(&PeerKey(*k)),
                        "{state:?}: {d:?} lacks {k}"
                    );
                }
            }
        }
    }

    #[test]
    fn no_slots_means_no_uploads() {
        let t0 = crate::sim::swarm::epoch();
        let peers: Vec<ChokerPeer> = (1..=3).map(|k| peer(t0, k, true, 5.0)).collect();
        let cfg = ChokerConfig {
            upload_slots: 0,
            ..ChokerConfig::new(16384)
        };
        let d = rechoke(&cfg, t0, false, &peers, true, &mut StdRng::seed_from_u64(0));
        assert!(d.unchoke.is_empty());
        // Fewer interested peers than slots: all unchoked.
        let d = rechoke(
            &ChokerConfig::new(16384),
            t0,
            false,
            &peers,
            true,
            &mut StdRng::seed_from_u64(0),
        );
        assert_eq!(d.unchoke, keys(&[1, 2, 3]));
    }
}

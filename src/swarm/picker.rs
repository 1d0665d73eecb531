//! The piece picker (DESIGN.md §5): which blocks to ask one peer for next. Strict priority for pieces already
//! started, then the first [`PickerConfig::random_first`] pieces at random, then rarest first with a random
//! tie-break, then strict end-game (blocks already requested from others, fewest requesters first); a fast peer
//! takes a piece it starts whole ([`PickerConfig::whole_pieces`]). It records its choices in the
//! [`PieceTracker`], which owns the piece states and keeps the indexes that spare a pick any scan of all pieces.

use rand::Rng;

use super::pieces::{BlockState, PieceState, PieceTracker};
use super::PeerKey;
use crate::wire::message::BlockRef;

/// Picker tuning.
#[derive(Debug, Clone, Copy)]
pub struct PickerConfig {
    /// While fewer pieces than this are verified, new pieces are chosen uniformly at random.
    pub random_first: u32,
    /// Enable end-game (duplicate requests once no block is left open).
    pub end_game: bool,
    /// In end-game a block is asked of another peer only while fewer than this many peers have it requested
    /// (libtorrent's strict end-game: one duplicate). More copies in flight only waste the senders' upload.
    pub end_game_requesters: usize,
    /// A peer whose request queue holds at least a whole piece (it delivers one within the queue's few seconds)
    /// takes each piece it starts whole, so one piece's blocks come from one peer in order (see [`pick`]).
    pub whole_pieces: bool,
}

impl Default for PickerConfig {
    fn default() -> Self {
        Self {
            random_first: 4,
            end_game: true,
            end_game_requesters: 2,
            whole_pieces: true,
        }
    }
}

/// Choose up to `want` blocks to request from `peer`, which has the pieces for which `peer_has` is true, and
/// mark them requested. With `whole`, a piece newly started is taken whole even past `want` (at most one
/// piece's blocks minus one more): its blocks then come from one peer, in order, which is what lets the
/// disk thread hash them as they arrive (libtorrent's piece affinity for fast peers).
pub fn pick(
    t: &mut PieceTracker,
    cfg: &PickerConfig,
    peer: PeerKey,
    peer_has: impl Fn(u32) -> bool,
    want: usize,
    whole: bool,
    rng: &mut impl Rng,
) -> Vec<BlockRef> {
    let mut out = Vec::new();
    if want == 0 {
        return out;
    }
    let g = *t.geometry();
    // 1. Started pieces first: fewest open blocks first, so pieces complete (and can be shared) quickly. The
    // tracker keeps them ordered; taking blocks of a piece either satisfies `want` or leaves it with none open,
    // so the walk never meets a piece twice.
    let mut cursor = None;
    while t.open_blocks() > 0 {
        let Some(next) = t.partial_after(cursor).find(|(_, p)| peer_has(*p)) else {
            break;
        };
        cursor = Some(next);
        take_open(t, next.1, peer, want, &mut out);
        if out.len() >= want {
            return out;
        }
    }
    // 2. New pieces: random while we have fewer than `random_first`, then rarest first, random among equals.
    if t.count(PieceState::Queued) > 0 {
        let random = t.count(PieceState::Have) < cfg.random_first;
        while let Some(p) = next_new_piece(t, random, &peer_has, rng) {
            t.start(p).expect("queued piece starts");
            let n = if whole { usize::MAX } else { want };
            take_open(t, p, peer, n, &mut out);
            if out.len() >= want {
                return out;
            }
        }
    }
    // 3. End-game: nothing queued and nothing open this peer can serve -> duplicate outstanding requests.
    if cfg.end_game && t.count(PieceState::Queued) == 0 {
        let mut dup: Vec<(usize, u32, BlockRef)> = Vec::new();
        for (p, f) in t.inflight() {
            if !peer_has(p) {
                continue;
            }
            for (i, b) in f.blocks.iter().enumerate() {
                if let BlockState::Requested(ps) = b {
                    if !ps.contains(&peer) && ps.len() < cfg.end_game_requesters {
                        let br = g.block(p, i as u32).expect("block in range");
                        dup.push((ps.len(), rng.random::<u32>(), br));
                    }
                }
            }
        }
        dup.sort_unstable_by_key(|(n, r, _)| (*n, *r));
        for (_, _, b) in dup.into_iter().take(want - out.len()) {
            t.request(&b, peer)
                .expect("requested block can be re-requested");
            out.push(b);
        }
    }
    out
}

/// The queued piece `peer_has` to start next: uniformly at random among those of least availability (among all
/// of them while `random`).
fn next_new_piece(
    t: &PieceTracker,
    random: bool,
    peer_has: &impl Fn(u32) -> bool,
    rng: &mut impl Rng,
) -> Option<u32> {
    let buckets = t.queued_by_availability();
    if random {
        let all: Vec<&[u32]> = buckets.iter().map(|b| b.as_slice()).collect();
        return sample(&all, peer_has, rng);
    }
    buckets
        .iter()
        .find_map(|b| sample(&[b.as_slice()], peer_has, rng))
}

/// Random probes before [`sample`] falls back to listing what the peer has.
const PROBES: usize = 4;

/// A uniformly random piece of `lists` (taken together) for which `peer_has` holds, if any. A few random probes
/// first (a seed has every piece: the first probe hits), then all matches are listed and one drawn: either way
/// every match is equally likely.
fn sample(lists: &[&[u32]], peer_has: &impl Fn(u32) -> bool, rng: &mut impl Rng) -> Option<u32> {
    let total: usize = lists.iter().map(|l| l.len()).sum();
    if total == 0 {
        return None;
    }
    for _ in 0..PROBES {
        let mut r = rng.random_range(0..total);
        for l in lists {
            if let Some(p) = l.get(r) {
                if peer_has(*p) {
                    return Some(*p);
                }
                break;
            }
            r -= l.len();
        }
    }
    let hits: Vec<u32> = (lists.iter())
        .flat_map(|l| l.iter().copied())
        .filter(|p| peer_has(*p))
        .collect();
    if hits.is_empty() {
        return None;
    }
    Some(hits[rng.random_range(0..hits.len())])
}

fn take_open(
    t: &mut PieceTracker,
    piece: u32,
    peer: PeerKey,
    want: usize,
    out: &mut Vec<BlockRef>,
) {
    let g = *t.geometry();
    let open: Vec<u32> = match t.inflight_piece(piece) {
        Some(f) => f
            .blocks
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == BlockState::Open)
            .map(|(i, _)| i as u32)
            .take(want - out.len())
            .collect(),
        None => return,
    };
    for i in open {
        let b = g.block(piece, i).expect("block in range");
        t.request(&b, peer).expect("open block can be requested");
        out.push(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::geometry::Geometry;
    use rand::{rngs::StdRng, SeedableRng};

    /// `n` pieces of 2 blocks each.
    fn tracker(n: u64) -> PieceTracker {
        PieceTracker::new(Geometry::new(n * 32768, 32768).unwrap())
    }

    fn set_avail(t: &mut PieceTracker, avail: &[u32]) {
        for (p, a) in avail.iter().enumerate() {
            for _ in 0..*a {
                t.add_available(p as u32);
            }
        }
    }

    fn finish(t: &mut PieceTracker, piece: u32, peer: PeerKey) {
        let g = *t.geometry();
        t.start(piece).unwrap();
        for i in 0..g.blocks_in_piece(piece) {
            let b = g.block(piece, i).unwrap();
            let _ = t.request(&b, peer);
            t.receive(&b, peer).unwrap();
            t.check_invariants();
        }
        t.verified(piece, true).unwrap();
        t.check_invariants();
    }

    #[test]
    fn rarest_first_table() {
        // (availability per piece, pieces already had, pieces the peer has, expected first piece picked)
        type Case<'a> = (&'a [u32], &'a [u32], &'a [u32], &'a [u32]);
        let cases: &[Case] = &[
            (&[3, 1, 2, 5, 4, 9], &[], &[0, 1, 2, 3, 4, 5], &[1]),
            (&[3, 1, 2, 5, 4, 9], &[], &[0, 2, 3], &[2]),
            (&[2, 2, 1, 1, 3, 9], &[], &[0, 1, 2, 3, 4, 5], &[2, 3]),
            (&[1, 1, 1, 1, 1, 1], &[], &[4], &[4]),
        ];
        for (avail, had, peer_has, expect) in cases {
            for seed in 0..20 {
                let mut t = tracker(avail.len() as u64);
                set_avail(&mut t, avail);
                for p in *had {
                    t.mark_have(*p).unwrap();
                }
                // pretend 4 pieces verified so we are past the random-first phase
                let cfg = PickerConfig {
                    random_first: 0,
                    end_game: true,
                    ..PickerConfig::default()
                };
                let mut rng = StdRng::seed_from_u64(seed);
                let got = pick(
                    &mut t,
                    &cfg,
                    PeerKey(1),
                    |p| peer_has.contains(&p),
                    2,
                    false,
                    &mut rng,
                );
                t.check_invariants();
                assert_eq!(got.len(), 2, "{avail:?}");
                assert!(
                    expect.contains(&got[0].piece),
                    "{avail:?}: picked {got:?}, expected one of {expect:?}"
                );
                assert_eq!(got[0].piece, got[1].piece, "both blocks of one piece");
            }
        }
    }

    #[test]
    fn rarest_tie_break_is_random() {
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..40 {
            let mut t = tracker(6);
            set_avail(&mut t, &[2, 1, 1, 1, 3, 3]);
            let cfg = PickerConfig {
                random_first: 0,
                end_game: true,
                ..PickerConfig::default()
            };
            let got = pick(
                &mut t,
                &cfg,
                PeerKey(1),
                |_| true,
                1,
                false,
                &mut StdRng::seed_from_u64(seed),
            );
            seen.insert(got[0].piece);
        }
        assert_eq!(seen, [1, 2, 3].into_iter().collect());
    }

    #[test]
    fn first_pieces_are_random_not_rarest() {
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..60 {
            let mut t = tracker(8);
            set_avail(&mut t, &[1, 9, 9, 9, 9, 9, 9, 9]);
            let got = pick(
                &mut t,
                &PickerConfig::default(),
                PeerKey(1),
                |_| true,
                1,
                false,
                &mut StdRng::seed_from_u64(seed),
            );
            t.check_invariants();
            seen.insert(got[0].piece);
        }
        assert!(seen.len() >= 6, "random first pieces, got only {seen:?}");
        // After 4 verified pieces the rarest wins.
        let mut t = tracker(8);
        set_avail(&mut t, &[9, 9, 9, 9, 9, 9, 1, 9]);
        for p in 0..4 {
            finish(&mut t, p, PeerKey(2));
        }
        let got = pick(
            &mut t,
            &PickerConfig::default(),
            PeerKey(1),
            |_| true,
            1,
            false,
            &mut StdRng::seed_from_u64(1),
        );
        assert_eq!(got[0].piece, 6);
    }

    #[test]
    fn started_pieces_have_strict_priority() {
        let mut t = tracker(6);
        set_avail(&mut t, &[1, 5, 5, 5, 5, 5]);
        let cfg = PickerConfig {
            random_first: 0,
            end_game: true,
            ..PickerConfig::default()
        };
        let mut rng = StdRng::seed_from_u64(7);
        // Peer 1 starts piece 3 (the only one it has) taking one block.
        let a = pick(&mut t, &cfg, PeerKey(1), |p| p == 3, 1, false, &mut rng);
        assert_eq!(a, vec![t.geometry().block(3, 0).unwrap()]);
        t.check_invariants();
        // Peer 2 has everything, piece 0 is rarer, but the started piece 3 comes first.
        let b = pick(&mut t, &cfg, PeerKey(2), |_| true, 3, false, &mut rng);
        t.check_invariants();
        assert_eq!(b[0], t.geometry().block(3, 1).unwrap());
        assert_eq!(b[1].piece, 0);
    }

    #[test]
    fn end_game_duplicates_then_cancels() {
        let mut t = tracker(2);
        set_avail(&mut t, &[2, 2]);
        let cfg = PickerConfig {
            random_first: 0,
            end_game: true,
            ..PickerConfig::default()
        };
        let mut rng = StdRng::seed_from_u64(3);
        let a = pick(&mut t, &cfg, PeerKey(1), |_| true, 10, false, &mut rng);
        assert_eq!(a.len(), 4);
        t.check_invariants();
        // Nothing open: peer 2 gets duplicates of all four.
        let b = pick(&mut t, &cfg, PeerKey(2), |_| true, 10, false, &mut rng);
        t.check_invariants();
        assert_eq!(b.len(), 4);
        // Peer 2 again: it has requested everything already.
        assert!(pick(&mut t, &cfg, PeerKey(2), |_| true, 10, false, &mut rng).is_empty());
        // Peer 3: every block already has two requesters (strict end-game), so nothing.
        assert!(pick(&mut t, &cfg, PeerKey(3), |_| true, 10, false, &mut rng).is_empty());
        // Arrival from peer 2 cancels peer 1's duplicate.
        let r = t.receive(&b[0], PeerKey(2)).unwrap();
        assert_eq!(r.cancel, vec![PeerKey(1)]);
        t.check_invariants();
        // Without end-game no duplicates.
        let cfg2 = PickerConfig {
            random_first: 0,
            end_game: false,
            ..PickerConfig::default()
        };
        assert!(pick(&mut t, &cfg2, PeerKey(3), |_| true, 10, false, &mut rng).is_empty());
    }

    #[test]
    fn returned_blocks_are_picked_again() {
        // A timeout (or choke) returns blocks; the next pick by another peer takes them before new pieces.
        let mut t = tracker(4);
        set_avail(&mut t, &[1, 1, 1, 1]);
        let cfg = PickerConfig {
            random_first: 0,
            end_game: true,
            ..PickerConfig::default()
        };
        let mut rng = StdRng::seed_from_u64(9);
        let a = pick(&mut t, &cfg, PeerKey(1), |_| true, 2, false, &mut rng);
        let g = *t.geometry();
        t.receive(&a[0], PeerKey(1)).unwrap();
        t.unrequest(&a[1], PeerKey(1)).unwrap();
        t.check_invariants();
        assert_eq!(t.state(a[1].piece), Some(PieceState::InFlight));
        let b = pick(&mut t, &cfg, PeerKey(2), |_| true, 1, false, &mut rng);
        assert_eq!(b, vec![a[1]]);
        assert_eq!(g.block_index(&b[0]), Some(1));
        t.check_invariants();
    }

    #[test]
    fn whole_takes_new_pieces_whole_but_started_ones_by_want() {
        // 3 pieces of 4 blocks each.
        let mut t = PieceTracker::new(Geometry::new(3 * 65536, 65536).unwrap());
        set_avail(&mut t, &[1, 1, 1]);
        let cfg = PickerConfig {
            random_first: 0,
            ..PickerConfig::default()
        };
        let mut rng = StdRng::seed_from_u64(5);
        // Peer 1 without `whole` takes one block: the piece stays started with 3 open.
        let a = pick(&mut t, &cfg, PeerKey(1), |_| true, 1, false, &mut rng);
        assert_eq!(a.len(), 1);
        // Peer 2 wants 2 with `whole`: 2 of the started piece first (by want), nothing new started.
        let b = pick(&mut t, &cfg, PeerKey(2), |_| true, 2, true, &mut rng);
        assert_eq!(b.len(), 2);
        assert!(b.iter().all(|x| x.piece == a[0].piece));
        // Peer 2 wants 2 more: the last block of the started piece, then a new piece whole (4 blocks).
        let c = pick(&mut t, &cfg, PeerKey(2), |_| true, 2, true, &mut rng);
        t.check_invariants();
        assert_eq!(c.len(), 5, "{c:?}");
        assert_eq!(c[0].piece, a[0].piece);
        assert!(c[1..]
            .iter()
            .all(|x| x.piece == c[1].piece && x.piece != a[0].piece));
        let offsets: Vec<u32> = c[1..].iter().map(|x| x.offset).collect();
        assert_eq!(offsets, [0, 16384, 32768, 49152], "in order");
        assert_eq!(t.inflight_piece(c[1].piece).map(|f| f.open()), Some(0));
    }
}

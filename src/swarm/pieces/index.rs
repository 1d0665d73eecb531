//! The picker's indexes over the piece states, kept by [`super::PieceTracker`] on every transition so a pick
//! costs no scan of all pieces: the Queued pieces bucketed by availability (each bucket an unordered set with
//! O(1) insert and remove), and the in-flight pieces that still have open blocks, ordered by (open blocks,
//! piece index) — the order in which the picker finishes started pieces.

use std::collections::BTreeSet;
use std::ops::Bound;

/// See module docs. Positions are valid only for pieces that are in a bucket.
#[derive(Debug, Clone, Default)]
pub(super) struct PickIndex {
    /// `buckets[a]`: the Queued pieces of availability `a`, in no particular order.
    buckets: Vec<Vec<u32>>,
    /// Where a Queued piece sits in its bucket.
    pos: Vec<u32>,
    /// `(open, piece)` of every in-flight piece with open > 0.
    partial: BTreeSet<(u32, u32)>,
}

impl PickIndex {
    pub(super) fn new(num_pieces: u32) -> Self {
        Self {
            buckets: Vec::new(),
            pos: vec![0; num_pieces as usize],
            partial: BTreeSet::new(),
        }
    }

    /// `piece` (availability `avail`) became Queued.
    pub(super) fn insert_queued(&mut self, piece: u32, avail: u32) {
        let a = avail as usize;
        if self.buckets.len() <= a {
            self.buckets.resize_with(a + 1, Vec::new);
        }
        self.pos[piece as usize] = self.buckets[a].len() as u32;
        self.buckets[a].push(piece);
    }

    /// `piece` (availability `avail`) stopped being Queued.
    pub(super) fn remove_queued(&mut self, piece: u32, avail: u32) {
        let b = &mut self.buckets[avail as usize];
        let i = self.pos[piece as usize] as usize;
        debug_assert_eq!(b[i], piece, "bucket position of piece {piece}");
        b.swap_remove(i);
        if let Some(moved) = b.get(i) {
            self.pos[*moved as usize] = i as u32;
        }
    }

    /// An in-flight piece's open block count went from `old` to `new` (0 = not in flight or nothing open).
    pub(super) fn set_open(&mut self, piece: u32, old: u32, new: u32) {
        if old == new {
            return;
        }
        if old > 0 {
            self.partial.remove(&(old, piece));
        }
        if new > 0 {
            self.partial.insert((new, piece));
        }
    }

    /// Queued pieces by availability, least first (index = availability; buckets may be empty).
    pub(super) fn buckets(&self) -> &[Vec<u32>] {
        &self.buckets
    }

    /// `(open, piece)` of the in-flight pieces with open blocks, ordered, starting after `after`.
    pub(super) fn partial_after(
        &self,
        after: Option<(u32, u32)>,
    ) -> impl Iterator<Item = (u32, u32)> + '_ {
        let lo = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.partial.range((lo, Bound::Unbounded)).copied()
    }

    /// Panics unless the index holds exactly the Queued pieces (`queued[p]`, availability `avail[p]`) and the
    /// in-flight pieces with open blocks (`open`: `(open, piece)` pairs with open > 0).
    pub(super) fn check(&self, queued: &[bool], avail: &[u32], open: &BTreeSet<(u32, u32)>) {
        let mut seen = vec![false; queued.len()];
        for (a, b) in self.buckets.iter().enumerate() {
            for (i, p) in b.iter().enumerate() {
                let pu = *p as usize;
                assert!(queued[pu], "piece {p} in a bucket but not Queued");
                assert!(!seen[pu], "piece {p} in two buckets");
                seen[pu] = true;
                assert_eq!(avail[pu] as usize, a, "piece {p} in the wrong bucket");
                assert_eq!(self.pos[pu] as usize, i, "piece {p} position");
            }
        }
        assert_eq!(seen, queued, "every Queued piece is in a bucket");
        assert_eq!(&self.partial, open, "in-flight pieces with open blocks");
    }
}

//! The piece state tracker: owns the invariant "each piece is in exactly one of Have, InFlight, Queued,
//! NotWanted" and every transition between them, the block-level bookkeeping of in-flight pieces (open,
//! requested by which peers, received from which peer) and the per-piece availability counts of connected peers.
//! [`PieceTracker::check_invariants`] recomputes everything redundant and panics on the first mismatch.

use std::collections::{BTreeMap, BTreeSet};

use super::geometry::Geometry;
use super::PeerKey;
use crate::wire::message::BlockRef;

mod index;
use index::PickIndex;

/// Where one piece stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceState {
    /// Verified and stored.
    Have,
    /// Started: some blocks requested or received (or all received and awaiting verification).
    InFlight,
    /// Wanted, nothing requested yet.
    Queued,
    /// Not selected for download.
    NotWanted,
}

/// One block of an in-flight piece.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockState {
    Open,
    /// Requested from these peers (more than one only in end-game).
    Requested(Vec<PeerKey>),
    /// Received (and handed to storage) from this peer.
    Received(PeerKey),
}

/// Block bookkeeping of one in-flight piece.
#[derive(Debug, Clone)]
pub struct InFlight {
    pub blocks: Vec<BlockState>,
    open: u32,
    received: u32,
}

impl InFlight {
    pub fn open(&self) -> u32 {
        self.open
    }
    pub fn received(&self) -> u32 {
        self.received
    }
    pub fn complete(&self) -> bool {
        self.received as usize == self.blocks.len()
    }
}

/// Why a tracker operation was refused (a caller bug or a stale/unsolicited input; never a panic).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TrackerError {
    #[error("piece {0} is out of range")]
    NoSuchPiece(u32),
    #[error("block {0:?} is not a block of this torrent")]
    NoSuchBlock(BlockRef),
    #[error("piece {piece} is {state:?}, the operation needs it {needed:?}")]
    WrongState {
        piece: u32,
        state: PieceState,
        needed: PieceState,
    },
    #[error("block {0:?} was already received")]
    AlreadyReceived(BlockRef),
}

/// Result of receiving one block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Every block of the piece is now in: verify it.
    pub piece_complete: bool,
    /// Other peers that had requested this same block (end-game): send them a cancel.
    pub cancel: Vec<PeerKey>,
}

/// The piece state tracker (see module docs).
#[derive(Debug, Clone)]
pub struct PieceTracker {
    geom: Geometry,
    states: Vec<PieceState>,
    inflight: BTreeMap<u32, InFlight>,
    counts: [u32; 4],
    open_blocks: u64,
    availability: Vec<u32>,
    index: PickIndex,
}

fn slot(s: PieceState) -> usize {
    match s {
        PieceState::Have => 0,
        PieceState::InFlight => 1,
        PieceState::Queued => 2,
        PieceState::NotWanted => 3,
    }
}

impl PieceTracker {
    /// All pieces Queued, no availability.
    pub fn new(geom: Geometry) -> Self {
        let n = geom.num_pieces() as usize;
        let mut index = PickIndex::new(n as u32);
        for p in 0..n as u32 {
            index.insert_queued(p, 0);
        }
        Self {
            geom,
            states: vec![PieceState::Queued; n],
            inflight: BTreeMap::new(),
            counts: [0, 0, n as u32, 0],
            open_blocks: 0,
            availability: vec![0; n],
            index,
        }
    }

    pub fn geometry(&self) -> &Geometry {
        &self.geom
    }
    pub fn num_pieces(&self) -> u32 {
        self.geom.num_pieces()
    }
    pub fn state(&self, piece: u32) -> Option<PieceState> {
        self.states.get(piece as usize).copied()
    }
    pub fn count(&self, s: PieceState) -> u32 {
        self.counts[slot(s)]
    }
    pub fn have(&self, piece: u32) -> bool {
        self.state(piece) == Some(PieceState::Have)
    }
    /// Wanted and not yet verified (Queued or InFlight).
    pub fn wanted_missing(&self, piece: u32) -> bool {
        matches!(
            self.state(piece),
            Some(PieceState::Queued | PieceState::InFlight)
        )
    }
    /// Every wanted piece is verified.
    pub fn is_complete(&self) -> bool {
        self.count(PieceState::Queued) == 0 && self.count(PieceState::InFlight) == 0
    }
    /// Open (unrequested) blocks across all in-flight pieces.
    pub fn open_blocks(&self) -> u64 {
        self.open_blocks
    }
    pub fn inflight(&self) -> impl Iterator<Item = (u32, &InFlight)> {
        self.inflight.iter().map(|(k, v)| (*k, v))
    }
    pub fn inflight_piece(&self, piece: u32) -> Option<&InFlight> {
        self.inflight.get(&piece)
    }
    pub fn availability(&self, piece: u32) -> u32 {
        self.availability.get(piece as usize).copied().unwrap_or(0)
    }
    /// The Queued pieces by availability: `[a]` lists those of availability `a`, in no particular order.
    pub fn queued_by_availability(&self) -> &[Vec<u32>] {
        self.index.buckets()
    }
    /// `(open blocks, piece)` of the in-flight pieces with open blocks, fewest open first (then by index),
    /// starting after `after`.
    pub fn partial_after(
        &self,
        after: Option<(u32, u32)>,
    ) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.index.partial_after(after)
    }
    /// Pieces in state `s`, in index order.
    pub fn pieces_in(&self, s: PieceState) -> impl Iterator<Item = u32> + '_ {
        self.states
            .iter()
            .enumerate()
            .filter(move |(_, st)| **st == s)
            .map(|(i, _)| i as u32)
    }

    fn set_state(&mut self, piece: u32, s: PieceState) {
        let old = self.states[piece as usize];
        let avail = self.availability[piece as usize];
        if old == PieceState::Queued {
            self.index.remove_queued(piece, avail);
        }
        if s == PieceState::Queued {
            self.index.insert_queued(piece, avail);
        }
        self.counts[slot(old)] -= 1;
        self.counts[slot(s)] += 1;
        self.states[piece as usize] = s;
    }

    fn expect(&self, piece: u32, needed: PieceState) -> Result<(), TrackerError> {
        let state = self.state(piece).ok_or(TrackerError::NoSuchPiece(piece))?;
        if state != needed {
            return Err(TrackerError::WrongState {
                piece,
                state,
                needed,
            });
        }
        Ok(())
    }

    /// Queued <-> NotWanted (selective download). In-flight and verified pieces are left alone.
    pub fn set_wanted(&mut self, piece: u32, wanted: bool) -> Result<(), TrackerError> {
        let (from, to) = if wanted {
            (PieceState::NotWanted, PieceState::Queued)
        } else {
            (PieceState::Queued, PieceState::NotWanted)
        };
        match self.state(piece).ok_or(TrackerError::NoSuchPiece(piece))? {
            s if s == from => {
                self.set_state(piece, to);
                Ok(())
            }
            s if s == to => Ok(()),
            state => Err(TrackerError::WrongState {
                piece,
                state,
                needed: from,
            }),
        }
    }

    /// A piece already verified on disk (resume): Queued or NotWanted -> Have.
    pub fn mark_have(&mut self, piece: u32) -> Result<(), TrackerError> {
        match self.state(piece).ok_or(TrackerError::NoSuchPiece(piece))? {
            PieceState::Queued | PieceState::NotWanted => {
                self.set_state(piece, PieceState::Have);
                Ok(())
            }
            PieceState::Have => Ok(()),
            state => Err(TrackerError::WrongState {
                piece,
                state,
                needed: PieceState::Queued,
            }),
        }
    }

    /// Queued -> InFlight, all blocks open.
    pub fn start(&mut self, piece: u32) -> Result<(), TrackerError> {
        self.expect(piece, PieceState::Queued)?;
        let n = self.geom.blocks_in_piece(piece);
        self.inflight.insert(
            piece,
            InFlight {
                blocks: vec![BlockState::Open; n as usize],
                open: n,
                received: 0,
            },
        );
        self.open_blocks += u64::from(n);
        self.index.set_open(piece, 0, n);
        self.set_state(piece, PieceState::InFlight);
        Ok(())
    }

    fn locate(&self, block: &BlockRef) -> Result<usize, TrackerError> {
        let idx = self
            .geom
            .block_index(block)
            .ok_or(TrackerError::NoSuchBlock(*block))?;
        self.expect(block.piece, PieceState::InFlight)?;
        Ok(idx as usize)
    }

    /// Record that `peer` was asked for `block` (Open or already Requested by others: end-game).
    pub fn request(&mut self, block: &BlockRef, peer: PeerKey) -> Result<(), TrackerError> {
        let i = self.locate(block)?;
        let f = self
            .inflight
            .get_mut(&block.piece)
            .expect("InFlight piece has block state");
        match &mut f.blocks[i] {
            BlockState::Open => {
                f.blocks[i] = BlockState::Requested(vec![peer]);
                f.open -= 1;
                self.open_blocks -= 1;
                self.index.set_open(block.piece, f.open + 1, f.open);
            }
            BlockState::Requested(ps) => {
                if !ps.contains(&peer) {
                    ps.push(peer);
                }
            }
            BlockState::Received(_) => return Err(TrackerError::AlreadyReceived(*block)),
        }
        Ok(())
    }

    /// `peer` will not deliver `block` (cancel, choke, reject, timeout, disconnect). The block is open again if
    /// nobody else is asked for it; a piece with nothing requested or received goes back to Queued.
    pub fn unrequest(&mut self, block: &BlockRef, peer: PeerKey) -> Result<(), TrackerError> {
        let i = self.locate(block)?;
        let f = self
            .inflight
            .get_mut(&block.piece)
            .expect("InFlight piece has block state");
        if let BlockState::Requested(ps) = &mut f.blocks[i] {
            ps.retain(|p| *p != peer);
            if ps.is_empty() {
                f.blocks[i] = BlockState::Open;
                f.open += 1;
                self.open_blocks += 1;
                self.index.set_open(block.piece, f.open - 1, f.open);
            }
        }
        let idle = f.received == 0 && f.open as usize == f.blocks.len();
        if idle {
            let n = u64::from(f.open);
            self.index.set_open(block.piece, f.open, 0);
            self.inflight.remove(&block.piece);
            self.open_blocks -= n;
            self.set_state(block.piece, PieceState::Queued);
        }
        Ok(())
    }

    /// Move the request for `block` from peer `from` to peer `to` (rebalancing a deep queue onto an idle peer).
    /// The block stays requested throughout; false if `from` was not asked for it or `to` already is.
    pub fn reassign(
        &mut self,
        block: &BlockRef,
        from: PeerKey,
        to: PeerKey,
    ) -> Result<bool, TrackerError> {
        let i = self.locate(block)?;
        let f = self
            .inflight
            .get_mut(&block.piece)
            .expect("InFlight piece has block state");
        match &mut f.blocks[i] {
            BlockState::Requested(ps) if ps.contains(&from) && !ps.contains(&to) => {
                for p in ps.iter_mut() {
                    if *p == from {
                        *p = to;
                    }
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// `peer` delivered `block`. Accepted whether or not it was requested from that peer (late data after a
    /// timeout is still good data) as long as the block is still missing.
    pub fn receive(&mut self, block: &BlockRef, peer: PeerKey) -> Result<Received, TrackerError> {
        let i = self.locate(block)?;
        let f = self
            .inflight
            .get_mut(&block.piece)
            .expect("InFlight piece has block state");
        let cancel = match std::mem::replace(&mut f.blocks[i], BlockState::Received(peer)) {
            BlockState::Open => {
                f.open -= 1;
                self.open_blocks -= 1;
                self.index.set_open(block.piece, f.open + 1, f.open);
                Vec::new()
            }
            BlockState::Requested(ps) => ps.into_iter().filter(|p| *p != peer).collect(),
            old @ BlockState::Received(_) => {
                f.blocks[i] = old;
                return Err(TrackerError::AlreadyReceived(*block));
            }
        };
        f.received += 1;
        Ok(Received {
            piece_complete: f.complete(),
            cancel,
        })
    }

    /// The verdict on a complete piece: `ok` -> Have; otherwise its blocks are discarded and it is Queued again.
    /// Returns the distinct peers that sent its blocks (to strike them on failure).
    pub fn verified(&mut self, piece: u32, ok: bool) -> Result<Vec<PeerKey>, TrackerError> {
        self.expect(piece, PieceState::InFlight)?;
        let f = &self.inflight[&piece];
        if !f.complete() {
            return Err(TrackerError::WrongState {
                piece,
                state: PieceState::InFlight,
                needed: PieceState::InFlight,
            });
        }
        let mut senders: Vec<PeerKey> = f
            .blocks
            .iter()
            .filter_map(|b| match b {
                BlockState::Received(p) => Some(*p),
                _ => None,
            })
            .collect();
        senders.sort();
        senders.dedup();
        self.inflight.remove(&piece);
        self.set_state(
            piece,
            if ok {
                PieceState::Have
            } else {
                PieceState::Queued
            },
        );
        Ok(senders)
    }

    /// A peer announced `piece` (have).
    pub fn add_available(&mut self, piece: u32) {
        if let Some(a) = self.availability.get(piece as usize).copied() {
            self.set_availability(piece, a, a + 1);
        }
    }
    /// A peer that had `piece` left.
    pub fn remove_available(&mut self, piece: u32) {
        if let Some(a) = self.availability.get(piece as usize).copied() {
            self.set_availability(piece, a, a.saturating_sub(1));
        }
    }
    fn set_availability(&mut self, piece: u32, old: u32, new: u32) {
        if old != new && self.states[piece as usize] == PieceState::Queued {
            self.index.remove_queued(piece, old);
            self.index.insert_queued(piece, new);
        }
        self.availability[piece as usize] = new;
    }
    /// Availability counts, for cross-checks by the owner of the peer bitfields.
    pub fn availability_counts(&self) -> &[u32] {
        &self.availability
    }

    /// Recompute every redundant count and check every structural rule; panics on the first violation.
    pub fn check_invariants(&self) {
        let mut counts = [0u32; 4];
        for (i, s) in self.states.iter().enumerate() {
            counts[slot(*s)] += 1;
            assert_eq!(
                *s == PieceState::InFlight,
                self.inflight.contains_key(&(i as u32)),
                "piece {i} {s:?}"
            );
        }
        assert_eq!(counts, self.counts, "state counts");
        assert_eq!(counts.iter().sum::<u32>(), self.geom.num_pieces());
        let mut open_total = 0u64;
        for (p, f) in &self.inflight {
            assert_eq!(
                f.blocks.len() as u32,
                self.geom.blocks_in_piece(*p),
                "piece {p} block count"
            );
            let open = f.blocks.iter().filter(|b| **b == BlockState::Open).count() as u32;
            let recv = f
                .blocks
                .iter()
                .filter(|b| matches!(b, BlockState::Received(_)))
                .count() as u32;
            assert_eq!(open, f.open, "piece {p} open count");
            assert_eq!(recv, f.received, "piece {p} received count");
            for b in &f.blocks {
                if let BlockState::Requested(ps) = b {
                    assert!(!ps.is_empty(), "piece {p}: requested block with no peer");
                    let mut d = ps.clone();
                    d.sort();
                    d.dedup();
                    assert_eq!(d.len(), ps.len(), "piece {p}: duplicate requester");
                }
            }
            open_total += u64::from(open);
        }
        assert_eq!(open_total, self.open_blocks, "open block total");
        let queued: Vec<bool> = self
            .states
            .iter()
            .map(|s| *s == PieceState::Queued)
            .collect();
        let partial: BTreeSet<(u32, u32)> = (self.inflight.iter())
            .filter(|(_, f)| f.open > 0)
            .map(|(p, f)| (f.open, *p))
            .collect();
        self.index.check(&queued, &self.availability, &partial);
    }
}

#[cfg(test)]
mod tests;

//! The download side of the torrent machine: request queues sized to about `queue_secs` of each peer's rate,
//! filled by the picker, the shared download token bucket, and rebalancing of deep queues onto idle peers.

use std::collections::VecDeque;
use std::time::Instant;

use super::super::picker;
use super::{PeerKey, PeerRec, Torrent};
use crate::swarm::actions::Action;
use crate::wire::message::{BlockRef, Message, BLOCK_SIZE};

impl Torrent {
    pub(super) fn queue_target(&self, p: &PeerRec, now: Instant) -> usize {
        if p.timed_out {
            return 1;
        }
        let blocks = p.down_short.rate(now) * self.cfg.queue_secs / f64::from(BLOCK_SIZE);
        (blocks as usize).clamp(self.cfg.min_queue, self.cfg.max_queue)
    }

    /// Every missing block is requested from someone: what a peer is asked for now would be a duplicate.
    pub(super) fn in_end_game(&self) -> bool {
        self.cfg.picker.end_game
            && self.tracker.count(crate::swarm::pieces::PieceState::Queued) == 0
            && self.tracker.open_blocks() == 0
    }

    /// Top up our requests to `peer`.
    pub(super) fn refill(&mut self, now: Instant, peer: PeerKey) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        if p.peer_choking || !p.am_interested {
            return;
        }
        let mut target = self.queue_target(p, now);
        if self.in_end_game() {
            target = target.min(self.cfg.end_game_queue);
        }
        let piece_blocks = self.tracker.geometry().blocks_in_piece(0) as usize;
        let whole = self.cfg.picker.whole_pieces
            && self.cfg.download_limit.is_none()
            && target >= piece_blocks;
        let mut want = target.saturating_sub(p.outstanding.len());
        // The shared download budget stays locked while picking: what is requested is what is paid for (a block
        // the picker does not find costs nothing).
        let limiter = self.cfg.download_limit.clone();
        let mut budget = limiter.as_ref().map(|l| l.lock());
        let mut limited = false;
        if let Some(b) = budget.as_mut() {
            let n = b.allowance(now, u64::from(BLOCK_SIZE), want);
            limited = n < want;
            want = n;
        }
        if want == 0 {
            self.down_waiting |= limited;
            return;
        }
        let p = self.peers.get_mut(&peer).expect("checked");
        let has = &p.has;
        let picked = picker::pick(
            &mut self.tracker,
            &self.cfg.picker,
            peer,
            |i| has[i as usize],
            want,
            whole,
            &mut self.rng,
        );
        let short = want - picked.len().min(want);
        if let Some(b) = budget.as_mut() {
            b.take(now, picked.iter().map(|x| u64::from(x.length)).sum());
            // Waiting for budget only if the budget, not the picker, stopped us.
            self.down_waiting |= limited && short == 0;
        }
        drop(budget);
        for b in picked {
            p.outstanding.push_back((b, now));
            self.actions.push_back(Action::Send {
                peer,
                msg: Message::Request(b),
            });
        }
        if short > 0 && !p.timed_out && p.outstanding.len() < self.cfg.min_queue {
            self.rebalance(now, peer, short);
        }
    }

    /// Move up to `want` requests queued deep at other peers (past `rebalance_after_secs` of their rate) onto
    /// `peer`, which unchokes us but has nothing else to give; the originals are cancelled.
    pub(super) fn rebalance(&mut self, now: Instant, peer: PeerKey, want: usize) {
        let Some(secs) = self.cfg.rebalance_after_secs else {
            return;
        };
        let mut moves: Vec<(PeerKey, BlockRef)> = Vec::new();
        let has = &self.peers[&peer].has;
        for (k, c) in &self.peers {
            if *k == peer {
                continue;
            }
            let depth = c.down_short.rate(now) * secs / f64::from(BLOCK_SIZE);
            let keep = (depth as usize).max(self.cfg.min_queue);
            for (b, _) in c.outstanding.iter().skip(keep).rev() {
                if moves.len() >= want {
                    break;
                }
                if has[b.piece as usize] {
                    moves.push((*k, *b));
                }
            }
        }
        for (from, b) in moves {
            if self.tracker.reassign(&b, from, peer) != Ok(true) {
                continue;
            }
            let f = self.peers.get_mut(&from).expect("listed");
            take_outstanding(&mut f.outstanding, &b);
            self.send(from, Message::Cancel(b));
            let p = self.peers.get_mut(&peer).expect("listed");
            p.outstanding.push_back((b, now));
            self.send(peer, Message::Request(b));
        }
    }

    pub(super) fn refill_all(&mut self, now: Instant) {
        let mut keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        if self.cfg.download_limit.is_some() && !keys.is_empty() {
            // Under a budget the first peer asked may take it all: rotate who is first.
            self.refill_cursor = self.refill_cursor.wrapping_add(1);
            let n = keys.len();
            keys.rotate_left(self.refill_cursor % n);
        }
        for k in keys {
            self.refill(now, k);
        }
    }
}

/// Remove `block` from a peer's outstanding requests (it holds each block at most once), returning when it was
/// requested.
pub(super) fn take_outstanding(
    out: &mut VecDeque<(BlockRef, Instant)>,
    block: &BlockRef,
) -> Option<Instant> {
    let i = out.iter().position(|(b, _)| b == block)?;
    out.remove(i).map(|(_, sent)| sent)
}

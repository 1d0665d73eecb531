//! Read-only views of the torrent machine (progress, peer snapshots, our bitfield) and
//! [`Torrent::check_invariants`], which cross-checks the tracker against the peer records.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::{PeerKey, Torrent};
use crate::swarm::pieces::{BlockState, PieceTracker};
use crate::wire::message::BLOCK_SIZE;

/// A snapshot of one peer, for progress displays and diagnostics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeerInfo {
    pub addr: SocketAddr,
    pub am_choking: bool,
    pub am_interested: bool,
    pub peer_choking: bool,
    pub peer_interested: bool,
    pub optimistic: bool,
    pub snubbed: bool,
    /// Bytes/s over the choking window.
    pub rate_down: f64,
    pub rate_up: f64,
    pub outstanding_requests: usize,
    pub queued_uploads: usize,
}

impl Torrent {
    pub fn tracker(&self) -> &PieceTracker {
        &self.tracker
    }
    pub fn is_complete(&self) -> bool {
        self.tracker.is_complete()
    }
    /// Payload bytes received / sent by this machine.
    pub fn downloaded(&self) -> u64 {
        self.downloaded
    }
    pub fn uploaded(&self) -> u64 {
        self.uploaded
    }
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }
    /// Peers we unchoke.
    pub fn unchoked_count(&self) -> usize {
        self.peers.values().filter(|p| !p.am_choking).count()
    }
    /// Upload-side snapshot: (interested peers, unchoked peers, unchoked peers with requests queued or in flight).
    pub fn upload_snapshot(&self) -> (usize, usize, usize) {
        let v = self.peers.values();
        let interested = v.clone().filter(|p| p.peer_interested).count();
        let unchoked = v.clone().filter(|p| !p.am_choking).count();
        let busy = v
            .filter(|p| !p.am_choking && (p.upload_inflight > 0 || !p.incoming.is_empty()))
            .count();
        (interested, unchoked, busy)
    }

    /// Peers we currently unchoke.
    pub fn unchoked_peers(&self) -> Vec<PeerKey> {
        self.peers
            .iter()
            .filter(|(_, p)| !p.am_choking)
            .map(|(k, _)| *k)
            .collect()
    }

    /// What we know about `peer` right now.
    pub fn peer_info(&self, now: Instant, peer: PeerKey) -> Option<PeerInfo> {
        let p = self.peers.get(&peer)?;
        Some(PeerInfo {
            addr: p.addr,
            am_choking: p.am_choking,
            am_interested: p.am_interested,
            peer_choking: p.peer_choking,
            peer_interested: p.peer_interested,
            optimistic: p.optimistic,
            snubbed: self.snubbed(p, now),
            rate_down: p.down.rate(now),
            rate_up: p.up.rate(now),
            outstanding_requests: p.outstanding.len(),
            queued_uploads: p.incoming.len() + p.upload_inflight as usize,
        })
    }

    pub fn is_banned(&self, addr: &SocketAddr, peer_id: &[u8; 20]) -> bool {
        self.banned_addrs.contains(addr) || self.banned_ids.contains(peer_id)
    }

    /// Our bitfield (BEP 3 layout).
    pub fn bitfield(&self) -> Bytes {
        let g = self.tracker.geometry();
        let mut b = vec![0u8; g.bitfield_len()];
        for p in 0..g.num_pieces() {
            if self.tracker.have(p) {
                b[(p / 8) as usize] |= 0x80 >> (p % 8);
            }
        }
        Bytes::from(b)
    }

    /// Cross-check every redundant count between the tracker and the peer records; panics on a violation.
    pub fn check_invariants(&self) {
        self.tracker.check_invariants();
        let n = self.tracker.num_pieces() as usize;
        let mut avail = vec![0u32; n];
        for (k, p) in &self.peers {
            for (i, h) in p.has.iter().enumerate() {
                avail[i] += u32::from(*h);
            }
            assert_eq!(
                p.num_have as usize,
                p.has.iter().filter(|h| **h).count(),
                "peer {k:?} have count"
            );
            let interesting = (0..n)
                .filter(|i| p.has[*i] && self.tracker.wanted_missing(*i as u32))
                .count() as u32;
            assert_eq!(interesting, p.interesting, "peer {k:?} interesting count");
            assert_eq!(p.am_interested, interesting > 0, "peer {k:?} interest flag");
            if p.am_choking {
                assert!(
                    p.incoming.is_empty(),
                    "choked peer {k:?} has queued requests"
                );
            }
            for (b, _) in &p.outstanding {
                let f = self
                    .tracker
                    .inflight_piece(b.piece)
                    .expect("outstanding block of an in-flight piece");
                let i = self.tracker.geometry().block_index(b).expect("valid block") as usize;
                assert!(
                    matches!(&f.blocks[i], BlockState::Requested(ps) if ps.contains(k)),
                    "{k:?} {b:?}"
                );
            }
        }
        assert_eq!(avail, self.tracker.availability_counts(), "availability");
        for (piece, f) in self.tracker.inflight() {
            for (i, b) in f.blocks.iter().enumerate() {
                if let BlockState::Requested(ps) = b {
                    for k in ps {
                        let p = self.peers.get(k).expect("requester is connected");
                        assert!(p
                            .outstanding
                            .iter()
                            .any(|(x, _)| x.piece == piece && x.offset / BLOCK_SIZE == i as u32));
                    }
                }
            }
        }
        let slots = self.cfg.choker.upload_slots;
        assert!(self.unchoked_count() <= slots, "unchoked beyond slots");
    }
}

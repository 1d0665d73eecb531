//! Sans-IO BEP 9 metadata fetcher: assembles the info dictionary from one or more peers and accepts it only
//! when its SHA-1 equals the infohash.
//!
//! Blocks are first spread over all peers. When the assembled bytes do not hash to the infohash, the block
//! sources are remembered and the fetcher switches to one peer at a time: a peer whose own full copy fails is
//! certainly lying; once a copy verifies, every peer that earlier served a block differing from it is lying.
//! Liars are reported as [`FetchEvent::Drop`] (close them) and never asked again.

use crate::metainfo::InfoHash;
use crate::wire::metadata::{block_count, block_len, METADATA_BLOCK};
use bytes::{Bytes, BytesMut};
use std::collections::{HashSet, VecDeque};
use std::fmt::Debug;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A request not answered within this time goes back to the pool.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A peer that rejected or timed out is not asked again for this long.
pub const BACKOFF: Duration = Duration::from_secs(10);
/// Most outstanding requests per peer.
pub const MAX_OUTSTANDING: usize = 16;

/// Why a peer should be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Its blocks (or its whole copy) did not hash to the infohash.
    BadMetadata,
    /// A data block of the wrong length or a `total_size` that contradicts its own handshake.
    Malformed,
}

/// Output of the fetcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchEvent<P> {
    /// Close this peer: it served metadata that is not the torrent's.
    Drop { peer: P, reason: DropReason },
    /// The verified raw info dictionary (SHA-1 equals the infohash).
    Complete(Bytes),
}

#[derive(Debug, Clone)]
enum Block<P> {
    Missing,
    Requested { peer: P, at: Instant },
    Have { from: P, data: Bytes },
}

#[derive(Debug, Clone)]
struct PeerEntry<P> {
    peer: P,
    size: u32,
    outstanding: usize,
    not_before: Option<Instant>,
}

/// Fetches the info dictionary for one infohash. `P` identifies a peer (an address, a connection id).
#[derive(Debug)]
pub struct MetadataFetcher<P> {
    info_hash: InfoHash,
    peers: Vec<PeerEntry<P>>,
    banned: HashSet<P>,
    size: Option<u32>,
    blocks: Vec<Block<P>>,
    /// After a failed assembly: only this peer is asked, for the whole dictionary.
    single: Option<P>,
    single_mode: bool,
    /// `(block, source, bytes)` of failed assemblies, judged once a copy verifies.
    history: Vec<(usize, P, Bytes)>,
    events: VecDeque<FetchEvent<P>>,
    done: bool,
}

impl<P: Clone + Eq + Hash + Debug> MetadataFetcher<P> {
    pub fn new(info_hash: InfoHash) -> Self {
        MetadataFetcher {
            info_hash,
            peers: Vec::new(),
            banned: HashSet::new(),
            size: None,
            blocks: Vec::new(),
            single: None,
            single_mode: false,
            history: Vec::new(),
            events: VecDeque::new(),
            done: false,
        }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// A peer that announced `metadata_size` (1..=16 MiB, checked by the extension handshake decoder).
    pub fn add_peer(&mut self, peer: P, metadata_size: u32) {
        if self.done
            || metadata_size == 0
            || self.banned.contains(&peer)
            || self.peers.iter().any(|e| e.peer == peer)
        {
            return;
        }
        self.peers.push(PeerEntry {
            peer,
            size: metadata_size,
            outstanding: 0,
            not_before: None,
        });
    }

    /// The peer is gone (disconnected): its outstanding blocks go back to the pool.
    pub fn remove_peer(&mut self, peer: &P) {
        self.peers.retain(|e| &e.peer != peer);
        for b in &mut self.blocks {
            if matches!(b, Block::Requested { peer: p, .. } if p == peer) {
                *b = Block::Missing;
            }
        }
        if self.single.as_ref() == Some(peer) {
            self.single = None;
        }
    }

    /// Next `(peer, block index)` to send a `ut_metadata` request for, if any.
    pub fn poll_request(&mut self, now: Instant) -> Option<(P, u32)> {
        if self.done {
            return None;
        }
        self.ensure_size();
        let size = self.size?;
        let missing = self
            .blocks
            .iter()
            .position(|b| matches!(b, Block::Missing))?;
        if self.single_mode && self.single.is_none() {
            self.single = self
                .peers
                .iter()
                .find(|e| e.size == size)
                .map(|e| e.peer.clone());
        }
        let single = self.single.clone();
        let entry = self
            .peers
            .iter_mut()
            .filter(|e| e.size == size && e.outstanding < MAX_OUTSTANDING)
            .filter(|e| e.not_before.is_none_or(|t| t <= now))
            .filter(|e| single.as_ref().is_none_or(|s| s == &e.peer))
            .min_by_key(|e| e.outstanding)?;
        entry.outstanding += 1;
        entry.not_before = None;
        self.blocks[missing] = Block::Requested {
            peer: entry.peer.clone(),
            at: now,
        };
        Some((entry.peer.clone(), missing as u32))
    }

    /// A `data` message from `peer`. Unsolicited blocks are ignored.
    pub fn handle_data(&mut self, peer: &P, piece: u32, total_size: u32, data: Bytes) {
        let idx = piece as usize;
        let Some(size) = self.size else { return };
        let requested =
            matches!(self.blocks.get(idx), Some(Block::Requested { peer: p, .. }) if p == peer);
        if self.done || !requested {
            return;
        }
        self.release(peer);
        if total_size != size || block_len(size, piece) != Some(data.len() as u32) {
            self.blocks[idx] = Block::Missing;
            self.ban(peer.clone(), DropReason::Malformed);
            return;
        }
        self.blocks[idx] = Block::Have {
            from: peer.clone(),
            data,
        };
        if self.blocks.iter().all(|b| matches!(b, Block::Have { .. })) {
            self.assemble();
        }
    }

    /// A `reject` from `peer`: the block goes back and the peer rests for [`BACKOFF`].
    pub fn handle_reject(&mut self, now: Instant, peer: &P, piece: u32) {
        if let Some(b @ Block::Requested { .. }) = self.blocks.get_mut(piece as usize) {
            if matches!(b, Block::Requested { peer: p, .. } if p == peer) {
                *b = Block::Missing;
                self.release(peer);
                self.back_off(peer, now);
            }
        }
    }

    /// Requests older than [`REQUEST_TIMEOUT`] go back to the pool.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut late = Vec::new();
        for b in &mut self.blocks {
            if let Block::Requested { peer, at } = b {
                if now.saturating_duration_since(*at) >= REQUEST_TIMEOUT {
                    late.push(peer.clone());
                    *b = Block::Missing;
                }
            }
        }
        for p in late {
            self.release(&p);
            self.back_off(&p, now);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let req = self.blocks.iter().filter_map(|b| match b {
            Block::Requested { at, .. } => Some(*at + REQUEST_TIMEOUT),
            _ => None,
        });
        req.chain(self.peers.iter().filter_map(|e| e.not_before))
            .min()
    }

    pub fn poll_event(&mut self) -> Option<FetchEvent<P>> {
        self.events.pop_front()
    }

    fn release(&mut self, peer: &P) {
        if let Some(e) = self.peers.iter_mut().find(|e| &e.peer == peer) {
            e.outstanding = e.outstanding.saturating_sub(1);
        }
    }

    fn back_off(&mut self, peer: &P, now: Instant) {
        if let Some(e) = self.peers.iter_mut().find(|e| &e.peer == peer) {
            e.not_before = Some(now + BACKOFF);
        }
    }

    fn ban(&mut self, peer: P, reason: DropReason) {
        if !self.banned.insert(peer.clone()) {
            return;
        }
        self.remove_peer(&peer);
        self.events.push_back(FetchEvent::Drop { peer, reason });
    }

    /// Pick the metadata size to fetch: keep the current one while a peer announces it.
    fn ensure_size(&mut self) {
        if let Some(size) = self.size {
            if self.peers.iter().any(|e| e.size == size) {
                return;
            }
        }
        self.size = self.peers.first().map(|e| e.size);
        self.blocks = match self.size {
            Some(s) => vec![Block::Missing; block_count(s) as usize],
            None => Vec::new(),
        };
    }

    fn assemble(&mut self) {
        let mut buf = BytesMut::with_capacity(self.blocks.len() * METADATA_BLOCK as usize);
        let mut sources: Vec<P> = Vec::new();
        for b in &self.blocks {
            if let Block::Have { from, data } = b {
                buf.extend_from_slice(data);
                if !sources.contains(from) {
                    sources.push(from.clone());
                }
            }
        }
        let info = buf.freeze();
        if InfoHash::of(&info) == self.info_hash {
            let mut liars: Vec<P> = Vec::new();
            for (idx, from, data) in std::mem::take(&mut self.history) {
                if let Some(Block::Have { data: good, .. }) = self.blocks.get(idx) {
                    if good != &data && !liars.contains(&from) {
                        liars.push(from);
                    }
                }
            }
            self.done = true;
            for l in liars {
                if self.banned.insert(l.clone()) {
                    self.events.push_back(FetchEvent::Drop {
                        peer: l,
                        reason: DropReason::BadMetadata,
                    });
                }
            }
            self.events.push_back(FetchEvent::Complete(info));
            self.peers.clear();
            self.blocks.clear();
            return;
        }
        // Mismatch: a single source is certainly the liar; several go to the one-peer-at-a-time mode.
        let blocks = std::mem::take(&mut self.blocks);
        self.blocks = vec![Block::Missing; blocks.len()];
        if let [only] = sources.as_slice() {
            let only = only.clone();
            self.ban(only, DropReason::BadMetadata);
        } else {
            for (idx, b) in blocks.into_iter().enumerate() {
                if let Block::Have { from, data } = b {
                    self.history.push((idx, from, data));
                }
            }
        }
        self.single_mode = true;
        self.single = None;
    }
}

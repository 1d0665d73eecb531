//! The per-torrent state machine: composes the piece tracker, picker, choker, rate estimators and token buckets.
//! Inputs: `peer_connected`, `handle_message`, `peer_disconnected`, `block_read`, `block_sent`,
//! `piece_verified`, `tick`. Outputs: [`Action`]s from `poll_action` (messages to send, storage reads/writes,
//! verifications, disconnects, events) and the next deadline from `poll_timeout`. Sans-IO: `now` comes in.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use rand::rngs::StdRng;

use super::actions::{Action, DisconnectReason, TorrentConfig, TorrentEvent};
use super::choker::{self, ChokerPeer};
use super::geometry::Geometry;
use super::picker;
use super::pieces::{BlockState, PieceTracker};
use super::rate::{RateEstimator, TokenBucket};
use super::PeerKey;
use crate::wire::message::{BlockRef, Message, BLOCK_SIZE};

/// What the machine knows about one connected peer.
#[derive(Debug, Clone)]
pub(crate) struct PeerRec {
    addr: SocketAddr,
    id: [u8; 20],
    connected_at: Instant,
    has: Vec<bool>,
    num_have: u32,
    /// Pieces it has that we still want.
    interesting: u32,
    am_interested: bool,
    interest_since: Instant,
    peer_interested: bool,
    am_choking: bool,
    unchoked_since: Option<Instant>,
    last_unchoked: Option<Instant>,
    /// Unchoked between rechokes to fill a free slot: a better reciprocator that turns interested takes it.
    provisional: bool,
    optimistic: bool,
    uploaded_since_unchoke: u64,
    peer_choking: bool,
    /// Our requests to it, with when they were sent.
    outstanding: Vec<(BlockRef, Instant)>,
    last_block_at: Option<Instant>,
    timed_out: bool,
    /// Its requests to us, not yet handed to storage.
    incoming: VecDeque<BlockRef>,
    upload_inflight: u32,
    down: RateEstimator,
    down_short: RateEstimator,
    up: RateEstimator,
}

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

/// The torrent machine (see module docs).
pub struct Torrent {
    cfg: TorrentConfig,
    tracker: PieceTracker,
    rng: StdRng,
    peers: BTreeMap<PeerKey, PeerRec>,
    actions: VecDeque<Action>,
    banned_addrs: BTreeSet<SocketAddr>,
    banned_ids: BTreeSet<[u8; 20]>,
    strikes: BTreeMap<[u8; 20], u32>,
    next_rechoke: Instant,
    next_optimistic: Instant,
    up_limit: Option<TokenBucket>,
    down_limit: Option<TokenBucket>,
    complete_reported: bool,
    downloaded: u64,
    uploaded: u64,
}

impl Torrent {
    /// A torrent with the verified pieces `have` (from resume; may be empty), all others wanted.
    pub fn new(
        now: Instant,
        geom: Geometry,
        have: &[u32],
        cfg: TorrentConfig,
        rng: StdRng,
    ) -> Self {
        let mut tracker = PieceTracker::new(geom);
        for p in have {
            let _ = tracker.mark_have(*p);
        }
        let burst = |r: u64| TokenBucket::new(now, r, r.max(u64::from(BLOCK_SIZE)));
        Self {
            complete_reported: tracker.is_complete(),
            tracker,
            rng,
            peers: BTreeMap::new(),
            actions: VecDeque::new(),
            banned_addrs: BTreeSet::new(),
            banned_ids: BTreeSet::new(),
            strikes: BTreeMap::new(),
            next_rechoke: now + cfg.choker.rechoke_interval,
            next_optimistic: now + cfg.choker.optimistic_interval,
            up_limit: cfg.upload_limit.map(burst),
            down_limit: cfg.download_limit.map(burst),
            cfg,
            downloaded: 0,
            uploaded: 0,
        }
    }

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

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When `tick` must next be called.
    pub fn poll_timeout(&mut self, now: Instant) -> Instant {
        let mut t = self.next_rechoke.min(self.next_optimistic);
        for p in self.peers.values() {
            if let Some((_, sent)) = p.outstanding.first() {
                let since = p.last_block_at.map_or(*sent, |l| l.max(*sent));
                t = t.min(since + self.cfg.request_timeout);
            }
        }
        for b in [&mut self.up_limit, &mut self.down_limit]
            .into_iter()
            .flatten()
        {
            let r = b.ready_at(now);
            if r > now {
                t = t.min(r);
            }
        }
        t
    }

    fn send(&mut self, peer: PeerKey, msg: Message) {
        self.actions.push_back(Action::Send { peer, msg });
    }

    /// A handshake with `peer` completed. Banned peers are disconnected at once.
    pub fn peer_connected(
        &mut self,
        now: Instant,
        peer: PeerKey,
        addr: SocketAddr,
        peer_id: [u8; 20],
    ) {
        if self.is_banned(&addr, &peer_id) {
            self.actions.push_back(Action::Disconnect {
                peer,
                reason: DisconnectReason::Banned,
            });
            return;
        }
        if self.peers.contains_key(&peer) {
            let reason = DisconnectReason::Protocol("peer key already connected");
            self.actions.push_back(Action::Disconnect { peer, reason });
            return;
        }
        let n = self.tracker.num_pieces() as usize;
        let w = self.cfg.rate_window;
        self.peers.insert(
            peer,
            PeerRec {
                addr,
                id: peer_id,
                connected_at: now,
                has: vec![false; n],
                num_have: 0,
                interesting: 0,
                am_interested: false,
                interest_since: now,
                peer_interested: false,
                am_choking: true,
                unchoked_since: None,
                last_unchoked: None,
                provisional: false,
                optimistic: false,
                uploaded_since_unchoke: 0,
                peer_choking: true,
                outstanding: Vec::new(),
                last_block_at: None,
                timed_out: false,
                incoming: VecDeque::new(),
                upload_inflight: 0,
                down: RateEstimator::new(w),
                down_short: RateEstimator::new(self.cfg.queue_rate_window),
                up: RateEstimator::new(w),
            },
        );
        if self.tracker.count(super::pieces::PieceState::Have) > 0 {
            let bf = self.bitfield();
            self.send(peer, Message::Bitfield(bf));
        }
    }

    /// The connection to `peer` is gone (or we dropped it): its requests return to the pool.
    pub fn peer_disconnected(&mut self, now: Instant, peer: PeerKey) {
        let Some(p) = self.peers.remove(&peer) else {
            return;
        };
        for (b, _) in &p.outstanding {
            let _ = self.tracker.unrequest(b, peer);
        }
        for (i, h) in p.has.iter().enumerate() {
            if *h {
                self.tracker.remove_available(i as u32);
            }
        }
        if !p.am_choking {
            self.fill_free_slots(now);
        }
        self.refill_all(now);
    }

    fn drop_peer(&mut self, now: Instant, peer: PeerKey, reason: DisconnectReason) {
        self.peer_disconnected(now, peer);
        self.actions.push_back(Action::Disconnect { peer, reason });
    }

    /// One message from `peer`.
    pub fn handle_message(&mut self, now: Instant, peer: PeerKey, msg: Message) {
        if !self.peers.contains_key(&peer) {
            return;
        }
        match msg {
            Message::KeepAlive | Message::AllowedFast { .. } | Message::Extended { .. } => {}
            Message::Choke => {
                let p = self.peers.get_mut(&peer).expect("checked");
                p.peer_choking = true;
                let out = std::mem::take(&mut p.outstanding);
                for (b, _) in &out {
                    let _ = self.tracker.unrequest(b, peer);
                }
                if !out.is_empty() {
                    self.refill_all(now);
                }
            }
            Message::Unchoke => {
                let p = self.peers.get_mut(&peer).expect("checked");
                p.peer_choking = false;
                p.interest_since = p.interest_since.max(now);
                self.refill(now, peer);
            }
            Message::Interested => {
                self.peers.get_mut(&peer).expect("checked").peer_interested = true;
                self.fill_free_slots(now);
                self.preempt_provisional(now, peer);
            }
            Message::NotInterested => {
                let p = self.peers.get_mut(&peer).expect("checked");
                p.peer_interested = false;
                if !p.am_choking {
                    self.choke(peer);
                    self.fill_free_slots(now);
                }
            }
            Message::Have { piece } => {
                if piece >= self.tracker.num_pieces() {
                    return self.drop_peer(
                        now,
                        peer,
                        DisconnectReason::Protocol("have: piece index out of range"),
                    );
                }
                self.peer_has(now, peer, piece);
                self.after_availability(now, peer);
            }
            Message::Bitfield(bytes) => {
                let n = self.tracker.num_pieces();
                if bytes.len() != self.tracker.geometry().bitfield_len()
                    || (n..bytes.len() as u32 * 8)
                        .any(|i| bytes[(i / 8) as usize] & (0x80 >> (i % 8)) != 0)
                {
                    return self.drop_peer(
                        now,
                        peer,
                        DisconnectReason::Protocol("bitfield of the wrong length"),
                    );
                }
                for i in 0..n {
                    if bytes[(i / 8) as usize] & (0x80 >> (i % 8)) != 0 {
                        self.peer_has(now, peer, i);
                    }
                }
                self.after_availability(now, peer);
            }
            Message::HaveAll => {
                for i in 0..self.tracker.num_pieces() {
                    self.peer_has(now, peer, i);
                }
                self.after_availability(now, peer);
            }
            Message::HaveNone => {}
            Message::Request(b) => {
                if self.tracker.geometry().block_index(&b).is_none() {
                    return self.drop_peer(
                        now,
                        peer,
                        DisconnectReason::Protocol("request outside the piece"),
                    );
                }
                let have = self.tracker.have(b.piece);
                let max = self.cfg.max_incoming_requests;
                let p = self.peers.get_mut(&peer).expect("checked");
                if p.am_choking || !have || p.incoming.len() >= max || p.incoming.contains(&b) {
                    return;
                }
                p.incoming.push_back(b);
                self.pump_upload(now, peer);
            }
            Message::Cancel(b) => {
                self.peers
                    .get_mut(&peer)
                    .expect("checked")
                    .incoming
                    .retain(|x| *x != b);
            }
            Message::Reject(b) => {
                let p = self.peers.get_mut(&peer).expect("checked");
                let before = p.outstanding.len();
                p.outstanding.retain(|(x, _)| *x != b);
                if p.outstanding.len() != before {
                    let _ = self.tracker.unrequest(&b, peer);
                }
            }
            Message::Piece {
                piece,
                offset,
                data,
            } => self.on_block(now, peer, piece, offset, data),
        }
    }

    fn peer_has(&mut self, now: Instant, peer: PeerKey, piece: u32) {
        let wanted = self.tracker.wanted_missing(piece);
        let p = self.peers.get_mut(&peer).expect("caller checked");
        let Some(slot) = p.has.get_mut(piece as usize) else {
            return;
        };
        if *slot {
            return;
        }
        *slot = true;
        p.num_have += 1;
        if wanted {
            p.interesting += 1;
        }
        self.tracker.add_available(piece);
        self.update_interest(now, peer);
    }

    fn after_availability(&mut self, now: Instant, peer: PeerKey) {
        let p = &self.peers[&peer];
        if self.tracker.is_complete() && p.num_have == self.tracker.num_pieces() {
            return self.drop_peer(now, peer, DisconnectReason::BothComplete);
        }
        self.refill(now, peer);
    }

    fn update_interest(&mut self, now: Instant, peer: PeerKey) {
        let p = self.peers.get_mut(&peer).expect("caller checked");
        let want = p.interesting > 0;
        if want != p.am_interested {
            p.am_interested = want;
            if want {
                p.interest_since = now;
            }
            self.send(
                peer,
                if want {
                    Message::Interested
                } else {
                    Message::NotInterested
                },
            );
        }
    }

    fn on_block(&mut self, now: Instant, peer: PeerKey, piece: u32, offset: u32, data: Bytes) {
        let Ok(length) = u32::try_from(data.len()) else {
            return self.drop_peer(now, peer, DisconnectReason::Protocol("block too large"));
        };
        let block = BlockRef {
            piece,
            offset,
            length,
        };
        if self.tracker.geometry().block_index(&block).is_none() {
            return self.drop_peer(
                now,
                peer,
                DisconnectReason::Protocol("piece message outside the piece"),
            );
        }
        let p = self.peers.get_mut(&peer).expect("checked");
        p.outstanding.retain(|(b, _)| *b != block);
        p.last_block_at = Some(now);
        p.timed_out = false;
        p.down.add(now, u64::from(length));
        p.down_short.add(now, u64::from(length));
        self.downloaded += u64::from(length);
        if let Ok(r) = self.tracker.receive(&block, peer) {
            for other in r.cancel {
                if let Some(o) = self.peers.get_mut(&other) {
                    o.outstanding.retain(|(b, _)| *b != block);
                    self.send(other, Message::Cancel(block));
                }
            }
            self.actions.push_back(Action::WriteBlock { block, data });
            if r.piece_complete {
                self.actions.push_back(Action::VerifyPiece { piece });
            }
        }
        self.refill(now, peer);
    }

    /// Storage's verdict on a piece announced with `VerifyPiece`.
    pub fn piece_verified(&mut self, now: Instant, piece: u32, ok: bool) {
        let Ok(senders) = self.tracker.verified(piece, ok) else {
            return;
        };
        if ok {
            let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
            for k in keys {
                let p = self.peers.get_mut(&k).expect("listed");
                if p.has[piece as usize] {
                    p.interesting -= 1;
                    self.update_interest(now, k);
                } else {
                    self.send(k, Message::Have { piece });
                }
            }
            self.actions
                .push_back(Action::Event(TorrentEvent::PieceCompleted { piece }));
            if self.tracker.is_complete() && !self.complete_reported {
                self.complete_reported = true;
                self.actions
                    .push_back(Action::Event(TorrentEvent::Complete));
                let n = self.tracker.num_pieces();
                let seeds: Vec<PeerKey> = self
                    .peers
                    .iter()
                    .filter(|(_, p)| p.num_have == n)
                    .map(|(k, _)| *k)
                    .collect();
                for k in seeds {
                    self.drop_peer(now, k, DisconnectReason::BothComplete);
                }
            }
        } else {
            self.actions
                .push_back(Action::Event(TorrentEvent::PieceFailed {
                    piece,
                    from: senders.clone(),
                }));
            for k in senders {
                let Some(p) = self.peers.get(&k) else {
                    continue;
                };
                let (addr, id) = (p.addr, p.id);
                let s = self.strikes.entry(id).or_insert(0);
                *s += 1;
                if *s >= self.cfg.strikes_to_ban {
                    self.banned_addrs.insert(addr);
                    self.banned_ids.insert(id);
                    let ev = TorrentEvent::PeerBanned {
                        peer: k,
                        addr,
                        peer_id: id,
                    };
                    self.actions.push_back(Action::Event(ev));
                    self.drop_peer(now, k, DisconnectReason::Banned);
                }
            }
            self.refill_all(now);
        }
    }

    /// Storage read a block requested with `ReadBlock`: it is sent unless the peer was choked meanwhile.
    pub fn block_read(&mut self, now: Instant, peer: PeerKey, block: BlockRef, data: Bytes) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.am_choking {
            p.upload_inflight = p.upload_inflight.saturating_sub(1);
            return self.pump_upload(now, peer);
        }
        let n = data.len() as u64;
        p.up.add(now, n);
        p.uploaded_since_unchoke += n;
        self.uploaded += n;
        self.send(
            peer,
            Message::Piece {
                piece: block.piece,
                offset: block.offset,
                data,
            },
        );
    }

    /// A `Piece` message to `peer` has left (is on the wire): the next queued request may be read.
    pub fn block_sent(&mut self, now: Instant, peer: PeerKey) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        p.upload_inflight = p.upload_inflight.saturating_sub(1);
        self.pump_upload(now, peer);
    }

    fn pump_upload(&mut self, now: Instant, peer: PeerKey) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        while p.upload_inflight < self.cfg.upload_pipeline && !p.am_choking {
            let Some(b) = p.incoming.front().copied() else {
                break;
            };
            if let Some(l) = &mut self.up_limit {
                if !l.try_take(now, u64::from(b.length)) {
                    break;
                }
            }
            p.incoming.pop_front();
            p.upload_inflight += 1;
            self.actions.push_back(Action::ReadBlock { peer, block: b });
        }
    }

    fn queue_target(&self, p: &PeerRec, now: Instant) -> usize {
        if p.timed_out {
            return 1;
        }
        let blocks = p.down_short.rate(now) * self.cfg.queue_secs / f64::from(BLOCK_SIZE);
        (blocks as usize).clamp(self.cfg.min_queue, self.cfg.max_queue)
    }

    /// Top up our requests to `peer`.
    fn refill(&mut self, now: Instant, peer: PeerKey) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        if p.peer_choking || !p.am_interested {
            return;
        }
        let mut want = self
            .queue_target(p, now)
            .saturating_sub(p.outstanding.len());
        if let Some(l) = &mut self.down_limit {
            let mut n = 0;
            while n < want && l.try_take(now, u64::from(BLOCK_SIZE)) {
                n += 1;
            }
            want = n;
        }
        if want == 0 {
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
            &mut self.rng,
        );
        let short = want - picked.len().min(want);
        for b in picked {
            p.outstanding.push((b, now));
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
    fn rebalance(&mut self, now: Instant, peer: PeerKey, want: usize) {
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
            f.outstanding.retain(|(x, _)| *x != b);
            self.send(from, Message::Cancel(b));
            let p = self.peers.get_mut(&peer).expect("listed");
            p.outstanding.push((b, now));
            self.send(peer, Message::Request(b));
        }
    }

    fn refill_all(&mut self, now: Instant) {
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            self.refill(now, k);
        }
    }

    fn choke(&mut self, peer: PeerKey) {
        let p = self.peers.get_mut(&peer).expect("caller checked");
        p.am_choking = true;
        p.optimistic = false;
        p.provisional = false;
        p.unchoked_since = None;
        p.incoming.clear();
        self.send(peer, Message::Choke);
    }

    fn unchoke(&mut self, now: Instant, peer: PeerKey) {
        let p = self.peers.get_mut(&peer).expect("caller checked");
        p.am_choking = false;
        p.unchoked_since = Some(now);
        p.last_unchoked = Some(now);
        p.uploaded_since_unchoke = 0;
        self.send(peer, Message::Unchoke);
    }

    /// Between rechokes, give a free upload slot to an interested peer at once (best rate first); such a
    /// provisional slot goes to a better reciprocator that turns interested before the next rechoke.
    fn fill_free_slots(&mut self, now: Instant) {
        let slots = self.cfg.choker.upload_slots;
        while self.unchoked_count() < slots {
            let best = self
                .peers
                .iter()
                .filter(|(_, p)| p.am_choking && p.peer_interested)
                .max_by(|a, b| a.1.down.rate(now).total_cmp(&b.1.down.rate(now)))
                .map(|(k, _)| *k);
            match best {
                Some(k) => {
                    self.unchoke(now, k);
                    self.peers.get_mut(&k).expect("listed").provisional = true;
                }
                None => break,
            }
        }
    }

    /// `peer` just turned interested but found every slot taken: if a slot was filled provisionally by a peer
    /// that reciprocates less than `peer`, `peer` takes it (tit-for-tat between rechokes).
    fn preempt_provisional(&mut self, now: Instant, peer: PeerKey) {
        let p = &self.peers[&peer];
        if !p.am_choking || self.cfg.choker.upload_slots == 0 {
            return;
        }
        let rate = p.down.rate(now);
        let worst = self
            .peers
            .iter()
            .filter(|(_, q)| q.provisional && !q.am_choking)
            .map(|(k, q)| (q.down.rate(now), *k))
            .min_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((r, k)) = worst {
            if r < rate {
                self.choke(k);
                self.unchoke(now, peer);
                self.peers.get_mut(&peer).expect("listed").provisional = true;
            }
        }
    }

    fn snubbed(&self, p: &PeerRec, now: Instant) -> bool {
        let since = p
            .last_block_at
            .map_or(p.interest_since, |l| l.max(p.interest_since));
        p.am_interested && now.saturating_duration_since(since) >= self.cfg.choker.snub_time
    }

    fn rechoke(&mut self, now: Instant) {
        let rotate = now >= self.next_optimistic;
        let input: Vec<ChokerPeer> = self
            .peers
            .iter()
            .map(|(k, p)| ChokerPeer {
                key: *k,
                interested: p.peer_interested,
                rate_from: p.down.rate(now),
                rate_to: p.up.rate(now),
                snubbed: self.snubbed(p, now),
                connected_at: p.connected_at,
                unchoked_since: p.unchoked_since,
                last_unchoked: p.last_unchoked,
                optimistic: p.optimistic,
                uploaded_since_unchoke: p.uploaded_since_unchoke,
            })
            .collect();
        let seeding = self.tracker.is_complete();
        let d = choker::rechoke(
            &self.cfg.choker,
            now,
            seeding,
            &input,
            rotate,
            &mut self.rng,
        );
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            let should = d.unchoke.binary_search(&k).is_ok();
            let choking = self.peers[&k].am_choking;
            if should && choking {
                self.unchoke(now, k);
            } else if !should && !choking {
                self.choke(k);
            }
            let p = self.peers.get_mut(&k).expect("listed");
            p.optimistic = d.optimistic.binary_search(&k).is_ok();
            p.provisional = false;
        }
        self.next_rechoke = now + self.cfg.choker.rechoke_interval;
        if rotate {
            self.next_optimistic = now + self.cfg.choker.optimistic_interval;
        }
    }

    /// Timers: rechoke, optimistic rotation, request timeouts, rate-limited queues.
    pub fn tick(&mut self, now: Instant) {
        if now >= self.next_rechoke || now >= self.next_optimistic {
            self.rechoke(now);
        }
        let timeout = self.cfg.request_timeout;
        let mut returned = false;
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in &keys {
            let p = self.peers.get_mut(k).expect("listed");
            let Some((_, sent)) = p.outstanding.first() else {
                continue;
            };
            let since = p.last_block_at.map_or(*sent, |l| l.max(*sent));
            if now.saturating_duration_since(since) < timeout {
                continue;
            }
            p.timed_out = true;
            let out = std::mem::take(&mut p.outstanding);
            for (b, _) in out {
                let _ = self.tracker.unrequest(&b, *k);
                self.actions.push_back(Action::Send {
                    peer: *k,
                    msg: Message::Cancel(b),
                });
            }
            returned = true;
        }
        for k in &keys {
            self.pump_upload(now, *k);
        }
        self.fill_free_slots(now);
        if returned || self.down_limit.is_some() {
            self.refill_all(now);
        }
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

//! The per-torrent state machine: composes the piece tracker, picker, choker, rate estimators and token buckets.
//! Inputs: `peer_connected`, `handle_message`, `peer_disconnected`, `block_read`, `block_sent`,
//! `piece_verified`, `tick`. Outputs: [`Action`]s from `poll_action` (messages to send, storage reads/writes,
//! verifications, disconnects, events) and the next deadline from `poll_timeout`. Sans-IO: `now` comes in.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use rand::rngs::StdRng;

use super::actions::{Action, DisconnectReason, TorrentConfig};
use super::geometry::Geometry;
use super::pieces::PieceTracker;
use super::rate::RateEstimator;
use super::stall::{self, Delivery, Stalls, Verdict};
use super::PeerKey;
use crate::wire::message::{BlockRef, Message};
use crate::wire::PieceData;

mod download;
use download::take_outstanding;
mod info;
mod upload;
mod verdict;

pub use info::PeerInfo;

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
    /// Our requests to it, oldest first, with when they were sent (blocks mostly arrive in request order: a
    /// delivered one is found and removed near the front).
    outstanding: VecDeque<(BlockRef, Instant)>,
    last_block_at: Option<Instant>,
    timed_out: bool,
    delivery: Delivery,
    /// Its requests to us, not yet handed to storage.
    incoming: VecDeque<BlockRef>,
    /// Its requests we ignored (choked, not ours, queue full) since we last unchoked it: an honest peer sends
    /// at most its queue depth across our choke, so past `max_incoming_requests` of them it is a flood (DESIGN
    /// §4) and the connection closes. Accepted requests in between do not reset it (a flooder we unchoke would).
    ignored_requests: usize,
    upload_inflight: u32,
    down: RateEstimator,
    down_short: RateEstimator,
    up: RateEstimator,
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
    /// Connections we banned for bad data: a failed piece one of them contributed to is blamed on it alone.
    banned_keys: BTreeSet<PeerKey>,
    /// Peer ids that were the only sender of a failed piece (proven liars, not just unlucky co-senders).
    sole_failures: BTreeSet<[u8; 20]>,
    /// Addresses dropped as stalled, refused for a while; the median block gap of the peers (set by `tick`).
    stalls: Stalls,
    swarm_gap: Option<std::time::Duration>,
    next_rechoke: Instant,
    next_optimistic: Instant,
    /// A peer wanted to request more but the download limit's budget ran out: `poll_timeout` reports the
    /// instant the budget is positive again (even if that is already past) so `tick` uses it then.
    down_waiting: bool,
    /// A peer's request waits for the upload limit's budget (same meaning).
    up_waiting: bool,
    /// Where `refill_all` starts, rotated so a tight shared budget is not always offered to the same peer first.
    refill_cursor: usize,
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
        Self {
            complete_reported: tracker.is_complete(),
            tracker,
            rng,
            peers: BTreeMap::new(),
            actions: VecDeque::new(),
            banned_addrs: BTreeSet::new(),
            banned_ids: BTreeSet::new(),
            strikes: BTreeMap::new(),
            banned_keys: BTreeSet::new(),
            sole_failures: BTreeSet::new(),
            stalls: Stalls::default(),
            swarm_gap: None,
            next_rechoke: now + cfg.choker.rechoke_interval,
            next_optimistic: now + cfg.choker.optimistic_interval,
            down_waiting: false,
            up_waiting: false,
            refill_cursor: 0,
            cfg,
            downloaded: 0,
            uploaded: 0,
        }
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When `tick` must next be called (`now` or earlier: at once).
    pub fn poll_timeout(&mut self, now: Instant) -> Instant {
        let mut t = self.next_rechoke.min(self.next_optimistic);
        for p in self.peers.values() {
            if let Some((_, sent)) = p.outstanding.front() {
                let since = p.last_block_at.map_or(*sent, |l| l.max(*sent));
                t = t.min(since + self.request_timeout_of(p));
            }
        }
        // A limit matters only while something waits for its budget; then its refill instant is reported even
        // when it has already passed (the budget is positive but nobody has used it yet: tick at once).
        let waiting = [
            (self.up_waiting, &self.cfg.upload_limit),
            (self.down_waiting, &self.cfg.download_limit),
        ];
        for (_, l) in waiting.into_iter().filter(|(w, _)| *w) {
            if let Some(l) = l {
                t = t.min(l.lock().ready_at(now));
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
        if self.stalls.refused(now, &addr) {
            let reason = DisconnectReason::Stalled;
            self.actions.push_back(Action::Disconnect { peer, reason });
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
                outstanding: VecDeque::new(),
                last_block_at: None,
                timed_out: false,
                delivery: Delivery::default(),
                incoming: VecDeque::new(),
                ignored_requests: 0,
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
        // A protocol violator would be dialled again at once: refuse it for a while, like a stalled peer.
        if let (DisconnectReason::Protocol(_), Some(p)) = (reason, self.peers.get(&peer)) {
            self.stalls.record(now, p.addr, &self.cfg.stall);
        }
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
                    p.ignored_requests += 1;
                    if p.ignored_requests > max {
                        return self.drop_peer(
                            now,
                            peer,
                            DisconnectReason::Protocol("request flood"),
                        );
                    }
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
                if take_outstanding(&mut p.outstanding, &b).is_some() {
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

    fn on_block(&mut self, now: Instant, peer: PeerKey, piece: u32, offset: u32, data: PieceData) {
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
        if let Some(sent) = take_outstanding(&mut p.outstanding, &block) {
            let since = p.last_block_at.map_or(sent, |l| l.max(sent));
            p.delivery.on_block(now.saturating_duration_since(since));
        }
        p.last_block_at = Some(now);
        p.timed_out = false;
        p.down.add(now, u64::from(length));
        p.down_short.add(now, u64::from(length));
        self.downloaded += u64::from(length);
        if let Ok(r) = self.tracker.receive(&block, peer) {
            for other in r.cancel {
                if let Some(o) = self.peers.get_mut(&other) {
                    take_outstanding(&mut o.outstanding, &block);
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

    /// Timers: rechoke, optimistic rotation, request timeouts, rate-limited queues.
    pub fn tick(&mut self, now: Instant) {
        if now >= self.next_rechoke || now >= self.next_optimistic {
            self.rechoke(now);
        }
        self.swarm_gap = stall::median_gap(self.peers.values().filter_map(|p| p.delivery.gap()));
        let mut returned = false;
        let mut stalled = Vec::new();
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in &keys {
            let timeout = self.request_timeout_of(&self.peers[k]);
            let p = self.peers.get_mut(k).expect("listed");
            let Some((_, sent)) = p.outstanding.front() else {
                continue;
            };
            let since = p.last_block_at.map_or(*sent, |l| l.max(*sent));
            if now.saturating_duration_since(since) < timeout {
                continue;
            }
            p.timed_out = true;
            if p.delivery.on_timeout(&self.cfg.stall) == Verdict::Drop {
                stalled.push((*k, p.addr));
                continue;
            }
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
        for (k, addr) in stalled {
            self.stalls.record(now, addr, &self.cfg.stall);
            self.drop_peer(now, k, DisconnectReason::Stalled);
        }
        self.up_waiting = false;
        for k in self.peers.keys().copied().collect::<Vec<_>>() {
            self.pump_upload(now, k);
        }
        self.fill_free_slots(now);
        if returned || self.down_waiting {
            self.down_waiting = false;
            self.refill_all(now);
        }
    }
}

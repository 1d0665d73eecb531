//! The upload side of the torrent machine: serving requests through a small read pipeline (so a choke drops
//! what is not yet read), the shared upload token bucket, and choking: rechokes through the pure choker, free
//! slots filled between rechokes (provisionally), anti-snubbing state.

use std::time::Instant;

use bytes::Bytes;

use super::super::choker::{self, ChokerPeer};
use super::{PeerKey, PeerRec, Torrent};
use crate::swarm::actions::Action;
use crate::wire::message::{BlockRef, Message};

impl Torrent {
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
                data: data.into(),
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

    pub(super) fn pump_upload(&mut self, now: Instant, peer: PeerKey) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        while p.upload_inflight < self.cfg.upload_pipeline && !p.am_choking {
            let Some(b) = p.incoming.front().copied() else {
                break;
            };
            if let Some(l) = &self.cfg.upload_limit {
                if !l.lock().try_take(now, u64::from(b.length)) {
                    self.up_waiting = true;
                    break;
                }
            }
            p.incoming.pop_front();
            p.upload_inflight += 1;
            self.actions.push_back(Action::ReadBlock { peer, block: b });
        }
    }

    pub(super) fn choke(&mut self, peer: PeerKey) {
        let p = self.peers.get_mut(&peer).expect("caller checked");
        p.am_choking = true;
        p.optimistic = false;
        p.provisional = false;
        p.unchoked_since = None;
        p.incoming.clear();
        self.send(peer, Message::Choke);
    }

    pub(super) fn unchoke(&mut self, now: Instant, peer: PeerKey) {
        let p = self.peers.get_mut(&peer).expect("caller checked");
        p.am_choking = false;
        p.unchoked_since = Some(now);
        p.last_unchoked = Some(now);
        p.uploaded_since_unchoke = 0;
        p.ignored_requests = 0;
        self.send(peer, Message::Unchoke);
    }

    /// Between rechokes, give a free upload slot to an interested peer at once (best rate first); such a
    /// provisional slot goes to a better reciprocator that turns interested before the next rechoke.
    pub(super) fn fill_free_slots(&mut self, now: Instant) {
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
    pub(super) fn preempt_provisional(&mut self, now: Instant, peer: PeerKey) {
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

    pub(super) fn snubbed(&self, p: &PeerRec, now: Instant) -> bool {
        let since = p
            .last_block_at
            .map_or(p.interest_since, |l| l.max(p.interest_since));
        p.am_interested && now.saturating_duration_since(since) >= self.cfg.choker.snub_time
    }

    pub(super) fn rechoke(&mut self, now: Instant) {
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
}

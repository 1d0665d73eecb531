//! The machine's verdicts on pieces and peers: storage's verification result (have messages, completion,
//! strikes and bans for the senders of a failed piece), the adaptive request timeout of [`crate::swarm::stall`],
//! peers the net layer caught violating the protocol, and whether an address may be dialled.

use std::net::SocketAddr;
use std::time::Instant;

use super::{PeerKey, PeerRec, Torrent};
use crate::swarm::actions::{Action, DisconnectReason, TorrentEvent};
use crate::wire::message::Message;

impl Torrent {
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
            // A piece with blocks from a peer already banned for bad data is explained by that peer: its
            // honest co-senders get no strike. Otherwise every sender gets one, but a peer is banned only once
            // it has been the only sender of a failed piece, or has twice the strikes (an honest peer whose
            // blocks share pieces with a liar's never is the only sender of a failed piece).
            if senders.iter().any(|k| self.banned_keys.contains(k)) {
                self.refill_all(now);
                return;
            }
            let sole = senders.len() == 1;
            for k in senders {
                let Some(p) = self.peers.get(&k) else {
                    continue;
                };
                let (addr, id) = (p.addr, p.id);
                if sole {
                    self.sole_failures.insert(id);
                }
                let s = self.strikes.entry(id).or_insert(0);
                *s += 1;
                let proven = self.sole_failures.contains(&id);
                if (proven && *s >= self.cfg.strikes_to_ban) || *s >= 2 * self.cfg.strikes_to_ban {
                    self.banned_keys.insert(k);
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

    /// The request timeout of one peer (adaptive: [`stall`]).
    pub(super) fn request_timeout_of(&self, p: &PeerRec) -> std::time::Duration {
        let ceiling = self.cfg.request_timeout;
        self.cfg
            .stall
            .timeout(ceiling, p.delivery.gap(), self.swarm_gap)
    }

    /// The net layer found `peer` sending bytes its codec rejects: drop it (a `Disconnect` action) and refuse
    /// its address for a while.
    pub fn peer_violated(&mut self, now: Instant, peer: PeerKey) {
        if self.peers.contains_key(&peer) {
            self.drop_peer(now, peer, DisconnectReason::Protocol("malformed message"));
        }
    }

    /// Whether the net layer may dial `addr` now: not banned, not refused as stalled.
    pub fn may_dial(&self, now: Instant, addr: &SocketAddr) -> bool {
        !self.banned_addrs.contains(addr) && !self.stalls.refused(now, addr)
    }
}

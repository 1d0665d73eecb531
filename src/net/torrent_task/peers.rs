//! The peer side of a torrent task: connection candidates (from `--peer`, magnets, the DHT and PEX) and
//! connection attempts with back-off; accepted connections (self-connections and duplicates dropped, the
//! duplicate rule being the same on both ends), each with a reader task and an outbox task (`peer_io`) and its
//! share of the receive-window budget; BEP 10 extension messages — the extension handshake, BEP 9 metadata
//! (served, and fetched while the metainfo is unknown) and BEP 11 PEX.

use super::{peer_io, Ctl, Inbound, Task};
use crate::net::limits::recv_window_share;
use crate::net::session::{PeerState, SessionEvent};
use crate::net::{PeerConn, QuicConfig};
use crate::swarm::PeerKey;
use crate::wire::extended::{OUR_UT_METADATA_ID, OUR_UT_PEX_ID, UT_METADATA, UT_PEX};
use crate::wire::fetcher::FetchEvent;
use crate::wire::metadata::{serve_request, MetadataMsg};
use crate::wire::{ExtHandshake, Handshake, Limits, Message, PexMessage, PexState};
use bytes::Bytes;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Most connections per torrent, and most attempts in progress at once.
const MAX_PEERS: usize = 40;
const MAX_CONNECTING: usize = 8;
/// Most candidate addresses remembered.
const MAX_CANDS: usize = 500;
/// Messages queued for one peer before it counts as not reading (and is dropped).
const OUTBOX: usize = 2048;
/// Messages kept per peer until the metainfo is known.
const MAX_PENDING: usize = 20_000;

/// One connected peer.
pub(super) struct Peer {
    pub addr: SocketAddr,
    pub id: [u8; 20],
    outgoing: bool,
    conn: quinn::Connection,
    out: mpsc::Sender<Message>,
    ext: Option<ExtHandshake>,
    pex: PexState,
    pending: Vec<Message>,
    in_machine: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CandState {
    Idle,
    Connecting,
    Connected,
}

/// An address we may connect to.
pub(super) struct Cand {
    state: CandState,
    fails: u32,
    not_before: Instant,
    sticky: bool,
}

impl Task {
    pub(super) fn add_cand(&mut self, addr: SocketAddr, sticky: bool) {
        if addr == self.shared.quic_addr || addr.port() == 0 || addr.ip().is_unspecified() {
            return;
        }
        if let Some(c) = self.cands.get_mut(&addr) {
            c.sticky |= sticky;
            return;
        }
        if self.cands.len() >= MAX_CANDS && !sticky {
            return;
        }
        self.cands.insert(
            addr,
            Cand {
                state: CandState::Idle,
                fails: 0,
                not_before: Instant::now(),
                sticky,
            },
        );
    }

    pub(super) fn on_ctl(&mut self, c: Ctl) {
        let now = Instant::now();
        match c {
            Ctl::Conn { conn, outgoing } => self.on_conn(now, conn, outgoing),
            Ctl::ConnectFailed { addr } => {
                if let Some(c) = self.cands.get_mut(&addr) {
                    c.fails += 1;
                    c.state = CandState::Idle;
                    let wait = if c.sticky {
                        Duration::from_millis(500 * u64::from(c.fails.min(6)))
                    } else {
                        Duration::from_secs(1 << c.fails.min(6))
                    };
                    c.not_before = now + wait;
                    if !c.sticky && c.fails > 6 {
                        self.cands.remove(&addr);
                    }
                }
            }
            Ctl::Found(addr) => {
                self.add_cand(addr, false);
                self.connect_more(now);
            }
            Ctl::Stop(_) => {}
        }
    }

    /// Start connection attempts to idle candidates, within the limits. A complete torrent only accepts.
    pub(super) fn connect_more(&mut self, now: Instant) {
        if self.complete || self.failed.is_some() {
            return;
        }
        let connecting = self
            .cands
            .values()
            .filter(|c| c.state == CandState::Connecting)
            .count();
        let mut room = MAX_CONNECTING
            .saturating_sub(connecting)
            .min(MAX_PEERS.saturating_sub(self.peers.len() + connecting));
        let pieces = self
            .active
            .as_ref()
            .map(|a| a.torrent.tracker().num_pieces());
        let limits = pieces.map_or_else(Limits::default, Limits::for_pieces);
        let hs = Handshake::new(self.ih, self.shared.peer_id);
        for (addr, c) in self.cands.iter_mut() {
            if room == 0 {
                break;
            }
            if c.state != CandState::Idle || c.not_before > now {
                continue;
            }
            // Banned for bad data, or refused for a while as stalled: the machine would drop it at once.
            if self
                .active
                .as_ref()
                .is_some_and(|a| !a.torrent.may_dial(now, addr))
            {
                continue;
            }
            c.state = CandState::Connecting;
            room -= 1;
            let (addr, transport, ctl) =
                (*addr, self.shared.transport.clone(), self.ctl_tx.clone());
            tokio::spawn(async move {
                let msg = match transport.connect(addr, hs, limits).await {
                    Ok(conn) => Ctl::Conn {
                        conn,
                        outgoing: true,
                    },
                    Err(e) => {
                        tracing::debug!("connect {addr}: {e}");
                        Ctl::ConnectFailed { addr }
                    }
                };
                if let Err(mpsc::error::SendError(Ctl::Conn { conn, .. })) = ctl.send(msg).await {
                    conn.close(0, "stopped");
                }
            });
        }
    }

    fn on_conn(&mut self, now: Instant, conn: PeerConn, outgoing: bool) {
        let id = conn.theirs.peer_id.0;
        let addr = conn.remote;
        if let Some(c) = self.cands.get_mut(&addr) {
            c.state = CandState::Connected;
            c.fails = 0;
        }
        if id == self.shared.peer_id.0 || self.failed.is_some() || self.peers.len() >= MAX_PEERS {
            conn.close(0, "not needed");
            return;
        }
        // Two connections to the same peer (both dialled at once): keep the one the lower peer id dialled.
        // Both ends apply the same rule, so they keep the same connection.
        let dup = self
            .peers
            .iter()
            .find(|(_, p)| p.id == id)
            .map(|(k, p)| (*k, p.outgoing));
        if let Some((old, old_outgoing)) = dup {
            let ours_lower = self.shared.peer_id.0 < id;
            let keep_new = outgoing == ours_lower && old_outgoing != ours_lower;
            if !keep_new {
                conn.close(0, "duplicate connection");
                return;
            }
            self.remove_peer(old, true);
        }
        let key = PeerKey(self.next_key);
        self.next_key += 1;
        let PeerConn {
            tx, rx, connection, ..
        } = conn;
        let (out, out_rx) = mpsc::channel(OUTBOX);
        tokio::spawn(peer_io::reader(rx, key, self.inbox_tx.clone()));
        tokio::spawn(peer_io::outbox(out_rx, tx, key, self.inbox_tx.clone()));
        self.peers.insert(
            key,
            Peer {
                addr,
                id,
                outgoing,
                conn: connection,
                out,
                ext: None,
                pex: PexState::new(),
                pending: Vec::new(),
                in_machine: false,
            },
        );
        self.share_recv_windows();
        let size = self.raw_info.as_ref().map(|i| i.len() as u32);
        let ext = ExtHandshake::ours(size, Some(self.shared.quic_addr.port()), 500);
        self.send_to(
            key,
            Message::Extended {
                id: 0,
                payload: Bytes::from(ext.encode()),
            },
        );
        self.emit(SessionEvent::Peer {
            addr,
            state: PeerState::Connected,
        });
        if self.active.is_some() {
            self.enter_machine(now, key);
        }
    }

    /// Hand a connected peer to the machine and replay what it sent before the metainfo was known.
    pub(super) fn enter_machine(&mut self, now: Instant, key: PeerKey) {
        let (Some(a), Some(p)) = (self.active.as_mut(), self.peers.get_mut(&key)) else {
            return;
        };
        if p.in_machine {
            return;
        }
        p.in_machine = true;
        a.torrent.peer_connected(now, key, p.addr, p.id);
        for m in std::mem::take(&mut p.pending) {
            a.torrent.handle_message(now, key, m);
        }
    }

    pub(super) fn send_to(&mut self, key: PeerKey, msg: Message) {
        let Some(p) = self.peers.get(&key) else {
            return;
        };
        if p.out.try_send(msg).is_err() {
            tracing::debug!("peer {} is not reading; dropping it", p.addr);
            self.remove_peer(key, true);
        }
    }

    /// Forget a peer and close its connection; `tell_machine` when the machine does not know yet.
    pub(super) fn remove_peer(&mut self, key: PeerKey, tell_machine: bool) {
        let Some(p) = self.peers.remove(&key) else {
            return;
        };
        p.conn.close(0u32.into(), b"bye");
        self.share_recv_windows();
        if tell_machine && p.in_machine {
            if let Some(a) = self.active.as_mut() {
                a.torrent.peer_disconnected(Instant::now(), key);
            }
        }
        if let Some(f) = self.fetcher.as_mut() {
            f.remove_peer(&key);
        }
        if let Some(c) = self.cands.get_mut(&p.addr) {
            c.state = CandState::Idle;
            c.not_before = Instant::now() + Duration::from_secs(if c.sticky { 2 } else { 10 });
        }
        self.emit(SessionEvent::Peer {
            addr: p.addr,
            state: PeerState::Disconnected,
        });
    }

    /// Each connection's receive window is its share of the torrent's budget (see [`recv_window_share`]).
    fn share_recv_windows(&self) {
        let w = recv_window_share(
            self.peers.len(),
            u64::from(QuicConfig::default().conn_window),
        );
        let w = quinn::VarInt::from_u64(w).unwrap_or(quinn::VarInt::MAX);
        for p in self.peers.values() {
            p.conn.set_receive_window(w);
        }
    }

    pub(super) fn on_inbound(&mut self, m: Inbound) {
        let now = Instant::now();
        match m {
            Inbound::Msg(key, Message::Extended { id, payload }) => {
                self.on_extended(now, key, id, payload)
            }
            Inbound::Msg(key, msg) => {
                let Some(p) = self.peers.get_mut(&key) else {
                    return;
                };
                if p.in_machine {
                    if let Some(a) = self.active.as_mut() {
                        a.torrent.handle_message(now, key, msg);
                    }
                } else if matches!(
                    msg,
                    Message::Bitfield(_)
                        | Message::Have { .. }
                        | Message::HaveAll
                        | Message::HaveNone
                        | Message::Choke
                        | Message::Unchoke
                        | Message::Interested
                        | Message::NotInterested
                ) {
                    p.pending.push(msg);
                    if p.pending.len() > MAX_PENDING {
                        self.remove_peer(key, true);
                    }
                }
            }
            Inbound::Closed(key, why) => {
                if let Some(why) = why {
                    tracing::debug!("peer {key:?} closed: {why}");
                }
                self.remove_peer(key, true);
            }
            // The machine drops it (and refuses its address for a while, else it is dialled again at once).
            Inbound::Violation(key, why) => {
                tracing::debug!("peer {key:?} broke the protocol: {why}");
                let in_machine = self.peers.get(&key).is_some_and(|p| p.in_machine);
                match self.active.as_mut() {
                    Some(a) if in_machine => a.torrent.peer_violated(now, key),
                    _ => self.remove_peer(key, true),
                }
            }
            Inbound::Sent(key) => {
                if let Some(a) = self.active.as_mut() {
                    a.torrent.block_sent(now, key);
                }
            }
        }
    }

    fn on_extended(&mut self, now: Instant, key: PeerKey, id: u8, payload: Bytes) {
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        match id {
            0 => match ExtHandshake::decode(&payload) {
                Ok(h) => {
                    if let (Some(f), Some(size)) = (self.fetcher.as_mut(), h.metadata_size) {
                        if h.id_of(UT_METADATA).is_some() {
                            f.add_peer(key, size);
                        }
                    }
                    p.ext = Some(h);
                }
                Err(e) => {
                    tracing::debug!("bad extension handshake from {}: {e}", p.addr);
                    self.remove_peer(key, true);
                }
            },
            OUR_UT_METADATA_ID => match MetadataMsg::decode(&payload) {
                Ok(MetadataMsg::Request { piece }) => {
                    let Some(their) = p.ext.as_ref().and_then(|e| e.id_of(UT_METADATA)) else {
                        return;
                    };
                    let answer = match &self.raw_info {
                        Some(info) => serve_request(info, piece),
                        None => MetadataMsg::Reject { piece },
                    };
                    let payload = Bytes::from(answer.encode());
                    self.send_to(key, Message::Extended { id: their, payload });
                }
                Ok(MetadataMsg::Data {
                    piece,
                    total_size,
                    data,
                }) => {
                    if let Some(f) = self.fetcher.as_mut() {
                        f.handle_data(&key, piece, total_size, data);
                    }
                }
                Ok(MetadataMsg::Reject { piece }) => {
                    if let Some(f) = self.fetcher.as_mut() {
                        f.handle_reject(now, &key, piece);
                    }
                }
                Err(e) => {
                    tracing::debug!("bad ut_metadata message from {}: {e}", p.addr);
                    self.remove_peer(key, true);
                }
            },
            OUR_UT_PEX_ID => {
                let Ok(msg) = PexMessage::decode(&payload) else {
                    return;
                };
                if let Ok(added) = p.pex.handle_message(now, &msg) {
                    for a in added {
                        self.add_cand(a, false);
                    }
                }
            }
            _ => {}
        }
    }

    /// Send the fetcher's requests and act on its events; returns the verified info dictionary when complete.
    pub(super) fn pump_fetcher(&mut self) -> Option<Bytes> {
        let now = Instant::now();
        let mut reqs = Vec::new();
        let mut done = None;
        let mut drops = Vec::new();
        {
            let f = self.fetcher.as_mut()?;
            while let Some(r) = f.poll_request(now) {
                reqs.push(r);
            }
            while let Some(e) = f.poll_event() {
                match e {
                    FetchEvent::Drop { peer, .. } => drops.push(peer),
                    FetchEvent::Complete(info) => done = Some(info),
                }
            }
        }
        for (key, piece) in reqs {
            let their = self
                .peers
                .get(&key)
                .and_then(|p| p.ext.as_ref())
                .and_then(|e| e.id_of(UT_METADATA));
            if let Some(their) = their {
                let payload = Bytes::from(MetadataMsg::Request { piece }.encode());
                self.send_to(key, Message::Extended { id: their, payload });
            }
        }
        for k in drops {
            self.remove_peer(k, true);
        }
        done
    }

    /// Gossip our connected peers to each peer that speaks ut_pex (at most once a minute per peer).
    pub(super) fn pex_round(&mut self, now: Instant) {
        let connected: BTreeSet<SocketAddr> = self.peers.values().map(|p| p.addr).collect();
        let mut out = Vec::new();
        for (k, p) in self.peers.iter_mut() {
            let Some(their) = p.ext.as_ref().and_then(|e| e.id_of(UT_PEX)) else {
                continue;
            };
            if let Some(m) = p.pex.poll_message(now, &connected, Some(p.addr)) {
                out.push((*k, their, m));
            }
        }
        for (k, id, m) in out {
            let payload = Bytes::from(m.encode());
            self.send_to(k, Message::Extended { id, payload });
        }
    }
}

//! A deterministic one-process swarm simulation: a virtual clock, simulated links (each node's upload capacity
//! shared round robin among the peers it is sending blocks to, unlimited download, a fixed 20–50 ms one-way
//! latency per pair) and real [`Torrent`] machines exchanging [`Message`]s. Storage is simulated: blocks are
//! shared static buffers and verification fails only for pieces that received a block from a corrupting node.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::swarm::actions::{Action, TorrentConfig, TorrentEvent};
use crate::swarm::geometry::Geometry;
use crate::swarm::torrent::Torrent;
use crate::swarm::PeerKey;
use crate::wire::message::{Message, BLOCK_SIZE};

pub use super::swarm_scenario::{SwarmReport, SwarmScenario};

static GOOD: [u8; BLOCK_SIZE as usize] = [0; BLOCK_SIZE as usize];
static BAD: [u8; BLOCK_SIZE as usize] = [0xff; BLOCK_SIZE as usize];

#[derive(Debug)]
enum Ev {
    Connect(usize, usize),
    Deliver {
        from: usize,
        to: usize,
        msg: Message,
    },
    Disconnected {
        node: usize,
        peer: usize,
    },
    UplinkDone {
        node: usize,
        to: usize,
        msg: Message,
    },
    Tick(usize),
}

struct Queued {
    at: Instant,
    seq: u64,
    ev: Ev,
}
impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq)) // min-heap
    }
}

struct Node {
    torrent: Torrent,
    up_rate: f64,
    corrupt: bool,
    /// Blocks waiting for the uplink, per destination, and the round-robin order of destinations.
    queues: BTreeMap<usize, VecDeque<Message>>,
    rr: VecDeque<usize>,
    busy: bool,
    connected: BTreeSet<usize>,
    bad_pieces: BTreeSet<u32>,
    done_at: Option<Instant>,
    uploaded: u64,
    from_seed: u64,
}

struct Sim {
    t0: Instant,
    now: Instant,
    seq: u64,
    heap: BinaryHeap<Queued>,
    nodes: Vec<Node>,
    latency: Vec<Vec<Duration>>,
    events: u64,
    failed: usize,
    bans: usize,
    false_bans: usize,
    check: bool,
    ticks: u64,
    timeline: Vec<u64>,
    fr_sources: [u64; 4],
    free_riders: usize,
    /// Idle uplink time by reason: [nobody interested, interested but none unchoked, unchoked but no requests]
    idle: [Duration; 3],
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(10, 0, (i >> 8) as u8, i as u8), 6881))
}
fn peer_id(i: usize) -> [u8; 20] {
    let mut id = [b'-'; 20];
    id[..8].copy_from_slice(&(i as u64).to_be_bytes());
    id
}

impl Sim {
    fn at(&mut self, at: Instant, ev: Ev) {
        self.seq += 1;
        self.heap.push(Queued {
            at,
            seq: self.seq,
            ev,
        });
    }

    fn start_uplink(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        if node.busy {
            return;
        }
        while let Some(to) = node.rr.pop_front() {
            let Some(q) = node.queues.get_mut(&to) else {
                continue;
            };
            let Some(msg) = q.pop_front() else { continue };
            if !q.is_empty() {
                node.rr.push_back(to);
            }
            let len = match &msg {
                Message::Piece { data, .. } => data.len() as f64 + 13.0,
                _ => 0.0,
            };
            node.busy = true;
            let tx = Duration::from_secs_f64(len / node.up_rate);
            let at = self.now + tx;
            self.at(at, Ev::UplinkDone { node: n, to, msg });
            return;
        }
    }

    /// Drain node `n`'s actions.
    fn drain(&mut self, n: usize) {
        while let Some(a) = self.nodes[n].torrent.poll_action() {
            match a {
                Action::Send { peer, msg } => {
                    let to = peer.0 as usize;
                    if !self.nodes[n].connected.contains(&to) {
                        continue;
                    }
                    if matches!(msg, Message::Piece { .. }) {
                        let node = &mut self.nodes[n];
                        node.queues.entry(to).or_default().push_back(msg);
                        if !node.rr.contains(&to) {
                            node.rr.push_back(to);
                        }
                        self.start_uplink(n);
                    } else {
                        let at = self.now + self.latency[n][to];
                        self.at(at, Ev::Deliver { from: n, to, msg });
                    }
                }
                Action::Disconnect { peer, .. } => {
                    let to = peer.0 as usize;
                    if self.nodes[n].connected.remove(&to) {
                        self.nodes[n].queues.remove(&to);
                        let at = self.now + self.latency[n][to];
                        self.at(at, Ev::Disconnected { node: to, peer: n });
                    }
                }
                Action::ReadBlock { peer, block } => {
                    let src = if self.nodes[n].corrupt { &BAD } else { &GOOD };
                    let data = Bytes::from_static(&src[..block.length as usize]);
                    let now = self.now;
                    self.nodes[n].torrent.block_read(now, peer, block, data);
                }
                Action::WriteBlock { block, data } => {
                    if data.first() == Some(0xff) {
                        self.nodes[n].bad_pieces.insert(block.piece);
                    }
                }
                Action::VerifyPiece { piece } => {
                    let ok = !self.nodes[n].bad_pieces.remove(&piece);
                    let now = self.now;
                    self.nodes[n].torrent.piece_verified(now, piece, ok);
                }
                Action::Event(TorrentEvent::Complete) => self.nodes[n].done_at = Some(self.now),
                Action::Event(TorrentEvent::PieceFailed { .. }) => self.failed += 1,
                Action::Event(TorrentEvent::PeerBanned { peer, .. }) => {
                    self.bans += 1;
                    if !self.nodes[peer.0 as usize].corrupt {
                        self.false_bans += 1;
                    }
                }
                Action::Event(TorrentEvent::PieceCompleted { .. }) => {}
            }
        }
    }

    fn step(&mut self, q: Queued) {
        self.now = q.at;
        self.events += 1;
        let now = self.now;
        match q.ev {
            Ev::Connect(a, b) => {
                for (x, y) in [(a, b), (b, a)] {
                    self.nodes[x].connected.insert(y);
                    self.nodes[x].torrent.peer_connected(
                        now,
                        PeerKey(y as u64),
                        addr(y),
                        peer_id(y),
                    );
                }
                self.drain(a);
                self.drain(b);
            }
            Ev::Deliver { from, to, msg } => {
                if self.nodes[to].connected.contains(&from) {
                    if let (0, Message::Piece { data, .. }) = (from, &msg) {
                        self.nodes[to].from_seed += data.len() as u64;
                    }
                    self.nodes[to]
                        .torrent
                        .handle_message(now, PeerKey(from as u64), msg);
                    self.drain(to);
                }
            }
            Ev::Disconnected { node, peer } => {
                if self.nodes[node].connected.remove(&peer) {
                    self.nodes[node].queues.remove(&peer);
                    self.nodes[node]
                        .torrent
                        .peer_disconnected(now, PeerKey(peer as u64));
                    self.drain(node);
                }
            }
            Ev::UplinkDone { node, to, msg } => {
                self.nodes[node].busy = false;
                let bytes = match &msg {
                    Message::Piece { data, .. } => data.len() as u64,
                    _ => 0,
                };
                self.nodes[node].uploaded += bytes;
                if node > 0 && to >= 1 && to <= self.free_riders {
                    let info = self.nodes[node].torrent.peer_info(now, PeerKey(to as u64));
                    let opt = info.is_some_and(|i| i.optimistic);
                    let seeding = self.nodes[node].torrent.is_complete();
                    let early = now - self.t0 < Duration::from_secs(10);
                    let k = if seeding {
                        2
                    } else if opt {
                        0
                    } else if early {
                        3
                    } else {
                        1
                    };
                    self.fr_sources[k] += bytes;
                }
                let sec = (now - self.t0).as_secs() as usize;
                if self.timeline.len() <= sec {
                    self.timeline.resize(sec + 1, 0);
                }
                self.timeline[sec] += bytes;
                if self.nodes[node].connected.contains(&to) {
                    let at = now + self.latency[node][to];
                    self.at(
                        at,
                        Ev::Deliver {
                            from: node,
                            to,
                            msg,
                        },
                    );
                    self.nodes[node].torrent.block_sent(now, PeerKey(to as u64));
                    self.drain(node);
                }
                self.start_uplink(node);
            }
            Ev::Tick(n) => {
                let nd = &self.nodes[n];
                if n > self.free_riders && nd.done_at.is_none() && !nd.busy {
                    let (i, u, b) = nd.torrent.upload_snapshot();
                    let r = if i == 0 {
                        0
                    } else if u == 0 {
                        1
                    } else if b == 0 {
                        2
                    } else {
                        3
                    };
                    if r < 3 {
                        self.idle[r] += Duration::from_millis(250);
                    }
                }
                self.nodes[n].torrent.tick(now);
                self.drain(n);
                self.ticks += 1;
                if self.check && self.ticks % 4 == 0 {
                    self.nodes[n].torrent.check_invariants();
                }
                self.at(now + Duration::from_millis(250), Ev::Tick(n));
            }
        }
    }
}

/// The one real clock reading a simulation (or a sans-IO unit test) starts its virtual clock from; the sans-IO
/// modules themselves never read the clock.
pub fn epoch() -> Instant {
    Instant::now()
}

/// Run one scenario to completion (or `max_time`).
pub fn run(s: &SwarmScenario) -> SwarmReport {
    let t0 = epoch();
    let mut rng = StdRng::seed_from_u64(s.rng_seed);
    let geom = Geometry::new(s.file_len, s.piece_len).expect("valid scenario geometry");
    let n = s.leechers + 1;
    let all: Vec<u32> = (0..geom.num_pieces()).collect();
    let is_fr = |i: usize| i >= 1 && i <= s.free_riders;
    let is_bad = |i: usize| i > s.free_riders && i <= s.free_riders + s.corrupters;
    let nodes = (0..n)
        .map(|i| {
            let mut cfg = TorrentConfig::new(s.piece_len);
            (s.tune)(&mut cfg);
            if is_fr(i) {
                cfg.choker.upload_slots = 0;
            }
            let have: &[u32] = if i == 0 { &all } else { &[] };
            Node {
                torrent: Torrent::new(t0, geom, have, cfg, StdRng::seed_from_u64(rng.random())),
                up_rate: if i == 0 {
                    s.seed_upload
                } else {
                    s.leecher_upload
                },
                corrupt: is_bad(i),
                queues: BTreeMap::new(),
                rr: VecDeque::new(),
                busy: false,
                connected: BTreeSet::new(),
                bad_pieces: BTreeSet::new(),
                done_at: None,
                uploaded: 0,
                from_seed: 0,
            }
        })
        .collect();
    let mut latency = vec![vec![Duration::ZERO; n]; n];
    let pairs: Vec<(usize, usize)> = (0..n)
        .flat_map(|a| (a + 1..n).map(move |b| (a, b)))
        .collect();
    for (a, b) in pairs {
        let l = Duration::from_millis(rng.random_range(s.latency_ms.0..=s.latency_ms.1));
        latency[a][b] = l;
        latency[b][a] = l;
    }
    let mut sim = Sim {
        t0,
        now: t0,
        seq: 0,
        heap: BinaryHeap::new(),
        nodes,
        latency,
        events: 0,
        failed: 0,
        bans: 0,
        false_bans: 0,
        check: s.check_invariants,
        ticks: 0,
        timeline: Vec::new(),
        fr_sources: [0; 4],
        free_riders: s.free_riders,
        idle: [Duration::ZERO; 3],
    };
    let spread = s.join_spread.as_millis().max(1) as u64;
    let join: Vec<Duration> = (0..n)
        .map(|_| Duration::from_millis(rng.random_range(0..spread)))
        .collect();
    for a in 0..n {
        for b in a + 1..n {
            let at = t0 + join[a].max(join[b]);
            sim.at(at, Ev::Connect(a, b));
        }
        let at = t0 + join[a] + Duration::from_millis(rng.random_range(0..250));
        sim.at(at, Ev::Tick(a));
    }
    let end = t0 + s.max_time;
    while let Some(q) = sim.heap.pop() {
        if q.at > end {
            break;
        }
        sim.step(q);
        if sim.nodes[1..]
            .iter()
            .enumerate()
            .all(|(i, nd)| nd.done_at.is_some() || is_bad(i + 1))
        {
            break;
        }
    }
    SwarmReport {
        completion: sim.nodes[1..]
            .iter()
            .map(|nd| nd.done_at.map(|d| d - sim.t0))
            .collect(),
        free_rider: (1..n).map(is_fr).collect(),
        corrupter: (1..n).map(is_bad).collect(),
        uploaded: sim.nodes.iter().map(|nd| nd.uploaded).collect(),
        fr_sources: sim.fr_sources,
        from_seed: sim.nodes[1..].iter().map(|nd| nd.from_seed).collect(),
        pieces_failed: sim.failed,
        bans: sim.bans,
        false_bans: sim.false_bans,
        events: sim.events,
        timeline: sim.timeline,
        idle: sim.idle.map(|d| d.as_secs_f64()),
    }
}

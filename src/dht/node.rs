//! `Node`: a sans-IO BEP 5 DHT node. It answers `ping` / `find_node` / `get_peers` / `announce_peer`, keeps
//! the routing table, peer store and tokens, and runs lookups (bootstrap, bucket refresh, get_peers, announce
//! with periodic re-announce). Feed it `handle_datagram(now, from, bytes)` and `handle_timeout(now)`; take
//! `poll_transmit()`, `poll_timeout()` and `poll_event()`. Incoming messages are handled in `node_incoming.rs`.
//!
//! Bounds: datagrams over [`MAX_PACKET`] and sources over their rate are dropped before decoding; outstanding
//! transactions, concurrent lookups, queued output and the peer store are all capped.

use crate::dht::id::NodeId;
use crate::dht::krpc::{Body, Message, Method, NodeInfo, Query};
use crate::dht::lookup::{Lookup, ALPHA};
use crate::dht::ratelimit::RateLimiter;
use crate::dht::store::{PeerStore, StoreLimits};
use crate::dht::table::{RoutingTable, K};
use crate::dht::token::Tokens;

use crate::metainfo::InfoHash;
use rand::rngs::StdRng;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::net::{SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

#[path = "node_incoming.rs"]
mod incoming;
#[path = "node_lookups.rs"]
mod lookups;

pub use crate::dht::state::{decode_state, encode_state, StateError};

pub type LookupId = u64;

#[derive(Clone, Debug)]
pub struct Config {
    pub k: usize,
    pub alpha: usize,
    /// Datagrams per second per source (token bucket rate) and burst.
    pub rate_per_sec: f64,
    pub rate_burst: f64,
    pub max_sources: usize,
    /// Outstanding queries we may have at once (all purposes).
    pub max_transactions: usize,
    /// Concurrent lookups; more are refused (`None`).
    pub max_lookups: usize,
    /// Datagrams queued for sending; beyond this, new ones are dropped.
    pub max_queued: usize,
    pub store: StoreLimits,
    /// Announced infohashes are re-announced this often.
    pub reannounce: Duration,
    /// Request timeout before any RTT was measured, and its bounds once adaptive.
    pub initial_timeout: Duration,
    pub min_timeout: Duration,
    pub max_timeout: Duration,
    /// Peers returned per `get_peers` answer.
    pub max_values: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            k: K,
            alpha: ALPHA,
            rate_per_sec: 100.0,
            rate_burst: 200.0,
            max_sources: 4096,
            max_transactions: 2048,
            max_lookups: 256,
            max_queued: 4096,
            store: StoreLimits::default(),
            reannounce: Duration::from_secs(15 * 60),
            initial_timeout: Duration::from_secs(1),
            min_timeout: Duration::from_millis(200),
            max_timeout: Duration::from_secs(2),
            max_values: 50,
        }
    }
}

/// What a node reports to its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// New peers for a `get_peers`/`announce` lookup (each reported once per lookup).
    Peers {
        lookup: LookupId,
        info_hash: InfoHash,
        peers: Vec<SocketAddrV4>,
    },
    /// A lookup ended. `queries`: requests it sent; `closest`: how many of the k closest answered.
    LookupDone {
        lookup: LookupId,
        target: NodeId,
        queries: usize,
        closest: usize,
    },
    /// An announce lookup finished and `announce_peer` went to `nodes` nodes.
    Announced {
        info_hash: InfoHash,
        port: u16,
        nodes: usize,
    },
    /// A bootstrap lookup ended with this many nodes in the routing table.
    Bootstrapped { nodes: usize },
}

/// Counters for tests and logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub received: u64,
    pub sent: u64,
    pub dropped_rate: u64,
    pub dropped_malformed: u64,
    pub errors_sent: u64,
    pub announces_stored: u64,
    /// announce_peer requests sent a second time after the first timed out.
    pub announce_retries: u64,
}

#[derive(Debug)]
enum Purpose {
    Bootstrap,
    Refresh,
    GetPeers {
        info_hash: InfoHash,
        announce: Option<u16>,
        seen: HashSet<SocketAddrV4>,
    },
}

struct LookupState {
    lookup: Lookup,
    purpose: Purpose,
    tokens: HashMap<SocketAddrV4, Vec<u8>>,
}

#[derive(Clone, Debug)]
enum TxKind {
    Ping,
    Lookup(LookupId),
    /// An announce_peer; `retry` says whether it is sent once more if it times out (a lost datagram
    /// would otherwise leave one of the k closest without the peer).
    Announce {
        method: Method,
        retry: bool,
    },
}

struct Tx {
    to: SocketAddrV4,
    id: Option<NodeId>,
    sent: Instant,
    kind: TxKind,
}

pub struct Node {
    id: NodeId,
    config: Config,
    rng: StdRng,
    table: RoutingTable,
    tokens: Tokens,
    store: PeerStore,
    limiter: RateLimiter,
    transactions: HashMap<u32, Tx>,
    deadlines: BinaryHeap<Reverse<(Instant, u32)>>,
    next_tid: u32,
    verifying: HashSet<SocketAddrV4>,
    lookups: HashMap<LookupId, LookupState>,
    next_lookup: LookupId,
    announces: HashMap<InfoHash, (u16, Instant)>,
    bootstrap_addrs: Vec<SocketAddrV4>,
    last_bootstrap: Option<Instant>,
    next_maintenance: Instant,
    srtt: Option<(f64, f64)>,
    out: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<Event>,
    stats: Stats,
}

/// Maintenance (token rotation, expiry, refresh, re-announce) runs this often.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(5);

fn v4(addr: SocketAddr) -> Option<SocketAddrV4> {
    match addr {
        SocketAddr::V4(a) => Some(a),
        SocketAddr::V6(a) => a
            .ip()
            .to_ipv4_mapped()
            .map(|ip| SocketAddrV4::new(ip, a.port())),
    }
}

impl Node {
    pub fn new(id: NodeId, config: Config, mut rng: StdRng, now: Instant) -> Node {
        use rand::Rng;
        let tokens = Tokens::new(now, &mut rng);
        let next_tid = rng.random();
        Node {
            id,
            table: RoutingTable::new(id, now),
            tokens,
            store: PeerStore::new(config.store),
            limiter: RateLimiter::new(
                config.rate_per_sec,
                config.rate_burst,
                config.max_sources,
                now,
            ),
            config,
            rng,
            transactions: HashMap::new(),
            deadlines: BinaryHeap::new(),
            next_tid,
            verifying: HashSet::new(),
            lookups: HashMap::new(),
            next_lookup: 1,
            announces: HashMap::new(),
            bootstrap_addrs: Vec::new(),
            last_bootstrap: None,
            next_maintenance: now + MAINTENANCE_EVERY,
            srtt: None,
            out: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    pub fn id(&self) -> NodeId {
        self.id
    }
    pub fn table(&self) -> &RoutingTable {
        &self.table
    }
    pub fn store(&self) -> &PeerStore {
        &self.store
    }
    pub fn stats(&self) -> Stats {
        self.stats
    }
    pub fn outstanding(&self) -> usize {
        self.transactions.len()
    }
    pub fn active_lookups(&self) -> usize {
        self.lookups.len()
    }

    /// The current per-request (soft) timeout: SRTT + RTTVAR over all answers seen, 1 s until measured. A
    /// request past it only frees its lookup slot (a late answer still counts), so it can be tight; the
    /// transaction itself, and the routing-table failure, expire at three times this (1 s to 5 s).
    pub fn request_timeout(&self) -> Duration {
        match self.srtt {
            None => self.config.initial_timeout,
            Some((srtt, var)) => Duration::from_secs_f64(srtt + 1.0 * var)
                .clamp(self.config.min_timeout, self.config.max_timeout),
        }
    }

    fn record_rtt(&mut self, sample: Duration) {
        let s = sample.as_secs_f64();
        self.srtt = Some(match self.srtt {
            None => (s, s / 2.0),
            Some((srtt, var)) => (
                0.875 * srtt + 0.125 * s,
                0.75 * var + 0.25 * (srtt - s).abs(),
            ),
        });
    }

    fn send_query(
        &mut self,
        now: Instant,
        to: SocketAddrV4,
        id: Option<NodeId>,
        method: Method,
        kind: TxKind,
    ) -> bool {
        if self.transactions.len() >= self.config.max_transactions {
            return false;
        }
        let mut tid = self.next_tid;
        while self.transactions.contains_key(&tid) {
            tid = tid.wrapping_add(1);
        }
        self.next_tid = tid.wrapping_add(1);
        let msg = Message {
            tid: tid.to_be_bytes().to_vec(),
            body: Body::Query(Query {
                id: self.id,
                method,
            }),
        };
        if !self.send(to, &msg) {
            return false;
        }
        let hard =
            (self.request_timeout() * 3).clamp(Duration::from_secs(1), Duration::from_secs(5));
        self.transactions.insert(
            tid,
            Tx {
                to,
                id,
                sent: now,
                kind,
            },
        );
        self.deadlines.push(Reverse((now + hard, tid)));
        true
    }

    fn send(&mut self, to: SocketAddrV4, msg: &Message) -> bool {
        if self.out.len() >= self.config.max_queued {
            return false;
        }
        self.stats.sent += 1;
        self.out.push_back((SocketAddr::V4(to), msg.encode()));
        true
    }

    fn ping(&mut self, now: Instant, node: NodeInfo) {
        if !self.send_query(now, node.addr, Some(node.id), Method::Ping, TxKind::Ping) {
            // Not sent (caps reached): forget it, or `verifying` would hold the address forever.
            self.verifying.remove(&node.addr);
        }
    }

    // ---- time -------------------------------------------------------------------------------------------

    /// Expire requests, advance lookups, and run periodic maintenance due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Iteration order must not depend on hashing: the simulator is deterministic only if sends are.
        let mut touched = Vec::new();
        while let Some(Reverse((deadline, tid))) = self.deadlines.peek().copied() {
            if deadline > now {
                break;
            }
            self.deadlines.pop();
            let Some(tx) = self.transactions.remove(&tid) else {
                continue;
            };
            if let Some(id) = tx.id {
                self.table.on_failure(now, &id);
            }
            self.verifying.remove(&tx.to);
            match tx.kind {
                TxKind::Lookup(lid) => {
                    if let Some(st) = self.lookups.get_mut(&lid) {
                        st.lookup.on_failure(tx.to);
                        touched.push(lid);
                    }
                }
                TxKind::Announce {
                    method,
                    retry: true,
                } => {
                    self.stats.announce_retries += 1;
                    let kind = TxKind::Announce {
                        method: method.clone(),
                        retry: false,
                    };
                    self.send_query(now, tx.to, tx.id, method, kind);
                }
                _ => {}
            }
        }
        for (lid, st) in &self.lookups {
            if st.lookup.next_deadline().is_some_and(|d| d <= now) {
                touched.push(*lid);
            }
        }
        touched.sort_unstable();
        touched.dedup();
        for lid in touched {
            self.drive_lookup(now, lid);
        }
        if now >= self.next_maintenance {
            self.next_maintenance = now + MAINTENANCE_EVERY;
            self.maintenance(now);
        }
    }

    fn maintenance(&mut self, now: Instant) {
        self.tokens.maybe_rotate(now, &mut self.rng);
        self.store.expire(now);
        if self.table.is_empty()
            && !self.bootstrap_addrs.is_empty()
            && self
                .last_bootstrap
                .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(30))
        {
            self.bootstrap(now, &[]);
        }
        if !self.table.is_empty() {
            for target in self.table.refresh_targets(now, &mut self.rng) {
                self.start_lookup(now, target, Purpose::Refresh, &[]);
            }
        }
        let due: Vec<(InfoHash, u16)> = self
            .announces
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(h, (p, _))| (*h, *p))
            .collect();
        let mut due = due;
        due.sort_unstable();
        for (h, port) in due {
            self.announce(now, h, port);
        }
    }

    /// When `handle_timeout` should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let tx = self.deadlines.peek().map(|Reverse((d, _))| *d);
        let lookups = self
            .lookups
            .values()
            .filter_map(|s| s.lookup.next_deadline())
            .min();
        [Some(self.next_maintenance), tx, lookups]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}

#[cfg(test)]
#[path = "node_tests.rs"]
mod tests;

//! A deterministic one-process simulation of a DHT of thousands of `dht::Node`s: a virtual clock (one `Instant`
//! taken as the epoch, advanced by an event queue), simulated links with a fixed latency per node pair drawn
//! uniformly from 20–200 ms and independent loss per datagram. Same seed, same run.
//!
//! The scenario (`run_scenario`) in `dht_scenario.rs` joins nodes one by one through node 0, announces
//! infohashes from random nodes, looks them up from others, then kills a fraction of the nodes and looks again.

use crate::dht::{Config, Event, Node, NodeId};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

/// Link parameters.
#[derive(Clone, Copy, Debug)]
pub struct Links {
    pub latency_min: Duration,
    pub latency_max: Duration,
    pub loss: f64,
}

impl Default for Links {
    fn default() -> Self {
        Links {
            latency_min: Duration::from_millis(20),
            latency_max: Duration::from_millis(200),
            loss: 0.01,
        }
    }
}

enum Item {
    Deliver {
        to: usize,
        from: usize,
        bytes: Vec<u8>,
    },
    Timer {
        node: usize,
    },
}

struct Scheduled {
    at: Instant,
    seq: u64,
    item: Item,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// The simulated network.
pub struct DhtSim {
    pub epoch: Instant,
    now: Instant,
    seed: u64,
    links: Links,
    rng: StdRng,
    nodes: Vec<Option<Node>>,
    timers: Vec<Option<Instant>>,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    /// Events reported by nodes: (node index, time, event). Drain with [`DhtSim::take_events`].
    events: Vec<(usize, Instant, Event)>,
    pub datagrams: u64,
    pub lost: u64,
}

/// The starting instant of a simulation (and of the sans-IO cores' unit tests, which must not read the clock
/// themselves): the one place the simulator reads the real clock; everything after advances virtually.
pub fn epoch() -> Instant {
    Instant::now()
}

/// The simulated address of node `i` (10.0.0.0/8, port 6881).
pub fn addr_of(i: usize) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(
        Ipv4Addr::from(0x0a00_0000 + i as u32),
        6881,
    ))
}

fn index_of(a: SocketAddr) -> Option<usize> {
    match a {
        SocketAddr::V4(v) => (u32::from(*v.ip()))
            .checked_sub(0x0a00_0000)
            .map(|i| i as usize),
        SocketAddr::V6(_) => None,
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl DhtSim {
    /// `n` nodes with random ids (not yet joined: call [`DhtSim::node_mut`]`.bootstrap` via [`DhtSim::bootstrap`]).
    pub fn new(n: usize, seed: u64, links: Links, config: Config) -> DhtSim {
        let epoch = epoch();
        let mut rng = StdRng::seed_from_u64(seed);
        let nodes = (0..n)
            .map(|_| {
                let mut node_rng = StdRng::seed_from_u64(rng.random());
                let id = NodeId::random(&mut node_rng);
                Some(Node::new(id, config.clone(), node_rng, epoch))
            })
            .collect();
        DhtSim {
            epoch,
            now: epoch,
            seed,
            links,
            rng,
            nodes,
            timers: vec![None; n],
            queue: BinaryHeap::new(),
            seq: 0,
            events: Vec::new(),
            datagrams: 0,
            lost: 0,
        }
    }

    pub fn now(&self) -> Instant {
        self.now
    }
    pub fn len(&self) -> usize {
        self.nodes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
    pub fn is_alive(&self, i: usize) -> bool {
        self.nodes.get(i).is_some_and(Option::is_some)
    }
    pub fn node(&self, i: usize) -> Option<&Node> {
        self.nodes.get(i).and_then(Option::as_ref)
    }

    /// One-way latency of the link between `a` and `b` (symmetric, fixed per pair).
    pub fn latency(&self, a: usize, b: usize) -> Duration {
        let (lo, hi) = (a.min(b) as u64, a.max(b) as u64);
        let h = splitmix(self.seed ^ splitmix(lo.wrapping_mul(0x1_0000_0001) ^ hi.rotate_left(32)));
        let span = (self.links.latency_max - self.links.latency_min).as_micros() as u64 + 1;
        self.links.latency_min + Duration::from_micros(h % span)
    }

    /// Median round-trip time over `samples` random pairs.
    pub fn median_rtt(&mut self, samples: usize) -> Duration {
        let n = self.nodes.len().max(2);
        let mut v: Vec<Duration> = (0..samples)
            .map(|_| {
                let a = self.rng.random_range(0..n);
                let b = (a + self.rng.random_range(1..n)) % n;
                self.latency(a, b) * 2
            })
            .collect();
        v.sort();
        v[v.len() / 2]
    }

    /// Run `f` on live node `i` at the current time, then collect what it sends and reports.
    pub fn with_node<R>(&mut self, i: usize, f: impl FnOnce(&mut Node, Instant) -> R) -> Option<R> {
        let now = self.now;
        let r = f(self.nodes.get_mut(i)?.as_mut()?, now);
        self.flush(i);
        Some(r)
    }

    /// Kill node `i`: it stops answering; datagrams to it vanish.
    pub fn kill(&mut self, i: usize) {
        if let Some(slot) = self.nodes.get_mut(i) {
            *slot = None;
        }
    }

    pub fn take_events(&mut self) -> Vec<(usize, Instant, Event)> {
        std::mem::take(&mut self.events)
    }

    fn push(&mut self, at: Instant, item: Item) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            item,
        }));
    }

    fn flush(&mut self, i: usize) {
        let now = self.now;
        let Some(node) = self.nodes.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        let mut out = Vec::new();
        while let Some(t) = node.poll_transmit() {
            out.push(t);
        }
        while let Some(e) = node.poll_event() {
            self.events.push((i, now, e));
        }
        let wake = node.poll_timeout().map(|t| t.max(now));
        for (to, bytes) in out {
            self.datagrams += 1;
            let Some(j) = index_of(to).filter(|j| *j < self.nodes.len()) else {
                continue;
            };
            if self.rng.random_bool(self.links.loss) {
                self.lost += 1;
                continue;
            }
            let at = now + self.latency(i, j);
            self.push(
                at,
                Item::Deliver {
                    to: j,
                    from: i,
                    bytes,
                },
            );
        }
        if let Some(t) = wake {
            if self.timers[i] != Some(t) {
                self.timers[i] = Some(t);
                self.push(t, Item::Timer { node: i });
            }
        }
    }

    /// Process everything scheduled up to `until`, then set the clock to `until`.
    pub fn run_until(&mut self, until: Instant) {
        while let Some(Reverse(top)) = self.queue.peek() {
            if top.at > until {
                break;
            }
            let Some(Reverse(s)) = self.queue.pop() else {
                break;
            };
            self.now = s.at;
            match s.item {
                Item::Deliver { to, from, bytes } => {
                    let now = self.now;
                    if let Some(node) = self.nodes[to].as_mut() {
                        node.handle_datagram(now, addr_of(from), &bytes);
                        self.flush(to);
                    }
                }
                Item::Timer { node } => {
                    if self.timers[node] != Some(s.at) {
                        continue;
                    }
                    self.timers[node] = None;
                    let now = self.now;
                    if let Some(n) = self.nodes[node].as_mut() {
                        n.handle_timeout(now);
                        self.flush(node);
                    }
                }
            }
        }
        self.now = self.now.max(until);
    }

    /// Advance the clock by `d`.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }
}

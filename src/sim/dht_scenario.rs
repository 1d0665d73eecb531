//! The DHT simulation scenario of issue 3: `nodes` nodes join one by one through node 0, `infohashes` random
//! nodes announce an infohash each, random other nodes look them up (`get_peers`), then `kill_fraction` of the
//! nodes die at once and every infohash announced before is looked up again from a random survivor.
//! Lookup time is measured from the call to the first `Peers` event holding the announcer, in units of the
//! median link RTT; `done` is until the lookup finished (k closest answered or failed).

use crate::dht::{Config, Event, LookupId};
use crate::metainfo::InfoHash;
use crate::sim::dht::{addr_of, DhtSim, Links};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::fmt;
use std::net::{SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Scenario {
    pub nodes: usize,
    pub infohashes: usize,
    pub seed: u64,
    pub join_interval: Duration,
    pub kill_fraction: f64,
    pub links: Links,
}

impl Scenario {
    pub fn new(nodes: usize, infohashes: usize, seed: u64) -> Scenario {
        Scenario {
            nodes,
            infohashes,
            seed,
            join_interval: Duration::from_millis(20),
            kill_fraction: 0.3,
            links: Links::default(),
        }
    }
}

/// Figures of one lookup phase (times in median-RTT units; `f64::INFINITY` for a peer not found).
#[derive(Clone, Debug, Default)]
pub struct Phase {
    pub first_peer: Vec<f64>,
    pub done: Vec<f64>,
    pub queries: Vec<usize>,
    /// Lookups whose peer no live node stored any more (all replicas dead): unfindable by any lookup.
    pub unfindable: usize,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

impl Phase {
    pub fn lookups(&self) -> usize {
        self.first_peer.len()
    }
    pub fn success_rate(&self) -> f64 {
        self.first_peer.iter().filter(|t| t.is_finite()).count() as f64
            / self.lookups().max(1) as f64
    }
    pub fn median(&self) -> f64 {
        percentile(&self.first_peer, 0.5)
    }
    pub fn p95(&self) -> f64 {
        percentile(&self.first_peer, 0.95)
    }
    pub fn done_median(&self) -> f64 {
        percentile(&self.done, 0.5)
    }
    pub fn done_p95(&self) -> f64 {
        percentile(&self.done, 0.95)
    }
    pub fn queries_per_lookup(&self) -> f64 {
        self.queries.iter().sum::<usize>() as f64 / self.queries.len().max(1) as f64
    }
}

impl Phase {
    /// Issue 3's targets for the phase before the kill, on the lookup's end as well as its first peer:
    /// 100% found, median <= 4 RTT, p95 <= 8 RTT.
    pub fn meets_before_targets(&self) -> bool {
        self.success_rate() == 1.0
            && self.median() <= 4.0
            && self.p95() <= 8.0
            && self.done_median() <= 4.0
            && self.done_p95() <= 8.0
    }
    /// After the kill: >= 99% found, median <= 8 RTT (first peer and end).
    pub fn meets_after_targets(&self) -> bool {
        self.success_rate() >= 0.99 && self.median() <= 8.0 && self.done_median() <= 8.0
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "lookups {}, found {:.2}%, {:.1} queries/lookup (each query + reply = 2 datagrams), {} with no \
             live replica",
            self.lookups(),
            self.success_rate() * 100.0,
            self.queries_per_lookup(),
            self.unfindable
        )?;
        writeln!(
            f,
            "    time to FIRST PEER:  median {:.2} RTT, p95 {:.2} RTT",
            self.median(),
            self.p95()
        )?;
        write!(
            f,
            "    time to LOOKUP END:  median {:.2} RTT, p95 {:.2} RTT (k closest answered or failed)",
            self.done_median(),
            self.done_p95()
        )
    }
}

#[derive(Clone, Debug)]
pub struct Report {
    pub nodes: usize,
    pub median_rtt: Duration,
    pub announced_to_mean: f64,
    pub before: Phase,
    pub after: Phase,
    pub killed: usize,
    pub datagrams: u64,
    pub virtual_seconds: f64,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "nodes {} | median link RTT {:.0} ms | announces reached {:.2} nodes on average",
            self.nodes,
            self.median_rtt.as_secs_f64() * 1e3,
            self.announced_to_mean
        )?;
        writeln!(f, "before kill: {}", self.before)?;
        writeln!(f, "after killing {} nodes: {}", self.killed, self.after)?;
        writeln!(
            f,
            "targets (first peer and lookup end): before kill 100% found, median <= 4, p95 <= 8 RTT: {}; \
             after kill >= 99% found, median <= 8 RTT: {}",
            if self.before.meets_before_targets() { "met" } else { "NOT met" },
            if self.after.meets_after_targets() { "met" } else { "NOT met" }
        )?;
        write!(
            f,
            "datagrams {} | virtual time {:.0} s",
            self.datagrams, self.virtual_seconds
        )
    }
}

struct Target {
    info_hash: InfoHash,
    announcer: usize,
    peer: SocketAddrV4,
}

/// Run the scenario; deterministic for a given `Scenario`.
pub fn run_scenario(s: &Scenario) -> Report {
    let mut sim = DhtSim::new(s.nodes, s.seed, s.links, Config::default());
    let rtt = sim.median_rtt(20_000);
    let mut rng = StdRng::seed_from_u64(s.seed ^ 0x5eed);
    let boot = [addr_of(0)];
    for i in 1..s.nodes {
        sim.with_node(i, |n, now| n.bootstrap(now, &boot));
        sim.run_for(s.join_interval);
    }
    sim.run_for(Duration::from_secs(30));
    sim.take_events();

    // Announce.
    let mut targets = Vec::new();
    for j in 0..s.infohashes {
        let info_hash = InfoHash(rng.random());
        let announcer = rng.random_range(0..s.nodes);
        let port = 7000 + (j % 1000) as u16;
        let SocketAddr::V4(a) = addr_of(announcer) else {
            unreachable!()
        };
        sim.with_node(announcer, |n, now| n.announce(now, info_hash, port));
        targets.push(Target {
            info_hash,
            announcer,
            peer: SocketAddrV4::new(*a.ip(), port),
        });
        sim.run_for(Duration::from_millis(10));
    }
    sim.run_for(Duration::from_secs(20));
    let announced: Vec<usize> = sim
        .take_events()
        .into_iter()
        .filter_map(|(_, _, e)| match e {
            Event::Announced { nodes, .. } => Some(nodes),
            _ => None,
        })
        .collect();
    let announced_to_mean = announced.iter().sum::<usize>() as f64 / announced.len().max(1) as f64;

    if std::env::var_os("QSWARM_SIM_DEBUG").is_some() {
        for t in &targets {
            let r = replica_ranks(&sim, t);
            if r.len() < 8 || r.iter().any(|x| *x >= 8) {
                println!("replicas of {} at ranks {r:?}", t.info_hash);
            }
        }
    }
    let before = lookup_phase(&mut sim, &targets, &mut rng, rtt);
    let mut order: Vec<usize> = (0..s.nodes).collect();
    order.shuffle(&mut rng);
    let killed = (s.nodes as f64 * s.kill_fraction).round() as usize;
    for &i in &order[..killed] {
        sim.kill(i);
    }
    let after = lookup_phase(&mut sim, &targets, &mut rng, rtt);
    Report {
        nodes: s.nodes,
        median_rtt: rtt,
        announced_to_mean,
        before,
        after,
        killed,
        datagrams: sim.datagrams,
        virtual_seconds: sim.now().duration_since(sim.epoch).as_secs_f64(),
    }
}

/// Look up every target from a random live node other than its announcer.
fn lookup_phase(sim: &mut DhtSim, targets: &[Target], rng: &mut StdRng, rtt: Duration) -> Phase {
    let alive: Vec<usize> = (0..sim.len()).filter(|i| sim.is_alive(*i)).collect();
    let mut started: HashMap<(usize, LookupId), (usize, Instant)> = HashMap::new();
    for (j, t) in targets.iter().enumerate() {
        let q = loop {
            let q = alive[rng.random_range(0..alive.len())];
            if q != t.announcer || alive.len() == 1 {
                break q;
            }
        };
        if let Some(Some(lid)) = sim.with_node(q, |n, now| n.get_peers(now, t.info_hash)) {
            started.insert((q, lid), (j, sim.now()));
        }
        sim.run_for(Duration::from_millis(10));
    }
    sim.run_for(Duration::from_secs(30));
    let units = |d: Duration| d.as_secs_f64() / rtt.as_secs_f64();
    let mut first = vec![f64::INFINITY; targets.len()];
    let mut done = vec![f64::INFINITY; targets.len()];
    let mut queries = Vec::new();
    let mut ended = HashMap::new();
    for (node, at, e) in sim.take_events() {
        match e {
            Event::Peers { lookup, peers, .. } => {
                if let Some((j, start)) = started.get(&(node, lookup)) {
                    if peers.contains(&targets[*j].peer) {
                        first[*j] = first[*j].min(units(at - *start));
                    }
                }
            }
            Event::LookupDone {
                lookup,
                queries: q,
                closest,
                ..
            } => {
                if let Some((j, start)) = started.get(&(node, lookup)) {
                    done[*j] = units(at - *start);
                    queries.push(q);
                    ended.insert(*j, (q, closest));
                }
            }
            _ => {}
        }
    }
    let debug = std::env::var_os("QSWARM_SIM_DEBUG").is_some();
    let mut unfindable = 0;
    for (j, t) in targets.iter().enumerate() {
        if first[j].is_finite() {
            continue;
        }
        let ranks = replica_ranks(sim, t);
        if ranks.is_empty() {
            unfindable += 1;
        }
        if debug {
            println!(
                "not found: {} (announcer {}): live replicas at distance ranks {ranks:?}; lookup (queries, \
                 closest answered) {:?}",
                t.info_hash,
                t.announcer,
                ended.get(&j)
            );
            let q = started
                .iter()
                .find(|(_, (jj, _))| *jj == j)
                .map(|((q, _), _)| *q);
            let target = crate::dht::NodeId(t.info_hash.0);
            let mut live: Vec<(crate::dht::Distance, usize)> = (0..sim.len())
                .filter_map(|i| sim.node(i).map(|n| (n.id().distance(&target), i)))
                .collect();
            live.sort();
            for (d, i) in live.iter().take(4) {
                let id = sim.node(*i).unwrap().id();
                let known = (0..sim.len())
                    .filter(|x| sim.node(*x).is_some_and(|n| n.table().get(&id).is_some()))
                    .count();
                println!(
                    "   live rank node {i} lz {} known by {known} live nodes; querier {q:?}",
                    d.leading_zeros()
                );
            }
        }
    }
    first.sort_by(f64::total_cmp);
    done.sort_by(f64::total_cmp);
    Phase {
        first_peer: first,
        done,
        queries,
        unfindable,
    }
}

/// Ranks (by XOR distance to the infohash, among live nodes) of the live nodes storing the target's peer.
fn replica_ranks(sim: &DhtSim, t: &Target) -> Vec<usize> {
    let target = crate::dht::NodeId(t.info_hash.0);
    let now = sim.now();
    let mut rng = StdRng::seed_from_u64(0);
    let mut live: Vec<(crate::dht::Distance, usize)> = (0..sim.len())
        .filter_map(|i| sim.node(i).map(|n| (n.id().distance(&target), i)))
        .collect();
    live.sort();
    live.iter()
        .enumerate()
        .filter(|(_, (_, i))| {
            sim.node(*i).is_some_and(|n| {
                n.store()
                    .get(now, &t.info_hash, 500, &mut rng)
                    .contains(&t.peer)
            })
        })
        .map(|(rank, _)| rank)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 3's simulation at 1,000 nodes, with the targets asserted (the 10,000-node run is bench/dht_sim.sh)
    /// on both the time to the first peer and the time until the lookup ends (k closest answered or failed).
    /// Measured at seed 1: before the kill ends at median 2.9 / p95 4.2 RTT (first peer 1.1 / 2.2), after it
    /// 4.0 / 7.3 (first peer 1.3 / 3.1) with 99.0% found (the two misses are a region where 7 of the 8
    /// replicas died and the last is known to 3 live nodes), so the time bounds below keep margin but the
    /// 99% bound does not.
    #[test]
    fn thousand_nodes_meet_the_targets() {
        let report = run_scenario(&Scenario::new(1000, 200, 1));
        println!("{report}");
        let (b, a) = (&report.before, &report.after);
        assert_eq!(b.success_rate(), 1.0, "{report}");
        assert!(b.median() <= 4.0 && b.p95() <= 8.0, "{report}");
        assert!(b.done_median() <= 4.0 && b.done_p95() <= 8.0, "{report}");
        assert!(a.success_rate() >= 0.99, "{report}");
        assert!(a.median() <= 8.0 && a.done_median() <= 8.0, "{report}");
        assert!(b.meets_before_targets() && a.meets_after_targets());
        // Not targets of the issue, but regressions worth catching (measured: before 2.9 / 4.2, after 4.0 /
        // 7.3 RTT at the end; 15 and 18 queries per lookup; announces reach k nodes).
        assert!(report.announced_to_mean >= 7.5, "{report}");
        assert!(
            b.done_median() <= 3.5 && b.done_p95() <= 5.5 && a.done_median() <= 5.5,
            "{report}"
        );
        assert!(
            b.queries_per_lookup() <= 20.0 && a.queries_per_lookup() <= 25.0,
            "{report}"
        );
    }
}

//! The iterative Kademlia lookup, shaped like libp2p-kad's `ClosestPeersIter`: candidates ordered by XOR
//! distance to the target, at most α requests in flight, no address asked twice, a per-request (soft) deadline
//! given by the caller (adaptive RTT estimate: a node past it frees its slot for the next candidate, and a late
//! answer still counts), and done once the k closest candidates that did not fail have all answered (or
//! nothing is left to ask). Final round (Kademlia paper, §2.3; libp2p's `Stalled` state): once an answer
//! brings no candidate closer than the closest already seen, every uncontacted node among the k closest is
//! asked at once (up to k in flight instead of α) until a closer node turns up again. Sans-IO: the caller
//! sends what `next` returns and reports the outcome.

use crate::dht::id::{Distance, NodeId};
use crate::dht::krpc::NodeInfo;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

/// Requests in flight per lookup.
pub const ALPHA: usize = 3;
/// Answers in a row without a closer candidate after which the lookup enters its final round.
pub const STALL_AFTER: usize = 1;
/// Most candidates remembered per lookup (the farthest uncontacted ones are dropped beyond this).
pub const MAX_CANDIDATES: usize = 128;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum State {
    NotContacted,
    Waiting {
        deadline: Instant,
    },
    /// Missed its deadline; a late answer still counts.
    Unresponsive,
    Succeeded,
    Failed,
}

#[derive(Clone, Copy, Debug)]
pub struct Candidate {
    pub id: Option<NodeId>,
    pub addr: SocketAddrV4,
    pub state: State,
}

/// What the caller should do next.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Next {
    /// Send the lookup's query to this node (its id, if known).
    Query(SocketAddrV4, Option<NodeId>),
    /// Wait for answers or for [`Lookup::next_deadline`].
    Wait,
    Finished,
}

pub struct Lookup {
    target: NodeId,
    k: usize,
    alpha: usize,
    candidates: BTreeMap<(Distance, SocketAddrV4), Candidate>,
    known: HashMap<SocketAddrV4, Distance>,
    /// Deadlines of the requests in flight (at most α), so timeouts need no walk over all candidates.
    waiting: Vec<(Instant, (Distance, SocketAddrV4))>,
    in_flight: usize,
    finished: bool,
    queries: usize,
    /// Distance of the closest candidate seen so far (progress is a closer one arriving).
    best: Distance,
    /// Answers in a row that brought no closer candidate.
    no_progress: usize,
    /// Set once `stall_after` answers in a row brought nothing closer: the final round, in which every
    /// uncontacted node among the k closest is asked at once (up to k in flight instead of α).
    stalled: bool,
    stall_after: usize,
}

impl Lookup {
    /// Start a lookup for `target` from `seeds` (id unknown for bootstrap addresses: they sort last).
    pub fn new(
        target: NodeId,
        k: usize,
        alpha: usize,
        seeds: impl IntoIterator<Item = (Option<NodeId>, SocketAddrV4)>,
    ) -> Lookup {
        let mut l = Lookup {
            target,
            k,
            alpha: alpha.max(1),
            candidates: BTreeMap::new(),
            known: HashMap::new(),
            waiting: Vec::new(),
            in_flight: 0,
            finished: false,
            queries: 0,
            best: Distance::MAX,
            no_progress: 0,
            stalled: false,
            stall_after: STALL_AFTER,
        };
        for (id, addr) in seeds {
            l.add(id, addr);
        }
        l.best = l.closest_distance();
        l
    }

    pub fn target(&self) -> NodeId {
        self.target
    }

    fn add(&mut self, id: Option<NodeId>, addr: SocketAddrV4) {
        if self.known.contains_key(&addr) {
            return;
        }
        let d = id.map_or(Distance::MAX, |id| id.distance(&self.target));
        self.known.insert(addr, d);
        self.candidates.insert(
            (d, addr),
            Candidate {
                id,
                addr,
                state: State::NotContacted,
            },
        );
        if self.candidates.len() > MAX_CANDIDATES {
            let drop = self
                .candidates
                .iter()
                .rev()
                .find(|(_, c)| c.state == State::NotContacted)
                .map(|(k, _)| *k);
            if let Some(key) = drop {
                self.candidates.remove(&key);
            }
        }
    }

    fn closest_distance(&self) -> Distance {
        self.candidates
            .keys()
            .next()
            .map_or(Distance::MAX, |(d, _)| *d)
    }

    fn get_mut(&mut self, addr: SocketAddrV4) -> Option<&mut Candidate> {
        let d = *self.known.get(&addr)?;
        self.candidates.get_mut(&(d, addr))
    }

    /// `addr` answered, telling us about `nodes`.
    pub fn on_success(&mut self, addr: SocketAddrV4, nodes: &[NodeInfo]) {
        self.waiting.retain(|(_, (_, a))| *a != addr);
        let Some(c) = self.get_mut(addr) else { return };
        match c.state {
            State::Waiting { .. } => {
                c.state = State::Succeeded;
                self.in_flight -= 1;
            }
            State::Unresponsive => c.state = State::Succeeded,
            _ => return,
        }
        if !self.finished {
            for n in nodes {
                self.add(Some(n.id), n.addr);
            }
            let best = self.closest_distance();
            if best < self.best {
                self.best = best;
                self.no_progress = 0;
                self.stalled = false;
            } else {
                self.no_progress += 1;
                if self.no_progress >= self.stall_after {
                    self.stalled = true;
                }
            }
        }
    }

    /// `addr` failed (error reply, or its request timed out for good).
    pub fn on_failure(&mut self, addr: SocketAddrV4) {
        self.waiting.retain(|(_, (_, a))| *a != addr);
        let Some(c) = self.get_mut(addr) else { return };
        match c.state {
            State::Waiting { .. } => {
                c.state = State::Failed;
                self.in_flight -= 1;
            }
            State::Unresponsive => c.state = State::Failed,
            _ => {}
        }
    }

    /// Advance: returns the next node to ask, or whether to wait or stop. `timeout` is this request's deadline.
    pub fn next(&mut self, now: Instant, timeout: Duration) -> Next {
        if self.finished {
            return Next::Finished;
        }
        let mut i = 0;
        while i < self.waiting.len() {
            let (deadline, key) = self.waiting[i];
            if now < deadline {
                i += 1;
                continue;
            }
            self.waiting.swap_remove(i);
            if let Some(c) = self.candidates.get_mut(&key) {
                if matches!(c.state, State::Waiting { .. }) {
                    c.state = State::Unresponsive;
                    self.in_flight -= 1;
                }
            }
        }
        // Walk the live candidates (not failed, not unresponsive) closest first; only the k closest matter.
        let limit = self.in_flight_limit();
        let mut live = 0;
        let mut all_answered = true;
        for (key, c) in self.candidates.iter_mut() {
            match c.state {
                State::Succeeded => live += 1,
                State::Waiting { .. } => {
                    live += 1;
                    all_answered = false;
                }
                State::NotContacted => {
                    if self.in_flight >= limit {
                        return Next::Wait;
                    }
                    c.state = State::Waiting {
                        deadline: now + timeout,
                    };
                    self.waiting.push((now + timeout, *key));
                    self.in_flight += 1;
                    self.queries += 1;
                    return Next::Query(c.addr, c.id);
                }
                State::Unresponsive | State::Failed => continue,
            }
            if live >= self.k {
                if all_answered {
                    self.finished = true;
                    return Next::Finished;
                }
                return Next::Wait;
            }
        }
        if self.in_flight == 0 {
            self.finished = true;
            return Next::Finished;
        }
        Next::Wait
    }

    /// The earliest deadline of a request in flight.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.waiting.iter().map(|(d, _)| *d).min()
    }

    /// Widen a finished (or running) lookup to the `k` closest: a get_peers that met no peer among the first
    /// k closest keeps going to the next ones before giving up. Nodes already asked are never asked again.
    pub fn widen(&mut self, k: usize) {
        if k > self.k {
            self.k = k;
            self.finished = false;
        }
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }
    /// Whether the lookup is in its final round (see [`Lookup::in_flight_limit`]).
    pub fn is_stalled(&self) -> bool {
        self.stalled
    }
    /// Requests allowed in flight now: α, or k in the final round.
    pub fn in_flight_limit(&self) -> usize {
        if self.stalled {
            self.alpha.max(self.k)
        } else {
            self.alpha
        }
    }
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }
    /// Requests sent so far.
    pub fn queries(&self) -> usize {
        self.queries
    }

    /// The `n` closest candidates that answered, closest first.
    pub fn closest_succeeded(&self, n: usize) -> Vec<Candidate> {
        self.candidates
            .values()
            .filter(|c| c.state == State::Succeeded)
            .take(n)
            .copied()
            .collect()
    }
}

#[cfg(test)]
#[path = "lookup_tests.rs"]
mod tests;

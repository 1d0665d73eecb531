//! The Kademlia routing table of BEP 5: buckets of k = 8 nodes, where only the bucket covering our own id
//! splits; nodes are good / questionable / bad by the 15-minute rules; a full bucket asks its caller to ping its
//! least recently seen questionable node before evicting it (a newcomer waits in a replacement cache); buckets
//! untouched for 15 minutes yield refresh targets. One node per IP, except loopback and private addresses.
//!
//! Bucket `i < len-1` holds nodes sharing exactly `i` leading bits with our id; the last bucket holds the rest.

use crate::dht::id::NodeId;
use crate::dht::krpc::NodeInfo;
use crate::dht::ratelimit::is_local;
use rand::Rng;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Bucket size.
pub const K: usize = 8;
/// A node that answered (or queried us after having answered) within this long is good.
pub const GOOD_FOR: Duration = Duration::from_secs(15 * 60);
/// A bucket untouched this long is refreshed.
pub const REFRESH_AFTER: Duration = Duration::from_secs(15 * 60);
/// Consecutive unanswered queries that make a node bad.
pub const BAD_AFTER_FAILURES: u32 = 2;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Status {
    Good,
    Questionable,
    Bad,
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub info: NodeInfo,
    pub last_response: Option<Instant>,
    pub last_query: Option<Instant>,
    pub failures: u32,
    /// Set while we are pinging it to decide on an eviction.
    pub pinging: bool,
}

impl Entry {
    fn new(info: NodeInfo, responded: Option<Instant>) -> Entry {
        Entry {
            info,
            last_response: responded,
            last_query: None,
            failures: 0,
            pinging: false,
        }
    }

    pub fn status(&self, now: Instant) -> Status {
        if self.failures >= BAD_AFTER_FAILURES {
            return Status::Bad;
        }
        let recent =
            |t: Option<Instant>| t.is_some_and(|t| now.saturating_duration_since(t) < GOOD_FOR);
        if recent(self.last_response) || (self.last_response.is_some() && recent(self.last_query)) {
            Status::Good
        } else {
            Status::Questionable
        }
    }

    fn last_seen(&self) -> Option<Instant> {
        self.last_response.max(self.last_query)
    }
}

struct Bucket {
    nodes: Vec<Entry>,
    replacements: Vec<Entry>,
    last_changed: Instant,
}

impl Bucket {
    fn new(now: Instant) -> Bucket {
        Bucket {
            nodes: Vec::new(),
            replacements: Vec::new(),
            last_changed: now,
        }
    }
}

pub struct RoutingTable {
    own: NodeId,
    buckets: Vec<Bucket>,
}

impl RoutingTable {
    pub fn new(own: NodeId, now: Instant) -> RoutingTable {
        RoutingTable {
            own,
            buckets: vec![Bucket::new(now)],
        }
    }

    pub fn own_id(&self) -> NodeId {
        self.own
    }

    fn index(&self, id: &NodeId) -> usize {
        self.own.common_prefix_len(id).min(self.buckets.len() - 1)
    }

    pub fn len(&self) -> usize {
        self.buckets.iter().map(|b| b.nodes.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.buckets.iter().flat_map(|b| b.nodes.iter())
    }

    pub fn get(&self, id: &NodeId) -> Option<&Entry> {
        self.buckets[self.index(id)]
            .nodes
            .iter()
            .find(|e| e.info.id == *id)
    }

    fn ip_taken(&self, ip: IpAddr, id: &NodeId) -> bool {
        !is_local(ip)
            && self
                .entries()
                .any(|e| IpAddr::V4(*e.info.addr.ip()) == ip && e.info.id != *id)
    }

    /// A node answered one of our queries: insert or refresh it. Returns a node to ping when the bucket is full
    /// of nodes that are not bad (ping-before-evict); the newcomer waits in the replacement cache meanwhile.
    pub fn on_response(&mut self, now: Instant, info: NodeInfo) -> Option<NodeInfo> {
        self.insert(now, Entry::new(info, Some(now)))
    }

    /// Insert a node we have not heard from ourselves (imported state file): only where there is room.
    pub fn insert_unverified(&mut self, now: Instant, info: NodeInfo) {
        let idx = self.index(&info.id);
        if self.buckets[idx].nodes.len() < K || idx + 1 == self.buckets.len() {
            let _ = self.insert(now, Entry::new(info, None));
        }
    }

    fn insert(&mut self, now: Instant, entry: Entry) -> Option<NodeInfo> {
        let info = entry.info;
        if info.id == self.own || self.ip_taken(IpAddr::V4(*info.addr.ip()), &info.id) {
            return None;
        }
        loop {
            let idx = self.index(&info.id);
            let can_split = idx + 1 == self.buckets.len() && self.buckets.len() < 160;
            let bucket = &mut self.buckets[idx];
            if let Some(e) = bucket.nodes.iter_mut().find(|e| e.info.id == info.id) {
                if e.info.addr == info.addr || e.status(now) == Status::Bad {
                    e.info.addr = info.addr;
                    if entry.last_response.is_some() {
                        e.last_response = entry.last_response;
                        e.failures = 0;
                        e.pinging = false;
                        bucket.last_changed = now;
                    }
                }
                return None;
            }
            if bucket.nodes.len() < K {
                bucket.nodes.push(entry);
                bucket.last_changed = now;
                return None;
            }
            if can_split {
                self.split(now);
                continue;
            }
            // Unverified nodes (from a state file) only fill free slots.
            entry.last_response?;
            if let Some(bad) = bucket
                .nodes
                .iter_mut()
                .find(|e| e.status(now) == Status::Bad)
            {
                *bad = entry;
                bucket.last_changed = now;
                return None;
            }
            // Full of good/questionable nodes: remember the newcomer, ping the stalest questionable node.
            bucket.replacements.retain(|e| e.info.id != info.id);
            if bucket.replacements.len() >= K {
                bucket.replacements.remove(0);
            }
            bucket.replacements.push(entry);
            let stale = bucket
                .nodes
                .iter_mut()
                .filter(|e| !e.pinging && e.status(now) == Status::Questionable)
                .min_by_key(|e| e.last_seen())?;
            stale.pinging = true;
            return Some(stale.info);
        }
    }

    fn split(&mut self, now: Instant) {
        let depth = self.buckets.len() - 1;
        let own = self.own;
        let mut new = Bucket::new(now);
        let last = &mut self.buckets[depth];
        let deeper = |e: &Entry| own.common_prefix_len(&e.info.id) > depth;
        new.nodes = last.nodes.iter().filter(|e| deeper(e)).cloned().collect();
        last.nodes.retain(|e| !deeper(e));
        new.replacements = last
            .replacements
            .iter()
            .filter(|e| deeper(e))
            .cloned()
            .collect();
        last.replacements.retain(|e| !deeper(e));
        self.buckets.push(new);
    }

    /// A node queried us. Known: note the activity and return `None`. Unknown: return it if the table would
    /// take it, so the caller can ping it and insert it on the answer (we never insert unverified queriers).
    pub fn on_query(&mut self, now: Instant, info: NodeInfo) -> Option<NodeInfo> {
        if info.id == self.own {
            return None;
        }
        let idx = self.index(&info.id);
        if let Some(e) = self.buckets[idx]
            .nodes
            .iter_mut()
            .find(|e| e.info.id == info.id)
        {
            if e.info.addr == info.addr {
                e.last_query = Some(now);
            }
            return None;
        }
        self.wants(now, &info).then_some(info)
    }

    /// Whether the table would take `info` if it answered (unknown id, room in its bucket or splittable).
    pub fn wants(&self, now: Instant, info: &NodeInfo) -> bool {
        if info.id == self.own {
            return false;
        }
        let idx = self.index(&info.id);
        let bucket = &self.buckets[idx];
        if bucket.nodes.iter().any(|e| e.info.id == info.id) {
            return false;
        }
        let room = bucket.nodes.len() < K
            || idx + 1 == self.buckets.len()
            || bucket.nodes.iter().any(|e| e.status(now) == Status::Bad);
        room && !self.ip_taken(IpAddr::V4(*info.addr.ip()), &info.id)
    }

    /// A query to `id` went unanswered. A node that turns bad is replaced by the freshest replacement.
    pub fn on_failure(&mut self, now: Instant, id: &NodeId) {
        let idx = self.index(id);
        let bucket = &mut self.buckets[idx];
        let Some(pos) = bucket.nodes.iter().position(|e| e.info.id == *id) else {
            bucket.replacements.retain(|e| e.info.id != *id);
            return;
        };
        let e = &mut bucket.nodes[pos];
        e.failures += 1;
        e.pinging = false;
        if e.status(now) == Status::Bad {
            if let Some(rep) = bucket.replacements.pop() {
                bucket.nodes[pos] = rep;
                bucket.last_changed = now;
            }
        }
    }

    /// Up to `n` non-bad nodes closest to `target`, closest first.
    pub fn closest(&self, now: Instant, target: &NodeId, n: usize) -> Vec<NodeInfo> {
        let mut all: Vec<&Entry> = self
            .entries()
            .filter(|e| e.status(now) != Status::Bad)
            .collect();
        all.sort_by_cached_key(|e| e.info.id.distance(target));
        all.into_iter().take(n).map(|e| e.info).collect()
    }

    /// Targets for buckets untouched for [`REFRESH_AFTER`] (each then counts as touched).
    pub fn refresh_targets(&mut self, now: Instant, rng: &mut impl Rng) -> Vec<NodeId> {
        let own = self.own;
        let mut out = Vec::new();
        for (i, b) in self.buckets.iter_mut().enumerate() {
            if now.saturating_duration_since(b.last_changed) >= REFRESH_AFTER {
                b.last_changed = now;
                out.push(own.random_with_prefix(i, rng));
            }
        }
        out
    }

    /// Targets in every bucket except the deepest that holds fewer than k nodes (the join-time refresh of
    /// Kademlia: after looking up our own id, fill the buckets farther away).
    pub fn underfilled_targets(&self, rng: &mut impl Rng) -> Vec<NodeId> {
        let deepest = self.buckets.len() - 1;
        (0..deepest)
            .filter(|&i| self.buckets[i].nodes.len() < K)
            .map(|i| self.own.random_with_prefix(i, rng))
            .collect()
    }

    /// Mark the bucket covering `target` as touched (a lookup toward it just ran).
    pub fn touch(&mut self, now: Instant, target: &NodeId) {
        let idx = self.index(target);
        self.buckets[idx].last_changed = now;
    }

    /// When the next bucket refresh falls due.
    pub fn next_refresh(&self) -> Option<Instant> {
        self.buckets
            .iter()
            .map(|b| b.last_changed + REFRESH_AFTER)
            .min()
    }

    /// Nodes worth saving to the state file (not bad).
    pub fn export(&self, now: Instant) -> Vec<NodeInfo> {
        self.entries()
            .filter(|e| e.status(now) != Status::Bad)
            .map(|e| e.info)
            .collect()
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;

//! Lookups for `Node` (`node.rs`): the public operations (bootstrap, get_peers, announce with re-announce,
//! routing-table export/import) and the driving of each `Lookup` to its end: find_node for bootstrap and bucket
//! refresh, get_peers reporting peers as they arrive and collecting tokens, then announce_peer to the k closest
//! nodes that gave one.

use super::{v4, Event, LookupId, LookupState, Node, Purpose, TxKind};
use crate::dht::id::NodeId;
use crate::dht::krpc::{Method, NodeInfo};
use crate::dht::lookup::{Lookup, Next};
use crate::metainfo::InfoHash;
use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, SocketAddrV4};
use std::time::Instant;

impl Node {
    /// Join the DHT through `addrs` (and whatever the routing table already holds): a lookup of our own id.
    pub fn bootstrap(&mut self, now: Instant, addrs: &[SocketAddr]) -> Option<LookupId> {
        for a in addrs.iter().filter_map(|a| v4(*a)) {
            if !self.bootstrap_addrs.contains(&a) {
                self.bootstrap_addrs.push(a);
            }
        }
        self.last_bootstrap = Some(now);
        let seeds: Vec<SocketAddrV4> = self.bootstrap_addrs.clone();
        self.start_lookup(now, self.id, Purpose::Bootstrap, &seeds)
    }

    /// Look up peers for `info_hash`; they arrive as [`Event::Peers`] (first any we store ourselves).
    pub fn get_peers(&mut self, now: Instant, info_hash: InfoHash) -> Option<LookupId> {
        let purpose = Purpose::GetPeers {
            info_hash,
            announce: None,
            seen: HashSet::new(),
        };
        self.start_lookup(now, NodeId(info_hash.0), purpose, &[])
    }

    /// Announce that we serve `info_hash` on `port` now and every [`Config::reannounce`]; the lookup also
    /// reports peers like `get_peers`.
    pub fn announce(&mut self, now: Instant, info_hash: InfoHash, port: u16) -> Option<LookupId> {
        self.announces
            .insert(info_hash, (port, now + self.config.reannounce));
        let purpose = Purpose::GetPeers {
            info_hash,
            announce: Some(port),
            seen: HashSet::new(),
        };
        self.start_lookup(now, NodeId(info_hash.0), purpose, &[])
    }

    /// Stop re-announcing `info_hash`.
    pub fn stop_announce(&mut self, info_hash: &InfoHash) {
        self.announces.remove(info_hash);
    }

    /// Routing-table nodes worth saving.
    pub fn export_nodes(&self, now: Instant) -> Vec<NodeInfo> {
        self.table.export(now)
    }

    /// Add saved nodes (unverified; the next bootstrap or lookup confirms them).
    pub fn import_nodes(&mut self, now: Instant, nodes: &[NodeInfo]) {
        for n in nodes {
            self.table.insert_unverified(now, *n);
        }
    }

    pub(super) fn start_lookup(
        &mut self,
        now: Instant,
        target: NodeId,
        mut purpose: Purpose,
        extra: &[SocketAddrV4],
    ) -> Option<LookupId> {
        if self.lookups.len() >= self.config.max_lookups {
            return None;
        }
        let lid = self.next_lookup;
        self.next_lookup += 1;
        let mut seeds: Vec<(Option<NodeId>, SocketAddrV4)> = self
            .table
            .closest(now, &target, 2 * self.config.k)
            .into_iter()
            .map(|n| (Some(n.id), n.addr))
            .collect();
        if seeds.len() < self.config.k {
            seeds.extend(self.bootstrap_addrs.iter().chain(extra).map(|a| (None, *a)));
        }
        if let Purpose::GetPeers {
            info_hash, seen, ..
        } = &mut purpose
        {
            let local = self
                .store
                .get(now, info_hash, self.config.max_values, &mut self.rng);
            let fresh: Vec<_> = local.into_iter().filter(|p| seen.insert(*p)).collect();
            if !fresh.is_empty() {
                self.events.push_back(Event::Peers {
                    lookup: lid,
                    info_hash: *info_hash,
                    peers: fresh,
                });
            }
        }
        self.table.touch(now, &target);
        let lookup = Lookup::new(target, self.config.k, self.config.alpha, seeds);
        self.lookups.insert(
            lid,
            LookupState {
                lookup,
                purpose,
                tokens: HashMap::new(),
            },
        );
        self.drive_lookup(now, lid);
        Some(lid)
    }

    pub(super) fn drive_lookup(&mut self, now: Instant, lid: LookupId) {
        let timeout = self.request_timeout();
        loop {
            let Some(st) = self.lookups.get_mut(&lid) else {
                return;
            };
            match st.lookup.next(now, timeout) {
                Next::Query(addr, id) => {
                    let method = match &st.purpose {
                        Purpose::Bootstrap | Purpose::Refresh => Method::FindNode {
                            target: st.lookup.target(),
                        },
                        Purpose::GetPeers { info_hash, .. } => Method::GetPeers {
                            info_hash: *info_hash,
                        },
                    };
                    if !self.send_query(now, addr, id, method, TxKind::Lookup(lid)) {
                        if let Some(st) = self.lookups.get_mut(&lid) {
                            st.lookup.on_failure(addr);
                        }
                    }
                }
                Next::Wait => return,
                Next::Finished => {
                    // A get_peers that met no peer among the k closest widens to the 4k closest before giving up
                    // (after a mass failure the last live replica may be known to few nodes).
                    let wider = 4 * self.config.k;
                    match &mut st.purpose {
                        Purpose::GetPeers { seen, .. }
                            if seen.is_empty() && st.lookup.k() < wider =>
                        {
                            st.lookup.widen(wider)
                        }
                        _ => return self.finish_lookup(now, lid),
                    }
                }
            }
        }
    }

    pub(super) fn finish_lookup(&mut self, now: Instant, lid: LookupId) {
        let Some(st) = self.lookups.remove(&lid) else {
            return;
        };
        let closest = st.lookup.closest_succeeded(self.config.k);
        self.events.push_back(Event::LookupDone {
            lookup: lid,
            target: st.lookup.target(),
            queries: st.lookup.queries(),
            closest: closest.len(),
        });
        match st.purpose {
            Purpose::Bootstrap => {
                self.events.push_back(Event::Bootstrapped {
                    nodes: self.table.len(),
                });
                for target in self.table.underfilled_targets(&mut self.rng) {
                    self.start_lookup(now, target, Purpose::Refresh, &[]);
                }
            }
            Purpose::Refresh => {}
            Purpose::GetPeers {
                info_hash,
                announce: Some(port),
                ..
            } => {
                let mut nodes = 0;
                for c in &closest {
                    let Some(token) = st.tokens.get(&c.addr) else {
                        continue;
                    };
                    let method = Method::AnnouncePeer {
                        info_hash,
                        port,
                        implied_port: false,
                        token: token.clone(),
                    };
                    let kind = TxKind::Announce {
                        method: method.clone(),
                        retry: true,
                    };
                    if self.send_query(now, c.addr, c.id, method, kind) {
                        nodes += 1;
                    }
                }
                self.events.push_back(Event::Announced {
                    info_hash,
                    port,
                    nodes,
                });
            }
            Purpose::GetPeers { .. } => {}
        }
    }
}

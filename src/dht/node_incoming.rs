//! Incoming datagrams for `Node` (`node.rs`): rate limit and size check before decoding, then queries are
//! answered (203 for malformed queries and bad tokens, 204 for unknown methods), responses and errors are
//! matched to our outstanding transactions by id *and* source address, and feed the routing table and lookups.

use super::{v4, Event, Node, Purpose, TxKind};
use crate::dht::krpc::{
    Body, DecodeError, Message, Method, NodeInfo, Query, Response, ERR_PROTOCOL, MAX_PACKET,
};
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::time::Instant;

/// Verification pings (of unknown queriers and nodes heard about) outstanding at once.
const MAX_VERIFYING: usize = 256;

impl Node {
    /// One datagram from `from`. Never panics; answers what deserves an answer, drops the rest.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.stats.received += 1;
        let Some(from) = v4(from) else { return };
        if bytes.len() > MAX_PACKET || from.port() == 0 {
            self.stats.dropped_malformed += 1;
            return;
        }
        if !self.limiter.allow(now, SocketAddr::V4(from)) {
            self.stats.dropped_rate += 1;
            return;
        }
        match Message::decode(bytes) {
            Err(e) => {
                self.stats.dropped_malformed += 1;
                if let Some(reply) = e.reply() {
                    self.reply_error(from, reply);
                }
                if let DecodeError::BadResponse { tid, .. } = e {
                    // A garbled answer to one of ours: treat as a failure of that request.
                    self.on_error(now, from, &tid);
                }
            }
            Ok(Message { tid, body }) => match body {
                Body::Query(q) => self.on_query(now, from, tid, q),
                Body::Response(r) => self.on_response(now, from, &tid, r),
                Body::Error { .. } => self.on_error(now, from, &tid),
            },
        }
    }

    fn reply_error(&mut self, to: SocketAddrV4, msg: Message) {
        self.stats.errors_sent += 1;
        self.send(to, &msg);
    }

    fn on_query(&mut self, now: Instant, from: SocketAddrV4, tid: Vec<u8>, q: Query) {
        if q.id != self.id {
            if let Some(unknown) = self.table.on_query(
                now,
                NodeInfo {
                    id: q.id,
                    addr: from,
                },
            ) {
                // Verify before inserting: a querier enters the table only once it has answered a ping.
                if self.verifying.len() < MAX_VERIFYING && self.verifying.insert(unknown.addr) {
                    self.ping(now, unknown);
                }
            }
        }
        let k = self.config.k;
        let mut r = Response {
            id: self.id,
            ..Response::default()
        };
        match q.method {
            Method::Ping => {}
            Method::FindNode { target } => r.nodes = self.table.closest(now, &target, k),
            Method::GetPeers { info_hash } => {
                r.token = Some(self.tokens.token_for(IpAddr::V4(*from.ip())).to_vec());
                r.values = self
                    .store
                    .get(now, &info_hash, self.config.max_values, &mut self.rng);
                r.nodes = self.table.closest(now, &crate::dht::NodeId(info_hash.0), k);
            }
            Method::AnnouncePeer {
                info_hash,
                port,
                implied_port,
                token,
            } => {
                if !self.tokens.check(IpAddr::V4(*from.ip()), &token) {
                    let body = Body::Error {
                        code: ERR_PROTOCOL,
                        message: "bad token".into(),
                    };
                    return self.reply_error(from, Message { tid, body });
                }
                let port = if implied_port { from.port() } else { port };
                if self
                    .store
                    .insert(now, info_hash, SocketAddrV4::new(*from.ip(), port))
                {
                    self.stats.announces_stored += 1;
                }
            }
        }
        self.send(
            from,
            &Message {
                tid,
                body: Body::Response(r),
            },
        );
    }

    fn take_tx(&mut self, from: SocketAddrV4, tid: &[u8]) -> Option<super::Tx> {
        let tid = u32::from_be_bytes(tid.try_into().ok()?);
        if self.transactions.get(&tid)?.to != from {
            return None; // right id from the wrong address: ignore (spoofing or confusion)
        }
        self.transactions.remove(&tid)
    }

    fn on_response(&mut self, now: Instant, from: SocketAddrV4, tid: &[u8], r: Response) {
        let Some(tx) = self.take_tx(from, tid) else {
            return;
        };
        self.record_rtt(now.saturating_duration_since(tx.sent));
        self.verifying.remove(&from);
        if r.id != self.id {
            if let Some(stale) = self.table.on_response(
                now,
                NodeInfo {
                    id: r.id,
                    addr: from,
                },
            ) {
                self.ping(now, stale);
            }
        }
        let TxKind::Lookup(lid) = tx.kind else { return };
        let own = self.id;
        if !self.lookups.contains_key(&lid) {
            return;
        }
        let nodes: Vec<NodeInfo> = r.nodes.into_iter().filter(|n| n.id != own).collect();
        // Nodes we hear about go into the table once they answer a ping, where the table has room for them.
        for n in &nodes {
            if self.verifying.len() < MAX_VERIFYING
                && self.table.wants(now, n)
                && self.verifying.insert(n.addr)
            {
                self.ping(now, *n);
            }
        }
        let Some(st) = self.lookups.get_mut(&lid) else {
            return;
        };
        st.lookup.on_success(from, &nodes);
        if let Purpose::GetPeers {
            info_hash, seen, ..
        } = &mut st.purpose
        {
            if let Some(token) = r.token {
                st.tokens.insert(from, token);
            }
            let fresh: Vec<SocketAddrV4> = r
                .values
                .into_iter()
                .filter(|p| seen.len() < 10_000 && seen.insert(*p))
                .collect();
            if !fresh.is_empty() {
                self.events.push_back(Event::Peers {
                    lookup: lid,
                    info_hash: *info_hash,
                    peers: fresh,
                });
            }
        }
        self.drive_lookup(now, lid);
    }

    fn on_error(&mut self, now: Instant, from: SocketAddrV4, tid: &[u8]) {
        let Some(tx) = self.take_tx(from, tid) else {
            return;
        };
        self.verifying.remove(&from);
        if let TxKind::Lookup(lid) = tx.kind {
            if let Some(st) = self.lookups.get_mut(&lid) {
                st.lookup.on_failure(from);
                self.drive_lookup(now, lid);
            }
        }
    }
}

//! The sans-IO DHT `Node` under a hostile network: a sequence of operations (raw datagrams from many
//! addresses, well-formed queries, answers to the node's own outstanding queries carrying fuzzed nodes, peers
//! and tokens, announces with right or wrong tokens, time passing, lookups started) never panics; everything
//! the node sends is a valid KRPC datagram within `MAX_PACKET`; its state stays within its configured caps.
#![no_main]
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use qswarm::dht::krpc::{Body, Message, Method, NodeInfo, Query, Response, MAX_PACKET};
use qswarm::dht::{Config, Node, NodeId};
use qswarm::metainfo::InfoHash;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

#[derive(Arbitrary, Debug)]
enum Op {
    /// Raw bytes from a source.
    Datagram {
        from: u8,
        bytes: Vec<u8>,
    },
    /// A well-formed query.
    Query {
        from: u8,
        id: u8,
        q: Q,
        tid: u16,
    },
    /// An answer to one of the node's outstanding queries (matched by tid and address).
    Reply {
        pick: u8,
        id: u8,
        nodes: Vec<(u8, u8)>,
        values: Vec<(u8, u16)>,
        token: Option<Vec<u8>>,
        error: bool,
    },
    /// An answer with the right tid from the wrong address, or a wrong tid.
    Spoof {
        pick: u8,
        from: u8,
    },
    Advance {
        millis: u16,
    },
    GetPeers {
        ih: u8,
    },
    Announce {
        ih: u8,
        port: u16,
    },
    Bootstrap {
        from: u8,
    },
}

#[derive(Arbitrary, Debug)]
enum Q {
    Ping,
    FindNode {
        target: u8,
    },
    GetPeers {
        ih: u8,
    },
    /// `right_token`: use the token the node last gave this IP.
    Announce {
        ih: u8,
        port: u16,
        implied: bool,
        right_token: bool,
        token: Vec<u8>,
    },
}

/// Few distinct addresses so that sources repeat: 10.0.0.x (public-like rules) and 127.0.0.1:port (loopback).
fn addr(b: u8) -> SocketAddrV4 {
    if b & 0x80 == 0 {
        SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, b & 0x1f), 6881)
    } else {
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7000 + u16::from(b & 0x1f))
    }
}

fn id_of(b: u8) -> NodeId {
    let mut id = [b; 20];
    id[19] = b.wrapping_mul(31);
    NodeId(id)
}

fn ih(b: u8) -> InfoHash {
    InfoHash([b ^ 0x5a; 20])
}

static EPOCH: OnceLock<Instant> = OnceLock::new();

fuzz_target!(|ops: Vec<Op>| {
    let mut now = *EPOCH.get_or_init(Instant::now);
    let config = Config::default();
    let mut node = Node::new(
        NodeId([0x42; 20]),
        config.clone(),
        StdRng::seed_from_u64(7),
        now,
    );
    // The node's outstanding queries (to, tid) and the last token it gave each IP.
    let mut queries: Vec<(SocketAddrV4, Vec<u8>)> = Vec::new();
    let mut tokens: Vec<(Ipv4Addr, Vec<u8>)> = Vec::new();
    let mut tid_seq = 0u16;
    for op in ops.into_iter().take(256) {
        match op {
            Op::Datagram { from, bytes } => node.handle_datagram(now, addr(from).into(), &bytes),
            Op::Query { from, id, q, tid } => {
                let from = addr(from);
                let method = match q {
                    Q::Ping => Method::Ping,
                    Q::FindNode { target } => Method::FindNode {
                        target: id_of(target),
                    },
                    Q::GetPeers { ih: h } => Method::GetPeers { info_hash: ih(h) },
                    Q::Announce {
                        ih: h,
                        port,
                        implied,
                        right_token,
                        token,
                    } => {
                        let token = match tokens.iter().rev().find(|(ip, _)| ip == from.ip()) {
                            Some((_, t)) if right_token => t.clone(),
                            _ => token,
                        };
                        Method::AnnouncePeer {
                            info_hash: ih(h),
                            port,
                            implied_port: implied,
                            token,
                        }
                    }
                };
                let q = Message {
                    tid: tid.to_be_bytes().to_vec(),
                    body: Body::Query(Query {
                        id: id_of(id),
                        method,
                    }),
                };
                node.handle_datagram(now, from.into(), &q.encode());
            }
            Op::Reply {
                pick,
                id,
                nodes,
                values,
                token,
                error,
            } => {
                if queries.is_empty() {
                    continue;
                }
                let (to, tid) = queries.remove(usize::from(pick) % queries.len());
                let body = if error {
                    Body::Error {
                        code: 201,
                        message: "no".into(),
                    }
                } else {
                    Body::Response(Response {
                        id: id_of(id),
                        nodes: nodes
                            .iter()
                            .take(16)
                            .map(|&(i, a)| NodeInfo {
                                id: id_of(i),
                                addr: addr(a),
                            })
                            .collect(),
                        values: values
                            .iter()
                            .take(60)
                            .map(|&(a, p)| SocketAddrV4::new(*addr(a).ip(), p))
                            .collect(),
                        token: token.map(|t| t.into_iter().take(40).collect()),
                    })
                };
                node.handle_datagram(now, to.into(), &Message { tid, body }.encode());
            }
            Op::Spoof { pick, from } => {
                tid_seq = tid_seq.wrapping_add(1);
                let (tid, wrong) = match queries.get(usize::from(pick) % queries.len().max(1)) {
                    Some((_, tid)) => (tid.clone(), addr(from)),
                    None => (tid_seq.to_be_bytes().to_vec(), addr(from)),
                };
                let body = Body::Response(Response {
                    id: id_of(from),
                    ..Response::default()
                });
                node.handle_datagram(now, wrong.into(), &Message { tid, body }.encode());
            }
            Op::Advance { millis } => {
                now += Duration::from_millis(u64::from(millis) * 8);
                if node.poll_timeout().is_some_and(|t| t <= now) {
                    node.handle_timeout(now);
                }
            }
            Op::GetPeers { ih: h } => {
                node.get_peers(now, ih(h));
            }
            Op::Announce { ih: h, port } => {
                node.announce(now, ih(h), port.max(1));
            }
            Op::Bootstrap { from } => {
                node.bootstrap(now, &[SocketAddr::V4(addr(from))]);
            }
        }
        while let Some((to, bytes)) = node.poll_transmit() {
            assert!(bytes.len() <= MAX_PACKET, "sent {} bytes", bytes.len());
            let SocketAddr::V4(to) = to else {
                panic!("sent to IPv6 {to}")
            };
            let msg =
                Message::decode(&bytes).unwrap_or_else(|e| panic!("node sent invalid KRPC: {e}"));
            match msg.body {
                Body::Query(_) => queries.push((to, msg.tid)),
                Body::Response(r) => {
                    if let Some(t) = r.token {
                        tokens.push((*to.ip(), t));
                    }
                }
                Body::Error { .. } => {}
            }
        }
        while node.poll_event().is_some() {}
        assert!(node.outstanding() <= config.max_transactions);
        assert!(node.active_lookups() <= config.max_lookups);
        assert!(node.store().total_peers() <= config.store.total_peers);
        assert!(node.store().infohashes() <= config.store.infohashes);
        assert!(node.table().len() <= 160 * config.k);
        assert!(node.poll_timeout().is_some());
        queries.truncate(4096);
        tokens.truncate(4096);
    }
});

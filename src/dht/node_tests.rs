//! Tests of `Node` (`node.rs`, `node_incoming.rs`): the four queries on the wire, errors 203/204, tokens,
//! hostile input and floods, and a small network that announces and finds peers.
use super::*;
use crate::dht::krpc::{Response, ERR_METHOD, ERR_PROTOCOL};
use rand::SeedableRng;

fn node(seed: u64, now: Instant) -> Node {
    let mut rng = StdRng::seed_from_u64(seed);
    let id = NodeId::random(&mut rng);
    Node::new(id, Config::default(), rng, now)
}

fn addr(i: u32) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(
        std::net::Ipv4Addr::from(0x0a00_0000 + i),
        6881,
    ))
}

fn query(tid: &[u8], id: NodeId, method: Method) -> Vec<u8> {
    Message {
        tid: tid.to_vec(),
        body: Body::Query(Query { id, method }),
    }
    .encode()
}

/// Send `bytes` to `n` and return the single reply it sends back (if any).
fn ask(n: &mut Node, now: Instant, from: SocketAddr, bytes: &[u8]) -> Option<Message> {
    n.handle_datagram(now, from, bytes);
    let mut reply = None;
    while let Some((to, b)) = n.poll_transmit() {
        if to == from && reply.is_none() {
            let m = Message::decode(&b).expect("we send valid KRPC");
            if !matches!(m.body, Body::Query(_)) {
                reply = Some(m);
            }
        }
    }
    reply
}

fn response(m: Option<Message>) -> Response {
    match m.map(|m| m.body) {
        Some(Body::Response(r)) => r,
        other => panic!("expected a response, got {other:?}"),
    }
}

fn error_code(m: Option<Message>) -> i64 {
    match m.map(|m| m.body) {
        Some(Body::Error { code, .. }) => code,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn answers_all_four_queries_and_checks_tokens() {
    let t0 = crate::sim::dht::epoch();
    let mut n = node(1, t0);
    let me = NodeId([9; 20]);
    let ih = InfoHash([5; 20]);
    let r = response(ask(&mut n, t0, addr(1), &query(b"p1", me, Method::Ping)));
    assert_eq!(r.id, n.id());
    let r = response(ask(
        &mut n,
        t0,
        addr(1),
        &query(b"f1", me, Method::FindNode { target: me }),
    ));
    assert!(r.values.is_empty());
    // get_peers gives a token; announcing with it (implied_port) stores our source port.
    let r = response(ask(
        &mut n,
        t0,
        addr(1),
        &query(b"g1", me, Method::GetPeers { info_hash: ih }),
    ));
    let token = r.token.expect("get_peers returns a token");
    assert!(r.values.is_empty());
    let ann = |token: Vec<u8>, implied_port| Method::AnnouncePeer {
        info_hash: ih,
        port: 4000,
        implied_port,
        token,
    };
    response(ask(
        &mut n,
        t0,
        addr(1),
        &query(b"a1", me, ann(token.clone(), true)),
    ));
    let r = response(ask(
        &mut n,
        t0,
        addr(2),
        &query(b"g2", me, Method::GetPeers { info_hash: ih }),
    ));
    assert_eq!(
        r.values,
        vec![SocketAddrV4::new(
            std::net::Ipv4Addr::from(0x0a00_0001),
            6881
        )]
    );
    // The same token from another IP, a garbage token, and a token two rotations old: 203.
    assert_eq!(
        error_code(ask(
            &mut n,
            t0,
            addr(3),
            &query(b"a2", me, ann(token.clone(), false))
        )),
        ERR_PROTOCOL
    );
    assert_eq!(
        error_code(ask(
            &mut n,
            t0,
            addr(1),
            &query(b"a3", me, ann(b"nope".to_vec(), false))
        )),
        ERR_PROTOCOL
    );
    let later = t0 + Duration::from_secs(601);
    n.handle_timeout(t0 + Duration::from_secs(301));
    response(ask(
        &mut n,
        t0 + Duration::from_secs(302),
        addr(1),
        &query(b"a4", me, ann(token.clone(), false)),
    ));
    n.handle_timeout(later);
    assert_eq!(
        error_code(ask(
            &mut n,
            later,
            addr(1),
            &query(b"a5", me, ann(token, false))
        )),
        ERR_PROTOCOL
    );
}

#[test]
fn hostile_input_is_answered_or_dropped() {
    let t0 = crate::sim::dht::epoch();
    let mut n = node(2, t0);
    let unknown = b"d1:ad2:id20:abcdefghij0123456789e1:q4:vote1:t2:xy1:y1:qe";
    assert_eq!(error_code(ask(&mut n, t0, addr(1), unknown)), ERR_METHOD);
    let bad_type = b"d1:ad2:id20:abcdefghij01234567896:targeti3ee1:q9:find_node1:t2:xy1:y1:qe";
    assert_eq!(error_code(ask(&mut n, t0, addr(1), bad_type)), ERR_PROTOCOL);
    for junk in [
        &b""[..],
        b"garbage",
        b"d1:t2:xy1:y1:re",
        b"li1ei2ee",
        &[b'd'; 3000],
    ] {
        assert!(ask(&mut n, t0, addr(1), junk).is_none());
    }
    // An unsolicited response or error never gets an answer.
    let resp = Message {
        tid: b"zz".to_vec(),
        body: Body::Response(Response {
            id: NodeId([1; 20]),
            ..Default::default()
        }),
    };
    assert!(ask(&mut n, t0, addr(1), &resp.encode()).is_none());
}

#[test]
fn flood_from_one_ip_is_cut_and_recovers() {
    let t0 = crate::sim::dht::epoch();
    let mut n = node(3, t0);
    let ping = query(b"pp", NodeId([9; 20]), Method::Ping);
    let answered = (0..5_000)
        .filter(|_| ask(&mut n, t0, addr(1), &ping).is_some())
        .count();
    assert!(
        answered <= 201,
        "answered {answered} of a 5000-packet burst"
    );
    assert!(n.stats().dropped_rate >= 4_000);
    assert!(
        ask(&mut n, t0, addr(2), &ping).is_some(),
        "other sources unaffected"
    );
    assert!(
        ask(&mut n, t0 + Duration::from_secs(2), addr(1), &ping).is_some(),
        "recovers within seconds"
    );
    assert!(n.outstanding() <= 256, "verification pings are capped");
}

#[test]
fn state_round_trips() {
    let nodes = vec![NodeInfo {
        id: NodeId([1; 20]),
        addr: SocketAddrV4::new([127, 0, 0, 1].into(), 5),
    }];
    let bytes = encode_state(NodeId([2; 20]), &nodes);
    assert_eq!(decode_state(&bytes).unwrap(), (NodeId([2; 20]), nodes));
    assert!(decode_state(b"garbage").is_err());
    assert!(decode_state(b"d2:id3:abce").is_err());
}

/// A tiny instant-delivery network: every node bootstraps from node 0, one announces, another finds it.
#[test]
fn small_network_announces_and_finds() {
    let t0 = crate::sim::dht::epoch();
    let mut nodes: Vec<Node> = (0..40).map(|i| node(100 + i, t0)).collect();
    let index = |a: SocketAddr| match a {
        SocketAddr::V4(v) => (u32::from(*v.ip()) - 0x0a00_0000) as usize,
        _ => unreachable!(),
    };
    let mut now = t0;
    let mut events: Vec<(usize, Event)> = Vec::new();
    let pump = |nodes: &mut Vec<Node>, now: Instant, events: &mut Vec<(usize, Event)>| {
        for _ in 0..1000 {
            let mut moved = false;
            for i in 0..nodes.len() {
                while let Some((to, bytes)) = nodes[i].poll_transmit() {
                    moved = true;
                    nodes[index(to)].handle_datagram(now, addr(i as u32), &bytes);
                }
                while let Some(e) = nodes[i].poll_event() {
                    events.push((i, e));
                }
            }
            if !moved {
                return;
            }
        }
    };
    for i in 1..nodes.len() {
        nodes[i].bootstrap(now, &[addr(0)]);
        pump(&mut nodes, now, &mut events);
    }
    // Let refreshes and verification pings settle.
    now += Duration::from_secs(10);
    for n in nodes.iter_mut() {
        n.handle_timeout(now);
    }
    pump(&mut nodes, now, &mut events);
    assert!(
        nodes.iter().all(|n| n.table().len() >= 8),
        "every node knows at least k others"
    );
    let ih = InfoHash([0x42; 20]);
    nodes[7].announce(now, ih, 5555);
    pump(&mut nodes, now, &mut events);
    assert!(events
        .iter()
        .any(|(i, e)| *i == 7 && matches!(e, Event::Announced { nodes: 8, .. })));
    let lid = nodes[23].get_peers(now, ih).unwrap();
    pump(&mut nodes, now, &mut events);
    let want = SocketAddrV4::new(std::net::Ipv4Addr::from(0x0a00_0007), 5555);
    assert!(events.iter().any(|(i, e)| *i == 23
        && matches!(e, Event::Peers { lookup, peers, .. } if *lookup == lid && peers.contains(&want))));
    assert!(events.iter().any(|(i, e)| *i == 23
        && matches!(e, Event::LookupDone { lookup, closest: 8, .. } if *lookup == lid)));
    // Re-announce: 15 minutes later node 7's maintenance announces again, by itself.
    events.clear();
    let later = now + Config::default().reannounce;
    for n in nodes.iter_mut() {
        n.handle_timeout(later);
    }
    pump(&mut nodes, later, &mut events);
    assert!(events.iter().any(|(i, e)| *i == 7
        && matches!(
            e,
            Event::Announced {
                nodes: 8,
                port: 5555,
                ..
            }
        )));
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn valid_query() -> impl Strategy<Value = Vec<u8>> {
        (
            any::<[u8; 20]>(),
            any::<[u8; 20]>(),
            0u8..4,
            any::<u16>(),
            any::<bool>(),
        )
            .prop_map(|(id, h, m, port, imp)| {
                let method = match m {
                    0 => Method::Ping,
                    1 => Method::FindNode { target: NodeId(h) },
                    2 => Method::GetPeers {
                        info_hash: InfoHash(h),
                    },
                    _ => Method::AnnouncePeer {
                        info_hash: InfoHash(h),
                        port: port.max(1),
                        implied_port: imp,
                        token: id[..8].to_vec(),
                    },
                };
                query(b"tt", NodeId(id), method)
            })
    }

    proptest! {
        /// Random and mutated datagrams from many sources: no panic, every reply is valid KRPC within the size
        /// limit, and state stays bounded.
        #[test]
        fn hostile_datagrams_never_panic(
            packets in proptest::collection::vec(
                (0u32..50, prop_oneof![proptest::collection::vec(any::<u8>(), 0..300), valid_query()], any::<usize>(), any::<u8>()),
                1..200),
        ) {
            let t0 = crate::sim::dht::epoch();
            let mut n = node(9, t0);
            for (i, (src, mut bytes, pos, byte)) in packets.into_iter().enumerate() {
                if !bytes.is_empty() && i % 2 == 0 {
                    let p = pos % bytes.len();
                    bytes[p] = byte;
                }
                let now = t0 + Duration::from_millis(i as u64 * 7);
                n.handle_datagram(now, addr(src), &bytes);
                n.handle_timeout(now);
                while let Some((_, out)) = n.poll_transmit() {
                    prop_assert!(out.len() <= crate::dht::MAX_PACKET);
                    prop_assert!(Message::decode(&out).is_ok());
                }
                prop_assert!(n.outstanding() <= 256 + 1);
            }
        }
    }
}

#[test]
fn verification_state_is_released_when_caps_are_hit() {
    let t0 = crate::sim::dht::epoch();
    let mut rng = StdRng::seed_from_u64(5);
    let config = Config {
        max_transactions: 4,
        ..Config::default()
    };
    let mut n = Node::new(NodeId::random(&mut rng), config, rng, t0);
    for i in 0..300u32 {
        let mut id = [0u8; 20];
        id[..4].copy_from_slice(&i.to_be_bytes());
        n.handle_datagram(t0, addr(i), &query(b"pp", NodeId(id), Method::Ping));
    }
    assert!(n.outstanding() <= 4);
    assert!(
        n.verifying.len() <= 4,
        "addresses whose ping was never sent are not kept"
    );
    n.handle_timeout(t0 + Duration::from_secs(10));
    assert_eq!((n.outstanding(), n.verifying.len()), (0, 0));
}

#[test]
fn a_lost_announce_is_sent_once_more_and_only_once() {
    let t0 = crate::sim::dht::epoch();
    let mut n = node(9, t0);
    let b_id = NodeId([7; 20]);
    let SocketAddr::V4(b) = addr(2) else {
        unreachable!()
    };
    n.import_nodes(t0, &[NodeInfo { id: b_id, addr: b }]);
    let ih = InfoHash([7; 20]);
    n.announce(t0, ih, 7000);
    // Everything `n` sends to b, as decoded queries with their transaction ids.
    let sent_to_b = |n: &mut Node| {
        let mut v = Vec::new();
        while let Some((to, bytes)) = n.poll_transmit() {
            if to == SocketAddr::V4(b) {
                let m = Message::decode(&bytes).expect("we send valid KRPC");
                if let Body::Query(q) = m.body {
                    v.push((m.tid, q.method));
                }
            }
        }
        v
    };
    let q = sent_to_b(&mut n);
    let tid = q
        .iter()
        .find(|(_, m)| matches!(m, Method::GetPeers { .. }))
        .expect("get_peers to the only node")
        .0
        .clone();
    let reply = Message {
        tid,
        body: Body::Response(Response {
            id: b_id,
            nodes: vec![],
            values: vec![],
            token: Some(b"tok".to_vec()),
        }),
    };
    let t1 = t0 + Duration::from_millis(100);
    n.handle_datagram(t1, SocketAddr::V4(b), &reply.encode());
    let is_announce = |m: &Method| matches!(m, Method::AnnouncePeer { token, port: 7000, .. } if token.as_slice() == b"tok");
    let first = sent_to_b(&mut n);
    assert_eq!(first.iter().filter(|(_, m)| is_announce(m)).count(), 1);
    // No answer: after the hard timeout (at most 5 s) it goes out again, once.
    n.handle_timeout(t1 + Duration::from_secs(6));
    let second = sent_to_b(&mut n);
    assert_eq!(second.iter().filter(|(_, m)| is_announce(m)).count(), 1);
    assert_eq!(n.stats().announce_retries, 1);
    n.handle_timeout(t1 + Duration::from_secs(12));
    let third = sent_to_b(&mut n);
    assert_eq!(third.iter().filter(|(_, m)| is_announce(m)).count(), 0);
    assert_eq!(n.stats().announce_retries, 1);
}

//! Tests of the KRPC codec (`krpc.rs`): BEP 5 examples byte for byte, round trips, garbage never panics.
use super::*;
use proptest::prelude::*;

fn node_info() -> impl Strategy<Value = NodeInfo> {
    (any::<[u8; 20]>(), any::<[u8; 4]>(), 1u16..).prop_map(|(id, ip, port)| NodeInfo {
        id: NodeId(id),
        addr: SocketAddrV4::new(ip.into(), port),
    })
}

fn message() -> impl Strategy<Value = Message> {
    let id = any::<[u8; 20]>().prop_map(NodeId);
    let method = prop_oneof![
        Just(Method::Ping),
        any::<[u8; 20]>().prop_map(|t| Method::FindNode { target: NodeId(t) }),
        any::<[u8; 20]>().prop_map(|h| Method::GetPeers {
            info_hash: InfoHash(h)
        }),
        (
            any::<[u8; 20]>(),
            1u16..,
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..20)
        )
            .prop_map(|(h, port, implied_port, token)| Method::AnnouncePeer {
                info_hash: InfoHash(h),
                port,
                implied_port,
                token
            }),
    ];
    let peer = (any::<[u8; 4]>(), 1u16..).prop_map(|(ip, port)| SocketAddrV4::new(ip.into(), port));
    let body = prop_oneof![
        (id.clone(), method).prop_map(|(id, method)| Body::Query(Query { id, method })),
        (
            id,
            proptest::collection::vec(node_info(), 0..8),
            proptest::collection::vec(peer, 0..20),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20))
        )
            .prop_map(|(id, nodes, values, token)| Body::Response(Response {
                id,
                nodes,
                values,
                token
            })),
        (201i64..205, "[a-z ]{0,20}").prop_map(|(code, message)| Body::Error { code, message }),
    ];
    (
        proptest::collection::vec(any::<u8>(), 0..=MAX_TID_LEN),
        body,
    )
        .prop_map(|(tid, body)| Message { tid, body })
}

proptest! {
    #[test]
    fn round_trips(m in message()) {
        prop_assert_eq!(Message::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn encoding_is_canonical_bencode(m in message()) {
        let bytes = m.encode();
        let reencoded = crate::metainfo::bencode::decode(&bytes).unwrap().to_owned_value().encode();
        prop_assert_eq!(reencoded, bytes, "keys sorted, nothing else");
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = Message::decode(&bytes);
    }

    #[test]
    fn mutated_messages_never_panic(m in message(), pos in any::<usize>(), byte in any::<u8>()) {
        let mut bytes = m.encode();
        let i = pos % bytes.len();
        bytes[i] = byte;
        if let Err(e) = Message::decode(&bytes) { let _ = e.reply(); }
    }
}

#[test]
fn bep5_examples_decode() {
    let ping = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe";
    let m = Message::decode(ping).unwrap();
    assert_eq!(m.tid, b"aa");
    assert_eq!(
        m.body,
        Body::Query(Query {
            id: NodeId(*b"abcdefghij0123456789"),
            method: Method::Ping
        })
    );
    let ann = b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz1234564:porti6881e5:token8:aoeusnthe1:q13:announce_peer1:t2:aa1:y1:qe";
    match Message::decode(ann).unwrap().body {
        Body::Query(Query {
            method:
                Method::AnnouncePeer {
                    port,
                    token,
                    implied_port,
                    ..
                },
            ..
        }) => {
            assert_eq!(
                (port, token.as_slice(), implied_port),
                (6881, &b"aoeusnth"[..], false)
            );
        }
        other => panic!("{other:?}"),
    }
    let resp = b"d1:rd2:id20:mnopqrstuvwxyz1234565:token8:aoeusnth6:valuesl6:axje.u6:idhtnmee1:t2:aa1:y1:re";
    match Message::decode(resp).unwrap().body {
        Body::Response(r) => {
            assert_eq!(r.values.len(), 2);
            assert_eq!(r.token.as_deref(), Some(&b"aoeusnth"[..]));
        }
        other => panic!("{other:?}"),
    }
    let err = b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee";
    assert_eq!(
        Message::decode(err).unwrap().body,
        Body::Error {
            code: 201,
            message: "A Generic Error Ocurred".into()
        }
    );
    // Our encoding of a ping is BEP 5's byte for byte, plus our `v` key.
    let ours = Message {
        tid: b"aa".to_vec(),
        body: Body::Query(Query {
            id: NodeId(*b"abcdefghij0123456789"),
            method: Method::Ping,
        }),
    };
    assert_eq!(
        ours.encode(),
        b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:v4:QS\x00\x011:y1:qe".to_vec()
    );
}

#[test]
fn bad_queries_get_203_and_unknown_methods_204() {
    let no_id = b"d1:ad6:target20:abcdefghij0123456789e1:q9:find_node1:t2:xy1:y1:qe";
    let e = Message::decode(no_id).unwrap_err();
    assert!(matches!(
        e.reply().unwrap().body,
        Body::Error { code: 203, .. }
    ));
    let unknown = b"d1:ad2:id20:abcdefghij0123456789e1:q4:vote1:t2:xy1:y1:qe";
    let reply = Message::decode(unknown).unwrap_err().reply().unwrap();
    assert_eq!(reply.tid, b"xy");
    assert!(matches!(reply.body, Body::Error { code: 204, .. }));
    assert!(Message::decode(b"de").unwrap_err().reply().is_none());
    assert!(matches!(
        Message::decode(&[b'x'; 2000]),
        Err(DecodeError::TooLarge { .. })
    ));
    // Wrong types: `id` an integer.
    let wrong = b"d1:ad2:idi5ee1:q4:ping1:t2:xy1:y1:qe";
    assert!(matches!(
        Message::decode(wrong).unwrap_err().reply().unwrap().body,
        Body::Error { code: 203, .. }
    ));
}

//! Integration tests over real QUIC on 127.0.0.1: handshakes with the right and the wrong infohash, messages
//! through the driver, connection limits, metadata fetched from an honest peer and a liar (the liar is dropped),
//! and PEX spreading a third peer's address.

mod support;

use bytes::Bytes;
use qswarm::metainfo::InfoHash;
use qswarm::net::{NetError, QuicConfig, Transport};
use qswarm::wire::extended::{ExtHandshake, UT_METADATA};
use qswarm::wire::fetcher::{FetchEvent, MetadataFetcher};
use qswarm::wire::metadata::MetadataMsg;
use qswarm::wire::{BlockRef, Handshake, Limits, Message, PeerId};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::{quiet_config, sample_info, Node, NodeEvent};

const IH: InfoHash = InfoHash([0xab; 20]);

#[tokio::test]
async fn handshake_right_and_wrong_infohash() {
    let mut a = Node::start(IH, 1, None, false, quiet_config());
    let b = Transport::bind("127.0.0.1:0".parse().unwrap(), quiet_config()).unwrap();

    // Right infohash: handshakes cross, messages flow both ways.
    let mut conn = b
        .connect(
            a.addr,
            Handshake::new(IH, PeerId([2; 20])),
            Limits::default(),
        )
        .await
        .unwrap();
    assert_eq!(conn.theirs.peer_id, PeerId([1; 20]));
    assert_eq!(conn.theirs.info_hash, IH);
    assert!(conn.theirs.supports_extended() && conn.theirs.supports_fast());
    let ext = ExtHandshake::ours(None, None, 500);
    conn.tx
        .send(Message::Extended {
            id: 0,
            payload: Bytes::from(ext.encode()),
        })
        .await
        .unwrap();
    let NodeEvent::Ready { remote, tx, .. } = a.next(5).await else {
        panic!("expected Ready")
    };
    assert_eq!(remote, b.local_addr().unwrap());
    // The node's BEP 10 handshake arrives first, then what we send through its driver comes back in order.
    let first = tokio::time::timeout(Duration::from_secs(5), conn.rx.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(first, Message::Extended { id: 0, .. }));
    let piece = Message::Piece {
        piece: 7,
        offset: 16384,
        data: Bytes::from(vec![9u8; 16384]),
    };
    for m in [
        Message::Unchoke,
        piece.clone(),
        Message::Request(BlockRef {
            piece: 1,
            offset: 0,
            length: 16384,
        }),
    ] {
        tx.send(m).await.unwrap();
    }
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(
            tokio::time::timeout(Duration::from_secs(5), conn.rx.recv())
                .await
                .unwrap()
                .unwrap()
                .unwrap(),
        );
    }
    assert_eq!(got[0], Message::Unchoke);
    assert_eq!(got[1], piece);

    // Wrong infohash: the connecting side gets an error and the serving side reports an unknown torrent.
    let other = InfoHash([0xcd; 20]);
    let err = b
        .connect(
            a.addr,
            Handshake::new(other, PeerId([2; 20])),
            Limits::default(),
        )
        .await
        .unwrap_err();
    assert!(!matches!(err, NetError::HandshakeTimeout), "{err}");
    loop {
        match a.next(5).await {
            NodeEvent::HandshakeFailed { error, .. } => {
                assert!(error.contains(&other.to_hex()), "{error}");
                break;
            }
            NodeEvent::Closed { .. } | NodeEvent::Ready { .. } => continue,
            e => panic!("unexpected {e:?}"),
        }
    }
}

#[tokio::test]
async fn per_torrent_connection_limit() {
    let limited = QuicConfig {
        max_per_torrent: 1,
        ..quiet_config()
    };
    let mut a = Node::start(IH, 1, None, false, limited);
    let b = Node::start(IH, 2, None, false, quiet_config());
    let c = Node::start(IH, 3, None, false, quiet_config());
    b.connect(a.addr, None).await.unwrap();
    assert!(matches!(a.next(5).await, NodeEvent::Ready { .. }));
    assert!(c.connect(a.addr, None).await.is_err());
    assert!(matches!(a.next(5).await, NodeEvent::HandshakeFailed { .. }));
    assert_eq!(a.transport.limits().counts(&IH), (1, 1));
}

#[tokio::test]
async fn metadata_from_honest_peer_and_liar() {
    let info = sample_info(2500); // ~50 KB: 4 blocks
    let ih = InfoHash::of(&info);
    let honest = Node::start(ih, 1, Some(info.clone()), false, quiet_config());
    let mut liar = Node::start(ih, 2, Some(info.clone()), true, quiet_config());
    let mut f = Node::start(ih, 3, None, false, quiet_config());
    f.connect(honest.addr, None).await.unwrap();
    f.connect(liar.addr, None).await.unwrap();

    let mut fetcher = MetadataFetcher::new(ih);
    let mut peers = HashMap::new();
    while peers.len() < 2 {
        if let NodeEvent::Ready {
            remote,
            tx,
            conn,
            ext,
        } = f.next(5).await
        {
            fetcher.add_peer(remote, ext.metadata_size.unwrap());
            peers.insert(remote, (tx, conn, ext.id_of(UT_METADATA).unwrap()));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut dropped = Vec::new();
    let got = 'fetch: loop {
        assert!(Instant::now() < deadline, "metadata fetch did not finish");
        while let Some((peer, piece)) = fetcher.poll_request(Instant::now()) {
            let (tx, _, mid) = &peers[&peer];
            let payload = Bytes::from(MetadataMsg::Request { piece }.encode());
            tx.send(Message::Extended { id: *mid, payload })
                .await
                .unwrap();
        }
        while let Some(ev) = fetcher.poll_event() {
            match ev {
                FetchEvent::Drop { peer, .. } => {
                    peers[&peer].1.close(2u32.into(), b"bad metadata");
                    dropped.push(peer);
                }
                FetchEvent::Complete(bytes) => break 'fetch bytes,
            }
        }
        match f.next(10).await {
            NodeEvent::Metadata {
                remote,
                msg:
                    MetadataMsg::Data {
                        piece,
                        total_size,
                        data,
                    },
            } => fetcher.handle_data(&remote, piece, total_size, data),
            NodeEvent::Metadata {
                remote,
                msg: MetadataMsg::Reject { piece },
            } => fetcher.handle_reject(Instant::now(), &remote, piece),
            NodeEvent::Closed { remote, .. } => fetcher.remove_peer(&remote),
            _ => {}
        }
    };
    assert_eq!(got, info);
    assert_eq!(InfoHash::of(&got), ih);
    assert_eq!(dropped, vec![liar.addr], "exactly the liar is dropped");
    // The liar sees its connection closed by the fetcher.
    loop {
        if let NodeEvent::Closed { remote, .. } = liar.next(5).await {
            assert_eq!(remote, f.addr);
            break;
        }
    }
}

#[tokio::test]
async fn pex_spreads_a_third_peer() {
    let mut a = Node::start(IH, 1, None, false, quiet_config());
    let mut b = Node::start(IH, 2, None, false, quiet_config());
    let mut c = Node::start(IH, 3, None, false, quiet_config());
    // A connects to C first...
    a.connect(c.addr, None).await.unwrap();
    assert!(matches!(a.next(5).await, NodeEvent::Ready { .. }));
    // ...then B connects to A, and A tells B about C.
    b.connect(a.addr, None).await.unwrap();
    let learned = loop {
        match b.next(5).await {
            NodeEvent::Pex { remote, added } => {
                assert_eq!(remote, a.addr);
                break added;
            }
            NodeEvent::Ready { .. } => continue,
            e => panic!("unexpected {e:?}"),
        }
    };
    assert_eq!(learned, vec![c.addr]);
    // B can reach C at the learned address.
    b.connect(learned[0], None).await.unwrap();
    loop {
        if let NodeEvent::Ready { remote, .. } = c.next(5).await {
            if remote == b.addr {
                break;
            }
        }
    }
}

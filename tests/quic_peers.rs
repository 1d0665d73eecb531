//! Integration tests over real QUIC on 127.0.0.1: handshakes with the right and the wrong infohash, messages
//! through the driver, connection limits, metadata fetched from an honest peer and a liar (the liar is dropped),
//! and PEX spreading a third peer's address.

mod support;

use bytes::Bytes;
use qswarm::metainfo::InfoHash;
use qswarm::net::{NetError, PeerConn, QuicConfig, Transport};
use qswarm::wire::extended::{ExtHandshake, UT_METADATA};
use qswarm::wire::fetcher::{FetchEvent, MetadataFetcher};
use qswarm::wire::metadata::MetadataMsg;
use qswarm::wire::{BlockRef, Handshake, Limits, Message, PeerId};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::{quiet_config, sample_info, Node, NodeEvent};

const IH: InfoHash = InfoHash([0xab; 20]);

/// One connection from `b` to `a` with the BEP 3 handshake done; (`a`'s side, `b`'s side).
async fn connect_pair(a: &Transport, b: &Transport) -> (PeerConn, PeerConn) {
    let addr = a.local_addr().unwrap();
    let accept = async {
        let inc = a.accept().await.unwrap();
        inc.handshake(
            |h| Some(Handshake::new(h.info_hash, PeerId([1; 20]))),
            Limits::default(),
        )
        .await
        .unwrap()
    };
    let connect = b.connect(addr, Handshake::new(IH, PeerId([2; 20])), Limits::default());
    let (at_a, at_b) = tokio::join!(accept, connect);
    (at_a, at_b.unwrap())
}

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
        data: Bytes::from(vec![9u8; 16384]).into(),
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

#[tokio::test]
async fn piece_streams_carry_pieces_and_refuse_anything_else() {
    let a = Transport::bind("127.0.0.1:0".parse().unwrap(), quiet_config()).unwrap();
    let uni = QuicConfig {
        piece_streams: true,
        ..quiet_config()
    };
    let b = Transport::bind("127.0.0.1:0".parse().unwrap(), uni).unwrap();
    let (mut at_a, at_b) = connect_pair(&a, &b).await;

    // Pieces go on their own streams, control messages on the control stream; all arrive.
    let pieces: Vec<Message> = (0..20u32)
        .map(|i| Message::Piece {
            piece: i,
            offset: 0,
            data: Bytes::from(vec![i as u8; 16384]).into(),
        })
        .collect();
    at_b.tx.send(Message::Interested).await.unwrap();
    for p in &pieces {
        at_b.tx.send(p.clone()).await.unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 21 {
        got.push(
            tokio::time::timeout(Duration::from_secs(5), at_a.rx.recv())
                .await
                .unwrap()
                .unwrap()
                .unwrap(),
        );
    }
    assert!(got.contains(&Message::Interested));
    for p in &pieces {
        assert!(got.contains(p), "missing {p:?}");
    }

    // A uni stream that holds anything but one piece message is a protocol error: the connection closes.
    let mut s = at_b.connection.open_uni().await.unwrap();
    s.write_all(&[0, 0, 0, 1, 0]).await.unwrap();
    s.finish().unwrap();
    let err = loop {
        match tokio::time::timeout(Duration::from_secs(5), at_a.rx.recv())
            .await
            .unwrap()
        {
            Some(Ok(_)) => continue,
            Some(Err(e)) => break e,
            None => panic!("closed without an error"),
        }
    };
    assert!(err.to_string().contains("exactly one piece"), "{err}");
    tokio::time::timeout(Duration::from_secs(5), at_b.connection.closed())
        .await
        .unwrap();
}

/// MTU discovery well past 6500 bytes: quinn batches 10 datagrams of the current MTU into one GSO send, which
/// past ~6500 bytes outgrows an IP datagram; the kernel refused those sends and quinn dropped them silently (the
/// transfer stalled, or black-hole detection pulled the MTU back down). The transport caps the batch: the
/// transfer finishes, still with datagrams above 9000 bytes.
#[tokio::test]
async fn large_mtu_transfer_completes() {
    let big = QuicConfig {
        mtu_upper_bound: 16_000,
        ..quiet_config()
    };
    let a = Transport::bind("127.0.0.1:0".parse().unwrap(), big.clone()).unwrap();
    let b = Transport::bind("127.0.0.1:0".parse().unwrap(), big).unwrap();
    let (mut at_a, at_b) = connect_pair(&a, &b).await;
    // quinn probes the path MTU while the connection is idle.
    tokio::time::sleep(Duration::from_millis(300)).await;

    const BLOCKS: u32 = 512; // 8 MiB
    let tx = at_b.tx.clone();
    tokio::spawn(async move {
        for i in 0..BLOCKS {
            let data = Bytes::from(vec![i as u8; 16384]);
            let msg = Message::Piece {
                piece: i / 16,
                offset: (i % 16) * 16384,
                data: data.into(),
            };
            if tx.send(msg).await.is_err() {
                return;
            }
        }
    });
    let mut got = 0u32;
    while got < BLOCKS {
        let msg = tokio::time::timeout(Duration::from_secs(10), at_a.rx.recv())
            .await
            .expect("transfer stalled")
            .unwrap()
            .unwrap();
        if let Message::Piece {
            piece,
            offset,
            data,
        } = msg
        {
            let i = piece * 16 + offset / 16384;
            assert_eq!(i, got);
            assert_eq!(data.len(), 16384);
            assert!(data.chunks().flat_map(|c| c.iter()).all(|&x| x == i as u8));
            got += 1;
        }
    }
    let mtu = at_b.connection.stats().path.current_mtu;
    assert!(mtu > 9000, "path MTU {mtu}: discovery did not go past 9000");
}

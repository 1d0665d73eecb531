//! The per-peer protocol state (`swarm::peer`): phases, flags and every protocol violation as a typed error.

use bytes::Bytes;
use qswarm::metainfo::InfoHash;
use qswarm::swarm::peer::{Geometry, PeerError, PeerState, Phase, MAX_QUEUED_REQUESTS};
use qswarm::wire::{BlockRef, Handshake, Message, PeerId};

const IH: InfoHash = InfoHash([3; 20]);
/// 10 pieces of 32 KiB, the last one 10 000 bytes.
const GEO: Geometry = Geometry {
    total_length: 9 * 32768 + 10_000,
    piece_length: 32768,
};

fn connected() -> PeerState {
    let mut p = PeerState::new(Handshake::new(IH, PeerId([1; 20])), Some(GEO));
    p.handle_handshake(&Handshake::new(IH, PeerId([2; 20])))
        .unwrap();
    p
}

fn req(piece: u32, offset: u32, length: u32) -> Message {
    Message::Request(BlockRef {
        piece,
        offset,
        length,
    })
}

#[test]
fn phases_and_flags() {
    let mut p = PeerState::new(Handshake::new(IH, PeerId([1; 20])), Some(GEO));
    assert_eq!(p.phase(), Phase::Handshake);
    assert_eq!(
        p.handle_message(&Message::Unchoke),
        Err(PeerError::NotHandshaken)
    );
    p.handle_handshake(&Handshake::new(IH, PeerId([2; 20])))
        .unwrap();
    assert!(p.fast() && p.extended());
    assert_eq!(p.phase(), Phase::BitfieldExchange);
    p.handle_message(&Message::KeepAlive).unwrap();
    assert_eq!(p.phase(), Phase::BitfieldExchange);
    p.handle_message(&Message::Bitfield(Bytes::from_static(&[
        0b1010_0000,
        0b0100_0000,
    ])))
    .unwrap();
    assert_eq!(p.phase(), Phase::Connected);
    assert!(
        p.has_piece(0) && !p.has_piece(1) && p.has_piece(2) && p.has_piece(9) && !p.has_piece(10)
    );
    assert!(p.am_choking && p.peer_choking && !p.am_interested && !p.peer_interested);
    p.handle_message(&Message::Unchoke).unwrap();
    p.handle_message(&Message::Interested).unwrap();
    assert!(!p.peer_choking && p.peer_interested);
    p.handle_message(&Message::Have { piece: 1 }).unwrap();
    assert!(p.has_piece(1));
    assert_eq!(
        p.handle_message(&Message::Have { piece: 10 }),
        Err(PeerError::PieceOutOfRange(10))
    );
}

#[test]
fn wrong_infohash_and_double_handshake() {
    let mut p = PeerState::new(Handshake::new(IH, PeerId([1; 20])), Some(GEO));
    let other = Handshake::new(InfoHash([4; 20]), PeerId([2; 20]));
    assert!(matches!(
        p.handle_handshake(&other),
        Err(PeerError::WrongInfoHash { .. })
    ));
    let mut p = connected();
    assert_eq!(
        p.handle_handshake(&Handshake::new(IH, PeerId([2; 20]))),
        Err(PeerError::DuplicateHandshake)
    );
}

#[test]
fn bitfield_must_come_first_and_fit() {
    let mut p = connected();
    p.handle_message(&Message::Interested).unwrap();
    assert_eq!(
        p.handle_message(&Message::Bitfield(Bytes::from_static(&[0, 0]))),
        Err(PeerError::BitfieldNotFirst)
    );
    let mut p = connected();
    p.handle_message(&Message::HaveNone).unwrap();
    assert_eq!(
        p.handle_message(&Message::HaveAll),
        Err(PeerError::BitfieldNotFirst)
    );
    let mut p = connected();
    // Spare bit set (piece 10 does not exist), and a wrong length.
    assert!(matches!(
        p.handle_message(&Message::Bitfield(Bytes::from_static(&[0, 0x20]))),
        Err(PeerError::BadBitfield { .. })
    ));
    let mut p = connected();
    assert!(matches!(
        p.handle_message(&Message::Bitfield(Bytes::from_static(&[0]))),
        Err(PeerError::BadBitfield { .. })
    ));
}

#[test]
fn requests_while_choked_and_out_of_bounds() {
    let mut p = connected();
    p.handle_message(&Message::HaveNone).unwrap();
    assert!(matches!(
        p.handle_message(&req(0, 0, 16384)),
        Err(PeerError::RequestWhileChoked(_))
    ));
    let mut p = connected();
    p.unchoke();
    p.handle_message(&req(0, 0, 16384)).unwrap();
    p.handle_message(&req(9, 0, 10_000)).unwrap();
    assert_eq!(p.queued_requests(), 2);
    for bad in [
        req(0, 0, 16385),
        req(9, 8192, 16384),
        req(10, 0, 16384),
        req(0, 32768, 1),
        req(0, 0, 0),
    ] {
        assert!(
            matches!(
                p.clone().handle_message(&bad),
                Err(PeerError::RequestOutOfBounds(_))
            ),
            "{bad:?}"
        );
    }
    p.handle_message(&Message::Cancel(BlockRef {
        piece: 0,
        offset: 0,
        length: 16384,
    }))
    .unwrap();
    assert_eq!(
        p.pop_request(),
        Some(BlockRef {
            piece: 9,
            offset: 0,
            length: 10_000
        })
    );
    // After we choke, a request that crossed our choke is rejected (fast extension), not fatal...
    p.handle_message(&req(1, 0, 16384)).unwrap();
    let out = p.choke();
    assert_eq!(
        out,
        vec![
            Message::Choke,
            Message::Reject(BlockRef {
                piece: 1,
                offset: 0,
                length: 16384
            })
        ]
    );
    assert_eq!(
        p.handle_message(&req(2, 0, 16384)),
        Ok(Some(Message::Reject(BlockRef {
            piece: 2,
            offset: 0,
            length: 16384
        })))
    );
    // ...but a peer that keeps requesting while choked is closed.
    let mut res = Ok(None);
    for i in 0..=MAX_QUEUED_REQUESTS {
        res = p.handle_message(&req(i as u32 % 9, 0, 16384));
        if res.is_err() {
            break;
        }
    }
    assert_eq!(res, Err(PeerError::TooManyRequests));
}

#[test]
fn allowed_fast_requests_are_served_while_choked() {
    let mut p = connected();
    p.handle_message(&Message::HaveNone).unwrap();
    assert_eq!(p.allow_fast(4), Some(Message::AllowedFast { piece: 4 }));
    p.handle_message(&req(4, 0, 16384)).unwrap();
    assert_eq!(p.queued_requests(), 1);
}

#[test]
fn more_than_2000_queued_requests_is_an_error() {
    let big = Geometry {
        total_length: 4000 * 16384,
        piece_length: 16384,
    };
    let mut p = PeerState::new(Handshake::new(IH, PeerId([1; 20])), Some(big));
    p.handle_handshake(&Handshake::new(IH, PeerId([2; 20])))
        .unwrap();
    p.unchoke();
    for i in 0..MAX_QUEUED_REQUESTS as u32 {
        p.handle_message(&req(i, 0, 16384)).unwrap();
    }
    assert_eq!(
        p.handle_message(&req(3999, 0, 16384)),
        Err(PeerError::TooManyRequests)
    );
}

#[test]
fn fast_and_extended_need_negotiation() {
    let mut plain = Handshake::new(IH, PeerId([2; 20]));
    plain.reserved = [0; 8];
    let mut p = PeerState::new(Handshake::new(IH, PeerId([1; 20])), Some(GEO));
    p.handle_handshake(&plain).unwrap();
    assert_eq!(
        p.handle_message(&Message::HaveAll),
        Err(PeerError::FastNotNegotiated)
    );
    let ext = Message::Extended {
        id: 0,
        payload: Bytes::from_static(b"de"),
    };
    assert_eq!(
        p.handle_message(&ext),
        Err(PeerError::ExtendedNotNegotiated)
    );
}

#[test]
fn pieces_announced_before_the_metadata_are_checked_later() {
    let mut p = PeerState::new(Handshake::new(IH, PeerId([1; 20])), None);
    p.handle_handshake(&Handshake::new(IH, PeerId([2; 20])))
        .unwrap();
    p.handle_message(&Message::Have { piece: 3 }).unwrap();
    p.handle_message(&Message::Have { piece: 12 }).unwrap();
    assert_eq!(
        p.clone().set_geometry(GEO),
        Err(PeerError::PieceOutOfRange(12))
    );
    let mut q = PeerState::new(Handshake::new(IH, PeerId([1; 20])), None);
    q.handle_handshake(&Handshake::new(IH, PeerId([2; 20])))
        .unwrap();
    q.handle_message(&Message::HaveAll).unwrap();
    q.set_geometry(GEO).unwrap();
    assert!(q.is_seed() && q.has_piece(9));
    let piece = Message::Piece {
        piece: 9,
        offset: 8192,
        data: Bytes::from(vec![0; 16384]).into(),
    };
    assert!(matches!(
        q.handle_message(&piece),
        Err(PeerError::BlockOutOfBounds(_))
    ));
}

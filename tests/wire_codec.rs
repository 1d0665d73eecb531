//! Property tests of the wire codec: every message round-trips through encode/decode (whole and fed in
//! arbitrary pieces), and arbitrary bytes fed to every decoder never panic and never allocate beyond the
//! message limits (checked with a counting allocator).

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use qswarm::metainfo::InfoHash;
use qswarm::wire::codec::{MAX_EXTENDED_MSG, MAX_PIECE_MSG};
use qswarm::wire::extended::ExtHandshake;
use qswarm::wire::metadata::MetadataMsg;
use qswarm::wire::pex::PexMessage;
use qswarm::wire::{
    encode, BlockRef, ChunkDecoder, Decoder, Handshake, Limits, Message, PeerId, BLOCK_SIZE,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;

/// Records the largest single allocation made by the current thread while `TRACK` is on.
struct Counting;
thread_local! {
    static TRACK: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note(l.size());
        unsafe { System.alloc(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        note(new);
        unsafe { System.realloc(p, l, new) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
}
fn note(size: usize) {
    let _ = TRACK.try_with(|t| {
        if t.get() {
            let _ = LARGEST.try_with(|m| m.set(m.get().max(size)));
        }
    });
}
#[global_allocator]
static ALLOC: Counting = Counting;

/// Largest single allocation `f` makes.
fn largest_alloc(f: impl FnOnce()) -> usize {
    LARGEST.with(|m| m.set(0));
    TRACK.with(|t| t.set(true));
    f();
    TRACK.with(|t| t.set(false));
    LARGEST.with(|m| m.get())
}

fn block() -> impl Strategy<Value = BlockRef> {
    (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(piece, offset, length)| BlockRef {
        piece,
        offset,
        length,
    })
}

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        Just(Message::KeepAlive),
        Just(Message::Choke),
        Just(Message::Unchoke),
        Just(Message::Interested),
        Just(Message::NotInterested),
        Just(Message::HaveAll),
        Just(Message::HaveNone),
        any::<u32>().prop_map(|piece| Message::Have { piece }),
        any::<u32>().prop_map(|piece| Message::AllowedFast { piece }),
        bytes(300).prop_map(Message::Bitfield),
        block().prop_map(Message::Request),
        block().prop_map(Message::Cancel),
        block().prop_map(Message::Reject),
        (any::<u32>(), any::<u32>(), bytes(BLOCK_SIZE as usize + 1)).prop_map(
            |(piece, offset, data)| Message::Piece {
                piece,
                offset,
                data: data.into()
            }
        ),
        (any::<u8>(), bytes(2000)).prop_map(|(id, payload)| Message::Extended { id, payload }),
    ]
}

fn addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), 1..=u16::MAX).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
        (any::<[u8; 16]>(), 1..=u16::MAX).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn messages_round_trip(msgs in proptest::collection::vec(message(), 1..8), cut in 1usize..5000) {
        let mut wire = BytesMut::new();
        for m in &msgs {
            encode(m, &mut wire);
        }
        // Fed in pieces of `cut` bytes, the decoder gives back exactly the messages.
        let dec = Decoder::default();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for piece in wire.chunks(cut) {
            buf.extend_from_slice(piece);
            while let Some(m) = dec.decode(&mut buf).unwrap() {
                got.push(m);
            }
        }
        prop_assert_eq!(&got, &msgs);
        prop_assert!(buf.is_empty());
        // The chunk decoder, fed slices of `cut` bytes, gives them too.
        let wire = wire.freeze();
        let mut chunked = ChunkDecoder::new(Limits::default());
        let mut got = Vec::new();
        for at in (0..wire.len()).step_by(cut) {
            chunked.push(&wire.slice(at..(at + cut).min(wire.len())), &mut got).unwrap();
        }
        prop_assert_eq!(got, msgs);
        prop_assert!(chunked.is_idle());
    }

    #[test]
    fn handshake_round_trips(ih in any::<[u8; 20]>(), id in any::<[u8; 20]>(), reserved in any::<[u8; 8]>()) {
        let h = Handshake { reserved, info_hash: InfoHash(ih), peer_id: PeerId(id) };
        prop_assert_eq!(Handshake::decode(&h.encode()).unwrap(), Some(h));
    }

    #[test]
    fn ext_handshake_round_trips(
        m in proptest::collection::btree_map("[a-z_]{1,12}", 1u8.., 0..6),
        size in proptest::option::of(1u32..=16 << 20),
        reqq in proptest::option::of(any::<u32>()),
        v in proptest::option::of("[ -~]{0,20}"),
        p in proptest::option::of(1u16..),
    ) {
        let h = ExtHandshake { m, metadata_size: size, reqq, v, p };
        prop_assert_eq!(ExtHandshake::decode(&h.encode()).unwrap(), h);
    }

    #[test]
    fn metadata_msgs_round_trip(piece in 0u32..1024, total in 1u32..=16 << 20, data in bytes(16385), kind in 0..3) {
        let msg = match kind {
            0 => MetadataMsg::Request { piece },
            1 => MetadataMsg::Data { piece, total_size: total, data: data.slice(..data.len().min(16384)) },
            _ => MetadataMsg::Reject { piece },
        };
        prop_assert_eq!(MetadataMsg::decode(&Bytes::from(msg.encode())).unwrap(), msg);
    }

    #[test]
    fn pex_round_trips(added in proptest::collection::vec(addr(), 0..50), dropped in proptest::collection::vec(addr(), 0..50)) {
        // The encoding groups IPv4 before IPv6.
        let order = |v: Vec<SocketAddr>| { let (mut a, b): (Vec<_>, Vec<_>) = v.into_iter().partition(|a| a.is_ipv4()); a.extend(b); a };
        let msg = PexMessage { added: order(added), dropped: order(dropped) };
        prop_assert_eq!(PexMessage::decode(&msg.encode()).unwrap(), msg);
    }

    #[test]
    fn arbitrary_bytes_never_panic_nor_overallocate(data in proptest::collection::vec(any::<u8>(), 0..600), cut in 1usize..64) {
        let payload = Bytes::from(data.clone());
        let limit = 4 + MAX_PIECE_MSG.max(MAX_EXTENDED_MSG).max(1 + Limits::default().max_bitfield) as usize;
        let largest = largest_alloc(|| {
            let dec = Decoder::default();
            let mut buf = BytesMut::new();
            'outer: for piece in data.chunks(cut) {
                buf.extend_from_slice(piece);
                loop {
                    match dec.decode(&mut buf) {
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(_) => break 'outer,
                    }
                }
            }
            let _ = Handshake::decode(&data);
            let _ = ExtHandshake::decode(&data);
            let _ = MetadataMsg::decode(&payload);
            let _ = PexMessage::decode(&data);
        });
        prop_assert!(largest <= limit + data.len(), "allocated {} bytes for {} input bytes", largest, data.len());
    }

    /// Every id byte with a hostile length prefix: an error or a wait, never a huge allocation.
    #[test]
    fn hostile_length_prefixes(len in any::<u32>(), id in any::<u8>(), tail in proptest::collection::vec(any::<u8>(), 0..32)) {
        let mut input = len.to_be_bytes().to_vec();
        input.push(id);
        input.extend(tail);
        let largest = largest_alloc(|| {
            let mut buf = BytesMut::from(&input[..]);
            let _ = Decoder::new(Limits::for_pieces(1000)).decode(&mut buf);
        });
        prop_assert!(largest <= 4 + MAX_EXTENDED_MSG as usize + input.len());
    }
}

#[test]
fn four_gib_prefix_is_an_error() {
    let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 7, 0, 0][..]);
    let largest = largest_alloc(|| assert!(Decoder::default().decode(&mut buf).is_err()));
    assert!(largest < 1024, "allocated {largest}");
}

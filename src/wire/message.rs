//! The typed peer messages every other module speaks (BEP 3, BEP 6 fast extension, BEP 10 extended).
//! The byte-level codec lives beside this file; these types are already validated.

use crate::wire::PieceData;
use bytes::Bytes;

/// Standard block size (16 KiB): requests larger than this are a protocol error.
pub const BLOCK_SIZE: u32 = 16 * 1024;

/// One block of one piece: `(piece index, byte offset in the piece, length)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockRef {
    pub piece: u32,
    pub offset: u32,
    pub length: u32,
}

/// A peer-protocol message after the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have {
        piece: u32,
    },
    /// Raw bitfield bytes, high bit of byte 0 = piece 0 (BEP 3).
    Bitfield(Bytes),
    Request(BlockRef),
    /// The payload as received (slices of the transport's chunks) or as read from disk (one slice).
    Piece {
        piece: u32,
        offset: u32,
        data: PieceData,
    },
    Cancel(BlockRef),
    /// BEP 6
    HaveAll,
    HaveNone,
    Reject(BlockRef),
    AllowedFast {
        piece: u32,
    },
    /// BEP 10: `id` 0 is the extension handshake; payload is the bencoded dictionary (plus trailing data for
    /// BEP 9 `data` messages).
    Extended {
        id: u8,
        payload: Bytes,
    },
}

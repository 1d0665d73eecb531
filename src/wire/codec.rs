//! Length-prefixed BEP 3 / BEP 6 / BEP 10 message framing: [`encode`] a [`Message`] into a buffer and an
//! incremental [`Decoder`] that takes messages off the front of a byte buffer (`Ok(None)` = need more bytes).
//!
//! Bounds: every message id has a maximum length ([`Limits`]); a length prefix above it is an error before
//! anything is allocated or buffered, so a 4 GiB prefix costs nothing. Piece payloads are split off the
//! receive buffer without copying (`BytesMut::split_to(..).freeze()`); a stream received as chunks is decoded
//! by [`crate::wire::ChunkDecoder`], which keeps payloads as slices of the chunks.

use crate::wire::{BlockRef, Message, WireError, BLOCK_SIZE};
use bytes::{Buf, BufMut, BytesMut};

pub const ID_CHOKE: u8 = 0;
pub const ID_UNCHOKE: u8 = 1;
pub const ID_INTERESTED: u8 = 2;
pub const ID_NOT_INTERESTED: u8 = 3;
pub const ID_HAVE: u8 = 4;
pub const ID_BITFIELD: u8 = 5;
pub const ID_REQUEST: u8 = 6;
pub const ID_PIECE: u8 = 7;
pub const ID_CANCEL: u8 = 8;
pub const ID_HAVE_ALL: u8 = 0x0E;
pub const ID_HAVE_NONE: u8 = 0x0F;
pub const ID_REJECT: u8 = 0x10;
pub const ID_ALLOWED_FAST: u8 = 0x11;
pub const ID_EXTENDED: u8 = 20;

/// Largest info dictionary accepted anywhere (BEP 9 `metadata_size`, DESIGN §3).
pub const MAX_METADATA_SIZE: u32 = 16 * 1024 * 1024;
/// Most pieces a torrent can have: 16 MiB of metadata holds at most this many 20-byte hashes.
pub const MAX_PIECES: u32 = MAX_METADATA_SIZE / 20;
/// Largest piece message body: id + index + offset + one 16 KiB block.
pub const MAX_PIECE_MSG: u32 = 1 + 8 + BLOCK_SIZE;
/// Largest extended message by default: id + ext id + a BEP 9 data message (dict + 16 KiB block) with room.
pub const MAX_EXTENDED_MSG: u32 = 2 + BLOCK_SIZE + 16 * 1024;

/// Per-connection bounds on incoming messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest bitfield payload in bytes (`ceil(pieces / 8)` once the piece count is known).
    pub max_bitfield: u32,
    /// Largest extended message (id byte + payload).
    pub max_extended: u32,
}

impl Default for Limits {
    /// Before the piece count is known: the largest torrent 16 MiB of metadata can describe.
    fn default() -> Self {
        Limits {
            max_bitfield: MAX_PIECES.div_ceil(8),
            max_extended: MAX_EXTENDED_MSG,
        }
    }
}

impl Limits {
    /// Tight bounds once the torrent's piece count is known.
    pub fn for_pieces(pieces: u32) -> Limits {
        Limits {
            max_bitfield: pieces.div_ceil(8),
            ..Limits::default()
        }
    }

    /// Largest accepted length prefix (id byte included) for message `id`, `None` for unknown ids.
    pub fn max_len(&self, id: u8) -> Option<u32> {
        Some(match id {
            ID_CHOKE | ID_UNCHOKE | ID_INTERESTED | ID_NOT_INTERESTED | ID_HAVE_ALL
            | ID_HAVE_NONE => 1,
            ID_HAVE | ID_ALLOWED_FAST => 5,
            ID_REQUEST | ID_CANCEL | ID_REJECT => 13,
            ID_BITFIELD => 1 + self.max_bitfield,
            ID_PIECE => MAX_PIECE_MSG,
            ID_EXTENDED => self.max_extended,
            _ => return None,
        })
    }
}

/// Append the length-prefixed encoding of `msg` to `out`.
pub fn encode(msg: &Message, out: &mut BytesMut) {
    match msg {
        Message::KeepAlive => out.put_u32(0),
        Message::Choke => simple(out, ID_CHOKE),
        Message::Unchoke => simple(out, ID_UNCHOKE),
        Message::Interested => simple(out, ID_INTERESTED),
        Message::NotInterested => simple(out, ID_NOT_INTERESTED),
        Message::HaveAll => simple(out, ID_HAVE_ALL),
        Message::HaveNone => simple(out, ID_HAVE_NONE),
        Message::Have { piece } => index(out, ID_HAVE, *piece),
        Message::AllowedFast { piece } => index(out, ID_ALLOWED_FAST, *piece),
        Message::Request(b) => block(out, ID_REQUEST, b),
        Message::Cancel(b) => block(out, ID_CANCEL, b),
        Message::Reject(b) => block(out, ID_REJECT, b),
        Message::Bitfield(bits) => {
            out.put_u32(1 + bits.len() as u32);
            out.put_u8(ID_BITFIELD);
            out.extend_from_slice(bits);
        }
        Message::Piece {
            piece,
            offset,
            data,
        } => {
            out.extend_from_slice(&piece_header(*piece, *offset, data.len()));
            data.chunks().for_each(|c| out.extend_from_slice(c));
        }
        Message::Extended { id, payload } => {
            out.put_u32(2 + payload.len() as u32);
            out.put_u8(ID_EXTENDED);
            out.put_u8(*id);
            out.extend_from_slice(payload);
        }
    }
}

/// The 13-byte header of a piece message carrying `len` bytes; write the payload after it
/// (lets a transport send the payload `Bytes` as its own chunk, without copying it).
pub fn piece_header(piece: u32, offset: u32, len: usize) -> [u8; 13] {
    let mut h = [0u8; 13];
    h[0..4].copy_from_slice(&(9 + len as u32).to_be_bytes());
    h[4] = ID_PIECE;
    h[5..9].copy_from_slice(&piece.to_be_bytes());
    h[9..13].copy_from_slice(&offset.to_be_bytes());
    h
}

fn simple(out: &mut BytesMut, id: u8) {
    out.put_u32(1);
    out.put_u8(id);
}

fn index(out: &mut BytesMut, id: u8, piece: u32) {
    out.put_u32(5);
    out.put_u8(id);
    out.put_u32(piece);
}

fn block(out: &mut BytesMut, id: u8, b: &BlockRef) {
    out.put_u32(13);
    out.put_u8(id);
    out.put_u32(b.piece);
    out.put_u32(b.offset);
    out.put_u32(b.length);
}

/// Incremental message decoder for one connection (after the handshake).
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    pub limits: Limits,
}

impl Decoder {
    pub fn new(limits: Limits) -> Decoder {
        Decoder { limits }
    }

    /// Total length (prefix included) of the frame at the front of `buf`, once its prefix and id are there
    /// (`Ok(None)` before). Checked against the limits, so it is safe to reserve.
    pub fn frame_len(&self, buf: &[u8]) -> Result<Option<usize>, WireError> {
        let Some(prefix) = buf.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        if len == 0 {
            return Ok(Some(4));
        }
        let Some(&id) = buf.get(4) else {
            return Ok(None);
        };
        let max = self
            .limits
            .max_len(id)
            .ok_or(WireError::UnknownMessage { id })?;
        if len > max {
            return Err(WireError::TooLong { id, len, max });
        }
        Ok(Some(4 + len as usize))
    }

    /// Take one message off the front of `buf`. `Ok(None)`: more bytes are needed (nothing consumed).
    /// An error means the stream is unusable: close the connection.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Message>, WireError> {
        let Some(total) = self.frame_len(buf)? else {
            return Ok(None);
        };
        if total == 4 {
            buf.advance(4);
            return Ok(Some(Message::KeepAlive));
        }
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        let (len, id) = ((total - 4) as u32, buf[4]);
        buf.advance(5);
        let mut body = buf.split_to(total - 5);
        parse_body(id, len, &mut body).map(Some)
    }
}

/// Decode one message body (`len` = length prefix; `body` holds the `len - 1` bytes after the id).
fn parse_body(id: u8, len: u32, body: &mut BytesMut) -> Result<Message, WireError> {
    let exact = |want: u32| {
        if len == want {
            Ok(())
        } else {
            Err(WireError::BadLength { id, len })
        }
    };
    Ok(match id {
        ID_CHOKE => exact(1).map(|_| Message::Choke)?,
        ID_UNCHOKE => exact(1).map(|_| Message::Unchoke)?,
        ID_INTERESTED => exact(1).map(|_| Message::Interested)?,
        ID_NOT_INTERESTED => exact(1).map(|_| Message::NotInterested)?,
        ID_HAVE_ALL => exact(1).map(|_| Message::HaveAll)?,
        ID_HAVE_NONE => exact(1).map(|_| Message::HaveNone)?,
        ID_HAVE => exact(5).map(|_| Message::Have {
            piece: body.get_u32(),
        })?,
        ID_ALLOWED_FAST => exact(5).map(|_| Message::AllowedFast {
            piece: body.get_u32(),
        })?,
        ID_REQUEST => exact(13).map(|_| Message::Request(get_block(body)))?,
        ID_CANCEL => exact(13).map(|_| Message::Cancel(get_block(body)))?,
        ID_REJECT => exact(13).map(|_| Message::Reject(get_block(body)))?,
        ID_BITFIELD => Message::Bitfield(std::mem::take(body).freeze()),
        ID_PIECE => {
            if len < 9 {
                return Err(WireError::BadLength { id, len });
            }
            let piece = body.get_u32();
            let offset = body.get_u32();
            Message::Piece {
                piece,
                offset,
                data: std::mem::take(body).freeze().into(),
            }
        }
        ID_EXTENDED => {
            if len < 2 {
                return Err(WireError::BadLength { id, len });
            }
            let ext = body.get_u8();
            Message::Extended {
                id: ext,
                payload: std::mem::take(body).freeze(),
            }
        }
        _ => return Err(WireError::UnknownMessage { id }),
    })
}

fn get_block(body: &mut BytesMut) -> BlockRef {
    BlockRef {
        piece: body.get_u32(),
        offset: body.get_u32(),
        length: body.get_u32(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn huge_prefix_is_an_error_not_an_allocation() {
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, ID_PIECE][..]);
        assert!(matches!(
            Decoder::default().decode(&mut buf),
            Err(WireError::TooLong { .. })
        ));
        assert!(buf.capacity() < 1024);
        let mut buf = BytesMut::from(&[0, 0, 0, 2, ID_CHOKE][..]);
        assert!(matches!(
            Decoder::default().decode(&mut buf),
            Err(WireError::TooLong { .. })
        ));
        let mut buf = BytesMut::from(&[0, 0, 0, 1, 0x42][..]);
        assert!(matches!(
            Decoder::default().decode(&mut buf),
            Err(WireError::UnknownMessage { id: 0x42 })
        ));
    }

    #[test]
    fn partial_input_waits() {
        let mut enc = BytesMut::new();
        let msg = Message::Piece {
            piece: 3,
            offset: 16384,
            data: Bytes::from(vec![5u8; 100]).into(),
        };
        encode(&msg, &mut enc);
        encode(&Message::KeepAlive, &mut enc);
        let all = enc.freeze();
        let mut buf = BytesMut::new();
        let dec = Decoder::default();
        let mut got = Vec::new();
        for b in all.iter() {
            buf.put_u8(*b);
            while let Some(m) = dec.decode(&mut buf).unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got, vec![msg, Message::KeepAlive]);
        assert!(buf.is_empty());
    }

    #[test]
    fn bitfield_bound_follows_piece_count() {
        let dec = Decoder::new(Limits::for_pieces(10));
        let mut ok = BytesMut::new();
        encode(
            &Message::Bitfield(Bytes::from_static(&[0xff, 0xc0])),
            &mut ok,
        );
        assert!(dec.decode(&mut ok).unwrap().is_some());
        let mut long = BytesMut::new();
        encode(
            &Message::Bitfield(Bytes::from_static(&[0xff, 0xc0, 0])),
            &mut long,
        );
        assert!(matches!(
            dec.decode(&mut long),
            Err(WireError::TooLong { .. })
        ));
    }
}

//! [`ChunkDecoder`]: messages from a stream that arrives as `Bytes` chunks (a QUIC stream's received
//! datagram slices). Piece payloads are kept as slices of those chunks ([`PieceData`], no copy); headers and
//! other messages are copied into a small buffer and parsed by the [`Decoder`], with the same limits (a length
//! prefix is checked before anything is reserved) and the same errors.

use crate::wire::codec::{Decoder, ID_PIECE};
use crate::wire::payload::PieceBuilder;
use crate::wire::{Limits, Message, WireError};
use bytes::{Bytes, BytesMut};

/// A piece frame's bytes before its payload: length prefix, id, index, offset.
const PIECE_HEADER: usize = 13;
/// Frames longer than this are reassembled in an allocation of their own size.
const EXACT_FRAME: usize = 1024;
/// First room for headers and small messages.
const SMALL_FRAMES: usize = 4096;

/// Incremental decoder over received chunks, for one connection (after the handshake).
#[derive(Debug)]
pub struct ChunkDecoder {
    decoder: Decoder,
    /// The start of the current frame (a piece frame's header only).
    buf: BytesMut,
    /// The piece whose payload is being received: (index, offset, payload so far).
    piece: Option<(u32, u32, PieceBuilder)>,
}

impl ChunkDecoder {
    pub fn new(limits: Limits) -> ChunkDecoder {
        ChunkDecoder {
            decoder: Decoder::new(limits),
            buf: BytesMut::with_capacity(SMALL_FRAMES),
            piece: None,
        }
    }

    /// True when no partial message is buffered.
    pub fn is_idle(&self) -> bool {
        self.buf.is_empty() && self.piece.is_none()
    }

    /// Decode what `chunk` completes, appending messages to `out`. An error means the stream is unusable
    /// (close the connection); messages appended before it were valid.
    pub fn push(&mut self, chunk: &Bytes, out: &mut Vec<Message>) -> Result<(), WireError> {
        let mut at = 0;
        while at < chunk.len() {
            let rest = chunk.len() - at;
            if let Some((piece, offset, data)) = &mut self.piece {
                let take = data.missing().min(rest);
                data.push(chunk.slice(at..at + take));
                at += take;
                if data.missing() == 0 {
                    let (piece, offset) = (*piece, *offset);
                    if let Some((_, _, data)) = self.piece.take() {
                        out.push(Message::Piece {
                            piece,
                            offset,
                            data: data.finish(),
                        });
                    }
                }
                continue;
            }
            let need = match self.decoder.frame_len(&self.buf)? {
                Some(total) if total >= PIECE_HEADER && self.buf.get(4) == Some(&ID_PIECE) => {
                    PIECE_HEADER - self.buf.len()
                }
                Some(total) => {
                    if total > EXACT_FRAME && self.buf.capacity() < total {
                        // A large frame (a bitfield, an extended message) gets an allocation of exactly its
                        // size, which leaves with it; growing `buf` would reallocate for each such frame.
                        let mut exact = BytesMut::with_capacity(total);
                        exact.extend_from_slice(&self.buf);
                        self.buf = exact;
                    }
                    total - self.buf.len()
                }
                None => 5 - self.buf.len().min(4),
            };
            let take = need.clamp(1, rest);
            self.buf.extend_from_slice(&chunk[at..at + take]);
            at += take;
            self.take_frames(out)?;
        }
        Ok(())
    }

    /// Parse what `buf` holds: a complete piece header starts the payload; complete frames become messages.
    fn take_frames(&mut self, out: &mut Vec<Message>) -> Result<(), WireError> {
        if let Some(total) = self.decoder.frame_len(&self.buf)? {
            if total >= PIECE_HEADER && self.buf.get(4) == Some(&ID_PIECE) {
                if self.buf.len() < PIECE_HEADER {
                    return Ok(()); // the payload is not reassembled here: reserve nothing
                }
                let word = |i: usize| {
                    u32::from_be_bytes([
                        self.buf[i],
                        self.buf[i + 1],
                        self.buf[i + 2],
                        self.buf[i + 3],
                    ])
                };
                let (piece, offset) = (word(5), word(9));
                self.buf.clear();
                let data = PieceBuilder::new(total - PIECE_HEADER);
                if data.missing() == 0 {
                    out.push(Message::Piece {
                        piece,
                        offset,
                        data: data.finish(),
                    });
                } else {
                    self.piece = Some((piece, offset, data));
                }
                return Ok(());
            }
        }
        while let Some(msg) = self.decoder.decode(&mut self.buf)? {
            out.push(msg);
        }
        if self.buf.capacity() == 0 {
            // The frame took its whole allocation with it: start the next header in a fresh (tiny) one.
            self.buf = BytesMut::new();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{encode, BlockRef};

    fn messages() -> Vec<Message> {
        let mut v = Vec::new();
        for i in 0..40u32 {
            v.push(Message::Piece {
                piece: i,
                offset: 16384 * (i % 4),
                data: Bytes::from(vec![i as u8; [16384, 100, 0, 1][(i % 4) as usize]]).into(),
            });
            v.push(Message::Have { piece: i });
            if i % 5 == 0 {
                v.push(Message::KeepAlive);
                v.push(Message::Request(BlockRef {
                    piece: i,
                    offset: 0,
                    length: 16384,
                }));
                v.push(Message::Extended {
                    id: 1,
                    payload: Bytes::from(vec![7u8; 2000]),
                });
            }
        }
        v
    }

    fn wire(msgs: &[Message]) -> Bytes {
        let mut w = BytesMut::new();
        msgs.iter().for_each(|m| encode(m, &mut w));
        w.freeze()
    }

    fn decode(chunks: &[Bytes]) -> Result<Vec<Message>, WireError> {
        let mut dec = ChunkDecoder::new(Limits::default());
        let mut out = Vec::new();
        for c in chunks {
            dec.push(c, &mut out)?;
        }
        assert!(dec.is_idle());
        Ok(out)
    }

    /// Whatever the chunk boundaries (one byte, a header's worth, a datagram's worth), the same messages come
    /// out in order.
    #[test]
    fn any_chunking_gives_the_same_messages() {
        let msgs = messages();
        let wire = wire(&msgs);
        for size in [1usize, 3, 5, 13, 1000, 3900, 8900, 16397, 40_000] {
            let chunks: Vec<Bytes> = (0..wire.len())
                .step_by(size)
                .map(|at| wire.slice(at..(at + size).min(wire.len())))
                .collect();
            assert_eq!(decode(&chunks).unwrap(), msgs, "chunks of {size}");
        }
    }

    /// A piece payload cut into two or three chunks at every pair of boundaries comes out whole, kept as
    /// slices of the chunks (not copied).
    #[test]
    fn payload_split_at_every_boundary() {
        let data: Vec<u8> = (0..64u32).map(|i| (i * 13 + 1) as u8).collect();
        let msgs = vec![
            Message::Have { piece: 1 },
            Message::Piece {
                piece: 2,
                offset: 3,
                data: data.clone().into(),
            },
            Message::Choke,
        ];
        let wire = wire(&msgs);
        for a in 1..wire.len() {
            for b in a..wire.len() {
                let chunks = [wire.slice(..a), wire.slice(a..b), wire.slice(b..)];
                let got = decode(&chunks).unwrap();
                assert_eq!(got, msgs, "cut at {a}, {b}");
                let Message::Piece { data: d, .. } = &got[1] else {
                    panic!()
                };
                let (start, end) = (9 + 13, 9 + 13 + data.len());
                let inside = |c: usize| c > start && c < end;
                let parts = 1 + usize::from(inside(a)) + usize::from(inside(b) && b != a);
                assert_eq!(d.chunks().len(), parts, "cut at {a}, {b}");
                for c in d.chunks() {
                    let p = c.as_ptr() as usize - wire.as_ptr() as usize;
                    assert!(p >= start && p + c.len() <= end, "a slice of the chunk");
                }
            }
        }
    }

    #[test]
    fn hostile_input_is_an_error_before_any_allocation() {
        for bad in [
            &[0xff, 0xff, 0xff, 0xff, ID_PIECE, 0, 0][..],
            &[0, 0, 0, 5, ID_PIECE, 0, 0, 0, 0],
            &[0, 0, 0, 1, 0x42],
            &[0, 0, 0, 2, 0],
        ] {
            for cut in 1..bad.len() {
                let chunks = [
                    Bytes::copy_from_slice(&bad[..cut]),
                    Bytes::copy_from_slice(&bad[cut..]),
                ];
                let mut dec = ChunkDecoder::new(Limits::default());
                let mut out = Vec::new();
                let r = chunks.iter().try_for_each(|c| dec.push(c, &mut out));
                assert!(r.is_err(), "{bad:?} cut at {cut}");
                assert!(dec.buf.capacity() <= SMALL_FRAMES);
            }
        }
    }
}

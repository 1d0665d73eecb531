//! BEP 9 `ut_metadata` messages: request / data / reject for 16 KiB blocks of the info dictionary, and the
//! serving side ([`serve_request`]). The fetching side is [`crate::wire::fetcher::MetadataFetcher`].

use crate::metainfo::bencode::{self, OwnedValue};
use crate::wire::codec::MAX_METADATA_SIZE;
use crate::wire::{WireError, BLOCK_SIZE};
use bytes::Bytes;

/// Metadata block size (BEP 9).
pub const METADATA_BLOCK: u32 = BLOCK_SIZE;
/// Most blocks a 16 MiB info dictionary has.
pub const MAX_METADATA_BLOCKS: u32 = MAX_METADATA_SIZE / METADATA_BLOCK;

/// A decoded `ut_metadata` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataMsg {
    Request {
        piece: u32,
    },
    Data {
        piece: u32,
        total_size: u32,
        data: Bytes,
    },
    Reject {
        piece: u32,
    },
}

/// Number of 16 KiB blocks in metadata of `size` bytes.
pub fn block_count(size: u32) -> u32 {
    size.div_ceil(METADATA_BLOCK)
}

/// Length of block `piece` of metadata of `size` bytes (`None` when out of range).
pub fn block_len(size: u32, piece: u32) -> Option<u32> {
    let start = piece.checked_mul(METADATA_BLOCK)?;
    (start < size).then(|| (size - start).min(METADATA_BLOCK))
}

impl MetadataMsg {
    pub fn encode(&self) -> Vec<u8> {
        let (kind, piece) = match self {
            MetadataMsg::Request { piece } => (0, piece),
            MetadataMsg::Data { piece, .. } => (1, piece),
            MetadataMsg::Reject { piece } => (2, piece),
        };
        let mut pairs = vec![
            ("msg_type", OwnedValue::Int(kind)),
            ("piece", OwnedValue::Int(i64::from(*piece))),
        ];
        if let MetadataMsg::Data { total_size, .. } = self {
            pairs.push(("total_size", OwnedValue::Int(i64::from(*total_size))));
        }
        let mut out = OwnedValue::dict(pairs).encode();
        if let MetadataMsg::Data { data, .. } = self {
            out.extend_from_slice(data);
        }
        out
    }

    /// Parse a `ut_metadata` payload (the bytes after the extended id). The data of a `data` message must be
    /// at most 16 KiB and the piece index within 16 MiB of metadata.
    pub fn decode(payload: &Bytes) -> Result<MetadataMsg, WireError> {
        let bad = |what| WireError::BadExtended { what };
        let (value, used) = bencode::decode_prefix(payload)?;
        let dict = value
            .as_dict()
            .ok_or(bad("ut_metadata message is not a dictionary"))?;
        let piece = dict
            .get_int(b"piece")
            .and_then(|p| u32::try_from(p).ok())
            .filter(|&p| p < MAX_METADATA_BLOCKS)
            .ok_or(bad("ut_metadata piece missing or out of range"))?;
        let trailing = payload.len() - used;
        match dict.get_int(b"msg_type") {
            Some(0) | Some(2) if trailing != 0 => {
                Err(bad("ut_metadata request/reject with trailing data"))
            }
            Some(0) => Ok(MetadataMsg::Request { piece }),
            Some(2) => Ok(MetadataMsg::Reject { piece }),
            Some(1) => {
                let total = dict
                    .get_int(b"total_size")
                    .ok_or(bad("ut_metadata data without total_size"))?;
                if total <= 0 || total > i64::from(MAX_METADATA_SIZE) {
                    return Err(WireError::MetadataSize { size: total });
                }
                if trailing > METADATA_BLOCK as usize {
                    return Err(bad("ut_metadata data block over 16 KiB"));
                }
                Ok(MetadataMsg::Data {
                    piece,
                    total_size: total as u32,
                    data: payload.slice(used..),
                })
            }
            _ => Err(bad("ut_metadata msg_type missing or unknown")),
        }
    }
}

/// The answer to a request for block `piece` of `info` (the raw info dictionary bytes): data, or a reject
/// when the block does not exist.
pub fn serve_request(info: &Bytes, piece: u32) -> MetadataMsg {
    let size = info.len() as u32;
    match block_len(size, piece) {
        Some(len) if info.len() <= MAX_METADATA_SIZE as usize => {
            let start = (piece * METADATA_BLOCK) as usize;
            MetadataMsg::Data {
                piece,
                total_size: size,
                data: info.slice(start..start + len as usize),
            }
        }
        _ => MetadataMsg::Reject { piece },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_bep9() {
        assert_eq!(
            MetadataMsg::Request { piece: 0 }.encode(),
            b"d8:msg_typei0e5:piecei0ee"
        );
        let data = MetadataMsg::Data {
            piece: 1,
            total_size: 20000,
            data: Bytes::from_static(b"xyz"),
        };
        assert_eq!(
            data.encode(),
            b"d8:msg_typei1e5:piecei1e10:total_sizei20000eexyz"
        );
        assert_eq!(
            MetadataMsg::decode(&Bytes::from(data.encode())).unwrap(),
            data
        );
    }

    #[test]
    fn serves_blocks_and_rejects_out_of_range() {
        let info = Bytes::from(vec![1u8; 20000]);
        match serve_request(&info, 1) {
            MetadataMsg::Data {
                data, total_size, ..
            } => assert_eq!((data.len(), total_size), (20000 - 16384, 20000)),
            other => panic!("{other:?}"),
        }
        assert_eq!(serve_request(&info, 2), MetadataMsg::Reject { piece: 2 });
        assert_eq!(block_len(16384, 1), None);
        assert_eq!(block_count(16385), 2);
    }

    #[test]
    fn rejects_bad_messages() {
        for bad in [
            &b"d8:msg_typei1e5:piecei0e10:total_sizei99999999eexx"[..],
            b"d8:msg_typei0e5:piecei99999ee",
            b"d8:msg_typei7e5:piecei0ee",
            b"d8:msg_typei0e5:piecei0eetrailing",
            b"d8:msg_typei1e5:piecei0ee",
        ] {
            assert!(
                MetadataMsg::decode(&Bytes::copy_from_slice(bad)).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut big = b"d8:msg_typei1e5:piecei0e10:total_sizei99999ee".to_vec();
        big.extend(vec![0u8; 16385]);
        assert!(MetadataMsg::decode(&Bytes::from(big)).is_err());
    }
}

//! Piece geometry: how a torrent of `total_len` bytes splits into pieces of `piece_len` bytes (the last one
//! possibly short) and each piece into 16 KiB blocks (the last one possibly short). Pure arithmetic, validated once.

use crate::wire::message::{BlockRef, BLOCK_SIZE};

/// Why a geometry could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GeometryError {
    #[error("piece length {0} is zero or not a multiple of the 16 KiB block size; use a power of two >= 16 KiB")]
    BadPieceLength(u32),
    #[error("torrent length is zero; a torrent must hold at least one byte")]
    Empty,
    #[error("torrent of {0} bytes needs more than 2^32-1 pieces; use a larger piece length")]
    TooManyPieces(u64),
}

/// The validated piece/block layout of one torrent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    total_len: u64,
    piece_len: u32,
    num_pieces: u32,
}

impl Geometry {
    /// Build the layout; the piece length must be a non-zero multiple of [`BLOCK_SIZE`].
    pub fn new(total_len: u64, piece_len: u32) -> Result<Self, GeometryError> {
        if piece_len == 0 || piece_len % BLOCK_SIZE != 0 {
            return Err(GeometryError::BadPieceLength(piece_len));
        }
        if total_len == 0 {
            return Err(GeometryError::Empty);
        }
        let n = total_len.div_ceil(u64::from(piece_len));
        let num_pieces = u32::try_from(n).map_err(|_| GeometryError::TooManyPieces(total_len))?;
        Ok(Self {
            total_len,
            piece_len,
            num_pieces,
        })
    }

    pub fn total_len(&self) -> u64 {
        self.total_len
    }
    pub fn nominal_piece_len(&self) -> u32 {
        self.piece_len
    }
    pub fn num_pieces(&self) -> u32 {
        self.num_pieces
    }

    /// Length of piece `piece` in bytes (0 if out of range).
    pub fn piece_len(&self, piece: u32) -> u32 {
        if piece >= self.num_pieces {
            return 0;
        }
        let start = u64::from(piece) * u64::from(self.piece_len);
        let len = (self.total_len - start).min(u64::from(self.piece_len));
        len as u32
    }

    /// Number of blocks in piece `piece` (0 if out of range).
    pub fn blocks_in_piece(&self, piece: u32) -> u32 {
        self.piece_len(piece).div_ceil(BLOCK_SIZE)
    }

    /// The `index`-th block of `piece`; `None` if either is out of range.
    pub fn block(&self, piece: u32, index: u32) -> Option<BlockRef> {
        let plen = self.piece_len(piece);
        let offset = index.checked_mul(BLOCK_SIZE)?;
        if offset >= plen {
            return None;
        }
        Some(BlockRef {
            piece,
            offset,
            length: (plen - offset).min(BLOCK_SIZE),
        })
    }

    /// Index of a block within its piece if `block` is exactly one of this torrent's blocks (aligned offset,
    /// exact length); `None` for anything else, so untrusted requests are checked here.
    pub fn block_index(&self, block: &BlockRef) -> Option<u32> {
        if block.offset % BLOCK_SIZE != 0 {
            return None;
        }
        let idx = block.offset / BLOCK_SIZE;
        (self.block(block.piece, idx)? == *block).then_some(idx)
    }

    /// Length of the bitfield message for this torrent, in bytes.
    pub fn bitfield_len(&self) -> usize {
        (self.num_pieces as usize).div_ceil(8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_piece_and_block_are_short() {
        let g = Geometry::new(3 * 32768 + 20000, 32768).unwrap();
        assert_eq!(g.num_pieces(), 4);
        assert_eq!(g.piece_len(0), 32768);
        assert_eq!(g.piece_len(3), 20000);
        assert_eq!(g.piece_len(4), 0);
        assert_eq!(g.blocks_in_piece(0), 2);
        assert_eq!(g.blocks_in_piece(3), 2);
        assert_eq!(
            g.block(3, 1),
            Some(BlockRef {
                piece: 3,
                offset: 16384,
                length: 20000 - 16384
            })
        );
        assert_eq!(g.block(3, 2), None);
        let b = g.block(3, 1).unwrap();
        assert_eq!(g.block_index(&b), Some(1));
        assert_eq!(g.block_index(&BlockRef { length: 16384, ..b }), None);
        assert_eq!(
            g.block_index(&BlockRef {
                piece: 0,
                offset: 100,
                length: 16384
            }),
            None
        );
        assert_eq!(g.bitfield_len(), 1);
    }

    #[test]
    fn rejects_bad_layouts() {
        assert_eq!(
            Geometry::new(10, 1000),
            Err(GeometryError::BadPieceLength(1000))
        );
        assert_eq!(Geometry::new(0, 16384), Err(GeometryError::Empty));
        assert!(Geometry::new(u64::MAX, 16384).is_err());
    }
}

//! The pure piece ↔ file-range map: a torrent is one byte stream cut into pieces of `piece_length` bytes (the
//! last one shorter) and also the concatenation of its files in order. [`Layout`] answers, for a piece or a block
//! `(piece, offset, len)`, which `(file, offset in file, length)` segments hold its bytes — in stream order, no
//! overlap, covering exactly the request — and which pieces touch a file. Zero-length files hold no bytes and
//! appear in no segment. All arithmetic is checked (`u64` stream offsets, `u32` piece indices and lengths).

use std::ops::Range;
use thiserror::Error;

/// A layout that cannot exist, or a request outside it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LayoutError {
    #[error("piece length is 0: the torrent is invalid")]
    ZeroPieceLength,
    #[error("the files' total length overflows 64 bits: the torrent is invalid")]
    TooLong,
    #[error("{pieces} pieces do not fit a 32-bit piece index: use a larger piece length")]
    TooManyPieces { pieces: u64 },
    #[error("the torrent has {count} piece hashes but its length needs {expected}: the torrent is invalid")]
    HashCount { count: usize, expected: u32 },
    #[error("piece {piece} does not exist (the torrent has {count} pieces)")]
    NoSuchPiece { piece: u32, count: u32 },
    #[error("bytes {offset}..+{len} are outside piece {piece} of {piece_len} bytes")]
    OutsidePiece {
        piece: u32,
        offset: u32,
        len: u32,
        piece_len: u32,
    },
}

/// Where some of a piece's bytes live: `len` bytes at `offset` of file number `file`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub file: usize,
    pub offset: u64,
    pub len: u32,
}

/// The piece ↔ file map of one torrent (cheap to clone; immutable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Start of each file in the byte stream; `starts[i] + lengths[i] == starts[i + 1]`.
    starts: Vec<u64>,
    lengths: Vec<u64>,
    total: u64,
    piece_length: u32,
    piece_count: u32,
}

impl Layout {
    /// A layout for files of these lengths, in torrent order.
    pub fn new(
        file_lengths: impl IntoIterator<Item = u64>,
        piece_length: u32,
    ) -> Result<Layout, LayoutError> {
        if piece_length == 0 {
            return Err(LayoutError::ZeroPieceLength);
        }
        let lengths: Vec<u64> = file_lengths.into_iter().collect();
        let mut starts = Vec::with_capacity(lengths.len());
        let mut total: u64 = 0;
        for &len in &lengths {
            starts.push(total);
            total = total.checked_add(len).ok_or(LayoutError::TooLong)?;
        }
        let pieces = total.div_ceil(u64::from(piece_length));
        let piece_count =
            u32::try_from(pieces).map_err(|_| LayoutError::TooManyPieces { pieces })?;
        Ok(Layout {
            starts,
            lengths,
            total,
            piece_length,
            piece_count,
        })
    }

    /// Check that `hashes` has exactly one entry per piece.
    pub fn check_hash_count(&self, count: usize) -> Result<(), LayoutError> {
        if count as u64 != u64::from(self.piece_count) {
            return Err(LayoutError::HashCount {
                count,
                expected: self.piece_count,
            });
        }
        Ok(())
    }

    pub fn total_length(&self) -> u64 {
        self.total
    }
    pub fn piece_length(&self) -> u32 {
        self.piece_length
    }
    pub fn piece_count(&self) -> u32 {
        self.piece_count
    }
    pub fn file_count(&self) -> usize {
        self.lengths.len()
    }
    pub fn file_length(&self, file: usize) -> Option<u64> {
        self.lengths.get(file).copied()
    }
    /// Byte range of file `file` in the stream.
    pub fn file_range(&self, file: usize) -> Option<Range<u64>> {
        Some(self.starts.get(file).copied()?..self.starts[file] + self.lengths[file])
    }

    /// Offset of piece `piece` in the stream.
    pub fn piece_offset(&self, piece: u32) -> Option<u64> {
        (piece < self.piece_count).then(|| u64::from(piece) * u64::from(self.piece_length))
    }

    /// Length of piece `piece`: `piece_length`, except the last piece, which holds what is left (never 0).
    pub fn piece_len(&self, piece: u32) -> Option<u32> {
        let start = self.piece_offset(piece)?;
        let left = self.total - start;
        Some(left.min(u64::from(self.piece_length)) as u32)
    }

    /// The segments of the whole of piece `piece`.
    pub fn piece_segments(&self, piece: u32) -> Result<Segments<'_>, LayoutError> {
        let len = self.piece_len(piece).ok_or(LayoutError::NoSuchPiece {
            piece,
            count: self.piece_count,
        })?;
        self.block_segments(piece, 0, len)
    }

    /// The segments of block `offset..offset + len` of piece `piece`, checked to lie inside the piece.
    pub fn block_segments(
        &self,
        piece: u32,
        offset: u32,
        len: u32,
    ) -> Result<Segments<'_>, LayoutError> {
        let piece_len = self.piece_len(piece).ok_or(LayoutError::NoSuchPiece {
            piece,
            count: self.piece_count,
        })?;
        if offset.checked_add(len).is_none_or(|end| end > piece_len) {
            return Err(LayoutError::OutsidePiece {
                piece,
                offset,
                len,
                piece_len,
            });
        }
        let start = u64::from(piece) * u64::from(self.piece_length) + u64::from(offset);
        // First file whose end is past `start`: zero-length files (end == start) are skipped.
        let file = self.first_file_ending_after(start);
        Ok(Segments {
            layout: self,
            file,
            pos: start,
            left: len,
        })
    }

    fn first_file_ending_after(&self, pos: u64) -> usize {
        // ends are non-decreasing, so binary search on `start + len > pos`.
        let (mut lo, mut hi) = (0usize, self.lengths.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.starts[mid] + self.lengths[mid] > pos {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo
    }

    /// Pieces holding at least one byte of file `file` (empty for a zero-length file).
    pub fn file_pieces(&self, file: usize) -> Range<u32> {
        let Some(range) = self.file_range(file) else {
            return 0..0;
        };
        if range.is_empty() {
            return 0..0;
        }
        let pl = u64::from(self.piece_length);
        (range.start / pl) as u32..range.end.div_ceil(pl) as u32
    }

    /// Files holding at least one byte of piece `piece`, in order (empty for a piece that does not exist).
    pub fn piece_files(&self, piece: u32) -> impl Iterator<Item = usize> + '_ {
        self.piece_segments(piece)
            .into_iter()
            .flatten()
            .map(|s| s.file)
    }
}

/// Iterator over the segments of a block, in stream order.
#[derive(Debug, Clone)]
pub struct Segments<'a> {
    layout: &'a Layout,
    file: usize,
    pos: u64,
    left: u32,
}

impl Iterator for Segments<'_> {
    type Item = Segment;
    fn next(&mut self) -> Option<Segment> {
        while self.left > 0 {
            let file = self.file;
            let (start, len) = (*self.layout.starts.get(file)?, self.layout.lengths[file]);
            let end = start + len;
            if end <= self.pos {
                self.file += 1;
                continue;
            }
            let offset = self.pos - start;
            let take = (end - self.pos).min(u64::from(self.left)) as u32;
            self.pos += u64::from(take);
            self.left -= take;
            return Some(Segment {
                file,
                offset,
                len: take,
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn segs(l: &Layout, piece: u32) -> Vec<(usize, u64, u32)> {
        l.piece_segments(piece)
            .unwrap()
            .map(|s| (s.file, s.offset, s.len))
            .collect()
    }

    #[test]
    fn straddling_and_zero_length_files() {
        // files: 10, 0, 5, 0, 0, 17 bytes; pieces of 8 → 32 bytes, 4 pieces (last 8).
        let l = Layout::new([10, 0, 5, 0, 0, 17], 8).unwrap();
        assert_eq!((l.total_length(), l.piece_count()), (32, 4));
        assert_eq!(segs(&l, 0), vec![(0, 0, 8)]);
        assert_eq!(segs(&l, 1), vec![(0, 8, 2), (2, 0, 5), (5, 0, 1)]);
        assert_eq!(segs(&l, 3), vec![(5, 9, 8)]);
        assert_eq!(l.file_pieces(1), 0..0);
        assert_eq!(l.file_pieces(2), 1..2);
        assert_eq!(l.file_pieces(5), 1..4);
        assert_eq!(l.piece_files(1).collect::<Vec<_>>(), vec![0, 2, 5]);
        let block: Vec<_> = l
            .block_segments(1, 1, 6)
            .unwrap()
            .map(|s| (s.file, s.offset, s.len))
            .collect();
        assert_eq!(block, vec![(0, 9, 1), (2, 0, 5)]);
    }

    #[test]
    fn last_short_piece_and_bounds() {
        let l = Layout::new([20], 8).unwrap();
        assert_eq!(l.piece_count(), 3);
        assert_eq!(l.piece_len(2), Some(4));
        assert_eq!(l.piece_len(3), None);
        assert!(matches!(
            l.block_segments(2, 2, 3),
            Err(LayoutError::OutsidePiece { .. })
        ));
        assert!(matches!(
            l.block_segments(0, u32::MAX, 2),
            Err(LayoutError::OutsidePiece { .. })
        ));
        assert!(matches!(
            l.piece_segments(9),
            Err(LayoutError::NoSuchPiece { .. })
        ));
        assert!(l.check_hash_count(3).is_ok() && l.check_hash_count(2).is_err());
    }

    #[test]
    fn rejects_impossible_layouts() {
        assert_eq!(Layout::new([1], 0), Err(LayoutError::ZeroPieceLength));
        assert_eq!(Layout::new([u64::MAX, 1], 16384), Err(LayoutError::TooLong));
        assert!(matches!(
            Layout::new([u64::MAX], 1),
            Err(LayoutError::TooManyPieces { .. })
        ));
        let empty = Layout::new([0, 0], 16384).unwrap();
        assert_eq!((empty.piece_count(), empty.total_length()), (0, 0));
        // Huge but valid: offsets near u64::MAX stay exact.
        let big = Layout::new([(1u64 << 62) - 5, 0], 1 << 31).unwrap();
        let last = big.piece_count() - 1;
        let s: Vec<_> = big.piece_segments(last).unwrap().collect();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].offset + u64::from(s[0].len), (1u64 << 62) - 5);
    }

    proptest! {
        #[test]
        fn segments_cover_each_piece_exactly(
            lengths in proptest::collection::vec(prop_oneof![Just(0u64), 1u64..40, 40u64..300], 0..12),
            piece_length in 1u32..64,
        ) {
            let l = Layout::new(lengths.iter().copied(), piece_length).unwrap();
            let mut next = 0u64; // stream position the next segment must start at
            for piece in 0..l.piece_count() {
                let plen = l.piece_len(piece).unwrap();
                prop_assert!(plen > 0 && plen <= piece_length);
                let mut sum = 0u64;
                for s in l.piece_segments(piece).unwrap() {
                    prop_assert!(s.len > 0);
                    let r = l.file_range(s.file).unwrap();
                    prop_assert!(s.offset + u64::from(s.len) <= r.end - r.start);
                    prop_assert_eq!(r.start + s.offset, next); // in order, contiguous, no overlap
                    next += u64::from(s.len);
                    sum += u64::from(s.len);
                    prop_assert!(l.file_pieces(s.file).contains(&piece));
                }
                prop_assert_eq!(sum, u64::from(plen));
            }
            prop_assert_eq!(next, l.total_length());
        }

        #[test]
        fn blocks_are_sub_ranges_of_their_piece(
            lengths in proptest::collection::vec(0u64..100, 1..8),
            piece_length in 1u32..50,
            a in 0u32..50, b in 0u32..50,
        ) {
            let l = Layout::new(lengths.iter().copied(), piece_length).unwrap();
            for piece in 0..l.piece_count() {
                let plen = l.piece_len(piece).unwrap();
                let (off, end) = (a.min(b), a.max(b));
                let res = l.block_segments(piece, off, end - off);
                if end > plen {
                    prop_assert!(res.is_err());
                    continue;
                }
                let base = l.piece_offset(piece).unwrap() + u64::from(off);
                let mut pos = base;
                for s in res.unwrap() {
                    prop_assert_eq!(l.file_range(s.file).unwrap().start + s.offset, pos);
                    pos += u64::from(s.len);
                }
                prop_assert_eq!(pos, base + u64::from(end - off));
            }
        }
    }
}

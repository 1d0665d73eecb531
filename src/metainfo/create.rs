//! Torrent creation, the pure part: the default piece length rule of DESIGN.md §1, and the canonical bencoding
//! of an info dictionary and a `.torrent` file from a file list and piece hashes. Reading and hashing the data is
//! `storage::hasher`'s job; this module touches no files.

use super::bencode::{encode_bytes, OwnedValue};
use super::torrent::{check_component, MAX_METADATA_SIZE, MAX_PIECE_LENGTH, MIN_PIECE_LENGTH};
use thiserror::Error;

/// The default piece length clamps to this (DESIGN.md §1).
pub const MAX_DEFAULT_PIECE_LENGTH: u64 = 16 * 1024 * 1024;
/// The default piece length gives at most this many pieces (and more than half as many) when not clamped.
pub const TARGET_MAX_PIECES: u64 = 2000;

/// What the torrent describes: one file, or files under a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// A single file of this length; its name is the torrent's name.
    SingleFile { length: u64 },
    /// Files under a directory named after the torrent, each with its relative path components, in torrent order.
    MultiFile { files: Vec<(Vec<String>, u64)> },
}

impl Layout {
    pub fn total_length(&self) -> Option<u64> {
        match self {
            Layout::SingleFile { length } => Some(*length),
            Layout::MultiFile { files } => {
                files.iter().try_fold(0u64, |a, (_, l)| a.checked_add(*l))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CreateError {
    #[error("piece length {0} is not a power of two between 16 KiB and 128 MiB")]
    BadPieceLength(u64),
    #[error(
        "there is no data to share (total length 0); a torrent needs at least one non-empty file"
    )]
    Empty,
    #[error("the total length overflows")]
    Overflow,
    #[error("{got} piece hashes given, {expected} needed")]
    PieceCount { got: usize, expected: u64 },
    #[error("name or path component {0:?} cannot be used in a torrent: {1}")]
    BadComponent(String, &'static str),
    #[error("the info dictionary would be {0} bytes, over the 16 MiB limit: use a larger --piece-length")]
    TooLarge(u64),
}

/// The default piece length for `total` bytes: the smallest power of two giving at most 2,000 pieces (so between
/// 1,000 and 2,000), clamped to 16 KiB – 16 MiB.
pub fn default_piece_length(total: u64) -> u64 {
    let want = total.div_ceil(TARGET_MAX_PIECES).max(1);
    want.checked_next_power_of_two()
        .unwrap_or(MAX_DEFAULT_PIECE_LENGTH)
        .clamp(MIN_PIECE_LENGTH, MAX_DEFAULT_PIECE_LENGTH)
}

/// Check what will be hashed before reading any data: piece length, total length, safe names, and that the
/// info dictionary will fit in 16 MiB. Returns the number of pieces.
pub fn plan(name: &str, layout: &Layout, piece_length: u64) -> Result<u64, CreateError> {
    if !piece_length.is_power_of_two()
        || !(MIN_PIECE_LENGTH..=MAX_PIECE_LENGTH).contains(&piece_length)
    {
        return Err(CreateError::BadPieceLength(piece_length));
    }
    let total = layout
        .total_length()
        .filter(|&t| t <= i64::MAX as u64)
        .ok_or(CreateError::Overflow)?;
    if total == 0 {
        return Err(CreateError::Empty);
    }
    check_component(name).map_err(|r| CreateError::BadComponent(name.to_string(), r))?;
    let mut path_bytes = 0u64;
    if let Layout::MultiFile { files } = layout {
        for (path, _) in files {
            if path.is_empty() {
                return Err(CreateError::BadComponent(String::new(), "empty path"));
            }
            for c in path {
                check_component(c).map_err(|r| CreateError::BadComponent(c.clone(), r))?;
                path_bytes += c.len() as u64 + 8;
            }
            path_bytes += 40;
        }
    }
    let pieces = total.div_ceil(piece_length);
    let estimate = pieces * 20 + path_bytes + name.len() as u64 + 100;
    if estimate > MAX_METADATA_SIZE as u64 {
        return Err(CreateError::TooLarge(estimate));
    }
    Ok(pieces)
}

/// The canonical bencoding of the info dictionary (keys sorted): `files`/`length`, `name`, `piece length`,
/// `pieces`, and `private` when set.
pub fn info_bytes(
    name: &str,
    layout: &Layout,
    piece_length: u64,
    pieces: &[[u8; 20]],
    private: bool,
) -> Result<Vec<u8>, CreateError> {
    let expected = plan(name, layout, piece_length)?;
    if pieces.len() as u64 != expected {
        return Err(CreateError::PieceCount {
            got: pieces.len(),
            expected,
        });
    }
    let int = |n: u64| OwnedValue::Int(n as i64); // plan() checked every length fits in i64
    let mut info = vec![
        ("name", OwnedValue::bytes(name)),
        ("piece length", int(piece_length)),
        ("pieces", OwnedValue::Bytes(pieces.concat())),
    ];
    match layout {
        Layout::SingleFile { length } => info.push(("length", int(*length))),
        Layout::MultiFile { files } => info.push((
            "files",
            OwnedValue::List(
                files
                    .iter()
                    .map(|(path, len)| {
                        OwnedValue::dict([
                            ("length", int(*len)),
                            (
                                "path",
                                OwnedValue::List(path.iter().map(OwnedValue::bytes).collect()),
                            ),
                        ])
                    })
                    .collect(),
            ),
        )),
    }
    if private {
        info.push(("private", OwnedValue::Int(1)));
    }
    Ok(OwnedValue::dict(info).encode())
}

/// A `.torrent` file around the exact `raw_info` bytes, with optional `comment` and `created by` (no tracker:
/// peers are found through the DHT). Keys in canonical order.
pub fn torrent_bytes(raw_info: &[u8], comment: Option<&str>, created_by: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw_info.len() + 128);
    out.push(b'd');
    if let Some(c) = comment {
        encode_bytes(b"comment", &mut out);
        encode_bytes(c.as_bytes(), &mut out);
    }
    if let Some(c) = created_by {
        encode_bytes(b"created by", &mut out);
        encode_bytes(c.as_bytes(), &mut out);
    }
    encode_bytes(b"info", &mut out);
    out.extend_from_slice(raw_info);
    out.push(b'e');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::Metainfo;

    #[test]
    fn default_piece_length_rule() {
        const MIB: u64 = 1024 * 1024;
        assert_eq!(default_piece_length(0), 16 * 1024);
        assert_eq!(default_piece_length(1), 16 * 1024);
        assert_eq!(default_piece_length(1024 * MIB), MIB); // 1,024 pieces
        assert_eq!(default_piece_length(1 << 50), 16 * MIB);
        assert_eq!(default_piece_length(u64::MAX), 16 * MIB);
        for total in [100 * MIB, 3000 * MIB + 7, 20 * MIB * 1024] {
            let n = total.div_ceil(default_piece_length(total));
            assert!((1000..=2000).contains(&n), "{total}: {n} pieces");
        }
    }

    #[test]
    fn builds_a_parseable_multi_file_torrent() {
        let layout = Layout::MultiFile {
            files: vec![
                (vec!["a".into()], 10),
                (vec!["d".into(), "b".into()], 16384),
            ],
        };
        let pieces = [[1u8; 20], [2u8; 20]];
        let info = info_bytes("top", &layout, 16384, &pieces, false).unwrap();
        let t = torrent_bytes(&info, Some("hi"), Some("qswarm"));
        let m = Metainfo::from_bytes(&t).unwrap();
        assert_eq!(m.raw_info, info);
        assert_eq!(m.total_length, 16394);
        assert_eq!(m.files[1].path, vec!["d".to_string(), "b".to_string()]);
        assert_eq!(m.pieces, pieces.to_vec());
        assert_eq!(m.comment.as_deref(), Some("hi"));
        assert!(m.multi_file);
    }

    #[test]
    fn refuses_bad_plans() {
        let one = Layout::SingleFile { length: 1 };
        assert_eq!(
            plan("x", &one, 1000),
            Err(CreateError::BadPieceLength(1000))
        );
        assert_eq!(
            plan("x", &Layout::SingleFile { length: 0 }, 16384),
            Err(CreateError::Empty)
        );
        assert!(matches!(
            plan("..", &one, 16384),
            Err(CreateError::BadComponent(..))
        ));
        let huge = Layout::SingleFile { length: 1 << 40 };
        assert!(matches!(
            plan("x", &huge, 16384),
            Err(CreateError::TooLarge(_))
        ));
        let over = Layout::MultiFile {
            files: vec![(vec!["a".into()], u64::MAX), (vec!["b".into()], 1)],
        };
        assert_eq!(plan("x", &over, 16384), Err(CreateError::Overflow));
        assert!(matches!(
            info_bytes("x", &one, 16384, &[], false),
            Err(CreateError::PieceCount { .. })
        ));
    }
}

//! The validated `Metainfo` (BEP 3): what a `.torrent` file or a BEP 9 info dictionary says, checked once at the
//! edge so the rest of the program can trust it. The infohash is SHA-1 over the exact raw `info` bytes; unknown
//! keys (and `announce`, `announce-list`, `url-list`, BEP 52 hybrid keys) are tolerated and kept in `raw_info`.
//!
//! Every rejection of DESIGN.md §3 is a [`MetainfoError`] variant: bad piece length, `pieces` not a multiple of 20
//! or not matching the total length, negative or overflowing lengths, unsafe path components (empty, `.`, `..`,
//! absolute, containing separators), duplicate paths, metadata over [`MAX_METADATA_SIZE`].

use super::bencode::{self, BencodeError, Dict, Value};
use super::infohash::InfoHash;
use super::magnet::Magnet;
use std::collections::HashSet;
use thiserror::Error;

/// Largest info dictionary accepted (BEP 9 metadata; DESIGN.md §3).
pub const MAX_METADATA_SIZE: usize = 16 * 1024 * 1024;
/// Largest `.torrent` file accepted: the info dictionary plus room for trackers and comments.
pub const MAX_TORRENT_FILE_SIZE: usize = MAX_METADATA_SIZE + 1024 * 1024;
/// Smallest piece length accepted (one 16 KiB block).
pub const MIN_PIECE_LENGTH: u64 = 16 * 1024;
/// Largest piece length accepted: a piece is held in memory while it is verified, so this bounds that buffer.
pub const MAX_PIECE_LENGTH: u64 = 128 * 1024 * 1024;

/// Why bytes are not a torrent we accept. Each message says what is wrong with the file.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MetainfoError {
    #[error("not a torrent file: {0}")]
    Bencode(#[from] BencodeError),
    #[error("torrent data is {size} bytes, over the {max}-byte limit: refusing to parse it")]
    TooLarge { size: usize, max: usize },
    #[error("not a torrent file: the top level is not a dictionary")]
    NotADict,
    #[error("invalid torrent: missing `{0}`")]
    Missing(&'static str),
    #[error("invalid torrent: `{key}` should be {expected}")]
    WrongType {
        key: &'static str,
        expected: &'static str,
    },
    #[error("invalid torrent: piece length {0} is not a power of two between 16 KiB and 128 MiB")]
    BadPieceLength(i64),
    #[error("invalid torrent: `pieces` is {0} bytes, not a multiple of 20")]
    PiecesNotMultipleOf20(usize),
    #[error("invalid torrent: {actual} piece hashes for {total_length} bytes in pieces of {piece_length} (expected {expected})")]
    PieceCountMismatch {
        actual: usize,
        expected: u64,
        total_length: u64,
        piece_length: u64,
    },
    #[error("invalid torrent: negative length {0}")]
    NegativeLength(i64),
    #[error("invalid torrent: total length overflows")]
    LengthOverflow,
    #[error("invalid torrent: the torrent holds no data (total length 0)")]
    Empty,
    #[error("invalid torrent: `{0}` is not valid UTF-8")]
    NotUtf8(&'static str),
    #[error("invalid torrent: unsafe name {name:?}: {reason}")]
    BadName { name: String, reason: &'static str },
    #[error("invalid torrent: unsafe file path {path:?}: {reason}")]
    BadPath { path: String, reason: &'static str },
    #[error("invalid torrent: file path {0:?} appears twice")]
    DuplicatePath(String),
    #[error("invalid torrent: file path {0:?} is both a file and a directory")]
    PathConflict(String),
    #[error("invalid torrent: the info dictionary has both `length` and `files`")]
    BothLengthAndFiles,
    #[error("invalid torrent: `files` is empty")]
    NoFiles,
    #[error("unsupported torrent: BEP 52 v2-only torrents (no `pieces`) are not supported")]
    V2Only,
}

/// One file of a torrent: its path relative to the torrent's root (single-file torrents: just the name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Path components, each checked safe (non-empty, not `.`/`..`, no separators, no NUL).
    pub path: Vec<String>,
    pub length: u64,
    /// A BEP 47 padding file (`attr` contains `p`): its bytes are zeros and it need not be written.
    pub padding: bool,
}

impl FileEntry {
    /// The path joined with `/` (for display and duplicate checks).
    pub fn display_path(&self) -> String {
        self.path.join("/")
    }
}

/// A validated torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metainfo {
    pub info_hash: InfoHash,
    /// The suggested file name (single-file) or directory name (multi-file); a safe single path component.
    pub name: String,
    pub piece_length: u64,
    pub pieces: Vec<[u8; 20]>,
    /// For a single-file torrent one entry whose path is `[name]`; for multi-file the files under `name/`.
    pub files: Vec<FileEntry>,
    pub total_length: u64,
    /// `true` when the info dictionary has `files` (data goes in a directory called `name`).
    pub multi_file: bool,
    pub private: bool,
    pub comment: Option<String>,
    pub created_by: Option<String>,
    /// The exact bytes of the info dictionary (hashes to `info_hash`; served to peers in BEP 9).
    pub raw_info: Vec<u8>,
}

impl Metainfo {
    /// Parse and validate a whole `.torrent` file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Metainfo, MetainfoError> {
        if bytes.len() > MAX_TORRENT_FILE_SIZE {
            return Err(MetainfoError::TooLarge {
                size: bytes.len(),
                max: MAX_TORRENT_FILE_SIZE,
            });
        }
        let top = bencode::decode(bytes)?;
        let top = top.as_dict().ok_or(MetainfoError::NotADict)?;
        let raw = top.get_raw(b"info").ok_or(MetainfoError::Missing("info"))?;
        let mut m = Metainfo::from_info_bytes(raw)?;
        m.comment = text(top, b"comment");
        m.created_by = text(top, b"created by");
        Ok(m)
    }

    /// Parse and validate a bare info dictionary (as received by BEP 9 metadata exchange).
    pub fn from_info_bytes(raw: &[u8]) -> Result<Metainfo, MetainfoError> {
        if raw.len() > MAX_METADATA_SIZE {
            return Err(MetainfoError::TooLarge {
                size: raw.len(),
                max: MAX_METADATA_SIZE,
            });
        }
        let value = bencode::decode(raw)?;
        let info = value.as_dict().ok_or(MetainfoError::WrongType {
            key: "info",
            expected: "a dictionary",
        })?;

        let name = utf8_field(info, b"name.utf-8", b"name", "name")?;
        check_component(&name).map_err(|reason| MetainfoError::BadName {
            name: name.clone(),
            reason,
        })?;

        let piece_length = match info.get(b"piece length") {
            None => return Err(MetainfoError::Missing("piece length")),
            Some(Value::Int(n)) => *n,
            Some(_) => {
                return Err(MetainfoError::WrongType {
                    key: "piece length",
                    expected: "an integer",
                })
            }
        };
        let pl =
            u64::try_from(piece_length).map_err(|_| MetainfoError::BadPieceLength(piece_length))?;
        if !pl.is_power_of_two() || !(MIN_PIECE_LENGTH..=MAX_PIECE_LENGTH).contains(&pl) {
            return Err(MetainfoError::BadPieceLength(piece_length));
        }

        let (files, multi_file) = match (info.get(b"length"), info.get(b"files")) {
            (Some(_), Some(_)) => return Err(MetainfoError::BothLengthAndFiles),
            (Some(len), None) => {
                let length = length_of(len, "length")?;
                (
                    vec![FileEntry {
                        path: vec![name.clone()],
                        length,
                        padding: false,
                    }],
                    false,
                )
            }
            (None, Some(files)) => (parse_files(files)?, true),
            (None, None) => return Err(MetainfoError::Missing("length or files")),
        };

        let total_length = files
            .iter()
            .try_fold(0u64, |acc, f| acc.checked_add(f.length))
            .filter(|&t| t <= i64::MAX as u64)
            .ok_or(MetainfoError::LengthOverflow)?;
        if total_length == 0 {
            return Err(MetainfoError::Empty);
        }

        let pieces_raw = match info.get(b"pieces") {
            None if info.get(b"file tree").is_some() => return Err(MetainfoError::V2Only),
            None => return Err(MetainfoError::Missing("pieces")),
            Some(Value::Bytes(b)) => *b,
            Some(_) => {
                return Err(MetainfoError::WrongType {
                    key: "pieces",
                    expected: "a byte string",
                })
            }
        };
        if pieces_raw.len() % 20 != 0 {
            return Err(MetainfoError::PiecesNotMultipleOf20(pieces_raw.len()));
        }
        let expected = total_length.div_ceil(pl);
        if pieces_raw.len() as u64 / 20 != expected {
            return Err(MetainfoError::PieceCountMismatch {
                actual: pieces_raw.len() / 20,
                expected,
                total_length,
                piece_length: pl,
            });
        }
        let pieces = pieces_raw
            .chunks_exact(20)
            .map(|c| {
                let mut h = [0u8; 20];
                h.copy_from_slice(c);
                h
            })
            .collect();

        let private = info.get_int(b"private") == Some(1);
        Ok(Metainfo {
            info_hash: InfoHash::of(raw),
            name,
            piece_length: pl,
            pieces,
            files,
            total_length,
            multi_file,
            private,
            comment: None,
            created_by: None,
            raw_info: raw.to_vec(),
        })
    }

    pub fn piece_count(&self) -> usize {
        self.pieces.len()
    }

    /// Length of piece `index` (the last one may be short); `None` past the end.
    pub fn piece_size(&self, index: usize) -> Option<u64> {
        if index >= self.pieces.len() {
            return None;
        }
        let start = index as u64 * self.piece_length;
        Some((self.total_length - start).min(self.piece_length))
    }

    /// The magnet link for this torrent (`xt` and `dn`).
    pub fn magnet(&self) -> Magnet {
        Magnet {
            info_hash: self.info_hash,
            name: Some(self.name.clone()),
            peers: Vec::new(),
        }
    }

    /// A minimal `.torrent` file holding the exact raw info bytes (so the infohash is unchanged).
    pub fn to_torrent_bytes(&self) -> Vec<u8> {
        super::create::torrent_bytes(
            &self.raw_info,
            self.comment.as_deref(),
            self.created_by.as_deref(),
        )
    }
}

fn text(d: &Dict<'_>, key: &[u8]) -> Option<String> {
    d.get_bytes(key)
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

/// The value of `preferred` if it is valid UTF-8, else `key` which must be UTF-8.
fn utf8_field(
    d: &Dict<'_>,
    preferred: &[u8],
    key: &[u8],
    what: &'static str,
) -> Result<String, MetainfoError> {
    if let Some(s) = d
        .get_bytes(preferred)
        .and_then(|b| std::str::from_utf8(b).ok())
    {
        return Ok(s.to_string());
    }
    match d.get(key) {
        None => Err(MetainfoError::Missing(what)),
        Some(Value::Bytes(b)) => std::str::from_utf8(b)
            .map(str::to_string)
            .map_err(|_| MetainfoError::NotUtf8(what)),
        Some(_) => Err(MetainfoError::WrongType {
            key: what,
            expected: "a string",
        }),
    }
}

fn length_of(v: &Value<'_>, key: &'static str) -> Result<u64, MetainfoError> {
    match v {
        Value::Int(n) => u64::try_from(*n).map_err(|_| MetainfoError::NegativeLength(*n)),
        _ => Err(MetainfoError::WrongType {
            key,
            expected: "an integer",
        }),
    }
}

/// Why a path component is unsafe to use as a file name, if it is.
pub fn check_component(c: &str) -> Result<(), &'static str> {
    if c.is_empty() {
        Err("empty path component")
    } else if c == "." || c == ".." {
        Err("`.` or `..` path component")
    } else if c.contains('/') || c.contains('\\') {
        Err("path component contains a separator (absolute path or traversal)")
    } else if c.contains('\0') {
        Err("path component contains a NUL byte")
    } else {
        Ok(())
    }
}

fn parse_files(files: &Value<'_>) -> Result<Vec<FileEntry>, MetainfoError> {
    let list = files.as_list().ok_or(MetainfoError::WrongType {
        key: "files",
        expected: "a list",
    })?;
    if list.is_empty() {
        return Err(MetainfoError::NoFiles);
    }
    let mut out = Vec::with_capacity(list.len());
    let mut seen: HashSet<Vec<String>> = HashSet::with_capacity(list.len());
    for item in list {
        let d = item.as_dict().ok_or(MetainfoError::WrongType {
            key: "files",
            expected: "a list of dictionaries",
        })?;
        let length = length_of(
            d.get(b"length")
                .ok_or(MetainfoError::Missing("files.length"))?,
            "files.length",
        )?;
        let components = match d.get_list(b"path.utf-8") {
            Some(p)
                if p.iter()
                    .all(|c| c.as_bytes().is_some_and(|b| std::str::from_utf8(b).is_ok())) =>
            {
                p
            }
            _ => d
                .get_list(b"path")
                .ok_or(MetainfoError::Missing("files.path"))?,
        };
        let mut path = Vec::with_capacity(components.len());
        for c in components {
            let b = c.as_bytes().ok_or(MetainfoError::WrongType {
                key: "files.path",
                expected: "a list of strings",
            })?;
            path.push(
                std::str::from_utf8(b)
                    .map_err(|_| MetainfoError::NotUtf8("files.path"))?
                    .to_string(),
            );
        }
        let shown = path.join("/");
        if path.is_empty() {
            return Err(MetainfoError::BadPath {
                path: shown,
                reason: "empty path",
            });
        }
        for c in &path {
            check_component(c).map_err(|reason| MetainfoError::BadPath {
                path: shown.clone(),
                reason,
            })?;
        }
        if !seen.insert(path.clone()) {
            return Err(MetainfoError::DuplicatePath(shown));
        }
        let padding = d.get_bytes(b"attr").is_some_and(|a| a.contains(&b'p'));
        out.push(FileEntry {
            path,
            length,
            padding,
        });
    }
    // A file may not also be a directory holding another file ("a" and "a/b"). Sorted component-wise, the
    // paths that extend a path P come right after P, so comparing neighbours finds every such conflict.
    // (Looking up every prefix of every path in `seen` was quadratic in the path depth: a 40,000-component
    // path took 4 s, a 16 MiB info dictionary of them would take hours.)
    let mut sorted: Vec<&Vec<String>> = out.iter().map(|f| &f.path).collect();
    sorted.sort_unstable();
    for w in sorted.windows(2) {
        if w[1].len() > w[0].len() && w[1].starts_with(w[0]) {
            return Err(MetainfoError::PathConflict(w[0].join("/")));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single(extra_info: &str) -> Vec<u8> {
        format!(
            "d4:infod6:lengthi20000e4:name3:abc12:piece lengthi16384e6:pieces40:{}{extra_info}ee",
            "x".repeat(40)
        )
        .into_bytes()
    }

    #[test]
    fn parses_single_file_and_hashes_raw_span() {
        let bytes = single("");
        let m = Metainfo::from_bytes(&bytes).unwrap();
        assert_eq!(m.name, "abc");
        assert_eq!(m.total_length, 20000);
        assert_eq!(m.piece_count(), 2);
        assert_eq!(m.piece_size(1), Some(20000 - 16384));
        assert_eq!(m.piece_size(2), None);
        let start = bytes.windows(6).position(|w| w == b"4:info").unwrap() + 6;
        assert_eq!(m.info_hash, InfoHash::of(&bytes[start..bytes.len() - 1]));
        assert_eq!(
            m.files,
            vec![FileEntry {
                path: vec!["abc".into()],
                length: 20000,
                padding: false
            }]
        );
    }

    #[test]
    fn unknown_keys_change_the_hash_and_are_kept() {
        let a = Metainfo::from_bytes(&single("")).unwrap();
        let b = Metainfo::from_bytes(&single("7:privatei1e")).unwrap();
        assert!(b.private);
        assert_ne!(a.info_hash, b.info_hash);
        assert_eq!(
            Metainfo::from_bytes(&b.to_torrent_bytes())
                .unwrap()
                .info_hash,
            b.info_hash
        );
    }

    /// Regression (found reviewing the parser for the fuzz targets): the file/directory conflict check was quadratic
    /// in the path depth. Conflicts are still found when other paths sort between the two.
    #[test]
    fn path_conflicts_in_linear_time() {
        let info = |files: &[&[&str]], depth: usize| {
            let mut f = String::new();
            for path in files {
                let comps: String = path.iter().map(|c| format!("{}:{c}", c.len())).collect();
                let deep = "1:z".repeat(depth);
                f += &format!("d6:lengthi1e4:pathl{comps}{deep}ee");
            }
            let pieces = files.len().div_ceil(16384);
            let raw = format!(
                "d5:filesl{f}e4:name1:x12:piece lengthi16384e6:pieces{}:{}e",
                pieces * 20,
                "h".repeat(pieces * 20)
            );
            Metainfo::from_info_bytes(raw.as_bytes())
        };
        assert!(info(&[&["a"], &["b", "c"]], 0).is_ok());
        for files in [
            &[&["a"][..], &["a", "b"]][..],
            &[&["a", "b", "c"], &["a", "a"], &["a", "b"]],
            &[&["a"], &["a", "0"], &["a", "b", "c"]],
        ] {
            assert!(
                matches!(info(files, 0), Err(MetainfoError::PathConflict(_))),
                "{files:?}"
            );
        }
        // 100,000 components: ~1.5e10 component hashes before, 100,000 now.
        let m = info(&[&["a"], &["b"]], 100_000).unwrap();
        assert_eq!(m.files[0].path.len(), 100_001);
    }

    #[test]
    fn components() {
        for bad in ["", ".", "..", "a/b", "/", "a\\b", "x\0"] {
            assert!(check_component(bad).is_err(), "{bad:?}");
        }
        assert!(check_component("...").is_ok());
        assert!(check_component(".pad").is_ok());
    }
}

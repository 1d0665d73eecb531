//! Resume state (DESIGN.md §8): the verified-piece bitfield plus what is needed to trust it after a restart —
//! the infohash, piece length and count, and each file's length and mtime at save time — saved atomically
//! (write a temp file, fsync it, rename it over the old one, fsync the directory).
//!
//! Ordering, so that a kill -9 (or power loss) at any point never records an unverified piece:
//! 1. a piece's data is written (the write call returned) and its SHA-1 verified (from disk or from the very
//!    buffer that was written); only then does the caller tell the [`super::ResumeRecorder`] (`piece_done`);
//! 2. on save, the files holding the new pieces are `fdatasync`ed (new directory entries `fsync`ed);
//! 3. then the files are stamped (length, mtime) and the state goes to `<path>.tmp`, fsynced, renamed over `<path>`.
//!
//! A kill before 3 completes leaves the previous state, which never named the new pieces. A file changed after
//! the save (by anyone: our own later writes of other pieces, or an edit) has a different stamp, so at load the
//! saved pieces in it are re-checked rather than trusted ([`plan_resume`]); pieces in unchanged files are trusted.
//! Limit: a change that keeps a file's length and mtime (e.g. `touch -r`) is not detected, as in other clients.
//!
//! Format: bencode `d5:state<dict>4:sha120:<SHA-1 of the raw state bytes>e`; state keys `version` (1),
//! `infohash`, `piece length`, `piece count`, `have` (BEP 3 bitfield bytes), `files` (per file `[length,
//! mtime_sec, mtime_nsec]`, or `[]` if the file did not exist). A corrupt, foreign or mismatching file is
//! ignored with a [`ResumeRejected`] reason.

use super::disk::{Storage, StorageError};
use super::verify::{recheck, Bitfield, PieceHash};
use crate::metainfo::bencode::{self, BencodeError, OwnedValue, Value};
use crate::metainfo::InfoHash;
use sha1::{Digest, Sha1};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

const VERSION: i64 = 1;
/// Largest resume file read (a 16 MiB torrent has < 1 M pieces; this leaves room for 100k files).
const MAX_RESUME_BYTES: u64 = 64 << 20;

/// A file's identity at save time: a change to either field means "re-check the pieces in it".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    pub length: u64,
    pub mtime_sec: i64,
    pub mtime_nsec: i64,
}

/// The stamp of the file at `path` now, `None` if it does not exist.
pub fn file_stamp(path: &Path) -> Result<Option<FileStamp>, StorageError> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some(FileStamp {
            length: m.len(),
            mtime_sec: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
        })),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StorageError::from_io(e, "reading metadata of", path)),
    }
}

/// Stamps of every file of `storage`, in torrent order.
pub fn stamps(storage: &Storage) -> Result<Vec<Option<FileStamp>>, StorageError> {
    (0..storage.layout().file_count())
        .map(|i| file_stamp(storage.file_path(i).unwrap_or(Path::new(""))))
        .collect()
}

/// Why a resume file was not used (the torrent is then checked as if there were none).
#[derive(Debug, Error)]
pub enum ResumeRejected {
    #[error("cannot read the resume file: {0}")]
    Unreadable(io::Error),
    #[error("the resume file is larger than {MAX_RESUME_BYTES} bytes")]
    TooLarge,
    #[error("the resume file is not bencode: {0}")]
    NotBencode(#[from] BencodeError),
    #[error("the resume file is malformed: {0}")]
    Malformed(&'static str),
    #[error("the resume file's checksum does not match: it is corrupt")]
    Checksum,
    #[error("the resume file has version {0}, this program reads version {VERSION}")]
    Version(i64),
    #[error("the resume file is for torrent {found}, not {expected}")]
    OtherTorrent { expected: InfoHash, found: InfoHash },
    #[error("the resume file's {what} is {found}, the torrent's is {expected}")]
    Mismatch {
        what: &'static str,
        expected: u64,
        found: u64,
    },
}

/// What a resume file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeState {
    pub infohash: InfoHash,
    pub piece_length: u32,
    pub piece_count: u32,
    pub have: Bitfield,
    pub files: Vec<Option<FileStamp>>,
}

fn int(v: u64) -> OwnedValue {
    OwnedValue::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

impl ResumeState {
    pub fn encode(&self) -> Vec<u8> {
        let files = self
            .files
            .iter()
            .map(|f| match f {
                Some(s) => OwnedValue::List(vec![
                    int(s.length),
                    OwnedValue::Int(s.mtime_sec),
                    OwnedValue::Int(s.mtime_nsec),
                ]),
                None => OwnedValue::List(vec![]),
            })
            .collect();
        let state = OwnedValue::dict([
            ("version", OwnedValue::Int(VERSION)),
            ("infohash", OwnedValue::bytes(self.infohash.0)),
            ("piece length", int(self.piece_length.into())),
            ("piece count", int(self.piece_count.into())),
            ("have", OwnedValue::bytes(self.have.as_raw_slice())),
            ("files", OwnedValue::List(files)),
        ])
        .encode();
        let mut out = b"d5:state".to_vec();
        out.extend_from_slice(&state);
        out.extend_from_slice(b"4:sha120:");
        out.extend_from_slice(&Sha1::digest(&state));
        out.push(b'e');
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<ResumeState, ResumeRejected> {
        use ResumeRejected::Malformed;
        let top = bencode::decode(bytes)?;
        let top = top.as_dict().ok_or(Malformed("not a dictionary"))?;
        let raw = top.get_raw(b"state").ok_or(Malformed("no state"))?;
        let sum = top.get_bytes(b"sha1").ok_or(Malformed("no sha1"))?;
        if Sha1::digest(raw).as_slice() != sum {
            return Err(ResumeRejected::Checksum);
        }
        let d = top
            .get_dict(b"state")
            .ok_or(Malformed("state is not a dictionary"))?;
        let version = d.get_int(b"version").ok_or(Malformed("no version"))?;
        if version != VERSION {
            return Err(ResumeRejected::Version(version));
        }
        let ih = d
            .get_bytes(b"infohash")
            .and_then(|b| <[u8; 20]>::try_from(b).ok());
        let infohash = InfoHash(ih.ok_or(Malformed("bad infohash"))?);
        let u32_of = |k: &[u8], what| {
            d.get_int(k)
                .and_then(|v| u32::try_from(v).ok())
                .ok_or(Malformed(what))
        };
        let piece_length = u32_of(b"piece length", "bad piece length")?;
        let piece_count = u32_of(b"piece count", "bad piece count")?;
        let have_bytes = d.get_bytes(b"have").ok_or(Malformed("no have"))?;
        if have_bytes.len() as u64 != u64::from(piece_count).div_ceil(8) {
            return Err(Malformed("have has the wrong length"));
        }
        let mut have = Bitfield::from_slice(have_bytes);
        if have[piece_count as usize..].any() {
            return Err(Malformed("have has bits set past the last piece"));
        }
        have.truncate(piece_count as usize);
        let mut files = Vec::new();
        for f in d.get_list(b"files").ok_or(Malformed("no files"))? {
            let l = f.as_list().ok_or(Malformed("file entry is not a list"))?;
            files.push(match l {
                [] => None,
                [Value::Int(len), Value::Int(sec), Value::Int(nsec)] => Some(FileStamp {
                    length: u64::try_from(*len).map_err(|_| Malformed("negative file length"))?,
                    mtime_sec: *sec,
                    mtime_nsec: *nsec,
                }),
                _ => return Err(Malformed("bad file entry")),
            });
        }
        Ok(ResumeState {
            infohash,
            piece_length,
            piece_count,
            have,
            files,
        })
    }

    /// Write to `path` atomically: `<path>.tmp`, fsync, rename, fsync the directory.
    pub fn save_atomic(&self, path: &Path) -> Result<(), StorageError> {
        let tmp = tmp_path(path);
        let bytes = self.encode();
        let mut f = File::create(&tmp).map_err(|e| StorageError::from_io(e, "creating", &tmp))?;
        f.write_all(&bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| StorageError::from_io(e, "writing", &tmp))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(|e| StorageError::from_io(e, "renaming", path))?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| StorageError::from_io(e, "syncing", dir))
    }

    /// Read `path`: `Ok(None)` if there is no such file.
    pub fn load(path: &Path) -> Result<Option<ResumeState>, ResumeRejected> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ResumeRejected::Unreadable(e)),
        };
        if meta.len() > MAX_RESUME_BYTES {
            return Err(ResumeRejected::TooLarge);
        }
        let bytes = std::fs::read(path).map_err(ResumeRejected::Unreadable)?;
        ResumeState::decode(&bytes).map(Some)
    }

    /// Check that this state belongs to this torrent and layout.
    pub fn check_matches(
        &self,
        infohash: &InfoHash,
        storage: &Storage,
    ) -> Result<(), ResumeRejected> {
        let l = storage.layout();
        if self.infohash != *infohash {
            return Err(ResumeRejected::OtherTorrent {
                expected: *infohash,
                found: self.infohash,
            });
        }
        let checks = [
            (
                "piece length",
                l.piece_length().into(),
                self.piece_length.into(),
            ),
            (
                "piece count",
                l.piece_count().into(),
                self.piece_count.into(),
            ),
            ("file count", l.file_count() as u64, self.files.len() as u64),
        ];
        for (what, expected, found) in checks {
            if expected != found {
                return Err(ResumeRejected::Mismatch {
                    what,
                    expected,
                    found,
                });
            }
        }
        Ok(())
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// What to do at start: trust some pieces, re-check others; everything else is missing (to fetch).
#[derive(Debug)]
pub struct ResumePlan {
    /// Pieces the saved state vouches for (their files are unchanged since the save): have them, unread.
    pub trusted: Bitfield,
    /// Pieces whose data may be on disk but that nothing vouches for: hash them before trusting them.
    pub recheck: Vec<u32>,
    /// Why the resume file was ignored, if it was (then every piece whose files are present is re-checked).
    pub ignored: Option<ResumeRejected>,
    /// Whether a usable resume file was found.
    pub loaded: bool,
}

impl ResumePlan {
    /// The verified bitfield: trusted pieces plus those the recheck (`rechecked`) found correct.
    pub fn finish(&self, rechecked: &Bitfield) -> Bitfield {
        let mut out = self.trusted.clone();
        for p in &self.recheck {
            if rechecked.get(*p as usize).is_some_and(|b| *b) {
                out.set(*p as usize, true);
            }
        }
        out
    }
}

/// Decide, from the resume file at `path` and the files on disk now, which pieces to trust and which to re-check.
pub fn plan_resume(
    path: &Path,
    infohash: &InfoHash,
    storage: &Storage,
) -> Result<ResumePlan, StorageError> {
    let layout = storage.layout();
    let now = stamps(storage)?;
    let (state, ignored) = match ResumeState::load(path) {
        Ok(Some(s)) => match s.check_matches(infohash, storage) {
            Ok(()) => (Some(s), None),
            Err(why) => (None, Some(why)),
        },
        Ok(None) => (None, None),
        Err(why) => (None, Some(why)),
    };
    // A piece can only be valid if each file it touches exists and is long enough.
    let present = |piece: u32| {
        layout.piece_segments(piece).is_ok_and(|mut segs| {
            segs.all(|s| now[s.file].is_some_and(|st| st.length >= s.offset + u64::from(s.len)))
        })
    };
    let n = layout.piece_count();
    let mut trusted = Bitfield::repeat(false, n as usize);
    let mut recheck = Vec::new();
    match &state {
        Some(s) => {
            for piece in s.have.iter_ones().map(|p| p as u32) {
                if layout
                    .piece_files(piece)
                    .all(|f| s.files[f].is_some() && s.files[f] == now[f])
                {
                    trusted.set(piece as usize, true);
                } else if present(piece) {
                    recheck.push(piece);
                }
            }
        }
        None => recheck.extend((0..n).filter(|&p| present(p))),
    }
    Ok(ResumePlan {
        trusted,
        recheck,
        ignored,
        loaded: state.is_some(),
    })
}

/// At start: plan, re-check on all cores, and return the verified bitfield with the plan (for reporting).
pub fn resume(
    path: &Path,
    infohash: &InfoHash,
    storage: &Storage,
    hashes: &[PieceHash],
) -> Result<(Bitfield, ResumePlan), StorageError> {
    let plan = plan_resume(path, infohash, storage)?;
    let rechecked = recheck(storage, hashes, &plan.recheck)?;
    Ok((plan.finish(&rechecked), plan))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ResumeState {
        let mut have = Bitfield::repeat(false, 11);
        have.set(0, true);
        have.set(10, true);
        ResumeState {
            infohash: InfoHash([7; 20]),
            piece_length: 16384,
            piece_count: 11,
            have,
            files: vec![
                Some(FileStamp {
                    length: 5,
                    mtime_sec: 1_700_000_000,
                    mtime_nsec: 123,
                }),
                None,
            ],
        }
    }

    #[test]
    fn round_trips_and_rejects_corruption() {
        let s = sample();
        let bytes = s.encode();
        assert_eq!(ResumeState::decode(&bytes).unwrap(), s);
        // Every single-byte flip is rejected, never accepted as another state, never a panic.
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            assert!(ResumeState::decode(&b).is_err(), "flip at {i} accepted");
        }
        for cut in 0..bytes.len() {
            assert!(ResumeState::decode(&bytes[..cut]).is_err());
        }
        assert!(matches!(
            ResumeState::decode(b"de"),
            Err(ResumeRejected::Malformed(_))
        ));
    }

    #[test]
    fn rejects_spare_bits_and_wrong_version() {
        let mut s = sample();
        s.have.resize(16, false);
        s.have.set(15, true); // encode writes 2 bytes with a bit past piece 10
        assert!(matches!(
            ResumeState::decode(&s.encode()),
            Err(ResumeRejected::Malformed(_))
        ));
        let state = OwnedValue::dict([("version", OwnedValue::Int(9))]).encode();
        let mut out = b"d5:state".to_vec();
        out.extend_from_slice(&state);
        out.extend_from_slice(b"4:sha120:");
        out.extend_from_slice(&Sha1::digest(&state));
        out.push(b'e');
        assert!(matches!(
            ResumeState::decode(&out),
            Err(ResumeRejected::Version(9))
        ));
    }

    #[test]
    fn saves_atomically_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.resume");
        assert!(ResumeState::load(&path).unwrap().is_none());
        sample().save_atomic(&path).unwrap();
        assert_eq!(ResumeState::load(&path).unwrap().unwrap(), sample());
        assert!(!tmp_path(&path).exists());
        std::fs::write(&path, b"garbage").unwrap();
        assert!(matches!(
            ResumeState::load(&path),
            Err(ResumeRejected::NotBencode(_))
        ));
    }
}

//! Piece verification: SHA-1 of a piece's bytes against its hash from the torrent, from a buffer or read back
//! from disk in bounded chunks (never the whole file, at most [`CHUNK`] bytes of buffer per thread).
//!
//! Sync functions for blocking threads; `*_async` wrappers that run them on tokio's blocking pool
//! (`spawn_blocking`), never on the reactor; and [`recheck`], a full (or partial) recheck spread across cores
//! that returns the bitfield of pieces whose data on disk is correct. Missing or short files make a piece
//! invalid, not an error; other IO errors (permission, IO failure) are returned.

use super::disk::{Storage, StorageError};
use bitvec::prelude::{BitVec, Msb0};
use sha1::{Digest, Sha1};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Verified-piece bitfield, wire order (BEP 3: high bit of byte 0 is piece 0).
pub type Bitfield = BitVec<u8, Msb0>;
/// A piece's SHA-1 from the torrent's `pieces` string.
pub type PieceHash = [u8; 20];

/// Read size when hashing from disk.
pub const CHUNK: usize = 256 * 1024;

/// SHA-1 of `data`.
pub fn sha1(data: &[u8]) -> PieceHash {
    Sha1::digest(data).into()
}

/// Whether `data` hashes to `expected`.
pub fn hash_matches(data: &[u8], expected: &PieceHash) -> bool {
    sha1(data) == *expected
}

/// SHA-1 of piece `piece` as it is on disk, read in chunks of at most [`CHUNK`] bytes into `scratch`.
pub fn hash_piece(
    storage: &Storage,
    piece: u32,
    scratch: &mut Vec<u8>,
) -> Result<PieceHash, StorageError> {
    let mut hasher = Sha1::new();
    for seg in storage.layout().piece_segments(piece)? {
        let mut done = 0u64;
        while done < u64::from(seg.len) {
            let n = (u64::from(seg.len) - done).min(CHUNK as u64) as usize;
            scratch.resize(n, 0);
            storage.read_file_at(seg.file, seg.offset + done, &mut scratch[..n])?;
            hasher.update(&scratch[..n]);
            done += n as u64;
        }
    }
    Ok(hasher.finalize().into())
}

/// Whether piece `piece` on disk hashes to `expected` (missing or short data: `Ok(false)`).
pub fn verify_piece(
    storage: &Storage,
    piece: u32,
    expected: &PieceHash,
) -> Result<bool, StorageError> {
    verify_with(storage, piece, expected, &mut Vec::new())
}

fn verify_with(
    storage: &Storage,
    piece: u32,
    expected: &PieceHash,
    scratch: &mut Vec<u8>,
) -> Result<bool, StorageError> {
    match hash_piece(storage, piece, scratch) {
        Ok(h) => Ok(h == *expected),
        Err(e) if e.is_missing_data() => Ok(false),
        Err(e) => Err(e),
    }
}

/// [`verify_piece`] on tokio's blocking pool.
pub async fn verify_piece_async(
    storage: Arc<Storage>,
    piece: u32,
    expected: PieceHash,
) -> Result<bool, StorageError> {
    tokio::task::spawn_blocking(move || verify_piece(&storage, piece, &expected))
        .await
        .map_err(join_err)?
}

/// Hash a whole piece held in memory on tokio's blocking pool; gives the buffer back with the verdict so the
/// caller can write it (record the piece as verified only once that write has returned).
pub async fn verify_buffer_async(data: Vec<u8>, expected: PieceHash) -> (Vec<u8>, bool) {
    let res = tokio::task::spawn_blocking(move || {
        let ok = hash_matches(&data, &expected);
        (data, ok)
    })
    .await;
    // The closure cannot panic; if the pool is shutting down, report "not verified".
    res.unwrap_or_default()
}

fn join_err(e: tokio::task::JoinError) -> StorageError {
    StorageError::Io {
        op: "verifying",
        path: Default::default(),
        source: std::io::Error::other(e.to_string()),
    }
}

/// Threads to use for a recheck: the machine's cores.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Recheck `pieces` against `hashes` on `threads` threads; returns a bitfield of `piece_count` bits with the
/// pieces found correct set. `on_piece(piece, ok)` is called from the worker threads as each piece finishes.
pub fn recheck_with(
    storage: &Storage,
    hashes: &[PieceHash],
    pieces: &[u32],
    threads: usize,
    on_piece: &(dyn Fn(u32, bool) + Sync),
) -> Result<Bitfield, StorageError> {
    let layout = storage.layout();
    layout.check_hash_count(hashes.len())?;
    let mut out = Bitfield::repeat(false, layout.piece_count() as usize);
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let first_err: Mutex<Option<StorageError>> = Mutex::new(None);
    let good: Mutex<Vec<u32>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, pieces.len().max(1)) {
            s.spawn(|| {
                let mut scratch = Vec::new();
                let mut mine = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let Some(&piece) = pieces.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        break;
                    };
                    let Some(expected) = hashes.get(piece as usize) else {
                        continue; // a piece that does not exist is not valid
                    };
                    match verify_with(storage, piece, expected, &mut scratch) {
                        Ok(ok) => {
                            if ok {
                                mine.push(piece);
                            }
                            on_piece(piece, ok);
                        }
                        Err(e) => {
                            stop.store(true, Ordering::Relaxed);
                            first_err
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .get_or_insert(e);
                        }
                    }
                }
                good.lock().unwrap_or_else(|p| p.into_inner()).extend(mine);
            });
        }
    });
    if let Some(e) = first_err.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    for p in good.into_inner().unwrap_or_else(|p| p.into_inner()) {
        out.set(p as usize, true);
    }
    Ok(out)
}

/// [`recheck_with`] on all cores, without progress.
pub fn recheck(
    storage: &Storage,
    hashes: &[PieceHash],
    pieces: &[u32],
) -> Result<Bitfield, StorageError> {
    recheck_with(storage, hashes, pieces, default_threads(), &|_, _| {})
}

/// Every piece of the torrent, for a full recheck.
pub fn all_pieces(storage: &Storage) -> Vec<u32> {
    (0..storage.layout().piece_count()).collect()
}

/// [`recheck`] on tokio's blocking pool.
pub async fn recheck_async(
    storage: Arc<Storage>,
    hashes: Arc<[PieceHash]>,
    pieces: Vec<u32>,
) -> Result<Bitfield, StorageError> {
    tokio::task::spawn_blocking(move || recheck(&storage, &hashes, &pieces))
        .await
        .map_err(join_err)?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(dir: &std::path::Path) -> (Storage, Vec<u8>, Vec<PieceHash>) {
        let files = [("a", 300_000), ("b", 0), ("c", 500_001)];
        let s = crate::storage::test_storage(dir, &files, 1 << 18);
        let data: Vec<u8> = (0..800_001u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let hashes = data.chunks(1 << 18).map(sha1).collect();
        (s, data, hashes)
    }

    #[test]
    fn recheck_finds_exactly_the_good_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let (s, data, hashes) = setup(dir.path());
        s.prepare().unwrap();
        for (i, chunk) in data.chunks(1 << 18).enumerate() {
            if i != 2 {
                s.write_piece(i as u32, chunk).unwrap();
            }
        }
        let mut bad = data[..1 << 18].to_vec();
        bad[1000] ^= 1;
        s.write_piece(0, &bad).unwrap();
        let bits = recheck_with(&s, &hashes, &all_pieces(&s), 2, &|_, _| {}).unwrap();
        assert_eq!(
            bits.iter().by_vals().collect::<Vec<_>>(),
            vec![false, true, false, true]
        );
        assert!(verify_piece(&s, 1, &hashes[1]).unwrap());
        assert!(!verify_piece(&s, 1, &hashes[0]).unwrap());
    }

    #[tokio::test]
    async fn async_wrappers_agree() {
        let dir = tempfile::tempdir().unwrap();
        let (s, data, hashes) = setup(dir.path());
        let piece = data[1 << 18..2 << 18].to_vec();
        let (piece, ok) = verify_buffer_async(piece, hashes[1]).await;
        assert!(ok);
        s.write_piece(1, &piece).unwrap();
        let s = Arc::new(s);
        assert!(verify_piece_async(s.clone(), 1, hashes[1]).await.unwrap());
        assert!(!verify_piece_async(s.clone(), 0, hashes[0]).await.unwrap());
        let bits = recheck_async(s, hashes.into(), vec![0, 1, 3])
            .await
            .unwrap();
        assert_eq!(bits.count_ones(), 1);
        assert!(bits[1]);
    }
}

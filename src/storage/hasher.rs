//! Parallel piece hashing of files on disk: used by `qswarm create` and reusable to verify existing data before
//! seeding. The files are the torrent's data laid end to end in torrent order; the result is the SHA-1 of every
//! piece, in order.
//!
//! Shape: one reader thread streams the files sequentially (large `read`s, the access pattern disks and the page
//! cache like best) into a fixed pool of buffers; worker threads (one per core) take filled buffers from a bounded
//! channel, SHA-1 the pieces in them (the `sha1` crate uses the CPU's SHA extensions when present) and hand the
//! buffers back. Memory is bounded by the pool: a few MiB, never the file. A job holds whole pieces (several small
//! pieces per job so that 16 KiB pieces do not cost a channel round trip each).

use sha1::{Digest, Sha1};
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Mutex;
use thiserror::Error;

/// Bytes read per job (rounded to whole pieces, at least one piece).
pub const JOB_BYTES: u64 = 1024 * 1024;
/// Soft cap on the memory of the buffer pool; the pool always has at least `workers + 1` buffers.
pub const POOL_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, Error)]
pub enum HashError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is shorter than expected ({expected} bytes): was it changed while being read?"
    )]
    Shrunk { path: PathBuf, expected: u64 },
    #[error("piece length must be non-zero")]
    ZeroPieceLength,
    #[error("the total length of the files overflows")]
    Overflow,
}

/// One job: pieces `first..` in `buf[..len]`.
struct Job {
    first: usize,
    buf: Vec<u8>,
    len: usize,
}

/// Hash the pieces of `files` (paths with the lengths the torrent gives them, in torrent order) laid end to end,
/// cut into pieces of `piece_length` (the last one may be short). `threads` is the number of hashing threads
/// (0 = one per core). `progress` is called with the number of bytes hashed each time a job completes.
/// A file shorter than its length is an error; bytes past its length are ignored.
pub fn hash_pieces(
    files: &[(PathBuf, u64)],
    piece_length: u64,
    threads: usize,
    progress: &mut dyn FnMut(u64),
) -> Result<Vec<[u8; 20]>, HashError> {
    if piece_length == 0 {
        return Err(HashError::ZeroPieceLength);
    }
    let total = files
        .iter()
        .try_fold(0u64, |a, (_, l)| a.checked_add(*l))
        .ok_or(HashError::Overflow)?;
    let piece_count =
        usize::try_from(total.div_ceil(piece_length)).map_err(|_| HashError::Overflow)?;
    let workers = match threads {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let pieces_per_job = (JOB_BYTES / piece_length).max(1);
    let job_cap =
        usize::try_from(pieces_per_job * piece_length).map_err(|_| HashError::Overflow)?;
    let buffers = ((POOL_BYTES / job_cap as u64) as usize).clamp(workers + 1, 2 * workers + 2);

    let (free_tx, free_rx) = sync_channel::<Vec<u8>>(buffers);
    let (job_tx, job_rx) = sync_channel::<Job>(buffers);
    let (done_tx, done_rx) = sync_channel::<(Job, Vec<[u8; 20]>)>(buffers);
    let job_rx = Mutex::new(job_rx);
    let mut hashes = vec![[0u8; 20]; piece_count];
    let pl = piece_length as usize;

    std::thread::scope(|s| {
        let reader = s.spawn(move || {
            let mut free = free_rx;
            read_jobs(
                files,
                job_cap,
                pieces_per_job as usize,
                buffers,
                &mut free,
                |job| job_tx.send(job).is_ok(),
            )
        });
        for _ in 0..workers {
            let done_tx = done_tx.clone();
            let job_rx = &job_rx;
            s.spawn(move || loop {
                let job = match job_rx.lock().map(|rx| rx.recv()) {
                    Ok(Ok(job)) => job,
                    _ => return,
                };
                let out = job.buf[..job.len]
                    .chunks(pl)
                    .map(|piece| Sha1::digest(piece).into())
                    .collect();
                if done_tx.send((job, out)).is_err() {
                    return;
                }
            });
        }
        drop(done_tx);
        for (job, out) in done_rx {
            hashes[job.first..job.first + out.len()].copy_from_slice(&out);
            progress(job.len as u64);
            // The reader may have stopped (error or end); then the buffer is simply dropped.
            let _ = free_tx.send(job.buf);
        }
        drop(free_tx);
        reader
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })?;
    Ok(hashes)
}

/// The reader: fill buffers from the pool with consecutive bytes of `files`, pass each full (or final) one on.
fn read_jobs(
    files: &[(PathBuf, u64)],
    job_cap: usize,
    pieces_per_job: usize,
    buffers: usize,
    free: &mut Receiver<Vec<u8>>,
    mut send: impl FnMut(Job) -> bool,
) -> Result<(), HashError> {
    let mut made = 0;
    let next_buf = |made: &mut usize| -> Option<Vec<u8>> {
        if *made < buffers {
            *made += 1;
            Some(vec![0u8; job_cap])
        } else {
            free.recv().ok()
        }
    };
    let Some(mut buf) = next_buf(&mut made) else {
        return Ok(());
    };
    let mut filled = 0usize;
    let mut first = 0usize;
    for (path, length) in files {
        let mut file = File::open(path).map_err(|source| HashError::Io {
            path: path.clone(),
            source,
        })?;
        advise_sequential(&file);
        let mut left = *length;
        while left > 0 {
            let want = (job_cap - filled).min(usize::try_from(left).unwrap_or(usize::MAX));
            read_full(&mut file, &mut buf[filled..filled + want], path, *length)?;
            filled += want;
            left -= want as u64;
            if filled == job_cap {
                if !send(Job {
                    first,
                    buf,
                    len: filled,
                }) {
                    return Ok(());
                }
                first += pieces_per_job;
                filled = 0;
                buf = match next_buf(&mut made) {
                    Some(b) => b,
                    None => return Ok(()),
                };
            }
        }
    }
    if filled > 0 {
        send(Job {
            first,
            buf,
            len: filled,
        });
    }
    Ok(())
}

fn read_full(
    file: &mut File,
    mut dst: &mut [u8],
    path: &Path,
    expected: u64,
) -> Result<(), HashError> {
    while !dst.is_empty() {
        match file.read(dst) {
            Ok(0) => {
                return Err(HashError::Shrunk {
                    path: path.to_path_buf(),
                    expected,
                })
            }
            Ok(n) => dst = &mut dst[n..],
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(HashError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
    Ok(())
}

/// Tell the kernel we read front to back (larger read-ahead on a cold cache). Advisory: failures are ignored.
fn advise_sequential(file: &File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: posix_fadvise only reads its integer arguments; the descriptor is open for this call.
        unsafe {
            libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn reference(data: &[u8], pl: usize) -> Vec<[u8; 20]> {
        data.chunks(pl).map(|c| Sha1::digest(c).into()).collect()
    }

    #[test]
    fn matches_a_straight_hash_across_file_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let sizes = [0usize, 1, 16384, 40000, 3 * 1024 * 1024 + 5, 0, 7];
        let mut all = Vec::new();
        let mut files = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            let data: Vec<u8> = (0..n).map(|j| (j * 31 + i * 7) as u8).collect();
            let p = dir.path().join(format!("f{i}"));
            File::create(&p).unwrap().write_all(&data).unwrap();
            all.extend_from_slice(&data);
            files.push((p, n as u64));
        }
        for (pl, threads) in [
            (16384usize, 1usize),
            (16384, 3),
            (65536, 2),
            (4 * 1024 * 1024, 0),
        ] {
            let mut seen = 0;
            let got = hash_pieces(&files, pl as u64, threads, &mut |n| seen += n).unwrap();
            assert_eq!(got, reference(&all, pl), "piece length {pl}");
            assert_eq!(seen, all.len() as u64);
        }
    }

    #[test]
    fn reports_missing_and_short_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("short");
        File::create(&p).unwrap().write_all(&[1u8; 100]).unwrap();
        let r = hash_pieces(&[(p.clone(), 101)], 16384, 2, &mut |_| {});
        assert!(matches!(r, Err(HashError::Shrunk { .. })), "{r:?}");
        let r = hash_pieces(&[(dir.path().join("nope"), 1)], 16384, 2, &mut |_| {});
        assert!(matches!(r, Err(HashError::Io { .. })), "{r:?}");
        assert!(matches!(
            hash_pieces(&[(p, 1)], 0, 1, &mut |_| {}),
            Err(HashError::ZeroPieceLength)
        ));
    }
}

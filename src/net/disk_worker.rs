//! The disk side of one torrent task: a dedicated thread that performs the machine's `WriteBlock`,
//! `VerifyPiece` and `ReadBlock` actions in order (so a piece's writes land before its verification), off the
//! async reactor — hashing a piece as its blocks are written when they come in order, so verification need
//! not read it back — fed by a bounded channel of job batches (one batch per round of the torrent task, so the
//! thread is woken once per batch, not once per 16 KiB block; back-pressure on peers when the disk is slow), and
//! answering in batches too; and a saver thread
//! that owns the [`ResumeRecorder`] and writes the resume state at most every few seconds, so its fsyncs never
//! stall the writes.

use crate::storage::{PieceHash, ResumeRecorder, Storage, StorageError};
use crate::swarm::PeerKey;
use crate::wire::BlockRef;
use bytes::Bytes;
use sha1::{Digest, Sha1};
use std::collections::HashMap;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Job batches queued before the torrent task waits for the disk. A batch is what one round of the torrent
/// task produced (at most a few dozen blocks: the task handles its inbox in rounds of 64 messages), so this bounds
/// the blocks waiting for the disk to a few MiB.
pub const DISK_QUEUE: usize = 3;

/// One job for the disk thread.
#[derive(Debug)]
pub enum DiskJob {
    Write { block: BlockRef, data: Bytes },
    Verify { piece: u32 },
    Read { peer: PeerKey, block: BlockRef },
}

/// What the disk thread reports back.
#[derive(Debug)]
pub enum DiskDone {
    Read {
        peer: PeerKey,
        block: BlockRef,
        data: Result<Bytes, StorageError>,
    },
    Verified {
        piece: u32,
        ok: bool,
    },
    /// A write or verification failed for a reason other than bad data (disk full, permission, ...): fatal.
    Failed(StorageError),
}

enum SaverMsg {
    Piece(u32),
    Flush(oneshot::Sender<Result<(), StorageError>>),
}

/// Handles on the disk and saver threads of one torrent.
pub struct Disk {
    pub jobs: mpsc::Sender<Vec<DiskJob>>,
    /// Taken by the torrent task's loop; the results of one batch come together.
    pub done: Option<mpsc::UnboundedReceiver<Vec<DiskDone>>>,
    saver: std_mpsc::Sender<SaverMsg>,
}

impl Disk {
    /// Start both threads. `recorder` is `None` when nothing should be saved (e.g. a seed of data just hashed
    /// with no place for state).
    pub fn start(
        storage: Arc<Storage>,
        hashes: Arc<Vec<PieceHash>>,
        recorder: Option<ResumeRecorder>,
        save_interval: Duration,
    ) -> Disk {
        let (jobs, mut job_rx) = mpsc::channel::<Vec<DiskJob>>(DISK_QUEUE);
        let (done_tx, done) = mpsc::unbounded_channel();
        let (saver, saver_rx) = std_mpsc::channel::<SaverMsg>();
        let st = storage.clone();
        let saver_tx = saver.clone();
        std::thread::Builder::new()
            .name("qswarm-disk".into())
            .spawn(move || {
                let mut scratch = Vec::new();
                let mut hashing = HashMap::new();
                while let Some(batch) = job_rx.blocking_recv() {
                    let out: Vec<DiskDone> = batch
                        .into_iter()
                        .filter_map(|job| {
                            run_job(&st, &hashes, job, &mut scratch, &mut hashing, &saver_tx)
                        })
                        .collect();
                    if !out.is_empty() && done_tx.send(out).is_err() {
                        return;
                    }
                }
            })
            .expect("spawning the disk thread");
        std::thread::Builder::new()
            .name("qswarm-saver".into())
            .spawn(move || saver_loop(storage, recorder, saver_rx, save_interval))
            .expect("spawning the resume saver thread");
        Disk {
            jobs,
            done: Some(done),
            saver,
        }
    }

    /// Save the resume state now (everything verified so far) and wait for it.
    pub async fn flush(&self) -> Result<(), StorageError> {
        let (tx, rx) = oneshot::channel();
        if self.saver.send(SaverMsg::Flush(tx)).is_err() {
            return Ok(());
        }
        rx.await.unwrap_or(Ok(()))
    }
}

/// A piece being hashed as its blocks are written, while they come in order (the usual case); a block out of
/// order makes the piece fall back to hashing what is on disk at verification.
struct Running {
    sha: Sha1,
    next: u32,
    in_order: bool,
}

fn run_job(
    storage: &Storage,
    hashes: &[PieceHash],
    job: DiskJob,
    scratch: &mut Vec<u8>,
    hashing: &mut HashMap<u32, Running>,
    saver: &std_mpsc::Sender<SaverMsg>,
) -> Option<DiskDone> {
    match job {
        DiskJob::Write { block, data } => {
            if let Err(e) = storage.write_block(block.piece, block.offset, &data) {
                return Some(DiskDone::Failed(e));
            }
            let r = hashing.entry(block.piece).or_insert_with(|| Running {
                sha: Sha1::new(),
                next: 0,
                in_order: true,
            });
            if r.in_order && block.offset == r.next {
                r.sha.update(&data);
                r.next += block.length;
            } else {
                r.in_order = false;
            }
            None
        }
        DiskJob::Verify { piece } => {
            let expected = hashes.get(piece as usize)?;
            let full = storage.layout().piece_len(piece);
            let hashed = match hashing.remove(&piece) {
                Some(r) if r.in_order && Some(r.next) == full => Ok(r.sha.finalize().into()),
                _ => crate::storage::verify::hash_piece(storage, piece, scratch),
            };
            match hashed {
                Ok(h) => {
                    let ok = h == *expected;
                    if ok {
                        let _ = saver.send(SaverMsg::Piece(piece));
                    }
                    Some(DiskDone::Verified { piece, ok })
                }
                Err(e) if e.is_missing_data() => Some(DiskDone::Verified { piece, ok: false }),
                Err(e) => Some(DiskDone::Failed(e)),
            }
        }
        DiskJob::Read { peer, block } => {
            let mut buf = vec![0u8; block.length as usize];
            let data = storage
                .read_block(block.piece, block.offset, &mut buf)
                .map(|()| Bytes::from(buf));
            Some(DiskDone::Read { peer, block, data })
        }
    }
}

fn saver_loop(
    storage: Arc<Storage>,
    mut recorder: Option<ResumeRecorder>,
    rx: std_mpsc::Receiver<SaverMsg>,
    interval: Duration,
) {
    let tick = interval.max(Duration::from_millis(100));
    loop {
        let msg = rx.recv_timeout(tick);
        let Some(rec) = recorder.as_mut() else {
            match msg {
                Ok(SaverMsg::Flush(tx)) => {
                    let _ = tx.send(Ok(()));
                    continue;
                }
                Ok(_) | Err(std_mpsc::RecvTimeoutError::Timeout) => continue,
                Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
            }
        };
        match msg {
            Ok(SaverMsg::Piece(p)) => rec.piece_done(p),
            Ok(SaverMsg::Flush(tx)) => {
                let r = if rec.pending() > 0 {
                    rec.save(&storage, Instant::now())
                } else {
                    Ok(())
                };
                let _ = tx.send(r);
                continue;
            }
            Err(std_mpsc::RecvTimeoutError::Timeout) => {}
            Err(std_mpsc::RecvTimeoutError::Disconnected) => {
                if rec.pending() > 0 {
                    if let Err(e) = rec.save(&storage, Instant::now()) {
                        tracing::warn!("saving resume state: {e}");
                    }
                }
                return;
            }
        }
        if let Err(e) = rec.save_if_due(&storage, Instant::now()) {
            tracing::warn!("saving resume state: {e}");
        }
    }
}

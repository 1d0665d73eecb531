//! The disk side of one torrent task: a dedicated thread that performs the machine's `WriteBlock`,
//! `VerifyPiece` and `ReadBlock` actions in order (so a piece's writes land before its verification), off the
//! async reactor — hashing a piece as its blocks are written (those that arrive ahead of a gap held until it
//! fills, within a bound), so verification need not read it back — fed by a bounded channel of job batches (one batch per round of the torrent task, so the
//! thread is woken once per batch, not once per 16 KiB block; back-pressure on peers when the disk is slow), and
//! answering in batches too. Contiguous blocks of a batch are written with one `pwritev` (of the slices of the
//! received datagrams they arrived in: no copy in between); a peer reading a piece
//! in order gets the rest of it read ahead in one `pread` (blocks are slices of that buffer, not copies); reads
//! go into buffers that are not zero-filled first. A saver thread owns the [`ResumeRecorder`] and writes the
//! resume state at most every few seconds, so its fsyncs never stall the writes; it takes the verified pieces
//! from a shared list when it wakes (a few times per save interval), not one message per piece.

use crate::net::buf_pool::BufPool;
use crate::storage::{PieceHash, ResumeRecorder, Storage, StorageError};
use crate::swarm::PeerKey;
use crate::wire::{BlockRef, PieceData};
use bytes::Bytes;
use sha1::{Digest, Sha1};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Job batches queued before the torrent task waits for the disk. A batch is what one round of the torrent
/// task produced (at most a few dozen blocks: the task handles its inbox in rounds of 64 messages), so this bounds
/// the blocks waiting for the disk to a few MiB.
pub const DISK_QUEUE: usize = 3;

/// One job for the disk thread.
#[derive(Debug)]
pub enum DiskJob {
    Write { block: BlockRef, data: PieceData },
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
        let verified = Arc::new(Mutex::new(Vec::new()));
        let saver_verified = verified.clone();
        std::thread::Builder::new()
            .name("qswarm-disk".into())
            .spawn(move || {
                let mut w = Worker {
                    storage: st,
                    hashes,
                    scratch: Vec::new(),
                    hashing: HashMap::new(),
                    held: 0,
                    verified,
                    ahead: VecDeque::new(),
                    pool: BufPool::new(READ_AHEAD as usize, READ_AHEAD_IDLE),
                    last_read: HashMap::new(),
                    _saver: saver_tx,
                };
                while let Some(batch) = job_rx.blocking_recv() {
                    let mut out = Vec::new();
                    w.run_batch(batch, &mut out);
                    if !out.is_empty() && done_tx.send(out).is_err() {
                        return;
                    }
                }
            })
            .expect("spawning the disk thread");
        std::thread::Builder::new()
            .name("qswarm-saver".into())
            .spawn(move || saver_loop(storage, recorder, saver_verified, saver_rx, save_interval))
            .expect("spawning the resume saver thread");
        Disk {
            jobs,
            done: Some(done),
            saver,
        }
    }

    /// Ask for the resume state to be saved now, without waiting for it (a failure is logged; the next
    /// [`Disk::flush`] tries again and reports it).
    pub fn flush_in_background(&self) {
        let (tx, rx) = oneshot::channel();
        if self.saver.send(SaverMsg::Flush(tx)).is_ok() {
            tokio::spawn(async move {
                if let Ok(Err(e)) = rx.await {
                    tracing::warn!("saving the resume state: {e}");
                }
            });
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

/// A piece being hashed as its blocks are written: in offset order, blocks that arrive ahead of the next
/// offset to hash (several peers sending parts of one piece) are held (copied: a received block shares its
/// allocation with the frames around it, which holding it would pin) until the gap before them fills. A block written again over hashed bytes, or more held bytes than
/// [`HELD_MAX`] across pieces, makes the piece fall back to hashing what is on disk at verification.
struct Running {
    sha: Sha1,
    next: u32,
    in_order: bool,
    held: BTreeMap<u32, Vec<u8>>,
}

/// Most bytes of written blocks held for in-order hashing, across all pieces.
const HELD_MAX: usize = 1 << 20;

/// Most bytes read ahead of a peer's request that reads a piece in order.
const READ_AHEAD: u32 = 128 * 1024;
/// Read-ahead buffers kept (each at most [`READ_AHEAD`]); blocks served from one share its allocation.
const READ_AHEAD_SLOTS: usize = 4;
/// Read-ahead buffers kept for reuse once every block served from them is gone (2 MiB).
const READ_AHEAD_IDLE: usize = 16;
/// Peers whose last read position is remembered; past this the memory is reset (it only steers read-ahead).
const READ_POSITIONS: usize = 256;

/// The disk thread's state.
struct Worker {
    storage: Arc<Storage>,
    hashes: Arc<Vec<PieceHash>>,
    scratch: Vec<u8>,
    hashing: HashMap<u32, Running>,
    /// Bytes held in `hashing` (at most [`HELD_MAX`]).
    held: usize,
    /// Pieces verified good, for the saver (which takes them when it saves: no wake-up per piece).
    verified: Arc<Mutex<Vec<u32>>>,
    /// Read-ahead buffers: (piece, offset of the first byte, bytes), oldest first.
    ahead: VecDeque<(u32, u32, Bytes)>,
    /// Where read-ahead buffers come from and go back to.
    pool: BufPool,
    /// Where each peer's last read ended (piece, offset): a request starting there reads ahead.
    last_read: HashMap<PeerKey, (u32, u32)>,
    /// Held so the saver, which stops when every sender is gone, outlives this thread's last verification.
    _saver: std_mpsc::Sender<SaverMsg>,
}

impl Worker {
    /// Run one batch in order (a piece's writes land before its verification), appending the results.
    /// Writes of contiguous blocks of one piece that follow each other in the batch go to disk together.
    fn run_batch(&mut self, batch: Vec<DiskJob>, out: &mut Vec<DiskDone>) {
        let mut jobs = batch.into_iter().peekable();
        let mut run: Vec<(BlockRef, PieceData)> = Vec::new();
        while let Some(job) = jobs.next() {
            match job {
                DiskJob::Write { block, data } => {
                    let mut end = block.offset.checked_add(data.len() as u32);
                    run.clear();
                    run.push((block, data));
                    while let Some(DiskJob::Write { block: b, data: d }) = jobs.peek() {
                        if b.piece != block.piece || Some(b.offset) != end {
                            break;
                        }
                        end = b.offset.checked_add(d.len() as u32);
                        if let Some(DiskJob::Write { block: b, data: d }) = jobs.next() {
                            run.push((b, d));
                        }
                    }
                    if let Err(e) = self.write_run(&run) {
                        out.push(DiskDone::Failed(e));
                    }
                }
                DiskJob::Verify { piece } => out.extend(self.verify(piece)),
                DiskJob::Read { peer, block } => {
                    let data = self.read(peer, block);
                    out.push(DiskDone::Read { peer, block, data });
                }
            }
        }
    }

    /// Write contiguous blocks of one piece (one `pwritev` of every slice of every block, as received) and hash
    /// them if they continue the piece in order.
    fn write_run(&mut self, run: &[(BlockRef, PieceData)]) -> Result<(), StorageError> {
        let Some((first, _)) = run.first() else {
            return Ok(());
        };
        let bufs: Vec<&[u8]> = run
            .iter()
            .flat_map(|(_, d)| d.chunks().map(|c| c.as_ref()))
            .collect();
        self.storage.write_run(first.piece, first.offset, &bufs)?;
        self.ahead.retain(|(p, _, _)| *p != first.piece);
        let r = self.hashing.entry(first.piece).or_insert_with(|| Running {
            sha: Sha1::new(),
            next: 0,
            in_order: true,
            held: BTreeMap::new(),
        });
        for (block, data) in run {
            if !r.in_order {
                break;
            }
            if block.offset == r.next {
                data.chunks().for_each(|c| r.sha.update(c));
                r.next += data.len() as u32;
                while let Some(d) = r.held.remove(&r.next) {
                    self.held -= d.len();
                    r.sha.update(&d);
                    r.next += d.len() as u32;
                }
            } else if block.offset > r.next && self.held + data.len() <= HELD_MAX {
                self.held += data.len();
                if let Some(old) = r.held.insert(block.offset, data.to_vec()) {
                    self.held -= old.len();
                }
            } else {
                r.in_order = false;
                self.held -= r.held.values().map(Vec::len).sum::<usize>();
                r.held.clear();
            }
        }
        Ok(())
    }

    fn verify(&mut self, piece: u32) -> Option<DiskDone> {
        let expected = self.hashes.get(piece as usize)?;
        let full = self.storage.layout().piece_len(piece);
        let running = self.hashing.remove(&piece);
        if let Some(r) = &running {
            self.held -= r.held.values().map(Vec::len).sum::<usize>();
        }
        let hashed = match running {
            Some(r) if r.in_order && r.held.is_empty() && Some(r.next) == full => {
                Ok(r.sha.finalize().into())
            }
            _ => crate::storage::verify::hash_piece(&self.storage, piece, &mut self.scratch),
        };
        match hashed {
            Ok(h) => {
                let ok = h == *expected;
                if ok {
                    self.verified
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(piece);
                }
                Some(DiskDone::Verified { piece, ok })
            }
            Err(e) if e.is_missing_data() => Some(DiskDone::Verified { piece, ok: false }),
            Err(e) => Some(DiskDone::Failed(e)),
        }
    }

    /// One block for `peer`: from a read-ahead buffer if one holds it; else, when the peer's previous read
    /// ended where this one starts (it reads the piece in order), read up to [`READ_AHEAD`] bytes to the end of
    /// the piece at once; else just the block. Blocks share the buffer they were read into (no copy).
    fn read(&mut self, peer: PeerKey, block: BlockRef) -> Result<Bytes, StorageError> {
        let (piece, off, len) = (block.piece, block.offset, block.length);
        let end = off.saturating_add(len);
        if self.last_read.len() >= READ_POSITIONS {
            self.last_read.clear();
        }
        let sequential = self.last_read.insert(peer, (piece, end)) == Some((piece, off));
        let hit = self.ahead.iter().find(|(p, start, b)| {
            *p == piece && *start <= off && end as usize <= *start as usize + b.len()
        });
        if let Some((_, start, b)) = hit {
            return Ok(b.slice((off - start) as usize..(end - start) as usize));
        }
        let piece_len = self.storage.layout().piece_len(piece).unwrap_or(0);
        let ahead_end = piece_len.min(off.saturating_add(READ_AHEAD));
        if !sequential || ahead_end <= end {
            return self.storage.read_vec(piece, off, len).map(Bytes::from);
        }
        let mut buf = self.pool.take();
        self.storage
            .read_into(&mut buf, piece, off, ahead_end - off)?;
        let b = self.pool.share(buf);
        let out = b.slice(..len as usize);
        if self.ahead.len() >= READ_AHEAD_SLOTS {
            self.ahead.pop_front();
        }
        self.ahead.push_back((piece, off, b));
        Ok(out)
    }
}

fn saver_loop(
    storage: Arc<Storage>,
    mut recorder: Option<ResumeRecorder>,
    verified: Arc<Mutex<Vec<u32>>>,
    rx: std_mpsc::Receiver<SaverMsg>,
    interval: Duration,
) {
    // Verified pieces are taken from the shared list at each wake-up (a few per save interval), not sent one
    // message (and one wake-up) per piece.
    let tick = (interval / 5).max(Duration::from_millis(100));
    let take = |rec: &mut ResumeRecorder| {
        let done = std::mem::take(&mut *verified.lock().unwrap_or_else(|p| p.into_inner()));
        for p in done {
            rec.piece_done(p);
        }
    };
    loop {
        let msg = rx.recv_timeout(tick);
        let Some(rec) = recorder.as_mut() else {
            match msg {
                Ok(SaverMsg::Flush(tx)) => {
                    let _ = tx.send(Ok(()));
                    continue;
                }
                Err(std_mpsc::RecvTimeoutError::Timeout) => {
                    verified.lock().unwrap_or_else(|p| p.into_inner()).clear();
                    continue;
                }
                Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
            }
        };
        take(rec);
        match msg {
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

#[cfg(test)]
mod tests;

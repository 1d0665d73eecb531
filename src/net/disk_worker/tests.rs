//! Unit tests of `disk_worker`.

use super::*;
use crate::storage::{FileEntry, StorageOptions};

const PIECE: u32 = 65536;
const BLOCK: u32 = 16384;

fn worker(dir: &std::path::Path, data: &[u8]) -> Worker {
    let files = [FileEntry {
        path: vec!["f".into()],
        length: data.len() as u64,
    }];
    let storage = Storage::new(dir, &files, PIECE, StorageOptions::default()).unwrap();
    let hashes = data
        .chunks(PIECE as usize)
        .map(crate::storage::verify::sha1)
        .collect();
    Worker {
        storage: Arc::new(storage),
        hashes: Arc::new(hashes),
        scratch: Vec::new(),
        hashing: HashMap::new(),
        held: 0,
        verified: Arc::new(Mutex::new(Vec::new())),
        ahead: VecDeque::new(),
        pool: BufPool::new(READ_AHEAD as usize, READ_AHEAD_IDLE),
        last_read: HashMap::new(),
        _saver: std_mpsc::channel().0,
    }
}

/// A write of block `i` of `piece`, received in up to three slices (cut at places that vary by block), as
/// from the transport.
fn write(data: &[u8], piece: u32, i: u32) -> DiskJob {
    let at = (piece * PIECE + i * BLOCK) as usize;
    let whole = Bytes::copy_from_slice(&data[at..at + BLOCK as usize]);
    let (a, b) = ((i * 977 + piece) % BLOCK, BLOCK - 1 - i * 3000);
    let (a, b) = (a.min(b) as usize, a.max(b) as usize);
    let mut parts = crate::wire::payload::PieceBuilder::new(whole.len());
    for r in [0..a, a..b, b..whole.len()] {
        parts.push(whole.slice(r));
    }
    DiskJob::Write {
        block: BlockRef {
            piece,
            offset: i * BLOCK,
            length: BLOCK,
        },
        data: parts.finish(),
    }
}

fn verdicts(out: &[DiskDone]) -> Vec<(u32, bool)> {
    out.iter()
        .filter_map(|d| match d {
            DiskDone::Verified { piece, ok } => Some((*piece, *ok)),
            _ => None,
        })
        .collect()
}

#[test]
fn blocks_out_of_order_verify_and_rewrites_verify_what_is_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..2 * PIECE).map(|i| (i * 31 + i / 977) as u8).collect();
    let mut w = worker(dir.path(), &data);
    let mut out = Vec::new();
    // Piece 0 arrives 2, 0, 3 | 1 (two batches): held blocks are hashed once the gap fills.
    w.run_batch(
        vec![write(&data, 0, 2), write(&data, 0, 0), write(&data, 0, 3)],
        &mut out,
    );
    assert_eq!(w.held, 2 * BLOCK as usize);
    w.run_batch(
        vec![write(&data, 0, 1), DiskJob::Verify { piece: 0 }],
        &mut out,
    );
    assert_eq!(verdicts(&out), vec![(0, true)]);
    assert_eq!(w.held, 0);
    assert_eq!(*w.verified.lock().unwrap(), vec![0]);
    // Piece 1: all in order, then block 0 written again with other bytes: the verdict is the disk's.
    let mut bad = data.clone();
    bad[PIECE as usize] ^= 1;
    out.clear();
    w.run_batch((0..4).map(|i| write(&data, 1, i)).collect(), &mut out);
    w.run_batch(
        vec![write(&bad, 1, 0), DiskJob::Verify { piece: 1 }],
        &mut out,
    );
    assert_eq!(verdicts(&out), vec![(1, false)]);
    assert_eq!(w.storage.read_piece(1).unwrap(), &bad[PIECE as usize..]);
}

#[test]
fn in_order_reads_are_served_from_one_read_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..2 * PIECE).map(|i| (i * 7 + i / 313) as u8).collect();
    let mut w = worker(dir.path(), &data);
    let mut out = Vec::new();
    w.run_batch(
        (0..8).map(|i| write(&data, i / 4, i % 4)).collect(),
        &mut out,
    );
    let read = |peer, piece, i| DiskJob::Read {
        peer: PeerKey(peer),
        block: BlockRef {
            piece,
            offset: i * BLOCK,
            length: BLOCK,
        },
    };
    out.clear();
    // Peer 1 reads piece 1 in order (a read-ahead after its first block), peer 2 one block out of order.
    let jobs = vec![
        read(1, 1, 0),
        read(1, 1, 1),
        read(2, 0, 3),
        read(1, 1, 2),
        read(1, 1, 3),
    ];
    w.run_batch(jobs, &mut out);
    assert_eq!(
        w.ahead.len(),
        1,
        "one read-ahead, for peer 1's second block"
    );
    for d in &out {
        let DiskDone::Read {
            block, data: got, ..
        } = d
        else {
            panic!("{d:?}");
        };
        let at = (block.piece * PIECE + block.offset) as usize;
        assert_eq!(got.as_ref().unwrap(), &data[at..at + BLOCK as usize]);
    }
    // Writing a piece drops its read-ahead.
    w.run_batch(vec![write(&data, 1, 0)], &mut out);
    assert!(w.ahead.is_empty());
}

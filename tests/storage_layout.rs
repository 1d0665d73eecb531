//! Multi-file layout on disk: pieces straddling files and zero-length files; every piece written (block by
//! block, in a shuffled order, from several threads), read back, and each file compared with its expected bytes.

use qswarm::storage::verify::{all_pieces, recheck, sha1};
use qswarm::storage::{FileEntry, Storage, StorageOptions};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::sync::Arc;

fn byte_at(i: u64) -> u8 {
    (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8
}

fn entry(path: &[&str], length: u64) -> FileEntry {
    FileEntry {
        path: path.iter().map(|s| s.to_string()).collect(),
        length,
    }
}

#[test]
fn straddling_pieces_and_zero_length_files_round_trip() {
    round_trip(StorageOptions::default());
}

/// The same with one cached handle shared by three writing threads: constant eviction under concurrency.
#[test]
fn round_trip_with_a_single_cached_handle() {
    round_trip(StorageOptions { max_open_files: 1 });
}

fn round_trip(options: StorageOptions) {
    let dir = tempfile::tempdir().unwrap();
    let files = vec![
        entry(&["t", "empty-first"], 0),
        entry(&["t", "a"], 40_000),
        entry(&["t", "d", "e", "empty-nested"], 0),
        entry(&["t", "d", "tiny"], 3),
        entry(&["t", "d", "b"], 16_384), // exactly one piece long, but not piece-aligned
        entry(&["t", "z", "empty-alone"], 0),
        entry(&["t", "c"], 50_001),
        entry(&["t", "empty-last"], 0),
    ];
    let piece_length = 16_384u32;
    let total: u64 = files.iter().map(|f| f.length).sum();
    let data: Vec<u8> = (0..total).map(byte_at).collect();
    let hashes: Vec<_> = data.chunks(piece_length as usize).map(sha1).collect();

    let storage = Arc::new(Storage::new(dir.path(), &files, piece_length, options).unwrap());
    let layout = storage.layout();
    assert_eq!(layout.total_length(), total);
    assert_eq!(layout.piece_count() as usize, hashes.len());
    assert_eq!(
        layout.piece_len(layout.piece_count() - 1),
        Some((total % 16_384) as u32)
    );
    assert!(
        layout.piece_segments(2).unwrap().count() >= 3,
        "piece 2 must straddle a, tiny and b"
    );
    storage.prepare().unwrap();
    for f in [
        "t/empty-first",
        "t/d/e/empty-nested",
        "t/z/empty-alone",
        "t/empty-last",
    ] {
        assert_eq!(
            std::fs::metadata(dir.path().join(f)).unwrap().len(),
            0,
            "{f}"
        );
    }
    assert!(recheck(&storage, &hashes, &all_pieces(&storage))
        .unwrap()
        .not_any());

    // Blocks of 4 KiB (the last one of each piece shorter) in a shuffled order, from 3 threads.
    let mut blocks = Vec::new();
    for p in 0..layout.piece_count() {
        let plen = layout.piece_len(p).unwrap();
        blocks.extend(
            (0..plen)
                .step_by(4096)
                .map(|off| (p, off, 4096.min(plen - off))),
        );
    }
    blocks.shuffle(&mut rand::rngs::StdRng::seed_from_u64(5));
    let data = Arc::new(data);
    let threads: Vec<_> = blocks
        .chunks(blocks.len().div_ceil(3))
        .map(|chunk| {
            let (chunk, s, data) = (chunk.to_vec(), storage.clone(), data.clone());
            std::thread::spawn(move || {
                for (p, off, len) in chunk {
                    let at = (u64::from(p) * 16_384 + u64::from(off)) as usize;
                    s.write_block(p, off, &data[at..at + len as usize]).unwrap();
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());

    for p in 0..layout.piece_count() {
        let at = p as usize * 16_384;
        let len = layout.piece_len(p).unwrap() as usize;
        assert_eq!(
            storage.read_piece(p).unwrap(),
            data[at..at + len],
            "piece {p}"
        );
        let mut block = vec![0; 100];
        if len > 200 {
            storage.read_block(p, 100, &mut block).unwrap();
            assert_eq!(block, data[at + 100..at + 200]);
        }
    }
    let mut pos = 0usize;
    for f in &files {
        let on_disk = std::fs::read(dir.path().join(f.path.join("/"))).unwrap();
        assert_eq!(on_disk, data[pos..pos + f.length as usize], "{:?}", f.path);
        pos += f.length as usize;
    }
    assert!(recheck(&storage, &hashes, &all_pieces(&storage))
        .unwrap()
        .all());
}

#[test]
fn unsafe_paths_never_touch_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    for bad in [
        &["..", "escape"][..],
        &["t", "..", "..", "x"],
        &["/abs"],
        &["t", "a/../../b"],
    ] {
        let r = Storage::new(&root, &[entry(bad, 10)], 16_384, StorageOptions::default());
        assert!(r.is_err(), "{bad:?} accepted");
        assert!(r.unwrap_err().to_string().contains("escape"));
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

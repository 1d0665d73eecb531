//! Storage throughput figures (not a pass/fail test; `#[ignore]`d, run by `bench/storage.sh` in release mode):
//! write + verify of a file piece by piece, the parallel recheck, and concurrent block reads through the
//! handle LRU compared with raw `pread` on the same files (is the LRU's mutex a bottleneck?).

use qswarm::storage::verify::{all_pieces, recheck_with, sha1, verify_piece};
use qswarm::storage::{FileEntry, Storage, StorageOptions};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Instant;

fn mb_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

fn size_mib() -> u64 {
    std::env::var("QSWARM_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

#[test]
#[ignore = "benchmark: run bench/storage.sh"]
fn bench_storage() {
    let dir =
        tempfile::tempdir_in(std::env::var("QSWARM_BENCH_DIR").unwrap_or_else(|_| ".".into()))
            .unwrap();
    let total = size_mib() << 20;
    let pl = 256 * 1024u32;
    let files = vec![
        FileEntry {
            path: vec!["b".into(), "one".into()],
            length: total / 2,
        },
        FileEntry {
            path: vec!["b".into(), "two".into()],
            length: total - total / 2,
        },
    ];
    let s = Arc::new(Storage::new(dir.path(), &files, pl, StorageOptions::default()).unwrap());
    s.prepare().unwrap();
    let piece: Vec<u8> = (0..pl)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let hash = sha1(&piece);
    let n = s.layout().piece_count();

    let t = Instant::now();
    for p in 0..n {
        s.write_piece(p, &piece[..s.layout().piece_len(p).unwrap() as usize])
            .unwrap();
    }
    let write = t.elapsed().as_secs_f64();
    s.sync_files(0..2).unwrap();
    let write_sync = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for p in 0..n {
        assert!(verify_piece(&s, p, &hash).unwrap());
    }
    let verify = t.elapsed().as_secs_f64();
    println!(
        "size {} MiB, {n} pieces of {} KiB (page cache warm)",
        total >> 20,
        pl / 1024
    );
    println!("write (pwrite)            {:8.0} MB/s", mb_s(total, write));
    println!(
        "write + fdatasync         {:8.0} MB/s",
        mb_s(total, write_sync)
    );
    println!(
        "verify from disk, 1 thread {:7.0} MB/s",
        mb_s(total, verify)
    );
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(sha1(std::hint::black_box(&piece)));
    }
    println!(
        "sha1 in memory, 1 thread  {:8.0} MB/s",
        mb_s(u64::from(n) * u64::from(pl), t.elapsed().as_secs_f64())
    );
    let t = Instant::now();
    let hashes = vec![hash; n as usize];
    let threads = std::thread::available_parallelism().map_or(1, |c| c.get());
    for th in [1, threads] {
        let t = Instant::now();
        let bits = recheck_with(&s, &hashes, &all_pieces(&s), th, &|_, _| {}).unwrap();
        assert!(bits.all());
        println!(
            "recheck, {th} thread(s)        {:8.0} MB/s",
            mb_s(total, t.elapsed().as_secs_f64())
        );
    }
    let _ = t;

    // Concurrent 16 KiB block reads at pseudo-random offsets: Storage (LRU + mutex) vs raw pread.
    let blocks_per_thread = 40_000u64;
    let max_piece = n - 1; // last piece may be short: stay in full pieces
    for th in [1, 2, 4] {
        let run = |raw: bool| {
            let t = Instant::now();
            std::thread::scope(|sc| {
                for k in 0..th {
                    let s = s.clone();
                    let raw_files: Vec<File> = (0..2)
                        .map(|i| File::open(s.file_path(i).unwrap()).unwrap())
                        .collect();
                    sc.spawn(move || {
                        let mut buf = vec![0u8; 16384];
                        let mut x = 0x9E37_79B9u64.wrapping_mul(k as u64 + 1);
                        for _ in 0..blocks_per_thread {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            let p = (x % u64::from(max_piece)) as u32;
                            let off = ((x >> 32) % 16) as u32 * 16384;
                            if raw {
                                let at = u64::from(p) * u64::from(pl) + u64::from(off);
                                let (f, at) = if at < total / 2 {
                                    (0, at)
                                } else {
                                    (1, at - total / 2)
                                };
                                raw_files[f].read_exact_at(&mut buf, at).unwrap();
                            } else {
                                s.read_block(p, off, &mut buf).unwrap();
                            }
                        }
                    });
                }
            });
            t.elapsed().as_secs_f64()
        };
        let (raw, lru) = (run(true), run(false));
        let ops = (blocks_per_thread * th as u64) as f64;
        println!(
            "16 KiB reads, {th} thread(s): raw pread {:7.0} k/s, Storage {:7.0} k/s ({:+.1}%)",
            ops / raw / 1e3,
            ops / lru / 1e3,
            (raw / lru - 1.0) * 100.0
        );
    }
}

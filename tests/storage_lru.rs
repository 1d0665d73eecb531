//! The open-handle cap: 1,000 files written and read back through a storage capped at 16 handles. The data is
//! all correct and the process never holds more than 16 extra descriptors (counted in /proc/self/fd, and by the
//! storage's own counter). The only test in this binary, so no other test opens files meanwhile.

use qswarm::storage::verify::{all_pieces, recheck, sha1};
use qswarm::storage::{FileEntry, Storage, StorageOptions};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn thousand_files_through_sixteen_handles() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(16);
    let files: Vec<FileEntry> = (0..1000)
        .map(|i| FileEntry {
            path: vec!["t".into(), format!("d{}", i % 10), format!("f{i}")],
            length: if i % 50 == 0 {
                0
            } else {
                rng.random_range(1..3000)
            },
        })
        .collect();
    let total: u64 = files.iter().map(|f| f.length).sum();
    let data: Vec<u8> = (0..total)
        .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8)
        .collect();
    let pl = 16_384u32;
    let hashes: Vec<_> = data.chunks(pl as usize).map(sha1).collect();

    let baseline = fd_count();
    let s = Storage::new(
        dir.path(),
        &files,
        pl,
        StorageOptions { max_open_files: 16 },
    )
    .unwrap();
    s.prepare().unwrap();
    let mut order: Vec<u32> = all_pieces(&s);
    order.shuffle(&mut rng);
    let mut max_seen = 0;
    for &p in &order {
        let at = (p * pl) as usize;
        let len = s.layout().piece_len(p).unwrap() as usize;
        s.write_piece(p, &data[at..at + len]).unwrap();
        max_seen = max_seen.max(fd_count() - baseline);
        assert!(s.open_files() <= 16);
    }
    order.shuffle(&mut rng);
    for &p in &order {
        let at = (p * pl) as usize;
        let len = s.layout().piece_len(p).unwrap() as usize;
        assert_eq!(s.read_piece(p).unwrap(), data[at..at + len], "piece {p}");
        max_seen = max_seen.max(fd_count() - baseline);
    }
    assert!(max_seen <= 16, "{max_seen} descriptors open at once");
    assert!(
        max_seen >= 8,
        "the cache should actually be used ({max_seen})"
    );
    assert_eq!(s.peak_open_files(), 16);
    assert!(recheck(&s, &hashes, &all_pieces(&s)).unwrap().all());
    s.sync_files(0..40).unwrap(); // a few: each is an fdatasync
    assert!(
        s.peak_open_files() <= 16 + 2,
        "a 2-thread recheck adds at most one handle per thread"
    );
    drop(s);
    assert_eq!(
        fd_count(),
        baseline,
        "dropping the storage closes every handle"
    );

    let mut pos = 0usize;
    for f in &files {
        let got = std::fs::read(dir.path().join(f.path.join("/"))).unwrap();
        assert_eq!(got, data[pos..pos + f.length as usize]);
        pos += f.length as usize;
    }
}

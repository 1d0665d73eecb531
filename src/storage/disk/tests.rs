//! Unit tests of `disk`.

use super::*;

/// A storage of one file at `path` under `dir`.
fn one_file(dir: &Path, path: &[&str], length: u64, piece_len: u32) -> Storage {
    Storage::new(
        dir,
        &[entry(path, length)],
        piece_len,
        StorageOptions::default(),
    )
    .unwrap()
}

fn entry(path: &[&str], length: u64) -> FileEntry {
    FileEntry {
        path: path.iter().map(|s| s.to_string()).collect(),
        length,
    }
}

#[test]
fn rejects_unsafe_and_clashing_paths() {
    let opts = StorageOptions::default();
    for bad in [
        &["t", ".."][..],
        &["t", "."],
        &["t", ""],
        &["/etc"],
        &["t", "a/b"],
        &["a\\b"],
        &["x\0"],
        &[],
    ] {
        let r = Storage::new("/tmp/root", &[entry(bad, 1)], 16, opts);
        assert!(matches!(r, Err(StorageError::UnsafePath { .. })), "{bad:?}");
    }
    let dup = Storage::new(
        "/tmp/root",
        &[entry(&["t", "a"], 1), entry(&["t", "a"], 2)],
        16,
        opts,
    );
    assert!(matches!(dup, Err(StorageError::PathClash { file: 1, .. })));
    let dir = Storage::new(
        "/tmp/root",
        &[entry(&["t", "a"], 1), entry(&["t", "a", "b"], 2)],
        16,
        opts,
    );
    assert!(matches!(dir, Err(StorageError::PathClash { file: 1, .. })));
    assert!(Storage::new(
        "/tmp/root",
        &[entry(&["t", "..a"], 1), entry(&["t", "a.."], 1)],
        16,
        opts
    )
    .is_ok());
}

#[test]
fn a_full_disk_is_reported_as_such() {
    // /dev/full answers every write with ENOSPC: a real disk-full error, no root or tmpfs needed.
    if !Path::new("/dev/full").exists() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/dev/full", dir.path().join("a")).unwrap();
    let s = one_file(dir.path(), &["a"], 100, 64);
    let err = s.write_piece(0, &[1; 64]).unwrap_err();
    assert!(matches!(err, StorageError::DiskFull { .. }), "{err:?}");
    assert!(err.to_string().contains("free space"));
}

#[test]
fn missing_and_short_files_read_as_missing_data() {
    let dir = tempfile::tempdir().unwrap();
    let s = one_file(dir.path(), &["a"], 100, 64);
    assert!(s.read_piece(0).unwrap_err().is_missing_data());
    // A file cut short by someone else (files this storage creates are preallocated: see below).
    std::fs::write(dir.path().join("a"), [7; 10]).unwrap();
    assert!(matches!(
        s.read_piece(0),
        Err(StorageError::Truncated { .. })
    ));
    s.write_piece(1, &[9; 36]).unwrap();
    assert_eq!(s.read_piece(1).unwrap(), vec![9; 36]);
    assert!(matches!(
        s.write_piece(1, &[0; 5]),
        Err(StorageError::BufferSize { .. })
    ));
    assert!(matches!(
        s.write_block(1, 30, &[0; 7]),
        Err(StorageError::Layout(_))
    ));
}

#[test]
fn created_files_are_preallocated_where_the_filesystem_can() {
    let dir = tempfile::tempdir().unwrap();
    let s = one_file(dir.path(), &["d", "a"], 100_000, 65536);
    s.write_block(1, 0, &[3; 100]).unwrap();
    let path = dir.path().join("d").join("a");
    let probe = File::create(dir.path().join("probe")).unwrap();
    // SAFETY: an open descriptor for the whole call.
    let can = unsafe { libc::fallocate(std::os::fd::AsRawFd::as_raw_fd(&probe), 0, 0, 4096) } == 0;
    if !can {
        println!("SKIPPED: this filesystem has no fallocate; files stay sparse");
        return;
    }
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 100_000);
    // Unwritten space reads as zeros, so a piece never written fails its hash check.
    assert_eq!(s.read_piece(0).unwrap(), vec![0; 65536]);
    assert_eq!(&s.read_piece(1).unwrap()[..100], &[3; 100]);
}

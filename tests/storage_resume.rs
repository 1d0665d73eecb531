//! Resume: after a save, a byte flipped on disk makes the pieces of that file re-checked (the flipped one found
//! bad) while pieces in untouched files stay trusted unread; corrupt, foreign or mismatching resume files are
//! ignored with a reason (then every present piece is re-checked); deleted data is simply missing.

use qswarm::metainfo::InfoHash;
use qswarm::storage::resume::ResumeState;
use qswarm::storage::verify::{sha1, PieceHash};
use qswarm::storage::{
    plan_resume, resume, FileEntry, ResumeRecorder, ResumeRejected, Storage, StorageOptions,
};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

const PL: u32 = 16_384;

fn byte_at(i: u64) -> u8 {
    (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8
}

/// Files a (3.5 pieces), empty, b (2 pieces + a bit), c (1.2 pieces): 0..=3 touch a, 3..=6 b, 6..=7 c.
fn torrent(root: &Path) -> (Storage, Vec<u8>, Vec<PieceHash>) {
    let files = [("a", 57_344u64), ("empty", 0), ("b", 34_000), ("c", 19_660)];
    let entries: Vec<_> = files
        .iter()
        .map(|(n, l)| FileEntry {
            path: vec!["t".into(), n.to_string()],
            length: *l,
        })
        .collect();
    let s = Storage::new(root, &entries, PL, StorageOptions::default()).unwrap();
    let data: Vec<u8> = (0..s.layout().total_length()).map(byte_at).collect();
    let hashes = data.chunks(PL as usize).map(sha1).collect();
    (s, data, hashes)
}

fn write_all_and_save(s: &Storage, data: &[u8], state: &Path, ih: InfoHash) -> ResumeRecorder {
    s.prepare().unwrap();
    let n = s.layout().piece_count();
    let mut rec = ResumeRecorder::new(
        state,
        ih,
        qswarm::storage::Bitfield::repeat(false, n as usize),
        Duration::ZERO,
    );
    for (p, chunk) in data.chunks(PL as usize).enumerate() {
        s.write_piece(p as u32, chunk).unwrap();
        rec.piece_done(p as u32);
        rec.save_if_due(s, Instant::now()).unwrap();
    }
    assert_eq!(rec.pending(), 0);
    rec
}

fn flip_byte(path: &Path, at: u64) {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    f.seek(SeekFrom::Start(at)).unwrap();
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[b[0] ^ 0x20]).unwrap();
}

#[test]
fn clean_state_is_trusted_without_reading() {
    let dir = tempfile::tempdir().unwrap();
    let (s, data, hashes) = torrent(&dir.path().join("data"));
    let state = dir.path().join("t.resume");
    let ih = InfoHash([1; 20]);
    write_all_and_save(&s, &data, &state, ih);
    let plan = plan_resume(&state, &ih, &s).unwrap();
    assert!(plan.loaded && plan.ignored.is_none());
    assert!(plan.trusted.all() && plan.recheck.is_empty());
    let (have, _) = resume(&state, &ih, &s, &hashes).unwrap();
    assert!(have.all());
}

#[test]
fn corrupted_piece_is_rechecked_and_found_bad_others_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let (s, data, hashes) = torrent(&dir.path().join("data"));
    let state = dir.path().join("t.resume");
    let ih = InfoHash([2; 20]);
    write_all_and_save(&s, &data, &state, ih);
    // mtimes tick at the kernel's timer granularity: let it move on before the "user" edits the file.
    std::thread::sleep(Duration::from_millis(30));
    // Byte 20,000 of b lies in piece (57,344 + 20,000) / 16,384 = 4, whose neighbours in b stay good.
    let b_start = s.layout().file_range(2).unwrap().start;
    let bad_piece = ((b_start + 20_000) / u64::from(PL)) as u32;
    flip_byte(&dir.path().join("data/t/b"), 20_000);

    let plan = plan_resume(&state, &ih, &s).unwrap();
    assert!(plan.loaded && plan.ignored.is_none());
    let b_pieces: Vec<u32> = s.layout().file_pieces(2).collect();
    assert_eq!(
        plan.recheck, b_pieces,
        "exactly the pieces holding b are re-checked"
    );
    for p in 0..s.layout().piece_count() {
        assert_eq!(
            plan.trusted[p as usize],
            !b_pieces.contains(&p),
            "piece {p}"
        );
    }
    let (have, _) = resume(&state, &ih, &s, &hashes).unwrap();
    for p in 0..s.layout().piece_count() {
        assert_eq!(have[p as usize], p != bad_piece, "piece {p}");
    }
    // Restore the piece; a save refreshes the stamps and everything is trusted again.
    s.write_piece(
        bad_piece,
        &data[(bad_piece * PL) as usize..((bad_piece + 1) * PL) as usize],
    )
    .unwrap();
    let mut rec = ResumeRecorder::new(&state, ih, have, Duration::ZERO);
    rec.piece_done(bad_piece);
    rec.save(&s, Instant::now()).unwrap();
    let plan = plan_resume(&state, &ih, &s).unwrap();
    assert!(plan.trusted.all() && plan.recheck.is_empty());
}

#[test]
fn bad_resume_files_are_ignored_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (s, data, hashes) = torrent(&dir.path().join("data"));
    let state = dir.path().join("t.resume");
    let ih = InfoHash([3; 20]);
    write_all_and_save(&s, &data, &state, ih);
    let n = s.layout().piece_count() as usize;

    // Another torrent's state.
    let plan = plan_resume(&state, &InfoHash([4; 20]), &s).unwrap();
    assert!(matches!(
        plan.ignored,
        Some(ResumeRejected::OtherTorrent { .. })
    ));
    assert!(!plan.loaded && plan.trusted.not_any() && plan.recheck.len() == n);
    // Same infohash but a different layout (piece length).
    let mut other = ResumeState::load(&state).unwrap().unwrap();
    other.piece_length *= 2;
    let other_path = dir.path().join("other.resume");
    other.save_atomic(&other_path).unwrap();
    let plan = plan_resume(&other_path, &ih, &s).unwrap();
    assert!(matches!(
        plan.ignored,
        Some(ResumeRejected::Mismatch {
            what: "piece length",
            ..
        })
    ));
    // A flipped byte in the resume file itself.
    flip_byte(&state, 30);
    let (have, plan) = resume(&state, &ih, &s, &hashes).unwrap();
    let why = plan.ignored.expect("corrupt state must be ignored");
    assert!(!why.to_string().is_empty());
    assert!(have.all(), "a full recheck still finds every piece");
    // Garbage and an empty file.
    for junk in [
        &b""[..],
        b"not bencode at all",
        b"d5:statei1e4:sha120:aaaaaaaaaaaaaaaaaaaae",
    ] {
        std::fs::write(&state, junk).unwrap();
        assert!(plan_resume(&state, &ih, &s).unwrap().ignored.is_some());
    }
}

#[test]
fn deleted_or_truncated_files_make_their_pieces_missing() {
    let dir = tempfile::tempdir().unwrap();
    let (s, data, hashes) = torrent(&dir.path().join("data"));
    let state = dir.path().join("t.resume");
    let ih = InfoHash([5; 20]);
    write_all_and_save(&s, &data, &state, ih);
    std::fs::remove_file(dir.path().join("data/t/a")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("data/t/c"))
        .unwrap()
        .set_len(100)
        .unwrap();
    let (have, plan) = resume(&state, &ih, &s, &hashes).unwrap();
    let a: Vec<u32> = s.layout().file_pieces(0).collect();
    let c: Vec<u32> = s.layout().file_pieces(3).collect();
    // Pieces needing a or the cut part of c are neither trusted nor worth reading: missing.
    assert!(
        plan.recheck
            .iter()
            .all(|p| !a.contains(p) && !c.contains(p)),
        "{:?}",
        plan.recheck
    );
    for p in 0..s.layout().piece_count() {
        let expect = !a.contains(&p) && !c.contains(&p);
        assert_eq!(have[p as usize], expect, "piece {p}");
    }
}

//! Crash safety of the resume state: a child process (this test binary re-executed in "child mode") writes
//! pieces block by block in a random order — some first with bad data that fails verification — and records
//! verified pieces; the parent SIGKILLs it after random delays, several times. After each kill the parent
//! checks that every piece the saved state names really hashes correctly on disk, that neither the saved set
//! nor the set a restart ends up with (trusted + re-checked) ever shrinks, then restarts the child. Finally the
//! child runs to completion and every file holds exactly the expected bytes, all trusted without a recheck.

use qswarm::metainfo::InfoHash;
use qswarm::storage::resume::ResumeState;
use qswarm::storage::verify::{sha1, verify_piece, PieceHash};
use qswarm::storage::{resume, Bitfield, FileEntry, ResumeRecorder, Storage, StorageOptions};
use rand::{Rng, SeedableRng};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PL: u32 = 16_384;
const BLOCK: u32 = 4096;
const CHILD_ENV: &str = "QSWARM_STORAGE_KILL_CHILD";
const IH: InfoHash = InfoHash([9; 20]);

fn byte_at(i: u64) -> u8 {
    (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8
}

fn torrent(root: &Path) -> (Storage, Vec<u8>, Vec<PieceHash>) {
    let files = [
        (vec!["t", "a"], 400_000u64),
        (vec!["t", "empty"], 0),
        (vec!["t", "sub", "b"], 1_000_000),
        (vec!["t", "sub", "tiny"], 7),
        (vec!["t", "c"], 1_200_001),
    ];
    let entries: Vec<_> = files
        .iter()
        .map(|(p, l)| FileEntry {
            path: p.iter().map(|s| s.to_string()).collect(),
            length: *l,
        })
        .collect();
    let s = Storage::new(root, &entries, PL, StorageOptions { max_open_files: 2 }).unwrap();
    let data: Vec<u8> = (0..s.layout().total_length()).map(byte_at).collect();
    let hashes = data.chunks(PL as usize).map(sha1).collect();
    (s, data, hashes)
}

/// Child mode: restart from the saved state like a real client, then fetch what is missing. Not a test on its
/// own (returns at once unless the parent below started this process with `CHILD_ENV` set).
#[test]
fn child_writer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let seed: u64 = std::env::var("QSWARM_SEED").unwrap().parse().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (s, data, hashes) = torrent(&dir.join("data"));
    let state = dir.join("t.resume");
    s.prepare().unwrap();
    let (have, _) = resume(&state, &IH, &s, &hashes).unwrap();
    let mut rec = ResumeRecorder::new(
        &state,
        IH,
        have.clone(),
        Duration::from_millis(rng.random_range(0..15)),
    );
    rec.save(&s, Instant::now()).unwrap();
    let mut missing: Vec<u32> = have.iter_zeros().map(|p| p as u32).collect();
    while !missing.is_empty() {
        let piece = missing.swap_remove(rng.random_range(0..missing.len()));
        let start = (piece * PL) as usize;
        let good = &data[start..start + s.layout().piece_len(piece).unwrap() as usize];
        let mut attempts = vec![good.to_vec()];
        if rng.random_bool(0.3) {
            let mut bad = good.to_vec();
            let i = rng.random_range(0..bad.len());
            bad[i] ^= 0x80;
            attempts.insert(0, bad); // a peer sent bad data first
        }
        for bytes in attempts {
            for off in (0..bytes.len()).step_by(BLOCK as usize) {
                let end = (off + BLOCK as usize).min(bytes.len());
                s.write_block(piece, off as u32, &bytes[off..end]).unwrap();
                std::thread::sleep(Duration::from_micros(300));
            }
            if verify_piece(&s, piece, &hashes[piece as usize]).unwrap() {
                rec.piece_done(piece);
                println!("verified {piece}"); // progress for the parent, which picks when to kill
            } else {
                assert!(bytes != good, "good data failed verification");
            }
        }
        assert!(rec.is_done(piece));
        rec.save_if_due(&s, Instant::now()).unwrap();
    }
    rec.save(&s, Instant::now()).unwrap();
}

fn spawn_child(dir: &Path, seed: u64) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_writer", "--test-threads=1", "--nocapture"])
        .env(CHILD_ENV, dir)
        .env("QSWARM_SEED", seed.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

fn is_subset(a: &Bitfield, b: &Bitfield) -> bool {
    a.iter_ones().all(|i| b[i])
}

#[test]
fn sigkill_at_random_points_never_loses_or_invents_pieces() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (s, data, hashes) = torrent(&dir.path().join("data"));
    let n = s.layout().piece_count() as usize;
    let state = dir.path().join("t.resume");
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let mut prev_saved = Bitfield::repeat(false, n);
    let mut prev_have = Bitfield::repeat(false, n);
    let mut partial_kills = 0;
    for round in 0..10u64 {
        let mut child = spawn_child(dir.path(), round);
        // Let it verify a random number of pieces (bounded wait), then kill it at a random moment after that:
        // mid-block, mid-verify or mid-save.
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let wanted = rng.random_range(1..20);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in lines
                .map_while(Result::ok)
                .filter(|l| l.starts_with("verified"))
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        for _ in 0..wanted {
            if rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .is_err()
            {
                break; // finished, or slow: kill anyway
            }
        }
        std::thread::sleep(Duration::from_micros(rng.random_range(0..4000)));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();

        let saved = match ResumeState::load(&state) {
            Ok(Some(st)) => st.have,
            Ok(None) => Bitfield::repeat(false, n),
            Err(e) => panic!("round {round}: the saved state is unreadable after a kill: {e}"),
        };
        for p in saved.iter_ones() {
            assert!(
                verify_piece(&s, p as u32, &hashes[p]).unwrap(),
                "round {round}: saved piece {p} is bad on disk"
            );
        }
        assert!(
            is_subset(&prev_saved, &saved),
            "round {round}: the saved set shrank"
        );
        let (have, plan) = resume(&state, &IH, &s, &hashes).unwrap();
        assert!(plan.ignored.is_none(), "round {round}: {:?}", plan.ignored);
        for p in have.iter_ones() {
            assert!(
                verify_piece(&s, p as u32, &hashes[p]).unwrap(),
                "round {round}: piece {p} kept but bad"
            );
        }
        assert!(
            is_subset(&saved, &have) && is_subset(&prev_have, &have),
            "round {round}: a restart lost pieces"
        );
        eprintln!(
            "round {round}: exit {status:?}, saved {}/{n}, after restart {} (trusted {}, rechecked {})",
            saved.count_ones(),
            have.count_ones(),
            plan.trusted.count_ones(),
            plan.recheck.len()
        );
        if saved.count_ones() > 0 && saved.count_ones() < n {
            partial_kills += 1;
        }
        (prev_saved, prev_have) = (saved, have);
    }
    assert!(
        partial_kills >= 3,
        "only {partial_kills} kills landed mid-download: the test exercised too little"
    );

    // Let the last run finish (bounded wait), then everything is there and trusted without a recheck.
    let mut child = spawn_child(dir.path(), 99);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the child did not finish in 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
    let (have, plan) = resume(&state, &IH, &s, &hashes).unwrap();
    assert!(have.all() && plan.trusted.all() && plan.recheck.is_empty());
    let mut pos = 0usize;
    for (i, len) in
        (0..s.layout().file_count()).map(|i| (i, s.layout().file_length(i).unwrap() as usize))
    {
        assert_eq!(
            std::fs::read(s.file_path(i).unwrap()).unwrap(),
            data[pos..pos + len],
            "file {i}"
        );
        pos += len;
    }
}

//! Piece picker micro benchmark (issue 7, scenario 2's leecher hot path): a 1 GiB torrent of 4096 pieces of
//! 256 KiB (16 blocks) downloaded whole from 4 peers — a seed and three peers holding a random half each —
//! with no I/O: each peer keeps `QSWARM_BENCH_QUEUE` (default 64) requests outstanding, delivers its oldest
//! request in turn, and is refilled after each block like `Torrent::refill` does (complete pieces verify at
//! once). Prints the time per refill (one `pick` call plus the tracker's bookkeeping for one block) over
//! `QSWARM_BENCH_RUNS` (default 5) whole downloads, median.

use std::collections::VecDeque;
use std::time::Instant;

use qswarm::swarm::geometry::Geometry;
use qswarm::swarm::picker::{pick, PickerConfig};
use qswarm::swarm::pieces::PieceTracker;
use qswarm::swarm::PeerKey;
use rand::{rngs::StdRng, Rng, SeedableRng};

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One whole download; returns (refills, seconds).
fn download(seed: u64, queue: usize) -> (u64, f64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let geom = Geometry::new(1 << 30, 1 << 18).expect("geometry");
    let n = geom.num_pieces() as usize;
    let has: Vec<Vec<bool>> = (0..4)
        .map(|k| (0..n).map(|_| k == 0 || rng.random_bool(0.5)).collect())
        .collect();
    let mut t = PieceTracker::new(geom);
    for h in &has {
        for (p, x) in h.iter().enumerate() {
            if *x {
                t.add_available(p as u32);
            }
        }
    }
    let cfg = PickerConfig::default();
    let mut out: Vec<VecDeque<_>> = vec![VecDeque::new(); 4];
    let mut refills = 0u64;
    let start = Instant::now();
    for k in 0..4 {
        let h = &has[k];
        out[k].extend(pick(
            &mut t,
            &cfg,
            PeerKey(k as u64),
            |p| h[p as usize],
            queue,
            false,
            &mut rng,
        ));
    }
    while !t.is_complete() {
        let mut idle = true;
        for k in 0..4 {
            if let Some(b) = out[k].pop_front() {
                idle = false;
                if let Ok(r) = t.receive(&b, PeerKey(k as u64)) {
                    if r.piece_complete {
                        t.verified(b.piece, true).expect("complete piece");
                    }
                }
            }
            let h = &has[k];
            let want = queue.saturating_sub(out[k].len());
            let got = pick(
                &mut t,
                &cfg,
                PeerKey(k as u64),
                |p| h[p as usize],
                want,
                false,
                &mut rng,
            );
            refills += 1;
            idle &= got.is_empty();
            out[k].extend(got);
        }
        assert!(!idle, "download stuck");
    }
    (refills, start.elapsed().as_secs_f64())
}

fn main() {
    let runs: u64 = env("QSWARM_BENCH_RUNS", 5);
    let queue: usize = env("QSWARM_BENCH_QUEUE", 64);
    let mut per: Vec<f64> = Vec::new();
    for r in 0..runs {
        let (refills, secs) = download(r, queue);
        let ns = secs * 1e9 / refills as f64;
        println!("run {r}: {refills} refills in {secs:.3} s, {ns:.0} ns per refill");
        per.push(ns);
    }
    per.sort_by(f64::total_cmp);
    println!(
        "median {:.0} ns per refill (queue {queue})",
        per[per.len() / 2]
    );
}

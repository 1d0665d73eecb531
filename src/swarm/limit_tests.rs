//! Unit tests of rate limits in the torrent machine: the deadline reported while a request waits for budget
//! (the stall fixed here), and one [`Limiter`] shared by two torrents for download and for upload.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::actions::Action;
use super::rate::Limiter;
use super::torrent_tests::{requests, A, T};
use crate::wire::message::{BlockRef, Message, BLOCK_SIZE};

fn leecher(pieces: u64, limit: &Limiter) -> T {
    let l = limit.clone();
    let mut t = T::new(pieces, &[], move |c| c.download_limit = Some(l));
    t.connect(A);
    t.msg(A, Message::HaveAll);
    t
}

/// Deliver `blocks` at once; returns the requests that follow.
fn deliver(t: &mut T, blocks: Vec<BlockRef>) -> Vec<BlockRef> {
    let mut next = Vec::new();
    for b in blocks {
        next.extend(requests(&t.block(A, b), A));
    }
    next
}

#[test]
fn download_limit_deadline_is_reported_even_once_past() {
    let lim = Limiter::new(crate::sim::swarm::epoch(), 8192);
    let mut t = leecher(16, &lim);
    let mut pending = requests(&t.msg(A, Message::Unchoke), A);
    assert!(!pending.is_empty());
    // Spend the burst and any debt-allowed block: requests stop, waiting for budget.
    for _ in 0..4 {
        pending = deliver(&mut t, pending);
    }
    assert!(pending.is_empty(), "the budget is spent: {pending:?}");
    let rechoke = t.now + Duration::from_secs(10);
    let at = t.t.poll_timeout(t.now);
    assert!(
        at > t.now && at < rechoke,
        "the refill instant, not the rechoke: {:?}",
        at - t.now
    );
    // At that instant a tick issues a request.
    let dt = at - t.now;
    let r = requests(&t.tick(dt), A);
    assert_eq!(r.len(), 1, "one block as soon as the budget is positive");
    // Again out of budget; now the instant passes while the machine handles other input (a keep-alive, as the
    // net layer does with messages or disk completions that arrive first) and no tick comes.
    let at = t.t.poll_timeout(t.now);
    assert!(at > t.now);
    t.now = at + Duration::from_millis(500);
    assert!(requests(&t.msg(A, Message::KeepAlive), A).is_empty());
    let again = t.t.poll_timeout(t.now);
    assert!(
        again <= t.now,
        "budget available but unused: tick at once, not in {:?}",
        again.saturating_duration_since(t.now)
    );
    assert_eq!(requests(&t.tick(Duration::ZERO), A).len(), 1);
    // With nothing waiting the limit adds no wake-ups: a choked leecher sleeps until the rechoke.
    t.msg(A, Message::Choke);
    t.tick(Duration::from_secs(30));
    let idle = t.t.poll_timeout(t.now);
    assert!(idle >= t.now + Duration::from_secs(1), "{:?}", idle - t.now);
}

/// Drive torrents by their own deadlines for `secs`, a peer delivering every request at once; returns the
/// blocks requested by each.
fn run_by_deadlines(ts: &mut [T], secs: u64) -> Vec<usize> {
    let end = ts[0].now + Duration::from_secs(secs);
    let mut pending: Vec<Vec<BlockRef>> = vec![Vec::new(); ts.len()];
    let mut counts = vec![0; ts.len()];
    for (i, t) in ts.iter_mut().enumerate() {
        pending[i] = requests(&t.msg(A, Message::Unchoke), A);
        counts[i] = pending[i].len();
    }
    for round in 0..100_000usize {
        for (i, t) in ts.iter_mut().enumerate() {
            let p = std::mem::take(&mut pending[i]);
            let n = deliver(t, p);
            counts[i] += n.len();
            pending[i] = n;
        }
        let next: Instant = ts
            .iter_mut()
            .map(|t| t.t.poll_timeout(t.now))
            .min()
            .unwrap();
        if next >= end {
            break;
        }
        // Both woken at the same instant, in alternating order.
        let n = ts.len();
        for j in 0..n {
            let i = (j + round) % n;
            let t = &mut ts[i];
            let dt = next.saturating_duration_since(t.now);
            let r = requests(&t.tick(dt), A);
            counts[i] += r.len();
            pending[i].extend(r);
        }
    }
    counts
}

#[test]
fn download_limit_below_one_block_per_second_is_shared_by_two_torrents() {
    // 4096 B/s for both together: one 16 KiB block every 4 s, so 15 blocks in 60 s (+ the 16 KiB burst).
    let lim = Limiter::new(crate::sim::swarm::epoch(), 4096);
    let mut ts = vec![leecher(32, &lim), leecher(32, &lim)];
    let c = run_by_deadlines(&mut ts, 60);
    let total: usize = c.iter().sum();
    assert!((14..=18).contains(&total), "{c:?} blocks in 60 s");
    assert!(
        c.iter().all(|n| *n >= 5),
        "both torrents get a share: {c:?}"
    );
}

#[test]
fn upload_limit_is_shared_by_two_torrents() {
    let all: Vec<u32> = (0..64).collect();
    let lim = Limiter::new(crate::sim::swarm::epoch(), 32768);
    let mut ts: Vec<T> = (0..2)
        .map(|_| {
            let l = lim.clone();
            let mut t = T::new(64, &all, move |c| {
                c.upload_limit = Some(l);
                c.upload_pipeline = 1000;
            });
            t.connect(A);
            t.msg(A, Message::Interested);
            t
        })
        .collect();
    let mut reads = [0usize; 2];
    for (i, t) in ts.iter_mut().enumerate() {
        for p in 0..64 {
            let b = BlockRef {
                piece: p,
                offset: 0,
                length: BLOCK_SIZE,
            };
            reads[i] += count_reads(&t.msg(A, Message::Request(b)));
        }
    }
    // 32 KiB/s shared: 2 blocks a second for both torrents together, over 20 s about 40 (+ burst).
    let end = ts[0].now + Duration::from_secs(20);
    for round in 0..10_000usize {
        let next = ts
            .iter_mut()
            .map(|t| t.t.poll_timeout(t.now))
            .min()
            .unwrap();
        if next >= end {
            break;
        }
        for j in 0..2 {
            let i = (j + round) % 2;
            let dt = next.saturating_duration_since(ts[i].now);
            let a = ts[i].tick(dt);
            reads[i] += count_reads(&a);
            // The block is read and sent at once.
            for x in a {
                if let Action::ReadBlock { peer, block } = x {
                    let data = Bytes::from(vec![0u8; block.length as usize]);
                    let now = ts[i].now;
                    ts[i].t.block_read(now, peer, block, data);
                    ts[i].t.block_sent(now, peer);
                    reads[i] += count_reads(&ts[i].drain());
                }
            }
        }
    }
    let total = reads[0] + reads[1];
    assert!((39..=44).contains(&total), "{reads:?} blocks read in 20 s");
    assert!(
        reads.iter().all(|n| *n >= 10),
        "both torrents upload: {reads:?}"
    );
}

fn count_reads(a: &[Action]) -> usize {
    a.iter()
        .filter(|x| matches!(x, Action::ReadBlock { .. }))
        .count()
}

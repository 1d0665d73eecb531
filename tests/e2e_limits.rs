//! Rate limits end to end on 127.0.0.1: `seed --upload-limit` and `fetch --download-limit` bound the rate the
//! other side sees (total time and the rate between `progress` events), and a session's download limit is one
//! budget shared by all its torrents (two torrents fetched at once by one `Session` take as long as their sum).

mod e2e_common;
use e2e_common::*;

use qswarm::metainfo::Metainfo;
use qswarm::net::session::{AddTorrent, Session, SessionConfig, SessionEvent, TorrentSource};
use std::path::Path;
use std::time::{Duration, Instant};

const LIMIT: u64 = 512 << 10;
const SIZE: usize = 2 << 20;

/// Seed `file` (with `seed_extra` flags) and fetch it (with `fetch_extra`); returns the fetch's wall time from
/// spawn to `complete` and the (receive time, downloaded) of its progress events.
fn seed_and_fetch(dir: &Path, seed_extra: &[&str], fetch_extra: &[&str]) -> (f64, Vec<(f64, u64)>) {
    let data = bytes(SIZE, 11);
    let file = dir.join("two.bin");
    std::fs::write(&file, &data).unwrap();
    let torrent = dir.join("two.torrent");
    create(&file, &torrent, &["--piece-length", "64K"]);
    let t = torrent.to_str().unwrap();
    let mut seed = Proc::spawn(
        &[
            &["seed", t, "--json", "--no-dht"][..],
            seed_extra,
            &LOOPBACK[..],
        ]
        .concat(),
    );
    let (quic, _) = seed.listening();
    seed.wait_event("checked", 10.0);
    let out = dir.join("got");
    let o = out.to_str().unwrap();
    let base = [
        "fetch",
        t,
        "-o",
        o,
        "--json",
        "--no-dht",
        "--peer",
        &quic,
        "--timeout",
        "20",
    ];
    let start = Instant::now();
    let mut fetch = Proc::spawn(&[&base[..], fetch_extra, &LOOPBACK[..]].concat());
    let mut progress = Vec::new();
    let took = loop {
        let left = 20.0 - start.elapsed().as_secs_f64();
        let v = fetch
            .next_event(left.max(0.0))
            .unwrap_or_else(|| panic!("no complete within 20 s: {:?}", fetch.seen));
        match v["event"].as_str() {
            Some("progress") => progress.push((
                start.elapsed().as_secs_f64(),
                v["downloaded"].as_u64().unwrap(),
            )),
            Some("complete") => break start.elapsed().as_secs_f64(),
            _ => {}
        }
    };
    assert!(fetch.wait_exit(10.0).success());
    assert_eq!(std::fs::read(out.join("two.bin")).unwrap(), data);
    (took, progress)
}

/// Check the time and the rate between progress events (the burst is spent before the first one).
fn check_rate(what: &str, took: f64, progress: &[(f64, u64)]) {
    let limit = LIMIT as f64;
    // 2 MiB at 512 KiB/s with a 128 KiB burst: 3.75 s of transfer at least.
    println!(
        "{what}: 2 MiB in {took:.2} s ({:.0} KiB/s average)",
        SIZE as f64 / took / 1024.0
    );
    assert!(
        took >= 3.5,
        "{what}: 2 MiB at 512 KiB/s took only {took:.2} s"
    );
    assert!(
        took <= 12.0,
        "{what}: the limit stalls the transfer: {took:.2} s"
    );
    let moving: Vec<&(f64, u64)> = progress
        .iter()
        .filter(|(_, d)| *d > 0 && *d < SIZE as u64)
        .collect();
    let rates: Vec<f64> = moving
        .windows(2)
        .map(|w| (w[1].1 - w[0].1) as f64 / (w[1].0 - w[0].0))
        .collect();
    println!(
        "{what}: KiB/s between progress events: {:?}",
        rates
            .iter()
            .map(|r| (r / 1024.0).round())
            .collect::<Vec<_>>()
    );
    assert!(
        !rates.is_empty(),
        "{what}: too few progress events: {progress:?}"
    );
    for r in &rates {
        assert!(
            *r <= 1.35 * limit,
            "{what}: {r:.0} B/s over the {limit} B/s limit: {progress:?}"
        );
    }
    let mean = rates.iter().sum::<f64>() / rates.len() as f64;
    assert!(
        mean >= 0.6 * limit,
        "{what}: {mean:.0} B/s, far under the limit: {progress:?}"
    );
}

#[test]
fn seed_upload_limit_bounds_the_leechers_rate() {
    let dir = tempfile::tempdir().unwrap();
    let (took, progress) = seed_and_fetch(dir.path(), &["--upload-limit", "512K"], &[]);
    check_rate("--upload-limit 512K", took, &progress);
}

#[test]
fn fetch_download_limit_bounds_its_rate() {
    let dir = tempfile::tempdir().unwrap();
    let (took, progress) = seed_and_fetch(dir.path(), &[], &["--download-limit", "512K"]);
    check_rate("--download-limit 512K", took, &progress);
}

/// One session fetching two 1 MiB torrents at once under a 512 KiB/s download limit: they share it, so both
/// are done no sooner than 2 MiB at that rate (per-torrent buckets would finish in about half the time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_download_limit_is_shared_by_its_torrents() {
    let dir = tempfile::tempdir().unwrap();
    let loopback = || SessionConfig {
        dht_listen: None,
        ..SessionConfig::loopback()
    };
    let seeder = Session::start(loopback()).await.unwrap();
    let leecher = Session::start(SessionConfig {
        download_limit: Some(LIMIT),
        ..loopback()
    })
    .await
    .unwrap();
    let mut metas = Vec::new();
    for i in 0..2u64 {
        let src = dir.path().join(format!("src{i}"));
        std::fs::create_dir_all(&src).unwrap();
        let file = src.join(format!("one{i}.bin"));
        std::fs::write(&file, bytes(1 << 20, 20 + i)).unwrap();
        let torrent = dir.path().join(format!("one{i}.torrent"));
        create(&file, &torrent, &["--piece-length", "64K"]);
        let meta = Metainfo::from_bytes(&std::fs::read(&torrent).unwrap()).unwrap();
        let mut h = seeder.seed(meta.clone(), &src).await.unwrap();
        wait_complete(&mut h, 10).await;
        metas.push((meta, h));
    }
    let start = Instant::now();
    let mut fetches = Vec::new();
    for (meta, _) in &metas {
        let mut add = AddTorrent::new(
            TorrentSource::Metainfo(Box::new(meta.clone())),
            dir.path().join("get"),
        );
        add.peers = vec![seeder.quic_addr()];
        add.use_dht = false;
        fetches.push(leecher.add(add).await.unwrap());
    }
    let mut times = Vec::new();
    for h in &mut fetches {
        wait_complete(h, 20).await;
        times.push(start.elapsed().as_secs_f64());
    }
    println!("two 1 MiB torrents under one 512 KiB/s session limit: done at {times:.2?} s");
    let last = times.iter().cloned().fold(0.0, f64::max);
    assert!(last >= 3.4, "2 MiB in {last:.2} s: the limit is not shared");
    assert!(last <= 12.0, "stalled: {last:.2} s");
    for i in 0..2u64 {
        let got = std::fs::read(dir.path().join(format!("get/one{i}.bin"))).unwrap();
        assert_eq!(got, bytes(1 << 20, 20 + i));
    }
    for h in fetches {
        h.stop().await;
    }
    for (_, h) in metas {
        h.stop().await;
    }
    leecher.shutdown().await;
    seeder.shutdown().await;
}

async fn wait_complete(h: &mut qswarm::net::session::TorrentHandle, secs: u64) {
    let got = tokio::time::timeout(Duration::from_secs(secs), async {
        while let Some(e) = h.events.recv().await {
            match e {
                SessionEvent::Complete { .. } => return,
                SessionEvent::Error { message } => panic!("{message}"),
                _ => {}
            }
        }
        panic!("the torrent stopped");
    })
    .await;
    assert!(got.is_ok(), "not complete within {secs} s");
}

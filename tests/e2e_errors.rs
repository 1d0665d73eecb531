//! End to end: `fetch --no-dht --peer` (the peer starts after the fetch: it is retried until it listens), a
//! magnet's `x.pe` peer, a fetch of an infohash nobody has exits 1 after `--timeout` with a clear message, and
//! bad input exits 2.

mod e2e_common;
use e2e_common::*;
use std::time::{Duration, Instant};

#[test]
fn fetch_with_no_dht_and_a_peer_that_starts_late() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _, torrent, ih) = shared_file(dir.path(), "late", 3 << 20, 11, &[]);
    // Reserve a port for the seeder by binding and releasing it.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let peer = format!("127.0.0.1:{port}");
    let out = dir.path().join("got");
    let mut f = Proc::spawn(&[
        "fetch",
        &ih,
        "-o",
        out.to_str().unwrap(),
        "--json",
        "--no-dht",
        "--peer",
        &peer,
        "--listen",
        "127.0.0.1:0",
        "--timeout",
        "20",
    ]);
    let (_, dht) = f.listening();
    assert_eq!(dht, "", "no DHT node with --no-dht");
    std::thread::sleep(Duration::from_millis(1500));
    let mut seed = Proc::spawn(&[
        "seed",
        torrent.to_str().unwrap(),
        "--json",
        "--no-dht",
        "--listen",
        &peer,
    ]);
    seed.listening();
    assert!(f.wait_exit(30.0).success(), "{}", f.stderr.lock().unwrap());
    assert_eq!(std::fs::read(out.join("late.bin")).unwrap(), data);
}

#[test]
fn fetch_of_an_infohash_nobody_has_times_out_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let (_dht, boot) = dht_node();
    let start = Instant::now();
    let mut f = Proc::spawn_local(&[
        "fetch",
        "0123456789abcdef0123456789abcdef01234567",
        "--json",
        "--timeout",
        "3",
        "-o",
        dir.path().to_str().unwrap(),
        "--bootstrap",
        &boot,
    ]);
    f.listening();
    let status = f.wait_exit(20.0);
    assert_eq!(status.code(), Some(1));
    assert!(start.elapsed() >= Duration::from_secs(3));
    let err = f.stderr.lock().unwrap().clone();
    assert!(
        err.contains("no peer for 0123456789abcdef0123456789abcdef01234567 was found")
            && err.contains("--timeout 3"),
        "stderr: {err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(f.find("error").is_some(), "an error event: {:?}", f.seen);
}

#[test]
fn bad_input_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.torrent");
    std::fs::write(&bad, b"d4:infoi3ee").unwrap();
    for args in [
        vec!["fetch", "not-a-hash", "--no-dht"],
        vec!["fetch", "magnet:?dn=x", "--no-dht"],
        vec!["seed", bad.to_str().unwrap(), "--no-dht"],
        vec![
            "fetch",
            "0123456789abcdef0123456789abcdef01234567",
            "--no-dht",
            "--peer",
            "nope",
        ],
    ] {
        let mut p = Proc::spawn(&args);
        let status = p.wait_exit(10.0);
        assert_eq!(
            status.code(),
            Some(2),
            "{args:?}: {}",
            p.stderr.lock().unwrap()
        );
        let err = p.stderr.lock().unwrap().clone();
        assert!(
            err.starts_with("error: ") && err.trim().lines().count() == 1,
            "{args:?}: {err}"
        );
    }
}

#[test]
fn fetch_by_magnet_uses_its_x_pe_peer() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _, torrent, ih) = shared_file(dir.path(), "mag", 1 << 20, 12, &[]);
    let mut seed = Proc::spawn(&[
        "seed",
        torrent.to_str().unwrap(),
        "--json",
        "--no-dht",
        "--listen",
        "127.0.0.1:0",
    ]);
    let (quic, _) = seed.listening();
    let magnet = format!("magnet:?xt=urn:btih:{ih}&dn=mag.bin&x.pe={quic}");
    let out = dir.path().join("got");
    let mut f = Proc::spawn(&[
        "fetch",
        &magnet,
        "-o",
        out.to_str().unwrap(),
        "--json",
        "--no-dht",
        "--listen",
        "127.0.0.1:0",
        "--timeout",
        "20",
    ]);
    f.listening();
    assert!(f.wait_exit(30.0).success(), "{}", f.stderr.lock().unwrap());
    assert_eq!(std::fs::read(out.join("mag.bin")).unwrap(), data);
}

//! End to end with the real binary on 127.0.0.1: `create` → `seed` → three `fetch <infohash>` found through a
//! `qswarm dht` bootstrap node (metadata exchange, download, verification), byte-for-byte equal; and a
//! multi-file torrent fetched the same way.

mod e2e_common;
use e2e_common::*;

#[test]
fn create_seed_and_three_fetches_by_infohash_through_the_dht() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _, torrent, ih) = shared_file(dir.path(), "movie", 6 << 20, 1, &[]);
    let (_dht, boot) = dht_node();

    let mut seed = Proc::spawn_local(&[
        "seed",
        torrent.to_str().unwrap(),
        "--json",
        "--bootstrap",
        &boot,
    ]);
    seed.listening();
    let meta = seed.wait_event("metadata", 10.0);
    let checked = seed.wait_event("checked", 10.0);
    assert_eq!(
        checked["have"], meta["pieces"],
        "the seeder verified all its data"
    );

    let mut fetches: Vec<(Proc, std::path::PathBuf)> = (0..3)
        .map(|i| {
            let out = dir.path().join(format!("leecher{i}"));
            let p = fetch_by_infohash(&ih, &out, &boot);
            (p, out)
        })
        .collect();
    for (p, out) in fetches.iter_mut() {
        let (quic, dht) = p.listening();
        assert!(quic.starts_with("127.0.0.1:") && dht.starts_with("127.0.0.1:"));
        let status = p.wait_exit(30.0);
        assert!(
            status.success(),
            "fetch failed: {:?} {}",
            p.seen,
            p.stderr.lock().unwrap()
        );
        let meta = p.find("metadata").expect("metadata event");
        assert_eq!(meta["name"], "movie.bin");
        assert_eq!(meta["length"], data.len() as u64);
        let done = p.find("complete").expect("complete event");
        assert!(done["downloaded"].as_u64().unwrap() >= data.len() as u64);
        assert_eq!(
            std::fs::read(out.join("movie.bin")).unwrap(),
            data,
            "copy differs"
        );
    }
}

#[test]
fn multi_file_torrent_is_fetched_whole() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("album");
    std::fs::create_dir_all(root.join("cd2")).unwrap();
    let files = [
        ("a.flac", bytes(700_000, 2)),
        ("b.flac", bytes(1_300_001, 3)),
        ("cd2/c.flac", bytes(50_000, 4)),
        ("cd2/notes.txt", b"liner notes\n".to_vec()),
    ];
    for (p, d) in &files {
        std::fs::write(root.join(p), d).unwrap();
    }
    let torrent = dir.path().join("album.torrent");
    let ih = create(&root, &torrent, &["--piece-length", "32K"]);
    let (_dht, boot) = dht_node();
    let mut seed = Proc::spawn_local(&[
        "seed",
        torrent.to_str().unwrap(),
        "--json",
        "--bootstrap",
        &boot,
    ]);
    seed.listening();
    seed.wait_event("checked", 10.0);
    let out = dir.path().join("got");
    let mut f = fetch_by_infohash(&ih, &out, &boot);
    f.listening();
    assert!(f.wait_exit(30.0).success(), "{}", f.stderr.lock().unwrap());
    for (p, d) in &files {
        assert_eq!(&std::fs::read(out.join("album").join(p)).unwrap(), d, "{p}");
    }
}

/// `fetch` of `ih` into `out`, knowing only the infohash and the loopback DHT bootstrap node `boot`.
fn fetch_by_infohash(ih: &str, out: &std::path::Path, boot: &str) -> Proc {
    Proc::spawn_local(&[
        "fetch",
        ih,
        "-o",
        out.to_str().unwrap(),
        "--json",
        "--timeout",
        "20",
        "--bootstrap",
        boot,
    ])
}

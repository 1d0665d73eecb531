//! A fetch killed with SIGKILL halfway, then started again with the same command, completes without fetching
//! again what was verified before the kill (the restart checks the data the resume state cannot vouch for).

mod e2e_common;
use e2e_common::*;

#[test]
fn fetch_killed_halfway_resumes_without_refetching() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _, torrent, ih) =
        shared_file(dir.path(), "big", 8 << 20, 7, &["--piece-length", "64K"]);
    let mut seed = Proc::spawn_local(&["seed", torrent.to_str().unwrap(), "--json", "--no-dht"]);
    let (quic, _) = seed.listening();
    seed.wait_event("checked", 10.0);
    let out = dir.path().join("got");
    let args = |limit: &[&'static str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "fetch",
            &ih,
            "-o",
            out.to_str().unwrap(),
            "--json",
            "--no-dht",
            "--peer",
            &quic,
            "--timeout",
            "20",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(limit.iter().map(|s| s.to_string()));
        a.extend(LOOPBACK.iter().map(|s| s.to_string()));
        a
    };
    // Slow first run: 1 MiB/s, killed once more than half the pieces are verified (and a resume save passed).
    let mut first = Proc::spawn(&args(&["--download-limit", "1M"]));
    first.listening();
    let total = first.wait_event("metadata", 10.0)["pieces"]
        .as_u64()
        .unwrap();
    let mut have_at_kill = 0;
    while have_at_kill * 2 <= total {
        let v = first.wait_event("progress", 15.0);
        have_at_kill = v["have"].as_u64().unwrap();
    }
    assert!(have_at_kill < total, "the first run must not finish");
    first.child.kill().unwrap(); // SIGKILL
    first.child.wait().unwrap();

    let mut second = Proc::spawn(&args(&[]));
    second.listening();
    let checked = second.wait_event("checked", 15.0);
    let have = checked["have"].as_u64().unwrap();
    assert!(
        have >= have_at_kill * 9 / 10,
        "restart kept {have} pieces, {have_at_kill} were verified before the kill"
    );
    let done = second.wait_event("complete", 20.0);
    let downloaded = done["downloaded"].as_u64().unwrap();
    let missing = (total - have) * (64 << 10);
    assert!(
        downloaded <= missing + (1 << 20),
        "the restart downloaded {downloaded} bytes, only {missing} were missing"
    );
    assert!(second.wait_exit(10.0).success());
    assert_eq!(std::fs::read(out.join("big.bin")).unwrap(), data);
}

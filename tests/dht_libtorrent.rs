//! Interoperability with libtorrent's DHT (Debian python3-libtorrent, all on 127.0.0.1): a libtorrent node
//! bootstraps from a `qswarm dht` node; a qswarm node finds the peer libtorrent announced, and libtorrent
//! finds the peer a qswarm node announced. Skips (with the reason printed) when `import libtorrent` fails.
mod dht_common;

use dht_common::Proc;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

const PYTHON: &str = "/usr/bin/python3";
const IH1: &str = "1111111111111111111111111111111111111111"; // announced by libtorrent
const IH2: &str = "2222222222222222222222222222222222222222"; // announced by qswarm

#[test]
fn libtorrent_and_qswarm_find_each_others_peers() {
    let probe = Command::new(PYTHON)
        .args(["-c", "import libtorrent"])
        .output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        println!("SKIPPED: `{PYTHON} -c \"import libtorrent\"` failed (install python3-libtorrent): {probe:?}");
        return;
    }
    let boot = Proc::start(&["--no-bootstrap"]);
    let a = boot.addr.clone();
    let mut announcer = Proc::start(&[
        "--bootstrap",
        &a,
        "--announce",
        &format!("{IH2}:6000"),
        "--reannounce",
        "3",
    ]);
    assert!(announcer
        .wait_for(|v| v["event"] == "announced", Duration::from_secs(20))
        .is_some());

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dht_libtorrent_node.py");
    let save = tempfile::tempdir().unwrap();
    let mut lt = Command::new(PYTHON)
        .args([script, &a, IH1, IH2, "40", save.path().to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the libtorrent node");
    let out = lt.stdout.take().unwrap();
    let (tx, lines) = channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let lt_port = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let l = lines
            .recv_timeout(left)
            .expect("libtorrent prints its LISTEN port");
        if let Some(p) = l.strip_prefix("LISTEN ") {
            break p.trim().to_string();
        }
    };

    // qswarm finds libtorrent's announce (libtorrent announces its listen port).
    let mut seeker = Proc::start(&["--bootstrap", &a, "--get-peers", IH1]);
    let want = format!("127.0.0.1:{lt_port}");
    let found = seeker.wait_for(
        |v| v["event"] == "peer" && v["addr"] == want.as_str(),
        Duration::from_secs(40),
    );
    // libtorrent finds qswarm's announce.
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut lt_found = false;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(l) if l.trim() == "FOUND 127.0.0.1:6000" => {
                lt_found = true;
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let _ = lt.kill();
    let _ = lt.wait();
    assert!(
        found.is_some(),
        "qswarm did not find libtorrent's peer {want}: {:?}",
        seeker.seen
    );
    assert!(
        lt_found,
        "libtorrent did not find qswarm's peer 127.0.0.1:6000"
    );
    drop(boot);
}

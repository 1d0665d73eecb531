//! Real `qswarm dht` processes on 127.0.0.1: one announces an infohash, another finds it with get_peers;
//! the routing table survives a SIGTERM through the state file.
mod dht_common;

use dht_common::Proc;
use std::time::Duration;

const IH: &str = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";

#[test]
fn announce_on_one_process_found_from_another() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("boot.state");
    let state_s = state.to_str().unwrap();
    let mut boot = Proc::start(&["--no-bootstrap", "--state", state_s]);
    let b = boot.addr.clone();
    let mut others: Vec<Proc> = (0..3).map(|_| Proc::start(&["--bootstrap", &b])).collect();
    for o in others.iter_mut() {
        assert!(o
            .wait_for(|v| v["event"] == "bootstrapped", Duration::from_secs(20))
            .is_some());
    }
    let mut announcer = Proc::start(&["--bootstrap", &b, "--announce", &format!("{IH}:5555")]);
    let ann = announcer
        .wait_for(|v| v["event"] == "announced", Duration::from_secs(20))
        .expect("announced");
    assert!(ann["nodes"].as_u64().unwrap() >= 3, "announced to {ann}");
    let mut seeker = Proc::start(&["--bootstrap", &b, "--get-peers", IH]);
    let peer = seeker
        .wait_for(
            |v| v["event"] == "peer" && v["info_hash"] == IH,
            Duration::from_secs(20),
        )
        .expect("the seeker finds the announced peer");
    assert_eq!(peer["addr"], "127.0.0.1:5555");

    // SIGTERM: the bootstrap node saves its routing table and exits 0.
    assert_eq!(boot.terminate(), Some(0));
    let (_, nodes) = qswarm::dht::node::decode_state(&std::fs::read(&state).unwrap()).unwrap();
    assert!(nodes.len() >= 4, "saved {} nodes", nodes.len());
    // Restarted from the state file alone (no --bootstrap), it rejoins through the saved nodes.
    let mut again = Proc::start(&["--state", state_s]);
    let v = again
        .wait_for(|v| v["event"] == "bootstrapped", Duration::from_secs(20))
        .expect("rejoined");
    assert!(v["nodes"].as_u64().unwrap() >= 4, "{v}");
}

#[test]
fn bad_arguments_exit_2() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_qswarm"))
        .args([
            "dht",
            "--dht-listen",
            "127.0.0.1:0",
            "--no-bootstrap",
            "--get-peers",
            "nothex",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("infohash"));
}

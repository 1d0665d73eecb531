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

/// A real process under hostile input: garbage, oversized datagrams, unknown methods and a ping flood from one
/// socket. It keeps answering others, answers 204 to unknown methods, and the flooder recovers within seconds.
#[test]
fn survives_garbage_and_floods() {
    use std::net::UdpSocket;
    let node = Proc::start(&["--no-bootstrap"]);
    let target: std::net::SocketAddr = node.addr.parse().unwrap();
    let ping = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe";
    let recv = |s: &UdpSocket| {
        let mut buf = [0u8; 1500];
        s.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
    };
    let flooder = UdpSocket::bind("127.0.0.1:0").unwrap();
    flooder
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let unknown = b"d1:ad2:id20:abcdefghij0123456789e1:q4:vote1:t2:xy1:y1:qe";
    flooder.send_to(unknown, target).unwrap();
    let reply = recv(&flooder).expect("an answer to an unknown method");
    assert!(
        reply.windows(6).any(|w| w == b"i204e1"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    for i in 0..3000u32 {
        let junk: Vec<u8> = match i % 3 {
            0 => vec![b'd'; 2000],
            1 => i.to_be_bytes().repeat(5),
            _ => ping.to_vec(),
        };
        flooder.send_to(&junk, target).unwrap();
    }
    // Another source is answered (a few tries: the kernel may drop datagrams while the socket buffer is full).
    let other = UdpSocket::bind("127.0.0.1:0").unwrap();
    other
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let answered = (0..6).any(|_| {
        other.send_to(ping, target).unwrap();
        recv(&other).is_some_and(|r| r.starts_with(b"d1:rd2:id20:"))
    });
    assert!(answered, "others are still answered");
    // Drain what the flood got back, then after a pause the flooder is answered again.
    let mut replies = 0;
    while recv(&flooder).is_some() {
        replies += 1;
    }
    println!("the flood of 1000 pings got {replies} replies");
    assert!(
        replies <= 300,
        "rate limit: {replies} replies to a 1000-ping burst"
    );
    std::thread::sleep(Duration::from_secs(3));
    flooder.send_to(ping, target).unwrap();
    assert!(
        recv(&flooder).is_some(),
        "the flooding source recovers once it stops"
    );
}

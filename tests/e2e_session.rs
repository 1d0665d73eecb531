//! The library API in one process on 127.0.0.1: a seeding session and a fetching session that knows only the
//! infohash and the seeder's address (no DHT); events in order, the status snapshot, byte-identical data; and a
//! stop / re-add that resumes from the saved state without fetching anything again.

use qswarm::metainfo::{InfoHash, Metainfo};
use qswarm::net::session::{
    AddTorrent, PeerState, Session, SessionConfig, SessionEvent, TorrentSource,
};
use std::time::Duration;

fn config() -> SessionConfig {
    SessionConfig {
        dht_listen: None,
        ..SessionConfig::loopback()
    }
}

async fn next_complete(h: &mut qswarm::net::session::TorrentHandle) -> Vec<SessionEvent> {
    let mut seen = Vec::new();
    let got = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(e) = h.events.recv().await {
            let done = matches!(e, SessionEvent::Complete { .. });
            seen.push(e);
            if done {
                return;
            }
        }
    })
    .await;
    assert!(got.is_ok(), "no complete event: {seen:?}");
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_and_fetch_by_infohash_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..1_500_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("src/song.ogg"), &data).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_qswarm"))
        .current_dir(dir.path())
        .args(["create", "src/song.ogg", "-o", "song.torrent"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let meta =
        Metainfo::from_bytes(&std::fs::read(dir.path().join("song.torrent")).unwrap()).unwrap();
    let ih: InfoHash = meta.info_hash;

    let seeder = Session::start(config()).await.unwrap();
    let mut seeding = seeder.seed(meta, dir.path().join("src")).await.unwrap();
    next_complete(&mut seeding).await; // the data checked out: complete from the start

    let leecher = Session::start(config()).await.unwrap();
    let get = dir.path().join("get");
    let mut fetch = leecher
        .fetch(ih, &get, vec![seeder.quic_addr()])
        .await
        .unwrap();
    let events = next_complete(&mut fetch).await;
    assert!(
        matches!(
            events.first(),
            Some(SessionEvent::Peer {
                state: PeerState::Connected,
                ..
            }) | Some(SessionEvent::Metadata { .. })
        ),
        "{events:?}"
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, SessionEvent::Metadata { name, .. } if name == "song.ogg")));
    let Some(SessionEvent::Complete { downloaded, .. }) = events.last() else {
        unreachable!()
    };
    assert!(*downloaded >= data.len() as u64);
    let s = fetch.status.borrow().clone();
    assert!(
        s.complete && s.have == s.pieces && s.bytes_have == data.len() as u64,
        "{s:?}"
    );
    assert_eq!(std::fs::read(get.join("song.ogg")).unwrap(), data);

    // Stop and add again: the saved metadata and resume state make it complete at once, nothing fetched.
    fetch.stop().await;
    let mut again = AddTorrent::new(TorrentSource::InfoHash(ih), &get);
    again.use_dht = false;
    let mut h = leecher.add(again).await.unwrap();
    let events = next_complete(&mut h).await;
    assert!(
        events.contains(&SessionEvent::Checked {
            have: s.pieces,
            rechecked: 0
        }),
        "{events:?}"
    );
    let Some(SessionEvent::Complete { downloaded, .. }) = events.last() else {
        unreachable!()
    };
    assert_eq!(*downloaded, 0);
    h.stop().await;
    seeding.stop().await;
    leecher.shutdown().await;
    seeder.shutdown().await;
}

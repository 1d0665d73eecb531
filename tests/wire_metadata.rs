//! Sans-IO tests of the BEP 9 metadata fetcher (liars are found and dropped, blocks refetched elsewhere) and of
//! the BEP 11 PEX state (diffs, once a minute).

use bytes::Bytes;
use qswarm::metainfo::InfoHash;
use qswarm::wire::fetcher::{DropReason, FetchEvent, MetadataFetcher, REQUEST_TIMEOUT};
use qswarm::wire::metadata::{serve_request, MetadataMsg};
use qswarm::wire::pex::{PexMessage, PexState, PexTooFrequent, PEX_INTERVAL};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn info(len: usize) -> Bytes {
    Bytes::from((0..len).map(|i| (i * 7 % 251) as u8).collect::<Vec<_>>())
}

/// Answer every request: `liars` flip the first byte of each block they serve. Returns the events.
fn run(
    f: &mut MetadataFetcher<u8>,
    info: &Bytes,
    liars: &[u8],
    now: Instant,
) -> Vec<FetchEvent<u8>> {
    let mut events = Vec::new();
    for _ in 0..10_000 {
        // Pipelined, as on the wire: all requests go out, then the answers come back.
        let requests: Vec<(u8, u32)> = std::iter::from_fn(|| f.poll_request(now)).collect();
        let progressed = !requests.is_empty();
        for (peer, piece) in requests {
            if let MetadataMsg::Data {
                piece,
                total_size,
                data,
            } = serve_request(info, piece)
            {
                let data = if liars.contains(&peer) {
                    let mut v = data.to_vec();
                    v[0] ^= 0xff;
                    Bytes::from(v)
                } else {
                    data
                };
                f.handle_data(&peer, piece, total_size, data);
            }
        }
        while let Some(e) = f.poll_event() {
            events.push(e);
        }
        if f.is_done() || !progressed {
            break;
        }
    }
    events
}

fn complete(events: &[FetchEvent<u8>]) -> Option<&Bytes> {
    events.iter().find_map(|e| match e {
        FetchEvent::Complete(b) => Some(b),
        _ => None,
    })
}

fn dropped(events: &[FetchEvent<u8>]) -> Vec<u8> {
    events
        .iter()
        .filter_map(|e| match e {
            FetchEvent::Drop { peer, .. } => Some(*peer),
            _ => None,
        })
        .collect()
}

#[test]
fn fetches_from_one_honest_peer() {
    let data = info(40_000);
    let mut f = MetadataFetcher::new(InfoHash::of(&data));
    f.add_peer(1, 40_000);
    let ev = run(&mut f, &data, &[], Instant::now());
    assert_eq!(complete(&ev), Some(&data));
    assert!(dropped(&ev).is_empty());
}

#[test]
fn liar_among_several_is_found_and_dropped() {
    let data = info(100_000);
    for liar in 1..=3u8 {
        let mut f = MetadataFetcher::new(InfoHash::of(&data));
        for p in 1..=3 {
            f.add_peer(p, 100_000);
        }
        let ev = run(&mut f, &data, &[liar], Instant::now());
        assert_eq!(complete(&ev), Some(&data), "liar {liar}");
        assert_eq!(dropped(&ev), vec![liar], "liar {liar}");
    }
}

#[test]
fn two_liars_and_one_honest() {
    let data = info(70_000);
    let mut f = MetadataFetcher::new(InfoHash::of(&data));
    for p in 1..=3 {
        f.add_peer(p, 70_000);
    }
    let ev = run(&mut f, &data, &[1, 3], Instant::now());
    assert_eq!(complete(&ev), Some(&data));
    let mut d = dropped(&ev);
    d.sort();
    assert_eq!(d, vec![1, 3]);
}

#[test]
fn only_liars_never_complete() {
    let data = info(20_000);
    let mut f = MetadataFetcher::new(InfoHash::of(&data));
    f.add_peer(1, 20_000);
    f.add_peer(2, 20_000);
    let ev = run(&mut f, &data, &[1, 2], Instant::now());
    assert!(complete(&ev).is_none());
    assert_eq!(dropped(&ev).len(), 2);
    assert!(f.poll_request(Instant::now()).is_none());
}

#[test]
fn wrong_size_and_wrong_length_are_malformed() {
    let data = info(20_000);
    let now = Instant::now();
    let mut f = MetadataFetcher::new(InfoHash::of(&data));
    f.add_peer(1, 20_000);
    f.add_peer(2, 20_000);
    let (p, piece) = f.poll_request(now).unwrap();
    f.handle_data(&p, piece, 20_000, Bytes::from_static(b"short"));
    assert_eq!(
        f.poll_event(),
        Some(FetchEvent::Drop {
            peer: p,
            reason: DropReason::Malformed
        })
    );
    // The honest peer still gets everything.
    let ev = run(&mut f, &data, &[], now);
    assert_eq!(complete(&ev), Some(&data));
}

#[test]
fn timeouts_and_rejects_move_blocks_elsewhere() {
    let data = info(20_000);
    let t0 = Instant::now();
    let mut f = MetadataFetcher::new(InfoHash::of(&data));
    f.add_peer(1, 20_000);
    let (p, first) = f.poll_request(t0).unwrap();
    assert_eq!(p, 1);
    let (_, second) = f.poll_request(t0).unwrap();
    f.handle_reject(t0, &1, second);
    // Peer 1 rests after the reject; peer 2 arrives and takes the rejected block.
    f.add_peer(2, 20_000);
    assert_eq!(f.poll_request(t0), Some((2, second)));
    assert_eq!(f.poll_timeout(), Some(t0 + REQUEST_TIMEOUT));
    f.handle_timeout(t0 + REQUEST_TIMEOUT);
    // Both requests timed out: both blocks are free again once the back-off passes.
    let later = t0 + REQUEST_TIMEOUT + Duration::from_secs(11);
    let mut again: Vec<u32> =
        std::iter::from_fn(|| f.poll_request(later).map(|(_, b)| b)).collect();
    again.sort();
    assert_eq!(again, vec![first.min(second), first.max(second)]);
}

fn a(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[test]
fn pex_sends_diffs_at_most_once_a_minute() {
    let t0 = Instant::now();
    let mut s = PexState::new();
    let mut connected: BTreeSet<_> = [a(1), a(2), a(3)].into();
    let m = s.poll_message(t0, &connected, Some(a(1))).unwrap();
    assert_eq!(
        m,
        PexMessage {
            added: vec![a(2), a(3)],
            dropped: vec![]
        }
    );
    connected.remove(&a(2));
    connected.insert(a(4));
    assert_eq!(
        s.poll_message(t0 + Duration::from_secs(59), &connected, Some(a(1))),
        None
    );
    assert_eq!(s.poll_timeout(), Some(t0 + PEX_INTERVAL));
    let m = s
        .poll_message(t0 + PEX_INTERVAL, &connected, Some(a(1)))
        .unwrap();
    assert_eq!(
        m,
        PexMessage {
            added: vec![a(4)],
            dropped: vec![a(2)]
        }
    );
    // Nothing changed: nothing to send.
    assert_eq!(
        s.poll_message(t0 + 3 * PEX_INTERVAL, &connected, Some(a(1))),
        None
    );
}

#[test]
fn pex_messages_are_capped_and_rate_limited() {
    let t0 = Instant::now();
    let mut s = PexState::new();
    let many: BTreeSet<_> = (1..=200).map(a).collect();
    let m = s.poll_message(t0, &many, None).unwrap();
    assert_eq!(m.added.len(), 50);
    let decoded = PexMessage::decode(&m.encode()).unwrap();
    assert_eq!(decoded, m);
    let mut r = PexState::new();
    assert_eq!(r.handle_message(t0, &m).unwrap().len(), 50);
    assert_eq!(
        r.handle_message(t0 + Duration::from_secs(10), &m),
        Err(PexTooFrequent)
    );
    assert!(r.handle_message(t0 + PEX_INTERVAL, &m).is_ok());
}

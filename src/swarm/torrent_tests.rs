//! Unit tests of the torrent machine: message-level scenarios with `check_invariants()` after every step.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::{rngs::StdRng, SeedableRng};

use super::actions::{Action, DisconnectReason, TorrentConfig, TorrentEvent};
use super::geometry::Geometry;
use super::rate::Limiter;
use super::torrent::Torrent;
use super::PeerKey;
use crate::wire::message::{BlockRef, Message, BLOCK_SIZE};

pub(super) const A: PeerKey = PeerKey(1);
pub(super) const B: PeerKey = PeerKey(2);

fn addr(k: PeerKey) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7000 + k.0 as u16))
}
fn pid(k: PeerKey) -> [u8; 20] {
    [k.0 as u8; 20]
}

pub(super) struct T {
    pub(super) t: Torrent,
    pub(super) now: Instant,
}

impl T {
    /// `pieces` pieces of 2 blocks each, nothing had.
    pub(super) fn new(pieces: u64, have: &[u32], tune: impl FnOnce(&mut TorrentConfig)) -> Self {
        let now = crate::sim::swarm::epoch();
        let mut cfg = TorrentConfig::new(32768);
        tune(&mut cfg);
        let g = Geometry::new(pieces * 32768, 32768).unwrap();
        let t = Torrent::new(now, g, have, cfg, StdRng::seed_from_u64(7));
        Self { t, now }
    }
    pub(super) fn drain(&mut self) -> Vec<Action> {
        self.t.check_invariants();
        std::iter::from_fn(|| self.t.poll_action()).collect()
    }
    pub(super) fn connect(&mut self, k: PeerKey) -> Vec<Action> {
        self.t.peer_connected(self.now, k, addr(k), pid(k));
        self.drain()
    }
    pub(super) fn msg(&mut self, k: PeerKey, m: Message) -> Vec<Action> {
        self.t.handle_message(self.now, k, m);
        self.drain()
    }
    pub(super) fn tick(&mut self, dt: Duration) -> Vec<Action> {
        self.now += dt;
        self.t.tick(self.now);
        self.drain()
    }
    pub(super) fn block(&mut self, k: PeerKey, b: BlockRef) -> Vec<Action> {
        let data = Bytes::from(vec![0u8; b.length as usize]).into();
        self.msg(
            k,
            Message::Piece {
                piece: b.piece,
                offset: b.offset,
                data,
            },
        )
    }
}

fn sent(actions: &[Action], to: PeerKey) -> Vec<Message> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { peer, msg } if *peer == to => Some(msg.clone()),
            _ => None,
        })
        .collect()
}

pub(super) fn requests(actions: &[Action], to: PeerKey) -> Vec<BlockRef> {
    sent(actions, to)
        .into_iter()
        .filter_map(|m| match m {
            Message::Request(b) => Some(b),
            _ => None,
        })
        .collect()
}

#[test]
fn interest_unchoke_request_receive_verify_complete() {
    let mut t = T::new(2, &[], |_| {});
    assert!(t.connect(A).is_empty(), "nothing to announce yet");
    let a = t.msg(A, Message::HaveAll);
    assert_eq!(sent(&a, A), vec![Message::Interested]);
    let a = t.msg(A, Message::Unchoke);
    let reqs = requests(&a, A);
    assert_eq!(reqs.len(), 4, "min queue of 4 blocks: {a:?}");
    let mut writes = 0;
    let mut verify = Vec::new();
    for b in reqs {
        for act in t.block(A, b) {
            match act {
                Action::WriteBlock { block, .. } => {
                    assert!(
                        verify.iter().all(|p| *p != block.piece),
                        "write after verify"
                    );
                    writes += 1;
                }
                Action::VerifyPiece { piece } => verify.push(piece),
                _ => {}
            }
        }
    }
    assert_eq!(writes, 4);
    assert_eq!(verify.len(), 2);
    let a = {
        t.t.piece_verified(t.now, verify[0], true);
        t.drain()
    };
    assert!(a.contains(&Action::Event(TorrentEvent::PieceCompleted {
        piece: verify[0]
    })));
    assert!(
        !a.contains(&Action::Event(TorrentEvent::Complete)),
        "one piece is not the torrent"
    );
    let a = {
        t.t.piece_verified(t.now, verify[1], true);
        t.drain()
    };
    assert!(a.contains(&Action::Event(TorrentEvent::Complete)));
    // Both complete: the seed is dropped.
    assert!(a.contains(&Action::Disconnect {
        peer: A,
        reason: DisconnectReason::BothComplete
    }));
    assert!(t.t.is_complete());
}

#[test]
fn timed_out_requests_return_to_the_pool_and_go_to_another_peer() {
    let mut t = T::new(4, &[], |c| {
        c.request_timeout = Duration::from_secs(20);
        c.stall.floor = Duration::from_secs(20);
    });
    t.connect(A);
    t.connect(B);
    t.msg(A, Message::HaveAll);
    t.msg(B, Message::HaveAll);
    let ra = requests(&t.msg(A, Message::Unchoke), A);
    assert_eq!(ra.len(), 4);
    // A delivers one block (one that never delivered would be dropped as stalled: stall_tests), then stalls.
    let more = requests(&t.block(A, ra[0]), A);
    assert!(!more.is_empty());
    // Table: (seconds elapsed, expect cancels to A)
    let mut again = Vec::new();
    for (secs, cancels) in [(10u64, false), (9, false), (2, true)] {
        let a = t.tick(Duration::from_secs(secs));
        again.extend(requests(&a, A));
        let c: Vec<Message> = sent(&a, A)
            .into_iter()
            .filter(|m| matches!(m, Message::Cancel(_)))
            .collect();
        assert_eq!(!c.is_empty(), cancels, "after +{secs}s: {a:?}");
        if cancels {
            assert_eq!(c.len(), 3 + more.len());
        }
    }
    // A, still unchoking us, gets a single request until it delivers again: it re-asks for the open block of
    // its started piece (strict priority); the rest is free for B.
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0], ra[1], "started piece first: {again:?}");
    assert_eq!(t.t.tracker().open_blocks(), 0);
    let rb = requests(&t.msg(B, Message::Unchoke), B);
    assert_eq!(rb.len(), 4);
    assert!(!rb.contains(&again[0]), "{rb:?}");
    // A now only gets one request at a time until it delivers.
    let a = t.msg(A, Message::Choke);
    assert!(requests(&a, A).is_empty());
    let a = t.msg(A, Message::Unchoke);
    assert!(requests(&a, A).len() <= 1);
}

#[test]
fn choke_returns_outstanding_blocks() {
    let mut t = T::new(4, &[], |_| {});
    t.connect(A);
    t.msg(A, Message::HaveAll);
    let ra = requests(&t.msg(A, Message::Unchoke), A);
    t.block(A, ra[0]);
    assert_eq!(t.t.tracker().open_blocks(), 0);
    t.msg(A, Message::Choke);
    // The started piece keeps its received block and has one open; the untouched one is queued again.
    assert_eq!(t.t.tracker().open_blocks(), 1);
    assert_eq!(t.t.tracker().count(super::pieces::PieceState::InFlight), 1);
    // A late block of a returned request is still accepted.
    let a = t.block(A, ra[1]);
    assert!(a
        .iter()
        .any(|x| matches!(x, Action::WriteBlock { block, .. } if *block == ra[1])));
}

#[test]
fn end_game_duplicates_and_cancels_on_arrival() {
    let mut t = T::new(1, &[], |_| {});
    t.connect(A);
    t.connect(B);
    t.msg(A, Message::HaveAll);
    t.msg(B, Message::HaveAll);
    let ra = requests(&t.msg(A, Message::Unchoke), A);
    assert_eq!(ra.len(), 2, "the whole torrent");
    let rb = requests(&t.msg(B, Message::Unchoke), B);
    assert_eq!(rb, ra, "end-game: the same blocks from B");
    let a = t.block(B, rb[0]);
    assert_eq!(sent(&a, A), vec![Message::Cancel(rb[0])]);
    let a = t.block(A, ra[1]);
    assert_eq!(sent(&a, B), vec![Message::Cancel(ra[1])]);
    assert!(a.contains(&Action::VerifyPiece { piece: 0 }));
}

#[test]
fn failed_pieces_strike_and_ban_the_sender() {
    let mut t = T::new(8, &[], |c| c.strikes_to_ban = 2);
    t.connect(A);
    t.msg(A, Message::HaveAll);
    let mut failures = 0;
    let mut banned = false;
    let mut reqs = requests(&t.msg(A, Message::Unchoke), A);
    while !banned {
        let b = reqs.remove(0);
        let mut acts = t.block(A, b);
        reqs.extend(requests(&acts, A));
        if let Some(piece) = acts.iter().find_map(|x| match x {
            Action::VerifyPiece { piece } => Some(*piece),
            _ => None,
        }) {
            t.t.piece_verified(t.now, piece, false);
            acts = t.drain();
            failures += 1;
            assert!(acts.contains(&Action::Event(TorrentEvent::PieceFailed {
                piece,
                from: vec![A]
            })));
            assert!(!t.t.tracker().have(piece), "a failed piece is never kept");
            banned = acts.contains(&Action::Disconnect {
                peer: A,
                reason: DisconnectReason::Banned,
            });
            reqs.extend(requests(&acts, A));
        }
        assert!(failures <= 2);
    }
    assert_eq!(failures, 2);
    assert_eq!(t.t.peer_count(), 0);
    assert_eq!(
        t.t.tracker().open_blocks(),
        0,
        "its requests were returned and the idle pieces queued again"
    );
    // Same address or same peer id under a new key: refused.
    let a = t.connect(PeerKey(9));
    assert!(a.is_empty());
    t.t.peer_connected(t.now, PeerKey(10), addr(A), [0xee; 20]);
    assert_eq!(
        t.drain(),
        vec![Action::Disconnect {
            peer: PeerKey(10),
            reason: DisconnectReason::Banned
        }]
    );
    t.t.peer_connected(t.now, PeerKey(11), addr(PeerKey(11)), pid(A));
    assert_eq!(
        t.drain(),
        vec![Action::Disconnect {
            peer: PeerKey(11),
            reason: DisconnectReason::Banned
        }]
    );
}

#[test]
fn uploads_follow_unchoke_pipeline_and_choke() {
    let all: Vec<u32> = (0..4).collect();
    let mut t = T::new(4, &all, |c| c.upload_pipeline = 2);
    let a = t.connect(A);
    assert!(matches!(&sent(&a, A)[..], [Message::Bitfield(b)] if b[0] == 0xf0));
    let a = t.msg(A, Message::Interested);
    assert_eq!(
        sent(&a, A),
        vec![Message::Unchoke],
        "a free slot is given at once"
    );
    let blocks: Vec<BlockRef> = (0..3)
        .map(|i| BlockRef {
            piece: i,
            offset: 0,
            length: BLOCK_SIZE,
        })
        .collect();
    let mut reads = Vec::new();
    for b in &blocks {
        for x in t.msg(A, Message::Request(*b)) {
            if let Action::ReadBlock { block, .. } = x {
                reads.push(block);
            }
        }
    }
    assert_eq!(reads, blocks[..2], "two reads in flight, the third waits");
    t.t.block_read(
        t.now,
        A,
        reads[0],
        Bytes::from_static(&[0u8; BLOCK_SIZE as usize]),
    );
    let a = t.drain();
    assert!(matches!(
        &sent(&a, A)[..],
        [Message::Piece {
            piece: 0,
            offset: 0,
            ..
        }]
    ));
    t.t.block_sent(t.now, A);
    let a = t.drain();
    assert!(a.contains(&Action::ReadBlock {
        peer: A,
        block: blocks[2]
    }));
    assert_eq!(t.t.uploaded(), u64::from(BLOCK_SIZE));
    // Not interested any more: choked, the read in flight is dropped when it completes.
    let a = t.msg(A, Message::NotInterested);
    assert_eq!(sent(&a, A), vec![Message::Choke]);
    t.t.block_read(
        t.now,
        A,
        blocks[1],
        Bytes::from_static(&[0u8; BLOCK_SIZE as usize]),
    );
    assert!(sent(&t.drain(), A).is_empty());
    // Requests while choked are ignored; out-of-range requests are a protocol error.
    assert!(t.msg(A, Message::Request(blocks[0])).is_empty());
    let bad = BlockRef {
        piece: 0,
        offset: 0,
        length: BLOCK_SIZE * 2,
    };
    let a = t.msg(A, Message::Request(bad));
    assert!(matches!(
        &a[..],
        [Action::Disconnect {
            peer: A,
            reason: DisconnectReason::Protocol(_)
        }]
    ));
}

#[test]
fn upload_limit_below_one_block_per_second_paces_reads() {
    let all: Vec<u32> = (0..8).collect();
    let mut t = T::new(8, &all, |c| {
        c.upload_limit = Some(Limiter::new(crate::sim::swarm::epoch(), 4096));
        c.upload_pipeline = 100;
    });
    t.connect(A);
    t.msg(A, Message::Interested);
    let mut reads = 0;
    for i in 0..8 {
        let b = BlockRef {
            piece: i,
            offset: 0,
            length: BLOCK_SIZE,
        };
        reads += t
            .msg(A, Message::Request(b))
            .iter()
            .filter(|x| matches!(x, Action::ReadBlock { .. }))
            .count();
    }
    assert_eq!(reads, 1, "the 16 KiB burst allows one block at once");
    // 4096 B/s: one 16 KiB block every 4 s; over 40 s about 10 more are allowed (here capped by 7 left).
    let mut times = Vec::new();
    for s in 1..=40u64 {
        let n = t
            .tick(Duration::from_secs(1))
            .iter()
            .filter(|x| matches!(x, Action::ReadBlock { .. }))
            .count();
        for _ in 0..n {
            times.push(s);
        }
    }
    assert_eq!(times.len(), 7, "{times:?}");
    assert!(
        times.windows(2).all(|w| w[1] - w[0] >= 3),
        "paced: {times:?}"
    );
}

#[test]
fn malformed_bitfield_and_have_disconnect() {
    let mut t = T::new(4, &[], |_| {});
    t.connect(A);
    let a = t.msg(A, Message::Bitfield(Bytes::from_static(&[0xf8])));
    assert!(
        matches!(
            &a[..],
            [Action::Disconnect {
                peer: A,
                reason: DisconnectReason::Protocol(_)
            }]
        ),
        "{a:?}"
    );
    t.connect(B);
    let a = t.msg(B, Message::Have { piece: 4 });
    assert!(matches!(
        &a[..],
        [Action::Disconnect {
            peer: B,
            reason: DisconnectReason::Protocol(_)
        }]
    ));
    assert_eq!(t.t.peer_count(), 0);
}

#[test]
fn leaving_peer_returns_blocks_and_availability() {
    let mut t = T::new(4, &[], |_| {});
    t.connect(A);
    t.msg(A, Message::Bitfield(Bytes::from_static(&[0xc0])));
    assert_eq!(t.t.tracker().availability(0), 1);
    let ra = requests(&t.msg(A, Message::Unchoke), A);
    assert_eq!(ra.len(), 4);
    t.t.peer_disconnected(t.now, A);
    t.drain();
    assert_eq!(t.t.tracker().availability(0), 0);
    assert_eq!(t.t.tracker().count(super::pieces::PieceState::InFlight), 0);
}

#[test]
fn download_limit_paces_requests() {
    let mut t = T::new(16, &[], |c| {
        c.download_limit = Some(Limiter::new(crate::sim::swarm::epoch(), 8192))
    });
    t.connect(A);
    t.msg(A, Message::HaveAll);
    let mut pending = requests(&t.msg(A, Message::Unchoke), A);
    assert_eq!(pending.len(), 1, "16 KiB burst: one request at once");
    // A delivers every request a second later; requests are paced by the limit, not by A.
    let mut n = 0;
    for _ in 0..20 {
        let mut next = requests(&t.tick(Duration::from_secs(1)), A);
        for b in pending.drain(..) {
            next.extend(requests(&t.block(A, b), A));
        }
        n += next.len();
        pending = next;
    }
    // 8192 B/s for 20 s = 10 blocks' worth.
    assert!((9..=11).contains(&n), "{n} requests in 20 s");
}

#[test]
fn a_request_flood_while_choked_closes_the_peer() {
    // We have every piece and choke A: its requests are ignored, up to `max_incoming_requests` of them; one
    // more is a flood (issue 8, tests/fault_liars.rs) and closes the connection.
    let all: Vec<u32> = (0..4).collect();
    let mut t = T::new(4, &all, |c| c.max_incoming_requests = 50);
    t.connect(A);
    t.msg(A, Message::HaveNone);
    let b = BlockRef {
        piece: 1,
        offset: 0,
        length: BLOCK_SIZE,
    };
    for _ in 0..50 {
        let a = t.msg(A, Message::Request(b));
        assert!(
            !a.iter().any(|x| matches!(x, Action::Disconnect { .. })),
            "{a:?}"
        );
    }
    let a = t.msg(A, Message::Request(b));
    assert!(
        a.iter().any(|x| matches!(
            x,
            Action::Disconnect {
                peer: A,
                reason: DisconnectReason::Protocol("request flood")
            }
        )),
        "{a:?}"
    );
}

#[test]
fn an_honest_co_sender_of_a_failed_piece_is_not_banned_with_the_liar() {
    // One piece of two blocks from A and B (end-game asks both for both). It fails: both get a strike, but
    // neither was its only sender, so with strikes_to_ban = 1 neither is banned yet (tests/fault_liars.rs
    // once saw the honest seeder banned this way). Then A alone sends a bad copy: A is proven and banned, B
    // is not.
    let mut t = T::new(1, &[], |c| c.strikes_to_ban = 1);
    t.connect(A);
    t.connect(B);
    t.msg(A, Message::HaveAll);
    t.msg(B, Message::HaveAll);
    let ra = requests(&t.msg(A, Message::Unchoke), A);
    let rb = requests(&t.msg(B, Message::Unchoke), B);
    assert_eq!(ra.len(), 2);
    assert_eq!(rb, ra);
    t.block(A, ra[0]);
    let acts = t.block(B, ra[1]);
    assert!(acts.contains(&Action::VerifyPiece { piece: 0 }));
    t.t.piece_verified(t.now, 0, false);
    let acts = t.drain();
    assert!(acts.contains(&Action::Event(TorrentEvent::PieceFailed {
        piece: 0,
        from: vec![A, B]
    })));
    assert!(
        !acts.iter().any(|x| matches!(x, Action::Disconnect { .. })),
        "nobody is proven yet: {acts:?}"
    );
    assert_eq!(t.t.peer_count(), 2);
    let again = requests(&acts, A);
    assert_eq!(again.len(), 2, "the piece is asked again: {acts:?}");
    t.block(A, again[0]);
    let acts = t.block(A, again[1]);
    assert!(acts.contains(&Action::VerifyPiece { piece: 0 }));
    t.t.piece_verified(t.now, 0, false);
    let acts = t.drain();
    assert!(acts.contains(&Action::Disconnect {
        peer: A,
        reason: DisconnectReason::Banned
    }));
    assert!(!acts.contains(&Action::Disconnect {
        peer: B,
        reason: DisconnectReason::Banned
    }));
    assert_eq!(t.t.peer_count(), 1, "B stays");
}

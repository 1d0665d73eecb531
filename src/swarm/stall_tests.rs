//! Torrent-level tests of the stall rule ([`super::stall`]): scripted peers (silent, choking, slow, lossy, ...)
//! beside an honest one, on a deterministic clock stepped 50 ms at a time; who is dropped as stalled, and when.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::actions::{Action, DisconnectReason};
use super::torrent_tests::{A, B, T};
use super::PeerKey;
use crate::wire::message::{BlockRef, Message};

const C: PeerKey = PeerKey(3);
const STEP: Duration = Duration::from_millis(50);

/// The address `T::connect` gives peer `k`.
fn addr(k: PeerKey) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7000 + k.0 as u16))
}

/// How a scripted peer serves us. Every peer claims every piece.
#[derive(Debug, Clone, Copy)]
enum Serve {
    /// Unchokes and never delivers (the silent liar).
    Silent,
    /// Unchokes and delivers its oldest outstanding block every so many ms.
    Every(u64),
    /// Like `Every`, but over a lossy link: every 20th block takes 1.2 s more (a retransmission timeout).
    Lossy(u64),
    /// `Every(ms)` for `n` blocks, then silent while still unchoking us.
    Then(u32, u64),
    /// Never unchokes us (legal).
    Choking,
    /// Unchoked for `s` seconds, choked for `s`, ..., never delivering (legal: each choke returns the requests).
    ChokeCycle(u64),
}

struct Peer {
    serve: Serve,
    outstanding: Vec<BlockRef>,
    next_at: Duration,
    delivered: u32,
    unchoked: bool,
}

struct Run {
    t: T,
    elapsed: Duration,
    peers: BTreeMap<PeerKey, Peer>,
    dropped: BTreeMap<PeerKey, (Duration, DisconnectReason)>,
}

impl Run {
    fn new(serves: &[(PeerKey, Serve)]) -> Self {
        let mut r = Run {
            t: T::new(600, &[], |_| {}),
            elapsed: Duration::ZERO,
            peers: BTreeMap::new(),
            dropped: BTreeMap::new(),
        };
        for &(k, serve) in serves {
            let a = r.t.connect(k);
            r.absorb(a);
            r.peers.insert(
                k,
                Peer {
                    serve,
                    outstanding: Vec::new(),
                    next_at: Duration::ZERO,
                    delivered: 0,
                    unchoked: false,
                },
            );
            let a = r.t.msg(k, Message::HaveAll);
            r.absorb(a);
            if !matches!(serve, Serve::Choking) {
                r.set_choke(k, false);
            }
        }
        r
    }

    fn set_choke(&mut self, k: PeerKey, choke: bool) {
        let p = self.peers.get_mut(&k).expect("scripted");
        p.unchoked = !choke;
        if choke {
            p.outstanding.clear();
        }
        let a = self.t.msg(
            k,
            if choke {
                Message::Choke
            } else {
                Message::Unchoke
            },
        );
        self.absorb(a);
    }

    fn absorb(&mut self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Send { peer, msg } => {
                    let Some(p) = self.peers.get_mut(&peer) else {
                        continue;
                    };
                    match msg {
                        Message::Request(b) => p.outstanding.push(b),
                        Message::Cancel(b) => p.outstanding.retain(|x| *x != b),
                        _ => {}
                    }
                }
                Action::Disconnect { peer, reason } => {
                    self.peers.remove(&peer);
                    self.dropped.insert(peer, (self.elapsed, reason));
                }
                Action::VerifyPiece { piece } => {
                    self.t.t.piece_verified(self.t.now, piece, true);
                    let more = self.t.drain();
                    self.absorb(more);
                }
                _ => {}
            }
        }
    }

    /// Step the clock for `secs` seconds; the scripted peers serve as they do.
    fn run(&mut self, secs: u64) {
        let end = self.elapsed + Duration::from_secs(secs);
        while self.elapsed < end {
            self.elapsed += STEP;
            let a = self.t.tick(STEP);
            self.absorb(a);
            let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
            for k in keys {
                self.serve(k);
            }
        }
    }

    fn serve(&mut self, k: PeerKey) {
        let now = self.elapsed;
        let Some(p) = self.peers.get_mut(&k) else {
            return;
        };
        let gap = match p.serve {
            Serve::Silent | Serve::Choking => return,
            Serve::ChokeCycle(s) => {
                let unchoked = (now.as_millis() / (u128::from(s) * 1000)) % 2 == 0;
                if unchoked != p.unchoked {
                    self.set_choke(k, !unchoked);
                }
                return;
            }
            Serve::Then(n, _) if p.delivered >= n => return,
            Serve::Every(ms) | Serve::Then(_, ms) => ms,
            Serve::Lossy(ms) if p.delivered % 20 == 19 => ms + 1200,
            Serve::Lossy(ms) => ms,
        };
        let gap = Duration::from_millis(gap);
        // The first block (and the first after an idle spell) comes one gap after its request.
        if p.outstanding.is_empty() || p.next_at.is_zero() {
            p.next_at = now + gap;
            return;
        }
        if now < p.next_at {
            return;
        }
        let b = p.outstanding.remove(0);
        p.delivered += 1;
        p.next_at = now + gap;
        let a = self.t.block(k, b);
        self.absorb(a);
    }
}

#[test]
fn who_is_dropped_as_stalled_and_when() {
    use Serve::*;
    // (case, scripted peers, seconds run, expected (peer, drop time in [lo, hi] s) as stalled; others stay)
    type Case = (
        &'static str,
        &'static [(PeerKey, Serve)],
        u64,
        &'static [(PeerKey, f64, f64)],
    );
    let cases: [Case; 8] = [
        (
            "silent beside a fast seeder: the floor",
            &[(A, Silent), (B, Every(100))],
            40,
            &[(A, 10.0, 10.2)],
        ),
        (
            "silent beside a slow seeder: 8 of its gaps",
            &[(A, Silent), (B, Every(1500))],
            40,
            &[(A, 12.0, 13.7)],
        ),
        (
            "silent alone: the fixed timeout",
            &[(A, Silent)],
            40,
            &[(A, 20.0, 20.2)],
        ),
        (
            "a choking seeder is legal",
            &[(A, Choking), (B, Every(100))],
            60,
            &[],
        ),
        (
            "unchoking and choking again before delivering is legal",
            &[(A, ChokeCycle(5)), (B, Every(100))],
            40,
            &[],
        ),
        (
            "slow honest peers stay (one block every 3 s)",
            &[(A, Every(3000)), (B, Every(100)), (C, Every(1500))],
            40,
            &[],
        ),
        (
            "a lossy link stays",
            &[(A, Lossy(100)), (B, Lossy(100))],
            40,
            &[],
        ),
        (
            "delivers 3 blocks then stalls: 3 timeouts in a row",
            &[(A, Then(3, 100)), (B, Every(100))],
            40,
            &[(A, 30.2, 30.6)],
        ),
    ];
    for (name, serves, secs, want) in cases {
        let mut r = Run::new(serves);
        r.run(secs);
        assert!(!r.t.t.is_complete(), "{name}: the torrent outlasts the run");
        for &(k, _) in serves {
            let got = r.dropped.get(&k);
            match want.iter().find(|w| w.0 == k) {
                Some(&(_, lo, hi)) => {
                    let (at, reason) = got.unwrap_or_else(|| panic!("{name}: {k:?} not dropped"));
                    assert_eq!(*reason, DisconnectReason::Stalled, "{name}: {k:?}");
                    let at = at.as_secs_f64();
                    assert!(
                        lo <= at && at <= hi,
                        "{name}: {k:?} dropped at {at} s, want [{lo}, {hi}]"
                    );
                }
                None => assert!(got.is_none(), "{name}: {k:?} dropped: {got:?}"),
            }
        }
    }
}

#[test]
fn a_stalled_address_is_refused_then_let_back() {
    let mut r = Run::new(&[(A, Serve::Silent), (B, Serve::Every(100))]);
    r.run(11);
    assert_eq!(
        r.dropped.get(&A).map(|d| d.1),
        Some(DisconnectReason::Stalled)
    );
    let dropped_at = r.dropped[&A].0;
    assert!(r.t.t.peer_info(r.t.now, A).is_none(), "forgotten");
    // (seconds after the drop, may we dial it / is a connection from it kept?)
    let drop_instant = r.t.now - (r.elapsed - dropped_at);
    for (secs, allowed) in [(1, false), (59, false), (61, true)] {
        r.t.now = drop_instant + Duration::from_secs(secs);
        assert_eq!(r.t.t.may_dial(r.t.now, &addr(A)), allowed, "+{secs}s");
        let a = r.t.connect(A);
        let refused = a.contains(&Action::Disconnect {
            peer: A,
            reason: DisconnectReason::Stalled,
        });
        assert_eq!(refused, !allowed, "+{secs}s: {a:?}");
    }
    assert!(
        r.t.t.peer_info(r.t.now, A).is_some(),
        "let back after the back-off"
    );
    assert!(
        r.t.t.may_dial(r.t.now, &addr(C)),
        "an unknown address may be dialled"
    );
}

#[test]
fn a_protocol_violator_is_refused_too() {
    // The machine's own check (a `have` past the end) and the codec's (reported by the net layer).
    for codec in [false, true] {
        let mut t = T::new(4, &[], |_| {});
        t.connect(A);
        let a = if codec {
            t.t.peer_violated(t.now, A);
            t.drain()
        } else {
            t.msg(A, Message::Have { piece: 99 })
        };
        assert!(
            a.iter().any(|x| matches!(
                x,
                Action::Disconnect {
                    peer: A,
                    reason: DisconnectReason::Protocol(_),
                }
            )),
            "codec {codec}: {a:?}"
        );
        // (seconds after the drop, may we dial it?)
        let at = t.now;
        for (secs, allowed) in [(0, false), (59, false), (61, true)] {
            t.now = at + Duration::from_secs(secs);
            assert_eq!(
                t.t.may_dial(t.now, &addr(A)),
                allowed,
                "codec {codec}: +{secs}s"
            );
        }
        assert!(t.t.may_dial(t.now, &addr(B)));
    }
}

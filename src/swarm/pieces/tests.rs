//! Tests of the piece state tracker: a lifecycle with a failed piece and random operation sequences checked
//! against [`PieceTracker::check_invariants`].

use super::*;
use proptest::prelude::*;

fn tracker() -> PieceTracker {
    // 5 pieces of 2 blocks, the last of 1 short block.
    PieceTracker::new(Geometry::new(4 * 32768 + 1000, 32768).unwrap())
}

#[test]
fn lifecycle_and_failure() {
    let mut t = tracker();
    let g = *t.geometry();
    t.start(1).unwrap();
    let (b0, b1) = (g.block(1, 0).unwrap(), g.block(1, 1).unwrap());
    t.request(&b0, PeerKey(1)).unwrap();
    t.request(&b0, PeerKey(2)).unwrap();
    t.request(&b1, PeerKey(1)).unwrap();
    t.check_invariants();
    assert_eq!(t.open_blocks(), 0);
    let r = t.receive(&b0, PeerKey(2)).unwrap();
    assert_eq!(
        r,
        Received {
            piece_complete: false,
            cancel: vec![PeerKey(1)]
        }
    );
    assert_eq!(
        t.receive(&b0, PeerKey(1)),
        Err(TrackerError::AlreadyReceived(b0))
    );
    let r = t.receive(&b1, PeerKey(1)).unwrap();
    assert!(r.piece_complete);
    t.check_invariants();
    assert_eq!(t.verified(1, false).unwrap(), vec![PeerKey(1), PeerKey(2)]);
    assert_eq!(t.state(1), Some(PieceState::Queued));
    t.start(1).unwrap();
    t.request(&b0, PeerKey(3)).unwrap();
    t.unrequest(&b0, PeerKey(3)).unwrap();
    assert_eq!(
        t.state(1),
        Some(PieceState::Queued),
        "idle piece returns to the queue"
    );
    t.check_invariants();
}

#[derive(Debug, Clone)]
enum Op {
    Start(u32),
    Request(u32, u32, u64),
    Unrequest(u32, u32, u64),
    Receive(u32, u32, u64),
    Verify(u32, bool),
    Wanted(u32, bool),
    MarkHave(u32),
    Reassign(u32, u32, u64, u64),
    Available(u32, bool),
}

fn op() -> impl Strategy<Value = Op> {
    let p = 0u32..6; // one out of range
    let b = 0u32..3; // one out of range for most pieces
    let k = 0u64..3;
    prop_oneof![
        p.clone().prop_map(Op::Start),
        (p.clone(), b.clone(), k.clone()).prop_map(|(p, b, k)| Op::Request(p, b, k)),
        (p.clone(), b.clone(), k.clone()).prop_map(|(p, b, k)| Op::Unrequest(p, b, k)),
        (p.clone(), b, k).prop_map(|(p, b, k)| Op::Receive(p, b, k)),
        (p.clone(), any::<bool>()).prop_map(|(p, ok)| Op::Verify(p, ok)),
        (p.clone(), any::<bool>()).prop_map(|(p, w)| Op::Wanted(p, w)),
        p.clone().prop_map(Op::MarkHave),
        (p.clone(), 0u32..3, 0u64..3, 0u64..3).prop_map(|(p, b, f, t)| Op::Reassign(p, b, f, t)),
        (p, any::<bool>()).prop_map(|(p, up)| Op::Available(p, up)),
    ]
}

proptest! {
    #[test]
    fn invariants_hold_under_random_operations(ops in proptest::collection::vec(op(), 1..200)) {
        let mut t = tracker();
        let g = *t.geometry();
        let blk = |p: u32, b: u32| g.block(p, b).unwrap_or(BlockRef { piece: p, offset: b * 16384, length: 16384 });
        for o in ops {
            let before = t.count(PieceState::Have);
            match o {
                Op::Start(p) => { let _ = t.start(p); }
                Op::Request(p, b, k) => { let _ = t.request(&blk(p, b), PeerKey(k)); }
                Op::Unrequest(p, b, k) => { let _ = t.unrequest(&blk(p, b), PeerKey(k)); }
                Op::Receive(p, b, k) => { let _ = t.receive(&blk(p, b), PeerKey(k)); }
                Op::Verify(p, ok) => {
                    let complete = t.inflight_piece(p).is_some_and(|f| f.complete());
                    let r = t.verified(p, ok);
                    prop_assert_eq!(r.is_ok(), complete, "only complete pieces are verified");
                }
                Op::Wanted(p, w) => { let _ = t.set_wanted(p, w); }
                Op::MarkHave(p) => { let _ = t.mark_have(p); }
                Op::Reassign(p, b, f, to) => { let _ = t.reassign(&blk(p, b), PeerKey(f), PeerKey(to)); }
                Op::Available(p, true) => t.add_available(p),
                Op::Available(p, false) => t.remove_available(p),
            }
            t.check_invariants();
            prop_assert!(t.count(PieceState::Have) >= before, "a verified piece is never lost");
        }
    }
}

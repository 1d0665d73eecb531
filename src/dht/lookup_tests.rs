//! Tests of the lookup iterator (`lookup.rs`) against a synthetic network.
use super::*;
use proptest::prelude::*;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::collections::HashSet;
use std::net::Ipv4Addr;

const K: usize = 8;

struct Net {
    nodes: Vec<NodeInfo>,
}

impl Net {
    fn new(n: usize, rng: &mut StdRng) -> Net {
        let nodes = (0..n)
            .map(|i| NodeInfo {
                id: NodeId(rng.random()),
                addr: SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 + i as u32), 1),
            })
            .collect();
        Net { nodes }
    }
    /// What node `addr` answers: the k closest to `target` among a deterministic half of the network, a
    /// different pseudo-random half for each node (parity classes would split the network in two halves that
    /// never name each other, which no Kademlia network looks like).
    fn answer(&self, addr: SocketAddrV4, target: &NodeId) -> Vec<NodeInfo> {
        let salt = u64::from(u32::from(*addr.ip()));
        let knows = |n: &NodeInfo| {
            let x = (u64::from(u32::from(*n.addr.ip())) ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15))
                .wrapping_mul(0xbf58_476d_1ce4_e5b9);
            (x >> 33) % 2 == 0
        };
        let mut known: Vec<NodeInfo> = self.nodes.iter().filter(|n| knows(n)).copied().collect();
        known.sort_by_key(|n| n.id.distance(target));
        known.truncate(K);
        known
    }
    fn true_closest(&self, target: &NodeId) -> Vec<SocketAddrV4> {
        let mut all = self.nodes.clone();
        all.sort_by_key(|n| n.id.distance(target));
        all.iter().take(K).map(|n| n.addr).collect()
    }
}

/// At most α requests in flight, except in the final round (an answer brought nothing closer), where up to
/// k may be: every uncontacted node among the k closest is asked at once. Requests of a final round that a
/// closer node then ends stay in flight, but nothing new is sent until fewer than α are.
fn check_in_flight(l: &Lookup, just_sent: bool) {
    assert!(l.in_flight() <= K.max(ALPHA));
    if just_sent {
        assert!(l.in_flight() <= l.in_flight_limit());
        if !l.is_stalled() {
            assert!(
                l.in_flight() <= ALPHA,
                "more than alpha sent outside the final round"
            );
        }
    }
}

/// Drive a lookup with `loss` probability of a request never being answered. Returns (lookup, asked).
fn drive(net: &Net, target: NodeId, seed: u64, loss: f64) -> (Lookup, usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let seeds: Vec<_> = net
        .nodes
        .iter()
        .take(3)
        .map(|n| (Some(n.id), n.addr))
        .collect();
    let mut l = Lookup::new(target, K, ALPHA, seeds);
    let mut now = crate::sim::dht::epoch();
    let mut asked = HashSet::new();
    let mut pending: Vec<(SocketAddrV4, bool)> = Vec::new();
    for _ in 0..100_000 {
        match l.next(now, Duration::from_secs(1)) {
            Next::Query(addr, _) => {
                assert!(asked.insert(addr), "asked {addr} twice");
                check_in_flight(&l, true);
                pending.push((addr, rng.random_bool(loss)));
            }
            Next::Wait => {
                check_in_flight(&l, false);
                // Answer a random pending request, or (if all pending are lost) let time pass.
                match pending.iter().position(|(_, lost)| !lost) {
                    Some(_) => {
                        let live: Vec<usize> =
                            (0..pending.len()).filter(|&i| !pending[i].1).collect();
                        let i = live[rng.random_range(0..live.len())];
                        let (addr, _) = pending.swap_remove(i);
                        l.on_success(addr, &net.answer(addr, &target));
                    }
                    None => {
                        now = l
                            .next_deadline()
                            .expect("waiting means a request is in flight");
                        pending.clear();
                    }
                }
            }
            Next::Finished => return (l, asked.len()),
        }
    }
    panic!("lookup did not terminate");
}

#[test]
fn finds_the_true_k_closest_without_loss() {
    let mut rng = StdRng::seed_from_u64(7);
    let net = Net::new(500, &mut rng);
    for seed in 0..20 {
        let target = NodeId(rng.random());
        let (l, asked) = drive(&net, target, seed, 0.0);
        let got: Vec<_> = l.closest_succeeded(K).iter().map(|c| c.addr).collect();
        assert_eq!(got, net.true_closest(&target));
        assert!(asked < 100, "asked {asked} nodes");
    }
}

#[test]
fn timeouts_free_slots_and_late_answers_count() {
    let t0 = crate::sim::dht::epoch();
    let ip = |i: u32| SocketAddrV4::new(Ipv4Addr::from(i), 1);
    let seeds = (1..=5).map(|i| (Some(NodeId([i as u8; 20])), ip(i)));
    let mut l = Lookup::new(NodeId([0; 20]), 3, 3, seeds);
    let mut sent = Vec::new();
    while let Next::Query(a, _) = l.next(t0, Duration::from_secs(1)) {
        sent.push(a);
    }
    assert_eq!(
        sent,
        vec![ip(1), ip(2), ip(3)],
        "alpha = 3 in flight, closest first"
    );
    assert_eq!(
        l.next(t0 + Duration::from_millis(500), Duration::from_secs(1)),
        Next::Wait
    );
    // Deadline passes: the three become unresponsive and the next two are asked.
    let t1 = t0 + Duration::from_secs(1);
    assert_eq!(
        l.next(t1, Duration::from_secs(1)),
        Next::Query(ip(4), Some(NodeId([4; 20])))
    );
    assert_eq!(
        l.next(t1, Duration::from_secs(1)),
        Next::Query(ip(5), Some(NodeId([5; 20])))
    );
    assert_eq!(l.next(t1, Duration::from_secs(1)), Next::Wait);
    // A late answer from the closest still counts; 2 and 3 fail for good.
    l.on_success(ip(1), &[]);
    l.on_failure(ip(2));
    l.on_failure(ip(3));
    assert_eq!(
        l.next(t1, Duration::from_secs(1)),
        Next::Wait,
        "4 and 5 are pending among the 3 closest"
    );
    l.on_success(ip(4), &[]);
    assert_eq!(l.next(t1, Duration::from_secs(1)), Next::Wait);
    l.on_success(ip(5), &[]);
    assert_eq!(l.next(t1, Duration::from_secs(1)), Next::Finished);
    let closest: Vec<_> = l.closest_succeeded(3).iter().map(|c| c.addr).collect();
    assert_eq!(closest, vec![ip(1), ip(4), ip(5)]);
    assert_eq!(l.queries(), 5);
}

proptest! {
    #[test]
    fn terminates_bounded_and_never_repeats(seed in any::<u64>(), n in 1usize..300, loss in 0.0f64..0.6) {
        let mut rng = StdRng::seed_from_u64(seed);
        let net = Net::new(n, &mut rng);
        let (l, asked) = drive(&net, NodeId(rng.random()), seed, loss);
        prop_assert!(l.is_finished());
        prop_assert!(asked <= n);
        prop_assert!(l.queries() == asked);
    }
}

#[test]
fn widening_asks_the_next_closest_and_nobody_twice() {
    let t0 = crate::sim::dht::epoch();
    let ip = |i: u32| SocketAddrV4::new(Ipv4Addr::from(i), 1);
    let seeds = (1..=6).map(|i| (Some(NodeId([i as u8; 20])), ip(i)));
    let mut l = Lookup::new(NodeId([0; 20]), 2, 3, seeds);
    let mut asked = Vec::new();
    for _ in 0..20 {
        match l.next(t0, Duration::from_secs(1)) {
            Next::Query(a, _) => asked.push(a),
            Next::Wait => {
                let a = *asked
                    .iter()
                    .find(|a| l.get_mut(**a).unwrap().state != State::Succeeded)
                    .unwrap();
                l.on_success(a, &[]);
            }
            Next::Finished => break,
        }
    }
    assert_eq!(asked, vec![ip(1), ip(2)]);
    l.widen(4);
    assert!(!l.is_finished());
    assert_eq!(
        l.next(t0, Duration::from_secs(1)),
        Next::Query(ip(3), Some(NodeId([3; 20])))
    );
    assert_eq!(
        l.next(t0, Duration::from_secs(1)),
        Next::Query(ip(4), Some(NodeId([4; 20])))
    );
    assert_eq!(
        l.next(t0, Duration::from_secs(1)),
        Next::Wait,
        "only the 4 closest matter"
    );
}

#[test]
fn final_round_asks_all_of_the_k_closest_at_once_then_progress_restores_alpha() {
    let t0 = crate::sim::dht::epoch();
    let ip = |i: u32| SocketAddrV4::new(Ipv4Addr::from(i), 1);
    let id = |i: u8| NodeId([i; 20]);
    let t = Duration::from_secs(1);
    // Ten candidates at increasing distance from the target 0.
    let seeds = (10..20u8).map(|i| (Some(id(i)), ip(u32::from(i))));
    let mut l = Lookup::new(NodeId([0; 20]), 4, 2, seeds);
    assert_eq!(l.next(t0, t), Next::Query(ip(10), Some(id(10))));
    assert_eq!(l.next(t0, t), Next::Query(ip(11), Some(id(11))));
    assert_eq!(
        l.next(t0, t),
        Next::Wait,
        "alpha = 2 while answers bring closer nodes"
    );
    assert!(!l.is_stalled());
    // An answer with a closer node is progress: still alpha.
    l.on_success(
        ip(10),
        &[NodeInfo {
            id: id(5),
            addr: ip(5),
        }],
    );
    assert!(!l.is_stalled());
    assert_eq!(l.next(t0, t), Next::Query(ip(5), Some(id(5))));
    assert_eq!(l.next(t0, t), Next::Wait);
    // An answer with nothing closer: the final round asks the rest of the 4 closest (12) at once.
    l.on_success(
        ip(11),
        &[NodeInfo {
            id: id(30),
            addr: ip(30),
        }],
    );
    assert!(l.is_stalled());
    assert_eq!(l.in_flight_limit(), 4);
    assert_eq!(l.next(t0, t), Next::Query(ip(12), Some(id(12))));
    assert_eq!(l.next(t0, t), Next::Wait, "only the 4 closest are asked");
    assert_eq!(l.in_flight(), 2);
    // A closer node arriving ends the final round: back to alpha in flight.
    l.on_success(
        ip(5),
        &[
            NodeInfo {
                id: id(1),
                addr: ip(1),
            },
            NodeInfo {
                id: id(2),
                addr: ip(2),
            },
        ],
    );
    assert!(!l.is_stalled());
    assert_eq!(l.next(t0, t), Next::Query(ip(1), Some(id(1))));
    assert_eq!(l.next(t0, t), Next::Wait, "12 and 1 in flight = alpha");
    l.on_success(ip(1), &[]);
    assert!(l.is_stalled());
    assert_eq!(l.next(t0, t), Next::Query(ip(2), Some(id(2))));
    assert_eq!(l.next(t0, t), Next::Wait);
    l.on_success(ip(2), &[]);
    // The 4 closest (1, 2, 5, 10) answered: done, whether or not 12 (5th) ever answers.
    assert_eq!(l.next(t0, t), Next::Finished);
    let closest: Vec<_> = l.closest_succeeded(4).iter().map(|c| c.addr).collect();
    assert_eq!(closest, vec![ip(1), ip(2), ip(5), ip(10)]);
    assert!(l.queries() <= 6);
}

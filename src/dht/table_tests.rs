//! Tests of the routing table (`table.rs`): splitting, BEP 5 node states, ping-before-evict, refresh, IP rules.
use super::*;
use proptest::prelude::*;
use rand::{rngs::StdRng, SeedableRng};
use std::net::{Ipv4Addr, SocketAddrV4};

fn info(id: [u8; 20], ip: u32) -> NodeInfo {
    NodeInfo {
        id: NodeId(id),
        addr: SocketAddrV4::new(Ipv4Addr::from(ip), 6881),
    }
}

/// An id sharing exactly `prefix` bits with `own`.
fn at_depth(own: NodeId, prefix: usize, seed: u64) -> NodeId {
    own.random_with_prefix(prefix, &mut StdRng::seed_from_u64(seed))
}

fn check_invariants(t: &RoutingTable) {
    let n = t.buckets.len();
    let mut seen = std::collections::HashSet::new();
    for (i, b) in t.buckets.iter().enumerate() {
        assert!(b.nodes.len() <= K && b.replacements.len() <= K);
        for e in &b.nodes {
            let cpl = t.own.common_prefix_len(&e.info.id);
            assert!(
                if i + 1 == n { cpl >= i } else { cpl == i },
                "node in wrong bucket"
            );
            assert!(seen.insert(e.info.id), "duplicate id");
            assert_ne!(e.info.id, t.own);
        }
    }
}

#[test]
fn only_the_bucket_covering_our_id_splits() {
    let now = crate::sim::dht::epoch();
    let own = NodeId([0; 20]);
    let mut t = RoutingTable::new(own, now);
    // 20 nodes all in the far half (first bit 1): one bucket split, then the far bucket stays at k.
    for i in 0..20u32 {
        let id = at_depth(own, 0, u64::from(i));
        t.on_response(now, info(id.0, 0x0b00_0000 + i));
    }
    assert_eq!(t.bucket_count(), 2);
    assert_eq!(t.buckets[0].nodes.len(), K);
    // Nodes close to us keep splitting the last bucket.
    for i in 0..40u32 {
        let id = at_depth(own, 1 + (i as usize % 6), 100 + u64::from(i));
        t.on_response(now, info(id.0, 0x0c00_0000 + i));
    }
    assert!(t.bucket_count() >= 6);
    check_invariants(&t);
}

#[test]
fn full_bucket_pings_questionable_then_evicts_on_failure() {
    let t0 = crate::sim::dht::epoch();
    let own = NodeId([0; 20]);
    let mut t = RoutingTable::new(own, t0);
    // Force a split so bucket 0 (far half) is not the last bucket.
    t.on_response(t0, info(at_depth(own, 5, 999).0, 0x0d00_0001));
    for i in 0..K as u32 {
        t.on_response(t0, info(at_depth(own, 0, u64::from(i)).0, 0x0b00_0000 + i));
    }
    assert_eq!(t.buckets[0].nodes.len(), K);
    let newcomer = info(at_depth(own, 0, 50).0, 0x0b00_0100);
    // While everyone is good, the newcomer only waits in the replacement cache.
    assert_eq!(t.on_response(t0 + Duration::from_secs(60), newcomer), None);
    assert!(t.get(&newcomer.id).is_none());
    // 15 minutes later all are questionable: the stalest is pinged.
    let later = t0 + GOOD_FOR + Duration::from_secs(1);
    let ping = t
        .on_response(later, newcomer)
        .expect("ping the least recently seen questionable node");
    assert_eq!(t.get(&ping.id).unwrap().status(later), Status::Questionable);
    // It does not answer twice: it turns bad and the newcomer takes its place.
    t.on_failure(later, &ping.id);
    assert!(t.get(&ping.id).is_some(), "one failure is not yet bad");
    t.on_failure(later, &ping.id);
    assert!(t.get(&ping.id).is_none());
    assert!(t.get(&newcomer.id).is_some());
    check_invariants(&t);
}

#[test]
fn node_states_follow_bep5() {
    let t0 = crate::sim::dht::epoch();
    let mut e = Entry::new(info([1; 20], 1), Some(t0));
    assert_eq!(e.status(t0), Status::Good);
    assert_eq!(e.status(t0 + GOOD_FOR), Status::Questionable);
    e.last_query = Some(t0 + GOOD_FOR);
    assert_eq!(
        e.status(t0 + GOOD_FOR),
        Status::Good,
        "queried us after having answered once"
    );
    let never = Entry {
        last_query: Some(t0),
        ..Entry::new(info([2; 20], 2), None)
    };
    assert_eq!(
        never.status(t0),
        Status::Questionable,
        "never answered: not good"
    );
    e.failures = BAD_AFTER_FAILURES;
    assert_eq!(e.status(t0), Status::Bad);
}

#[test]
fn one_node_per_public_ip_but_loopback_exempt() {
    let now = crate::sim::dht::epoch();
    let mut t = RoutingTable::new(NodeId([0; 20]), now);
    t.on_response(now, info([0x80; 20], 0x0808_0808));
    t.on_response(now, info([0x81; 20], 0x0808_0808));
    assert_eq!(t.len(), 1);
    t.on_response(now, info([0x90; 20], 0x7f00_0001));
    t.on_response(now, info([0x91; 20], 0x7f00_0001));
    t.on_response(now, info([0x92; 20], 0xc0a8_0001));
    t.on_response(now, info([0x93; 20], 0xc0a8_0001));
    assert_eq!(t.len(), 5);
}

#[test]
fn untouched_buckets_are_refreshed_after_15_minutes() {
    let t0 = crate::sim::dht::epoch();
    let own = NodeId([7; 20]);
    let mut t = RoutingTable::new(own, t0);
    let mut rng = StdRng::seed_from_u64(3);
    for i in 0..30u32 {
        t.on_response(
            t0,
            info(
                at_depth(own, i as usize % 4, u64::from(i)).0,
                0x0b00_0000 + i,
            ),
        );
    }
    assert!(t
        .refresh_targets(t0 + Duration::from_secs(60), &mut rng)
        .is_empty());
    let targets = t.refresh_targets(t0 + REFRESH_AFTER, &mut rng);
    assert_eq!(targets.len(), t.bucket_count());
    for (i, target) in targets.iter().enumerate() {
        assert_eq!(
            t.index(target),
            i,
            "target falls in the bucket it refreshes"
        );
    }
    assert!(t.refresh_targets(t0 + REFRESH_AFTER, &mut rng).is_empty());
}

proptest! {
    #[test]
    fn invariants_hold_and_closest_is_exact(
        own in any::<[u8; 20]>(),
        ops in proptest::collection::vec((any::<[u8; 20]>(), 0u32..64, 0u8..3), 1..300),
        target in any::<[u8; 20]>(),
    ) {
        let t0 = crate::sim::dht::epoch();
        let mut t = RoutingTable::new(NodeId(own), t0);
        for (i, (id, ip, op)) in ops.iter().enumerate() {
            let now = t0 + Duration::from_secs(i as u64 * 10);
            let n = info(*id, 0x0b00_0000 + ip);
            match op {
                0 => { t.on_response(now, n); }
                1 => { t.on_failure(now, &n.id); }
                _ => { t.on_query(now, n); }
            }
        }
        check_invariants(&t);
        // Distinct public IPs.
        let mut ips: Vec<_> = t.entries().map(|e| *e.info.addr.ip()).collect();
        let before = ips.len();
        ips.sort();
        ips.dedup();
        prop_assert_eq!(ips.len(), before);
        let now = t0 + Duration::from_secs(ops.len() as u64 * 10);
        let target = NodeId(target);
        let got = t.closest(now, &target, K);
        let mut all: Vec<_> = t.entries().filter(|e| e.status(now) != Status::Bad).map(|e| e.info).collect();
        all.sort_by_key(|n| n.id.distance(&target));
        all.truncate(K);
        prop_assert_eq!(got, all);
    }
}

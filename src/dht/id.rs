//! `NodeId`: a 160-bit Kademlia identifier, and `Distance`, the XOR metric between two ids (ordered as a
//! big-endian 160-bit number, so `a.distance(t) < b.distance(t)` means `a` is closer to `t`).

use crate::metainfo::InfoHash;
use rand::Rng;
use std::fmt;

/// A 160-bit node id (same space as infohashes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct NodeId(pub [u8; 20]);

/// XOR of two ids; compares as a big-endian 160-bit number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Distance(pub [u8; 20]);

impl NodeId {
    pub fn random(rng: &mut impl Rng) -> NodeId {
        NodeId(rng.random())
    }

    /// XOR distance to `other`.
    pub fn distance(&self, other: &NodeId) -> Distance {
        let (a, b) = (self.halves(), other.halves());
        let (hi, lo) = (a.0 ^ b.0, a.1 ^ b.1);
        let mut d = [0u8; 20];
        d[..16].copy_from_slice(&hi.to_be_bytes());
        d[16..].copy_from_slice(&lo.to_be_bytes());
        Distance(d)
    }

    fn halves(&self) -> (u128, u32) {
        let mut hi = [0u8; 16];
        let mut lo = [0u8; 4];
        hi.copy_from_slice(&self.0[..16]);
        lo.copy_from_slice(&self.0[16..]);
        (u128::from_be_bytes(hi), u32::from_be_bytes(lo))
    }

    /// Number of leading bits `self` shares with `other` (160 when equal).
    pub fn common_prefix_len(&self, other: &NodeId) -> usize {
        self.distance(other).leading_zeros()
    }

    /// A random id that shares exactly `prefix` leading bits with `self` (`prefix < 160`): a target inside
    /// the routing-table bucket of that depth, used to refresh it.
    pub fn random_with_prefix(&self, prefix: usize, rng: &mut impl Rng) -> NodeId {
        let mut out: [u8; 20] = rng.random();
        let prefix = prefix.min(159);
        for bit in 0..=prefix {
            let (byte, mask) = (bit / 8, 0x80u8 >> (bit % 8));
            let ours = self.0[byte] & mask;
            let want = if bit == prefix { ours ^ mask } else { ours };
            out[byte] = (out[byte] & !mask) | want;
        }
        NodeId(out)
    }

    pub fn to_hex(&self) -> String {
        data_encoding::HEXLOWER.encode(&self.0)
    }

    pub fn from_slice(b: &[u8]) -> Option<NodeId> {
        b.try_into().ok().map(NodeId)
    }
}

impl Distance {
    pub fn leading_zeros(&self) -> usize {
        let (hi, lo) = NodeId(self.0).halves();
        if hi != 0 {
            hi.leading_zeros() as usize
        } else {
            128 + lo.leading_zeros() as usize
        }
    }
    pub const MAX: Distance = Distance([0xff; 20]);
}

impl From<InfoHash> for NodeId {
    fn from(h: InfoHash) -> NodeId {
        NodeId(h.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", &self.to_hex()[..8])
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{rngs::StdRng, SeedableRng};

    proptest! {
        #[test]
        fn xor_metric(a in any::<[u8; 20]>(), b in any::<[u8; 20]>(), c in any::<[u8; 20]>()) {
            let (a, b, c) = (NodeId(a), NodeId(b), NodeId(c));
            prop_assert_eq!(a.distance(&b), b.distance(&a));
            prop_assert_eq!(a.distance(&a), Distance([0; 20]));
            // Unidirectional: for a fixed a and distance, exactly one b.
            prop_assert_eq!(b.distance(&c) == a.distance(&c), a == b);
        }

        #[test]
        fn random_with_prefix_has_that_prefix(a in any::<[u8; 20]>(), p in 0usize..160, seed in any::<u64>()) {
            let a = NodeId(a);
            let mut rng = StdRng::seed_from_u64(seed);
            let t = a.random_with_prefix(p, &mut rng);
            prop_assert_eq!(a.common_prefix_len(&t), p);
        }
    }
}

//! The BEP 3 handshake: `pstrlen = 19`, `"BitTorrent protocol"`, 8 reserved bytes (BEP 10 extension bit
//! `reserved[5] & 0x10`, BEP 6 fast bit `reserved[7] & 0x04`), the 20-byte infohash and the 20-byte peer id.
//! Also owns [`PeerId`].

use crate::metainfo::InfoHash;
use crate::wire::WireError;
use std::fmt;

/// The protocol string of BEP 3.
pub const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";
/// Length of an encoded handshake in bytes.
pub const HANDSHAKE_LEN: usize = 68;

/// A peer's 20-byte id (BEP 3 / BEP 20 style, e.g. `-QS0100-` followed by 12 random bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct PeerId(pub [u8; 20]);

impl PeerId {
    /// Azureus-style id: `-QS0100-` then 12 bytes from `rng`.
    pub fn generate(rng: &mut impl rand::Rng) -> PeerId {
        let mut id = [0u8; 20];
        id[..8].copy_from_slice(b"-QS0100-");
        rng.fill(&mut id[8..]);
        PeerId(id)
    }
    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", data_encoding::HEXLOWER.encode(&self.0))
    }
}

/// A decoded handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    pub reserved: [u8; 8],
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
}

impl Handshake {
    /// Our handshake: BEP 10 and BEP 6 bits set.
    pub fn new(info_hash: InfoHash, peer_id: PeerId) -> Handshake {
        let mut reserved = [0u8; 8];
        reserved[5] |= 0x10;
        reserved[7] |= 0x04;
        Handshake {
            reserved,
            info_hash,
            peer_id,
        }
    }

    /// BEP 10 extension protocol bit.
    pub fn supports_extended(&self) -> bool {
        self.reserved[5] & 0x10 != 0
    }

    /// BEP 6 fast extension bit.
    pub fn supports_fast(&self) -> bool {
        self.reserved[7] & 0x04 != 0
    }

    pub fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        let mut out = [0u8; HANDSHAKE_LEN];
        out[0] = 19;
        out[1..20].copy_from_slice(PROTOCOL);
        out[20..28].copy_from_slice(&self.reserved);
        out[28..48].copy_from_slice(&self.info_hash.0);
        out[48..68].copy_from_slice(&self.peer_id.0);
        out
    }

    /// Decode from the start of `buf`: `Ok(None)` when fewer than 68 bytes are there yet.
    /// The first bytes are checked as soon as they arrive, so garbage fails fast.
    pub fn decode(buf: &[u8]) -> Result<Option<Handshake>, WireError> {
        if let Some(&len) = buf.first() {
            if len != 19 {
                return Err(WireError::BadHandshake {
                    what: "pstrlen is not 19",
                });
            }
        }
        let seen = buf.len().min(20);
        if seen > 1 && buf.get(1..seen) != PROTOCOL.get(..seen - 1) {
            return Err(WireError::BadHandshake {
                what: "protocol string is not \"BitTorrent protocol\"",
            });
        }
        let Some(rest) = buf.get(20..HANDSHAKE_LEN) else {
            return Ok(None);
        };
        let mut reserved = [0u8; 8];
        let mut ih = [0u8; 20];
        let mut pid = [0u8; 20];
        reserved.copy_from_slice(&rest[0..8]);
        ih.copy_from_slice(&rest[8..28]);
        pid.copy_from_slice(&rest[28..48]);
        Ok(Some(Handshake {
            reserved,
            info_hash: InfoHash(ih),
            peer_id: PeerId(pid),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bits() {
        let h = Handshake::new(InfoHash([7; 20]), PeerId([9; 20]));
        let bytes = h.encode();
        assert_eq!(bytes[0], 19);
        assert_eq!(&bytes[1..20], PROTOCOL);
        assert!(h.supports_extended() && h.supports_fast());
        assert_eq!(Handshake::decode(&bytes).unwrap(), Some(h));
        assert_eq!(Handshake::decode(&bytes[..67]).unwrap(), None);
        let mut plain = h;
        plain.reserved = [0; 8];
        assert!(!plain.supports_extended() && !plain.supports_fast());
    }

    #[test]
    fn rejects_garbage_early() {
        assert!(Handshake::decode(&[18]).is_err());
        assert!(Handshake::decode(b"\x13BitTorrent pro").is_ok());
        assert!(Handshake::decode(b"\x13BitTorrent PRO").is_err());
        assert_eq!(Handshake::decode(&[]).unwrap(), None);
    }
}

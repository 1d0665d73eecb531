//! `InfoHash`: the 20-byte SHA-1 of a torrent's `info` dictionary, the swarm's identity everywhere
//! (DHT key, handshake, magnet link). Parsing from 40 hex digits or 32 base32 characters.

use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// SHA-1 of the raw `info` bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct InfoHash(pub [u8; 20]);

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("`{input}` is not an infohash: expected 40 hex digits or 32 base32 characters")]
pub struct InfoHashParseError {
    pub input: String,
}

impl InfoHash {
    /// SHA-1 of `bytes` (the exact raw `info` span).
    pub fn of(bytes: &[u8]) -> InfoHash {
        use sha1::{Digest, Sha1};
        InfoHash(Sha1::digest(bytes).into())
    }
    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }
    pub fn to_hex(&self) -> String {
        data_encoding::HEXLOWER.encode(&self.0)
    }
}

impl FromStr for InfoHash {
    type Err = InfoHashParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || InfoHashParseError {
            input: s.to_string(),
        };
        let bytes = match s.len() {
            40 => data_encoding::HEXLOWER_PERMISSIVE
                .decode(s.as_bytes())
                .map_err(|_| err())?,
            32 => data_encoding::BASE32
                .decode(s.to_ascii_uppercase().as_bytes())
                .map_err(|_| err())?,
            _ => return Err(err()),
        };
        let arr: [u8; 20] = bytes.try_into().map_err(|_| err())?;
        Ok(InfoHash(arr))
    }
}

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHash({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_base32_agree() {
        let h: InfoHash = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a".parse().unwrap();
        let b32 = data_encoding::BASE32.encode(&h.0);
        assert_eq!(b32.parse::<InfoHash>().unwrap(), h);
        assert_eq!(b32.to_lowercase().parse::<InfoHash>().unwrap(), h);
        assert_eq!(h.to_string(), "c12fe1c06bba254a9dc9f519b335aa7c1367a88a");
        assert!("xyz".parse::<InfoHash>().is_err());
        assert!("g12fe1c06bba254a9dc9f519b335aa7c1367a88a"
            .parse::<InfoHash>()
            .is_err());
    }
}

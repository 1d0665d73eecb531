//! Magnet links (BEP 9): `magnet:?xt=urn:btih:<40 hex | 32 base32>&dn=<name>&x.pe=<host:port>`. Parsing keeps the
//! first `urn:btih` exact topic, the display name and the direct peer addresses; other parameters (`tr`, `ws`, ...)
//! are ignored. Only `xt` is required. Formatting percent-encodes the name.

use super::infohash::InfoHash;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// Longest magnet link accepted (they come from users and web pages).
pub const MAX_MAGNET_LEN: usize = 64 * 1024;
/// Most `x.pe` peers kept from one link.
pub const MAX_MAGNET_PEERS: usize = 200;

/// A parsed magnet link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Magnet {
    pub info_hash: InfoHash,
    /// `dn`: the display name, if given.
    pub name: Option<String>,
    /// `x.pe`: peers to contact directly, as `host:port` strings (the port checked to be a number).
    pub peers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MagnetError {
    #[error("not a magnet link: it should start with `magnet:?`")]
    NotMagnet,
    #[error("magnet link is longer than {MAX_MAGNET_LEN} bytes")]
    TooLong,
    #[error("magnet link has no `xt=urn:btih:<infohash>` parameter")]
    NoInfoHash,
    #[error(
        "magnet link has a bad infohash {0:?}: expected 40 hex digits or 32 base32 characters"
    )]
    BadInfoHash(String),
    #[error("magnet link has a bad peer address {0:?}: expected host:port")]
    BadPeer(String),
    #[error("magnet link has bad percent-encoding or non-UTF-8 text in {0:?}")]
    BadEncoding(String),
}

/// Characters escaped in formatted values: everything but unreserved characters (RFC 3986).
const VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// Peer addresses keep `:` `[` `]` readable; they are legal in a query.
const ADDR: &AsciiSet = &VALUE.remove(b':').remove(b'[').remove(b']');

impl FromStr for Magnet {
    type Err = MagnetError;
    fn from_str(s: &str) -> Result<Magnet, MagnetError> {
        if s.len() > MAX_MAGNET_LEN {
            return Err(MagnetError::TooLong);
        }
        let query = s
            .get(..8)
            .filter(|p| p.eq_ignore_ascii_case("magnet:?"))
            .map(|_| &s[8..])
            .ok_or(MagnetError::NotMagnet)?;
        let mut info_hash = None;
        let mut name = None;
        let mut peers = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = || {
                let plus_as_space = raw.replace('+', " ");
                percent_decode_str(&plus_as_space)
                    .decode_utf8()
                    .map(|c| c.into_owned())
                    .map_err(|_| MagnetError::BadEncoding(pair.to_string()))
            };
            match key {
                "xt" if info_hash.is_none() => {
                    let v = decode()?;
                    if let Some(hash) = strip_prefix_ci(&v, "urn:btih:") {
                        info_hash = Some(
                            hash.parse()
                                .map_err(|_| MagnetError::BadInfoHash(hash.to_string()))?,
                        );
                    }
                }
                "dn" => name = Some(decode()?),
                "x.pe" if peers.len() < MAX_MAGNET_PEERS => {
                    let v = decode()?;
                    let ok = v
                        .rsplit_once(':')
                        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
                    if !ok {
                        return Err(MagnetError::BadPeer(v));
                    }
                    peers.push(v);
                }
                _ => {}
            }
        }
        Ok(Magnet {
            info_hash: info_hash.ok_or(MagnetError::NoInfoHash)?,
            name,
            peers,
        })
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    s.get(..prefix.len())
        .filter(|p| p.eq_ignore_ascii_case(prefix))
        .map(|_| &s[prefix.len()..])
}

impl fmt::Display for Magnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "magnet:?xt=urn:btih:{}", self.info_hash.to_hex())?;
        if let Some(name) = &self.name {
            write!(f, "&dn={}", utf8_percent_encode(name, VALUE))?;
        }
        for peer in &self.peers {
            write!(f, "&x.pe={}", utf8_percent_encode(peer, ADDR))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";

    #[test]
    fn parses_hex_base32_name_and_peers() {
        let m: Magnet =
            format!("magnet:?xt=urn:btih:{HEX}&dn=my%20file+x.iso&tr=udp%3A%2F%2Fx&x.pe=127.0.0.1:6881&x.pe=[::1]:7")
                .parse()
                .unwrap();
        assert_eq!(m.info_hash.to_hex(), HEX);
        assert_eq!(m.name.as_deref(), Some("my file x.iso"));
        assert_eq!(
            m.peers,
            vec!["127.0.0.1:6881".to_string(), "[::1]:7".to_string()]
        );
        let b32 = data_encoding::BASE32.encode(&m.info_hash.0);
        let m2: Magnet = format!("MAGNET:?xt=urn:BTIH:{b32}").parse().unwrap();
        assert_eq!(m2.info_hash, m.info_hash);
        assert_eq!(m2.name, None);
    }

    #[test]
    fn round_trips() {
        let m = Magnet {
            info_hash: HEX.parse().unwrap(),
            name: Some("a b&c=d/é".into()),
            peers: vec!["10.0.0.1:5".into(), "[::1]:6881".into()],
        };
        let s = m.to_string();
        assert!(
            s.starts_with(&format!("magnet:?xt=urn:btih:{HEX}&dn=a%20b%26c%3Dd%2F")),
            "{s}"
        );
        assert_eq!(s.parse::<Magnet>().unwrap(), m);
    }

    #[test]
    fn rejects() {
        assert_eq!("http://x".parse::<Magnet>(), Err(MagnetError::NotMagnet));
        assert_eq!(
            "magnet:?dn=x".parse::<Magnet>(),
            Err(MagnetError::NoInfoHash)
        );
        assert!(matches!(
            "magnet:?xt=urn:btih:abc".parse::<Magnet>(),
            Err(MagnetError::BadInfoHash(_))
        ));
        let bad_peer = format!("magnet:?xt=urn:btih:{HEX}&x.pe=nohost");
        assert!(matches!(
            bad_peer.parse::<Magnet>(),
            Err(MagnetError::BadPeer(_))
        ));
        let bad_enc = format!("magnet:?xt=urn:btih:{HEX}&dn=%FF");
        assert!(matches!(
            bad_enc.parse::<Magnet>(),
            Err(MagnetError::BadEncoding(_))
        ));
        assert!("magnet:?xt=urn:btih:é".parse::<Magnet>().is_err());
    }
}

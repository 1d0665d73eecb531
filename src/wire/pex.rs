//! BEP 11 `ut_pex` messages (compact `added`/`added.f`/`dropped` for IPv4, `added6`/`added6.f`/`dropped6` for
//! IPv6, at most [`MAX_PEX_PEERS`] of each) and the sans-IO per-peer [`PexState`]: what we told this peer, so
//! each message is a diff, and at most one message per peer per minute in each direction.

use crate::metainfo::bencode::{self, OwnedValue};
use crate::wire::WireError;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

/// Most added (and most dropped) peers per message, as BEP 11 asks.
pub const MAX_PEX_PEERS: usize = 50;
/// Least time between two PEX messages on one connection.
pub const PEX_INTERVAL: Duration = Duration::from_secs(60);

/// A `ut_pex` message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PexMessage {
    pub added: Vec<SocketAddr>,
    pub dropped: Vec<SocketAddr>,
}

impl PexMessage {
    pub fn encode(&self) -> Vec<u8> {
        let (a4, a6) = compact(&self.added);
        let (d4, d6) = compact(&self.dropped);
        let flags = |n: usize| OwnedValue::Bytes(vec![0u8; n]);
        OwnedValue::dict([
            ("added", OwnedValue::Bytes(a4.0)),
            ("added.f", flags(a4.1)),
            ("added6", OwnedValue::Bytes(a6.0)),
            ("added6.f", flags(a6.1)),
            ("dropped", OwnedValue::Bytes(d4.0)),
            ("dropped6", OwnedValue::Bytes(d6.0)),
        ])
        .encode()
    }

    /// Parse a `ut_pex` payload. Lists longer than [`MAX_PEX_PEERS`] are truncated; entries of a length not a
    /// multiple of 6 (18 for IPv6) are an error.
    pub fn decode(payload: &[u8]) -> Result<PexMessage, WireError> {
        let value = bencode::decode(payload)?;
        let dict = value.as_dict().ok_or(WireError::BadExtended {
            what: "ut_pex message is not a dictionary",
        })?;
        let list = |k4: &[u8], k6: &[u8]| -> Result<Vec<SocketAddr>, WireError> {
            let mut out = parse_compact(dict.get_bytes(k4).unwrap_or_default(), 6)?;
            out.extend(parse_compact(dict.get_bytes(k6).unwrap_or_default(), 18)?);
            out.truncate(MAX_PEX_PEERS);
            Ok(out)
        };
        Ok(PexMessage {
            added: list(b"added", b"added6")?,
            dropped: list(b"dropped", b"dropped6")?,
        })
    }
}

type Compact = (Vec<u8>, usize);

fn compact(addrs: &[SocketAddr]) -> (Compact, Compact) {
    let (mut v4, mut v6) = ((Vec::new(), 0), (Vec::new(), 0));
    for a in addrs.iter().take(MAX_PEX_PEERS) {
        match a.ip() {
            IpAddr::V4(ip) => {
                v4.0.extend_from_slice(&ip.octets());
                v4.0.extend_from_slice(&a.port().to_be_bytes());
                v4.1 += 1;
            }
            IpAddr::V6(ip) => {
                v6.0.extend_from_slice(&ip.octets());
                v6.0.extend_from_slice(&a.port().to_be_bytes());
                v6.1 += 1;
            }
        }
    }
    (v4, v6)
}

fn parse_compact(bytes: &[u8], width: usize) -> Result<Vec<SocketAddr>, WireError> {
    if bytes.len() % width != 0 {
        return Err(WireError::BadExtended {
            what: "ut_pex compact peer list has a partial entry",
        });
    }
    Ok(bytes
        .chunks_exact(width)
        .take(MAX_PEX_PEERS)
        .filter_map(|c| {
            let (ip, port) = c.split_at(width - 2);
            let port = u16::from_be_bytes([port[0], port[1]]);
            let ip = match width {
                6 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(ip).ok()?)),
                _ => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(ip).ok()?)),
            };
            (port != 0).then_some(SocketAddr::new(ip, port))
        })
        .collect())
}

/// Outcome of [`PexState::handle_message`] when the peer broke the rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("peer sent ut_pex messages less than a minute apart; ignore the message (or close a peer that keeps it up)")]
pub struct PexTooFrequent;

/// PEX bookkeeping for one connection.
#[derive(Debug, Clone, Default)]
pub struct PexState {
    /// The set of peers this peer has been told about (what it believes we are connected to).
    told: BTreeSet<SocketAddr>,
    last_sent: Option<Instant>,
    last_received: Option<Instant>,
}

impl PexState {
    pub fn new() -> PexState {
        PexState::default()
    }

    /// The message to send now, if a minute has passed since the last one and something changed.
    /// `connected` is our current set of connected peers' listen addresses; `remote` (the peer itself) is left out.
    pub fn poll_message(
        &mut self,
        now: Instant,
        connected: &BTreeSet<SocketAddr>,
        remote: Option<SocketAddr>,
    ) -> Option<PexMessage> {
        if self
            .last_sent
            .is_some_and(|t| now.saturating_duration_since(t) < PEX_INTERVAL)
        {
            return None;
        }
        let current = |a: &&SocketAddr| Some(**a) != remote;
        let added: Vec<_> = connected
            .difference(&self.told)
            .filter(current)
            .take(MAX_PEX_PEERS)
            .copied()
            .collect();
        let dropped: Vec<_> = self
            .told
            .difference(connected)
            .take(MAX_PEX_PEERS)
            .copied()
            .collect();
        if added.is_empty() && dropped.is_empty() {
            return None;
        }
        for a in &added {
            self.told.insert(*a);
        }
        for d in &dropped {
            self.told.remove(d);
        }
        self.last_sent = Some(now);
        Some(PexMessage { added, dropped })
    }

    /// When [`poll_message`](Self::poll_message) may next produce a message.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.last_sent.map(|t| t + PEX_INTERVAL)
    }

    /// A message from the peer: the peers it adds (to try connecting to). A message less than a minute after
    /// the previous one is refused with [`PexTooFrequent`]. (The first one is always accepted.)
    pub fn handle_message(
        &mut self,
        now: Instant,
        msg: &PexMessage,
    ) -> Result<Vec<SocketAddr>, PexTooFrequent> {
        // A little slack: both sides' timers fire "once a minute" and may run a few seconds apart.
        let slack = Duration::from_secs(5);
        if self
            .last_received
            .is_some_and(|t| now.saturating_duration_since(t) + slack < PEX_INTERVAL)
        {
            return Err(PexTooFrequent);
        }
        self.last_received = Some(now);
        Ok(msg
            .added
            .iter()
            .filter(|a| !a.ip().is_unspecified())
            .copied()
            .collect())
    }
}

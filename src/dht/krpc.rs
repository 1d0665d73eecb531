//! The KRPC codec of BEP 5: typed queries (`ping`, `find_node`, `get_peers`, `announce_peer`), responses and
//! errors, compact node info (26 bytes) and compact peer info (6 bytes, IPv4), bencoded with
//! `crate::metainfo::bencode`. Decoding untrusted bytes never panics: size, types and lengths are checked first;
//! a malformed or unknown query still yields its transaction id so the node can answer 203 / 204.

use crate::dht::id::NodeId;
use crate::metainfo::bencode::{self, encode_bytes, Dict, Value};
use crate::metainfo::InfoHash;
use std::net::{Ipv4Addr, SocketAddrV4};
use thiserror::Error;

/// Largest datagram accepted or produced (bytes); bigger ones are dropped unread.
pub const MAX_PACKET: usize = 1500;
/// Longest transaction id accepted (BEP 5 ids are usually 2 bytes).
pub const MAX_TID_LEN: usize = 16;
/// Longest write token accepted from another node.
pub const MAX_TOKEN_LEN: usize = 64;
/// Most peers (`values`) decoded from one response.
pub const MAX_VALUES: usize = 200;
/// Our client version string (`v` key): "QS" + version.
pub const VERSION: &[u8] = b"QS\x00\x01";

/// Error codes of BEP 5.
pub const ERR_GENERIC: i64 = 201;
pub const ERR_SERVER: i64 = 202;
pub const ERR_PROTOCOL: i64 = 203;
pub const ERR_METHOD: i64 = 204;

/// A DHT contact: node id and IPv4 UDP address (compact node info is 26 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct NodeInfo {
    pub id: NodeId,
    pub addr: SocketAddrV4,
}

/// One KRPC message.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Message {
    pub tid: Vec<u8>,
    pub body: Body,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Body {
    Query(Query),
    Response(Response),
    Error { code: i64, message: String },
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Query {
    /// The querying node's id.
    pub id: NodeId,
    pub method: Method,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Method {
    Ping,
    FindNode {
        target: NodeId,
    },
    GetPeers {
        info_hash: InfoHash,
    },
    AnnouncePeer {
        info_hash: InfoHash,
        port: u16,
        implied_port: bool,
        token: Vec<u8>,
    },
}

/// A response; KRPC responses do not name their query, so this holds every field any of them may carry.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Response {
    pub id: NodeId,
    pub nodes: Vec<NodeInfo>,
    pub values: Vec<SocketAddrV4>,
    pub token: Option<Vec<u8>>,
}

/// Why a datagram is not a usable KRPC message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("datagram of {len} bytes exceeds {MAX_PACKET}: dropped")]
    TooLarge { len: usize },
    #[error("not bencode: {0}")]
    Bencode(#[from] bencode::BencodeError),
    #[error("KRPC message is not a dictionary with a transaction id `t` and a type `y`")]
    NotKrpc,
    #[error("malformed query: {reason}")]
    BadQuery { tid: Vec<u8>, reason: &'static str },
    #[error("unknown query method `{method}`")]
    UnknownMethod { tid: Vec<u8>, method: String },
    #[error("malformed response: {reason}")]
    BadResponse { tid: Vec<u8>, reason: &'static str },
}

impl DecodeError {
    /// The error reply a malformed query deserves (`tid`, code, message); `None` means drop silently.
    pub fn reply(&self) -> Option<Message> {
        let (tid, code, message) = match self {
            DecodeError::BadQuery { tid, reason } => (tid, ERR_PROTOCOL, reason.to_string()),
            DecodeError::UnknownMethod { tid, .. } => {
                (tid, ERR_METHOD, "Method Unknown".to_string())
            }
            _ => return None,
        };
        Some(Message {
            tid: tid.clone(),
            body: Body::Error { code, message },
        })
    }
}

impl Message {
    pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
        if bytes.len() > MAX_PACKET {
            return Err(DecodeError::TooLarge { len: bytes.len() });
        }
        let value = bencode::decode(bytes)?;
        let dict = value.as_dict().ok_or(DecodeError::NotKrpc)?;
        let tid = dict
            .get_bytes(b"t")
            .filter(|t| t.len() <= MAX_TID_LEN)
            .ok_or(DecodeError::NotKrpc)?;
        let tid = tid.to_vec();
        let body = match dict.get_bytes(b"y").ok_or(DecodeError::NotKrpc)? {
            b"q" => Body::Query(decode_query(dict, &tid)?),
            b"r" => Body::Response(decode_response(dict, &tid)?),
            b"e" => {
                let list = dict.get_list(b"e").unwrap_or(&[]);
                let code = list.first().and_then(Value::as_int).unwrap_or(ERR_GENERIC);
                let msg = list.get(1).and_then(Value::as_bytes).unwrap_or(b"");
                let message = String::from_utf8_lossy(&msg[..msg.len().min(200)]).into_owned();
                Body::Error { code, message }
            }
            _ => return Err(DecodeError::NotKrpc),
        };
        Ok(Message { tid, body })
    }

    /// Canonical bencode, written directly (keys in sorted order) rather than through a map: every datagram
    /// goes through here.
    pub fn encode(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(128);
        o.push(b'd');
        match &self.body {
            Body::Query(q) => {
                key(&mut o, "a");
                o.push(b'd');
                key(&mut o, "id");
                encode_bytes(&q.id.0, &mut o);
                let name = match &q.method {
                    Method::Ping => "ping",
                    Method::FindNode { target } => {
                        key(&mut o, "target");
                        encode_bytes(&target.0, &mut o);
                        "find_node"
                    }
                    Method::GetPeers { info_hash } => {
                        key(&mut o, "info_hash");
                        encode_bytes(&info_hash.0, &mut o);
                        "get_peers"
                    }
                    Method::AnnouncePeer {
                        info_hash,
                        port,
                        implied_port,
                        token,
                    } => {
                        key(&mut o, "implied_port");
                        int(&mut o, i64::from(*implied_port));
                        key(&mut o, "info_hash");
                        encode_bytes(&info_hash.0, &mut o);
                        key(&mut o, "port");
                        int(&mut o, i64::from(*port));
                        key(&mut o, "token");
                        encode_bytes(token, &mut o);
                        "announce_peer"
                    }
                };
                o.push(b'e');
                key(&mut o, "q");
                key(&mut o, name);
            }
            Body::Response(r) => {
                key(&mut o, "r");
                o.push(b'd');
                key(&mut o, "id");
                encode_bytes(&r.id.0, &mut o);
                if !r.nodes.is_empty() {
                    key(&mut o, "nodes");
                    encode_bytes(&encode_nodes(&r.nodes), &mut o);
                }
                if let Some(token) = &r.token {
                    key(&mut o, "token");
                    encode_bytes(token, &mut o);
                }
                if !r.values.is_empty() {
                    key(&mut o, "values");
                    o.push(b'l');
                    for p in &r.values {
                        encode_bytes(&encode_peer(p), &mut o);
                    }
                    o.push(b'e');
                }
                o.push(b'e');
            }
            Body::Error { code, message } => {
                key(&mut o, "e");
                o.push(b'l');
                int(&mut o, *code);
                encode_bytes(message.as_bytes(), &mut o);
                o.push(b'e');
            }
        }
        key(&mut o, "t");
        encode_bytes(&self.tid, &mut o);
        key(&mut o, "v");
        encode_bytes(VERSION, &mut o);
        key(&mut o, "y");
        key(
            &mut o,
            match self.body {
                Body::Query(_) => "q",
                Body::Response(_) => "r",
                Body::Error { .. } => "e",
            },
        );
        o.push(b'e');
        o
    }
}

fn key(o: &mut Vec<u8>, k: &str) {
    encode_bytes(k.as_bytes(), o);
}

fn int(o: &mut Vec<u8>, i: i64) {
    o.push(b'i');
    o.extend_from_slice(i.to_string().as_bytes());
    o.push(b'e');
}

fn decode_query(dict: &Dict<'_>, tid: &[u8]) -> Result<Query, DecodeError> {
    let bad = |reason| DecodeError::BadQuery {
        tid: tid.to_vec(),
        reason,
    };
    let method = dict
        .get_bytes(b"q")
        .ok_or_else(|| bad("missing method `q`"))?;
    let args = dict
        .get_dict(b"a")
        .ok_or_else(|| bad("missing arguments `a`"))?;
    let id = args
        .get_bytes(b"id")
        .and_then(NodeId::from_slice)
        .ok_or_else(|| bad("missing or bad `id`"))?;
    let hash = |key: &[u8], what| {
        args.get_bytes(key)
            .and_then(NodeId::from_slice)
            .ok_or_else(|| bad(what))
    };
    let method = match method {
        b"ping" => Method::Ping,
        b"find_node" => Method::FindNode {
            target: hash(b"target", "missing or bad `target`")?,
        },
        b"get_peers" => Method::GetPeers {
            info_hash: InfoHash(hash(b"info_hash", "missing or bad `info_hash`")?.0),
        },
        b"announce_peer" => {
            let info_hash = InfoHash(hash(b"info_hash", "missing or bad `info_hash`")?.0);
            let implied_port = args.get_int(b"implied_port").is_some_and(|v| v != 0);
            let port = args.get_int(b"port").and_then(|p| u16::try_from(p).ok());
            let port = match (port, implied_port) {
                (Some(p), _) if p != 0 => p,
                (_, true) => 0,
                _ => return Err(bad("missing or bad `port`")),
            };
            let token = args
                .get_bytes(b"token")
                .filter(|t| t.len() <= MAX_TOKEN_LEN)
                .ok_or_else(|| bad("missing or bad `token`"))?;
            Method::AnnouncePeer {
                info_hash,
                port,
                implied_port,
                token: token.to_vec(),
            }
        }
        other => {
            let method = String::from_utf8_lossy(&other[..other.len().min(32)]).into_owned();
            return Err(DecodeError::UnknownMethod {
                tid: tid.to_vec(),
                method,
            });
        }
    };
    Ok(Query { id, method })
}

fn decode_response(dict: &Dict<'_>, tid: &[u8]) -> Result<Response, DecodeError> {
    let bad = |reason| DecodeError::BadResponse {
        tid: tid.to_vec(),
        reason,
    };
    let r = dict.get_dict(b"r").ok_or_else(|| bad("missing `r`"))?;
    let id = r
        .get_bytes(b"id")
        .and_then(NodeId::from_slice)
        .ok_or_else(|| bad("missing or bad `id`"))?;
    let nodes = match r.get(b"nodes") {
        None => Vec::new(),
        Some(v) => decode_nodes(v.as_bytes().ok_or_else(|| bad("`nodes` is not a string"))?),
    };
    let values = match r.get(b"values") {
        None => Vec::new(),
        Some(v) => {
            let list = v.as_list().ok_or_else(|| bad("`values` is not a list"))?;
            list.iter()
                .filter_map(Value::as_bytes)
                .filter_map(decode_peer)
                .take(MAX_VALUES)
                .collect()
        }
    };
    let token = match r.get(b"token") {
        None => None,
        Some(v) => Some(
            v.as_bytes()
                .filter(|t| t.len() <= MAX_TOKEN_LEN)
                .ok_or_else(|| bad("bad `token`"))?
                .to_vec(),
        ),
    };
    Ok(Response {
        id,
        nodes,
        values,
        token,
    })
}

/// Compact peer info: 4-byte IPv4 + 2-byte port, big endian.
pub fn encode_peer(p: &SocketAddrV4) -> [u8; 6] {
    let mut b = [0u8; 6];
    b[..4].copy_from_slice(&p.ip().octets());
    b[4..].copy_from_slice(&p.port().to_be_bytes());
    b
}

/// Parse compact peer info; `None` unless exactly 6 bytes with a non-zero port.
pub fn decode_peer(b: &[u8]) -> Option<SocketAddrV4> {
    let b: [u8; 6] = b.try_into().ok()?;
    let port = u16::from_be_bytes([b[4], b[5]]);
    (port != 0).then(|| SocketAddrV4::new(Ipv4Addr::new(b[0], b[1], b[2], b[3]), port))
}

/// Compact node info: 26 bytes each (20-byte id + compact peer info).
pub fn encode_nodes(nodes: &[NodeInfo]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nodes.len() * 26);
    for n in nodes {
        out.extend_from_slice(&n.id.0);
        out.extend_from_slice(&encode_peer(&n.addr));
    }
    out
}

/// Parse a `nodes` string; a trailing partial entry and entries with port 0 are ignored.
pub fn decode_nodes(b: &[u8]) -> Vec<NodeInfo> {
    b.chunks_exact(26)
        .filter_map(|c| {
            let id = NodeId::from_slice(&c[..20])?;
            decode_peer(&c[20..]).map(|addr| NodeInfo { id, addr })
        })
        .collect()
}

#[cfg(test)]
#[path = "krpc_tests.rs"]
mod tests;

//! The KRPC codec of BEP 5: typed queries (`ping`, `find_node`, `get_peers`, `announce_peer`), responses and
//! errors, compact node info (26 bytes) and compact peer info (6 bytes, IPv4), bencoded with
//! `crate::metainfo::bencode`. Decoding untrusted bytes never panics: size, types and lengths are checked first;
//! a malformed or unknown query still yields its transaction id so the node can answer 203 / 204.

use crate::dht::id::NodeId;
use crate::metainfo::bencode::{self, Dict, OwnedValue, Value};
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

    pub fn encode(&self) -> Vec<u8> {
        let mut top: Vec<(&[u8], OwnedValue)> = vec![
            (b"t", OwnedValue::bytes(&self.tid)),
            (b"v", OwnedValue::bytes(VERSION)),
        ];
        match &self.body {
            Body::Query(q) => {
                top.push((b"y", OwnedValue::bytes("q")));
                let mut args: Vec<(&[u8], OwnedValue)> = vec![(b"id", OwnedValue::bytes(q.id.0))];
                let name: &str = match &q.method {
                    Method::Ping => "ping",
                    Method::FindNode { target } => {
                        args.push((b"target", OwnedValue::bytes(target.0)));
                        "find_node"
                    }
                    Method::GetPeers { info_hash } => {
                        args.push((b"info_hash", OwnedValue::bytes(info_hash.0)));
                        "get_peers"
                    }
                    Method::AnnouncePeer {
                        info_hash,
                        port,
                        implied_port,
                        token,
                    } => {
                        args.push((b"info_hash", OwnedValue::bytes(info_hash.0)));
                        args.push((b"port", OwnedValue::Int(i64::from(*port))));
                        args.push((b"implied_port", OwnedValue::Int(i64::from(*implied_port))));
                        args.push((b"token", OwnedValue::bytes(token)));
                        "announce_peer"
                    }
                };
                top.push((b"q", OwnedValue::bytes(name)));
                top.push((b"a", OwnedValue::dict(args)));
            }
            Body::Response(r) => {
                top.push((b"y", OwnedValue::bytes("r")));
                let mut args: Vec<(&[u8], OwnedValue)> = vec![(b"id", OwnedValue::bytes(r.id.0))];
                if !r.nodes.is_empty() {
                    args.push((b"nodes", OwnedValue::Bytes(encode_nodes(&r.nodes))));
                }
                if !r.values.is_empty() {
                    let vals = r
                        .values
                        .iter()
                        .map(|p| OwnedValue::bytes(encode_peer(p)))
                        .collect();
                    args.push((b"values", OwnedValue::List(vals)));
                }
                if let Some(token) = &r.token {
                    args.push((b"token", OwnedValue::bytes(token)));
                }
                top.push((b"r", OwnedValue::dict(args)));
            }
            Body::Error { code, message } => {
                top.push((b"y", OwnedValue::bytes("e")));
                let e = vec![OwnedValue::Int(*code), OwnedValue::bytes(message)];
                top.push((b"e", OwnedValue::List(e)));
            }
        }
        OwnedValue::dict(top).encode()
    }
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
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn node_info() -> impl Strategy<Value = NodeInfo> {
        (any::<[u8; 20]>(), any::<[u8; 4]>(), 1u16..).prop_map(|(id, ip, port)| NodeInfo {
            id: NodeId(id),
            addr: SocketAddrV4::new(ip.into(), port),
        })
    }

    fn message() -> impl Strategy<Value = Message> {
        let id = any::<[u8; 20]>().prop_map(NodeId);
        let method = prop_oneof![
            Just(Method::Ping),
            any::<[u8; 20]>().prop_map(|t| Method::FindNode { target: NodeId(t) }),
            any::<[u8; 20]>().prop_map(|h| Method::GetPeers {
                info_hash: InfoHash(h)
            }),
            (
                any::<[u8; 20]>(),
                1u16..,
                any::<bool>(),
                proptest::collection::vec(any::<u8>(), 0..20)
            )
                .prop_map(|(h, port, implied_port, token)| Method::AnnouncePeer {
                    info_hash: InfoHash(h),
                    port,
                    implied_port,
                    token
                }),
        ];
        let peer =
            (any::<[u8; 4]>(), 1u16..).prop_map(|(ip, port)| SocketAddrV4::new(ip.into(), port));
        let body = prop_oneof![
            (id.clone(), method).prop_map(|(id, method)| Body::Query(Query { id, method })),
            (
                id,
                proptest::collection::vec(node_info(), 0..8),
                proptest::collection::vec(peer, 0..20),
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20))
            )
                .prop_map(|(id, nodes, values, token)| Body::Response(Response {
                    id,
                    nodes,
                    values,
                    token
                })),
            (201i64..205, "[a-z ]{0,20}").prop_map(|(code, message)| Body::Error { code, message }),
        ];
        (
            proptest::collection::vec(any::<u8>(), 0..=MAX_TID_LEN),
            body,
        )
            .prop_map(|(tid, body)| Message { tid, body })
    }

    proptest! {
        #[test]
        fn round_trips(m in message()) {
            prop_assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Message::decode(&bytes);
        }

        #[test]
        fn mutated_messages_never_panic(m in message(), pos in any::<usize>(), byte in any::<u8>()) {
            let mut bytes = m.encode();
            let i = pos % bytes.len();
            bytes[i] = byte;
            if let Err(e) = Message::decode(&bytes) { let _ = e.reply(); }
        }
    }

    #[test]
    fn bep5_examples_decode() {
        let ping = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe";
        let m = Message::decode(ping).unwrap();
        assert_eq!(m.tid, b"aa");
        assert_eq!(
            m.body,
            Body::Query(Query {
                id: NodeId(*b"abcdefghij0123456789"),
                method: Method::Ping
            })
        );
        let ann = b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz1234564:porti6881e5:token8:aoeusnthe1:q13:announce_peer1:t2:aa1:y1:qe";
        match Message::decode(ann).unwrap().body {
            Body::Query(Query {
                method:
                    Method::AnnouncePeer {
                        port,
                        token,
                        implied_port,
                        ..
                    },
                ..
            }) => {
                assert_eq!(
                    (port, token.as_slice(), implied_port),
                    (6881, &b"aoeusnth"[..], false)
                );
            }
            other => panic!("{other:?}"),
        }
        let resp = b"d1:rd2:id20:mnopqrstuvwxyz1234565:token8:aoeusnth6:valuesl6:axje.u6:idhtnmee1:t2:aa1:y1:re";
        match Message::decode(resp).unwrap().body {
            Body::Response(r) => {
                assert_eq!(r.values.len(), 2);
                assert_eq!(r.token.as_deref(), Some(&b"aoeusnth"[..]));
            }
            other => panic!("{other:?}"),
        }
        let err = b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee";
        assert_eq!(
            Message::decode(err).unwrap().body,
            Body::Error {
                code: 201,
                message: "A Generic Error Ocurred".into()
            }
        );
        // Our encoding of a ping is BEP 5's byte for byte, plus our `v` key.
        let ours = Message {
            tid: b"aa".to_vec(),
            body: Body::Query(Query {
                id: NodeId(*b"abcdefghij0123456789"),
                method: Method::Ping,
            }),
        };
        assert_eq!(
            ours.encode(),
            b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:v4:QS\x00\x011:y1:qe".to_vec()
        );
    }

    #[test]
    fn bad_queries_get_203_and_unknown_methods_204() {
        let no_id = b"d1:ad6:target20:abcdefghij0123456789e1:q9:find_node1:t2:xy1:y1:qe";
        let e = Message::decode(no_id).unwrap_err();
        assert!(matches!(
            e.reply().unwrap().body,
            Body::Error { code: 203, .. }
        ));
        let unknown = b"d1:ad2:id20:abcdefghij0123456789e1:q4:vote1:t2:xy1:y1:qe";
        let reply = Message::decode(unknown).unwrap_err().reply().unwrap();
        assert_eq!(reply.tid, b"xy");
        assert!(matches!(reply.body, Body::Error { code: 204, .. }));
        assert!(Message::decode(b"de").unwrap_err().reply().is_none());
        assert!(matches!(
            Message::decode(&[b'x'; 2000]),
            Err(DecodeError::TooLarge { .. })
        ));
        // Wrong types: `id` an integer.
        let wrong = b"d1:ad2:idi5ee1:q4:ping1:t2:xy1:y1:qe";
        assert!(matches!(
            Message::decode(wrong).unwrap_err().reply().unwrap().body,
            Body::Error { code: 203, .. }
        ));
    }
}

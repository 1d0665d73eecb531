//! The DHT state file: our node id and the routing table's nodes (compact node info), bencoded, so a restarted
//! node keeps its id and rejoins through the nodes it knew. Pure bytes in and out; the CLI does the file IO.

use crate::dht::id::NodeId;
use crate::dht::krpc::{decode_nodes, encode_nodes, NodeInfo};
use crate::metainfo::bencode::{self, OwnedValue};
use thiserror::Error;

/// Why a state file could not be read.
#[derive(Debug, Error)]
pub enum StateError {
    #[error("DHT state is not valid bencode ({0}); delete the state file to start fresh")]
    Bencode(#[from] bencode::BencodeError),
    #[error(
        "DHT state lacks a 20-byte `id` or a `nodes` string; delete the state file to start fresh"
    )]
    Fields,
}

/// Encode the state file: our id and the routing table's nodes (compact node info).
pub fn encode_state(id: NodeId, nodes: &[NodeInfo]) -> Vec<u8> {
    OwnedValue::dict([
        ("id", OwnedValue::bytes(id.0)),
        ("nodes", OwnedValue::Bytes(encode_nodes(nodes))),
    ])
    .encode()
}

/// Decode a state file written by [`encode_state`].
pub fn decode_state(bytes: &[u8]) -> Result<(NodeId, Vec<NodeInfo>), StateError> {
    let v = bencode::decode(bytes)?;
    let d = v.as_dict().ok_or(StateError::Fields)?;
    let id = d
        .get_bytes(b"id")
        .and_then(NodeId::from_slice)
        .ok_or(StateError::Fields)?;
    let nodes = d.get_bytes(b"nodes").ok_or(StateError::Fields)?;
    Ok((id, decode_nodes(nodes)))
}

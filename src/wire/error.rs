//! The typed errors of the wire codec. Every one means "this peer sent bytes we cannot accept": close the
//! connection to it (and, where it says so, do not trust what it sent before).

use crate::metainfo::bencode::BencodeError;
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    #[error("bad handshake: {what}; the remote is not a BitTorrent peer, close the connection")]
    BadHandshake { what: &'static str },
    #[error("unknown message id {id}; close the connection (the stream cannot be resynchronised)")]
    UnknownMessage { id: u8 },
    #[error("message id {id} has length {len}, over the limit of {max}; close the connection")]
    TooLong { id: u8, len: u32, max: u32 },
    #[error(
        "message id {id} has length {len}, which does not fit its format; close the connection"
    )]
    BadLength { id: u8, len: u32 },
    #[error("extension message is not valid bencode ({0}); drop the message's peer")]
    Bencode(#[from] BencodeError),
    #[error("bad extension message: {what}; drop the message's peer")]
    BadExtended { what: &'static str },
    #[error("metadata_size {size} is over the 16 MiB limit (or zero); do not fetch metadata from this peer")]
    MetadataSize { size: i64 },
}

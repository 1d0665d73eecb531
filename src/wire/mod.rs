//! The peer protocol (DESIGN.md §4): BEP 3 handshake and messages, BEP 6 fast messages, BEP 10 extended
//! messages (BEP 9 metadata, BEP 11 peer exchange). Sans-IO: bytes in, typed messages out, and back.
pub mod message;

pub use message::{BlockRef, Message};

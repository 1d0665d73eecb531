//! net (not yet built).
pub mod error;
pub mod limits;
pub mod peer_conn;
pub mod quic;

pub use error::NetError;
pub use peer_conn::{IncomingPeer, PeerConn, PeerRx};
pub use quic::{QuicConfig, Transport};

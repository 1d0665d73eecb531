//! The only tokio/quinn code: the QUIC transport and peer connection driver, the DHT UDP driver, and the session glue that runs the sans-IO cores against sockets, disk and clocks.
pub mod buf_pool;
pub mod dht;
pub mod error;
pub mod limits;
pub mod peer_conn;
pub mod quic;

pub use error::NetError;
pub use peer_conn::{IncomingPeer, PeerConn, PeerRx};
pub use quic::Congestion;
pub use quic::{QuicConfig, Transport};
pub mod disk_worker;
pub mod session;
pub mod torrent_task;

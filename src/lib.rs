//! qswarm: a BitTorrent-style swarming file-sharing client.
//!
//! Peers find each other through a Kademlia DHT that speaks BEP 5 (`dht`), exchange pieces over QUIC (`net`,
//! `wire`), and schedule them with rarest-first picking and tit-for-tat choking (`swarm`). Protocol logic is
//! sans-IO; `net` is the only module that touches sockets and clocks.
pub mod cli;
pub mod dht;
pub mod metainfo;
pub mod net;
pub mod sim;
pub mod storage;
pub mod swarm;
pub mod wire;

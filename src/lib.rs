//! qswarm: a BitTorrent-style swarming file-sharing client.
//!
//! Peers find each other through a Kademlia DHT that speaks BEP 5 (`dht`), exchange pieces over QUIC (`net`,
//! `wire`), and schedule them with rarest-first picking and tit-for-tat choking (`swarm`). Protocol logic is
//! sans-IO; `net` is the only module that touches sockets and clocks.
//!
//! # Embedding
//!
//! A [`net::session::Session`] owns one QUIC endpoint and (optionally) a DHT node; each torrent added to it runs
//! as its own task and reports through a [`net::session::TorrentHandle`]: discrete
//! [`net::session::SessionEvent`]s and an always-current [`net::session::Status`].
//!
//! ```no_run
//! use qswarm::metainfo::{InfoHash, Metainfo};
//! use qswarm::net::session::{AddTorrent, Session, SessionConfig, SessionEvent, TorrentSource};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! // A session on loopback that joins the DHT through a known node.
//! let config = SessionConfig {
//!     bootstrap: vec!["127.0.0.1:6882".parse()?],
//!     download_limit: Some(10 << 20), // bytes per second, shared by all torrents of the session
//!     ..SessionConfig::loopback()
//! };
//! let session = Session::start(config).await?;
//! println!("peers reach us at {}", session.quic_addr());
//!
//! // Seed a torrent whose data is ./data/<name> (checked against the piece hashes first) ...
//! let meta = Metainfo::from_bytes(&std::fs::read("movie.torrent")?)?;
//! let _seeding = session.seed(meta, "./data").await?;
//!
//! // ... and fetch another one knowing only its infohash: peers from the DHT, metadata from the peers.
//! let ih: InfoHash = "0123456789abcdef0123456789abcdef01234567".parse()?;
//! let add = AddTorrent::new(TorrentSource::InfoHash(ih), "./downloads");
//! let mut fetch = session.add(add).await?;
//! while let Some(event) = fetch.events.recv().await {
//!     match event {
//!         SessionEvent::Complete { path, downloaded, .. } => {
//!             println!("{} complete, {downloaded} bytes fetched", path.display());
//!             break;
//!         }
//!         SessionEvent::Error { message } => return Err(message.into()),
//!         _ => {
//!             let s = fetch.status.borrow();
//!             println!("{}/{} pieces, {} peers", s.have, s.pieces, s.peers);
//!         }
//!     }
//! }
//! fetch.stop().await; // saves the resume state; adding it again later continues where it stopped
//! session.shutdown().await;
//! # Ok(())
//! # }
//! ```
pub mod cli;
pub mod dht;
pub mod metainfo;
pub mod net;
pub mod sim;
pub mod storage;
pub mod swarm;
pub mod wire;

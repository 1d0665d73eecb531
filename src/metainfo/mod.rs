//! Torrent metainfo (BEP 3): bencode, the infohash, the validated `Metainfo`, magnet links and torrent creation.
pub mod bencode;
pub mod infohash;

pub use infohash::InfoHash;

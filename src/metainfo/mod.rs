//! Torrent metainfo (BEP 3): bencode, the infohash, the validated `Metainfo`, magnet links and torrent creation.
pub mod bencode;
pub mod create;
pub mod infohash;
pub mod magnet;
pub mod torrent;

pub use infohash::InfoHash;
pub use magnet::{Magnet, MagnetError};
pub use torrent::{FileEntry, Metainfo, MetainfoError};

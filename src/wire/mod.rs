//! The peer protocol (DESIGN.md §4): BEP 3 handshake and messages, BEP 6 fast messages, BEP 10 extended
//! messages (BEP 9 metadata, BEP 11 peer exchange). Sans-IO: bytes in, typed messages out, and back.
pub mod codec;
pub mod error;
pub mod extended;
pub mod fetcher;
pub mod handshake;
pub mod message;
pub mod metadata;
pub mod payload;
pub mod pex;
pub mod stream;

pub use codec::{encode, Decoder, Limits};
pub use error::WireError;
pub use extended::ExtHandshake;
pub use fetcher::{FetchEvent, MetadataFetcher};
pub use handshake::{Handshake, PeerId};
pub use message::{BlockRef, Message, BLOCK_SIZE};
pub use metadata::MetadataMsg;
pub use payload::PieceData;
pub use pex::{PexMessage, PexState};
pub use stream::ChunkDecoder;

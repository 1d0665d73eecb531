//! Sans-IO Kademlia DHT speaking BEP 5 on the wire: node ids and the XOR metric (`id`), the KRPC codec
//! (`krpc`), the routing table (`table`), write tokens (`token`), the bounded peer store (`store`), per-source
//! rate limiting (`ratelimit`), the lookup iterator (`lookup`) and the `Node` that ties them together (`node`).
//!
//! Nothing here touches sockets or clocks: callers pass `now: Instant` and datagrams in, and take datagrams,
//! timeouts and events out (`src/net/dht.rs` drives it over UDP, `src/sim/dht.rs` in a simulated network).
pub mod id;
pub mod krpc;
pub mod lookup;
pub mod node;
pub mod ratelimit;
pub mod state;
pub mod store;
pub mod table;
pub mod token;

pub use id::{Distance, NodeId};
pub use krpc::{NodeInfo, MAX_PACKET};
pub use node::{Config, Event, LookupId, Node};

//! The swarm engine, sans-IO (DESIGN.md §5, §6): piece geometry, the piece state tracker and picker, rolling
//! rates and token buckets, the choker, and the per-torrent state machine [`torrent::Torrent`] that composes them.
//! Nothing here touches sockets, files or clocks: time comes in as `now`, randomness from a seeded RNG.
pub mod actions;
pub mod choker;
pub mod geometry;
pub mod picker;
pub mod pieces;
pub mod rate;
pub mod stall;
pub mod torrent;

/// A small opaque handle for one connected peer, chosen by the caller (the net layer or the simulator).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerKey(pub u64);
#[cfg(test)]
mod limit_tests;
pub mod peer;
#[cfg(test)]
mod stall_tests;
#[cfg(test)]
mod torrent_tests;

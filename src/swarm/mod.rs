//! swarm (not yet built).
pub mod peer;

//! swarm (not yet built).

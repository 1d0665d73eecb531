//! dht (not yet built).

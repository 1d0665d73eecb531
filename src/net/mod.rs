//! net (not yet built).
pub mod dht;

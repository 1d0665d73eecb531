//! sim (not yet built).
pub mod dht;
pub mod dht_scenario;

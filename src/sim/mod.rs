//! Deterministic simulators (virtual clock, simulated links): `dht` runs thousands of DHT nodes, `swarm` a whole swarm of torrent machines.
pub mod dht;
pub mod dht_scenario;
pub mod swarm;
mod swarm_scenario;
#[cfg(test)]
mod swarm_tests;

//! sim (not yet built).
pub mod swarm;
#[cfg(test)]
mod swarm_tests;

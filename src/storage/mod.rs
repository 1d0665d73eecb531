//! storage (not yet built).
pub mod hasher;

//! storage (not yet built).

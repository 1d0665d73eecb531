//! sim (not yet built).

//! wire (not yet built).

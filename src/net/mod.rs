//! net (not yet built).

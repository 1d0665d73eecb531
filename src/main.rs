//! The `qswarm` binary: parse arguments and hand over to `qswarm::cli`.
fn main() {}

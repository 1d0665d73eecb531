//! Per-torrent state machine (in progress).

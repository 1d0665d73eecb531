//! Command-line front end: one file per command, progress rendering, events as JSON lines.

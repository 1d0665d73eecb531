//! Helpers shared by the fault tests (`tests/fault_*.rs`): argument building for `qswarm` processes, a small
//! seeded random source, draining a killed process's last events, and sampling a process's peak RSS.
#![allow(dead_code)]

use serde_json::Value;

/// Owned argument vector from string slices.
pub fn args(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// xorshift64: a tiny deterministic random source (seed printed by the tests so a failure can be replayed).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    /// Uniform-ish in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }
}

/// The peak resident set size (VmHWM) of process `pid` in KiB, if it is still running.
pub fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The `downloaded` field of the last `progress` event among `seen`, or 0.
pub fn last_progress_downloaded(seen: &[Value]) -> u64 {
    seen.iter()
        .rev()
        .find(|v| v["event"] == "progress")
        .and_then(|v| v["downloaded"].as_u64())
        .unwrap_or(0)
}
pub mod hostile;

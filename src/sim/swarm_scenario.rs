//! What a swarm simulation is asked to run ([`SwarmScenario`]) and what it reports ([`SwarmReport`]): per
//! leecher completion times, bytes moved, and the medians the tit-for-tat tests compare.

use std::time::Duration;

use crate::swarm::actions::TorrentConfig;

/// One simulated swarm: node 0 is the seed, nodes 1..=leechers the leechers; the first `free_riders` leechers
/// never upload and the next `corrupters` send garbage.
#[derive(Debug, Clone)]
pub struct SwarmScenario {
    pub leechers: usize,
    pub free_riders: usize,
    pub corrupters: usize,
    pub file_len: u64,
    pub piece_len: u32,
    /// Bytes per second.
    pub seed_upload: f64,
    pub leecher_upload: f64,
    /// One-way latency range per pair, milliseconds.
    pub latency_ms: (u64, u64),
    /// Leechers join at random times in `[0, join_spread]`.
    pub join_spread: Duration,
    pub rng_seed: u64,
    /// Give up after this much virtual time.
    pub max_time: Duration,
    /// Run the machines' `check_invariants` on every fourth tick (each node about once a second; for tests).
    pub check_invariants: bool,
    /// Applied to every node's default config.
    pub tune: fn(&mut TorrentConfig),
}

impl SwarmScenario {
    /// Issue 5's target: one seed, 30 leechers, 64 MiB in 256 KiB pieces, 4 MB/s seed, 2 MB/s leechers.
    pub fn issue5() -> Self {
        Self {
            leechers: 30,
            free_riders: 0,
            corrupters: 0,
            file_len: 64 << 20,
            piece_len: 256 << 10,
            seed_upload: 4e6,
            leecher_upload: 2e6,
            latency_ms: (20, 50),
            join_spread: Duration::from_millis(500),
            rng_seed: 1,
            max_time: Duration::from_secs(600),
            check_invariants: false,
            tune: |_| {},
        }
    }

    /// The fluid-model lower bound (Kumar & Ross 2006) on the time for every leecher to finish, in seconds:
    /// `max(F / u_s, N·F / (u_s + Σu_i))`, counting only uploading leechers in `Σu_i`.
    pub fn t_min(&self) -> f64 {
        let f = self.file_len as f64;
        let n = self.leechers as f64;
        let sum = (self.leechers - self.free_riders - self.corrupters) as f64 * self.leecher_upload;
        (f / self.seed_upload).max(n * f / (self.seed_upload + sum))
    }
}

/// What happened in one run.
#[derive(Debug, Clone)]
pub struct SwarmReport {
    /// Leecher uplink idle time (seconds, summed over leechers still downloading) by reason: nobody interested,
    /// interested peers but none unchoked, unchoked peers with no requests.
    pub idle: [f64; 3],
    /// Per leecher (index 0 = node 1): completion time from the start, if it finished.
    pub completion: Vec<Option<Duration>>,
    pub free_rider: Vec<bool>,
    pub corrupter: Vec<bool>,
    /// Payload bytes free riders received from contributors: [optimistic, regular after 10 s, from seeding contributors, regular in the first 10 s].
    pub fr_sources: [u64; 4],
    /// Payload bytes each leecher received from the seed.
    pub from_seed: Vec<u64>,
    /// Payload bytes each node uploaded (node 0 = seed).
    pub uploaded: Vec<u64>,
    pub pieces_failed: usize,
    pub bans: usize,
    /// Bans of peers that never sent bad data.
    pub false_bans: usize,
    pub events: u64,
    /// Payload bytes uploaded by the whole swarm in each second of virtual time.
    pub timeline: Vec<u64>,
}

impl SwarmReport {
    /// Time until every non-corrupting leecher finished (None if one did not).
    pub fn all_done(&self) -> Option<Duration> {
        let mut m = Duration::ZERO;
        for (i, c) in self.completion.iter().enumerate() {
            if !self.corrupter[i] {
                m = m.max((*c)?);
            }
        }
        Some(m)
    }

    /// Median completion (seconds) of leechers selected by `pick(free_rider)`; unfinished count as infinite.
    pub fn median(&self, free_riders: bool) -> f64 {
        let mut v: Vec<f64> = self
            .completion
            .iter()
            .enumerate()
            .filter(|(i, _)| self.free_rider[*i] == free_riders && !self.corrupter[*i])
            .map(|(_, c)| c.map_or(f64::INFINITY, |d| d.as_secs_f64()))
            .collect();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return f64::NAN;
        }
        if v.len() % 2 == 1 {
            v[v.len() / 2]
        } else {
            (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
        }
    }

    /// Latest completion (seconds) among contributors (neither free riders nor corrupters).
    pub fn max_contributor(&self) -> f64 {
        self.completion
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.free_rider[*i] && !self.corrupter[*i])
            .map(|(_, c)| c.map_or(f64::INFINITY, |d| d.as_secs_f64()))
            .fold(0.0, f64::max)
    }
}

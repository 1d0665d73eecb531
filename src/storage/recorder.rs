//! [`ResumeRecorder`]: records pieces as they are verified and written, and saves the resume state at most
//! once per interval in the crash-safe order of [`mod@super::resume`]: sync the data, stamp the files, then
//! write the state atomically. A piece is only ever named in a saved state after its data was verified and made durable.

use super::disk::{Storage, StorageError};
use super::resume::{stamps, ResumeState};
use super::verify::Bitfield;
use crate::metainfo::InfoHash;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A sensible save interval: at most one state write (and the fsyncs before it) every few seconds; a kill loses
/// at most this much recorded progress, which a restart fetches again (or finds by re-checking).
pub const DEFAULT_SAVE_INTERVAL: Duration = Duration::from_secs(5);

/// Records verified pieces and saves the state, at most once per `interval` (see the module doc for the order).
#[derive(Debug)]
pub struct ResumeRecorder {
    path: PathBuf,
    infohash: InfoHash,
    have: Bitfield,
    pending: BTreeSet<u32>,
    interval: Duration,
    last_save: Option<Instant>,
}

impl ResumeRecorder {
    /// Start from `have` (what [`super::resume::resume`] returned); saves go to `path`.
    pub fn new(
        path: impl Into<PathBuf>,
        infohash: InfoHash,
        have: Bitfield,
        interval: Duration,
    ) -> ResumeRecorder {
        ResumeRecorder {
            path: path.into(),
            infohash,
            have,
            pending: BTreeSet::new(),
            interval,
            last_save: None,
        }
    }

    /// Piece `piece` has been verified AND all its data written (the write calls returned). Only then.
    pub fn piece_done(&mut self, piece: u32) {
        if (piece as usize) < self.have.len() && !self.have[piece as usize] {
            self.pending.insert(piece);
        }
    }

    /// Pieces saved or waiting for the next save.
    pub fn is_done(&self, piece: u32) -> bool {
        self.have.get(piece as usize).is_some_and(|b| *b) || self.pending.contains(&piece)
    }

    /// The bitfield as of the last save.
    pub fn saved(&self) -> &Bitfield {
        &self.have
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Save if pieces are pending and `interval` has passed since the last save. Returns whether it saved.
    pub fn save_if_due(&mut self, storage: &Storage, now: Instant) -> Result<bool, StorageError> {
        let due = self
            .last_save
            .is_none_or(|t| now.saturating_duration_since(t) >= self.interval);
        if self.pending.is_empty() || !due {
            return Ok(false);
        }
        self.save(storage, now)?;
        Ok(true)
    }

    /// Save now (also refreshes the file stamps, e.g. right after a start-up recheck).
    pub fn save(&mut self, storage: &Storage, now: Instant) -> Result<(), StorageError> {
        let layout = storage.layout();
        let files: BTreeSet<usize> = self
            .pending
            .iter()
            .flat_map(|&p| layout.piece_files(p))
            .collect();
        storage.sync_files(files)?; // data durable before the state names it
        let files = stamps(storage)?;
        let mut have = self.have.clone();
        have.resize(layout.piece_count() as usize, false);
        for &p in &self.pending {
            have.set(p as usize, true);
        }
        let state = ResumeState {
            infohash: self.infohash,
            piece_length: layout.piece_length(),
            piece_count: layout.piece_count(),
            have,
            files,
        };
        state.save_atomic(&self.path)?;
        self.have = state.have;
        self.pending.clear();
        self.last_save = Some(now);
        Ok(())
    }
}

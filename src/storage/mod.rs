//! Storage: where a torrent's bytes live on disk. `layout` is the pure piece ↔ file-range map; `disk` does
//! positioned reads and writes (pread/pwrite) through a capped LRU of lazily opened file handles, with path
//! safety and typed errors (`error`); `verify` checks pieces against their SHA-1 (sync, from tokio via
//! `spawn_blocking`, and a parallel full recheck); `resume` saves and trusts the verified-piece bitfield across
//! restarts (DESIGN.md §8), `recorder` records verified pieces and saves it in a crash-safe order; `batch_io`
//! does the disk thread's vectored writes and unzeroed reads; `blocking` runs the blocking calls from tokio;
//! `hasher` hashes files in piece order on all cores (torrent creation).
pub mod batch_io;
pub mod blocking;
pub mod disk;
pub mod error;
pub mod hasher;
pub mod layout;
pub mod recorder;
pub mod resume;
pub mod verify;

pub use disk::{FileEntry, Storage, StorageOptions, DEFAULT_MAX_OPEN_FILES};
pub use error::StorageError;
pub use layout::{Layout, LayoutError, Segment};
pub use recorder::{ResumeRecorder, DEFAULT_SAVE_INTERVAL};
pub use resume::{plan_resume, resume, ResumePlan, ResumeRejected, ResumeState};
pub use verify::{Bitfield, PieceHash};

/// A storage of files `t/<name>` with the given lengths under `dir`, for unit tests.
#[cfg(test)]
pub(crate) fn test_storage(
    dir: &std::path::Path,
    files: &[(&str, u64)],
    piece_len: u32,
) -> Storage {
    let entries: Vec<_> = files
        .iter()
        .map(|(n, l)| FileEntry {
            path: vec!["t".into(), n.to_string()],
            length: *l,
        })
        .collect();
    Storage::new(dir, &entries, piece_len, StorageOptions::default()).unwrap()
}

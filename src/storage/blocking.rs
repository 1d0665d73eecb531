//! Tokio adapters: run the blocking storage calls (positioned reads/writes, resume saves) on tokio's blocking
//! pool with `spawn_blocking`, never on the async reactor. Piece verification has its own adapters in
//! [`super::verify`] (`verify_piece_async`, `verify_buffer_async`, `recheck_async`).

use super::disk::Storage;
use super::error::StorageError;
use super::recorder::ResumeRecorder;
use std::sync::{Arc, Mutex};
use std::time::Instant;

fn join_err(e: tokio::task::JoinError) -> StorageError {
    StorageError::Io {
        op: "running storage task",
        path: Default::default(),
        source: std::io::Error::other(e),
    }
}

/// [`Storage::write_block`] on the blocking pool; gives the buffer back (e.g. to reuse it).
pub async fn write_block(
    storage: Arc<Storage>,
    piece: u32,
    offset: u32,
    data: bytes::Bytes,
) -> Result<bytes::Bytes, StorageError> {
    tokio::task::spawn_blocking(move || storage.write_block(piece, offset, &data).map(|()| data))
        .await
        .map_err(join_err)?
}

/// [`Storage::read_block`] of `len` bytes on the blocking pool (e.g. to answer a peer's request).
pub async fn read_block(
    storage: Arc<Storage>,
    piece: u32,
    offset: u32,
    len: u32,
) -> Result<Vec<u8>, StorageError> {
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0; len as usize];
        storage.read_block(piece, offset, &mut buf).map(|()| buf)
    })
    .await
    .map_err(join_err)?
}

/// [`ResumeRecorder::save_if_due`] on the blocking pool (it fsyncs). Returns whether it saved.
pub async fn save_if_due(
    recorder: Arc<Mutex<ResumeRecorder>>,
    storage: Arc<Storage>,
    now: Instant,
) -> Result<bool, StorageError> {
    tokio::task::spawn_blocking(move || {
        let mut rec = recorder.lock().unwrap_or_else(|p| p.into_inner());
        rec.save_if_due(&storage, now)
    })
    .await
    .map_err(join_err)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::InfoHash;
    use crate::storage::{Bitfield, FileEntry, ResumeState, StorageOptions};
    use std::time::Duration;

    #[tokio::test]
    async fn write_read_and_save_from_tokio() {
        let dir = tempfile::tempdir().unwrap();
        let files = [FileEntry {
            path: vec!["x".into()],
            length: 40_000,
        }];
        let s = Arc::new(
            Storage::new(
                dir.path().join("d"),
                &files,
                16_384,
                StorageOptions::default(),
            )
            .unwrap(),
        );
        let data = bytes::Bytes::from(vec![5u8; 7_232]);
        let back = write_block(s.clone(), 2, 0, data.clone()).await.unwrap();
        assert_eq!(back, data);
        assert_eq!(
            read_block(s.clone(), 2, 100, 50).await.unwrap(),
            vec![5; 50]
        );
        assert!(
            read_block(s.clone(), 2, 7_000, 500).await.is_err(),
            "past the end of the last piece"
        );
        let state = dir.path().join("r");
        let rec = ResumeRecorder::new(
            &state,
            InfoHash([1; 20]),
            Bitfield::repeat(false, 3),
            Duration::ZERO,
        );
        let rec = Arc::new(Mutex::new(rec));
        rec.lock().unwrap().piece_done(2);
        assert!(save_if_due(rec.clone(), s.clone(), Instant::now())
            .await
            .unwrap());
        assert!(
            !save_if_due(rec, s, Instant::now()).await.unwrap(),
            "nothing pending"
        );
        let saved = ResumeState::load(&state).unwrap().unwrap();
        assert_eq!(saved.have.iter_ones().collect::<Vec<_>>(), vec![2]);
    }
}

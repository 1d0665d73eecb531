//! Activation of a torrent task once the metainfo is known (given, loaded from the state directory, or just
//! fetched from peers and saved there): open the storage, check the data — trusting what the resume state
//! vouches for and re-checking pieces written after its last save — then start the disk thread and the
//! [`Torrent`] machine and hand it the peers already connected.

use super::{Active, Task, UPLOAD_PIPELINE};
use crate::metainfo::Metainfo;
use crate::net::disk_worker::Disk;
use crate::net::session::SessionEvent;
use crate::storage::{self, Bitfield, FileEntry, ResumeRecorder, Storage, StorageOptions};
use crate::swarm::actions::TorrentConfig;
use crate::swarm::geometry::Geometry;
use crate::swarm::torrent::Torrent;
use crate::swarm::PeerKey;
use bytes::Bytes;
use rand::SeedableRng;
use std::sync::Arc;
use std::time::Instant;

impl Task {
    pub(super) async fn metadata_fetched(&mut self, info: Bytes) -> Result<(), String> {
        self.fetcher = None;
        let meta = Metainfo::from_info_bytes(&info).map_err(|e| {
            format!(
                "the metadata peers sent hashes to the infohash but is not a valid torrent: {e}"
            )
        })?;
        let _ = std::fs::create_dir_all(&self.state_dir);
        let path = self.torrent_path();
        if let Err(e) = std::fs::write(&path, meta.to_torrent_bytes()) {
            tracing::warn!("cannot save the metadata to {}: {e}", path.display());
        }
        self.activate(meta).await
    }

    /// The metainfo is known: open the storage, check the data (trusting the resume state where it vouches),
    /// start the machine and hand it the peers already connected.
    pub(super) async fn activate(&mut self, meta: Metainfo) -> Result<(), String> {
        let name = self
            .add
            .data_name
            .clone()
            .unwrap_or_else(|| meta.name.clone());
        self.emit(SessionEvent::Metadata {
            name: meta.name.clone(),
            length: meta.total_length,
            piece_length: meta.piece_length,
            pieces: meta.piece_count() as u32,
        });
        let files: Vec<FileEntry> = meta
            .files
            .iter()
            .map(|f| {
                let mut path = vec![name.clone()];
                if meta.multi_file {
                    path.extend(f.path.iter().cloned());
                }
                FileEntry {
                    path,
                    length: f.length,
                }
            })
            .collect();
        let piece_len = u32::try_from(meta.piece_length)
            .map_err(|_| "piece length over 4 GiB is not supported".to_string())?;
        let storage = Storage::new(&self.add.dir, &files, piece_len, StorageOptions::default())
            .map_err(|e| e.to_string())?;
        let storage = Arc::new(storage);
        let hashes = Arc::new(meta.pieces.clone());
        let n = meta.piece_count();
        let trusted = self.add.trusted_complete;
        let resume_path = self.resume_path();
        let state_dir = self.state_dir.clone();
        let (st, hs, ih) = (storage.clone(), hashes.clone(), self.ih);
        let checked = tokio::task::spawn_blocking(move || {
            let _ = std::fs::create_dir_all(&state_dir);
            st.prepare()?;
            let (have, rechecked, save) = if trusted {
                (Bitfield::repeat(true, n), 0, true)
            } else {
                let (mut have, plan) = storage::resume(&resume_path, &ih, &st, &hs)?;
                let extra = written_since_save(&resume_path, &st, &have, &plan)?;
                let good = storage::verify::recheck(&st, &hs, &extra)?;
                for p in &extra {
                    if good[*p as usize] {
                        have.set(*p as usize, true);
                    }
                }
                let rechecked = (plan.recheck.len() + extra.len()) as u32;
                (have, rechecked, rechecked > 0 || !plan.loaded)
            };
            let mut rec = ResumeRecorder::new(
                &resume_path,
                ih,
                have.clone(),
                storage::DEFAULT_SAVE_INTERVAL,
            );
            if save {
                if let Err(e) = rec.save(&st, Instant::now()) {
                    tracing::warn!("cannot save the resume state: {e}");
                }
            }
            Ok::<_, storage::StorageError>((have, rechecked, rec))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        let (have, rechecked, rec) = checked;
        let have_list: Vec<u32> = have.iter_ones().map(|p| p as u32).collect();
        self.emit(SessionEvent::Checked {
            have: have_list.len() as u32,
            rechecked,
        });
        let disk = Disk::start(storage, hashes, Some(rec), storage::DEFAULT_SAVE_INTERVAL);
        let geom = Geometry::new(meta.total_length, piece_len).map_err(|e| e.to_string())?;
        let mut cfg = TorrentConfig::new(piece_len);
        // The session's limits: one budget shared by every torrent and peer of the process.
        cfg.upload_limit = self.shared.upload_limit.clone();
        cfg.download_limit = self.shared.download_limit.clone();
        cfg.upload_pipeline = UPLOAD_PIPELINE;
        // Over QUIC a cancelled request is usually already in the connection's send buffer (up to the 8 MiB
        // send window), so moving deep requests to another peer mostly fetches them twice: measured with
        // `qswarm demo` (8 leechers, 64 MiB) 71-103 MiB downloaded per leecher with it, 64-76 MiB without, and
        // the same completion time.
        cfg.rebalance_after_secs = None;
        let now = Instant::now();
        let rng = rand::rngs::StdRng::from_os_rng();
        let torrent = Torrent::new(now, geom, &have_list, cfg, rng);
        self.raw_info = Some(Bytes::from(meta.raw_info.clone()));
        let complete = torrent.is_complete();
        self.active = Some(Active {
            path: self.add.dir.join(&name),
            meta: Arc::new(meta),
            torrent,
            disk,
        });
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            self.enter_machine(now, k);
        }
        if complete {
            self.on_complete().await;
        }
        self.publish_status();
        Ok(())
    }
}

/// Pieces the resume state does not name but whose files were written after it was saved (a kill between two
/// saves): their data may be complete, so they are re-checked rather than fetched again.
fn written_since_save(
    path: &std::path::Path,
    st: &Storage,
    have: &Bitfield,
    plan: &storage::ResumePlan,
) -> Result<Vec<u32>, storage::StorageError> {
    let Ok(Some(saved)) = storage::ResumeState::load(path) else {
        return Ok(Vec::new());
    };
    if !plan.loaded {
        return Ok(Vec::new());
    }
    let now = storage::resume::stamps(st)?;
    let layout = st.layout();
    let changed: Vec<bool> = (0..layout.file_count())
        .map(|f| now[f].is_some() && saved.files.get(f) != Some(&now[f]))
        .collect();
    let mut queued = Bitfield::repeat(false, layout.piece_count() as usize);
    for p in &plan.recheck {
        queued.set(*p as usize, true);
    }
    Ok((0..layout.piece_count())
        .filter(|p| !have[*p as usize] && !queued[*p as usize])
        .filter(|p| layout.piece_files(*p).any(|f| changed[f]))
        .filter(|p| {
            layout.piece_segments(*p).is_ok_and(|mut segs| {
                segs.all(|s| now[s.file].is_some_and(|st| st.length >= s.offset + u64::from(s.len)))
            })
        })
        .collect())
}

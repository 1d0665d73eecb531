//! One tokio task per torrent: it owns the sans-IO [`Torrent`] machine, the torrent's [`Storage`] (through the
//! disk thread of [`super::disk_worker`]), its peer connections and its DHT announce, and executes the
//! machine's actions — `Send` to the peer's outbox, `ReadBlock`/`WriteBlock`/`VerifyPiece` on the disk thread,
//! events to the event stream. Before the metainfo is known (fetch by infohash) it runs the BEP 9 metadata
//! phase with a [`MetadataFetcher`]; peers' messages that arrive meanwhile are kept and replayed.
//!
//! Peer handling (connections, candidates, extension messages, PEX) is in `torrent_task/peers.rs`.

use super::disk_worker::{Disk, DiskDone, DiskJob};
use super::session::{AddTorrent, SessionEvent, Shared, Status, TorrentSource};
use crate::metainfo::{InfoHash, Metainfo};
use crate::net::PeerConn;
use crate::swarm::actions::{Action, TorrentEvent};
use crate::swarm::torrent::Torrent;
use crate::swarm::PeerKey;
use crate::wire::{Message, MetadataFetcher};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

mod activate;
mod peer_io;
mod peers;
use peers::{Cand, Peer};

/// Housekeeping period: status, connection attempts, timeouts.
const HOUSEKEEPING: Duration = Duration::from_millis(250);
/// Messages from all peers queued for the task (at most 4 MiB of blocks); beyond that QUIC flow control
/// holds the senders back.
const INBOX: usize = 128;
/// Messages handled from the inbox before the actions are run.
const BATCH: usize = 64;
/// Blocks per peer being read or waiting to be sent (the machine's upload pipeline).
const UPLOAD_PIPELINE: u32 = 16;

/// Control messages to a torrent task (from the session, connect attempts, DHT lookups).
pub(crate) enum Ctl {
    Conn { conn: PeerConn, outgoing: bool },
    ConnectFailed { addr: SocketAddr },
    Found(SocketAddr),
    Stop(oneshot::Sender<()>),
}

/// What peers' reader and outbox tasks send the torrent task.
pub(crate) enum Inbound {
    Msg(PeerKey, Message),
    Closed(PeerKey, Option<String>),
    /// The peer sent bytes the codec rejects (a protocol violation); the connection is done.
    Violation(PeerKey, String),
    /// A piece message was handed to the connection's writer.
    Sent(PeerKey),
}

/// The torrent once its metainfo is known.
struct Active {
    meta: Arc<Metainfo>,
    torrent: Torrent,
    disk: Disk,
    path: PathBuf,
}

pub(crate) struct Task {
    shared: Arc<Shared>,
    ih: InfoHash,
    add: AddTorrent,
    state_dir: PathBuf,
    ctl_tx: mpsc::Sender<Ctl>,
    inbox_tx: mpsc::Sender<Inbound>,
    events: mpsc::Sender<SessionEvent>,
    status: watch::Sender<Status>,
    peers: HashMap<PeerKey, Peer>,
    next_key: u64,
    cands: HashMap<SocketAddr, Cand>,
    active: Option<Active>,
    fetcher: Option<MetadataFetcher<PeerKey>>,
    raw_info: Option<Bytes>,
    started: Instant,
    samples: VecDeque<(Instant, u64, u64)>,
    next_dht: Instant,
    dht_round: u32,
    announced: bool,
    next_pex: Instant,
    complete: bool,
    failed: Option<String>,
}

pub(crate) fn spawn(
    shared: Arc<Shared>,
    add: AddTorrent,
    ctl_tx: mpsc::Sender<Ctl>,
    ctl_rx: mpsc::Receiver<Ctl>,
    events: mpsc::Sender<SessionEvent>,
    status: watch::Sender<Status>,
) {
    let (inbox_tx, inbox_rx) = mpsc::channel(INBOX);
    let now = Instant::now();
    let ih = add.source.info_hash();
    let state_dir = add
        .state_dir
        .clone()
        .unwrap_or_else(|| add.dir.join(".qswarm"));
    let task = Task {
        shared,
        ih,
        state_dir,
        add,
        ctl_tx,
        inbox_tx,
        events,
        status,
        peers: HashMap::new(),
        next_key: 1,
        cands: HashMap::new(),
        active: None,
        fetcher: None,
        raw_info: None,
        started: now,
        samples: VecDeque::new(),
        next_dht: now,
        dht_round: 0,
        announced: false,
        next_pex: now + Duration::from_secs(3),
        complete: false,
        failed: None,
    };
    tokio::spawn(task.run(ctl_rx, inbox_rx));
}

impl Task {
    fn emit(&self, e: SessionEvent) {
        let _ = self.events.try_send(e);
    }

    fn resume_path(&self) -> PathBuf {
        self.state_dir.join(format!("{}.resume", self.ih.to_hex()))
    }

    fn torrent_path(&self) -> PathBuf {
        self.state_dir.join(format!("{}.torrent", self.ih.to_hex()))
    }

    async fn run(mut self, mut ctl_rx: mpsc::Receiver<Ctl>, mut inbox: mpsc::Receiver<Inbound>) {
        for p in self.add.peers.clone() {
            self.add_cand(p, true);
        }
        let start = match self.add.source.clone() {
            TorrentSource::Metainfo(m) => self.activate(*m).await,
            TorrentSource::InfoHash(_) => {
                let saved = std::fs::read(self.torrent_path())
                    .ok()
                    .and_then(|b| Metainfo::from_bytes(&b).ok())
                    .filter(|m| m.info_hash == self.ih);
                match saved {
                    Some(m) => self.activate(m).await,
                    None => {
                        self.fetcher = Some(MetadataFetcher::new(self.ih));
                        Ok(())
                    }
                }
            }
        };
        if let Err(e) = start {
            return self.fail(e).await;
        }
        let mut dht_ready = self.shared.dht_ready.subscribe();
        let mut house = tokio::time::interval(HOUSEKEEPING);
        house.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut disk_rx: Option<mpsc::UnboundedReceiver<Vec<DiskDone>>> = None;
        loop {
            if disk_rx.is_none() {
                disk_rx = self.active.as_mut().and_then(|a| a.disk.done.take());
            }
            let deadline = match self.active.as_mut() {
                Some(a) => a.torrent.poll_timeout(Instant::now()),
                None => Instant::now() + Duration::from_secs(3600),
            };
            let disk_done = async {
                match disk_rx.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                d = disk_done => {
                    for d in d.into_iter().flatten() {
                        if let Err(e) = self.on_disk(d) {
                            return self.fail(e).await;
                        }
                    }
                }
                Some(m) = inbox.recv() => {
                    self.on_inbound(m);
                    for _ in 0..BATCH {
                        match inbox.try_recv() {
                            Ok(m) => self.on_inbound(m),
                            Err(_) => break,
                        }
                    }
                }
                c = ctl_rx.recv() => match c {
                    Some(Ctl::Stop(reply)) => {
                        self.shutdown().await;
                        let _ = reply.send(());
                        return;
                    }
                    Some(c) => self.on_ctl(c),
                    None => return self.shutdown().await,
                },
                _ = tokio::time::sleep_until(deadline.into()) => {
                    if let Some(a) = self.active.as_mut() {
                        a.torrent.tick(Instant::now());
                    }
                }
                _ = house.tick() => self.housekeeping(),
                // The DHT just became ready: announce and look up now rather than at the next tick.
                Ok(()) = dht_ready.changed(), if !self.announced => self.housekeeping(),
            }
            if let Err(e) = self.after_input().await {
                return self.fail(e).await;
            }
        }
    }

    /// Run what the inputs produced: metadata requests/completion, then the machine's actions.
    async fn after_input(&mut self) -> Result<(), String> {
        if let Some(info) = self.pump_fetcher() {
            self.metadata_fetched(info).await?;
        }
        self.run_actions().await
    }

    fn on_disk(&mut self, d: DiskDone) -> Result<(), String> {
        let now = Instant::now();
        let Some(a) = self.active.as_mut() else {
            return Ok(());
        };
        match d {
            DiskDone::Read { peer, block, data } => match data {
                Ok(data) => a.torrent.block_read(now, peer, block, data),
                Err(e) => return Err(format!("reading piece {}: {e}", block.piece)),
            },
            DiskDone::Verified { piece, ok } => a.torrent.piece_verified(now, piece, ok),
            DiskDone::Failed(e) => return Err(e.to_string()),
        }
        Ok(())
    }

    /// Disk jobs go to the disk thread as one batch per call (one wake-up of that thread per round, not one
    /// per block).
    async fn run_actions(&mut self) -> Result<(), String> {
        let mut jobs = Vec::new();
        loop {
            let action = match self.active.as_mut() {
                Some(a) => a.torrent.poll_action(),
                None => None,
            };
            let Some(action) = action else {
                break;
            };
            let job = match action {
                Action::Send { peer, msg } => {
                    self.send_to(peer, msg);
                    continue;
                }
                Action::Disconnect { peer, reason } => {
                    tracing::debug!("dropping peer {peer:?}: {reason:?}");
                    self.remove_peer(peer, false);
                    continue;
                }
                Action::Event(e) => {
                    self.on_torrent_event(e).await;
                    continue;
                }
                Action::ReadBlock { peer, block } => DiskJob::Read { peer, block },
                Action::WriteBlock { block, data } => DiskJob::Write { block, data },
                Action::VerifyPiece { piece } => DiskJob::Verify { piece },
            };
            jobs.push(job);
        }
        let Some(a) = self.active.as_ref() else {
            return Ok(());
        };
        if !jobs.is_empty() && a.disk.jobs.send(jobs).await.is_err() {
            return Err("the disk thread stopped".into());
        }
        Ok(())
    }

    async fn on_torrent_event(&mut self, e: TorrentEvent) {
        match e {
            TorrentEvent::PieceCompleted { .. } => {}
            TorrentEvent::Complete => self.on_complete().await,
            TorrentEvent::PieceFailed { piece, from } => {
                let from = from
                    .iter()
                    .filter_map(|k| self.peers.get(k).map(|p| p.addr))
                    .collect();
                self.emit(SessionEvent::PieceFailed { piece, from });
            }
            TorrentEvent::PeerBanned { addr, .. } => {
                tracing::info!("banned peer {addr}: it sent data that failed verification");
            }
        }
    }

    async fn on_complete(&mut self) {
        if self.complete {
            return;
        }
        self.complete = true;
        let Some(a) = self.active.as_ref() else {
            return;
        };
        // Every piece is verified and written (readable by anyone): say so now, as other clients do. Making
        // the resume state durable (`fdatasync` of ~0.3 s per GiB here) follows on the saver thread, while this
        // task goes on serving its peers (awaiting it here left every peer's requests unanswered for that long:
        // the last leechers of a swarm waited on one that had finished); `shutdown` flushes again before the
        // process exits, so nothing waits on a half-saved state.
        let (downloaded, uploaded) = (a.torrent.downloaded(), a.torrent.uploaded());
        let path = a.path.clone();
        self.publish_status();
        self.emit(SessionEvent::Complete {
            path,
            downloaded,
            uploaded,
            seconds: self.started.elapsed().as_secs_f64(),
        });
        if let Some(a) = self.active.as_ref() {
            a.disk.flush_in_background();
        }
    }

    fn housekeeping(&mut self) {
        let now = Instant::now();
        if let Some(f) = self.fetcher.as_mut() {
            f.handle_timeout(now);
        }
        // The machine's deadline (`poll_timeout`, which includes the rate limits' refill instants) wakes it;
        // the select above is biased towards inputs, so under a constant stream of them its timer branch could
        // lose every time: tick here only if that deadline is overdue.
        if let Some(a) = self.active.as_mut() {
            if a.torrent.poll_timeout(now) <= now {
                a.torrent.tick(now);
            }
        }
        self.connect_more(now);
        let dht = match (&self.shared.dht, self.add.use_dht) {
            (Some(d), true) if *self.shared.dht_ready.borrow() => Some(d.clone()),
            _ => None,
        };
        if let (Some(dht), false) = (&dht, self.announced) {
            // Announce (the DHT node re-announces every 15 min); the lookup also yields peers.
            self.announced = true;
            self.forward_dht(dht.announce(self.ih, self.shared.quic_addr.port()));
            self.next_dht = now + Duration::from_secs(1);
        }
        if let (Some(dht), true) = (&dht, now >= self.next_dht && !self.complete) {
            self.forward_dht(dht.get_peers(self.ih));
            self.dht_round += 1;
            let wait = if self.peers.is_empty() {
                (1 << self.dht_round.min(3)).min(5)
            } else {
                20
            };
            self.next_dht = now + Duration::from_secs(wait);
        }
        if now >= self.next_pex {
            self.next_pex = now + Duration::from_secs(5);
            self.pex_round(now);
        }
        self.publish_status();
    }

    fn forward_dht(&self, mut rx: mpsc::UnboundedReceiver<std::net::SocketAddrV4>) {
        let ctl = self.ctl_tx.clone();
        tokio::spawn(async move {
            while let Some(p) = rx.recv().await {
                if ctl.send(Ctl::Found(SocketAddr::V4(p))).await.is_err() {
                    return;
                }
            }
        });
    }

    fn publish_status(&mut self) {
        let now = Instant::now();
        let (down, up) = self
            .active
            .as_ref()
            .map_or((0, 0), |a| (a.torrent.downloaded(), a.torrent.uploaded()));
        self.samples.push_back((now, down, up));
        while self.samples.len() > 2
            && now.saturating_duration_since(self.samples[0].0) > Duration::from_secs(3)
        {
            self.samples.pop_front();
        }
        let (t0, d0, u0) = self.samples[0];
        let dt = now.saturating_duration_since(t0).as_secs_f64();
        let rate = |a: u64, b: u64| if dt > 0.0 { (a - b) as f64 / dt } else { 0.0 };
        let mut s = Status {
            downloaded: down,
            uploaded: up,
            rate_down: rate(down, d0),
            rate_up: rate(up, u0),
            peers: self.peers.len(),
            complete: self.complete,
            failed: self.failed.clone(),
            ..Status::default()
        };
        if let Some(a) = self.active.as_ref() {
            let t = &a.torrent;
            let g = t.tracker().geometry();
            s.metadata = true;
            s.name = a.meta.name.clone();
            s.pieces = g.num_pieces();
            s.have = t.tracker().count(crate::swarm::pieces::PieceState::Have);
            s.bytes_total = g.total_len();
            s.bytes_have = (0..s.pieces)
                .filter(|p| t.tracker().have(*p))
                .map(|p| u64::from(g.piece_len(p)))
                .sum();
            s.unchoked = t.unchoked_count();
            s.unchoking_us = self
                .peers
                .keys()
                .filter_map(|k| t.peer_info(now, *k))
                .filter(|p| !p.peer_choking)
                .count();
            s.path = a.path.clone();
        }
        self.status.send_replace(s);
    }

    /// Save the resume state, close every connection, stop announcing.
    async fn shutdown(&mut self) {
        // Peers first: each learns at once that our requests and our blocks are gone and asks someone else,
        // instead of waiting on us through the final save.
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            self.remove_peer(k, true);
        }
        if let Some(a) = self.active.as_ref() {
            if let Err(e) = a.disk.flush().await {
                tracing::warn!("saving the resume state: {e}");
            }
        }
        if let Some(d) = &self.shared.dht {
            d.stop_announce(self.ih);
        }
        self.shared.unregister(&self.ih);
        self.publish_status();
    }

    async fn fail(mut self, message: String) {
        self.failed = Some(message.clone());
        self.emit(SessionEvent::Error { message });
        self.shutdown().await;
    }
}

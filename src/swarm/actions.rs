//! What the torrent machine asks of its driver ([`Action`]), what it reports ([`TorrentEvent`]), and its tuning
//! ([`TorrentConfig`]).

use std::net::SocketAddr;
use std::time::Duration;

use super::choker::ChokerConfig;
use super::picker::PickerConfig;
use super::rate::Limiter;
use super::stall::StallConfig;
use super::PeerKey;
use crate::wire::message::{BlockRef, Message};
use crate::wire::PieceData;

/// One output of [`super::torrent::Torrent::poll_action`]. The driver performs them in order: in particular the
/// `WriteBlock`s of a piece come before its `VerifyPiece`, and must be done before verifying it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Send {
        peer: PeerKey,
        msg: Message,
    },
    /// Close the connection; the machine has already forgotten the peer.
    Disconnect {
        peer: PeerKey,
        reason: DisconnectReason,
    },
    /// Read this block from storage, then call `block_read` (and `block_sent` once it is on the wire).
    ReadBlock {
        peer: PeerKey,
        block: BlockRef,
    },
    WriteBlock {
        block: BlockRef,
        data: PieceData,
    },
    /// Every block of `piece` has been written: hash it, then call `piece_verified`.
    VerifyPiece {
        piece: u32,
    },
    Event(TorrentEvent),
}

/// Why the machine drops a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// Sent data that failed verification too often, or connected from a banned address or peer id.
    Banned,
    /// A message that cannot be valid for this torrent (bad bitfield length, piece index out of range, ...).
    Protocol(&'static str),
    /// We and the peer both have everything.
    BothComplete,
    /// It unchoked us and took our requests but delivered nothing in time ([`super::stall`]); its address is
    /// refused for a while.
    Stalled,
}

/// Things the user (CLI, progress, JSON events) wants to hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TorrentEvent {
    PieceCompleted {
        piece: u32,
    },
    /// Every wanted piece is verified (emitted once).
    Complete,
    /// A piece failed its hash; its blocks are discarded and it will be fetched again.
    PieceFailed {
        piece: u32,
        from: Vec<PeerKey>,
    },
    PeerBanned {
        peer: PeerKey,
        addr: SocketAddr,
        peer_id: [u8; 20],
    },
}

/// Tuning of one torrent; defaults follow DESIGN.md §5, §6.
#[derive(Debug, Clone)]
pub struct TorrentConfig {
    pub picker: PickerConfig,
    pub choker: ChokerConfig,
    /// Request queue per peer: this many seconds of its measured rate, clamped to `[min_queue, max_queue]`.
    pub queue_secs: f64,
    pub min_queue: usize,
    pub max_queue: usize,
    /// In end-game (every missing block requested) a peer's queue is topped up to this many requests only:
    /// each one is a duplicate, and a deep queue of them (up to `max_queue`, 8 MiB) is what made leechers on
    /// loopback download up to 1.5x the file.
    pub end_game_queue: usize,
    /// A peer that unchokes us but for which the picker finds nothing may take over requests queued deeper than
    /// this many seconds (of their rate) at other peers; those are cancelled there. `None` disables.
    pub rebalance_after_secs: Option<f64>,
    /// Rolling window for choking (rates from/to each peer).
    pub rate_window: Duration,
    /// Rolling window for sizing request queues.
    pub queue_rate_window: Duration,
    /// Requests outstanding this long with no block from the peer go back to the pool (the longest timeout:
    /// `stall` adapts it to what the swarm delivers, between `stall.floor` and this).
    pub request_timeout: Duration,
    /// When a peer's requests time out and when it is dropped as stalled.
    pub stall: StallConfig,
    /// Requests from one peer we queue at most (DESIGN §4: 2,000).
    pub max_incoming_requests: usize,
    /// Blocks per peer being read or sent at once (the rest wait in our queue, so a choke drops them).
    pub upload_pipeline: u32,
    /// Failed pieces a peer may contribute to before it is banned.
    pub strikes_to_ban: u32,
    /// Upload / download budgets (bytes/s). A [`Limiter`] is a shared handle: give every torrent of a process
    /// a clone of the same one and all their peers draw from one budget.
    pub upload_limit: Option<Limiter>,
    pub download_limit: Option<Limiter>,
}

impl TorrentConfig {
    pub fn new(piece_len: u32) -> Self {
        Self {
            picker: PickerConfig::default(),
            choker: ChokerConfig::new(piece_len),
            queue_secs: 3.0,
            min_queue: 4,
            max_queue: 500,
            end_game_queue: 4,
            rebalance_after_secs: Some(0.5),
            rate_window: Duration::from_secs(20),
            queue_rate_window: Duration::from_secs(5),
            request_timeout: Duration::from_secs(20),
            stall: StallConfig::default(),
            max_incoming_requests: 2000,
            upload_pipeline: 2,
            strikes_to_ban: 3,
            upload_limit: None,
            download_limit: None,
        }
    }
}

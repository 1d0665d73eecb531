//! The library API: a [`Session`] owns one QUIC endpoint, an optional DHT node and the torrents it runs. Add a
//! torrent with [`Session::add`] (or the shorthands [`Session::seed`] / [`Session::fetch`]); each runs as its
//! own tokio task ([`super::torrent_task`]) and is observed through its [`TorrentHandle`]: a stream of
//! [`SessionEvent`]s and a [`Status`] snapshot that is always current.
//!
//! Incoming connections are accepted here and handed to the torrent their handshake names.

use crate::dht::node::Config as DhtNodeConfig;
use crate::dht::Event as DhtEvent;
use crate::metainfo::{InfoHash, Metainfo};
use crate::net::dht::{start as start_dht, DhtHandle, DhtOptions};
use crate::net::torrent_task::{self, Ctl};
use crate::net::{NetError, PeerConn, QuicConfig, Transport};
use crate::storage::StorageError;
use crate::swarm::rate::Limiter;
use crate::wire::{Handshake, Limits, PeerId};
use rand::SeedableRng;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};

/// Failures of the session API, each saying what to do.
#[derive(Debug, Error)]
pub enum SessionError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(
        "cannot bind the DHT node to {addr}: {source}; pick another --dht-listen address or port"
    )]
    DhtBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("torrent {0} is already running in this session")]
    Duplicate(InfoHash),
    #[error("the session has stopped")]
    Stopped,
}

/// How to start a session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// QUIC endpoint address (port 0 = any).
    pub listen: SocketAddr,
    /// DHT node address; `None` runs without a DHT (peers only from `--peer`, magnets and PEX).
    pub dht_listen: Option<SocketAddr>,
    /// DHT bootstrap nodes (never defaulted here: the CLI decides).
    pub bootstrap: Vec<SocketAddr>,
    pub quic: QuicConfig,
    /// Upload limit in bytes/s for the whole session: one token bucket shared by every torrent and peer.
    pub upload_limit: Option<u64>,
    /// Download limit in bytes/s for the whole session (shared likewise).
    pub download_limit: Option<u64>,
}

impl SessionConfig {
    /// Loopback defaults: any port on 127.0.0.1 for QUIC and the DHT, no bootstrap nodes.
    pub fn loopback() -> SessionConfig {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        SessionConfig {
            listen: any,
            dht_listen: Some(any),
            bootstrap: Vec::new(),
            quic: QuicConfig::default(),
            upload_limit: None,
            download_limit: None,
        }
    }
}

/// What is known of the torrent when it is added.
#[derive(Debug, Clone)]
pub enum TorrentSource {
    /// The whole metainfo: no metadata exchange needed.
    Metainfo(Box<Metainfo>),
    /// Only the infohash: the info dictionary is fetched from peers (BEP 9) and checked against it.
    InfoHash(InfoHash),
}

impl TorrentSource {
    pub fn info_hash(&self) -> InfoHash {
        match self {
            TorrentSource::Metainfo(m) => m.info_hash,
            TorrentSource::InfoHash(h) => *h,
        }
    }
}

/// A torrent to add.
#[derive(Debug, Clone)]
pub struct AddTorrent {
    pub source: TorrentSource,
    /// The directory the torrent's file (or directory) is in.
    pub dir: PathBuf,
    /// Name of that file or directory in `dir` (default: the torrent's name).
    pub data_name: Option<String>,
    /// Where the resume state and fetched metadata live (`None`: no resume state).
    pub state_dir: Option<PathBuf>,
    /// Peers to connect to directly (retried until they answer).
    pub peers: Vec<SocketAddr>,
    /// The data was just hashed (a seed from PATH): trust it without a recheck.
    pub trusted_complete: bool,
    /// Find peers and announce through the DHT (when the session has one).
    pub use_dht: bool,
}

impl AddTorrent {
    pub fn new(source: TorrentSource, dir: impl Into<PathBuf>) -> AddTorrent {
        AddTorrent {
            source,
            dir: dir.into(),
            data_name: None,
            state_dir: None,
            peers: Vec::new(),
            trusted_complete: false,
            use_dht: true,
        }
    }
}

/// A peer connection changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    Connected,
    Disconnected,
}

/// Things that happen to a torrent, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    /// The metainfo is known (given, or fetched and verified).
    Metadata {
        name: String,
        length: u64,
        piece_length: u64,
        pieces: u32,
    },
    /// The data on disk was checked: `have` pieces verified (trusted from resume state or re-hashed).
    Checked {
        have: u32,
        rechecked: u32,
    },
    Peer {
        addr: SocketAddr,
        state: PeerState,
    },
    PieceFailed {
        piece: u32,
        from: Vec<SocketAddr>,
    },
    /// Every piece is verified. Byte counts are payload moved by this run.
    Complete {
        path: PathBuf,
        downloaded: u64,
        uploaded: u64,
        seconds: f64,
    },
    /// A failure that stopped the torrent (disk full, ...).
    Error {
        message: String,
    },
}

/// A snapshot of a torrent, refreshed about four times a second.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    pub metadata: bool,
    pub name: String,
    /// Verified pieces / all pieces.
    pub have: u32,
    pub pieces: u32,
    /// Verified bytes / all bytes.
    pub bytes_have: u64,
    pub bytes_total: u64,
    /// Payload bytes moved by this run.
    pub downloaded: u64,
    pub uploaded: u64,
    /// Connected peers, peers unchoking us, peers we unchoke.
    pub peers: usize,
    pub unchoking_us: usize,
    pub unchoked: usize,
    /// Bytes/s over the last few seconds.
    pub rate_down: f64,
    pub rate_up: f64,
    pub complete: bool,
    /// Where the data is.
    pub path: PathBuf,
    /// The torrent stopped because of an error.
    pub failed: Option<String>,
}

/// One running torrent.
#[derive(Debug)]
pub struct TorrentHandle {
    pub info_hash: InfoHash,
    /// Discrete events; a consumer that falls far behind misses some (`status` is always current).
    pub events: mpsc::Receiver<SessionEvent>,
    pub status: watch::Receiver<Status>,
    ctl: mpsc::Sender<Ctl>,
}

impl TorrentHandle {
    /// Stop the torrent: save the resume state, close its connections, stop announcing.
    pub async fn stop(&self) {
        let (tx, rx) = oneshot::channel();
        if self.ctl.send(Ctl::Stop(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Wait until every piece is verified (or the torrent failed: `Err(message)`).
    pub async fn wait_complete(&mut self) -> Result<(), String> {
        let r = self
            .status
            .wait_for(|s| s.complete || s.failed.is_some())
            .await;
        match r {
            Ok(s) if s.complete => Ok(()),
            Ok(s) => Err(s.failed.clone().unwrap_or_default()),
            Err(_) => Err("the torrent task ended".into()),
        }
    }
}

pub(crate) struct Shared {
    pub transport: Transport,
    pub dht: Option<DhtHandle>,
    pub peer_id: PeerId,
    pub quic_addr: SocketAddr,
    pub torrents: Mutex<HashMap<InfoHash, mpsc::Sender<Ctl>>>,
    /// The DHT has finished its first bootstrap: lookups and announces can start (torrent tasks wait on a
    /// receiver of it, so the first lookup starts at once, not at the next housekeeping tick).
    pub dht_ready: tokio::sync::watch::Sender<bool>,
    /// The session's rate limits, cloned into every torrent (see `SessionConfig`).
    pub upload_limit: Option<Limiter>,
    pub download_limit: Option<Limiter>,
}

impl Shared {
    pub(crate) fn unregister(&self, ih: &InfoHash) {
        self.torrents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(ih);
    }
}

/// A running session (see the module docs). Dropping it does not stop torrents; call [`Session::shutdown`].
pub struct Session {
    shared: Arc<Shared>,
    dht_addr: Option<SocketAddr>,
}

impl Session {
    /// Bind the QUIC endpoint and the DHT node, start joining the DHT through `bootstrap` (in the background:
    /// torrents look up and announce once it is done), and start accepting peers. Must be called inside a
    /// tokio runtime.
    pub async fn start(cfg: SessionConfig) -> Result<Session, SessionError> {
        let transport = Transport::bind(cfg.listen, cfg.quic.clone())?;
        let quic_addr = transport.local_addr()?;
        let mut dht_addr = None;
        let dht = match cfg.dht_listen {
            None => None,
            Some(addr) => {
                let opts = DhtOptions {
                    listen: addr,
                    state: None,
                    config: DhtNodeConfig::default(),
                };
                let (h, _task) = start_dht(opts)
                    .await
                    .map_err(|source| SessionError::DhtBind { addr, source })?;
                dht_addr = Some(h.local_addr());
                Some(h)
            }
        };
        let mut rng = rand::rngs::StdRng::from_os_rng();
        let shared = Arc::new(Shared {
            transport,
            dht,
            peer_id: PeerId::generate(&mut rng),
            quic_addr,
            torrents: Mutex::new(HashMap::new()),
            dht_ready: tokio::sync::watch::Sender::new(false),
            upload_limit: cfg.upload_limit.map(|r| Limiter::new(Instant::now(), r)),
            download_limit: cfg.download_limit.map(|r| Limiter::new(Instant::now(), r)),
        });
        tokio::spawn(accept_loop(shared.clone()));
        let s = Session { shared, dht_addr };
        if let Some(h) = &s.shared.dht {
            if cfg.bootstrap.is_empty() {
                s.shared.dht_ready.send_replace(true);
            } else {
                // Torrents announce once the first bootstrap is done (or after 10 s whatever happens).
                let mut ev = h.events();
                h.bootstrap(cfg.bootstrap);
                let shared = s.shared.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(10), async {
                        loop {
                            match ev.recv().await {
                                Ok(DhtEvent::Bootstrapped { .. }) | Err(_) => return,
                                Ok(_) => {}
                            }
                        }
                    })
                    .await;
                    shared.dht_ready.send_replace(true);
                });
            }
        }
        Ok(s)
    }

    /// The bound QUIC address.
    pub fn quic_addr(&self) -> SocketAddr {
        self.shared.quic_addr
    }

    /// The bound DHT address (`None` without a DHT).
    pub fn dht_addr(&self) -> Option<SocketAddr> {
        self.dht_addr
    }

    /// The DHT node, if any.
    pub fn dht(&self) -> Option<&DhtHandle> {
        self.shared.dht.as_ref()
    }

    /// Start a torrent. With a metainfo the data under `dir` is checked first (fast when a resume state vouches
    /// for it); with only an infohash the metadata is fetched from peers first.
    pub async fn add(&self, add: AddTorrent) -> Result<TorrentHandle, SessionError> {
        let ih = add.source.info_hash();
        let (ctl, ctl_rx) = mpsc::channel(256);
        {
            let mut t = self
                .shared
                .torrents
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if t.contains_key(&ih) {
                return Err(SessionError::Duplicate(ih));
            }
            t.insert(ih, ctl.clone());
        }
        let (ev_tx, events) = mpsc::channel(1024);
        let (st_tx, status) = watch::channel(Status::default());
        torrent_task::spawn(self.shared.clone(), add, ctl.clone(), ctl_rx, ev_tx, st_tx);
        Ok(TorrentHandle {
            info_hash: ih,
            events,
            status,
            ctl,
        })
    }

    /// Seed `meta` from the data at `dir/<name>`.
    pub async fn seed(
        &self,
        meta: Metainfo,
        dir: impl Into<PathBuf>,
    ) -> Result<TorrentHandle, SessionError> {
        self.add(AddTorrent::new(
            TorrentSource::Metainfo(Box::new(meta)),
            dir,
        ))
        .await
    }

    /// Fetch the torrent `info_hash` into `dir` (metadata from peers found through the DHT or `peers`).
    pub async fn fetch(
        &self,
        info_hash: InfoHash,
        dir: impl Into<PathBuf>,
        peers: Vec<SocketAddr>,
    ) -> Result<TorrentHandle, SessionError> {
        let mut add = AddTorrent::new(TorrentSource::InfoHash(info_hash), dir);
        add.peers = peers;
        self.add(add).await
    }

    /// Stop accepting, close every connection and the DHT node.
    pub async fn shutdown(self) {
        if let Some(d) = &self.shared.dht {
            d.shutdown();
        }
        let _ =
            tokio::time::timeout(Duration::from_secs(2), self.shared.transport.shutdown()).await;
    }
}

async fn accept_loop(shared: Arc<Shared>) {
    while let Some(inc) = shared.transport.accept().await {
        let shared = shared.clone();
        tokio::spawn(async move {
            let pid = shared.peer_id;
            let lookup = |ih: &InfoHash| {
                shared
                    .torrents
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(ih)
                    .cloned()
            };
            let mut target = None;
            let res = inc
                .handshake(
                    |theirs| {
                        target = lookup(&theirs.info_hash);
                        target
                            .as_ref()
                            .map(|_| Handshake::new(theirs.info_hash, pid))
                    },
                    Limits::default(),
                )
                .await;
            match (res, target) {
                (Ok(conn), Some(ctl)) => {
                    let conn: PeerConn = conn;
                    if let Err(mpsc::error::SendError(Ctl::Conn { conn, .. })) = ctl
                        .send(Ctl::Conn {
                            conn,
                            outgoing: false,
                        })
                        .await
                    {
                        conn.close(crate::net::peer_conn::CLOSE_UNKNOWN_TORRENT, "stopped");
                    }
                }
                (Err(e), _) => tracing::debug!("incoming handshake: {e}"),
                _ => {}
            }
        });
    }
}

//! A small in-memory peer for the QUIC integration tests: it accepts and makes connections on one endpoint,
//! exchanges BEP 10 handshakes, serves `ut_metadata` from memory (optionally corrupted: a liar), gossips its
//! connections with `ut_pex`, and reports what happens as [`NodeEvent`]s. The real swarm engine is elsewhere.
#![allow(dead_code)]

use bytes::Bytes;
use qswarm::metainfo::InfoHash;
use qswarm::net::{PeerConn, QuicConfig, Transport};
use qswarm::wire::extended::{
    ExtHandshake, OUR_UT_METADATA_ID, OUR_UT_PEX_ID, UT_METADATA, UT_PEX,
};
use qswarm::wire::metadata::{serve_request, MetadataMsg};
use qswarm::wire::pex::{PexMessage, PexState};
use qswarm::wire::{Handshake, Limits, Message, PeerId};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What a node saw.
#[derive(Debug)]
pub enum NodeEvent {
    /// A connection is handshaken and the peer's BEP 10 handshake arrived.
    Ready {
        remote: SocketAddr,
        tx: mpsc::Sender<Message>,
        conn: quinn::Connection,
        ext: ExtHandshake,
    },
    /// A `ut_metadata` data or reject message.
    Metadata {
        remote: SocketAddr,
        msg: MetadataMsg,
    },
    /// Peers learned through `ut_pex`.
    Pex {
        remote: SocketAddr,
        added: Vec<SocketAddr>,
    },
    /// An incoming connection failed its handshake.
    HandshakeFailed { remote: SocketAddr, error: String },
    /// A connection ended (`error` says why, if it was an error).
    Closed {
        remote: SocketAddr,
        error: Option<String>,
    },
}

pub struct Node {
    pub transport: Transport,
    pub addr: SocketAddr,
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
    pub events: mpsc::UnboundedReceiver<NodeEvent>,
    shared: Arc<Shared>,
}

struct Shared {
    info_hash: InfoHash,
    peer_id: PeerId,
    metadata: Option<Bytes>,
    lie: bool,
    connected: Mutex<BTreeSet<SocketAddr>>,
    events: mpsc::UnboundedSender<NodeEvent>,
}

pub fn quiet_config() -> QuicConfig {
    QuicConfig {
        handshake_timeout: Duration::from_secs(5),
        ..QuicConfig::default()
    }
}

impl Node {
    /// A node on 127.0.0.1 for `info_hash`, serving `metadata` (corrupted when `lie`).
    pub fn start(
        info_hash: InfoHash,
        id: u8,
        metadata: Option<Bytes>,
        lie: bool,
        config: QuicConfig,
    ) -> Node {
        let transport = Transport::bind("127.0.0.1:0".parse().unwrap(), config).unwrap();
        let addr = transport.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            info_hash,
            peer_id: PeerId([id; 20]),
            metadata,
            lie,
            connected: Mutex::new(BTreeSet::new()),
            events: tx,
        });
        let (t, s) = (transport.clone(), shared.clone());
        tokio::spawn(async move {
            while let Some(incoming) = t.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let remote = incoming.remote();
                    let ours = Handshake::new(s.info_hash, s.peer_id);
                    match incoming
                        .handshake(
                            |h| (h.info_hash == s.info_hash).then_some(ours),
                            Limits::default(),
                        )
                        .await
                    {
                        Ok(conn) => serve(conn, s).await,
                        Err(e) => {
                            let _ = s.events.send(NodeEvent::HandshakeFailed {
                                remote,
                                error: e.to_string(),
                            });
                        }
                    }
                });
            }
        });
        Node {
            transport,
            addr,
            info_hash,
            peer_id: PeerId([id; 20]),
            events: rx,
            shared,
        }
    }

    /// Connect to `addr` (for `info_hash`, default the node's own) and serve the connection in a task.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        info_hash: Option<InfoHash>,
    ) -> Result<(), qswarm::net::NetError> {
        let hs = Handshake::new(info_hash.unwrap_or(self.info_hash), self.peer_id);
        let conn = self.transport.connect(addr, hs, Limits::default()).await?;
        tokio::spawn(serve(conn, self.shared.clone()));
        Ok(())
    }

    /// The next event, or panic after `secs`.
    pub async fn next(&mut self, secs: u64) -> NodeEvent {
        tokio::time::timeout(Duration::from_secs(secs), self.events.recv())
            .await
            .expect("timed out waiting for a node event")
            .expect("node stopped")
    }
}

async fn serve(mut conn: PeerConn, s: Arc<Shared>) {
    let remote = conn.remote;
    s.connected.lock().unwrap().insert(remote);
    let size = s.metadata.as_ref().map(|m| m.len() as u32);
    let ours = ExtHandshake::ours(size, Some(0), 500);
    let _ = conn
        .tx
        .send(Message::Extended {
            id: 0,
            payload: Bytes::from(ours.encode()),
        })
        .await;
    let mut pex = PexState::new();
    let mut theirs = ExtHandshake::default();
    let mut error = None;
    while let Some(item) = conn.rx.recv().await {
        let msg = match item {
            Ok(m) => m,
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        };
        let Message::Extended { id, payload } = msg else {
            continue;
        };
        match id {
            0 => {
                let Ok(ext) = ExtHandshake::decode(&payload) else {
                    break;
                };
                theirs = ext.clone();
                let ev = NodeEvent::Ready {
                    remote,
                    tx: conn.tx.clone(),
                    conn: conn.connection.clone(),
                    ext,
                };
                let _ = s.events.send(ev);
                if let Some(pex_id) = theirs.id_of(UT_PEX) {
                    let connected = s.connected.lock().unwrap().clone();
                    if let Some(m) = pex.poll_message(Instant::now(), &connected, Some(remote)) {
                        let _ = conn
                            .tx
                            .send(Message::Extended {
                                id: pex_id,
                                payload: Bytes::from(m.encode()),
                            })
                            .await;
                    }
                }
            }
            OUR_UT_METADATA_ID => match MetadataMsg::decode(&payload) {
                Ok(MetadataMsg::Request { piece }) => {
                    let Some(info) = &s.metadata else { continue };
                    let mut reply = serve_request(info, piece);
                    if let (true, MetadataMsg::Data { data, .. }) = (s.lie, &mut reply) {
                        let mut v = data.to_vec();
                        v[0] ^= 0x55;
                        *data = Bytes::from(v);
                    }
                    if let Some(mid) = theirs.id_of(UT_METADATA) {
                        let _ = conn
                            .tx
                            .send(Message::Extended {
                                id: mid,
                                payload: Bytes::from(reply.encode()),
                            })
                            .await;
                    }
                }
                Ok(msg) => {
                    let _ = s.events.send(NodeEvent::Metadata { remote, msg });
                }
                Err(_) => break,
            },
            OUR_UT_PEX_ID => {
                let Ok(m) = PexMessage::decode(&payload) else {
                    break;
                };
                if let Ok(added) = pex.handle_message(Instant::now(), &m) {
                    let _ = s.events.send(NodeEvent::Pex { remote, added });
                }
            }
            _ => {}
        }
    }
    s.connected.lock().unwrap().remove(&remote);
    let _ = s.events.send(NodeEvent::Closed { remote, error });
}

/// A bencoded info dictionary of roughly `pieces * 20` bytes.
pub fn sample_info(pieces: usize) -> Bytes {
    use qswarm::metainfo::bencode::OwnedValue;
    let hashes: Vec<u8> = (0..pieces * 20).map(|i| (i * 31 % 256) as u8).collect();
    let d = OwnedValue::dict([
        ("length", OwnedValue::Int(pieces as i64 * 16384)),
        ("name", OwnedValue::bytes("sample.bin")),
        ("piece length", OwnedValue::Int(16384)),
        ("pieces", OwnedValue::Bytes(hashes)),
    ]);
    Bytes::from(d.encode())
}

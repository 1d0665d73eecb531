//! One peer connection over QUIC: the BEP 3 handshake on a bidirectional control stream (opened by the
//! connecting side), then a driver — a reader task that feeds the incremental [`Decoder`] and a writer task
//! that encodes — moving [`Message`]s between the stream and tokio channels.
//!
//! Piece payloads travel on the control stream: measured on loopback (bench/transport.sh), one uni stream per
//! 16 KiB block cost throughput, and the writer sends each payload `Bytes` as its own chunk, without copying.

use crate::net::limits::ConnPermit;
use crate::net::quic::{Transport, SERVER_NAME};
use crate::net::NetError;
use crate::wire::codec::piece_header;
use crate::wire::handshake::HANDSHAKE_LEN;
use crate::wire::{encode, Decoder, Handshake, Limits, Message};
use bytes::{Bytes, BytesMut};
use std::net::SocketAddr;
use tokio::sync::mpsc;

/// Application close codes.
pub const CLOSE_DONE: u32 = 0;
pub const CLOSE_UNKNOWN_TORRENT: u32 = 1;
pub const CLOSE_PROTOCOL: u32 = 2;
pub const CLOSE_LIMIT: u32 = 3;

/// Messages buffered per direction before the producer waits.
const CHANNEL: usize = 256;
/// Messages taken from the outgoing channel into one write.
const WRITE_BATCH_MSGS: usize = 64;
/// Chunks taken from the stream per read.
const READ_CHUNKS: usize = 32;

/// A connected, handshaken peer. Send with `tx`; `rx` yields its messages and, last, the error that ended the
/// connection (if any) before it closes. Dropping the `PeerConn` closes the connection.
#[derive(Debug)]
pub struct PeerConn {
    pub remote: SocketAddr,
    /// The peer's handshake (its peer id and reserved bits).
    pub theirs: Handshake,
    pub tx: mpsc::Sender<Message>,
    pub rx: mpsc::Receiver<Result<Message, NetError>>,
    pub connection: quinn::Connection,
}

impl PeerConn {
    /// Close the connection now with `code` (see the `CLOSE_*` constants).
    pub fn close(&self, code: u32, reason: &str) {
        self.connection.close(code.into(), reason.as_bytes());
    }
}

/// A connection attempt from a remote peer, not yet accepted.
#[derive(Debug)]
pub struct IncomingPeer {
    incoming: quinn::Incoming,
    transport: Transport,
}

impl Transport {
    /// Connect to `addr` and exchange handshakes (`ours` names the torrent). `limits` bounds incoming messages.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        ours: Handshake,
        limits: Limits,
    ) -> Result<PeerConn, NetError> {
        let mut permit = self.limits.acquire().ok_or(NetError::Limit)?;
        if !self.limits.for_torrent(&mut permit, ours.info_hash) {
            return Err(NetError::Limit);
        }
        let timeout = self.config.handshake_timeout;
        let work = async {
            let conn = self.endpoint.connect(addr, SERVER_NAME)?.await?;
            let (mut send, mut recv) = conn.open_bi().await?;
            send.write_all(&ours.encode()).await?;
            let theirs = read_handshake(&mut recv).await?;
            if theirs.info_hash != ours.info_hash {
                conn.close(CLOSE_UNKNOWN_TORRENT.into(), b"wrong infohash");
                return Err(NetError::WrongInfoHash {
                    expected: ours.info_hash,
                    got: theirs.info_hash,
                });
            }
            Ok(spawn_driver(conn, send, recv, theirs, limits, permit))
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| NetError::HandshakeTimeout)?
    }

    /// The next incoming connection; `None` once the endpoint is closed. Over the global limit, connections
    /// are refused here without a handshake.
    pub async fn accept(&self) -> Option<IncomingPeer> {
        loop {
            let incoming = self.endpoint.accept().await?;
            if self.limits.global() >= self.config.max_connections {
                incoming.refuse();
                continue;
            }
            return Some(IncomingPeer {
                incoming,
                transport: self.clone(),
            });
        }
    }
}

impl IncomingPeer {
    pub fn remote(&self) -> SocketAddr {
        self.incoming.remote_address()
    }

    /// Finish the QUIC handshake, read the peer's BEP 3 handshake and answer with `choose(theirs)`: our
    /// handshake for that infohash, or `None` (we do not serve it: the connection is closed).
    pub async fn handshake(
        self,
        choose: impl FnOnce(&Handshake) -> Option<Handshake>,
        limits: Limits,
    ) -> Result<PeerConn, NetError> {
        let t = &self.transport;
        let mut permit = t.limits.acquire().ok_or(NetError::Limit)?;
        let work = async {
            let conn = self.incoming.accept()?.await?;
            let (mut send, mut recv) = conn.accept_bi().await?;
            let theirs = read_handshake(&mut recv).await?;
            let Some(ours) = choose(&theirs) else {
                conn.close(CLOSE_UNKNOWN_TORRENT.into(), b"unknown infohash");
                return Err(NetError::UnknownTorrent(theirs.info_hash));
            };
            if ours.info_hash != theirs.info_hash {
                conn.close(CLOSE_UNKNOWN_TORRENT.into(), b"unknown infohash");
                return Err(NetError::WrongInfoHash {
                    expected: ours.info_hash,
                    got: theirs.info_hash,
                });
            }
            if !t.limits.for_torrent(&mut permit, ours.info_hash) {
                conn.close(CLOSE_LIMIT.into(), b"too many connections");
                return Err(NetError::Limit);
            }
            send.write_all(&ours.encode()).await?;
            Ok(spawn_driver(conn, send, recv, theirs, limits, permit))
        };
        tokio::time::timeout(t.config.handshake_timeout, work)
            .await
            .map_err(|_| NetError::HandshakeTimeout)?
    }
}

async fn read_handshake(recv: &mut quinn::RecvStream) -> Result<Handshake, NetError> {
    let mut buf = [0u8; HANDSHAKE_LEN];
    recv.read_exact(&mut buf).await?;
    Handshake::decode(&buf)?.ok_or(NetError::Wire(crate::wire::WireError::BadHandshake {
        what: "truncated",
    }))
}

fn spawn_driver(
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    theirs: Handshake,
    limits: Limits,
    permit: ConnPermit,
) -> PeerConn {
    let (out_tx, out_rx) = mpsc::channel(CHANNEL);
    let (in_tx, in_rx) = mpsc::channel(CHANNEL);
    tokio::spawn(read_loop(
        conn.clone(),
        recv,
        Decoder::new(limits),
        in_tx,
        permit,
    ));
    tokio::spawn(write_loop(send, out_rx));
    PeerConn {
        remote: conn.remote_address(),
        theirs,
        tx: out_tx,
        rx: in_rx,
        connection: conn,
    }
}

async fn read_loop(
    conn: quinn::Connection,
    mut recv: quinn::RecvStream,
    decoder: Decoder,
    tx: mpsc::Sender<Result<Message, NetError>>,
    _permit: ConnPermit,
) {
    let mut buf = BytesMut::with_capacity(256 * 1024);
    let mut chunks: Vec<Bytes> = vec![Bytes::new(); READ_CHUNKS];
    loop {
        let read = tokio::select! {
            r = recv.read_chunks(&mut chunks) => r,
            // The owner dropped its `PeerConn`: stop, so the connection can close.
            _ = tx.closed() => return,
        };
        let n = match read {
            Ok(Some(n)) => n,
            Ok(None) => return,
            Err(e) => {
                let _ = tx.send(Err(e.into())).await;
                return;
            }
        };
        for c in chunks.iter_mut().take(n) {
            buf.extend_from_slice(c);
            *c = Bytes::new();
        }
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(msg)) => {
                    if tx.send(Ok(msg)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    conn.close(CLOSE_PROTOCOL.into(), b"protocol error");
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
            }
        }
    }
}

async fn write_loop(mut send: quinn::SendStream, mut rx: mpsc::Receiver<Message>) {
    let mut chunks: Vec<Bytes> = Vec::with_capacity(2 * WRITE_BATCH_MSGS);
    let mut small = BytesMut::new();
    let mut batch = Vec::with_capacity(WRITE_BATCH_MSGS);
    while rx.recv_many(&mut batch, WRITE_BATCH_MSGS).await > 0 {
        for m in batch.drain(..) {
            push(m, &mut chunks, &mut small);
        }
        if !small.is_empty() {
            chunks.push(small.split().freeze());
        }
        if send.write_all_chunks(&mut chunks).await.is_err() {
            return;
        }
        chunks.clear();
    }
    let _ = send.finish();
}

/// Queue `msg` for writing; piece payloads become their own chunk (no copy). Returns the bytes added.
fn push(msg: Message, chunks: &mut Vec<Bytes>, small: &mut BytesMut) -> usize {
    match msg {
        Message::Piece {
            piece,
            offset,
            data,
        } => {
            small.extend_from_slice(&piece_header(piece, offset, data.len()));
            chunks.push(small.split().freeze());
            let n = 13 + data.len();
            chunks.push(data);
            n
        }
        other => {
            let before = small.len();
            encode(&other, small);
            small.len() - before
        }
    }
}

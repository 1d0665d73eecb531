//! One peer connection over QUIC: the BEP 3 handshake on a bidirectional control stream (opened by the
//! connecting side), then a driver — a reader task that feeds the incremental [`Decoder`] and a writer task
//! that encodes — moving [`Message`]s between the stream and tokio channels.
//!
//! Piece payloads travel on the control stream: measured on loopback (bench/transport.sh), one uni stream per
//! 16 KiB block cost more CPU per GiB, and ordering on one stream keeps the driver simple. Outgoing piece
//! payloads are handed to quinn as their own chunks (no copy; copying into larger chunks measured slower);
//! incoming piece payloads stay slices of quinn's received chunks ([`ChunkDecoder`]) all the way to the disk;
//! incoming messages are handed over in batches (one per stream read), which saves a wake-up per message.

use crate::net::limits::ConnPermit;
use crate::net::quic::{Transport, SERVER_NAME};
use crate::net::NetError;
use crate::wire::codec::{piece_header, MAX_PIECE_MSG};
use crate::wire::handshake::HANDSHAKE_LEN;
use crate::wire::{encode, ChunkDecoder, Decoder, Handshake, Limits, Message, WireError};
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::net::SocketAddr;
use tokio::sync::mpsc;

/// Application close codes.
pub const CLOSE_DONE: u32 = 0;
pub const CLOSE_UNKNOWN_TORRENT: u32 = 1;
pub const CLOSE_PROTOCOL: u32 = 2;
pub const CLOSE_LIMIT: u32 = 3;

/// Outgoing messages buffered before the sender waits.
const CHANNEL: usize = 256;
/// Incoming batches (one per stream read, at most `READ_CHUNKS` datagrams' worth) buffered before reading stops.
const IN_BATCHES: usize = 4;
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
    pub rx: PeerRx,
    pub connection: quinn::Connection,
}

impl PeerConn {
    /// Close the connection now with `code` (see the `CLOSE_*` constants).
    pub fn close(&self, code: u32, reason: &str) {
        self.connection.close(code.into(), reason.as_bytes());
    }
}

/// The receiving half of a [`PeerConn`]: messages in order, then (if the connection failed) the error.
/// The driver hands messages over in batches (one per stream read), which saves a task wake-up per message.
#[derive(Debug)]
pub struct PeerRx {
    inner: mpsc::Receiver<Vec<Result<Message, NetError>>>,
    ready: VecDeque<Result<Message, NetError>>,
}

impl PeerRx {
    /// The next message; `None` once the connection has ended and everything was delivered.
    pub async fn recv(&mut self) -> Option<Result<Message, NetError>> {
        loop {
            if let Some(m) = self.ready.pop_front() {
                return Some(m);
            }
            self.ready.extend(self.inner.recv().await?);
        }
    }

    /// The next message if one is already here (never waits).
    pub fn try_recv(&mut self) -> Option<Result<Message, NetError>> {
        loop {
            if let Some(m) = self.ready.pop_front() {
                return Some(m);
            }
            self.ready.extend(self.inner.try_recv().ok()?);
        }
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
            same_torrent(&conn, &ours, &theirs, b"wrong infohash")?;
            Ok(spawn_driver(
                conn,
                send,
                recv,
                theirs,
                limits,
                permit,
                self.config.piece_streams,
            ))
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

/// Both handshakes name the same torrent; otherwise close the connection with `why` and say so.
fn same_torrent(
    conn: &quinn::Connection,
    ours: &Handshake,
    theirs: &Handshake,
    why: &[u8],
) -> Result<(), NetError> {
    if ours.info_hash == theirs.info_hash {
        return Ok(());
    }
    conn.close(CLOSE_UNKNOWN_TORRENT.into(), why);
    Err(NetError::WrongInfoHash {
        expected: ours.info_hash,
        got: theirs.info_hash,
    })
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
            same_torrent(&conn, &ours, &theirs, b"unknown infohash")?;
            if !t.limits.for_torrent(&mut permit, ours.info_hash) {
                conn.close(CLOSE_LIMIT.into(), b"too many connections");
                return Err(NetError::Limit);
            }
            send.write_all(&ours.encode()).await?;
            Ok(spawn_driver(
                conn,
                send,
                recv,
                theirs,
                limits,
                permit,
                t.config.piece_streams,
            ))
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
    piece_streams: bool,
) -> PeerConn {
    let (out_tx, out_rx) = mpsc::channel(CHANNEL);
    let (in_tx, in_rx) = mpsc::channel(IN_BATCHES);
    tokio::spawn(uni_read_loop(
        conn.clone(),
        Decoder::new(limits),
        in_tx.clone(),
    ));
    tokio::spawn(read_loop(
        conn.clone(),
        recv,
        ChunkDecoder::new(limits),
        in_tx,
        permit,
    ));
    tokio::spawn(write_loop(conn.clone(), send, out_rx, piece_streams));
    PeerConn {
        remote: conn.remote_address(),
        theirs,
        tx: out_tx,
        rx: PeerRx {
            inner: in_rx,
            ready: VecDeque::new(),
        },
        connection: conn,
    }
}

async fn read_loop(
    conn: quinn::Connection,
    mut recv: quinn::RecvStream,
    mut decoder: ChunkDecoder,
    tx: mpsc::Sender<Vec<Result<Message, NetError>>>,
    _permit: ConnPermit,
) {
    let mut chunks: Vec<Bytes> = vec![Bytes::new(); READ_CHUNKS];
    let mut msgs = Vec::new();
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
                let _ = tx.send(vec![Err(e.into())]).await;
                return;
            }
        };
        // Piece payloads stay slices of the received chunks (no copy); headers and small messages are copied
        // into the decoder's buffer.
        let failed = chunks[..n]
            .iter()
            .try_for_each(|c| decoder.push(c, &mut msgs))
            .err();
        let mut batch: Vec<_> = msgs.drain(..).map(Ok).collect();
        if let Some(e) = &failed {
            conn.close(CLOSE_PROTOCOL.into(), b"protocol error");
            batch.push(Err(e.clone().into()));
        }
        chunks.iter_mut().take(n).for_each(|c| *c = Bytes::new());
        if !batch.is_empty() && tx.send(batch).await.is_err() || failed.is_some() {
            return;
        }
    }
}

/// Piece messages that arrive on their own unidirectional streams (one message per stream, any order), read
/// one stream after another and handed over in batches like the control stream's.
async fn uni_read_loop(
    conn: quinn::Connection,
    decoder: Decoder,
    tx: mpsc::Sender<Vec<Result<Message, NetError>>>,
) {
    let mut batch = Vec::new();
    loop {
        let next = if batch.is_empty() {
            tokio::select! {
                s = conn.accept_uni() => s,
                _ = tx.closed() => return,
            }
        } else {
            match poll_once(conn.accept_uni()).await {
                Some(s) => s,
                None => {
                    if tx.send(std::mem::take(&mut batch)).await.is_err() {
                        return;
                    }
                    continue;
                }
            }
        };
        // A closed connection is reported by the control stream's reader.
        let Ok(mut stream) = next else { break };
        match read_piece_stream(&decoder, &mut stream).await {
            Ok(msg) => batch.push(Ok(msg)),
            Err(e) => {
                conn.close(CLOSE_PROTOCOL.into(), b"protocol error");
                batch.push(Err(e));
                break;
            }
        }
        if batch.len() >= WRITE_BATCH_MSGS && tx.send(std::mem::take(&mut batch)).await.is_err() {
            return;
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(batch).await;
    }
}

/// One piece message, alone on its stream.
async fn read_piece_stream(
    decoder: &Decoder,
    stream: &mut quinn::RecvStream,
) -> Result<Message, NetError> {
    let bytes = stream.read_to_end(MAX_PIECE_MSG as usize + 4).await?;
    let mut buf = BytesMut::from(Bytes::from(bytes));
    match decoder.decode(&mut buf)? {
        Some(msg @ Message::Piece { .. }) if buf.is_empty() => Ok(msg),
        _ => Err(NetError::Wire(WireError::BadExtended {
            what: "a uni stream must hold exactly one piece message",
        })),
    }
}

/// Poll `f` once: its output if it is ready now.
async fn poll_once<F: std::future::Future>(f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match f.as_mut().poll(cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

async fn write_loop(
    conn: quinn::Connection,
    mut send: quinn::SendStream,
    mut rx: mpsc::Receiver<Message>,
    piece_streams: bool,
) {
    let mut chunks: Vec<Bytes> = Vec::with_capacity(2 * WRITE_BATCH_MSGS);
    let mut small = BytesMut::new();
    let mut batch = Vec::with_capacity(WRITE_BATCH_MSGS);
    while rx.recv_many(&mut batch, WRITE_BATCH_MSGS).await > 0 {
        for m in batch.drain(..) {
            match m {
                Message::Piece {
                    piece,
                    offset,
                    data,
                } if piece_streams => {
                    // Control messages queued before this piece go first.
                    if !small.is_empty() {
                        chunks.push(small.split().freeze());
                    }
                    if !chunks.is_empty() {
                        if send.write_all_chunks(&mut chunks).await.is_err() {
                            return;
                        }
                        chunks.clear();
                    }
                    let Ok(mut s) = conn.open_uni().await else {
                        return;
                    };
                    small.extend_from_slice(&piece_header(piece, offset, data.len()));
                    let mut parts = vec![small.split().freeze()];
                    parts.extend(data.into_chunks());
                    if s.write_all_chunks(&mut parts).await.is_err() {
                        return;
                    }
                    let _ = s.finish();
                }
                m => push(m, &mut chunks, &mut small),
            }
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

/// Queue `msg` for writing; a piece payload becomes its own chunk, not copied.
fn push(msg: Message, chunks: &mut Vec<Bytes>, small: &mut BytesMut) {
    match msg {
        Message::Piece {
            piece,
            offset,
            data,
        } => {
            small.extend_from_slice(&piece_header(piece, offset, data.len()));
            chunks.push(small.split().freeze());
            chunks.extend(data.into_chunks());
        }
        other => encode(&other, small),
    }
}

//! Hostile peers for the liar tests, built from the real codec and QUIC transport: each listens on 127.0.0.1,
//! accepts `qswarm fetch`'s connections and misbehaves in one [`Mode`], recording what it did and when its
//! connections were closed (by the other side: that is how the tests see a liar disconnected or banned).

use bytes::{BufMut, Bytes, BytesMut};
use qswarm::metainfo::InfoHash;
use qswarm::net::{PeerConn, QuicConfig, Transport};
use qswarm::wire::{BlockRef, Handshake, Limits, Message, PeerId, BLOCK_SIZE};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a hostile peer lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Claims every piece, unchokes, and answers every request with corrupted data.
    Corrupt,
    /// Claims every piece, unchokes, and never answers a request.
    Silent,
    /// Claims nothing, says it is interested and sends 10,000 requests as fast as it can.
    Flood,
    /// A bitfield 64 times longer than the torrent needs (oversized message).
    OversizedBitfield,
    /// A raw frame on a piece stream with a length prefix of 2 GiB.
    HugeFrame,
    /// A raw frame with an unknown message id (0xEE) on a piece stream.
    UnknownId,
    /// A request for 1 MiB (blocks are at most 16 KiB).
    HugeRequest,
    /// `have` for a piece index far past the end of the torrent.
    HaveOutOfRange,
}

/// What a hostile peer saw and did.
#[derive(Debug, Default, Clone)]
pub struct Record {
    pub connections: u32,
    pub requests_received: u64,
    pub blocks_sent: u64,
    pub requests_sent: u64,
    /// When each connection ended, and why (as our side saw it).
    pub closed: Vec<(Instant, String)>,
}

pub struct Hostile {
    pub mode: Mode,
    pub addr: SocketAddr,
    pub record: Arc<Mutex<Record>>,
    _rt: tokio::runtime::Runtime,
}

/// The torrent a hostile peer pretends to serve.
#[derive(Clone)]
pub struct Target {
    pub info_hash: InfoHash,
    pub data: Arc<Vec<u8>>,
    pub piece_len: u32,
}

impl Target {
    fn pieces(&self) -> u32 {
        (self.data.len() as u64).div_ceil(self.piece_len as u64) as u32
    }
}

impl Hostile {
    pub fn start(mode: Mode, target: Target, id: u8) -> Hostile {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let record = Arc::new(Mutex::new(Record::default()));
        let addr = rt.block_on(async {
            let cfg = QuicConfig {
                handshake_timeout: Duration::from_secs(5),
                ..QuicConfig::default()
            };
            let t = Transport::bind("127.0.0.1:0".parse().unwrap(), cfg).unwrap();
            let addr = t.local_addr().unwrap();
            let rec = record.clone();
            tokio::spawn(async move {
                while let Some(inc) = t.accept().await {
                    let (target, rec) = (target.clone(), rec.clone());
                    tokio::spawn(async move {
                        let ih = target.info_hash;
                        let ours = Handshake::new(ih, PeerId([id; 20]));
                        let limits = Limits::for_pieces(target.pieces());
                        let Ok(conn) = inc
                            .handshake(|h| (h.info_hash == ih).then_some(ours), limits)
                            .await
                        else {
                            return;
                        };
                        rec.lock().unwrap().connections += 1;
                        let why = serve(mode, conn, &target, &rec).await;
                        rec.lock().unwrap().closed.push((Instant::now(), why));
                    });
                }
            });
            addr
        });
        Hostile {
            mode,
            addr,
            record,
            _rt: rt,
        }
    }

    pub fn record(&self) -> Record {
        self.record.lock().unwrap().clone()
    }
}

fn full_bitfield(pieces: u32) -> Bytes {
    let mut b = vec![0u8; pieces.div_ceil(8) as usize];
    for i in 0..pieces as usize {
        b[i / 8] |= 0x80 >> (i % 8);
    }
    Bytes::from(b)
}

/// Serve one connection in `mode` until the other side closes it (or 60 s pass); returns why it ended.
async fn serve(mode: Mode, mut conn: PeerConn, t: &Target, rec: &Arc<Mutex<Record>>) -> String {
    let pieces = t.pieces();
    let tx = conn.tx.clone();
    let opening: Vec<Message> = match mode {
        Mode::Corrupt | Mode::Silent => {
            vec![Message::Bitfield(full_bitfield(pieces)), Message::Unchoke]
        }
        Mode::Flood => vec![Message::HaveNone, Message::Interested],
        Mode::OversizedBitfield => vec![Message::Bitfield(Bytes::from(vec![
            0xFF;
            pieces.div_ceil(8)
                as usize
                * 64
        ]))],
        Mode::HugeRequest => vec![
            Message::HaveNone,
            Message::Interested,
            Message::Request(BlockRef {
                piece: 0,
                offset: 0,
                length: 1 << 20,
            }),
        ],
        Mode::HaveOutOfRange => vec![Message::HaveNone, Message::Have { piece: 1_000_000 }],
        Mode::HugeFrame | Mode::UnknownId => vec![Message::HaveNone],
    };
    for m in opening {
        if tx.send(m).await.is_err() {
            break;
        }
    }
    if matches!(mode, Mode::HugeFrame | Mode::UnknownId) {
        let mut raw = BytesMut::new();
        if mode == Mode::HugeFrame {
            raw.put_u32(0x8000_0000);
            raw.put_u8(7);
            raw.put_slice(&[0u8; 4096]);
        } else {
            raw.put_u32(9);
            raw.put_u8(0xEE);
            raw.put_slice(&[1u8; 8]);
        }
        if let Ok(mut s) = conn.connection.open_uni().await {
            let _ = s.write_all(&raw).await;
            let _ = s.finish();
        }
    }
    if mode == Mode::Flood {
        let tx = tx.clone();
        let piece_len = t.piece_len;
        let len = t.data.len() as u64;
        let rec = rec.clone();
        tokio::spawn(async move {
            for i in 0..10_000u64 {
                let piece = (i % pieces as u64) as u32;
                let plen = (len - piece as u64 * piece_len as u64).min(piece_len as u64) as u32;
                let offset = ((i / pieces as u64) as u32 * BLOCK_SIZE) % plen.max(1);
                let req = Message::Request(BlockRef {
                    piece,
                    offset,
                    length: BLOCK_SIZE.min(plen - offset),
                });
                if tx.send(req).await.is_err() {
                    return;
                }
                rec.lock().unwrap().requests_sent += 1;
            }
        });
    }
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let item = match tokio::time::timeout(left, conn.rx.recv()).await {
            Err(_) => return "still open after 60 s".into(),
            Ok(None) => {
                return format!(
                    "closed: {:?}",
                    conn.connection.close_reason().map(|r| r.to_string())
                )
            }
            Ok(Some(Err(e))) => return format!("closed: {e}"),
            Ok(Some(Ok(m))) => m,
        };
        if let Message::Request(b) = item {
            rec.lock().unwrap().requests_received += 1;
            if mode == Mode::Corrupt {
                let start = b.piece as usize * t.piece_len as usize + b.offset as usize;
                let Some(real) = t.data.get(start..start + b.length as usize) else {
                    continue;
                };
                let bad: Vec<u8> = real.iter().map(|x| x ^ 0xA5).collect();
                let m = Message::Piece {
                    piece: b.piece,
                    offset: b.offset,
                    data: Bytes::from(bad).into(),
                };
                if tx.send(m).await.is_err() {
                    continue;
                }
                rec.lock().unwrap().blocks_sent += 1;
            }
        }
    }
}

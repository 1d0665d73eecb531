//! Sans-IO protocol state of one peer connection: the four choke/interest flags, the phases
//! handshake → bitfield exchange → connected, the pieces the peer has, and the queue of blocks it asked us for.
//! Every protocol violation is a [`PeerError`]: close that peer.
//!
//! A request that arrives while we choke the peer is a violation unless we had unchoked it before (then it
//! may have crossed our `choke` on the wire: it is answered with a BEP 6 `reject` when the fast extension is
//! on, else ignored) — more than [`MAX_QUEUED_REQUESTS`] such requests after one choke is a violation too.

use crate::metainfo::InfoHash;
use crate::wire::codec::MAX_PIECES;
use crate::wire::{BlockRef, Handshake, Message, BLOCK_SIZE};
use bitvec::prelude::*;
use std::collections::{HashSet, VecDeque};
use thiserror::Error;

/// Most requests from one peer queued at once (DESIGN §4).
pub const MAX_QUEUED_REQUESTS: usize = 2000;

/// The sizes needed to check piece indices and block ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub total_length: u64,
    pub piece_length: u32,
}

impl Geometry {
    pub fn pieces(&self) -> u32 {
        self.total_length
            .div_ceil(u64::from(self.piece_length.max(1))) as u32
    }
    /// Length of piece `index`, `None` if out of range.
    pub fn piece_len(&self, index: u32) -> Option<u32> {
        let start = u64::from(index) * u64::from(self.piece_length);
        (start < self.total_length)
            .then(|| (self.total_length - start).min(u64::from(self.piece_length)) as u32)
    }
    /// Whether `b` is a valid block: at most 16 KiB, non-empty, inside its piece.
    pub fn contains(&self, b: &BlockRef) -> bool {
        self.piece_len(b.piece).is_some_and(|len| {
            b.length > 0 && u64::from(b.offset) + u64::from(b.length) <= u64::from(len)
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the peer's handshake.
    Handshake,
    /// Handshake done; the peer's next message may be a bitfield / have all / have none.
    BitfieldExchange,
    Connected,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PeerError {
    #[error("peer handshake is for infohash {got}, we want {expected}; close the connection")]
    WrongInfoHash { expected: InfoHash, got: InfoHash },
    #[error("peer sent a message before its handshake; close the connection")]
    NotHandshaken,
    #[error("peer sent a second handshake; close the connection")]
    DuplicateHandshake,
    #[error(
        "peer requested {0:?} while choked, without having been unchoked; close the connection"
    )]
    RequestWhileChoked(BlockRef),
    #[error("peer requested {0:?}, which is larger than 16 KiB, empty or outside the piece; close the connection")]
    RequestOutOfBounds(BlockRef),
    #[error("peer has more than {MAX_QUEUED_REQUESTS} requests queued; close the connection")]
    TooManyRequests,
    #[error("peer sent a bitfield / have all / have none other than right after the handshake; close the connection")]
    BitfieldNotFirst,
    #[error("peer bitfield has {got} bytes or spare bits set, the torrent needs {want} bytes; close the connection")]
    BadBitfield { got: usize, want: usize },
    #[error("peer announced piece {0}, which does not exist; close the connection")]
    PieceOutOfRange(u32),
    #[error("peer sent a block {0:?} outside the torrent or over 16 KiB; close the connection")]
    BlockOutOfBounds(BlockRef),
    #[error("peer sent a BEP 6 fast message without both sides enabling the fast extension; close the connection")]
    FastNotNegotiated,
    #[error(
        "peer sent an extended message without both sides enabling BEP 10; close the connection"
    )]
    ExtendedNotNegotiated,
}

/// Protocol state of one peer.
#[derive(Debug, Clone)]
pub struct PeerState {
    info_hash: InfoHash,
    our_handshake: Handshake,
    phase: Phase,
    pub am_choking: bool,
    pub am_interested: bool,
    pub peer_choking: bool,
    pub peer_interested: bool,
    fast: bool,
    extended: bool,
    geometry: Option<Geometry>,
    /// Pieces the peer has; grows on demand (bounded by [`MAX_PIECES`]) while the geometry is unknown.
    pieces: BitVec<u8, Msb0>,
    has_all: bool,
    requests: VecDeque<BlockRef>,
    ever_unchoked: bool,
    requests_since_choke: usize,
    allowed_fast: HashSet<u32>,
}

impl PeerState {
    /// `ours` is the handshake we send (its reserved bits say what we support); `geometry` is `None` until the
    /// metadata is known (magnet fetches).
    pub fn new(ours: Handshake, geometry: Option<Geometry>) -> PeerState {
        let n = geometry.map_or(0, |g| g.pieces() as usize);
        PeerState {
            info_hash: ours.info_hash,
            our_handshake: ours,
            phase: Phase::Handshake,
            am_choking: true,
            am_interested: false,
            peer_choking: true,
            peer_interested: false,
            fast: false,
            extended: false,
            geometry,
            pieces: bitvec![u8, Msb0; 0; n],
            has_all: false,
            requests: VecDeque::new(),
            ever_unchoked: false,
            requests_since_choke: 0,
            allowed_fast: HashSet::new(),
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }
    /// Both sides set the BEP 6 bit.
    pub fn fast(&self) -> bool {
        self.fast
    }
    /// Both sides set the BEP 10 bit.
    pub fn extended(&self) -> bool {
        self.extended
    }
    pub fn geometry(&self) -> Option<Geometry> {
        self.geometry
    }

    /// The peer's handshake.
    pub fn handle_handshake(&mut self, theirs: &Handshake) -> Result<(), PeerError> {
        if self.phase != Phase::Handshake {
            return Err(PeerError::DuplicateHandshake);
        }
        if theirs.info_hash != self.info_hash {
            return Err(PeerError::WrongInfoHash {
                expected: self.info_hash,
                got: theirs.info_hash,
            });
        }
        self.fast = theirs.supports_fast() && self.our_handshake.supports_fast();
        self.extended = theirs.supports_extended() && self.our_handshake.supports_extended();
        self.phase = Phase::BitfieldExchange;
        Ok(())
    }

    /// The metadata became known: size the piece set and check what the peer announced before.
    pub fn set_geometry(&mut self, g: Geometry) -> Result<(), PeerError> {
        let n = g.pieces() as usize;
        if self.pieces.len() > n {
            if let Some(first) = self.pieces[n..].first_one() {
                return Err(PeerError::PieceOutOfRange((n + first) as u32));
            }
        }
        self.pieces.resize(n, false);
        if self.has_all {
            self.pieces.fill(true);
        }
        self.geometry = Some(g);
        Ok(())
    }

    /// Whether the peer has piece `index` (as far as it told us).
    pub fn has_piece(&self, index: u32) -> bool {
        self.has_all || self.pieces.get(index as usize).is_some_and(|b| *b)
    }
    pub fn pieces(&self) -> &BitSlice<u8, Msb0> {
        &self.pieces
    }
    pub fn is_seed(&self) -> bool {
        self.has_all || (self.geometry.is_some() && !self.pieces.is_empty() && self.pieces.all())
    }

    /// Process one message from the peer. `Ok(Some(reply))` is a message to send back (a BEP 6 reject).
    pub fn handle_message(&mut self, msg: &Message) -> Result<Option<Message>, PeerError> {
        let first = match self.phase {
            Phase::Handshake => return Err(PeerError::NotHandshaken),
            Phase::BitfieldExchange => !matches!(msg, Message::KeepAlive),
            Phase::Connected => false,
        };
        if first {
            self.phase = Phase::Connected;
        }
        let need_fast = matches!(
            msg,
            Message::HaveAll | Message::HaveNone | Message::Reject(_) | Message::AllowedFast { .. }
        );
        if need_fast && !self.fast {
            return Err(PeerError::FastNotNegotiated);
        }
        match msg {
            Message::KeepAlive => {}
            Message::Choke => self.peer_choking = true,
            Message::Unchoke => self.peer_choking = false,
            Message::Interested => self.peer_interested = true,
            Message::NotInterested => self.peer_interested = false,
            Message::Have { piece } => self.set_have(*piece)?,
            Message::Bitfield(bits) => {
                if !first {
                    return Err(PeerError::BitfieldNotFirst);
                }
                self.set_bitfield(bits)?;
            }
            Message::HaveAll | Message::HaveNone => {
                if !first {
                    return Err(PeerError::BitfieldNotFirst);
                }
                self.has_all = matches!(msg, Message::HaveAll);
                self.pieces.fill(self.has_all);
            }
            Message::Request(b) => return self.handle_request(*b),
            Message::Cancel(b) => self.requests.retain(|r| r != b),
            Message::Piece {
                piece,
                offset,
                data,
            } => {
                let b = BlockRef {
                    piece: *piece,
                    offset: *offset,
                    length: data.len() as u32,
                };
                if b.length > BLOCK_SIZE || self.geometry.is_some_and(|g| !g.contains(&b)) {
                    return Err(PeerError::BlockOutOfBounds(b));
                }
            }
            Message::Reject(b) => {
                if b.length > BLOCK_SIZE || self.geometry.is_some_and(|g| !g.contains(b)) {
                    return Err(PeerError::BlockOutOfBounds(*b));
                }
            }
            Message::AllowedFast { piece } => self.check_index(*piece)?,
            Message::Extended { .. } => {
                if !self.extended {
                    return Err(PeerError::ExtendedNotNegotiated);
                }
            }
        }
        Ok(None)
    }

    fn handle_request(&mut self, b: BlockRef) -> Result<Option<Message>, PeerError> {
        let in_bounds = b.length <= BLOCK_SIZE && self.geometry.is_some_and(|g| g.contains(&b));
        if !in_bounds {
            return Err(PeerError::RequestOutOfBounds(b));
        }
        if self.am_choking && !self.allowed_fast.contains(&b.piece) {
            if !self.ever_unchoked {
                return Err(PeerError::RequestWhileChoked(b));
            }
            self.requests_since_choke += 1;
            if self.requests_since_choke > MAX_QUEUED_REQUESTS {
                return Err(PeerError::TooManyRequests);
            }
            return Ok(self.fast.then_some(Message::Reject(b)));
        }
        if self.requests.len() >= MAX_QUEUED_REQUESTS {
            return Err(PeerError::TooManyRequests);
        }
        if !self.requests.contains(&b) {
            self.requests.push_back(b);
        }
        Ok(None)
    }

    fn check_index(&self, piece: u32) -> Result<(), PeerError> {
        let max = self.geometry.map_or(MAX_PIECES, |g| g.pieces());
        if piece >= max {
            return Err(PeerError::PieceOutOfRange(piece));
        }
        Ok(())
    }

    fn set_have(&mut self, piece: u32) -> Result<(), PeerError> {
        self.check_index(piece)?;
        let i = piece as usize;
        if i >= self.pieces.len() {
            self.pieces.resize(i + 1, false);
        }
        self.pieces.set(i, true);
        Ok(())
    }

    fn set_bitfield(&mut self, bits: &[u8]) -> Result<(), PeerError> {
        let new = BitVec::<u8, Msb0>::from_slice(bits);
        match self.geometry {
            Some(g) => {
                let n = g.pieces() as usize;
                if bits.len() != n.div_ceil(8) || new[n..].any() {
                    return Err(PeerError::BadBitfield {
                        got: bits.len(),
                        want: n.div_ceil(8),
                    });
                }
                self.pieces = new;
                self.pieces.truncate(n);
            }
            None => {
                if bits.len() > (MAX_PIECES as usize).div_ceil(8) {
                    return Err(PeerError::BadBitfield {
                        got: bits.len(),
                        want: (MAX_PIECES as usize).div_ceil(8),
                    });
                }
                self.pieces = new;
            }
        }
        Ok(())
    }

    /// We choke the peer: returns the messages to send (choke, then with BEP 6 a reject for each queued request;
    /// without it the queue is silently dropped, as BEP 3 says).
    pub fn choke(&mut self) -> Vec<Message> {
        self.am_choking = true;
        self.requests_since_choke = 0;
        let dropped: Vec<BlockRef> = self.requests.drain(..).collect();
        let mut out = vec![Message::Choke];
        if self.fast {
            let keep: Vec<_> = dropped
                .iter()
                .filter(|b| self.allowed_fast.contains(&b.piece))
                .copied()
                .collect();
            out.extend(
                dropped
                    .iter()
                    .filter(|b| !keep.contains(b))
                    .map(|b| Message::Reject(*b)),
            );
            self.requests.extend(keep);
        }
        out
    }

    pub fn unchoke(&mut self) -> Message {
        self.am_choking = false;
        self.ever_unchoked = true;
        Message::Unchoke
    }

    pub fn interested(&mut self) -> Message {
        self.am_interested = true;
        Message::Interested
    }

    pub fn not_interested(&mut self) -> Message {
        self.am_interested = false;
        Message::NotInterested
    }

    /// We grant `piece` as allowed fast (BEP 6): requests for it are served while choked.
    pub fn allow_fast(&mut self, piece: u32) -> Option<Message> {
        (self.fast && self.allowed_fast.insert(piece)).then_some(Message::AllowedFast { piece })
    }

    /// The oldest request to serve next.
    pub fn pop_request(&mut self) -> Option<BlockRef> {
        self.requests.pop_front()
    }

    /// Requests the peer has queued with us.
    pub fn queued_requests(&self) -> usize {
        self.requests.len()
    }
}

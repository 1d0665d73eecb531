//! [`PieceData`]: the payload of a `piece` message as the slices of the received chunks it arrived in (no
//! copy from the transport's datagrams to the disk), or one `Bytes` for a block we read and upload.
//! [`PieceBuilder`] assembles one from chunk slices, bounded in parts: past [`MAX_PARTS`] it copies into one
//! exact-size buffer, so a peer that sends a block in many tiny pieces cannot pin many datagrams with it.

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;

/// Most slices one payload keeps; a payload that arrives in more is copied into one buffer instead.
/// (A 16 KiB block spans at most 3 datagrams of 9000 bytes, 13 of 1452.)
pub const MAX_PARTS: usize = 16;

/// A piece payload: one or more non-empty `Bytes` slices, in order. Equality compares the bytes, not how they
/// are split.
#[derive(Clone, Default)]
pub struct PieceData {
    parts: SmallVec<[Bytes; 3]>,
    len: usize,
}

impl PieceData {
    /// Total length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The slices, in order (none for an empty payload; none of them empty).
    pub fn chunks(&self) -> impl ExactSizeIterator<Item = &Bytes> + '_ {
        self.parts.iter()
    }

    /// The slices, by value.
    pub fn into_chunks(self) -> impl ExactSizeIterator<Item = Bytes> {
        self.parts.into_iter()
    }

    /// The first byte, if any.
    pub fn first(&self) -> Option<u8> {
        self.parts.first().and_then(|p| p.first().copied())
    }

    /// The payload as one slice: free when it is one already, else copied (only for whoever truly needs one).
    pub fn to_contiguous(&self) -> Bytes {
        match self.parts.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => {
                let mut b = BytesMut::with_capacity(self.len);
                many.iter().for_each(|p| b.extend_from_slice(p));
                b.freeze()
            }
        }
    }

    /// A copy of the bytes in a `Vec`.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len);
        self.parts.iter().for_each(|p| v.extend_from_slice(p));
        v
    }

    /// Append a slice (empty ones are skipped).
    fn push(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.len += b.len();
            self.parts.push(b);
        }
    }
}

impl From<Bytes> for PieceData {
    fn from(b: Bytes) -> Self {
        let mut d = PieceData::default();
        d.push(b);
        d
    }
}

impl From<Vec<u8>> for PieceData {
    fn from(v: Vec<u8>) -> Self {
        Bytes::from(v).into()
    }
}

impl PartialEq for PieceData {
    fn eq(&self, other: &Self) -> bool {
        if self.len != other.len {
            return false;
        }
        let (mut a, mut b) = (self.parts.iter(), other.parts.iter());
        let (mut x, mut y): (&[u8], &[u8]) = (&[], &[]);
        loop {
            if x.is_empty() {
                match a.next() {
                    Some(p) => x = p,
                    None => return true, // same length: `b` is exhausted too
                }
            }
            if y.is_empty() {
                match b.next() {
                    Some(p) => y = p,
                    None => return true,
                }
            }
            let n = x.len().min(y.len());
            if x[..n] != y[..n] {
                return false;
            }
            (x, y) = (&x[n..], &y[n..]);
        }
    }
}

impl Eq for PieceData {}

impl PartialEq<[u8]> for PieceData {
    fn eq(&self, other: &[u8]) -> bool {
        self.len == other.len() && {
            let mut at = 0;
            self.parts.iter().all(|p| {
                at += p.len();
                other.get(at - p.len()..at) == Some(&p[..])
            })
        }
    }
}

impl std::fmt::Debug for PieceData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PieceData")
            .field("len", &self.len)
            .field("parts", &self.parts.len())
            .finish()
    }
}

/// A payload being received: slices kept while there are at most [`MAX_PARTS`], then everything copied into
/// one buffer of the payload's size (which the caller checked against the frame limits).
#[derive(Debug)]
pub struct PieceBuilder {
    total: usize,
    state: Building,
}

#[derive(Debug)]
enum Building {
    Parts(PieceData),
    Copy(BytesMut),
}

impl PieceBuilder {
    /// A builder for a payload of exactly `total` bytes (already bounded by the message limits).
    pub fn new(total: usize) -> PieceBuilder {
        PieceBuilder {
            total,
            state: Building::Parts(PieceData::default()),
        }
    }

    /// Bytes still missing.
    pub fn missing(&self) -> usize {
        self.total - self.len()
    }

    fn len(&self) -> usize {
        match &self.state {
            Building::Parts(d) => d.len,
            Building::Copy(b) => b.len(),
        }
    }

    /// Append `b` (at most [`PieceBuilder::missing`] bytes; the caller splits chunks at the payload's end).
    pub fn push(&mut self, b: Bytes) {
        debug_assert!(b.len() <= self.missing());
        match &mut self.state {
            Building::Parts(d) if d.parts.len() < MAX_PARTS || b.is_empty() => d.push(b),
            Building::Parts(d) => {
                let mut copy = BytesMut::with_capacity(self.total);
                d.parts.iter().for_each(|p| copy.extend_from_slice(p));
                copy.extend_from_slice(&b);
                self.state = Building::Copy(copy);
            }
            Building::Copy(c) => c.extend_from_slice(&b),
        }
    }

    /// The payload (complete once `missing() == 0`).
    pub fn finish(self) -> PieceData {
        match self.state {
            Building::Parts(d) => d,
            Building::Copy(c) => c.freeze().into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(data: &[u8], cuts: &[usize]) -> PieceData {
        let whole = Bytes::copy_from_slice(data);
        let mut b = PieceBuilder::new(data.len());
        let mut at = 0;
        for &c in cuts.iter().chain(std::iter::once(&data.len())) {
            b.push(whole.slice(at..c));
            at = c;
        }
        assert_eq!(b.missing(), 0);
        b.finish()
    }

    #[test]
    fn equality_and_copies_ignore_the_split() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let one = PieceData::from(data.clone());
        let three = split(&data, &[1, 500]);
        assert_eq!(three.chunks().len(), 3);
        assert_eq!(one, three);
        assert!(three == data[..]);
        assert_eq!(three.to_contiguous(), &data[..]);
        assert_eq!(three.to_vec(), data);
        assert_eq!(three.first(), Some(0));
        let mut other = data.clone();
        other[700] ^= 1;
        assert_ne!(split(&other, &[1, 500]), three);
        assert_ne!(split(&data[..999], &[300]), three);
        assert!(PieceData::default() == [][..]);
    }

    #[test]
    fn many_tiny_parts_are_copied_into_one() {
        let data: Vec<u8> = (0..100u8).collect();
        let cuts: Vec<usize> = (1..100).collect();
        let d = split(&data, &cuts);
        assert_eq!(d.chunks().len(), 1);
        assert_eq!(d.to_vec(), data);
        let cuts: Vec<usize> = (1..MAX_PARTS).collect();
        assert_eq!(split(&data, &cuts).chunks().len(), MAX_PARTS);
    }
}

//! The BEP 9 metadata fetcher (`wire::MetadataFetcher`) against peers that lie: wrong sizes in their
//! handshakes, corrupted or short blocks, wrong `total_size`, unsolicited data, rejects, disconnects and
//! timeouts, in any order. It never panics; it completes only with the true info dictionary (SHA-1 equal to
//! the infohash); it never drops a peer that only ever told the truth.
#![no_main]
use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use qswarm::metainfo::InfoHash;
use qswarm::wire::metadata::{block_len, METADATA_BLOCK};
use qswarm::wire::{FetchEvent, MetadataFetcher};
use std::collections::HashSet;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

#[derive(Arbitrary, Debug)]
enum Op {
    /// A peer's extension handshake: the true size, or a made-up one.
    AddPeer {
        peer: u8,
        lie: Option<u16>,
    },
    /// Ask the fetcher for the next request.
    Poll,
    /// Answer the `pick`-th outstanding request: truthfully, or with flipped bytes / a wrong total / a short block.
    Answer {
        pick: u8,
        flip: Option<u16>,
        wrong_total: bool,
        short: bool,
    },
    /// Data nobody asked for.
    Unsolicited {
        peer: u8,
        piece: u8,
        len: u16,
    },
    Reject {
        pick: u8,
    },
    Remove {
        peer: u8,
    },
    Advance {
        secs: u8,
    },
}

static EPOCH: OnceLock<Instant> = OnceLock::new();

fuzz_target!(|input: (u8, Vec<Op>)| {
    let (len_sel, ops) = input;
    // The true info dictionary: 1 to 4 blocks, the last one partial.
    let size = METADATA_BLOCK as usize * (usize::from(len_sel % 4)) + 1 + usize::from(len_sel) * 7;
    let truth: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    let info_hash = InfoHash::of(&truth);
    let mut f: MetadataFetcher<u8> = MetadataFetcher::new(info_hash);
    let mut now = *EPOCH.get_or_init(Instant::now);
    let mut requests: Vec<(u8, u32)> = Vec::new();
    let mut liars: HashSet<u8> = HashSet::new();
    for op in ops.into_iter().take(300) {
        match op {
            Op::AddPeer { peer, lie } => match lie {
                Some(l) if u32::from(l) + 1 != size as u32 => {
                    liars.insert(peer);
                    f.add_peer(peer, u32::from(l) + 1);
                }
                _ => f.add_peer(peer, size as u32),
            },
            Op::Poll => {
                if let Some((peer, piece)) = f.poll_request(now) {
                    requests.push((peer, piece));
                }
            }
            Op::Answer {
                pick,
                flip,
                wrong_total,
                short,
            } => {
                if requests.is_empty() {
                    continue;
                }
                let (peer, piece) = requests.remove(usize::from(pick) % requests.len());
                let Some(len) = block_len(size as u32, piece) else {
                    // A piece past the true end: only a peer that lied about the size is asked for it.
                    liars.insert(peer);
                    f.handle_data(&peer, piece, size as u32, Bytes::from_static(b"x"));
                    continue;
                };
                let start = piece as usize * METADATA_BLOCK as usize;
                let mut data = truth[start..start + len as usize].to_vec();
                let mut total = size as u32;
                if let Some(at) = flip {
                    let i = usize::from(at) % data.len();
                    data[i] ^= 0x40;
                    liars.insert(peer);
                }
                if wrong_total {
                    total += 1;
                    liars.insert(peer);
                }
                if short && !data.is_empty() {
                    data.pop();
                    liars.insert(peer);
                }
                f.handle_data(&peer, piece, total, Bytes::from(data));
            }
            Op::Unsolicited { peer, piece, len } => {
                // If that block was in fact asked of this peer, this garbage is its (lying) answer.
                liars.insert(peer);
                let data =
                    Bytes::from(vec![0xAB; usize::from(len) % (METADATA_BLOCK as usize + 2)]);
                f.handle_data(&peer, u32::from(piece), size as u32, data);
            }
            Op::Reject { pick } => {
                if !requests.is_empty() {
                    let (peer, piece) = requests.remove(usize::from(pick) % requests.len());
                    f.handle_reject(now, &peer, piece);
                }
            }
            Op::Remove { peer } => {
                f.remove_peer(&peer);
                requests.retain(|(p, _)| *p != peer);
            }
            Op::Advance { secs } => {
                now += Duration::from_secs(u64::from(secs % 30));
                f.handle_timeout(now);
            }
        }
        while let Some(ev) = f.poll_event() {
            match ev {
                FetchEvent::Complete(bytes) => {
                    assert_eq!(
                        &bytes[..],
                        &truth[..],
                        "completed with the wrong info dictionary"
                    );
                    assert!(f.is_done());
                }
                FetchEvent::Drop { peer, reason } => {
                    assert!(
                        liars.contains(&peer),
                        "honest peer {peer} dropped ({reason:?})"
                    );
                }
            }
        }
    }
});

//! Property tests of the metainfo parser: arbitrary bytes and mutated valid torrents never panic, and every
//! valid generated torrent round-trips (build -> parse -> same fields -> re-serialize -> same infohash). Magnet
//! links round-trip too.

use proptest::prelude::*;
use qswarm::metainfo::create::{info_bytes, torrent_bytes, Layout};
use qswarm::metainfo::{InfoHash, Magnet, Metainfo};

fn component() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 _.é-]{1,12}".prop_filter("not . or ..", |s| s != "." && s != "..")
}

/// A name, a layout with distinct paths (no file also used as a directory), a piece length, piece hashes.
fn torrent_parts() -> impl Strategy<Value = (String, Layout, u64, Vec<[u8; 20]>)> {
    let single = (0u64..200_000).prop_map(|l| Layout::SingleFile { length: l + 1 });
    let multi = proptest::collection::btree_map(
        proptest::collection::vec(component(), 1..4),
        0u64..100_000,
        1..8,
    )
    .prop_filter("no file is also a directory", |m| {
        m.keys()
            .all(|p| (1..p.len()).all(|n| !m.contains_key(&p[..n])))
    })
    .prop_filter("not empty", |m| m.values().sum::<u64>() > 0)
    .prop_map(|m| Layout::MultiFile {
        files: m.into_iter().collect(),
    });
    (
        component(),
        prop_oneof![single, multi],
        14u32..20,
        any::<u64>(),
    )
        .prop_map(|(name, layout, log2, seed)| {
            let pl = 1u64 << log2;
            let n = layout.total_length().unwrap().div_ceil(pl);
            let pieces = (0..n)
                .map(|i| *InfoHash::of(&(seed ^ i).to_le_bytes()).as_bytes())
                .collect();
            (name, layout, pl, pieces)
        })
}

fn build(name: &str, layout: &Layout, pl: u64, pieces: &[[u8; 20]], private: bool) -> Vec<u8> {
    let info = info_bytes(name, layout, pl, pieces, private).unwrap();
    torrent_bytes(&info, Some("comment"), Some("qswarm test"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Metainfo::from_bytes(&bytes);
        let _ = Metainfo::from_info_bytes(&bytes);
    }

    #[test]
    fn mutated_torrents_never_panic(
        (name, layout, pl, pieces) in torrent_parts(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = build(&name, &layout, pl, &pieces, false);
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        let _ = Metainfo::from_bytes(&bytes);
        let _ = Metainfo::from_bytes(&bytes[..cut.index(bytes.len())]);
    }

    #[test]
    fn valid_torrents_round_trip((name, layout, pl, pieces) in torrent_parts(), private in any::<bool>()) {
        let bytes = build(&name, &layout, pl, &pieces, private);
        let m = Metainfo::from_bytes(&bytes).unwrap();
        prop_assert_eq!(&m.name, &name);
        prop_assert_eq!(m.piece_length, pl);
        prop_assert_eq!(&m.pieces, &pieces);
        prop_assert_eq!(m.total_length, layout.total_length().unwrap());
        prop_assert_eq!(m.private, private);
        let files: Vec<(Vec<String>, u64)> = m.files.iter().map(|f| (f.path.clone(), f.length)).collect();
        match &layout {
            Layout::SingleFile { length } => {
                prop_assert!(!m.multi_file);
                prop_assert_eq!(files, vec![(vec![name.clone()], *length)]);
            }
            Layout::MultiFile { files: want } => {
                prop_assert!(m.multi_file);
                prop_assert_eq!(&files, want);
            }
        }
        let again = Metainfo::from_bytes(&m.to_torrent_bytes()).unwrap();
        prop_assert_eq!(again, m.clone());
        let magnet: Magnet = m.magnet().to_string().parse().unwrap();
        prop_assert_eq!(magnet.info_hash, m.info_hash);
        prop_assert_eq!(magnet.name.as_deref(), Some(name.as_str()));
    }

    #[test]
    fn magnets_round_trip(hash in any::<[u8; 20]>(), name in proptest::option::of(".{0,40}"),
                          ports in proptest::collection::vec(any::<u16>(), 0..4)) {
        let m = Magnet {
            info_hash: InfoHash(hash),
            name,
            peers: ports.iter().map(|p| format!("127.0.0.1:{p}")).collect(),
        };
        prop_assert_eq!(m.to_string().parse::<Magnet>().unwrap(), m);
    }

    #[test]
    fn magnet_parser_never_panics(s in ".{0,200}") {
        let _ = s.parse::<Magnet>();
        let _ = format!("magnet:?{s}").parse::<Magnet>();
    }
}

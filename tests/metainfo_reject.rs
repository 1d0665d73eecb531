//! Every rejection of DESIGN.md §3, on crafted torrents: each gives its own typed error (never a panic), and the
//! tolerated extras (unknown keys, trackers, `private`, `name.utf-8`) are accepted with the infohash over the raw
//! bytes.

use qswarm::metainfo::bencode::OwnedValue as V;
use qswarm::metainfo::torrent::{MAX_METADATA_SIZE, MAX_TORRENT_FILE_SIZE};
use qswarm::metainfo::{InfoHash, Metainfo, MetainfoError as E};
use std::collections::BTreeMap;

const PL: i64 = 16384;

fn file(path: &[&str], len: i64) -> V {
    V::dict([
        ("length", V::Int(len)),
        ("path", V::List(path.iter().map(V::bytes).collect())),
    ])
}

/// A valid multi-file info dict (two files, 2 pieces) as a mutable map.
fn multi() -> BTreeMap<Vec<u8>, V> {
    let mut m = BTreeMap::new();
    m.insert(b"name".to_vec(), V::bytes("top"));
    m.insert(b"piece length".to_vec(), V::Int(PL));
    m.insert(b"pieces".to_vec(), V::Bytes(vec![7; 40]));
    m.insert(
        b"files".to_vec(),
        V::List(vec![file(&["a"], 10000), file(&["d", "b"], 10000)]),
    );
    m
}

fn single() -> BTreeMap<Vec<u8>, V> {
    let mut m = multi();
    m.remove(&b"files"[..]);
    m.insert(b"length".to_vec(), V::Int(20000));
    m
}

fn torrent(info: BTreeMap<Vec<u8>, V>) -> Vec<u8> {
    V::dict([("info", V::Dict(info))]).encode()
}

fn parse(info: BTreeMap<Vec<u8>, V>) -> Result<Metainfo, E> {
    Metainfo::from_bytes(&torrent(info))
}

fn with(mut info: BTreeMap<Vec<u8>, V>, key: &str, v: V) -> BTreeMap<Vec<u8>, V> {
    info.insert(key.as_bytes().to_vec(), v);
    info
}

#[test]
fn valid_baselines_parse() {
    let m = parse(multi()).unwrap();
    assert_eq!(m.files.len(), 2);
    assert_eq!(m.total_length, 20000);
    assert!(m.multi_file);
    let s = parse(single()).unwrap();
    assert!(!s.multi_file);
    assert_eq!(s.files[0].path, vec!["top".to_string()]);
}

#[test]
fn bad_piece_lengths() {
    for pl in [0, -16384, 1000, 8192, 16385, 3 * 16384, 1 << 40] {
        assert_eq!(
            parse(with(single(), "piece length", V::Int(pl))),
            Err(E::BadPieceLength(pl)),
            "{pl}"
        );
    }
    assert!(matches!(
        parse(with(single(), "piece length", V::bytes("16384"))),
        Err(E::WrongType { .. })
    ));
}

#[test]
fn pieces_mismatch() {
    assert_eq!(
        parse(with(single(), "pieces", V::Bytes(vec![0; 39]))),
        Err(E::PiecesNotMultipleOf20(39))
    );
    assert!(matches!(
        parse(with(single(), "pieces", V::Bytes(vec![0; 60]))),
        Err(E::PieceCountMismatch { .. })
    ));
    assert!(matches!(
        parse(with(single(), "pieces", V::Bytes(vec![0; 20]))),
        Err(E::PieceCountMismatch { .. })
    ));
    assert!(matches!(
        parse(with(single(), "pieces", V::Bytes(vec![]))),
        Err(E::PieceCountMismatch { .. })
    ));
}

#[test]
fn negative_and_overflowing_lengths() {
    assert_eq!(
        parse(with(single(), "length", V::Int(-1))),
        Err(E::NegativeLength(-1))
    );
    let neg = with(multi(), "files", V::List(vec![file(&["a"], -5)]));
    assert_eq!(parse(neg), Err(E::NegativeLength(-5)));
    let over = with(
        multi(),
        "files",
        V::List(vec![file(&["a"], i64::MAX), file(&["b"], i64::MAX)]),
    );
    assert_eq!(parse(over), Err(E::LengthOverflow));
    let over = with(
        multi(),
        "files",
        V::List(vec![file(&["a"], i64::MAX), file(&["b"], 1)]),
    );
    assert_eq!(parse(over), Err(E::LengthOverflow));
    assert_eq!(
        parse(with(
            with(single(), "length", V::Int(0)),
            "pieces",
            V::Bytes(vec![])
        )),
        Err(E::Empty)
    );
}

#[test]
fn unsafe_paths() {
    for bad in [
        &[".."][..],
        &["a", "..", "b"],
        &["."],
        &[""],
        &["a", ""],
        &["/etc"],
        &["a/b"],
        &["..\\x"],
        &["a\0b"],
        &[],
    ] {
        let info = with(
            multi(),
            "files",
            V::List(vec![file(bad, 10000), file(&["ok"], 10000)]),
        );
        assert!(matches!(parse(info), Err(E::BadPath { .. })), "{bad:?}");
    }
    for bad in ["", ".", "..", "a/b", "/abs"] {
        assert!(
            matches!(
                parse(with(single(), "name", V::bytes(bad))),
                Err(E::BadName { .. })
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn duplicate_and_conflicting_paths() {
    let dup = with(
        multi(),
        "files",
        V::List(vec![file(&["d", "b"], 10000), file(&["d", "b"], 10000)]),
    );
    assert_eq!(parse(dup), Err(E::DuplicatePath("d/b".into())));
    let conflict = with(
        multi(),
        "files",
        V::List(vec![file(&["d"], 10000), file(&["d", "b"], 10000)]),
    );
    assert_eq!(parse(conflict), Err(E::PathConflict("d".into())));
}

#[test]
fn structural_errors() {
    assert!(matches!(Metainfo::from_bytes(b""), Err(E::Bencode(_))));
    assert!(matches!(
        Metainfo::from_bytes(b"not bencode at all"),
        Err(E::Bencode(_))
    ));
    assert_eq!(Metainfo::from_bytes(b"li1ee"), Err(E::NotADict));
    assert_eq!(Metainfo::from_bytes(b"de"), Err(E::Missing("info")));
    let full = torrent(multi());
    for cut in [1, full.len() / 2, full.len() - 1] {
        assert!(
            matches!(Metainfo::from_bytes(&full[..cut]), Err(E::Bencode(_))),
            "truncated at {cut}"
        );
    }
    let mut both = multi();
    both.insert(b"length".to_vec(), V::Int(1));
    assert_eq!(parse(both), Err(E::BothLengthAndFiles));
    let mut neither = single();
    neither.remove(&b"length"[..]);
    assert_eq!(parse(neither), Err(E::Missing("length or files")));
    assert_eq!(
        parse(with(multi(), "files", V::List(vec![]))),
        Err(E::NoFiles)
    );
    let mut v2 = single();
    v2.remove(&b"pieces"[..]);
    v2.insert(b"file tree".to_vec(), V::dict::<&str>([]));
    assert_eq!(parse(v2), Err(E::V2Only));
    assert_eq!(
        parse(with(single(), "name", V::Bytes(vec![0xff, 0xfe]))),
        Err(E::NotUtf8("name"))
    );
}

#[test]
fn oversized_metadata() {
    let big = vec![0u8; MAX_TORRENT_FILE_SIZE + 1];
    assert!(matches!(
        Metainfo::from_bytes(&big),
        Err(E::TooLarge { .. })
    ));
    let info = with(
        single(),
        "x-padding",
        V::Bytes(vec![b'x'; MAX_METADATA_SIZE]),
    );
    assert!(matches!(parse(info), Err(E::TooLarge { .. })));
    assert!(matches!(
        Metainfo::from_info_bytes(&vec![b'x'; MAX_METADATA_SIZE + 1]),
        Err(E::TooLarge { .. })
    ));
}

#[test]
fn tolerates_what_tools_write() {
    let mut info = multi();
    info.insert(b"private".to_vec(), V::Int(1));
    info.insert(b"name.utf-8".to_vec(), V::bytes("tôp"));
    info.insert(b"x-unknown".to_vec(), V::List(vec![V::Int(1)]));
    let mut top = BTreeMap::new();
    top.insert(b"announce".to_vec(), V::bytes("http://127.0.0.1/announce"));
    top.insert(
        b"announce-list".to_vec(),
        V::List(vec![V::List(vec![V::bytes("udp://127.0.0.1:1")])]),
    );
    top.insert(b"url-list".to_vec(), V::bytes("http://127.0.0.1/"));
    top.insert(b"comment".to_vec(), V::bytes("hello"));
    top.insert(b"creation date".to_vec(), V::Int(1_700_000_000));
    top.insert(b"info".to_vec(), V::Dict(info.clone()));
    let bytes = V::Dict(top).encode();
    let m = Metainfo::from_bytes(&bytes).unwrap();
    assert!(m.private);
    assert_eq!(m.name, "tôp");
    assert_eq!(m.comment.as_deref(), Some("hello"));
    let raw = V::Dict(info).encode();
    assert_eq!(m.raw_info, raw);
    assert_eq!(m.info_hash, InfoHash::of(&raw));
    // The bare info dictionary (BEP 9) gives the same torrent.
    assert_eq!(
        Metainfo::from_info_bytes(&raw).unwrap().info_hash,
        m.info_hash
    );
}

#[test]
fn infohash_is_over_the_raw_bytes_not_a_re_encoding() {
    // Keys out of canonical order: a re-encoding would sort them and change the hash.
    let info = b"d4:name3:top6:lengthi20000e12:piece lengthi16384e6:pieces40:xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxe";
    let mut bytes = b"d4:info".to_vec();
    bytes.extend_from_slice(info);
    bytes.push(b'e');
    let m = Metainfo::from_bytes(&bytes).unwrap();
    assert_eq!(m.info_hash, InfoHash::of(info));
    assert_eq!(m.raw_info, info.to_vec());
}

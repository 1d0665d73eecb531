//! `.torrent` / info-dictionary parser (`Metainfo::from_bytes`, `from_info_bytes`): never panics; what it
//! accepts is self-consistent (infohash = SHA-1 of the raw info bytes, piece count matches the total length,
//! file lengths add up, every path component is safe) and survives `to_torrent_bytes` → `from_bytes` unchanged,
//! and its magnet link parses back to the same magnet.
#![no_main]
use libfuzzer_sys::fuzz_target;
use qswarm::metainfo::torrent::check_component;
use qswarm::metainfo::{InfoHash, Magnet, Metainfo};

fn invariants(m: &Metainfo) {
    assert_eq!(InfoHash::of(&m.raw_info), m.info_hash);
    assert!(m.piece_length.is_power_of_two());
    assert!(m.total_length > 0);
    assert_eq!(
        m.pieces.len() as u64,
        m.total_length.div_ceil(m.piece_length)
    );
    assert_eq!(
        m.files.iter().map(|f| f.length).sum::<u64>(),
        m.total_length
    );
    assert!(check_component(&m.name).is_ok());
    for f in &m.files {
        assert!(!f.path.is_empty());
        for c in &f.path {
            assert!(
                check_component(c).is_ok(),
                "unsafe component {c:?} accepted"
            );
        }
    }
    let last = m.piece_count() - 1;
    let last_size = m.piece_size(last).expect("last piece has a size");
    assert!(last_size > 0 && last_size <= m.piece_length);
    assert_eq!(m.piece_size(last + 1), None);
    let magnet = m.magnet();
    let parsed: Magnet = magnet.to_string().parse().expect("our magnet link parses");
    assert_eq!(parsed, magnet);
}

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Metainfo::from_bytes(data) {
        invariants(&m);
        let again = Metainfo::from_bytes(&m.to_torrent_bytes()).expect("re-encoded torrent parses");
        assert_eq!(again, m);
        let bare =
            Metainfo::from_info_bytes(&m.raw_info).expect("its info dictionary parses alone");
        assert_eq!(bare.info_hash, m.info_hash);
        assert_eq!(bare.files, m.files);
    }
    if let Ok(m) = Metainfo::from_info_bytes(data) {
        invariants(&m);
        assert_eq!(m.raw_info, data);
    }
});

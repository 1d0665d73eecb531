//! Magnet link parser: never panics on any string; an accepted link formats to a link that parses to the
//! same magnet (infohash, display name, peers).
#![no_main]
use libfuzzer_sys::fuzz_target;
use qswarm::metainfo::Magnet;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(m) = s.parse::<Magnet>() {
        let text = m.to_string();
        let again: Magnet = text
            .parse()
            .unwrap_or_else(|e| panic!("{text:?} does not parse: {e}"));
        assert_eq!(again, m);
    }
});

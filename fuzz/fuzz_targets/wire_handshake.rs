//! BEP 3 handshake decoder: never panics; a decoded handshake encodes back to exactly the 68 bytes read; fed
//! byte by byte, every prefix of an accepted handshake is "need more" (never an error), and the first byte
//! that makes a prefix wrong is an error at once.
#![no_main]
use libfuzzer_sys::fuzz_target;
use qswarm::wire::Handshake;

fuzz_target!(|data: &[u8]| {
    let full = Handshake::decode(data);
    if let Ok(Some(h)) = &full {
        assert_eq!(&h.encode()[..], &data[..68]);
        for n in 0..68 {
            assert!(
                matches!(Handshake::decode(&data[..n]), Ok(None)),
                "prefix {n}"
            );
        }
    }
    if let Ok(None) = &full {
        assert!(data.len() < 68);
    }
    // Errors are sticky: once a prefix is an error, every longer prefix is too.
    let mut failed = false;
    for n in 0..=data.len().min(80) {
        let r = Handshake::decode(&data[..n]);
        if failed {
            assert!(
                r.is_err(),
                "prefix {n} accepted after a shorter prefix failed"
            );
        }
        failed = r.is_err();
    }
});

//! BEP 10 extension handshake, BEP 9 ut_metadata and BEP 11 ut_pex decoders: never panic; what they accept
//! stays within its bounds and re-encodes to something that decodes to the same value.
#![no_main]
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use qswarm::wire::extended::{MAX_CLIENT_NAME, MAX_EXTENSIONS};
use qswarm::wire::metadata::METADATA_BLOCK;
use qswarm::wire::pex::MAX_PEX_PEERS;
use qswarm::wire::{ExtHandshake, MetadataMsg, PexMessage};

fuzz_target!(|data: &[u8]| {
    let Some((&which, payload)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => {
            if let Ok(h) = ExtHandshake::decode(payload) {
                assert!(h.m.len() <= MAX_EXTENSIONS);
                assert!(h.m.values().all(|&id| id != 0));
                assert!(h
                    .metadata_size
                    .is_none_or(|s| s > 0 && s <= 16 * 1024 * 1024));
                let again = ExtHandshake::decode(&h.encode()).expect("our handshake decodes");
                assert_eq!(again.m, h.m);
                assert_eq!(again.metadata_size, h.metadata_size);
                assert_eq!(again.reqq, h.reqq);
                assert_eq!(again.p, h.p);
                // `v` is kept lossily (invalid UTF-8 becomes U+FFFD), so it may grow past the bound on re-encoding.
                if h.v.as_ref().is_some_and(|v| v.len() <= MAX_CLIENT_NAME) {
                    assert_eq!(again.v, h.v);
                }
            }
        }
        1 => {
            let payload = Bytes::copy_from_slice(payload);
            if let Ok(m) = MetadataMsg::decode(&payload) {
                if let MetadataMsg::Data {
                    data, total_size, ..
                } = &m
                {
                    assert!(data.len() <= METADATA_BLOCK as usize);
                    assert!(*total_size > 0);
                }
                let enc = Bytes::from(m.encode());
                assert_eq!(MetadataMsg::decode(&enc).expect("our message decodes"), m);
            }
        }
        _ => {
            if let Ok(p) = PexMessage::decode(payload) {
                assert!(p.added.len() <= MAX_PEX_PEERS && p.dropped.len() <= MAX_PEX_PEERS);
                assert!(p.added.iter().chain(&p.dropped).all(|a| a.port() != 0));
                assert_eq!(
                    PexMessage::decode(&p.encode()).expect("our message decodes"),
                    p
                );
            }
        }
    }
});

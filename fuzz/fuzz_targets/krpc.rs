//! KRPC codec (BEP 5): never panics; a decoded message re-encodes to a datagram that decodes to the same
//! message; a malformed query's error reply is itself a valid KRPC error.
#![no_main]
use libfuzzer_sys::fuzz_target;
use qswarm::dht::krpc::{Body, Message, MAX_PACKET, MAX_TID_LEN, MAX_VALUES};

fuzz_target!(|data: &[u8]| {
    match Message::decode(data) {
        Ok(m) => {
            assert!(m.tid.len() <= MAX_TID_LEN);
            if let Body::Response(r) = &m.body {
                assert!(r.values.len() <= MAX_VALUES);
            }
            let enc = m.encode();
            // Re-encoding adds at most our `v` key; the node never echoes a received message anyway.
            assert!(
                enc.len() <= MAX_PACKET + 16,
                "re-encoded to {} bytes",
                enc.len()
            );
            let again = Message::decode(&enc).unwrap_or_else(|e| panic!("our encoding fails: {e}"));
            match (&again.body, &m.body) {
                // Error text is kept lossily and cut at 200 bytes: compare codes only past that.
                (
                    Body::Error {
                        code: a,
                        message: ma,
                    },
                    Body::Error {
                        code: b,
                        message: mb,
                    },
                ) => {
                    assert_eq!(a, b);
                    assert!(ma.len() <= mb.len());
                }
                _ => assert_eq!(again, m),
            }
        }
        Err(e) => {
            if let Some(reply) = e.reply() {
                let enc = reply.encode();
                let back = Message::decode(&enc).expect("our error reply decodes");
                assert!(matches!(back.body, Body::Error { .. }));
                assert_eq!(back.tid, reply.tid);
            }
        }
    }
});

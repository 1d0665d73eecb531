//! Bencode parser: never panics on any input; what it accepts re-encodes (canonically) to bytes that decode to
//! the same value; each dictionary entry's raw span decodes to that entry's value; an input whose dictionaries
//! have strictly sorted keys is canonical, so re-encoding gives back exactly the bytes that were read.
#![no_main]
use libfuzzer_sys::fuzz_target;
use qswarm::metainfo::bencode::{decode, decode_prefix, Value};

fn check(v: &Value<'_>) -> bool {
    // Returns whether `v` is canonical (all dictionaries have strictly increasing keys).
    match v {
        Value::Int(_) | Value::Bytes(_) => true,
        Value::List(items) => items.iter().fold(true, |ok, i| check(i) && ok),
        Value::Dict(d) => {
            let mut sorted = true;
            for (i, e) in d.entries().iter().enumerate() {
                let from_raw =
                    decode(e.raw).expect("a dict entry's raw span is one bencoded value");
                assert_eq!(&from_raw, &e.value, "raw span decodes to the entry's value");
                assert_eq!(d.get(e.key), Some(&e.value));
                if i > 0 && d.entries()[i - 1].key >= e.key {
                    sorted = false;
                }
                sorted &= check(&e.value);
            }
            sorted
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let whole = decode(data);
    match decode_prefix(data) {
        Ok((v, used)) => {
            assert!(used > 0 && used <= data.len());
            assert_eq!(whole.is_ok(), used == data.len());
            let canonical = check(&v);
            let owned = v.to_owned_value();
            let enc = owned.encode();
            let again = decode(&enc).expect("our own encoding decodes");
            assert_eq!(again.to_owned_value(), owned, "decode(encode(v)) == v");
            if canonical {
                assert_eq!(
                    &enc[..],
                    &data[..used],
                    "canonical input re-encodes byte-identically"
                );
            }
        }
        Err(_) => assert!(whole.is_err()),
    }
});

//! Bencode (BEP 3) for untrusted input: a zero-copy parser that keeps the raw byte span of every dictionary
//! value (the infohash is SHA-1 over the exact `info` span, never a re-encoding), and an owned value type that
//! encodes canonically (dictionary keys sorted). Shared by the metainfo, wire (BEP 9/10/11) and DHT (KRPC) codecs.
//!
//! Bounds: nesting depth is capped at [`MAX_DEPTH`]; a string length is checked against the remaining input
//! before anything is sliced, so a hostile length prefix never allocates.

use std::collections::{BTreeMap, HashSet};
use thiserror::Error;

/// Deepest nesting of lists/dicts accepted (protects the stack from `llllll...`).
pub const MAX_DEPTH: usize = 64;

/// Why bytes are not valid bencode. `offset` is where in the input the problem was found.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BencodeError {
    #[error("bencode ends early at byte {offset}: the data is truncated")]
    Truncated { offset: usize },
    #[error("unexpected byte {byte:#04x} at byte {offset}: not bencode")]
    Unexpected { offset: usize, byte: u8 },
    #[error("bad integer at byte {offset} (leading zero, -0, empty or out of range)")]
    BadInt { offset: usize },
    #[error("string length at byte {offset} is larger than the rest of the data")]
    BadLength { offset: usize },
    #[error("nesting deeper than {MAX_DEPTH} at byte {offset}")]
    TooDeep { offset: usize },
    #[error("duplicate dictionary key at byte {offset}")]
    DuplicateKey { offset: usize },
    #[error("dictionary key at byte {offset} is not a string")]
    KeyNotString { offset: usize },
    #[error("{count} trailing bytes after the bencoded value")]
    Trailing { count: usize },
}

/// A parsed bencode value borrowing from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    Int(i64),
    Bytes(&'a [u8]),
    List(Vec<Value<'a>>),
    Dict(Dict<'a>),
}

/// A dictionary in input order; each entry keeps the raw bytes of its value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dict<'a> {
    entries: Vec<DictEntry<'a>>,
}

/// One `key → value` pair of a [`Dict`], with `raw` the exact input bytes of the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DictEntry<'a> {
    pub key: &'a [u8],
    pub value: Value<'a>,
    pub raw: &'a [u8],
}

impl<'a> Dict<'a> {
    pub fn get(&self, key: &[u8]) -> Option<&Value<'a>> {
        self.entry(key).map(|e| &e.value)
    }
    /// The exact input bytes of the value under `key`.
    pub fn get_raw(&self, key: &[u8]) -> Option<&'a [u8]> {
        self.entry(key).map(|e| e.raw)
    }
    pub fn entry(&self, key: &[u8]) -> Option<&DictEntry<'a>> {
        self.entries.iter().find(|e| e.key == key)
    }
    pub fn entries(&self) -> &[DictEntry<'a>] {
        &self.entries
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub fn get_int(&self, key: &[u8]) -> Option<i64> {
        self.get(key).and_then(Value::as_int)
    }
    pub fn get_bytes(&self, key: &[u8]) -> Option<&'a [u8]> {
        self.get(key).and_then(Value::as_bytes)
    }
    pub fn get_dict(&self, key: &[u8]) -> Option<&Dict<'a>> {
        self.get(key).and_then(Value::as_dict)
    }
    pub fn get_list(&self, key: &[u8]) -> Option<&[Value<'a>]> {
        self.get(key).and_then(Value::as_list)
    }
}

impl<'a> Value<'a> {
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_list(&self) -> Option<&[Value<'a>]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }
    pub fn as_dict(&self) -> Option<&Dict<'a>> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }
    /// Copy into an owned value (e.g. to re-encode canonically).
    pub fn to_owned_value(&self) -> OwnedValue {
        match self {
            Value::Int(i) => OwnedValue::Int(*i),
            Value::Bytes(b) => OwnedValue::Bytes(b.to_vec()),
            Value::List(l) => OwnedValue::List(l.iter().map(Value::to_owned_value).collect()),
            Value::Dict(d) => OwnedValue::Dict(
                d.entries
                    .iter()
                    .map(|e| (e.key.to_vec(), e.value.to_owned_value()))
                    .collect(),
            ),
        }
    }
}

/// Parse exactly one bencoded value filling all of `input`.
pub fn decode(input: &[u8]) -> Result<Value<'_>, BencodeError> {
    let (value, used) = decode_prefix(input)?;
    if used != input.len() {
        return Err(BencodeError::Trailing {
            count: input.len() - used,
        });
    }
    Ok(value)
}

/// Parse one bencoded value at the start of `input`; returns it and how many bytes it used
/// (BEP 9 `data` messages carry raw bytes after the dictionary).
pub fn decode_prefix(input: &[u8]) -> Result<(Value<'_>, usize), BencodeError> {
    let mut p = Parser { input, pos: 0 };
    let v = p.value(0)?;
    Ok((v, p.pos))
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Result<u8, BencodeError> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or(BencodeError::Truncated { offset: self.pos })
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, BencodeError> {
        if depth > MAX_DEPTH {
            return Err(BencodeError::TooDeep { offset: self.pos });
        }
        match self.peek()? {
            b'i' => {
                self.pos += 1;
                let start = self.pos;
                let end = self.find(b'e')?;
                let n = parse_int(&self.input[start..end])
                    .ok_or(BencodeError::BadInt { offset: start })?;
                self.pos = end + 1;
                Ok(Value::Int(n))
            }
            b'0'..=b'9' => self.bytes().map(Value::Bytes),
            b'l' => {
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                self.pos += 1;
                let mut entries: Vec<DictEntry<'a>> = Vec::new();
                // Duplicate keys in linear time: strictly increasing keys (canonical bencode) are unique; once
                // the order breaks, a set of the keys seen (a scan of all earlier keys per key was quadratic: a
                // 1 MB dictionary of unsorted keys took most of a minute).
                let mut unsorted: Option<HashSet<&'a [u8]>> = None;
                while self.peek()? != b'e' {
                    let key_at = self.pos;
                    if !self.peek()?.is_ascii_digit() {
                        return Err(BencodeError::KeyNotString { offset: key_at });
                    }
                    let key = self.bytes()?;
                    let duplicate = match (&mut unsorted, entries.last()) {
                        (None, None) => false,
                        (None, Some(last)) if last.key < key => false,
                        (None, Some(_)) => {
                            let seen: HashSet<&'a [u8]> = entries.iter().map(|e| e.key).collect();
                            !unsorted.insert(seen).insert(key)
                        }
                        (Some(seen), _) => !seen.insert(key),
                    };
                    if duplicate {
                        return Err(BencodeError::DuplicateKey { offset: key_at });
                    }
                    let start = self.pos;
                    let value = self.value(depth + 1)?;
                    let raw = &self.input[start..self.pos];
                    entries.push(DictEntry { key, value, raw });
                }
                self.pos += 1;
                Ok(Value::Dict(Dict { entries }))
            }
            byte => Err(BencodeError::Unexpected {
                offset: self.pos,
                byte,
            }),
        }
    }

    fn bytes(&mut self) -> Result<&'a [u8], BencodeError> {
        let start = self.pos;
        let colon = self.find(b':')?;
        let digits = &self.input[start..colon];
        if digits.is_empty() || digits.len() > 10 || (digits.len() > 1 && digits[0] == b'0') {
            return Err(BencodeError::BadLength { offset: start });
        }
        let len: usize = std::str::from_utf8(digits)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(BencodeError::BadLength { offset: start })?;
        let body = colon + 1;
        if len > self.input.len() - body {
            return Err(BencodeError::BadLength { offset: start });
        }
        self.pos = body + len;
        Ok(&self.input[body..body + len])
    }

    /// Position of the next `byte` from the current position; only digits (and one `-`) may come before it.
    fn find(&self, byte: u8) -> Result<usize, BencodeError> {
        for (i, &b) in self.input[self.pos..].iter().enumerate() {
            if b == byte {
                return Ok(self.pos + i);
            }
            if !(b.is_ascii_digit() || (b == b'-' && i == 0 && byte == b'e')) {
                return Err(BencodeError::Unexpected {
                    offset: self.pos + i,
                    byte: b,
                });
            }
        }
        Err(BencodeError::Truncated {
            offset: self.input.len(),
        })
    }
}

fn parse_int(digits: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(digits).ok()?;
    let unsigned = s.strip_prefix('-').unwrap_or(s);
    if unsigned.is_empty() || (unsigned.len() > 1 && unsigned.starts_with('0')) || s == "-0" {
        return None;
    }
    s.parse().ok()
}

/// An owned bencode value; `encode` writes canonical bencode (dictionary keys sorted by raw bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedValue {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<OwnedValue>),
    Dict(BTreeMap<Vec<u8>, OwnedValue>),
}

impl OwnedValue {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            OwnedValue::Int(i) => {
                out.push(b'i');
                out.extend_from_slice(i.to_string().as_bytes());
                out.push(b'e');
            }
            OwnedValue::Bytes(b) => encode_bytes(b, out),
            OwnedValue::List(l) => {
                out.push(b'l');
                l.iter().for_each(|v| v.encode_into(out));
                out.push(b'e');
            }
            OwnedValue::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    encode_bytes(k, out);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }

    /// Build a dictionary from `(key, value)` pairs.
    pub fn dict<K: AsRef<[u8]>>(pairs: impl IntoIterator<Item = (K, OwnedValue)>) -> OwnedValue {
        OwnedValue::Dict(
            pairs
                .into_iter()
                .map(|(k, v)| (k.as_ref().to_vec(), v))
                .collect(),
        )
    }

    pub fn bytes(b: impl AsRef<[u8]>) -> OwnedValue {
        OwnedValue::Bytes(b.as_ref().to_vec())
    }
}

/// Write one bencoded string (`<len>:<bytes>`).
pub fn encode_bytes(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_keeps_raw_spans() {
        let input = b"d4:infod6:lengthi5e4:name1:ae3:zzzli-3eee";
        let v = decode(input).unwrap();
        let d = v.as_dict().unwrap();
        assert_eq!(d.get_raw(b"info").unwrap(), b"d6:lengthi5e4:name1:ae");
        assert_eq!(d.get_dict(b"info").unwrap().get_int(b"length"), Some(5));
        assert_eq!(d.get_list(b"zzz").unwrap()[0].as_int(), Some(-3));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            &b"i01e"[..],
            b"i-0e",
            b"ie",
            b"i12",
            b"5:abc",
            b"01:a",
            b"d1:ai1e1:ai2ee",
            b"di1ei2ee",
            b"l",
            b"x",
            b"i1ei2e",
            b"99999999999:a",
            b"i99999999999999999999e",
        ] {
            assert!(
                decode(bad).is_err(),
                "{:?} should fail",
                String::from_utf8_lossy(bad)
            );
        }
        let deep = "l".repeat(MAX_DEPTH + 2) + &"e".repeat(MAX_DEPTH + 2);
        assert!(matches!(
            decode(deep.as_bytes()),
            Err(BencodeError::TooDeep { .. })
        ));
    }

    /// Regression (found reviewing the parser for the fuzz targets): duplicate-key detection was quadratic.
    #[test]
    fn duplicate_keys_found_in_any_order_and_in_linear_time() {
        for (bad, at) in [
            (&b"d1:a0:1:b0:1:a0:e"[..], 11),
            (b"d1:b0:1:a0:1:b0:e", 11),
            (b"d1:c0:1:a0:1:b0:1:a0:e", 16),
            (b"d1:a0:1:a0:e", 6),
        ] {
            assert_eq!(
                decode(bad),
                Err(BencodeError::DuplicateKey { offset: at }),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(decode(b"d1:b0:1:a0:1:c0:e").is_ok());
        // 300,000 keys in descending order: the old check needed ~4.5e10 key comparisons (many minutes);
        // a set needs 300,000 inserts (a quadratic check would not finish within the CI time limit).
        let n = 300_000;
        let mut big = b"d".to_vec();
        for i in (0..n).rev() {
            big.extend_from_slice(format!("8:k{i:07}i0e").as_bytes());
        }
        big.push(b'e');
        assert_eq!(decode(&big).unwrap().as_dict().unwrap().len(), n);
        big.truncate(big.len() - 1);
        big.extend_from_slice(b"8:k0150000i1ee");
        assert!(matches!(
            decode(&big),
            Err(BencodeError::DuplicateKey { .. })
        ));
    }

    #[test]
    fn decode_prefix_reports_consumed() {
        let (v, used) = decode_prefix(b"d1:xi1eeTRAILING").unwrap();
        assert_eq!(used, 8);
        assert_eq!(v.as_dict().unwrap().get_int(b"x"), Some(1));
    }

    fn owned() -> impl Strategy<Value = OwnedValue> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(OwnedValue::Int),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(OwnedValue::Bytes),
        ];
        leaf.prop_recursive(4, 64, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(OwnedValue::List),
                proptest::collection::btree_map(
                    proptest::collection::vec(any::<u8>(), 0..8),
                    inner,
                    0..6
                )
                .prop_map(OwnedValue::Dict),
            ]
        })
    }

    proptest! {
        #[test]
        fn round_trips(v in owned()) {
            let bytes = v.encode();
            let parsed = decode(&bytes).unwrap();
            prop_assert_eq!(parsed.to_owned_value(), v);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(v) = decode(&bytes) {
                // Anything accepted in canonical form re-encodes to the same bytes when keys were sorted.
                let _ = v.to_owned_value().encode();
            }
        }
    }
}

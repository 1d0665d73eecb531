//! The BEP 10 extension handshake (extended message id 0): `m` (extension name → the id the sender wants to
//! receive it under), `metadata_size` (BEP 9), `reqq`, `v`, `p`. Unknown keys are ignored.

use crate::metainfo::bencode::{self, OwnedValue};
use crate::wire::codec::MAX_METADATA_SIZE;
use crate::wire::WireError;
use std::collections::BTreeMap;

/// Extension message name of BEP 9.
pub const UT_METADATA: &str = "ut_metadata";
/// Extension message name of BEP 11.
pub const UT_PEX: &str = "ut_pex";
/// The ids we ask peers to use when they send us these extension messages.
pub const OUR_UT_METADATA_ID: u8 = 1;
pub const OUR_UT_PEX_ID: u8 = 2;
/// Most entries of `m` kept, and longest `v` kept (bounds what a peer can make us store).
pub const MAX_EXTENSIONS: usize = 64;
pub const MAX_CLIENT_NAME: usize = 64;

/// A decoded (or to-be-sent) BEP 10 extension handshake.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExtHandshake {
    /// Extension name → message id (0 = the sender disabled it; such entries are dropped on decode).
    pub m: BTreeMap<String, u8>,
    pub metadata_size: Option<u32>,
    pub reqq: Option<u32>,
    pub v: Option<String>,
    /// The sender's listening port.
    pub p: Option<u16>,
}

impl ExtHandshake {
    /// Our handshake: ut_metadata and ut_pex under our ids.
    pub fn ours(metadata_size: Option<u32>, listen_port: Option<u16>, reqq: u32) -> ExtHandshake {
        let m = [
            (UT_METADATA.to_string(), OUR_UT_METADATA_ID),
            (UT_PEX.to_string(), OUR_UT_PEX_ID),
        ]
        .into();
        ExtHandshake {
            m,
            metadata_size,
            reqq: Some(reqq),
            v: Some(concat!("qswarm ", env!("CARGO_PKG_VERSION")).to_string()),
            p: listen_port,
        }
    }

    /// The id the sender wants for extension `name`, if it supports it.
    pub fn id_of(&self, name: &str) -> Option<u8> {
        self.m.get(name).copied().filter(|&id| id != 0)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut d: BTreeMap<Vec<u8>, OwnedValue> = BTreeMap::new();
        let m = self
            .m
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), OwnedValue::Int(i64::from(*v))));
        d.insert(b"m".to_vec(), OwnedValue::Dict(m.collect()));
        if let Some(s) = self.metadata_size {
            d.insert(b"metadata_size".to_vec(), OwnedValue::Int(i64::from(s)));
        }
        if let Some(q) = self.reqq {
            d.insert(b"reqq".to_vec(), OwnedValue::Int(i64::from(q)));
        }
        if let Some(v) = &self.v {
            d.insert(b"v".to_vec(), OwnedValue::bytes(v));
        }
        if let Some(p) = self.p {
            d.insert(b"p".to_vec(), OwnedValue::Int(i64::from(p)));
        }
        OwnedValue::Dict(d).encode()
    }

    /// Parse an extension handshake payload. Out-of-range numbers are dropped, except a `metadata_size`
    /// over 16 MiB (or ≤ 0), which is an error: that peer cannot serve metadata we would accept.
    pub fn decode(payload: &[u8]) -> Result<ExtHandshake, WireError> {
        let value = bencode::decode(payload)?;
        let dict = value.as_dict().ok_or(WireError::BadExtended {
            what: "handshake is not a dictionary",
        })?;
        let mut out = ExtHandshake::default();
        if let Some(m) = dict.get_dict(b"m") {
            for e in m.entries().iter().take(MAX_EXTENSIONS) {
                let (Ok(name), Some(id)) = (std::str::from_utf8(e.key), e.value.as_int()) else {
                    continue;
                };
                if let Ok(id @ 1..) = u8::try_from(id) {
                    out.m.insert(name.to_string(), id);
                }
            }
        }
        if let Some(size) = dict.get_int(b"metadata_size") {
            if size <= 0 || size > i64::from(MAX_METADATA_SIZE) {
                return Err(WireError::MetadataSize { size });
            }
            out.metadata_size = u32::try_from(size).ok();
        }
        out.reqq = dict.get_int(b"reqq").and_then(|q| u32::try_from(q).ok());
        out.p = dict
            .get_int(b"p")
            .and_then(|p| u16::try_from(p).ok())
            .filter(|&p| p != 0);
        out.v = dict
            .get_bytes(b"v")
            .filter(|v| v.len() <= MAX_CLIENT_NAME)
            .map(|v| String::from_utf8_lossy(v).into_owned());
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_ours() {
        let h = ExtHandshake::ours(Some(12345), Some(6881), 500);
        let d = ExtHandshake::decode(&h.encode()).unwrap();
        assert_eq!(d, h);
        assert_eq!(d.id_of(UT_METADATA), Some(OUR_UT_METADATA_ID));
        assert_eq!(d.id_of("lt_donthave"), None);
    }

    #[test]
    fn parses_libtorrent_style_and_rejects_huge_metadata() {
        let raw = b"d1:md11:lt_donthavei7e11:ut_metadatai3e6:ut_pexi0ee13:metadata_sizei31235e4:reqqi500e1:v12:qB 4.6.0 xx3:youi1ee";
        let h = ExtHandshake::decode(raw).unwrap();
        assert_eq!(h.id_of(UT_METADATA), Some(3));
        assert_eq!(h.id_of(UT_PEX), None);
        assert_eq!(h.metadata_size, Some(31235));
        let huge = b"d1:mde13:metadata_sizei16777217ee";
        assert!(matches!(
            ExtHandshake::decode(huge),
            Err(WireError::MetadataSize { .. })
        ));
        assert!(ExtHandshake::decode(b"li1ee").is_err());
    }
}

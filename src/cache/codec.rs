//! Encoding of cached values: JSON, with members' personal data passed through the
//! [`PiiCodec`]. JSON rather than a binary format because the cache must keep reading entries
//! written by an older storebox (new fields take their defaults).

use serde::Serialize;
use serde::de::DeserializeOwned;
use sled::Tree;

use super::{CacheError, sled_err};
use crate::domain::member::Member;
use crate::pii::PiiCodec;

pub(super) fn decode_json<T: DeserializeOwned>(
    tree: &'static str,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, CacheError> {
    serde_json::from_slice(bytes).map_err(|e| CacheError::Decode {
        tree,
        key: String::from_utf8_lossy(key).to_string(),
        reason: e.to_string(),
    })
}

pub(super) fn encode_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising plain data structs to JSON cannot fail (no maps with non-string keys).
    serde_json::to_vec(value).unwrap_or_default()
}

pub(super) fn get_json<T: DeserializeOwned>(
    tree: &Tree,
    name: &'static str,
    key: &str,
) -> Result<Option<T>, CacheError> {
    match tree.get(key).map_err(sled_err("reading the cache"))? {
        Some(v) => decode_json(name, key.as_bytes(), &v).map(Some),
        None => Ok(None),
    }
}

pub(super) fn encode_member(codec: &PiiCodec, m: &Member) -> Vec<u8> {
    let mut doc = serde_json::to_value(m).unwrap_or_default();
    codec.seal(&m.id, &mut doc);
    serde_json::to_vec(&doc).unwrap_or_default()
}

pub(super) fn decode_member(
    codec: &PiiCodec,
    id: &str,
    bytes: &[u8],
) -> Result<Member, CacheError> {
    let err = |reason: String| CacheError::Decode {
        tree: "members",
        key: id.to_string(),
        reason,
    };
    let mut doc: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| err(e.to_string()))?;
    codec.open(id, &mut doc).map_err(|e| err(e.to_string()))?;
    serde_json::from_value(doc).map_err(|e| err(e.to_string()))
}

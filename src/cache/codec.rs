//! Encoding of cached values: JSON, with members' personal data passed through the
//! [`PiiCodec`]. JSON rather than a binary format because the cache must keep reading entries
//! written by an older storebox (new fields take their defaults).

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{CacheError, sql_err};
use crate::domain::member::Member;
use crate::pii::PiiCodec;

pub(super) fn decode_json<T: DeserializeOwned>(
    tree: &'static str,
    key: &str,
    bytes: &[u8],
) -> Result<T, CacheError> {
    from_json(bytes).map_err(|reason| CacheError::Decode {
        tree,
        key: key.to_string(),
        reason,
    })
}

/// A JSON value from bytes, checked for UTF-8 once as a whole: read from bytes, serde_json
/// checks every string it meets again (two dozen in a member), which cost a lookup more than
/// the one pass over the value.
fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    serde_json::from_str(text).map_err(|e| e.to_string())
}

pub(super) fn encode_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising plain data structs to JSON cannot fail (no maps with non-string keys).
    serde_json::to_vec(value).unwrap_or_default()
}

/// One JSON row of `table` by its key column.
pub(super) fn get_json<T: DeserializeOwned>(
    c: &Connection,
    table: &'static str,
    key_col: &'static str,
    key: &str,
) -> Result<Option<T>, CacheError> {
    let data: Option<Vec<u8>> = c
        .prepare_cached(&format!("SELECT data FROM {table} WHERE {key_col} = ?1"))
        .and_then(|mut st| st.query_row(params![key], |r| r.get(0)).optional())
        .map_err(sql_err("reading the cache"))?;
    data.map(|d| decode_json(table, key, &d)).transpose()
}

/// JSON rows from `sql` (selecting key, data; a `LIMIT ?1` parameter and `?2`, the key after
/// which the page begins).
pub(super) fn list_json<T: DeserializeOwned>(
    c: &Connection,
    table: &'static str,
    sql: &str,
    after: &str,
    limit: usize,
) -> Result<Vec<T>, CacheError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows: Vec<(String, Vec<u8>)> = c
        .prepare_cached(sql)
        .and_then(|mut st| {
            st.query_map(params![limit, after], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
        .map_err(sql_err("listing the cache"))?;
    rows.iter().map(|(k, v)| decode_json(table, k, v)).collect()
}

/// Layout version of a stored member: `[1][u32 LE n][n bytes sealed profile][member JSON]`.
const MEMBER_FORMAT: u8 = 1;

/// Encodes a member: the profile sealed by the codec, the rest as JSON (profile `null`), so
/// reading a member is two typed parses and the personal part never sits in the JSON.
pub(super) fn encode_member(codec: &PiiCodec, m: &Member) -> Result<Vec<u8>, CacheError> {
    let err = |reason: String| CacheError::Decode {
        tree: "members",
        key: m.id.clone(),
        reason,
    };
    let sealed = match &m.profile {
        Some(p) => {
            let plain =
                zeroize::Zeroizing::new(serde_json::to_vec(p).map_err(|e| err(e.to_string()))?);
            codec
                .seal_bytes(&m.id, &plain)
                .map_err(|e| err(e.to_string()))?
        }
        None => Vec::new(),
    };
    Ok(encode_member_sealed(m, &sealed))
}

/// [`encode_member`] with the profile already sealed (by the codec's `seal_bytes` for this
/// member, or presealed).
pub(super) fn encode_member_sealed(m: &Member, sealed: &[u8]) -> Vec<u8> {
    let mut rest = m.clone();
    rest.profile = None;
    let json = serde_json::to_vec(&rest).unwrap_or_default();
    let mut out = Vec::with_capacity(5 + sealed.len() + json.len());
    out.push(MEMBER_FORMAT);
    out.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
    out.extend_from_slice(sealed);
    out.extend_from_slice(&json);
    out
}

/// Whether the member stored as `bytes` is erased, and, when it still has tags (as a storebox
/// from before 2026-12-06 left erased members: its erasure kept them), the same member without
/// them. The sealed part is kept as it is (an erased member's is empty), and the JSON's other
/// fields with it. `(false, None)` for bytes not in this format.
pub(super) fn erased_without_tags(bytes: &[u8]) -> (bool, Option<Vec<u8>>) {
    let parsed = (|| {
        let end = sealed_end(bytes).ok()?;
        // Only an erased member's JSON is parsed (as this storebox writes it: compact, the
        // time a string): the first open after an upgrade reads every member.
        const ERASED: &[u8] = b"\"erased_at\":\"";
        if !bytes[end..].windows(ERASED.len()).any(|w| w == ERASED) {
            return None;
        }
        let json: serde_json::Value = serde_json::from_slice(&bytes[end..]).ok()?;
        Some((end, json))
    })();
    let Some((end, mut json)) = parsed else {
        return (false, None);
    };
    if json.get("erased_at").is_none_or(serde_json::Value::is_null) {
        return (false, None);
    }
    let tagged = json
        .get("tags")
        .and_then(|t| t.as_array())
        .is_some_and(|t| !t.is_empty());
    if !tagged {
        return (true, None);
    }
    json["tags"] = serde_json::Value::Array(Vec::new());
    let mut out = bytes[..end].to_vec();
    out.extend(serde_json::to_vec(&json).unwrap_or_default());
    (true, Some(out))
}

/// The feedback item stored as `bytes` without its text and the staff's notes, when it is one
/// of the `erased` members' and still holds some (a storebox from before 2026-12-07 kept
/// them at the erasure); else `None`.
pub(super) fn feedback_without_text(
    bytes: &[u8],
    erased: &std::collections::HashSet<String>,
) -> Option<Vec<u8>> {
    let mut json: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let member = json.get("member_id").and_then(|m| m.as_str())?;
    if !erased.contains(member) {
        return None;
    }
    let mut changed = false;
    let blank = |v: &mut serde_json::Value, changed: &mut bool| {
        if v.as_str().is_some_and(|t| !t.is_empty()) {
            *v = serde_json::Value::String(String::new());
            *changed = true;
        }
    };
    if let Some(text) = json.get_mut("text") {
        blank(text, &mut changed);
    }
    if let Some(notes) = json.get_mut("notes").and_then(|n| n.as_array_mut()) {
        for note in notes.iter_mut().filter_map(|n| n.get_mut("note")) {
            blank(note, &mut changed);
        }
    }
    changed.then(|| serde_json::to_vec(&json).unwrap_or_default())
}

/// Where the sealed profile of a member written by [`encode_member`] ends and its JSON begins;
/// why not, for bytes not in that format.
fn sealed_end(bytes: &[u8]) -> Result<usize, &'static str> {
    if bytes.len() < 5 || bytes[0] != MEMBER_FORMAT {
        return Err("unknown member format");
    }
    let n = u32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
    // A damaged length must not overflow where `usize` is 32 bits (the ARMv7 boxes).
    n.checked_add(5)
        .filter(|end| *end <= bytes.len())
        .ok_or("truncated profile")
}

/// Decodes a member written by [`encode_member`].
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
    let end = sealed_end(bytes).map_err(|reason| err(reason.into()))?;
    let (sealed, rest) = (&bytes[5..end], &bytes[end..]);
    let mut member: Member = from_json(rest).map_err(err)?;
    if !sealed.is_empty() {
        member.profile = match codec
            .open_bytes(id, sealed)
            .map_err(|e| err(e.to_string()))?
        {
            Some(plain) => Some(from_json(&plain).map_err(err)?),
            None => None,
        };
    }
    Ok(member)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_member_row_is_an_error_not_a_panic() {
        let codec = PiiCodec::random();
        let json = br#"{"id":"m1","profile":null,"created_at":"2026-11-23T10:15:00+08:00"}"#;
        let row = |len: u32, tail: &[u8]| {
            let mut v = vec![MEMBER_FORMAT];
            v.extend_from_slice(&len.to_le_bytes());
            v.extend_from_slice(tail);
            v
        };
        // The row as written decodes.
        assert!(decode_member(&codec, "m1", &row(0, json)).is_ok());
        let mut other_format = row(0, json);
        other_format[0] = 9;
        for damaged in [
            vec![],
            vec![MEMBER_FORMAT, 0, 0],
            other_format,
            row(json.len() as u32 + 1, json),
            row(u32::MAX, json),
            row(0, &json[..json.len() - 1]),
            row(0, b"\xff\xfe not json"),
            // A sealed profile that does not open with this store's key.
            row(3, b"abc{}"),
        ] {
            assert!(
                decode_member(&codec, "m1", &damaged).is_err(),
                "{damaged:?} decoded"
            );
        }
    }
}

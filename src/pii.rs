//! The one codec for personal data at rest (design: "keep it behind one codec in the cache and
//! the journal so that change stays local").
//!
//! Personal data (name, phone, gender, birthday, card number) always travels as one `profile`
//! value, in journal event data and in cached members alike. On its way to disk it goes through
//! [`PiiCodec::seal_bytes`] (cache) or [`PiiCodec::seal`] (journal JSON) and on its way back
//! through the matching `open`; index keys for phone, card, phone tail and name go through
//! [`PiiCodec::index_key`]. Today the codec is plain: sealing returns the bytes unchanged and
//! index keys are the normalised values. The encryption-at-rest issue replaces the inside of
//! this type and nothing else.

use serde_json::Value;

/// Which personal field an index key is made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexField {
    /// Normalised 11-digit phone.
    Phone,
    /// Last four digits of the phone.
    PhoneTail,
    /// Normalised card number.
    Card,
    /// Name search key (see `domain::contact::name_search_key`).
    Name,
}

/// Why sealed personal data could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum PiiError {
    /// Occurs when sealed data is malformed (a damaged file).
    #[error("sealed personal data is malformed: {0}")]
    Malformed(String),
}

/// Seals and opens personal data, and derives index keys.
#[derive(Debug, Clone, Default)]
pub struct PiiCodec {
    _private: (),
}

impl PiiCodec {
    /// The plain codec: personal data is stored as it is.
    pub fn plain() -> Self {
        PiiCodec { _private: () }
    }

    /// Seals the serialised profile of `_subject` (a member id).
    pub fn seal_bytes(&self, _subject: &str, plain: &[u8]) -> Vec<u8> {
        plain.to_vec()
    }

    /// Opens a sealed profile; `None` when it can no longer be opened (an erased member's key
    /// is gone).
    pub fn open_bytes(&self, _subject: &str, sealed: &[u8]) -> Result<Option<Vec<u8>>, PiiError> {
        Ok(Some(sealed.to_vec()))
    }

    /// Seals the `profile` of a JSON document about `subject` before it is stored.
    pub fn seal(&self, subject: &str, doc: &mut Value) {
        let _ = (subject, doc);
    }

    /// Opens the `profile` of a stored JSON document. A profile that cannot be opened any more
    /// becomes `null`.
    pub fn open(&self, _subject: &str, doc: &mut Value) -> Result<(), PiiError> {
        if let Some(p) = doc.get("profile")
            && !(p.is_null() || p.is_object())
        {
            return Err(PiiError::Malformed(
                "profile is neither an object nor null".into(),
            ));
        }
        Ok(())
    }

    /// Whether stored JSON data holds nothing sealed, so it can go to HQ as it is.
    pub fn is_open(&self, _stored_json: &str) -> bool {
        true
    }

    /// The key under which a personal value is indexed.
    pub fn index_key(&self, field: IndexField, value: &str) -> Vec<u8> {
        let _ = field;
        value.as_bytes().to_vec()
    }
}

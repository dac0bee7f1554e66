//! The one codec for personal data at rest (design: "keep it behind one codec in the cache and
//! the journal so that change stays local").
//!
//! Personal data (name, phone, gender, birthday, card number) always travels as a `profile`
//! object, in journal event data and in cached members alike. [`PiiCodec::seal`] is applied to
//! every JSON document on its way to disk and [`PiiCodec::open`] on its way back; index keys for
//! phone, card, phone tail and name go through [`PiiCodec::index_key`]. Today the codec is
//! plain: sealing leaves the document unchanged and index keys are the normalised values. The
//! encryption-at-rest issue replaces the inside of this type and nothing else.

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

/// Why a sealed document could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum PiiError {
    /// Occurs when a sealed profile is malformed (a damaged file).
    #[error("sealed personal data is malformed: {0}")]
    Malformed(String),
}

/// Seals and opens personal data in JSON documents, and derives index keys.
#[derive(Debug, Clone, Default)]
pub struct PiiCodec {
    _private: (),
}

impl PiiCodec {
    /// The plain codec: documents are stored as they are.
    pub fn plain() -> Self {
        PiiCodec { _private: () }
    }

    /// Seals the `profile` of a document about `_subject` (a member id) before it is stored.
    pub fn seal(&self, _subject: &str, doc: &mut Value) {
        let _ = doc;
    }

    /// Opens the `profile` of a stored document. A profile that cannot be opened any more (an
    /// erased member) becomes `null`.
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

    /// The key under which a personal value is indexed.
    pub fn index_key(&self, field: IndexField, value: &str) -> Vec<u8> {
        let _ = field;
        value.as_bytes().to_vec()
    }
}

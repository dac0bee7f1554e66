//! The one codec for personal data at rest (design: "keep it behind one codec in the cache and
//! the journal so that change stays local").
//!
//! Personal data (name, phone, gender, birthday, card number) always travels as one `profile`
//! value, in journal event data and in cached members alike, and is encrypted with
//! XChaCha20-Poly1305 whenever it is written:
//!
//! - **journal**: each member has a random data key, stored in the journal's `member_keys`
//!   table wrapped (encrypted) with the store's key-encryption key. An event's `profile` is
//!   sealed with that member's key and stored as the string `"xc1:<base64>"`; so are its
//!   `tags` when there are any (free text a cashier writes about the person, "孕妇" say).
//!   Erasing a member deletes the data key ([`PiiCodec::forget_member`]): every copy of the
//!   profile and tags in the append-only journal becomes unreadable without rewriting a single
//!   event, and opens as `null` (tags: `[]`) from then on. Events written before tags were
//!   sealed hold them open, and open as they are.
//! - **cache**: a member's profile is sealed with the cache key, bound to the member id. The
//!   cache is rebuildable, so erasure there simply rewrites the member without it.
//! - **indices**: phone, card, phone tail and name are found through keyed hashes (HMAC with
//!   the index key), never through the values themselves.
//!
//! All keys derive from the store key ([`crate::security::StoreKeys`]).

use std::sync::Arc;

use base64::Engine;
use rusqlite::Connection;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::journal::{JournalError, store};
use crate::security::StoreKeys;
use crate::security::seal::{self, open as unseal};

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

impl IndexField {
    fn tag(self) -> &'static [u8] {
        match self {
            IndexField::Phone => b"phone",
            IndexField::PhoneTail => b"phone_tail",
            IndexField::Card => b"card",
            IndexField::Name => b"name",
        }
    }
}

/// Why personal data could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum PiiError {
    /// Occurs when sealed data is malformed (a damaged file).
    #[error("sealed personal data is malformed: {0}")]
    Malformed(String),
    /// Occurs when sealed data does not open with the store key: the wrong key file, or data
    /// altered on disk.
    #[error("sealed personal data does not open with the store key ({0})")]
    WrongKey(String),
    /// Occurs when encryption fails.
    #[error("personal data cannot be sealed")]
    Seal,
    /// Occurs when the member key table cannot be read or written.
    #[error(transparent)]
    Journal(#[from] Box<JournalError>),
}

/// The prefix of a sealed profile in journal JSON.
const SEALED: &str = "xc1:";
/// Bytes of an index key (a truncated HMAC-SHA256: 2⁶⁴ collision resistance).
const INDEX_KEY_LEN: usize = 16;

/// A new member's personal data sealed ahead of the ledger (a bulk import prepares its rows on
/// another thread): what [`PiiCodec::seal`] and the cache would otherwise compute in the write
/// path. Only for a member id that has no data key yet.
#[derive(Clone)]
pub struct Presealed {
    /// A fresh data key for the member, wrapped with the store key (for `member_keys`).
    wrapped_key: Vec<u8>,
    /// The profile sealed with that key, as a journal event holds it (`"xc1:…"`).
    journal: String,
    /// The tags sealed with that key, when there are any.
    journal_tags: Option<String>,
    /// The profile sealed for the cache.
    pub(crate) cache: Vec<u8>,
}

impl std::fmt::Debug for Presealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Presealed(MASKED)")
    }
}

/// Seals and opens personal data, and derives index keys. Cheap to clone.
#[derive(Clone)]
pub struct PiiCodec {
    keys: Arc<StoreKeys>,
    /// The index key, prepared (every lookup hashes with it).
    index_mac: crate::security::seal::Mac256,
}

impl std::fmt::Debug for PiiCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PiiCodec({:?})", self.keys)
    }
}

impl PiiCodec {
    /// The codec for the store's keys.
    pub fn new(keys: Arc<StoreKeys>) -> Self {
        PiiCodec {
            index_mac: crate::security::seal::Mac256::new(&keys.index),
            keys,
        }
    }

    /// A codec with fresh random keys (tests and benchmarks).
    pub fn random() -> Self {
        PiiCodec::new(Arc::new(StoreKeys::random()))
    }

    /// The store keys behind the codec.
    pub fn keys(&self) -> &Arc<StoreKeys> {
        &self.keys
    }

    fn cache_aad(subject: &str) -> Vec<u8> {
        [b"cache\0", subject.as_bytes()].concat()
    }

    /// Seals the serialised profile of `subject` (a member id) for the cache.
    pub fn seal_bytes(&self, subject: &str, plain: &[u8]) -> Result<Vec<u8>, PiiError> {
        seal::seal(&self.keys.cache, &Self::cache_aad(subject), plain).map_err(|_| PiiError::Seal)
    }

    /// Opens a profile sealed by [`PiiCodec::seal_bytes`].
    pub fn open_bytes(&self, subject: &str, sealed: &[u8]) -> Result<Option<Vec<u8>>, PiiError> {
        unseal(&self.keys.cache, &Self::cache_aad(subject), sealed)
            .map(Some)
            .ok_or_else(|| PiiError::WrongKey(format!("cached member {subject}")))
    }

    fn member_aad(subject: &str) -> Vec<u8> {
        [b"member key\0", subject.as_bytes()].concat()
    }

    /// The data key of member `subject`, creating it when `create` (writer only).
    fn member_key(
        &self,
        conn: &Connection,
        subject: &str,
        create: bool,
    ) -> Result<Option<Zeroizing<[u8; 32]>>, PiiError> {
        let journal = |e| PiiError::Journal(Box::new(e));
        if let Some(wrapped) = store::member_key(conn, subject).map_err(journal)? {
            let plain = Zeroizing::new(
                unseal(&self.keys.kek, &Self::member_aad(subject), &wrapped)
                    .ok_or_else(|| PiiError::WrongKey(format!("data key of member {subject}")))?,
            );
            let key: [u8; 32] = plain
                .as_slice()
                .try_into()
                .map_err(|_| PiiError::Malformed(format!("data key of member {subject}")))?;
            return Ok(Some(Zeroizing::new(key)));
        }
        if !create {
            return Ok(None);
        }
        let (key, wrapped) = self.new_member_key(subject)?;
        store::put_member_key(conn, subject, &wrapped).map_err(journal)?;
        Ok(Some(key))
    }

    /// A fresh data key for member `subject`, and the key wrapped with the store key (as
    /// `member_keys` holds it).
    fn new_member_key(&self, subject: &str) -> Result<(Zeroizing<[u8; 32]>, Vec<u8>), PiiError> {
        let mut key = Zeroizing::new([0u8; 32]);
        {
            use rand::Rng;
            rand::rng().fill_bytes(key.as_mut_slice());
        }
        let wrapped = seal::seal(&self.keys.kek, &Self::member_aad(subject), key.as_slice())
            .map_err(|_| PiiError::Seal)?;
        Ok((key, wrapped))
    }

    /// A profile's JSON sealed with the member's data key, as a journal event holds it
    /// (`"xc1:…"`).
    fn seal_for_journal(key: &[u8; 32], subject: &str, plain: &[u8]) -> Result<String, PiiError> {
        Self::seal_field(key, subject.as_bytes(), plain)
    }

    /// Tags sealed with the member's data key, bound to the member and to being tags (a sealed
    /// profile moved into `tags` does not open).
    fn seal_tags(key: &[u8; 32], subject: &str, tags: &Value) -> Result<String, PiiError> {
        let plain = Zeroizing::new(serde_json::to_vec(tags).map_err(|_| PiiError::Seal)?);
        Self::seal_field(key, &Self::tags_aad(subject), &plain)
    }

    fn tags_aad(subject: &str) -> Vec<u8> {
        [subject.as_bytes(), b"\0tags"].concat()
    }

    fn seal_field(key: &[u8; 32], aad: &[u8], plain: &[u8]) -> Result<String, PiiError> {
        let sealed = seal::seal(key, aad, plain).map_err(|_| PiiError::Seal)?;
        Ok(format!(
            "{SEALED}{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(sealed)
        ))
    }

    /// Seals the `profile` of a JSON document about member `subject` before it is appended to
    /// the journal (on the writer's transaction: the member's data key is created there).
    pub fn seal(&self, conn: &Connection, subject: &str, doc: &mut Value) -> Result<(), PiiError> {
        let profile = doc.get("profile").is_some_and(Value::is_object);
        let tags = has_tags(doc);
        if !profile && !tags {
            return Ok(());
        }
        if subject.is_empty() {
            return Err(PiiError::Malformed("a profile without a member id".into()));
        }
        let Some(key) = self.member_key(conn, subject, true)? else {
            return Err(PiiError::Seal);
        };
        if let Some(profile) = doc.get_mut("profile").filter(|p| p.is_object()) {
            let plain = Zeroizing::new(serde_json::to_vec(profile).map_err(|_| PiiError::Seal)?);
            *profile = Value::String(Self::seal_for_journal(&key, subject, &plain)?);
        }
        if let Some(t) = doc.get_mut("tags").filter(|_| tags) {
            *t = Value::String(Self::seal_tags(&key, subject, t)?);
        }
        Ok(())
    }

    /// Seals a new member's profile for the journal and the cache, with a fresh data key that
    /// [`PiiCodec::seal_presealed`] stores later. Pure computation: no database.
    pub fn preseal(
        &self,
        subject: &str,
        profile: &crate::domain::member::Profile,
        tags: &[String],
    ) -> Result<Presealed, PiiError> {
        let (key, wrapped_key) = self.new_member_key(subject)?;
        let plain = Zeroizing::new(serde_json::to_vec(profile).map_err(|_| PiiError::Seal)?);
        let journal_tags = if tags.is_empty() {
            None
        } else {
            Some(Self::seal_tags(&key, subject, &serde_json::json!(tags))?)
        };
        Ok(Presealed {
            wrapped_key,
            journal: Self::seal_for_journal(&key, subject, &plain)?,
            journal_tags,
            cache: self.seal_bytes(subject, &plain)?,
        })
    }

    /// [`PiiCodec::seal`] with a profile sealed ahead by [`PiiCodec::preseal`]: stores the
    /// member's data key and puts the sealed profile in `doc`. The caller vouches that `doc`'s
    /// profile is the one that was presealed.
    pub fn seal_presealed(
        &self,
        conn: &Connection,
        subject: &str,
        doc: &mut Value,
        pre: &Presealed,
    ) -> Result<(), PiiError> {
        let Some(profile) = doc.get_mut("profile").filter(|p| p.is_object()) else {
            return Ok(());
        };
        *profile = Value::String(self.use_presealed(conn, subject, pre)?.0.to_string());
        if has_tags(doc) {
            let sealed = pre.journal_tags.clone().ok_or(PiiError::Seal)?;
            doc["tags"] = Value::String(sealed);
        }
        Ok(())
    }

    /// The part of [`PiiCodec::seal_presealed`] for a caller that writes the document itself:
    /// stores the member's data key and returns the sealed profile and tags (`None`: no tags)
    /// as the event is to hold them.
    pub fn use_presealed<'p>(
        &self,
        conn: &Connection,
        subject: &str,
        pre: &'p Presealed,
    ) -> Result<(&'p str, Option<&'p str>), PiiError> {
        store::put_member_key(conn, subject, &pre.wrapped_key)
            .map_err(|e| PiiError::Journal(Box::new(e)))?;
        Ok((&pre.journal, pre.journal_tags.as_deref()))
    }

    /// Opens the `profile` and the `tags` of a stored JSON document. Those of a member whose
    /// key is gone (the member was erased) become `null` and `[]`.
    pub fn open(&self, conn: &Connection, subject: &str, doc: &mut Value) -> Result<(), PiiError> {
        if let Some(sealed) = doc
            .get("tags")
            .and_then(Value::as_str)
            .map(|t| t.strip_prefix(SEALED).map(str::to_string))
        {
            let sealed =
                sealed.ok_or_else(|| PiiError::Malformed("tags are not sealed data".into()))?;
            doc["tags"] = match self.member_key(conn, subject, false)? {
                None => Value::Array(Vec::new()),
                Some(key) => {
                    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
                        .decode(sealed)
                        .map_err(|e| PiiError::Malformed(e.to_string()))?;
                    let plain =
                        Zeroizing::new(unseal(&key, &Self::tags_aad(subject), &bytes).ok_or_else(
                            || PiiError::WrongKey(format!("tags of member {subject}")),
                        )?);
                    serde_json::from_slice(&plain)
                        .map_err(|e| PiiError::Malformed(e.to_string()))?
                }
            };
        }
        let Some(profile) = doc.get_mut("profile") else {
            return Ok(());
        };
        let sealed = match profile {
            Value::Null | Value::Object(_) => return Ok(()),
            Value::String(s) => s
                .strip_prefix(SEALED)
                .ok_or_else(|| PiiError::Malformed("profile is not sealed data".into()))?,
            _ => {
                return Err(PiiError::Malformed(
                    "profile is neither sealed data nor null".into(),
                ));
            }
        };
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(sealed)
            .map_err(|e| PiiError::Malformed(e.to_string()))?;
        let Some(key) = self.member_key(conn, subject, false)? else {
            *profile = Value::Null;
            return Ok(());
        };
        let plain = Zeroizing::new(
            unseal(&key, subject.as_bytes(), &bytes)
                .ok_or_else(|| PiiError::WrongKey(format!("profile of member {subject}")))?,
        );
        *profile =
            serde_json::from_slice(&plain).map_err(|e| PiiError::Malformed(e.to_string()))?;
        Ok(())
    }

    /// Whether stored JSON data holds nothing sealed, so it can go to HQ as it is. (A JSON
    /// string cannot contain `"profile":"` unescaped, so only a real sealed profile matches.)
    pub fn is_open(&self, stored_json: &str) -> bool {
        !stored_json.contains("\"profile\":\"xc1:") && !stored_json.contains("\"tags\":\"xc1:")
    }

    /// Destroys member `subject`'s data key: the journal's copies of their personal data can
    /// no longer be opened by anyone. Returns whether there was a key.
    pub fn forget_member(&self, conn: &Connection, subject: &str) -> Result<bool, PiiError> {
        store::delete_member_key(conn, subject).map_err(|e| PiiError::Journal(Box::new(e)))
    }

    /// The key under which a personal value is indexed: a keyed hash, so the index reveals
    /// nothing without the store key.
    pub fn index_key(&self, field: IndexField, value: &str) -> Vec<u8> {
        self.index_mac.mac(&[field.tag(), value.as_bytes()])[..INDEX_KEY_LEN].to_vec()
    }
}

/// Whether a document holds tags to seal: a non-empty array.
fn has_tags(doc: &Value) -> bool {
    doc.get("tags")
        .and_then(Value::as_array)
        .is_some_and(|t| !t.is_empty())
}

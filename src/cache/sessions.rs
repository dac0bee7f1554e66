//! Staff sessions, kept in the cache so that a restart does not log every cashier out. Keyed by
//! the SHA-256 of the session token: the token itself is never stored.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::codec::{decode_json, encode_json};
use super::{Cache, CacheError, sled_err};
use crate::domain::access::Role;

/// An open staff session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Staff number.
    pub staff_no: String,
    /// Staff name, for receipts and reports.
    pub name: String,
    /// Role at login.
    pub role: Role,
    /// Terminal the session was opened on.
    pub terminal_id: String,
    /// When it was opened.
    pub created_at: DateTime<Utc>,
    /// When it stops being accepted.
    pub expires_at: DateTime<Utc>,
}

/// Sessions in memory, by token hash (the sled tree stays the record across restarts).
pub(crate) type Memo = Arc<RwLock<HashMap<[u8; 32], Session>>>;

impl Cache {
    fn memo_get(&self, token_hash: &[u8; 32]) -> Option<Session> {
        self.session_memo
            .read()
            .ok()
            .and_then(|m| m.get(token_hash).cloned())
    }

    fn memo_put(&self, token_hash: &[u8; 32], s: &Session) {
        if let Ok(mut m) = self.session_memo.write() {
            m.insert(*token_hash, s.clone());
        }
    }

    fn memo_remove(&self, token_hash: &[u8]) {
        if let (Ok(mut m), Ok(k)) = (self.session_memo.write(), <[u8; 32]>::try_from(token_hash)) {
            m.remove(&k);
        }
    }

    /// Stores a session under the hash of its token.
    pub fn put_session(&self, token_hash: &[u8; 32], s: &Session) -> Result<(), CacheError> {
        self.sessions
            .insert(token_hash, encode_json(s))
            .map_err(sled_err("storing a session"))?;
        self.memo_put(token_hash, s);
        Ok(())
    }

    /// The session for a token hash, if it exists and has not expired at `now`.
    pub fn session(
        &self,
        token_hash: &[u8; 32],
        now: DateTime<Utc>,
    ) -> Result<Option<Session>, CacheError> {
        if let Some(s) = self.memo_get(token_hash) {
            return Ok((s.expires_at > now).then_some(s));
        }
        let Some(v) = self
            .sessions
            .get(token_hash)
            .map_err(sled_err("reading a session"))?
        else {
            return Ok(None);
        };
        let s: Session = decode_json("sessions", &hex::encode(token_hash).into_bytes(), &v)?;
        self.memo_put(token_hash, &s);
        Ok((s.expires_at > now).then_some(s))
    }

    /// Ends a session.
    pub fn remove_session(&self, token_hash: &[u8; 32]) -> Result<(), CacheError> {
        self.sessions
            .remove(token_hash)
            .map_err(sled_err("removing a session"))?;
        self.memo_remove(token_hash);
        Ok(())
    }

    /// Forgets sessions that expired before `now`, and those for which `keep` says no (staff
    /// removed or demoted). Returns how many were removed.
    pub fn prune_sessions(
        &self,
        now: DateTime<Utc>,
        keep: impl Fn(&Session) -> bool,
    ) -> Result<usize, CacheError> {
        let mut removed = 0;
        for item in self.sessions.iter() {
            let (k, v) = item.map_err(sled_err("scanning sessions"))?;
            let stale = match decode_json::<Session>("sessions", &k, &v) {
                Ok(s) => s.expires_at <= now || !keep(&s),
                Err(_) => true,
            };
            if stale {
                self.memo_remove(&k);
                self.sessions
                    .remove(k)
                    .map_err(sled_err("removing a session"))?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

//! Staff sessions, kept in the cache so that a restart does not log every cashier out. Keyed by
//! the SHA-256 of the session token: the token itself is never stored.

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

impl Cache {
    /// Stores a session under the hash of its token.
    pub fn put_session(&self, token_hash: &[u8; 32], s: &Session) -> Result<(), CacheError> {
        self.sessions
            .insert(token_hash, encode_json(s))
            .map_err(sled_err("storing a session"))?;
        Ok(())
    }

    /// The session for a token hash, if it exists and has not expired at `now`.
    pub fn session(
        &self,
        token_hash: &[u8; 32],
        now: DateTime<Utc>,
    ) -> Result<Option<Session>, CacheError> {
        let Some(v) = self
            .sessions
            .get(token_hash)
            .map_err(sled_err("reading a session"))?
        else {
            return Ok(None);
        };
        let s: Session = decode_json("sessions", &hex::encode(token_hash).into_bytes(), &v)?;
        Ok((s.expires_at > now).then_some(s))
    }

    /// Ends a session.
    pub fn remove_session(&self, token_hash: &[u8; 32]) -> Result<(), CacheError> {
        self.sessions
            .remove(token_hash)
            .map_err(sled_err("removing a session"))?;
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
                self.sessions
                    .remove(k)
                    .map_err(sled_err("removing a session"))?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

//! Staff sessions, kept in the cache so that a restart does not log every cashier out. Keyed by
//! the SHA-256 of the session token: the token itself is never stored. Reads are served from
//! memory after the first; writes go through the ledger thread's [`CacheWriter`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::codec::{decode_json, encode_json};
use super::{Cache, CacheError, CacheWriter, sql_err};
use crate::domain::access::Role;
use crate::domain::lockout::Strikes;

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
    /// What the login was granted under (see `api::auth::grant`): a session whose grant the
    /// config no longer gives ends at the next start or reload. Absent in sessions opened
    /// before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
}

/// Sessions in memory, by token hash (the cache table stays the record across restarts).
/// Shared, not copied: every request reads its session from here.
#[derive(Default)]
pub(crate) struct Memo {
    map: RwLock<HashMap<[u8; 32], Arc<Session>>>,
    /// Sessions ended so far: a reader that found a session in the table puts it in memory
    /// only if none ended meanwhile, or an ended session could come back from a read that
    /// raced its end.
    ended: AtomicU64,
}

fn memo_put(memo: &Memo, k: &[u8; 32], s: Arc<Session>) {
    if let Ok(mut m) = memo.map.write() {
        m.insert(*k, s);
    }
}

/// Puts a session read from the table in memory, unless a session ended since `ended` was
/// read (before the table was).
fn memo_put_read(memo: &Memo, k: &[u8; 32], s: Arc<Session>, ended: u64) {
    if let Ok(mut m) = memo.map.write()
        && memo.ended.load(Ordering::Acquire) == ended
    {
        m.insert(*k, s);
    }
}

fn memo_remove(memo: &Memo, k: &[u8]) {
    if let Ok(mut m) = memo.map.write() {
        if let Ok(k) = <[u8; 32]>::try_from(k) {
            m.remove(&k);
        }
        memo.ended.fetch_add(1, Ordering::AcqRel);
    }
}

impl Cache {
    /// The session for a token hash, if it exists and has not expired at `now`.
    pub fn session(
        &self,
        token_hash: &[u8; 32],
        now: DateTime<Utc>,
    ) -> Result<Option<Arc<Session>>, CacheError> {
        let memo = &self.inner.session_memo;
        if let Some(s) = memo
            .map
            .read()
            .ok()
            .and_then(|m| m.get(token_hash).cloned())
        {
            return Ok((s.expires_at > now).then_some(s));
        }
        let ended = memo.ended.load(Ordering::Acquire);
        let data: Option<Vec<u8>> = self.read(|c| {
            c.prepare_cached("SELECT data FROM sessions WHERE k = ?1")
                .and_then(|mut st| {
                    st.query_row(params![token_hash.as_slice()], |r| r.get(0))
                        .optional()
                })
                .map_err(sql_err("reading a session"))
        })?;
        let Some(data) = data else { return Ok(None) };
        let s: Arc<Session> = Arc::new(decode_json("sessions", &hex::encode(token_hash), &data)?);
        memo_put_read(memo, token_hash, s.clone(), ended);
        Ok((s.expires_at > now).then_some(s))
    }

    /// Every session in the table (expired ones too), with its token hash.
    pub fn sessions(&self) -> Result<Vec<([u8; 32], Session)>, CacheError> {
        let rows: Vec<(Vec<u8>, Vec<u8>)> = self.read(|c| {
            c.prepare("SELECT k, data FROM sessions")
                .and_then(|mut st| st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
                .map_err(sql_err("listing sessions"))
        })?;
        Ok(rows
            .into_iter()
            .filter_map(|(k, v)| {
                let k = <[u8; 32]>::try_from(k.as_slice()).ok()?;
                let s = decode_json("sessions", &hex::encode(k), &v).ok()?;
                Some((k, s))
            })
            .collect())
    }
}

impl Cache {
    /// Wrong PINs counted against a scope (`staff:<no>`, `terminal:<id>`).
    pub fn strikes(&self, scope: &str) -> Result<Option<Strikes>, CacheError> {
        self.read(|c| read_strikes(c, scope))
    }
}

fn read_strikes(c: &rusqlite::Connection, scope: &str) -> Result<Option<Strikes>, CacheError> {
    let data: Option<Vec<u8>> = c
        .prepare_cached("SELECT data FROM strikes WHERE scope = ?1")
        .and_then(|mut st| st.query_row(params![scope], |r| r.get(0)).optional())
        .map_err(sql_err("reading wrong-PIN counts"))?;
    data.map(|d| decode_json("strikes", scope, &d)).transpose()
}

impl CacheWriter {
    /// Wrong PINs counted against a scope, as the writer sees them.
    pub fn strikes(&self, scope: &str) -> Result<Option<Strikes>, CacheError> {
        read_strikes(&self.conn, scope)
    }

    /// Stores the wrong PINs counted against a scope.
    pub fn put_strikes(&self, scope: &str, s: &Strikes) -> Result<(), CacheError> {
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO strikes (scope, data) VALUES (?1, ?2)")
            .and_then(|mut st| st.execute(params![scope, encode_json(s)]))
            .map_err(sql_err("storing wrong-PIN counts"))?;
        self.note_write();
        Ok(())
    }

    /// Forgets the wrong PINs counted against a scope.
    pub fn clear_strikes(&self, scope: &str) -> Result<(), CacheError> {
        self.conn
            .execute("DELETE FROM strikes WHERE scope = ?1", params![scope])
            .map_err(sql_err("clearing wrong-PIN counts"))?;
        self.note_write();
        Ok(())
    }

    /// Stores a session under the hash of its token.
    pub fn put_session(&self, token_hash: &[u8; 32], s: &Session) -> Result<(), CacheError> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO sessions (k, expires_at, data) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    token_hash.as_slice(),
                    s.expires_at.to_rfc3339(),
                    encode_json(s)
                ])
            })
            .map_err(sql_err("storing a session"))?;
        self.note_write();
        memo_put(&self.inner.session_memo, token_hash, Arc::new(s.clone()));
        Ok(())
    }

    /// Ends a session.
    pub fn remove_session(&self, token_hash: &[u8; 32]) -> Result<(), CacheError> {
        self.conn
            .execute(
                "DELETE FROM sessions WHERE k = ?1",
                params![token_hash.as_slice()],
            )
            .map_err(sql_err("removing a session"))?;
        self.note_write();
        memo_remove(&self.inner.session_memo, token_hash);
        Ok(())
    }

    /// Forgets sessions that expired before `now`, and those for which `keep` says no (staff
    /// removed or demoted). Returns how many were removed.
    pub fn prune_sessions(
        &self,
        now: DateTime<Utc>,
        keep: impl Fn(&Session) -> bool,
    ) -> Result<usize, CacheError> {
        let rows: Vec<(Vec<u8>, Vec<u8>)> = self
            .conn
            .prepare("SELECT k, data FROM sessions")
            .and_then(|mut st| st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .map_err(sql_err("scanning sessions"))?;
        let mut removed = 0;
        for (k, v) in rows {
            let stale = match decode_json::<Session>("sessions", &hex::encode(&k), &v) {
                Ok(s) => s.expires_at <= now || !keep(&s),
                Err(_) => true,
            };
            if stale {
                self.conn
                    .execute("DELETE FROM sessions WHERE k = ?1", params![k])
                    .map_err(sql_err("removing a session"))?;
                self.note_write();
                memo_remove(&self.inner.session_memo, &k);
                removed += 1;
            }
        }
        Ok(removed)
    }
}

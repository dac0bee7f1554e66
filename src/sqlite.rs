//! What every SQLite connection of storebox gets, whichever file it opens.
//!
//! **The query planner stability guarantee (QPSG) is on.** SQLite, as rusqlite builds it
//! (`SQLITE_ENABLE_STAT4`), marks every statement with a `column = ?` term or a `LIMIT ?` as
//! "re-plan when this parameter is rebound", and `sqlite3_clear_bindings` — which rusqlite's
//! statement cache calls each time a statement goes back into the cache — then expires the
//! statement. So every cached statement was parsed and planned again on its next use: about a
//! third of a member lookup's CPU time went to SQLite's parser and planner. With QPSG the plan
//! is made once and kept; storebox keeps no `sqlite_stat4` statistics for a plan to depend on,
//! so no plan changes.
//!
//! **The writers' WAL frames go out in one write a transaction** ([`coalesce`]).

use std::path::Path;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};

pub(crate) mod coalesce;

/// Opens the connection that writes `path` (one a file), with its WAL writes coalesced (see
/// [`coalesce`]); should SQLite refuse the VFS, with the default one, and a warning.
pub(crate) fn open_writer(path: &Path, flags: OpenFlags) -> rusqlite::Result<Connection> {
    match coalesce::vfs() {
        Ok(vfs) => Connection::open_with_flags_and_vfs(path, flags, vfs),
        Err(e) => {
            tracing::warn!(error = %e, "WAL writes are not coalesced");
            Connection::open_with_flags(path, flags)
        }
    }
}

/// How long a connection waits for another's lock before SQLite gives up (`SQLITE_BUSY`): the
/// journal's and the cache's connections, their checkpoint threads.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `f` on `conn` waiting at most `wait`, not [`BUSY_TIMEOUT`], for another connection's
/// lock, which it waits again after: for a try that must not hold others up (a write probe
/// while another process may hold the lock, a scrub beside a backup's long read).
pub(crate) fn waiting_at_most<T>(
    conn: &Connection,
    wait: Duration,
    f: impl FnOnce(&Connection) -> T,
) -> T {
    let _ = conn.busy_timeout(wait);
    let out = f(conn);
    let _ = conn.busy_timeout(BUSY_TIMEOUT);
    out
}

/// Whether an error means "cannot write this file now" (disk full, read-only, an I/O error,
/// locked by another process past the busy timeout) rather than a bug or damage: a request
/// refused for it is answered `503`, and the terminal may retry.
pub(crate) fn is_unwritable(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::*;
    matches!(
        e.sqlite_error_code(),
        Some(
            DiskFull
                | ReadOnly
                | SystemIoFailure
                | CannotOpen
                | FileLockingProtocolFailed
                | DatabaseBusy
                | DatabaseLocked
        )
    )
}

/// Applies the settings above to a newly opened connection.
pub(crate) fn tune(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::params;

    /// The regression: a cached statement re-prepared on every use.
    #[test]
    fn a_cached_statement_is_prepared_once() {
        let conn = Connection::open_in_memory().unwrap();
        tune(&conn).unwrap();
        conn.execute_batch(
            "CREATE TABLE t (k BLOB PRIMARY KEY, v INTEGER) WITHOUT ROWID;
             INSERT INTO t VALUES (x'01', 1), (x'02', 2);",
        )
        .unwrap();
        for i in 0..10u8 {
            let mut st = conn
                .prepare_cached("SELECT v FROM t WHERE k = ?1 LIMIT ?2")
                .unwrap();
            let _: Option<i64> = st
                .query_row(params![[i % 2 + 1], i64::from(i) + 1], |r| r.get(0))
                .ok();
        }
        let st = conn
            .prepare_cached("SELECT v FROM t WHERE k = ?1 LIMIT ?2")
            .unwrap();
        assert_eq!(
            st.get_status(rusqlite::StatementStatus::RePrepare),
            0,
            "re-prepared"
        );
    }
}

//! The cache file: `cache.sqlite3`, its schema and connections.
//!
//! Members are rows of a rowid table; the index tables map a key to that integer rowid (one
//! short B-tree seek each, half the cost of text-keyed tables at a million members).
//!
//! WAL with `synchronous=NORMAL`: a commit is not fsynced (the journal is the durable record and
//! replays anything the cache lost), yet a power cut never corrupts the file. Each connection's
//! page cache is a share of `cache_capacity_mb`, so memory stays bounded however many members
//! the file holds.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags};

use super::{CacheError, sql_err};

/// The cache file name inside the data directory.
pub const FILE_NAME: &str = "cache.sqlite3";

/// Version of the cache layout; a cache with another version is rebuilt from the journal.
pub(super) const LAYOUT_VERSION: &str = "7";

/// Read connections kept open.
pub(super) const READERS: usize = 4;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS members (rid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS idx_phone (k BLOB PRIMARY KEY, rid INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idx_card (k BLOB PRIMARY KEY, rid INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idx_tail (k BLOB NOT NULL, rid INTEGER NOT NULL, PRIMARY KEY (k, rid)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idx_name (k BLOB NOT NULL, rid INTEGER NOT NULL, PRIMARY KEY (k, rid)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS products (sku TEXT PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idx_barcode (k BLOB PRIMARY KEY, id TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stock (sku TEXT PRIMARY KEY, below INTEGER NOT NULL, data BLOB NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS stock_below ON stock(below, sku);
CREATE TABLE IF NOT EXISTS coupons (code TEXT PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS staff (staff_no TEXT PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sessions (k BLOB PRIMARY KEY, expires_at TEXT NOT NULL, data BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS feedback (id TEXT PRIMARY KEY, open INTEGER NOT NULL, data BLOB NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS feedback_open ON feedback(open, id);
CREATE TABLE IF NOT EXISTS campaigns (id TEXT PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS strikes (scope TEXT PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS occasions (code TEXT PRIMARY KEY) WITHOUT ROWID;
";

/// Opens a connection with the cache's settings; `cache_kib` is its page-cache share.
pub(super) fn connect(path: &Path, write: bool, cache_kib: u64) -> Result<Connection, CacheError> {
    let flags = if write {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
    } else {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(sql_err("opening the cache"))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(sql_err("setting the cache busy timeout"))?;
    crate::sqlite::tune(&conn).map_err(sql_err("tuning a cache connection"))?;
    conn.set_prepared_statement_cache_capacity(128);
    conn.execute_batch(&format!(
        "PRAGMA cache_size = -{cache_kib}; PRAGMA temp_store = MEMORY; PRAGMA mmap_size = 0;"
    ))
    .map_err(sql_err("setting cache pragmas"))?;
    if write {
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(sql_err("enabling WAL on the cache"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(CacheError::Corrupt(format!("journal_mode is {mode}")));
        }
        // Checkpoints mostly happen on a background thread (`Checkpointer`); the writer's own
        // automatic checkpoint is only a ceiling on the WAL.
        // secure_delete: an erased member's sealed profile is overwritten with zeros, not left
        // in a free page.
        conn.execute_batch(
            "PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 4000;
             PRAGMA secure_delete = ON;",
        )
        .map_err(sql_err("setting cache pragmas"))?;
    }
    Ok(conn)
}

/// Creates the tables of a new cache, and the tables added since its layout version to an
/// existing one (every statement is `IF NOT EXISTS`; a table added this way is one whose
/// projection an older cache never needed, so nothing has to be replayed into it).
pub(super) fn create_schema(conn: &Connection) -> Result<(), CacheError> {
    conn.execute_batch(SCHEMA)
        .map_err(sql_err("creating the cache schema"))
}

/// A small pool of read-only connections, checked out for one query at a time.
pub(super) struct ReadPool {
    path: std::path::PathBuf,
    cache_kib: u64,
    idle: Mutex<Vec<Connection>>,
}

impl ReadPool {
    pub(super) fn new(path: &Path, cache_kib: u64) -> ReadPool {
        ReadPool {
            path: path.to_path_buf(),
            cache_kib,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `f` on a read connection (on the current thread: point reads take microseconds).
    pub(super) fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, CacheError>,
    ) -> Result<T, CacheError> {
        let conn = match self.idle.lock().ok().and_then(|mut v| v.pop()) {
            Some(c) => c,
            None => connect(&self.path, false, self.cache_kib)?,
        };
        let out = f(&conn);
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < READERS
        {
            idle.push(conn);
        }
        out
    }
}

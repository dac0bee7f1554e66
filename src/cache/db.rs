//! The cache file: `cache.sqlite3`, its schema and connections; opening it checked (layout
//! and store key), moving a damaged one aside.
//!
//! Members are rows of a rowid table; the index tables map a key to that integer rowid (one
//! short B-tree seek each, half the cost of text-keyed tables at a million members).
//!
//! WAL with `synchronous=NORMAL`: a commit is not fsynced (the journal is the durable record and
//! replays anything the cache lost), yet a power cut never corrupts the file. Each connection's
//! page cache is a share of `cache_capacity_mb`, so memory stays bounded however many members
//! the file holds.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

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
CREATE TABLE IF NOT EXISTS waiting_prices (sku TEXT PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS staff (staff_no TEXT PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sessions (k BLOB PRIMARY KEY, expires_at TEXT NOT NULL, data BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS feedback (id TEXT PRIMARY KEY, open INTEGER NOT NULL, data BLOB NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS feedback_open ON feedback(open, id);
CREATE TABLE IF NOT EXISTS campaigns (id TEXT PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS strikes (scope TEXT PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS occasions (code TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counts (name TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS members_count_in AFTER INSERT ON members
  BEGIN UPDATE counts SET n = n + 1 WHERE name = 'members'; END;
CREATE TRIGGER IF NOT EXISTS members_count_out AFTER DELETE ON members
  BEGIN UPDATE counts SET n = n - 1 WHERE name = 'members'; END;
";

/// Opens a connection with the cache's settings; `cache_kib` is its page-cache share.
pub(super) fn connect(path: &Path, write: bool, cache_kib: u64) -> Result<Connection, CacheError> {
    let flags = if write {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
    } else {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = if write {
        crate::sqlite::open_writer(path, flags)
    } else {
        Connection::open_with_flags(path, flags)
    }
    .map_err(sql_err("opening the cache"))?;
    conn.busy_timeout(crate::sqlite::BUSY_TIMEOUT)
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
        // in a free page. journal_size_limit: a WAL a long read (a scan of every member, a
        // backup's copy) let grow past the 16 MiB ceiling is cut back to twice that when the
        // writer starts it over, instead of keeping its largest size while the daemon runs
        // (as the journal's, `journal::WAL_KEPT`).
        conn.execute_batch(
            "PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 4000;
             PRAGMA journal_size_limit = 33554432; PRAGMA secure_delete = ON;",
        )
        .map_err(sql_err("setting cache pragmas"))?;
    }
    Ok(conn)
}

/// Creates the tables of a new cache, and the tables added since its layout version to an
/// existing one (every statement is `IF NOT EXISTS`; a table added this way is one whose
/// projection an older cache never needed, so nothing has to be replayed into it).
///
/// The member count is kept by triggers in `counts`, in the transaction that adds or removes a
/// member, whichever path writes it (a sale's batch, an import, a rebuild): counting a million
/// rows reads the whole table, too slow for every `/metrics` scrape. A cache from before the
/// counter is counted once, here.
pub(super) fn create_schema(conn: &Connection) -> Result<(), CacheError> {
    let run = || -> rusqlite::Result<()> {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(SCHEMA)?;
        // Levels without a safety stock were once flagged below it when negative: unflag them
        // (through the index, a no-op once done).
        tx.execute(
            "UPDATE stock SET below = 0 WHERE below = 1 AND json_valid(CAST(data AS TEXT))
               AND COALESCE(json_extract(CAST(data AS TEXT), '$.safety_stock'), 0) <= 0",
            [],
        )?;
        let counted = tx
            .prepare("SELECT 1 FROM counts WHERE name = 'members'")?
            .exists([])?;
        if !counted {
            tx.execute(
                "INSERT INTO counts (name, n) SELECT 'members', COUNT(*) FROM members",
                [],
            )?;
        }
        tx.commit()
    };
    run().map_err(sql_err("creating the cache schema"))
}

/// Opens the writer, creates the schema and checks the layout stamp and the fingerprint of the
/// store key the cache was sealed with.
pub(super) fn open_checked(
    path: &Path,
    share_kib: u64,
    key: &str,
) -> Result<Connection, CacheError> {
    let conn = connect(path, true, share_kib)?;
    let stamp: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'layout'", [], |r| {
            r.get(0)
        })
        .optional()
        .or_else(|e| match e {
            // A new file has no meta table yet.
            rusqlite::Error::SqliteFailure(_, Some(ref m)) if m.contains("no such table") => {
                Ok(None)
            }
            other => Err(other),
        })
        .map_err(sql_err("reading the cache layout"))?;
    match stamp {
        Some(v) if v == LAYOUT_VERSION => {
            let sealed_with: Option<String> = conn
                .query_row("SELECT value FROM meta WHERE key = 'key'", [], |r| r.get(0))
                .optional()
                .map_err(sql_err("reading the cache's key fingerprint"))?;
            if sealed_with.as_deref() != Some(key) {
                return Err(CacheError::Corrupt(
                    "it was written with another store key".into(),
                ));
            }
            let unfinished: bool = conn
                .prepare("SELECT 1 FROM meta WHERE key = ?1")
                .and_then(|mut st| st.exists(params![super::bulk::MARKER]))
                .map_err(sql_err("reading the cache's bulk marker"))?;
            if unfinished {
                return Err(CacheError::Corrupt(
                    "a bulk write (import or rebuild) stopped before writing its index entries"
                        .into(),
                ));
            }
            create_schema(&conn)?;
            // Not a reason to stop the till (a full disk, say): tried again at the next open.
            if let Err(e) = complete_old_erasures(&conn) {
                tracing::warn!(error = %e, "what older erasures left is not cleared yet");
            }
            Ok(conn)
        }
        Some(v) => Err(CacheError::Corrupt(format!(
            "layout {v}, this storebox uses {}",
            LAYOUT_VERSION
        ))),
        None => {
            let tables: i64 = conn
                .query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))
                .map_err(sql_err("reading the cache schema"))?;
            if tables > 0 {
                return Err(CacheError::Corrupt("the layout stamp is missing".into()));
            }
            create_schema(&conn)?;
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('layout', ?1), ('key', ?2), (?3, '1')",
                params![LAYOUT_VERSION, key, ERASURES_COMPLETED],
            )
            .map_err(sql_err("stamping the cache layout"))?;
            Ok(conn)
        }
    }
}

/// Marks a cache whose erased members hold no tags and no feedback text: made by this
/// storebox, or cleared once.
const ERASURES_COMPLETED: &str = "erasures_completed";

/// Clears what a storebox from before 2026-12-07 left of the members it erased — their tags
/// (its erasure cleared only the profile until 2026-12-06) and the text of their feedback and
/// the staff's notes on it (kept until 2026-12-07) — at the first open of such a cache: the
/// cache's layout did not change when erasure began to clear them, so nothing else would.
/// Members and feedback are read once; only what changes is kept in memory.
fn complete_old_erasures(conn: &Connection) -> Result<(), CacheError> {
    let err = || sql_err("clearing what older erasures left");
    let done = conn
        .prepare("SELECT 1 FROM meta WHERE key = ?1")
        .and_then(|mut st| st.exists(params![ERASURES_COMPLETED]))
        .map_err(err())?;
    if done {
        return Ok(());
    }
    let tx = conn.unchecked_transaction().map_err(err())?;
    let mut erased = std::collections::HashSet::new();
    let mut members = Vec::new();
    {
        let mut st = tx
            .prepare("SELECT rid, id, data FROM members")
            .map_err(err())?;
        let mut rows = st.query([]).map_err(err())?;
        while let Some(row) = rows.next().map_err(err())? {
            let data: Vec<u8> = row.get(2).map_err(err())?;
            let (is_erased, cleared) = super::codec::erased_without_tags(&data);
            if is_erased {
                erased.insert(row.get::<_, String>(1).map_err(err())?);
            }
            if let Some(cleared) = cleared {
                members.push((row.get::<_, i64>(0).map_err(err())?, cleared));
            }
        }
    }
    let mut feedback = Vec::new();
    if !erased.is_empty() {
        let mut st = tx.prepare("SELECT id, data FROM feedback").map_err(err())?;
        let mut rows = st.query([]).map_err(err())?;
        while let Some(row) = rows.next().map_err(err())? {
            let data: Vec<u8> = row.get(1).map_err(err())?;
            if let Some(cleared) = super::codec::feedback_without_text(&data, &erased) {
                feedback.push((row.get::<_, String>(0).map_err(err())?, cleared));
            }
        }
    }
    for (rid, data) in &members {
        tx.execute(
            "UPDATE members SET data = ?1 WHERE rid = ?2",
            params![data, rid],
        )
        .map_err(err())?;
    }
    for (id, data) in &feedback {
        tx.execute(
            "UPDATE feedback SET data = ?1 WHERE id = ?2",
            params![data, id],
        )
        .map_err(err())?;
    }
    tx.execute(
        "INSERT INTO meta (key, value) VALUES (?1, '1')",
        params![ERASURES_COMPLETED],
    )
    .map_err(err())?;
    tx.commit().map_err(err())?;
    if !members.is_empty() || !feedback.is_empty() {
        tracing::info!(
            members = members.len(),
            feedback = feedback.len(),
            "cleared the tags and feedback text an older storebox left on erased members"
        );
    }
    Ok(())
}

/// Where the damage marker of the cache at `path` goes.
pub(super) fn damage_marker(path: &Path) -> PathBuf {
    path.with_extension("sqlite3-damaged")
}

/// Where the marker of a cache still being filled goes: new or rebuilt, the journal not yet
/// replayed into it or HQ not yet asked for its data (see `Cache::rebuild_done`).
pub(super) fn unfilled_marker(path: &Path) -> PathBuf {
    path.with_extension("sqlite3-unfilled")
}

/// The damage marker of the daemon's (or an offline command's) cache: set by
/// [`super::watch_damage`], so that caches opened by tests in one process never mark each other.
static DAMAGE_MARKER: Mutex<Option<PathBuf>> = Mutex::new(None);
/// Whether damage was found in the watched cache since the start.
static DAMAGED: AtomicBool = AtomicBool::new(false);

/// Makes [`note_damage`] mark the cache whose marker is `marker`.
pub(super) fn watch_damage(marker: &Path) {
    if let Ok(mut m) = DAMAGE_MARKER.lock() {
        *m = Some(marker.to_path_buf());
    }
}

/// The watched cache was rebuilt: damage found before (opening it) is mended.
pub(super) fn damage_mended() {
    DAMAGED.store(false, Ordering::Relaxed);
}

/// Whether the watched cache was found damaged since the start.
pub(super) fn damage_noted() -> bool {
    DAMAGED.load(Ordering::Relaxed)
}

/// Records that SQLite found the watched cache malformed while in use: it opens fine (only its
/// first pages are read then), so without this the damaged rows would fail every request that
/// reads them, restart after restart. The next start moves it aside and rebuilds it from the
/// journal; until then `/healthz` says so.
pub(super) fn note_damage() {
    let Some(marker) = DAMAGE_MARKER.lock().ok().and_then(|m| m.clone()) else {
        return;
    };
    if DAMAGED.swap(true, Ordering::Relaxed) && marker.exists() {
        return;
    }
    match std::fs::write(&marker, b"") {
        Ok(()) => tracing::error!(
            "the cache is damaged; it is rebuilt from the journal at the next start"
        ),
        Err(e) => {
            tracing::error!(error = %e, "the cache is damaged and the marker cannot be written")
        }
    }
}

/// Moves the cache file (and its WAL) aside as `cache.broken-<time>.sqlite3`, and deletes
/// the copies moved aside before it: the newest is kept for a look at what went wrong, and a
/// box whose cache was rebuilt now and then does not fill its disk with old copies (each as
/// large as the cache: ~600 MiB for a million members).
pub(super) fn move_aside(path: &Path) -> Result<PathBuf, CacheError> {
    let aside = rename_aside(path)?;
    if let (Some(dir), Some(keep)) = (aside.parent(), aside.file_name()) {
        remove_older_copies(dir, &keep.to_string_lossy());
    }
    Ok(aside)
}

/// Deletes the `cache.broken-*` files of `dir` but those of the copy `keep` (its WAL and
/// shared-memory files start with its name). A file that cannot be deleted is logged and left.
fn remove_older_copies(dir: &Path, keep: &str) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, dir = %dir.display(), "cannot list old cache copies");
            return;
        }
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("cache.broken-") || name.starts_with(keep) {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => tracing::info!(file = %name, "deleted an older cache copy moved aside"),
            Err(e) => tracing::warn!(error = %e, file = %name, "cannot delete an old cache copy"),
        }
    }
}

fn rename_aside(path: &Path) -> Result<PathBuf, CacheError> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3f");
    let aside = path.with_file_name(format!("cache.broken-{stamp}.sqlite3"));
    if path.exists() {
        std::fs::rename(path, &aside)?;
    }
    for ext in ["sqlite3-wal", "sqlite3-shm"] {
        let side = path.with_extension(ext);
        if side.exists() {
            std::fs::rename(&side, aside.with_extension(ext))?;
        }
    }
    Ok(aside)
}

/// A read connection and the cache generation its open read transaction saw.
struct Reader {
    conn: Connection,
    /// `Some(g)`: a read transaction is open on a snapshot that includes every write up to
    /// generation `g`. `None`: no transaction is open.
    snapshot: Option<u64>,
}

impl Reader {
    /// Ends the read transaction, if one is open (it only read: nothing is lost).
    fn end(&mut self) {
        if self.snapshot.take().is_some()
            && let Err(e) = self
                .conn
                .prepare_cached("COMMIT")
                .and_then(|mut st| st.execute([]))
        {
            tracing::warn!(error = %e, "ending a cache read transaction failed");
        }
    }
}

/// A small pool of read-only connections, checked out for one query at a time.
///
/// A connection keeps its read transaction open between queries for as long as the cache has
/// not been written: beginning and ending one costs a round of WAL locking (system calls)
/// and page-cache validation, about a sixth of a member lookup. Every write through the
/// [`CacheWriter`](super::CacheWriter) moves the generation on ([`ReadPool::note_write`]),
/// after its commit, and a connection whose snapshot is older starts a new transaction before
/// it answers, so a read never misses a write that was acknowledged before it began. Idle
/// connections holding an older snapshot keep the WAL from being checkpointed and restarted;
/// [`ReadPool::release_stale`] ends their transactions (the cache's checkpoint thread calls it
/// before each checkpoint), and while a checkpoint waits to empty the WAL (a scrub after an
/// erasure) connections end their transaction after every read ([`ReadPool::hold_snapshots`]).
pub(super) struct ReadPool {
    path: std::path::PathBuf,
    cache_kib: u64,
    idle: Mutex<Vec<Reader>>,
    /// Writes committed to the cache so far.
    generation: AtomicU64,
    /// Whether connections keep their snapshot between reads (off while a checkpoint waits to
    /// empty the WAL).
    hold: AtomicBool,
}

impl ReadPool {
    pub(super) fn new(path: &Path, cache_kib: u64) -> ReadPool {
        ReadPool {
            path: path.to_path_buf(),
            cache_kib,
            idle: Mutex::new(Vec::new()),
            generation: AtomicU64::new(0),
            hold: AtomicBool::new(true),
        }
    }

    /// Records that a write was committed (call after the commit returned).
    pub(super) fn note_write(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The generation counter (writes committed so far).
    pub(super) fn generation(&self) -> &AtomicU64 {
        &self.generation
    }

    /// Runs `f` on a read connection (on the current thread: point reads take microseconds),
    /// inside a read transaction whose snapshot includes every write committed before the call.
    pub(super) fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, CacheError>,
    ) -> Result<T, CacheError> {
        self.with_snapshot(|c, _| f(c))
    }

    /// [`ReadPool::with`], also telling `f` the generation its snapshot includes.
    pub(super) fn with_snapshot<T>(
        &self,
        f: impl FnOnce(&Connection, u64) -> Result<T, CacheError>,
    ) -> Result<T, CacheError> {
        let mut r = match self.idle.lock().ok().and_then(|mut v| v.pop()) {
            Some(r) => r,
            None => Reader {
                conn: connect(&self.path, false, self.cache_kib)?,
                snapshot: None,
            },
        };
        // Read before the transaction starts: its snapshot is at least this new.
        let now = self.generation.load(Ordering::Acquire);
        if r.snapshot != Some(now) {
            r.end();
            r.conn
                .prepare_cached("BEGIN")
                .and_then(|mut st| st.execute([]))
                .map_err(sql_err("starting a cache read"))?;
            r.snapshot = Some(now);
        }
        let out = f(&r.conn, now);
        if out.is_err() || !self.hold.load(Ordering::Acquire) {
            r.end();
        }
        match self.idle.lock() {
            Ok(mut idle) if idle.len() < READERS => idle.push(r),
            _ => r.end(),
        }
        out
    }

    /// Whether connections keep their snapshot between reads.
    pub(super) fn hold_snapshots(&self, hold: bool) {
        self.hold.store(hold, Ordering::Release);
    }

    /// Ends the read transactions of idle connections whose snapshot is older than the last
    /// write (`all`: of every idle connection, before a checkpoint that must empty the WAL).
    pub(super) fn release_stale(&self, all: bool) {
        let now = self.generation.load(Ordering::Acquire);
        if let Ok(mut idle) = self.idle.lock() {
            for r in idle.iter_mut() {
                if all || r.snapshot.is_some_and(|g| g != now) {
                    r.end();
                }
            }
        }
    }
}

/// Whether an error opening the cache means the file is damaged or of another layout (and
/// is rebuilt from the journal), rather than the machine's trouble (permissions, I/O, space,
/// a lock), which a rebuild would not mend.
pub(super) fn is_damage(e: &CacheError) -> bool {
    use rusqlite::ErrorCode::*;
    match e {
        CacheError::Sql { source, .. } => !matches!(
            source.sqlite_error_code(),
            Some(
                CannotOpen
                    | PermissionDenied
                    | ReadOnly
                    | SystemIoFailure
                    | DiskFull
                    | DatabaseBusy
                    | DatabaseLocked
                    | OutOfMemory
            )
        ),
        CacheError::Io(_) => false,
        CacheError::Decode { .. } | CacheError::Corrupt(_) => true,
    }
}

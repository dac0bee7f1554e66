//! The journal: SQLite book of record (design section 1).
//!
//! One file, `journal.sqlite3`, in WAL mode with `synchronous=FULL`: a commit returns only when
//! the WAL is fsynced, which is the durability point of every store fact. Tables:
//!
//! - `events`: append-only, `seq` gap-free (assigned by the single writer), UUIDv7 `id`, kind,
//!   store-local time and day, a `subject` (sale id, member id, sku) and the data as JSON with
//!   personal data sealed by the [`PiiCodec`](crate::pii::PiiCodec). Every index costs a page
//!   in each sale's commit, so there are only two: sales and refunds by sale id (partial), and
//!   `days`, the first `seq` of each store-local day (seq grows with time, so a day is a range);
//! - `idempotency`: `(terminal, key)` → hash of the request body and the `seq` of the event it
//!   produced, written in the same transaction as the event; with `idempotency_previous`, the
//!   generation before it (keys are forgotten a generation at a time: `store::idem_rotate`);
//! - `outbox`: how far HQ has acknowledged (used by the uplink);
//! - `print_jobs`: receipts (and drawer openings) waiting for their printer;
//! - `member_keys`: each member's data key, wrapped with the store key (see [`crate::pii`]);
//! - `audit`: sensitive actions in a keyed hash chain (see [`audit`]);
//! - `meta`: schema version, the store id the file belongs to, the fingerprint of the store
//!   key it was written with, and when the current idempotency generation began.
//!
//! The writer side ([`Journal`]) is owned by the ledger thread; readers use [`JournalReader`],
//! a small pool of read-only connections that WAL lets run beside the writer.

pub mod audit;
mod checkpoint;
mod reader;
pub mod store;

use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

pub use checkpoint::{Checkpointer, Moment, WAL_CEILING_PAGES};
pub use reader::JournalReader;
pub use store::{IdemRecord, StoredEvent};

/// Journal failures.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Occurs when SQLite fails; `context` says what was being done.
    #[error("{context}: {source}")]
    Sqlite {
        /// What storebox was doing.
        context: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// Occurs when the disk is full or the file cannot be written: the write is refused whole.
    #[error("the journal cannot be written ({0})")]
    Unwritable(String),
    /// Occurs when the data directory belongs to another store.
    #[error("this journal belongs to store {found}, not {expected}")]
    WrongStore {
        /// Store id in the file.
        found: String,
        /// Store id in the config.
        expected: String,
    },
    /// Occurs when a stored event cannot be decoded (damaged file or newer schema).
    #[error("event seq {seq} cannot be decoded: {reason}")]
    Corrupt {
        /// The event.
        seq: u64,
        /// Why.
        reason: String,
    },
    /// Occurs when the file was written by a newer storebox.
    #[error("journal schema {0} is newer than this storebox understands")]
    NewerSchema(i64),
    /// Occurs when the journal's file or its WAL is no longer at its path (the data directory
    /// removed, moved or replaced while the daemon runs): SQLite would go on writing to the
    /// file it holds open, which no later start finds.
    #[error(
        "{path} no longer names the journal storebox has open ({why}): the data directory was \
         removed, moved or replaced while it ran; nothing is recorded until it is back where it \
         was, or storebox is restarted"
    )]
    Misplaced {
        /// The file's path.
        path: std::path::PathBuf,
        /// What is there now.
        why: String,
    },
}

impl JournalError {
    pub(crate) fn sql(context: &'static str) -> impl FnOnce(rusqlite::Error) -> JournalError {
        move |source| {
            if crate::sqlite::is_unwritable(&source) {
                JournalError::Unwritable(source.to_string())
            } else {
                JournalError::Sqlite { context, source }
            }
        }
    }

    /// Whether the error means "cannot write now" (disk full, read-only, IO error, locked for
    /// longer than the busy timeout): the API answers `503` and the terminal may retry.
    pub fn is_unwritable(&self) -> bool {
        matches!(
            self,
            JournalError::Unwritable(_) | JournalError::Misplaced { .. }
        )
    }
}

/// The WAL file of the SQLite file at `path`.
fn wal_path(path: &Path) -> std::path::PathBuf {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    std::path::PathBuf::from(wal)
}

const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The journal file name inside the data directory.
pub const FILE_NAME: &str = "journal.sqlite3";

/// The journal's WAL size kept on disk once a checkpoint let the writer start it over: well
/// above what a burst of sales writes between checkpoints (the writer's own checkpoint at 1,000
/// pages, ~4 MiB), so the file keeps being overwritten, not grown, in ordinary work.
const WAL_KEPT: u64 = 16 * 1024 * 1024;

/// The writer's handle on the journal. Owned by exactly one thread.
pub struct Journal {
    conn: Connection,
    last_seq: u64,
    dir: std::path::PathBuf,
    /// The journal's file and its WAL as the writer opened them: path, (device, inode).
    files: Vec<(std::path::PathBuf, (u64, u64))>,
}

/// The (device, inode) of the file at `path`.
fn file_id(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino()))
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir`, checking it belongs to `store_id`.
    pub fn open(dir: &Path, store_id: &str) -> Result<Journal, JournalError> {
        let path = dir.join(FILE_NAME);
        let conn = crate::sqlite::open_writer(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(JournalError::sql("opening the journal"))?;
        // SQLite opens a file this user may not write read-only, without a word; the first
        // sale would then fail with "attempt to write a readonly database" and no file named.
        if conn
            .is_readonly(rusqlite::MAIN_DB)
            .map_err(JournalError::sql("opening the journal"))?
        {
            return Err(JournalError::Unwritable(format!(
                "{} is read-only to this user (uid {}): check the owner and mode of it and of \
                 its -wal and -shm files",
                path.display(),
                // SAFETY: getuid(2) cannot fail.
                unsafe { libc::getuid() }
            )));
        }
        conn.busy_timeout(crate::sqlite::BUSY_TIMEOUT)
            .map_err(JournalError::sql("setting busy timeout"))?;
        crate::sqlite::tune(&conn).map_err(JournalError::sql("tuning the journal"))?;
        // Every statement the ledger runs stays prepared (the default 16 made a batch that
        // touches many tables re-prepare statements over and over).
        conn.set_prepared_statement_cache_capacity(128);
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(JournalError::sql("enabling WAL"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(JournalError::Unwritable(format!(
                "journal_mode is {mode}, WAL is required"
            )));
        }
        // Checkpoints run on their own thread (see `Checkpointer`); the writer's automatic
        // checkpoint at 1,000 pages only bounds the WAL in a burst of sales (the reasons are
        // in `checkpoint`). The writer keeps the hot index pages in an 8 MiB page cache.
        // journal_size_limit: a WAL that a long read (a backup's copy, a year's report) let grow
        // past its working size is cut back to it when the writer next starts it over;
        // without a limit the file (kept, below) stays at its largest for good.
        conn.execute_batch(&format!(
            "PRAGMA synchronous=FULL;
             PRAGMA foreign_keys=ON;
             PRAGMA wal_autocheckpoint=1000;
             PRAGMA journal_size_limit={WAL_KEPT};
             PRAGMA cache_size=-8192;"
        ))
        .map_err(JournalError::sql("setting pragmas"))?;
        // Keep the WAL file when the last connection closes: a restarted daemon then overwrites
        // an allocated file instead of growing a new one, and an overwrite's fdatasync is about
        // twice as fast as an append's on ext4 (no metadata to journal).
        let mut persist = 1;
        conn.file_control(
            Some(rusqlite::MAIN_DB),
            rusqlite::FileControl::PersistWal(&mut persist),
        )
        .map_err(JournalError::sql("keeping the WAL file"))?;
        // The schema steps free no personal data (step 6 drops an index of idempotency keys,
        // which would otherwise be written again as zeros).
        migrate(&conn, store_id)?;
        // secure_delete: a deleted member key is overwritten with zeros, not left in a free page.
        conn.execute_batch("PRAGMA secure_delete=ON;")
            .map_err(JournalError::sql("setting pragmas"))?;
        let last_seq = store::last_seq(&conn)?;
        // Both files are open now (the reads above opened the WAL); a path that names another
        // file later is what `check_in_place` catches.
        let mut files = Vec::new();
        for p in [path.clone(), wal_path(&path)] {
            let id = file_id(&p).map_err(|e| {
                JournalError::Unwritable(format!("cannot stat {}: {e}", p.display()))
            })?;
            files.push((p, id));
        }
        Ok(Journal {
            conn,
            last_seq,
            dir: dir.to_path_buf(),
            files,
        })
    }

    /// Whether the journal's file and its WAL are still the files the writer has open (two
    /// `stat`s). A data directory removed or moved while the daemon runs leaves SQLite writing
    /// to files that no longer have a name there: a sale committed to them is gone at the next
    /// start. The ledger asks this after each commit that wrote events, before it answers, and
    /// — once a commit found the files gone — before each batch until they are back.
    pub fn check_in_place(&self) -> Result<(), JournalError> {
        for (path, id) in &self.files {
            let why = match file_id(path) {
                Ok(now) if now == *id => continue,
                Ok(_) => "another file is there now".to_string(),
                Err(e) => e.to_string(),
            };
            return Err(JournalError::Misplaced {
                path: path.clone(),
                why,
            });
        }
        Ok(())
    }

    /// Sets the journal up for an offline command (a bulk import): its checkpoints are left
    /// to the checkpoint thread up to its ceiling, instead of the writer copying every 4 MiB
    /// of WAL itself after a commit (an import's commits are tens of MiB each), and the WAL is
    /// not cut back to [`WAL_KEPT`] between them (the daemon's writer does that next).
    pub fn set_offline(&self) -> Result<(), JournalError> {
        self.conn
            .execute_batch(&format!(
                "PRAGMA wal_autocheckpoint = {WAL_CEILING_PAGES}; PRAGMA journal_size_limit = -1;"
            ))
            .map_err(JournalError::sql("setting the journal up for offline work"))
    }

    /// The data directory the journal lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The highest `seq` committed (or staged in the open transaction).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Whether the journal takes a write now: one row of `meta` written and committed, without
    /// waiting out the busy timeout (another process's lock fails it at once). Tried after a
    /// refusal, while nothing else writes, so that `/healthz` recovers with the journal.
    pub fn probe_write(&mut self) -> Result<(), JournalError> {
        self.check_in_place()?;
        crate::sqlite::waiting_at_most(&self.conn, std::time::Duration::ZERO, |conn| {
            let tx = rusqlite::Transaction::new_unchecked(
                conn,
                rusqlite::TransactionBehavior::Immediate,
            )?;
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('write_probe', ?1)",
                [chrono::Utc::now().to_rfc3339()],
            )?;
            tx.commit()
        })
        .map_err(JournalError::sql("probing the journal"))
    }

    /// The connection, for the ledger's transactions.
    pub fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Read access for lookups outside a transaction.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Re-reads the last `seq` from the file (after a rolled-back transaction).
    pub fn resync_seq(&mut self) -> Result<(), JournalError> {
        self.last_seq = store::last_seq(&self.conn)?;
        Ok(())
    }

    /// Ties the journal to a store key: records `fingerprint` the first time, and afterwards
    /// returns the recorded fingerprint if it is a different one (the wrong key file).
    pub fn bind_key(&self, fingerprint: &str) -> Result<Option<String>, JournalError> {
        let found: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'key'", [], |r| r.get(0))
            .optional()
            .map_err(JournalError::sql("reading the key fingerprint"))?;
        match found {
            Some(f) if f == fingerprint => Ok(None),
            Some(f) => Ok(Some(f)),
            None => {
                self.conn
                    .execute(
                        "INSERT INTO meta (key, value) VALUES ('key', ?1)",
                        params![fingerprint],
                    )
                    .map_err(JournalError::sql("recording the key fingerprint"))?;
                Ok(None)
            }
        }
    }

    /// Records that `seq` was staged; the next event gets `seq + 1`.
    pub fn note_staged(&mut self, seq: u64) {
        self.last_seq = self.last_seq.max(seq);
    }
}

/// The schema, one step per version; a journal is brought up to date step by step, each step
/// in its own transaction with the version it reaches.
const MIGRATIONS: &[&str] = &[
    // 1: events, days, idempotency keys, outbox position.
    "CREATE TABLE events (
         seq         INTEGER PRIMARY KEY,
         id          TEXT    NOT NULL,
         kind        TEXT    NOT NULL,
         occurred_at TEXT    NOT NULL,
         day         TEXT    NOT NULL,
         subject     TEXT    NOT NULL,
         data        TEXT    NOT NULL
     );
     CREATE INDEX events_sales ON events(subject)
         WHERE kind IN ('sale.recorded', 'sale.refunded');
     CREATE TABLE days (
         day         TEXT    PRIMARY KEY,
         first_seq   INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE idempotency (
         terminal_id TEXT    NOT NULL,
         key         TEXT    NOT NULL,
         body_hash   TEXT    NOT NULL,
         seq         INTEGER NOT NULL REFERENCES events(seq),
         created_at  TEXT    NOT NULL,
         PRIMARY KEY (terminal_id, key)
     ) WITHOUT ROWID;
     CREATE TABLE outbox (
         id          INTEGER PRIMARY KEY CHECK (id = 1),
         acked_seq   INTEGER NOT NULL,
         last_ack_at TEXT
     );
     INSERT INTO outbox (id, acked_seq) VALUES (1, 0);",
    // 2: the print queue. A job lives here until its printer took the bytes, so a receipt
    //    waits out a printer that is off; printed jobs are deleted.
    "CREATE TABLE print_jobs (
         id          INTEGER PRIMARY KEY,
         device_id   TEXT    NOT NULL,
         kind        TEXT    NOT NULL,
         sale_id     TEXT    NOT NULL,
         created_at  TEXT    NOT NULL
     );",
    // 3: member data keys (see `pii`): deleting a member's row makes every sealed copy of
    //    their personal data in `events` unreadable.
    "CREATE TABLE member_keys (
         member_id   TEXT    PRIMARY KEY,
         wrapped     BLOB    NOT NULL
     ) WITHOUT ROWID;",
    // 4: the audit chain (see `audit`).
    "CREATE TABLE audit (
         n           INTEGER PRIMARY KEY,
         at          TEXT    NOT NULL,
         staff_no    TEXT    NOT NULL,
         terminal_id TEXT    NOT NULL,
         action      TEXT    NOT NULL,
         target      TEXT    NOT NULL,
         detail      TEXT    NOT NULL,
         prev        BLOB    NOT NULL,
         hash        BLOB    NOT NULL
     );",
    // 5: idempotency keys by age: the purge of expired keys (at start and hourly, on the
    //    ledger thread) read the whole table without it — 170 MB and 3–5 s on a cold start
    //    with a million keys, and a pause of the till's sales every hour.
    "CREATE INDEX idempotency_created ON idempotency(created_at);",
    // 6: idempotency keys in two generations instead of by age. The age index of step 5 was
    //    one more B-tree page in every sale's commit (6.1 WAL pages a sale became 4.8 in the
    //    bench store); keys now go into `idempotency` and, once it is `idempotency_days` old,
    //    it becomes `idempotency_previous` and the previous one is emptied
    //    (`store::idem_rotate`): a key is kept between one and two such periods, and
    //    forgetting is one delete of a whole table, not a search by age.
    "DROP INDEX IF EXISTS idempotency_created;
     CREATE TABLE idempotency_previous (
         terminal_id TEXT    NOT NULL,
         key         TEXT    NOT NULL,
         body_hash   TEXT    NOT NULL,
         seq         INTEGER NOT NULL REFERENCES events(seq),
         created_at  TEXT    NOT NULL,
         PRIMARY KEY (terminal_id, key)
     ) WITHOUT ROWID;
     INSERT OR REPLACE INTO meta (key, value)
         VALUES ('idempotency_since', strftime('%Y-%m-%dT%H:%M:%SZ', 'now'));",
    // 7: events of a day written after a later day's first event (the clock went back across
    //    midnight): a day's events were read up to the next day's first `seq` and missed them.
    //    `days_late` holds each such day's last `seq` (`store::insert_event` keeps it); the
    //    journal so far is read once for them (`day_bounds`: where each day's reading ended).
    "CREATE TABLE days_late (
         day         TEXT    PRIMARY KEY,
         last_seq    INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE TEMP TABLE day_bounds (
         day         TEXT    PRIMARY KEY,
         next_first  INTEGER NOT NULL
     ) WITHOUT ROWID;
     INSERT INTO day_bounds
         SELECT d.day, (SELECT n.first_seq FROM days n WHERE n.day > d.day ORDER BY n.day LIMIT 1)
                AS next_first
         FROM days d WHERE next_first IS NOT NULL;
     INSERT INTO days_late (day, last_seq)
         SELECT e.day, MAX(e.seq) FROM events e JOIN day_bounds b ON b.day = e.day
         WHERE e.seq >= b.next_first GROUP BY e.day;
     DROP TABLE day_bounds;",
    // 8: the idempotency key a member was registered with: its body hash comes from their
    //    name and phone, so an erasure forgets the key with the member's data key
    //    (`store::idem_forget_member`). Registrations before this step are not in it.
    "CREATE TABLE member_idempotency (
         member_id   TEXT    PRIMARY KEY,
         terminal_id TEXT    NOT NULL,
         key         TEXT    NOT NULL
     ) WITHOUT ROWID;",
    // 9: the refund a print job's slip is of (`kind = 'refund'`; a sale may have several).
    "ALTER TABLE print_jobs ADD COLUMN refund_id TEXT;",
    // 10: the alerts by source, so that a watch finds the last thing it told HQ (the outbox
    //     alarm's `outbox_backlog` or `outbox_ok`, the disk's, the backups', a device's)
    //     however long ago it was said (`store::backlog_alarm_raised`, `last_alert_from`).
    //     Partial: a sale's commit writes nothing to it. Built once from the journal so far.
    "CREATE INDEX events_alerts ON events(subject, seq) WHERE kind = 'device.alert';",
];

fn migrate(conn: &Connection, store_id: &str) -> Result<(), JournalError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;",
    )
    .map_err(JournalError::sql("creating meta"))?;
    let version: i64 = conn
        .query_row(
            "SELECT value FROM meta WHERE key='schema_version'",
            [],
            |r| r.get::<_, String>(0),
        )
        .optional()
        .map_err(JournalError::sql("reading schema version"))?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if version > SCHEMA_VERSION {
        return Err(JournalError::NewerSchema(version));
    }
    // Another store's journal (a config pointing at the wrong directory) is refused before
    // it is touched, not brought to this schema first.
    if version >= 1 {
        check_store(conn, store_id)?;
    }
    for (i, step) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let reached = i as i64 + 1;
        let tx = conn
            .unchecked_transaction()
            .map_err(JournalError::sql("starting a schema migration"))?;
        tx.execute_batch(step)
            .map_err(JournalError::sql("migrating the schema"))?;
        if reached == 1 {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('store_id', ?1)",
                params![store_id],
            )
            .map_err(JournalError::sql("writing meta"))?;
        }
        tx.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?1)",
            params![reached.to_string()],
        )
        .map_err(JournalError::sql("writing meta"))?;
        tx.commit()
            .map_err(JournalError::sql("committing a schema migration"))?;
    }
    check_store(conn, store_id)
}

fn check_store(conn: &Connection, store_id: &str) -> Result<(), JournalError> {
    let found: String = conn
        .query_row("SELECT value FROM meta WHERE key='store_id'", [], |r| {
            r.get(0)
        })
        .map_err(JournalError::sql("reading the store id"))?;
    if found != store_id {
        return Err(JournalError::WrongStore {
            found,
            expected: store_id.to_string(),
        });
    }
    Ok(())
}

//! The cache: members, products, stock, coupons and sessions (design section 1).
//!
//! Everything here can be rebuilt: projections of the journal are replayed from the journal, and
//! HQ's master data is resent by HQ. The cache is its own SQLite file (`cache.sqlite3`, WAL,
//! `synchronous=NORMAL`, a bounded page cache) — not sled, which the design first named: with a
//! million members sled needed 160 MiB just to open, over 2 s to start and 20–50 µs per lookup
//! on this hardware, where SQLite opens in a millisecond, stays within its configured page cache
//! and answers in ~10 µs (measurements in `docs/decisions.md`).
//!
//! [`Cache`] is the read side, shared by every handler. [`CacheWriter`] owns the one write
//! connection and lives in the ledger thread: projections are collected in a
//! [`Pending`] overlay and written after the journal commit. Every entity records the journal
//! `seq` last applied to it, so replaying an event twice changes nothing. A cache that does not
//! open, or has another layout, is moved aside and rebuilt rather than stopping the store.

mod bulk;
mod codec;
mod db;
mod hints;
mod keys;
mod marketing;
mod members;
mod memo;
mod pending;
mod project;
mod sessions;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};

use crate::domain::catalog::{Coupon, Product, StockLevel};
use crate::domain::member::Member;
use crate::domain::rules::Rules;
use crate::domain::sync::StaffRecord;
use crate::pii::{IndexField, PiiCodec};

pub use db::FILE_NAME;
pub use keys::MemberKeys;
pub use pending::Pending;
pub use project::project;
pub use sessions::Session;

/// Cache failures.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Occurs when SQLite fails; `context` says what was being done.
    #[error("{context}: {source}")]
    Sql {
        /// What storebox was doing.
        context: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// Occurs when a cached value cannot be decoded (damage, or a format from another version).
    #[error("cached {tree} entry {key} cannot be decoded: {reason}")]
    Decode {
        /// Table.
        tree: &'static str,
        /// Key (printable form).
        key: String,
        /// Why.
        reason: String,
    },
    /// Occurs when the cache file is unusable.
    #[error("the cache is unusable: {0}")]
    Corrupt(String),
    /// Occurs when the cache file cannot be moved aside.
    #[error("moving the cache aside: {0}")]
    Io(#[from] std::io::Error),
}

/// From now on, a cache in `dir` that SQLite finds damaged while in use is marked to be rebuilt
/// at the next start, and [`damage_noted`] says so (the daemon's and an offline command's
/// cache: one a process).
pub fn watch_damage(dir: &Path) {
    db::watch_damage(&db::damage_marker(&dir.join(db::FILE_NAME)));
}

/// Whether the watched cache was found damaged since the start (`/healthz`).
pub fn damage_noted() -> bool {
    db::damage_noted()
}

/// Whether the cache in `dir` is marked damaged (found so in use; the next start rebuilds it).
pub fn marked_damaged(dir: &Path) -> bool {
    db::damage_marker(&dir.join(db::FILE_NAME)).exists()
}

pub(crate) fn sql_err(context: &'static str) -> impl FnOnce(rusqlite::Error) -> CacheError {
    move |source| {
        if matches!(
            source.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
        ) {
            db::note_damage();
        }
        CacheError::Sql { context, source }
    }
}

struct Inner {
    path: PathBuf,
    readers: db::ReadPool,
    codec: PiiCodec,
    /// Sessions already read, so a request's token check costs no query or JSON decode.
    session_memo: sessions::Memo,
    /// Where members' phones and cards are (see [`hints`]).
    hints: hints::Hints,
}

/// Read access to the cache. Cheap to clone.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

/// The cache's one write connection. Owned by the ledger thread.
pub struct CacheWriter {
    conn: Connection,
    inner: Arc<Inner>,
    /// Member index entries deferred in bulk mode (see `bulk`), `None` outside it.
    bulk: std::cell::RefCell<Option<bulk::Bulk>>,
    /// Products and stock levels as committed, for the ledger's reads (see `memo`).
    memo: std::cell::RefCell<memo::Memo>,
}

/// What happened when the cache was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// The existing cache opened.
    Existing,
    /// There was no cache; a new one was created.
    Created,
    /// The existing cache could not be used and was moved to the path given; a new one was
    /// created and must be rebuilt from the journal and HQ.
    Rebuilt(PathBuf),
    /// A new or rebuilt cache whose filling an earlier start left unfinished (stopped during
    /// the journal's replay, or before HQ was asked for its data): it goes on from the journal
    /// `seq` it had reached, and HQ is asked.
    Resumed,
}

/// Tables keyed by a personal value (through the codec) or a barcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Idx {
    Phone,
    Card,
    Tail,
    Name,
    Barcode,
}

impl Idx {
    pub(crate) fn table(self) -> &'static str {
        match self {
            Idx::Phone => "idx_phone",
            Idx::Card => "idx_card",
            Idx::Tail => "idx_tail",
            Idx::Name => "idx_name",
            Idx::Barcode => "idx_barcode",
        }
    }

    /// Whether the index points at a member row (by rowid) rather than a product (by SKU).
    pub(crate) fn of_members(self) -> bool {
        !matches!(self, Idx::Barcode)
    }
}

impl Cache {
    /// Opens the cache in `dir`, moving aside a cache that fails to open or has another layout.
    pub fn open(
        dir: &Path,
        capacity_mb: u64,
        codec: PiiCodec,
    ) -> Result<(Cache, CacheWriter, Opened), CacheError> {
        let path = dir.join(db::FILE_NAME);
        // The page cache is shared out between the writer and the readers.
        let share_kib = (capacity_mb * 1024 / (db::READERS as u64 + 1)).max(256);
        let existed = path.exists();
        let key = codec.keys().fingerprint().to_string();
        // A cache found damaged while in use (a page SQLite reports as malformed) is rebuilt
        // now: opening it checks only its first pages.
        let marker = db::damage_marker(&path);
        let unfilled = db::unfilled_marker(&path);
        if !existed {
            // A new cache holds none of HQ's data: it is unfilled from before its first byte
            // (marked after, a start killed in between would leave a cache that opens as
            // filled, HQ never asked), until [`Cache::rebuild_done`]; a start stopped before
            // that goes on with it ([`Opened::Resumed`]) and asks.
            std::fs::write(&unfilled, b"")?;
        }
        let checked = if marker.exists() {
            Err(CacheError::Corrupt(
                "a read or write found it damaged while in use".into(),
            ))
        } else {
            db::open_checked(&path, share_kib, &key)
        };
        let (conn, opened) = match checked {
            Ok(conn) => (
                conn,
                if existed && unfilled.exists() {
                    Opened::Resumed
                } else if existed {
                    Opened::Existing
                } else {
                    Opened::Created
                },
            ),
            // Not damage (no permission, an I/O error, a full disk, a lock): moving the file
            // aside would not help and would throw away HQ's data in it. The start fails and
            // says why; the file stays as it is.
            Err(e) if !db::is_damage(&e) => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "the cache cannot be used; moving it aside and rebuilding");
                // The new cache is marked unfilled until the rebuild is done (the journal
                // replayed, HQ asked for its data: [`Cache::rebuild_done`]): a rebuild stopped
                // on the way (a full disk; systemd's start timeout, which a store's years of
                // journal can outlast on an SD card) goes on at the next start from where it
                // got to, rather than the file opening there as a filled cache, or being
                // moved aside and started over from the first event again.
                std::fs::write(&unfilled, b"")?;
                let aside = db::move_aside(&path)?;
                let conn = db::open_checked(&path, share_kib, &key)?;
                if let Err(e) = std::fs::remove_file(&marker)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    return Err(e.into());
                }
                // Damage the failed open noted is mended by this rebuild.
                db::damage_mended();
                (conn, Opened::Rebuilt(aside))
            }
        };
        let inner = Arc::new(Inner {
            readers: db::ReadPool::new(&path, share_kib),
            path,
            codec,
            session_memo: Default::default(),
            hints: Default::default(),
        });
        Ok((
            Cache {
                inner: inner.clone(),
            },
            CacheWriter {
                conn,
                inner,
                bulk: Default::default(),
                memo: Default::default(),
            },
            opened,
        ))
    }

    /// The personal-data codec the cache (and the journal) use.
    pub fn codec(&self) -> &PiiCodec {
        &self.inner.codec
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, CacheError>,
    ) -> Result<T, CacheError> {
        self.inner.readers.with(f)
    }

    /// The journal `seq` up to which projections have been applied.
    pub fn applied_seq(&self) -> Result<u64, CacheError> {
        self.read(applied_seq)
    }

    /// A new, rebuilt or resumed cache has the journal replayed into it and HQ has been asked
    /// for its data: the marker that makes the next start go on with it goes.
    pub fn rebuild_done(&self) {
        let marker = db::unfilled_marker(&self.inner.path);
        if let Err(e) = std::fs::remove_file(&marker)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, "cannot remove the cache's unfilled marker");
        }
    }

    /// Ends the read transactions idle connections keep open on an older snapshot, so that a
    /// checkpoint can go past them; before a checkpoint that must empty the write-ahead log,
    /// every reader lets go of its snapshot after each read until the log is empty.
    pub fn checkpoint_moment(&self, moment: crate::journal::Moment) {
        use crate::journal::Moment;
        let readers = &self.inner.readers;
        match moment {
            Moment::Before { empty } => {
                if empty {
                    readers.hold_snapshots(false);
                }
                readers.release_stale(empty);
            }
            Moment::Emptied => readers.hold_snapshots(true),
        }
    }

    /// Bytes the cache occupies on disk.
    pub fn size_on_disk(&self) -> u64 {
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let path = &self.inner.path;
        size(path) + size(&path.with_extension("sqlite3-wal"))
    }

    /// A product by SKU.
    pub fn product(&self, sku: &str) -> Result<Option<Product>, CacheError> {
        self.read(|c| codec::get_json(c, "products", "sku", sku))
    }

    /// The product carrying this barcode, or else its other GTIN spelling (a UPC-A's 12 digits
    /// and the EAN-13 with a leading `0`: see [`crate::domain::catalog::gtin_twin`]).
    pub fn product_by_barcode(&self, code: &str) -> Result<Option<Product>, CacheError> {
        self.read(|c| {
            let mut sku = index_get(c, Idx::Barcode, code.as_bytes())?;
            if sku.is_none()
                && let Some(twin) = crate::domain::catalog::gtin_twin(code)
            {
                sku = index_get(c, Idx::Barcode, twin.as_bytes())?;
            }
            match sku {
                Some(sku) => codec::get_json(c, "products", "sku", &sku),
                None => Ok(None),
            }
        })
    }

    /// Stock of a product (`None` if never counted).
    pub fn stock(&self, sku: &str) -> Result<Option<StockLevel>, CacheError> {
        self.read(|c| codec::get_json(c, "stock", "sku", sku))
    }

    /// Products below their safety stock, by SKU, those after `after` (`""`: from the first),
    /// at most `limit`.
    pub fn stock_below_safety(
        &self,
        after: &str,
        limit: usize,
    ) -> Result<Vec<StockLevel>, CacheError> {
        self.read(|c| {
            codec::list_json(
                c,
                "stock",
                "SELECT sku, data FROM stock WHERE below = 1 AND sku > ?2 ORDER BY sku LIMIT ?1",
                after,
                limit,
            )
        })
    }

    /// Stock levels by SKU, those after `after` (`""`: from the first), at most `limit`.
    pub fn stock_levels(&self, after: &str, limit: usize) -> Result<Vec<StockLevel>, CacheError> {
        self.read(|c| {
            codec::list_json(
                c,
                "stock",
                "SELECT sku, data FROM stock WHERE sku > ?2 ORDER BY sku LIMIT ?1",
                after,
                limit,
            )
        })
    }

    /// A coupon by code.
    pub fn coupon(&self, code: &str) -> Result<Option<Coupon>, CacheError> {
        self.read(|c| codec::get_json(c, "coupons", "code", code))
    }

    /// A staff member pushed by HQ or managed by an admin.
    pub fn staff(&self, staff_no: &str) -> Result<Option<StaffRecord>, CacheError> {
        self.read(|c| codec::get_json(c, "staff", "staff_no", staff_no))
    }

    /// Every staff record pushed by HQ or managed by an admin (removed ones too).
    pub fn all_staff(&self) -> Result<Vec<StaffRecord>, CacheError> {
        self.read(|c| {
            let rows: Vec<(String, Vec<u8>)> = c
                .prepare_cached("SELECT staff_no, data FROM staff ORDER BY staff_no")
                .and_then(|mut st| st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
                .map_err(sql_err("listing staff"))?;
            rows.iter()
                .map(|(no, d)| codec::decode_json("staff", no, d))
                .collect()
        })
    }

    /// Membership rules pushed by HQ, with their version.
    pub fn rules(&self) -> Result<Option<(u64, Rules)>, CacheError> {
        self.read(stored_rules)
    }
}

pub(crate) fn stored_rules(c: &Connection) -> Result<Option<(u64, Rules)>, CacheError> {
    let v: Option<String> = c
        .query_row("SELECT value FROM meta WHERE key = 'rules'", [], |r| {
            r.get(0)
        })
        .optional()
        .map_err(sql_err("reading the rules"))?;
    v.map(|s| codec::decode_json::<(u64, Rules)>("meta", "rules", s.as_bytes()))
        .transpose()
}

fn applied_seq(c: &Connection) -> Result<u64, CacheError> {
    let v: Option<String> = c
        .query_row(
            "SELECT value FROM meta WHERE key = 'applied_seq'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql_err("reading the applied seq"))?;
    Ok(v.and_then(|s| s.parse().ok()).unwrap_or(0))
}

pub(crate) fn index_get(
    c: &Connection,
    idx: Idx,
    key: &[u8],
) -> Result<Option<String>, CacheError> {
    let sql = if idx.of_members() {
        format!(
            "SELECT m.id FROM {} i JOIN members m ON m.rid = i.rid WHERE i.k = ?1",
            idx.table()
        )
    } else {
        format!("SELECT id FROM {} WHERE k = ?1", idx.table())
    };
    c.prepare_cached(&sql)
        .and_then(|mut st| st.query_row(params![key], |r| r.get(0)).optional())
        .map_err(sql_err("reading an index"))
}

pub(crate) fn get_member(
    c: &Connection,
    codec: &PiiCodec,
    id: &str,
) -> Result<Option<Member>, CacheError> {
    let data: Option<Vec<u8>> = c
        .prepare_cached("SELECT data FROM members WHERE id = ?1")
        .and_then(|mut st| st.query_row(params![id], |r| r.get(0)).optional())
        .map_err(sql_err("reading a member"))?;
    match data {
        Some(v) => codec::decode_member(codec, id, &v).map(Some),
        None => Ok(None),
    }
}

/// Read access shared by the cache and a [`Pending`] overlay, so pricing code runs the same
/// against either (a quote reads the cache; a sale reads the batch's overlay).
pub trait Lookup {
    /// A member by id.
    fn member(&self, id: &str) -> Result<Option<Member>, CacheError>;
    /// A product by SKU.
    fn product(&self, sku: &str) -> Result<Option<Product>, CacheError>;
    /// A coupon by code.
    fn coupon(&self, code: &str) -> Result<Option<Coupon>, CacheError>;
    /// Stock of a product.
    fn stock(&self, sku: &str) -> Result<Option<StockLevel>, CacheError>;
}

impl Lookup for Cache {
    fn member(&self, id: &str) -> Result<Option<Member>, CacheError> {
        Cache::member(self, id)
    }
    fn product(&self, sku: &str) -> Result<Option<Product>, CacheError> {
        Cache::product(self, sku)
    }
    fn coupon(&self, code: &str) -> Result<Option<Coupon>, CacheError> {
        Cache::coupon(self, code)
    }
    fn stock(&self, sku: &str) -> Result<Option<StockLevel>, CacheError> {
        Cache::stock(self, sku)
    }
}

impl Lookup for Pending<'_> {
    fn member(&self, id: &str) -> Result<Option<Member>, CacheError> {
        Pending::member(self, id)
    }
    fn product(&self, sku: &str) -> Result<Option<Product>, CacheError> {
        Pending::product(self, sku)
    }
    fn coupon(&self, code: &str) -> Result<Option<Coupon>, CacheError> {
        Pending::coupon(self, code)
    }
    fn stock(&self, sku: &str) -> Result<Option<StockLevel>, CacheError> {
        Pending::stock(self, sku)
    }
}

#[cfg(test)]
mod tests;

//! [`CacheWriter`]: the one write connection's operations outside a batch — opening an
//! overlay, offline settings, flushing, telling the readers of a write.

use rusqlite::Connection;

use super::{Cache, CacheError, CacheWriter, Pending, applied_seq, hints, sql_err};
use crate::pii::PiiCodec;

impl CacheWriter {
    /// A read-write overlay for one ledger batch, with its cache transaction open. `durable`:
    /// the batch carries HQ data, and its commit is fsynced.
    pub fn pending(&self, durable: bool) -> Result<Pending<'_>, CacheError> {
        Pending::new(self, durable)
    }

    /// Whether the cache takes a write now: its write lock taken and let go, without waiting
    /// out the busy timeout (another process's lock fails it at once). Tried after a refusal,
    /// while nothing else writes, so that `/healthz` recovers with the cache.
    pub fn probe_write(&self) -> Result<(), CacheError> {
        crate::sqlite::waiting_at_most(self.conn(), std::time::Duration::ZERO, |c| {
            c.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")
        })
        .map_err(sql_err("probing the cache"))
    }

    /// The read side of this cache.
    pub fn reader(&self) -> Cache {
        Cache {
            inner: self.inner.clone(),
        }
    }

    /// The personal-data codec.
    pub fn codec(&self) -> &PiiCodec {
        &self.inner.codec
    }

    /// The journal `seq` up to which projections have been applied.
    pub fn applied_seq(&self) -> Result<u64, CacheError> {
        applied_seq(&self.conn)
    }

    /// Sets the writer up for an offline command (a bulk import), which writes while no
    /// reader runs: a page cache of `mb` MiB, so that each index page it keeps in memory is
    /// read once rather than once a lookup; and checkpoints left to the checkpoint thread (on
    /// the other core) up to its ceiling, where in the daemon the writer's automatic
    /// checkpoint copies each 16 MiB of WAL itself (7 % of an import's ledger time).
    pub fn set_offline(&self, mb: u64) -> Result<(), CacheError> {
        self.conn
            .execute_batch(&format!(
                "PRAGMA cache_size = -{}; PRAGMA wal_autocheckpoint = {};",
                mb.max(1) * 1024,
                crate::journal::WAL_CEILING_PAGES
            ))
            .map_err(sql_err("setting the cache writer up for offline work"))
    }

    /// Checkpoints the cache's WAL into its file (at shutdown).
    pub fn flush(&self) -> Result<(), CacheError> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(sql_err("checkpointing the cache"))
    }

    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Tells the readers a write was committed: their next read takes a new snapshot. Every
    /// write of the writer calls this after its commit.
    /// Forgets the memo of committed products and stock levels (after a batch broke off
    /// somewhere unknown: the next reads go to SQLite).
    pub fn forget_memo(&self) {
        self.memo.borrow_mut().clear();
    }

    pub(crate) fn note_write(&self) {
        self.inner.readers.note_write();
    }

    /// [`CacheWriter::note_write`] for a write that changed phone or card index entries
    /// (`(is_card, key)`): their hints become tombstones in the same step.
    pub(crate) fn note_index_write(&self, changed: &[(bool, Vec<u8>)]) {
        let keys: Vec<(hints::Field, u64)> = changed
            .iter()
            .map(|(card, k)| {
                let f = if *card {
                    hints::Field::Card
                } else {
                    hints::Field::Phone
                };
                (f, hints::prefix(k))
            })
            .collect();
        self.inner
            .hints
            .changed(&keys, || self.inner.readers.note_write());
    }
}

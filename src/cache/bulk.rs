//! Deferred member index entries, for bulk writes (`storebox members import`, and a replay of
//! many events at start-up).
//!
//! The member index tables are keyed by keyed hashes, so the entries of a batch land on random
//! pages: a chunk of 50,000 new members rewrites nearly every leaf page of each of the four
//! tables, and a million-member import spent most of its cache time there. In bulk mode the
//! entries that a batch adds to a member index are kept here instead (16-byte key and rowid,
//! about 72 bytes a member) and written at the end, sorted, so each page is written once.
//! Phone and card entries stay visible to the writer's uniqueness lookups through the maps.
//!
//! Crash safety: bulk mode begins by committing a marker row in `meta`, and the transaction
//! that writes the deferred entries deletes it. A cache that still has the marker when it is
//! opened lost entries that only memory held: it is moved aside and rebuilt from the journal,
//! which holds every event the cache projects. HQ's master data (rules, staff, products,
//! coupons), which only the cache holds, is asked of HQ again, by the daemon and by an offline
//! command alike (`Opened::Rebuilt`).
//!
//! A batch hands its entries over only once its transaction has committed (a rolled-back
//! batch's rowids are given out again). A batch that removes a member index entry first writes
//! what is deferred (the removal might name an entry still held here), and the entries are
//! forgotten when it commits; imports never remove, so for them that never happens.

use std::collections::HashMap;

use rusqlite::{Connection, params};

use super::{CacheError, CacheWriter, Idx, sql_err};

/// The `meta` key whose row marks a cache whose deferred entries are not written yet.
pub(super) const MARKER: &str = "bulk_index";

/// Length of a member index key (see `pii::INDEX_KEY_LEN`); a key of another length is written
/// at once.
const KEY_LEN: usize = 16;

pub(super) type Key = [u8; KEY_LEN];

/// The key of an entry that can be deferred: one of a member index, of the usual length.
/// `None`: it is written at once.
pub(super) fn deferrable(idx: Idx, key: &[u8]) -> Option<Key> {
    if idx.of_members() {
        Key::try_from(key).ok()
    } else {
        None
    }
}

/// Member index entries added in bulk mode and not written yet: about 72 bytes a member
/// (phone and card by key, a later entry under a key replacing an earlier one as `INSERT OR
/// REPLACE` does; tail and name as a list).
#[derive(Default)]
pub(super) struct Bulk {
    phone: HashMap<Key, i64>,
    card: HashMap<Key, i64>,
    tail: Vec<(Key, i64)>,
    name: Vec<(Key, i64)>,
}

impl Bulk {
    /// Defers an entry whose key [`deferrable`] gave.
    pub(super) fn add(&mut self, idx: Idx, k: Key, rid: i64) {
        match idx {
            Idx::Phone => {
                self.phone.insert(k, rid);
            }
            Idx::Card => {
                self.card.insert(k, rid);
            }
            Idx::Tail => self.tail.push((k, rid)),
            Idx::Name => self.name.push((k, rid)),
            Idx::Barcode => {}
        }
    }

    /// The rowid a deferred phone or card entry maps `key` to.
    pub(super) fn get(&self, idx: Idx, key: &[u8]) -> Option<i64> {
        let k = Key::try_from(key).ok()?;
        match idx {
            Idx::Phone => self.phone.get(&k).copied(),
            Idx::Card => self.card.get(&k).copied(),
            _ => None,
        }
    }

    /// Whether nothing is deferred.
    pub(super) fn is_empty(&self) -> bool {
        self.phone.is_empty()
            && self.card.is_empty()
            && self.tail.is_empty()
            && self.name.is_empty()
    }

    /// Writes every deferred entry, each table in key order, inside the caller's transaction.
    /// They stay deferred until [`Bulk::clear`], which the caller calls once the transaction
    /// commits. Returns how many were written.
    pub(super) fn write(&mut self, conn: &Connection) -> rusqlite::Result<usize> {
        let sorted = |map: &HashMap<Key, i64>| {
            let mut v: Vec<(Key, i64)> = map.iter().map(|(k, r)| (*k, *r)).collect();
            v.sort_unstable();
            v
        };
        let (phone, card) = (sorted(&self.phone), sorted(&self.card));
        self.tail.sort_unstable();
        self.name.sort_unstable();
        let mut n = 0;
        for (idx, entries) in [
            (Idx::Phone, &phone),
            (Idx::Card, &card),
            (Idx::Tail, &self.tail),
            (Idx::Name, &self.name),
        ] {
            if entries.is_empty() {
                continue;
            }
            let mut st = conn.prepare_cached(&format!(
                "INSERT OR REPLACE INTO {} (k, rid) VALUES (?1, ?2)",
                idx.table()
            ))?;
            for (key, rid) in entries {
                st.execute(params![&key[..], rid])?;
            }
            n += entries.len();
        }
        Ok(n)
    }

    /// Forgets the deferred entries (written and committed).
    pub(super) fn clear(&mut self) {
        *self = Bulk::default();
    }
}

impl CacheWriter {
    /// Enters bulk mode: from now on the entries that batches add to the member index tables
    /// are held in memory and written, sorted, by [`CacheWriter::finish_bulk`] (see `bulk`).
    /// Commits the marker that makes a cache opened before the finish rebuild itself.
    pub fn begin_bulk(&self) -> Result<(), CacheError> {
        if self.bulk.borrow().is_some() {
            return Ok(());
        }
        debug_assert!(
            self.conn.is_autocommit(),
            "bulk mode begins between batches"
        );
        self.conn
            .execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, 'deferred')",
                params![MARKER],
            )
            .map_err(sql_err("marking the cache for a bulk write"))?;
        *self.bulk.borrow_mut() = Some(Bulk::default());
        Ok(())
    }

    /// Whether the writer is in bulk mode.
    pub fn in_bulk(&self) -> bool {
        self.bulk.borrow().is_some()
    }

    /// Leaves bulk mode: writes the deferred index entries in key order and removes the
    /// marker, in one transaction. Returns how many entries were written. On failure the
    /// marker stays, and the next open rebuilds the cache from the journal.
    pub fn finish_bulk(&self) -> Result<usize, CacheError> {
        let mut bulk = self.bulk.borrow_mut();
        let Some(deferred) = bulk.as_mut() else {
            return Ok(0);
        };
        let conn = &self.conn;
        let result = conn.execute_batch("BEGIN IMMEDIATE").and_then(|()| {
            let n = deferred.write(conn)?;
            conn.execute("DELETE FROM meta WHERE key = ?1", params![MARKER])?;
            conn.execute_batch("COMMIT")?;
            Ok(n)
        });
        if result.is_err() && !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        // On failure the writer stays in bulk mode with its entries.
        let n = result.map_err(sql_err("writing the deferred index entries"))?;
        *bulk = None;
        drop(bulk);
        self.note_write();
        Ok(n)
    }

    /// The deferred entries of bulk mode, if the writer is in it.
    pub(super) fn bulk(&self) -> std::cell::RefMut<'_, Option<Bulk>> {
        self.bulk.borrow_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_entry_under_a_unique_key_wins_and_every_table_is_written() {
        let conn = Connection::open_in_memory().expect("db");
        conn.execute_batch(
            "CREATE TABLE idx_phone (k BLOB PRIMARY KEY, rid INTEGER NOT NULL) WITHOUT ROWID;
             CREATE TABLE idx_tail (k BLOB NOT NULL, rid INTEGER NOT NULL,
                 PRIMARY KEY (k, rid)) WITHOUT ROWID;",
        )
        .expect("schema");
        let mut b = Bulk::default();
        let (k1, k2) = ([1u8; 16], [2u8; 16]);
        assert_eq!(
            deferrable(Idx::Barcode, &k1),
            None,
            "barcodes are not member entries"
        );
        assert_eq!(
            deferrable(Idx::Phone, b"short"),
            None,
            "another length is written now"
        );
        assert_eq!(deferrable(Idx::Phone, &k1), Some(k1));
        b.add(Idx::Phone, k2, 7);
        b.add(Idx::Phone, k1, 8);
        b.add(Idx::Phone, k2, 9);
        b.add(Idx::Tail, k1, 8);
        b.add(Idx::Tail, k1, 9);
        assert_eq!(b.get(Idx::Phone, &k2), Some(9));
        assert_eq!(b.get(Idx::Card, &k2), None);
        assert_eq!(
            b.write(&conn).expect("write"),
            4,
            "two phones and two tails"
        );
        assert!(!b.is_empty(), "written entries stay until the commit");
        b.clear();
        assert!(b.is_empty());
        assert_eq!(b.get(Idx::Phone, &k2), None);
        let rows: Vec<(Vec<u8>, i64)> = conn
            .prepare("SELECT k, rid FROM idx_phone ORDER BY k")
            .and_then(|mut st| {
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()
            })
            .expect("rows");
        assert_eq!(rows, vec![(k1.to_vec(), 8), (k2.to_vec(), 9)]);
        let tails: i64 = conn
            .query_row("SELECT COUNT(*) FROM idx_tail", [], |r| r.get(0))
            .expect("count");
        assert_eq!(tails, 2);
    }
}

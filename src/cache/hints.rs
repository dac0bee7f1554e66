//! Where a phone or card number's member row is, in memory: the till's lookups skip the index
//! B-tree, whose leaves (about 28 MiB for a million phones) miss SQLite's small page cache on
//! almost every lookup — a fifth of the lookup's cost on the development machine.
//!
//! A hint maps the first 8 bytes of a value's index key (the keyed hash of the phone or card,
//! see [`crate::pii::PiiCodec::index_key`]) to the member's rowid. It is only ever a hint:
//!
//! - the member found through it must hold the value that was looked up, or the lookup asks
//!   SQLite (two keys sharing 8 bytes, one chance in 2⁶⁴ per pair, are caught there too);
//! - every change of a phone or card index entry turns its hint into a tombstone ("ask SQLite")
//!   in the same step that tells readers the cache was written, before the write is answered;
//! - a lookup that had to ask SQLite leaves a hint behind only if no write came after the
//!   snapshot it read, so a hint never carries what a later write undid.
//!
//! The hints are loaded once the store has started (a scan of the two index tables, about 12
//! bytes a member), in the background; until then, and if too many changes pile up (a rebuild),
//! lookups simply ask SQLite.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::Connection;

use super::{CacheError, sql_err};

/// Most tombstones and late hints kept beside the loaded table; past it the hints are dropped
/// (until the next start) rather than grow without bound.
const MAX_RECENT: usize = 200_000;

/// Which unique index a hint is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Field {
    Phone,
    Card,
}

/// The first 8 bytes of an index key.
pub(super) fn prefix(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = key.len().min(8);
    b[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(b)
}

/// A key prefix and its rowid, packed: 12 bytes (a tuple would take 16).
#[derive(Clone, Copy)]
#[repr(C, packed)]
struct Entry {
    key: u64,
    rid: u32,
}

impl Entry {
    fn key(&self) -> u64 {
        self.key
    }
}

/// A sorted table of entries, loaded once, with a directory by the top bits of the key: the
/// keys are keyed hashes, spread evenly, so a bucket holds about 16 entries and a lookup
/// touches the directory and a few cache lines instead of binary-searching megabytes.
#[derive(Default)]
struct Table {
    entries: Vec<Entry>,
    /// `dir[b]..dir[b + 1]`: the entries whose key starts with the `bits` bits `b`.
    dir: Vec<u32>,
    bits: u32,
}

impl Table {
    /// Rowid for `k`; `None` if absent or shared by two keys (marked with `u32::MAX`).
    fn get(&self, k: u64) -> Option<u32> {
        let b = self.bucket(k);
        let (from, to) = (*self.dir.get(b)? as usize, *self.dir.get(b + 1)? as usize);
        let bucket = self.entries.get(from..to)?;
        let i = bucket.binary_search_by_key(&k, Entry::key).ok()?;
        let rid = bucket[i].rid;
        (rid != u32::MAX).then_some(rid)
    }

    fn bucket(&self, k: u64) -> usize {
        if self.bits == 0 {
            0
        } else {
            (k >> (64 - self.bits)) as usize
        }
    }

    fn from_sorted(entries: Vec<Entry>) -> Table {
        // About 16 entries a bucket, 2^8 to 2^22 buckets.
        let bits = (usize::BITS - entries.len().leading_zeros())
            .saturating_sub(4)
            .clamp(8, 22);
        let mut t = Table {
            entries,
            dir: Vec::new(),
            bits,
        };
        let n = 1usize << bits;
        t.dir = Vec::with_capacity(n + 1);
        let mut i = 0usize;
        for b in 0..n {
            while i < t.entries.len() && t.bucket(t.entries[i].key()) < b {
                i += 1;
            }
            t.dir.push(i as u32);
        }
        t.dir.push(t.entries.len() as u32);
        t
    }

    fn load(conn: &Connection, table: &'static str) -> Result<Table, CacheError> {
        let err = sql_err("loading member hints");
        // Sized first: the table is built in place, with nothing to copy or grow.
        let n: i64 = conn
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .map_err(sql_err("loading member hints"))?;
        let mut rows: Vec<Entry> = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
        let mut st = conn
            .prepare(&format!("SELECT k, rid FROM {table}"))
            .map_err(sql_err("loading member hints"))?;
        let mut q = st.query([]).map_err(sql_err("loading member hints"))?;
        loop {
            let r = match q.next() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => return Err(err(e)),
            };
            let k: &[u8] = r
                .get_ref(0)
                .and_then(|v| v.as_blob().map_err(Into::into))
                .map_err(sql_err("loading member hints"))?;
            let rid: i64 = r.get(1).map_err(sql_err("loading member hints"))?;
            rows.push(Entry {
                key: prefix(k),
                // A rowid beyond u32 is never hinted: its lookups ask SQLite.
                rid: u32::try_from(rid).unwrap_or(u32::MAX),
            });
        }
        rows.sort_unstable_by_key(Entry::key);
        // Two keys sharing their first 8 bytes: neither is hinted.
        for i in 1..rows.len() {
            if rows[i].key() == rows[i - 1].key() {
                rows[i - 1].rid = u32::MAX;
                rows[i].rid = u32::MAX;
            }
        }
        rows.dedup_by_key(|e| e.key());
        Ok(Table::from_sorted(rows))
    }

    fn bytes(&self) -> usize {
        self.entries.len() * std::mem::size_of::<Entry>() + self.dir.len() * 4
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[derive(Default)]
struct State {
    /// Whether hints are kept at all (from the start of a load until they are dropped).
    on: bool,
    /// Whether the tables are loaded (lookups use hints only then).
    ready: bool,
    phones: Table,
    cards: Table,
    /// Changes since the load began: a hint (`Some`) or a tombstone (`None`), winning over
    /// the tables.
    recent: HashMap<(Field, u64), Option<u32>>,
}

/// The hints of one cache.
#[derive(Default)]
pub(super) struct Hints {
    state: RwLock<State>,
    /// Lookups answered from a hint, for the log.
    pub(super) used: AtomicU64,
}

impl Hints {
    /// The rowid hinted for `key`, if the hints are ready and hold one.
    pub(super) fn get(&self, field: Field, key: &[u8]) -> Option<i64> {
        let s = self.state.read().ok()?;
        if !s.ready {
            return None;
        }
        let k = prefix(key);
        let rid = match s.recent.get(&(field, k)) {
            Some(hint) => *hint,
            None => match field {
                Field::Phone => s.phones.get(k),
                Field::Card => s.cards.get(k),
            },
        }?;
        self.used.fetch_add(1, Ordering::Relaxed);
        Some(i64::from(rid))
    }

    /// Turns the hints of changed index entries into tombstones, then runs `written` (which
    /// moves the cache generation on), both under the lock that [`Hints::offer`] takes.
    pub(super) fn changed(&self, keys: &[(Field, u64)], written: impl FnOnce()) {
        let Ok(mut s) = self.state.write() else {
            written();
            return;
        };
        if s.on {
            for k in keys {
                s.recent.insert(*k, None);
            }
            if s.recent.len() > MAX_RECENT {
                tracing::info!(
                    changes = s.recent.len(),
                    "member hints dropped after many index changes; lookups use the index until the next start"
                );
                *s = State::default();
            }
        }
        written();
    }

    /// Leaves a hint found through SQLite, unless the cache was written after the snapshot the
    /// lookup read (`seen`, against the current `generation`).
    pub(super) fn offer(
        &self,
        field: Field,
        key: &[u8],
        rid: i64,
        seen: u64,
        generation: &AtomicU64,
    ) {
        let Ok(rid) = u32::try_from(rid) else { return };
        let Ok(mut s) = self.state.write() else {
            return;
        };
        if s.ready && generation.load(Ordering::Acquire) == seen && s.recent.len() < MAX_RECENT {
            s.recent.insert((field, prefix(key)), Some(rid));
        }
    }

    /// Loads the tables from `conn` (a read connection). Changes made while it runs are kept
    /// as tombstones, so nothing the scan missed is hinted.
    pub(super) fn load(&self, conn: &Connection) -> Result<(usize, usize), CacheError> {
        let started = std::time::Instant::now();
        if let Ok(mut s) = self.state.write() {
            *s = State {
                on: true,
                ..State::default()
            };
        }
        // The snapshot is taken after `on`: every later change is a tombstone.
        conn.execute_batch("BEGIN")
            .map_err(sql_err("loading member hints"))?;
        let loaded = Table::load(conn, "idx_phone")
            .and_then(|p| Table::load(conn, "idx_card").map(|c| (p, c)));
        let _ = conn.execute_batch("COMMIT");
        let (phones, cards) = loaded?;
        let (np, nc, bytes) = (phones.len(), cards.len(), phones.bytes() + cards.bytes());
        let mut s = self
            .state
            .write()
            .map_err(|_| CacheError::Corrupt("member hints lock poisoned".into()))?;
        if s.on {
            s.phones = phones;
            s.cards = cards;
            s.ready = true;
            tracing::info!(
                phones = np,
                cards = nc,
                kib = bytes / 1024,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "member hints loaded"
            );
        }
        Ok((np, nc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directory_finds_every_key_and_nothing_else() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut keys: Vec<u64> = (0..50_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            })
            .collect();
        keys.extend([0, u64::MAX]);
        keys.sort_unstable();
        keys.dedup();
        let t = Table::from_sorted(
            keys.iter()
                .enumerate()
                .map(|(i, k)| Entry {
                    key: *k,
                    rid: i as u32,
                })
                .collect(),
        );
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(t.get(*k), Some(i as u32));
        }
        assert_eq!(t.get(keys[10] + 1), None);
        assert_eq!(Table::from_sorted(Vec::new()).get(7), None);
    }

    #[test]
    fn tombstones_win_and_late_hints_need_a_current_snapshot() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE idx_phone (k BLOB PRIMARY KEY, rid INTEGER NOT NULL) WITHOUT ROWID;
             CREATE TABLE idx_card (k BLOB PRIMARY KEY, rid INTEGER NOT NULL) WITHOUT ROWID;
             INSERT INTO idx_phone VALUES (x'0101010101010101aa', 7), (x'0202020202020202aa', 8),
                                          (x'0303030303030303aa', 9), (x'0303030303030303bb', 10);",
        )
        .unwrap();
        let h = Hints::default();
        let k1 = [1u8, 1, 1, 1, 1, 1, 1, 1, 0xaa];
        assert_eq!(h.get(Field::Phone, &k1), None, "not loaded yet");
        assert_eq!(h.load(&conn).unwrap(), (3, 0));
        assert_eq!(h.get(Field::Phone, &k1), Some(7));
        assert_eq!(h.get(Field::Card, &k1), None);
        // Two keys with the same first 8 bytes: no hint for either.
        assert_eq!(h.get(Field::Phone, &[3u8, 3, 3, 3, 3, 3, 3, 3, 0xaa]), None);

        let generation = AtomicU64::new(5);
        let mut bumped = false;
        h.changed(&[(Field::Phone, prefix(&k1))], || {
            generation.fetch_add(1, Ordering::Release);
            bumped = true;
        });
        assert!(bumped);
        assert_eq!(h.get(Field::Phone, &k1), None, "a tombstone");
        // A lookup that read the snapshot before the write leaves nothing.
        h.offer(Field::Phone, &k1, 42, 5, &generation);
        assert_eq!(h.get(Field::Phone, &k1), None);
        // One that read after it does.
        h.offer(Field::Phone, &k1, 42, 6, &generation);
        assert_eq!(h.get(Field::Phone, &k1), Some(42));
    }
}

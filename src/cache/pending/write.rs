//! Writing a batch's pending effects into the cache's tables, inside its transaction: members
//! first (their rowids), then the other entities, then the index entries in key order (in bulk
//! mode, the member entries added are handed back to be deferred).

use std::collections::HashMap;

use rusqlite::{CachedStatement, Connection, OptionalExtension, params};

use super::Pending;
use crate::cache::codec::{encode_json, encode_member, encode_member_sealed};
use crate::cache::{CacheError, Idx, sql_err};

impl Pending<'_> {
    pub(super) fn write(&self) -> Result<Written, CacheError> {
        if self.is_empty() {
            return Ok(Written::default());
        }
        let conn = self.w.conn();
        let codec = self.w.codec();
        let mut members = self
            .members
            .iter()
            .map(|(id, m)| {
                let data = match self.primed_for(m) {
                    Some(pr) => encode_member_sealed(m, &pr.sealed),
                    None => encode_member(codec, m)?,
                };
                Ok((id.as_str(), data))
            })
            .collect::<Result<Vec<_>, CacheError>>()?;
        // In id order: new members' ids grow with time, so their entries append to the id index.
        members.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let tx = conn;
        let write = sql_err("writing the cache");
        let run = || -> rusqlite::Result<Written> {
            let mut out = Written::default();
            // The rowid of each member written (beside `members`), for its index entries.
            let mut rids: Vec<i64> = Vec::with_capacity(members.len());
            each(
                tx,
                "INSERT INTO members (id, data) VALUES (?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET data = excluded.data RETURNING rid",
                &members,
                |st, (id, data)| {
                    rids.push(st.query_row(params![id, data], |r| r.get(0))?);
                    Ok(())
                },
            )?;
            each(
                tx,
                "INSERT OR REPLACE INTO products (sku, data) VALUES (?1, ?2)",
                &self.products,
                |st, (sku, p)| st.execute(params![sku, encode_json(p)]).map(drop),
            )?;
            if !self.stock.is_empty() {
                // An update that leaves `below` as it is does not touch its index.
                let mut update =
                    tx.prepare_cached("UPDATE stock SET data = ?3 WHERE sku = ?1 AND below = ?2")?;
                for (sku, s) in &self.stock {
                    let row = params![sku, s.below_safety(), encode_json(s)];
                    if update.execute(row)? == 0 {
                        tx.prepare_cached(
                            "INSERT OR REPLACE INTO stock (sku, below, data) VALUES (?1, ?2, ?3)",
                        )?
                        .execute(row)?;
                    }
                }
            }
            each(
                tx,
                "INSERT OR REPLACE INTO coupons (code, data) VALUES (?1, ?2)",
                &self.coupons,
                |st, (code, c)| st.execute(params![code, encode_json(c)]).map(drop),
            )?;
            for (sku, price) in &self.waiting_prices {
                match price {
                    Some(pr) => tx
                        .prepare_cached(
                            "INSERT OR REPLACE INTO waiting_prices (sku, data) VALUES (?1, ?2)",
                        )?
                        .execute(params![sku, encode_json(pr)])?,
                    None => tx
                        .prepare_cached("DELETE FROM waiting_prices WHERE sku = ?1")?
                        .execute(params![sku])?,
                };
            }
            each(
                tx,
                "INSERT OR REPLACE INTO feedback (id, open, data) VALUES (?1, ?2, ?3)",
                &self.feedback,
                |st, (id, f)| {
                    let open = f.status != crate::domain::feedback::FeedbackStatus::Closed;
                    st.execute(params![id, open, encode_json(f)]).map(drop)
                },
            )?;
            each(
                tx,
                "INSERT OR REPLACE INTO campaigns (id, data) VALUES (?1, ?2)",
                &self.campaigns,
                |st, (id, c)| st.execute(params![id, encode_json(c)]).map(drop),
            )?;
            each(
                tx,
                "INSERT OR IGNORE INTO occasions (code) VALUES (?1)",
                &self.occasions,
                |st, code| st.execute(params![code]).map(drop),
            )?;
            each(
                tx,
                "INSERT OR REPLACE INTO staff (staff_no, data) VALUES (?1, ?2)",
                &self.staff,
                |st, (no, s)| st.execute(params![no, encode_json(s)]).map(drop),
            )?;
            if let Some(r) = &self.rules {
                tx.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES ('rules', ?1)")?
                    .execute(params![String::from_utf8_lossy(&encode_json(r))])?;
            }
            for (key, holders) in &self.displaced_cards {
                let k = super::handback::displaced_card_meta_key(key);
                if holders.is_empty() {
                    tx.prepare_cached("DELETE FROM meta WHERE key = ?1")?
                        .execute(params![k])?;
                } else {
                    tx.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?
                        .execute(params![k, serde_json::json!(holders).to_string()])?;
                }
            }
            // Removals first, so a key that moved between ids ends up where it was put.
            // Member indexes point at the member's rowid.
            let written: HashMap<&str, i64> = members
                .iter()
                .zip(&rids)
                .map(|((id, _), rid)| (*id, *rid))
                .collect();
            let rid_of = |id: &str| -> rusqlite::Result<Option<i64>> {
                if let Some(rid) = written.get(id) {
                    return Ok(Some(*rid));
                }
                tx.prepare_cached("SELECT rid FROM members WHERE id = ?1")?
                    .query_row(params![id], |r| r.get(0))
                    .optional()
            };
            // In bulk mode member entries added are deferred (handed over after the commit);
            // a removal might name a deferred entry, so what is deferred is written first.
            let mut bulk = self.w.bulk();
            let in_bulk = bulk.is_some();
            if let Some(b) = bulk.as_mut()
                && !b.is_empty()
                && (self.deferred_written
                    || self.index.iter().any(|(idx, keys)| {
                        idx.of_members() && keys.values().flatten().any(|(_, present)| !present)
                    }))
            {
                if !self.deferred_written {
                    b.write(tx)?;
                }
                out.flushed = true;
            }
            for add in [false, true] {
                for (idx, keys) in &self.index {
                    let mut st = tx.prepare_cached(index_sql(*idx, add))?;
                    for (key, ids) in keys {
                        for (id, _) in ids.iter().filter(|(_, p)| *p == add) {
                            if !idx.of_members() {
                                st.execute(params![key, id])?;
                            } else if let Some(rid) = rid_of(id)? {
                                let deferred = if add && in_bulk {
                                    crate::cache::bulk::deferrable(*idx, key)
                                } else {
                                    None
                                };
                                if let Some(k) = deferred {
                                    out.deferred.push((*idx, k, rid));
                                } else {
                                    st.execute(params![key, rid])?;
                                }
                            }
                        }
                    }
                }
            }
            if let Some(seq) = self.applied_seq {
                tx.prepare_cached(
                    "INSERT INTO meta (key, value) VALUES ('applied_seq', ?1)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value
                     WHERE CAST(excluded.value AS INTEGER) > CAST(meta.value AS INTEGER)",
                )?
                .execute(params![seq.to_string()])?;
            }
            Ok(out)
        };
        run().map_err(write)
    }
}

impl Pending<'_> {
    /// Writes the member index entries bulk mode deferred, now, in the batch's transaction
    /// (forgotten once it commits), so the batch's reads of the index tables see them.
    pub(super) fn write_deferred(&mut self) -> Result<(), CacheError> {
        if self.deferred_written {
            return Ok(());
        }
        if let Some(b) = self.w.bulk().as_mut()
            && !b.is_empty()
        {
            b.write(self.w.conn())
                .map_err(sql_err("writing the deferred index entries"))?;
            self.deferred_written = true;
        }
        Ok(())
    }
}

/// Runs `sql` for each of `items`, prepared only when there are any: a batch touches one or two
/// of the cache's tables, and taking a statement out of rusqlite's cache and putting it back
/// (hashing its text, reordering the cache) cost a sale's cache write a fifth of its
/// instructions for the tables it left alone.
fn each<I: IntoIterator>(
    tx: &Connection,
    sql: &str,
    items: I,
    mut f: impl FnMut(&mut CachedStatement<'_>, I::Item) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    let mut items = items.into_iter().peekable();
    if items.peek().is_none() {
        return Ok(());
    }
    let mut st = tx.prepare_cached(sql)?;
    items.try_for_each(|item| f(&mut st, item))
}

/// What a batch's write left for bulk mode to do after the commit.
#[derive(Default)]
pub(super) struct Written {
    /// It wrote the entries bulk mode had deferred: they are to be forgotten.
    pub(super) flushed: bool,
    /// Member index entries it added and deferred: they are to be handed over.
    pub(super) deferred: Vec<(Idx, crate::cache::bulk::Key, i64)>,
}

/// The statement that adds (or removes) an entry of an index table: member indexes hold the
/// member's rowid, the barcode index the SKU.
fn index_sql(idx: Idx, add: bool) -> &'static str {
    match (idx, add) {
        (Idx::Phone, false) => "DELETE FROM idx_phone WHERE k = ?1 AND rid = ?2",
        (Idx::Phone, true) => "INSERT OR REPLACE INTO idx_phone (k, rid) VALUES (?1, ?2)",
        (Idx::Card, false) => "DELETE FROM idx_card WHERE k = ?1 AND rid = ?2",
        (Idx::Card, true) => "INSERT OR REPLACE INTO idx_card (k, rid) VALUES (?1, ?2)",
        (Idx::Tail, false) => "DELETE FROM idx_tail WHERE k = ?1 AND rid = ?2",
        (Idx::Tail, true) => "INSERT OR REPLACE INTO idx_tail (k, rid) VALUES (?1, ?2)",
        (Idx::Name, false) => "DELETE FROM idx_name WHERE k = ?1 AND rid = ?2",
        (Idx::Name, true) => "INSERT OR REPLACE INTO idx_name (k, rid) VALUES (?1, ?2)",
        (Idx::Barcode, false) => "DELETE FROM idx_barcode WHERE k = ?1 AND id = ?2",
        (Idx::Barcode, true) => "INSERT OR REPLACE INTO idx_barcode (k, id) VALUES (?1, ?2)",
    }
}

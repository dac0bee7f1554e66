//! [`Pending`]: the effects of one group commit, held in memory until the journal has committed,
//! then written to the cache in one transaction. Reads see the pending writes first, so two
//! sales in one batch see each other (the second customer cannot spend points the first
//! already spent).
//!
//! The cache transaction opens with the overlay (`BEGIN IMMEDIATE`: the ledger is the only
//! writer, so the lock is free) and closes with [`Pending::commit`], or rolls back when the
//! overlay is dropped. Every read of the batch is then inside one transaction — one snapshot,
//! and one round of locking instead of one per read — and the writes touch only what changed:
//! a member's index entries are written when its phone, card or name changed, and a stock
//! row's update leaves the below-safety index alone unless the flag flipped.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rusqlite::{OptionalExtension, params};

use super::codec::get_json;
use super::keys::MemberKeys;
use super::memo::{Kept, Memo};
use super::{CacheError, CacheWriter, Idx, get_member, index_get, sql_err, stored_rules};
use crate::domain::catalog::{Coupon, Product, StockLevel};
use crate::domain::feedback::Feedback;
use crate::domain::member::{Member, Profile};
use crate::domain::rules::Rules;
use crate::domain::sync::StaffRecord;
use crate::pii::IndexField;

mod handback;
mod write;

/// What was computed ahead for a member's profile: its index keys and its sealed form.
struct Primed {
    profile: Profile,
    keys: MemberKeys,
    sealed: Vec<u8>,
}

/// Pending cache writes of one batch.
pub struct Pending<'w> {
    w: &'w CacheWriter,
    members: HashMap<String, Member>,
    products: HashMap<String, Product>,
    stock: HashMap<String, StockLevel>,
    coupons: HashMap<String, Coupon>,
    /// HQ's price changes for products not known yet (`None`: applied, to delete).
    waiting_prices: HashMap<String, Option<crate::domain::sync::PriceUpdate>>,
    feedback: HashMap<String, Feedback>,
    campaigns: HashMap<String, crate::domain::campaign::Campaign>,
    /// Occasions acted on (their codes), see [`Pending::occasion_seen`].
    occasions: BTreeSet<String>,
    staff: HashMap<String, StaffRecord>,
    rules: Option<(u64, Rules)>,
    /// Set when the batch holds HQ data: its commit is fsynced, because the broker is told
    /// the data arrived and will not send it again.
    durable: bool,
    /// Whether the cache transaction is still open (neither committed nor rolled back).
    open: bool,
    /// Index keys and sealed profiles computed ahead, by member id: used while the member
    /// still has that profile.
    primed: HashMap<String, Primed>,
    /// Index writes by table and key: the ids written under the key, each present or removed,
    /// in the order first written. Sorted, so the cache receives them in key order.
    index: BTreeMap<Idx, IndexWrites>,
    /// Members whose card HQ's copy of another member took over, the latest last, by the
    /// card's index key (empty: forgotten), kept in `meta` so the card goes back to them (see
    /// `put_member`).
    displaced_cards: BTreeMap<Vec<u8>, Vec<String>>,
    /// Whether the entries bulk mode deferred were written in this batch's transaction
    /// already (see `write_deferred`).
    deferred_written: bool,
    applied_seq: Option<u64>,
}

/// One index table's writes in a batch: by key, the member ids written under it, each
/// present (`true`) or removed, in the order first written.
type IndexWrites = BTreeMap<Vec<u8>, Vec<(String, bool)>>;

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.open {
            let conn = self.w.conn();
            // SQLite itself rolls back a transaction whose commit ran out of disk space:
            // nothing is left to roll back then.
            if !conn.is_autocommit()
                && let Err(e) = conn
                    .prepare_cached("ROLLBACK")
                    .and_then(|mut st| st.execute([]))
            {
                tracing::error!(error = %e, "rolling back a cache batch failed");
            }
            self.restore_sync();
        }
    }
}

impl<'w> Pending<'w> {
    /// Opens the batch's cache transaction. `durable`: its commit is fsynced, because it holds
    /// HQ data that the broker will not send again once told it arrived.
    pub(super) fn new(w: &'w CacheWriter, durable: bool) -> Result<Pending<'w>, CacheError> {
        let conn = w.conn();
        if durable {
            // Set outside the transaction (SQLite ignores it inside one).
            conn.execute_batch("PRAGMA synchronous = FULL")
                .map_err(sql_err("making a cache write durable"))?;
        }
        let begun = conn
            .prepare_cached("BEGIN IMMEDIATE")
            .and_then(|mut st| st.execute([]));
        let mut p = Pending {
            w,
            open: false,
            primed: HashMap::new(),
            members: HashMap::new(),
            products: HashMap::new(),
            stock: HashMap::new(),
            coupons: HashMap::new(),
            waiting_prices: HashMap::new(),
            feedback: HashMap::new(),
            campaigns: HashMap::new(),
            occasions: BTreeSet::new(),
            staff: HashMap::new(),
            rules: None,
            durable,
            index: BTreeMap::new(),
            displaced_cards: BTreeMap::new(),
            deferred_written: false,
            applied_seq: None,
        };
        match begun {
            Ok(_) => {
                p.open = true;
                Ok(p)
            }
            Err(e) => {
                p.restore_sync();
                Err(sql_err("starting a cache batch")(e))
            }
        }
    }

    /// Puts `synchronous` back after a durable batch.
    fn restore_sync(&self) {
        if self.durable
            && let Err(e) = self.w.conn().execute_batch("PRAGMA synchronous = NORMAL")
        {
            tracing::error!(error = %e, "restoring the cache's synchronous setting failed");
        }
    }

    /// A member, pending version first.
    pub fn member(&self, id: &str) -> Result<Option<Member>, CacheError> {
        if let Some(m) = self.members.get(id) {
            return Ok(Some(m.clone()));
        }
        if self.primed.contains_key(id) {
            // Primed ids are fresh: nothing to look up.
            return Ok(None);
        }
        get_member(self.w.conn(), self.w.codec(), id)
    }

    /// The id a unique index maps `key` to, pending writes included.
    fn unique_get(&self, idx: Idx, key: &[u8]) -> Result<Option<String>, CacheError> {
        // A pending insert wins; a pending removal hides the stored entry.
        let mut removed = None;
        let pending = self.index.get(&idx).and_then(|keys| keys.get(key));
        for (id, present) in pending.map(Vec::as_slice).unwrap_or_default() {
            if *present {
                return Ok(Some(id.clone()));
            }
            removed = Some(id.clone());
        }
        let deferred = self.w.bulk().as_ref().and_then(|b| b.get(idx, key));
        if let Some(rid) = deferred {
            let id: Option<String> = self
                .w
                .conn()
                .prepare_cached("SELECT id FROM members WHERE rid = ?1")
                .and_then(|mut st| st.query_row(params![rid], |r| r.get(0)).optional())
                .map_err(sql_err("reading a member by rowid"))?;
            return Ok(id.filter(|id| removed.as_ref() != Some(id)));
        }
        match index_get(self.w.conn(), idx, key)? {
            Some(id) if removed.as_ref() != Some(&id) => Ok(Some(id)),
            _ => Ok(None),
        }
    }

    /// The id of the member holding this phone, pending writes included.
    pub fn member_id_by_phone(&self, phone: &str) -> Result<Option<String>, CacheError> {
        let key = self.w.codec().index_key(IndexField::Phone, phone);
        self.unique_get(Idx::Phone, &key)
    }

    /// The id of the member holding this card, pending writes included.
    pub fn member_id_by_card(&self, card: &str) -> Result<Option<String>, CacheError> {
        let key = self.w.codec().index_key(IndexField::Card, card);
        self.unique_get(Idx::Card, &key)
    }

    /// The id a unique index (phone, card) maps this key to, pending writes included.
    pub fn member_id_by_key(&self, card: bool, key: &[u8]) -> Result<Option<String>, CacheError> {
        self.unique_get(if card { Idx::Card } else { Idx::Phone }, key)
    }

    /// Hands over what was computed ahead for a new member `id` (a fresh id, not in the cache)
    /// with `profile`: its index keys and its sealed form (from
    /// [`crate::pii::PiiCodec::preseal`]).
    pub fn prime(&mut self, id: &str, profile: Profile, keys: MemberKeys, sealed: Vec<u8>) {
        self.primed.insert(
            id.to_string(),
            Primed {
                profile,
                keys,
                sealed,
            },
        );
    }

    /// What was computed ahead for `m`, if it still has that profile.
    fn primed_for(&self, m: &Member) -> Option<&Primed> {
        self.primed
            .get(&m.id)
            .filter(|pr| m.profile.as_ref() == Some(&pr.profile))
    }

    /// The index entries a member should have.
    fn member_keys(&self, m: &Member) -> BTreeSet<(Idx, Vec<u8>)> {
        match (&m.profile, self.primed_for(m)) {
            (None, _) => BTreeSet::new(),
            (Some(_), Some(pr)) => pr.keys.entries(),
            (Some(p), None) => MemberKeys::of(self.w.codec(), p).entries(),
        }
    }

    /// Records a pending index write: `id` is (or no longer is) under `key`.
    /// `fresh`: the id has no entry in this batch yet (a member new to the cache and the
    /// batch), so the key's list need not be searched; a common name holds thousands.
    fn mark(&mut self, idx: Idx, key: Vec<u8>, id: &str, present: bool, fresh: bool) {
        let ids = self.index.entry(idx).or_default().entry(key).or_default();
        let known = if fresh {
            None
        } else {
            ids.iter_mut().rev().find(|(x, _)| x == id)
        };
        match known {
            Some(entry) => entry.1 = present,
            None => ids.push((id.to_string(), present)),
        }
    }

    /// Stores a member and brings its index entries up to date: only the entries that changed
    /// are written (a sale changes the counters, not the phone).
    pub fn put_member(&mut self, m: Member) -> Result<(), CacheError> {
        let old = self.member(&m.id)?;
        // Neither pending nor cached: no entry of this batch names the id.
        let fresh = old.is_none();
        let released = handback::Released::between(old.as_ref(), &m);
        self.note_displaced_card(old.as_ref(), &m)?;
        let old_keys = match old {
            Some(old) => self.member_keys(&old),
            None => BTreeSet::new(),
        };
        let new_keys = self.member_keys(&m);
        for (idx, key) in old_keys.difference(&new_keys) {
            self.mark(*idx, key.clone(), &m.id, false, false);
        }
        // The new keys are moved into the marks, not copied (a new member has four).
        for entry in new_keys {
            if !old_keys.contains(&entry) {
                self.mark(entry.0, entry.1, &m.id, true, fresh);
            }
        }
        let id = m.id.clone();
        self.members.insert(m.id.clone(), m);
        self.hand_back(released, &id)
    }

    /// Rewrites a member's index entries without changing the member (replay of an event the
    /// member already reflects).
    pub fn reindex_member(&mut self, m: &Member) {
        for (idx, key) in self.member_keys(m) {
            self.mark(idx, key, &m.id, true, false);
        }
    }

    /// A product, pending version first.
    pub fn product(&self, sku: &str) -> Result<Option<Product>, CacheError> {
        if let Some(p) = self.products.get(sku) {
            return Ok(Some(p.clone()));
        }
        self.committed("products", sku, |m| &mut m.products)
    }

    /// The product carrying this barcode, pending writes included.
    pub fn product_by_barcode(&self, code: &str) -> Result<Option<Product>, CacheError> {
        match self.unique_get(Idx::Barcode, code.as_bytes())? {
            Some(sku) => self.product(&sku),
            None => Ok(None),
        }
    }

    /// Stores a product and brings its barcode index up to date.
    pub fn put_product(&mut self, p: Product) -> Result<(), CacheError> {
        if let Some(old) = self.product(&p.sku)? {
            for b in old.barcodes.iter().filter(|b| !p.barcodes.contains(b)) {
                self.mark(Idx::Barcode, b.as_bytes().to_vec(), &p.sku, false, false);
            }
        }
        for b in &p.barcodes {
            self.mark(Idx::Barcode, b.as_bytes().to_vec(), &p.sku, true, false);
        }
        self.products.insert(p.sku.clone(), p);
        Ok(())
    }

    /// Stores a product whose barcodes did not change (HQ's new price for it): the barcode
    /// index is left as it is, so a barcode that another product took since (HQ moved it, and
    /// this product's record lets go of it later) stays with that product.
    pub fn put_product_price(&mut self, p: Product) {
        self.products.insert(p.sku.clone(), p);
    }

    /// Stock of a product, pending version first.
    pub fn stock(&self, sku: &str) -> Result<Option<StockLevel>, CacheError> {
        if let Some(s) = self.stock.get(sku) {
            return Ok(Some(s.clone()));
        }
        self.committed("stock", sku, |m| &mut m.stock)
    }

    /// A committed product or stock level: from the writer's memo, or read from `table` and
    /// kept there (see `memo`).
    fn committed<T: Clone + serde::de::DeserializeOwned>(
        &self,
        table: &'static str,
        sku: &str,
        kind: fn(&mut Memo) -> &mut Kept<T>,
    ) -> Result<Option<T>, CacheError> {
        if let Some(v) = kind(&mut self.w.memo.borrow_mut()).get(sku) {
            return Ok(Some(v));
        }
        let found: Option<T> = get_json(self.w.conn(), table, "sku", sku)?;
        if let Some(v) = &found {
            kind(&mut self.w.memo.borrow_mut()).keep(sku, v);
        }
        Ok(found)
    }

    /// Stores a stock level.
    pub fn put_stock(&mut self, s: StockLevel) {
        self.stock.insert(s.sku.clone(), s);
    }

    /// A coupon, pending version first.
    pub fn coupon(&self, code: &str) -> Result<Option<Coupon>, CacheError> {
        if let Some(c) = self.coupons.get(code) {
            return Ok(Some(c.clone()));
        }
        get_json(self.w.conn(), "coupons", "code", code)
    }

    /// Stores a coupon.
    pub fn put_coupon(&mut self, c: Coupon) {
        self.coupons.insert(c.code.clone(), c);
    }

    /// HQ's price change waiting for product `sku`, pending version first.
    pub fn waiting_price(
        &self,
        sku: &str,
    ) -> Result<Option<crate::domain::sync::PriceUpdate>, CacheError> {
        if let Some(w) = self.waiting_prices.get(sku) {
            return Ok(w.clone());
        }
        get_json(self.w.conn(), "waiting_prices", "sku", sku)
    }

    /// Keeps HQ's price change for a product not known yet, or (`None`) forgets it.
    pub fn put_waiting_price(
        &mut self,
        sku: &str,
        price: Option<crate::domain::sync::PriceUpdate>,
    ) {
        self.waiting_prices.insert(sku.to_string(), price);
    }

    /// A feedback item, pending version first.
    pub fn feedback(&self, id: &str) -> Result<Option<Feedback>, CacheError> {
        if let Some(f) = self.feedback.get(id) {
            return Ok(Some(f.clone()));
        }
        get_json(self.w.conn(), "feedback", "id", id)
    }

    /// The feedback items a member gave, pending versions first.
    pub fn feedback_of_member(&self, member_id: &str) -> Result<Vec<Feedback>, CacheError> {
        let rows: Vec<(String, Vec<u8>)> = self
            .w
            .conn()
            .prepare_cached("SELECT id, data FROM feedback")
            .and_then(|mut st| st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .map_err(sql_err("listing feedback"))?;
        let mut out = Vec::new();
        for (id, d) in &rows {
            if self.feedback.contains_key(id) {
                continue;
            }
            let f: Feedback = super::codec::decode_json("feedback", id, d)?;
            if f.member_id.as_deref() == Some(member_id) {
                out.push(f);
            }
        }
        out.extend(
            self.feedback
                .values()
                .filter(|f| f.member_id.as_deref() == Some(member_id))
                .cloned(),
        );
        Ok(out)
    }

    /// Stores a feedback item.
    pub fn put_feedback(&mut self, f: Feedback) {
        self.feedback.insert(f.id.clone(), f);
    }

    /// A campaign, pending version first.
    pub fn campaign(
        &self,
        id: &str,
    ) -> Result<Option<crate::domain::campaign::Campaign>, CacheError> {
        if let Some(c) = self.campaigns.get(id) {
            return Ok(Some(c.clone()));
        }
        get_json(self.w.conn(), "campaigns", "id", id)
    }

    /// Stores a campaign.
    pub fn put_campaign(&mut self, c: crate::domain::campaign::Campaign) {
        self.campaigns.insert(c.spec.id.clone(), c);
    }

    /// Whether the store already acted on the occasion with this code (a member flagged at
    /// risk for a given last visit), pending writes included.
    pub fn occasion_seen(&self, code: &str) -> Result<bool, CacheError> {
        if self.occasions.contains(code) {
            return Ok(true);
        }
        self.w
            .conn()
            .prepare_cached("SELECT 1 FROM occasions WHERE code = ?1")
            .and_then(|mut st| st.exists(params![code]))
            .map_err(sql_err("reading an occasion"))
    }

    /// Records that the store acted on an occasion.
    pub fn put_occasion(&mut self, code: &str) {
        self.occasions.insert(code.to_string());
    }

    /// A staff member pushed by HQ, pending version first.
    pub fn staff(&self, staff_no: &str) -> Result<Option<StaffRecord>, CacheError> {
        if let Some(s) = self.staff.get(staff_no) {
            return Ok(Some(s.clone()));
        }
        get_json(self.w.conn(), "staff", "staff_no", staff_no)
    }

    /// Stores a staff record.
    pub fn put_staff(&mut self, s: StaffRecord) {
        self.staff.insert(s.staff_no.clone(), s);
    }

    /// HQ's membership rules, pending version first.
    pub fn rules(&self) -> Result<Option<(u64, Rules)>, CacheError> {
        match &self.rules {
            Some(r) => Ok(Some(r.clone())),
            None => stored_rules(self.w.conn()),
        }
    }

    /// Stores HQ's membership rules.
    pub fn put_rules(&mut self, version: u64, rules: Rules) {
        self.rules = Some((version, rules));
    }

    /// Whether this batch's commit is fsynced (see [`Pending::new`]).
    pub fn is_durable(&self) -> bool {
        self.durable
    }

    /// Records the journal `seq` the batch has applied up to.
    pub fn set_applied(&mut self, seq: u64) {
        self.applied_seq = Some(self.applied_seq.map_or(seq, |s| s.max(seq)));
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
            && self.products.is_empty()
            && self.stock.is_empty()
            && self.coupons.is_empty()
            && self.waiting_prices.is_empty()
            && self.feedback.is_empty()
            && self.campaigns.is_empty()
            && self.occasions.is_empty()
            && self.staff.is_empty()
            && self.rules.is_none()
            && self.index.is_empty()
            && self.displaced_cards.is_empty()
            && self.applied_seq.is_none()
    }

    /// Writes everything and commits the cache transaction.
    pub fn commit(mut self) -> Result<(), CacheError> {
        let result = self.write().and_then(|written| {
            self.w
                .conn()
                .prepare_cached("COMMIT")
                .and_then(|mut st| st.execute([]))
                .map(|_| written)
                .map_err(sql_err("committing a cache write"))
        });
        if let Ok(written) = &result {
            {
                let mut memo = self.w.memo.borrow_mut();
                self.products
                    .iter()
                    .for_each(|(k, p)| memo.products.keep(k, p));
                self.stock.iter().for_each(|(k, s)| memo.stock.keep(k, s));
            }
            if let Some(b) = self.w.bulk().as_mut() {
                if written.flushed {
                    b.clear();
                }
                for (idx, k, rid) in &written.deferred {
                    b.add(*idx, *k, *rid);
                }
            }
            self.open = false;
            self.restore_sync();
            if !self.is_empty() {
                // Phone and card entries that changed lose their hints as readers learn of the
                // write (see `cache::hints`).
                let changed: Vec<(bool, Vec<u8>)> = [Idx::Phone, Idx::Card]
                    .iter()
                    .filter_map(|idx| self.index.get(idx).map(|keys| (idx, keys)))
                    .flat_map(|(idx, keys)| keys.keys().map(|k| (*idx == Idx::Card, k.clone())))
                    .collect();
                if changed.is_empty() {
                    self.w.note_write();
                } else {
                    self.w.note_index_write(&changed);
                }
            }
        } else {
            // Rolled back, or perhaps not: what the cache holds is not known for certain.
            self.w.memo.borrow_mut().clear();
        }

        // On failure the transaction is rolled back when `self` drops.
        result.map(|_| ())
    }
}

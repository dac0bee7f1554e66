//! [`Pending`]: the effects of one group commit, held in memory until the journal has committed,
//! then written to sled. Reads see the pending writes first, so two sales in one batch see each
//! other (the second customer cannot spend points the first already spent).

use std::collections::{BTreeSet, HashMap};

use super::codec::{decode_member, encode_json, encode_member, get_json};
use super::{Cache, CacheError, sled_err};
use crate::domain::catalog::{Coupon, Product, StockLevel};
use crate::domain::contact::{name_search_key, phone_tail};
use crate::domain::member::Member;
use crate::pii::IndexField;

/// Index trees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Idx {
    Phone,
    Card,
    Tail,
    Name,
    Barcode,
}

/// The prefix under which multi-valued index entries (`key ‖ 0x00 ‖ member id`) are stored.
pub(crate) fn multi_prefix(key: &[u8]) -> Vec<u8> {
    let mut p = key.to_vec();
    p.push(0);
    p
}

fn index_tree(cache: &Cache, idx: Idx) -> &sled::Tree {
    match idx {
        Idx::Phone => &cache.idx_phone,
        Idx::Card => &cache.idx_card,
        Idx::Tail => &cache.idx_tail,
        Idx::Name => &cache.idx_name,
        Idx::Barcode => &cache.idx_barcode,
    }
}

/// Pending cache writes of one batch.
pub struct Pending<'c> {
    cache: &'c Cache,
    members: HashMap<String, Member>,
    products: HashMap<String, Product>,
    stock: HashMap<String, StockLevel>,
    coupons: HashMap<String, Coupon>,
    index: HashMap<(Idx, Vec<u8>), Option<Vec<u8>>>,
    applied_seq: Option<u64>,
}

impl<'c> Pending<'c> {
    pub(super) fn new(cache: &'c Cache) -> Pending<'c> {
        Pending {
            cache,
            members: HashMap::new(),
            products: HashMap::new(),
            stock: HashMap::new(),
            coupons: HashMap::new(),
            index: HashMap::new(),
            applied_seq: None,
        }
    }

    /// The cache underneath.
    pub fn cache(&self) -> &Cache {
        self.cache
    }

    /// A member, pending version first.
    pub fn member(&self, id: &str) -> Result<Option<Member>, CacheError> {
        if let Some(m) = self.members.get(id) {
            return Ok(Some(m.clone()));
        }
        match self
            .cache
            .members
            .get(id)
            .map_err(sled_err("reading a member"))?
        {
            Some(v) => decode_member(&self.cache.codec, id, &v).map(Some),
            None => Ok(None),
        }
    }

    fn index_get(&self, idx: Idx, key: &[u8]) -> Result<Option<Vec<u8>>, CacheError> {
        if let Some(v) = self.index.get(&(idx, key.to_vec())) {
            return Ok(v.clone());
        }
        Ok(index_tree(self.cache, idx)
            .get(key)
            .map_err(sled_err("reading an index"))?
            .map(|v| v.to_vec()))
    }

    /// The id of the member holding this phone, pending writes included.
    pub fn member_id_by_phone(&self, phone: &str) -> Result<Option<String>, CacheError> {
        let key = self.cache.codec.index_key(IndexField::Phone, phone);
        Ok(self
            .index_get(Idx::Phone, &key)?
            .map(|v| String::from_utf8_lossy(&v).to_string()))
    }

    /// The id of the member holding this card, pending writes included.
    pub fn member_id_by_card(&self, card: &str) -> Result<Option<String>, CacheError> {
        let key = self.cache.codec.index_key(IndexField::Card, card);
        Ok(self
            .index_get(Idx::Card, &key)?
            .map(|v| String::from_utf8_lossy(&v).to_string()))
    }

    /// The index entries a member should have.
    fn member_keys(&self, m: &Member) -> BTreeSet<(Idx, Vec<u8>)> {
        let codec = &self.cache.codec;
        let mut keys = BTreeSet::new();
        if let Some(p) = &m.profile {
            keys.insert((Idx::Phone, codec.index_key(IndexField::Phone, &p.phone)));
            let mut tail =
                multi_prefix(&codec.index_key(IndexField::PhoneTail, phone_tail(&p.phone)));
            tail.extend_from_slice(m.id.as_bytes());
            keys.insert((Idx::Tail, tail));
            let mut name =
                multi_prefix(&codec.index_key(IndexField::Name, &name_search_key(&p.name)));
            name.extend_from_slice(m.id.as_bytes());
            keys.insert((Idx::Name, name));
            if let Some(card) = &p.card_no {
                keys.insert((Idx::Card, codec.index_key(IndexField::Card, card)));
            }
        }
        keys
    }

    fn index_value(idx: Idx, id: &str) -> Vec<u8> {
        match idx {
            Idx::Phone | Idx::Card | Idx::Barcode => id.as_bytes().to_vec(),
            Idx::Tail | Idx::Name => Vec::new(),
        }
    }

    /// Stores a member and brings its index entries up to date.
    pub fn put_member(&mut self, m: Member) -> Result<(), CacheError> {
        let old_keys = match self.member(&m.id)? {
            Some(old) => self.member_keys(&old),
            None => BTreeSet::new(),
        };
        let new_keys = self.member_keys(&m);
        for (idx, key) in old_keys.difference(&new_keys) {
            // A unique index entry is removed only if it still points at this member.
            let owned = match idx {
                Idx::Phone | Idx::Card => {
                    self.index_get(*idx, key)?.as_deref() == Some(m.id.as_bytes())
                }
                _ => true,
            };
            if owned {
                self.index.insert((*idx, key.clone()), None);
            }
        }
        for (idx, key) in new_keys {
            let value = Self::index_value(idx, &m.id);
            self.index.insert((idx, key), Some(value));
        }
        self.members.insert(m.id.clone(), m);
        Ok(())
    }

    /// Rewrites a member's index entries without changing the member (replay of an event the
    /// member already reflects: the entity may have reached disk while its index did not).
    pub fn reindex_member(&mut self, m: &Member) {
        for (idx, key) in self.member_keys(m) {
            let value = Self::index_value(idx, &m.id);
            self.index.insert((idx, key), Some(value));
        }
    }

    /// A product, pending version first.
    pub fn product(&self, sku: &str) -> Result<Option<Product>, CacheError> {
        if let Some(p) = self.products.get(sku) {
            return Ok(Some(p.clone()));
        }
        get_json(&self.cache.products, "products", sku)
    }

    /// Stores a product and brings its barcode index up to date.
    pub fn put_product(&mut self, p: Product) -> Result<(), CacheError> {
        if let Some(old) = self.product(&p.sku)? {
            for b in old.barcodes.iter().filter(|b| !p.barcodes.contains(b)) {
                if self.index_get(Idx::Barcode, b.as_bytes())?.as_deref() == Some(p.sku.as_bytes())
                {
                    self.index
                        .insert((Idx::Barcode, b.as_bytes().to_vec()), None);
                }
            }
        }
        for b in &p.barcodes {
            self.index.insert(
                (Idx::Barcode, b.as_bytes().to_vec()),
                Some(p.sku.as_bytes().to_vec()),
            );
        }
        self.products.insert(p.sku.clone(), p);
        Ok(())
    }

    /// Stock of a product, pending version first.
    pub fn stock(&self, sku: &str) -> Result<Option<StockLevel>, CacheError> {
        if let Some(s) = self.stock.get(sku) {
            return Ok(Some(s.clone()));
        }
        get_json(&self.cache.stock, "stock", sku)
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
        get_json(&self.cache.coupons, "coupons", code)
    }

    /// Stores a coupon.
    pub fn put_coupon(&mut self, c: Coupon) {
        self.coupons.insert(c.code.clone(), c);
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
            && self.index.is_empty()
            && self.applied_seq.is_none()
    }

    /// Writes everything to sled: entities and indices first, the applied `seq` last.
    pub fn commit(self) -> Result<(), CacheError> {
        // Plain inserts, not `apply_batch`: a sled batch seals and writes the log buffer twice
        // (six writes and range syncs per sale), while inserts stay in the log buffer until
        // sled's periodic flush. Atomicity across keys is not needed: each entity carries the
        // seq applied to it, index entries are rewritten on replay, and sled recovers a prefix
        // of its log, so the watermark written last never runs ahead of the entities.
        let codec = &self.cache.codec;
        for (id, m) in &self.members {
            self.cache
                .members
                .insert(id.as_bytes(), encode_member(codec, m))
                .map_err(sled_err("writing members"))?;
        }
        for (sku, p) in &self.products {
            self.cache
                .products
                .insert(sku.as_bytes(), encode_json(p))
                .map_err(sled_err("writing products"))?;
        }
        for (sku, s) in &self.stock {
            self.cache
                .stock
                .insert(sku.as_bytes(), encode_json(s))
                .map_err(sled_err("writing stock"))?;
        }
        for (code, c) in &self.coupons {
            self.cache
                .coupons
                .insert(code.as_bytes(), encode_json(c))
                .map_err(sled_err("writing coupons"))?;
        }
        for ((idx, key), value) in self.index {
            let tree = index_tree(self.cache, idx);
            match value {
                Some(v) => tree.insert(key, v).map(|_| ()),
                None => tree.remove(key).map(|_| ()),
            }
            .map_err(sled_err("writing an index"))?;
        }
        if let Some(seq) = self.applied_seq
            && seq > self.cache.applied_seq()?
        {
            self.cache
                .meta
                .insert("applied_seq", &seq.to_be_bytes())
                .map_err(sled_err("writing the applied seq"))?;
        }
        Ok(())
    }
}

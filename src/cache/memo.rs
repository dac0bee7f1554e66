//! The writer's memo of products and stock levels as the cache holds them.
//!
//! A sale reads its product once and its stock twice (pricing, then the projection of the sale
//! event), each a SQLite read and a JSON decode: about 6 % of a one-line sale's instructions,
//! on the ledger thread between a terminal's request and its fsync. The memo
//! keeps what those reads found, and what each committed batch wrote, so that the next sale of
//! the same product reads neither.
//!
//! It only ever holds committed rows: an overlay ([`super::Pending`]) fills it from reads (its
//! transaction writes nothing before its commit, so a read sees the committed cache) and
//! updates it with its own writes only once its commit succeeded. A batch rolled back leaves
//! it as it was; a commit that failed empties it. Products and stock are written nowhere else.
//! Bounded: past [`MAX`] entries of a kind it starts again empty.

use std::collections::HashMap;

use crate::domain::catalog::{Product, StockLevel};

/// Most entries of each kind kept (a store's catalogue is usually well under it; one beyond
/// it costs a re-read, not a wrong answer).
pub(super) const MAX: usize = 4096;

#[derive(Default)]
pub(super) struct Memo {
    products: HashMap<String, Product>,
    stock: HashMap<String, StockLevel>,
}

impl Memo {
    pub(super) fn product(&self, sku: &str) -> Option<Product> {
        self.products.get(sku).cloned()
    }

    pub(super) fn stock(&self, sku: &str) -> Option<StockLevel> {
        self.stock.get(sku).cloned()
    }

    pub(super) fn keep_product(&mut self, p: &Product) {
        keep(&mut self.products, &p.sku, p);
    }

    pub(super) fn keep_stock(&mut self, s: &StockLevel) {
        keep(&mut self.stock, &s.sku, s);
    }

    /// Forgets everything (the cache's state is not known for certain).
    pub(super) fn clear(&mut self) {
        self.products.clear();
        self.stock.clear();
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> (usize, usize) {
        (self.products.len(), self.stock.len())
    }
}

fn keep<T: Clone>(map: &mut HashMap<String, T>, key: &str, value: &T) {
    if let Some(slot) = map.get_mut(key) {
        *slot = value.clone();
        return;
    }
    if map.len() >= MAX {
        map.clear();
    }
    map.insert(key.to_string(), value.clone());
}

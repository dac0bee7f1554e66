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
    pub(super) products: Kept<Product>,
    pub(super) stock: Kept<StockLevel>,
}

impl Memo {
    /// Forgets everything (the cache's state is not known for certain).
    pub(super) fn clear(&mut self) {
        self.products.0.clear();
        self.stock.0.clear();
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> (usize, usize) {
        (self.products.0.len(), self.stock.0.len())
    }
}

/// One kind's committed rows, by SKU.
pub(super) struct Kept<T>(HashMap<String, T>);

impl<T> Default for Kept<T> {
    fn default() -> Self {
        Kept(HashMap::new())
    }
}

impl<T: Clone> Kept<T> {
    pub(super) fn get(&self, sku: &str) -> Option<T> {
        self.0.get(sku).cloned()
    }

    pub(super) fn keep(&mut self, sku: &str, value: &T) {
        if let Some(slot) = self.0.get_mut(sku) {
            *slot = value.clone();
            return;
        }
        if self.0.len() >= MAX {
            self.0.clear();
        }
        self.0.insert(sku.to_string(), value.clone());
    }
}

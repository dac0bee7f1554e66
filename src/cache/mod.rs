//! The cache: sled trees for members, products, stock, coupons and sessions (design section 1).
//!
//! Everything here can be rebuilt: projections of the journal are replayed from the journal, and
//! HQ's master data is resent by HQ. So the cache is opened with a small page cache, is never
//! fsynced on the request path, and a cache that does not open is moved aside and rebuilt rather
//! than stopping the store.
//!
//! Writes happen only in the ledger thread through [`Pending`], an overlay that collects the
//! effects of one group commit and is written after the journal commit. Every entity records
//! the journal `seq` last applied to it, so replaying an event twice changes nothing.

mod codec;
mod pending;
mod project;
mod sessions;

use std::path::{Path, PathBuf};

use sled::Tree;

use crate::domain::catalog::{Coupon, Product, StockLevel};
use crate::domain::member::Member;
use crate::pii::{IndexField, PiiCodec};

pub use pending::Pending;
pub use project::project;
pub use sessions::Session;

/// Cache failures.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Occurs when sled fails; `context` says what was being done.
    #[error("{context}: {source}")]
    Sled {
        /// What storebox was doing.
        context: &'static str,
        /// sled's error.
        #[source]
        source: sled::Error,
    },
    /// Occurs when a cached value cannot be decoded (damage, or a format from another version).
    #[error("cached {tree} entry {key} cannot be decoded: {reason}")]
    Decode {
        /// Tree.
        tree: &'static str,
        /// Key (printable form).
        key: String,
        /// Why.
        reason: String,
    },
}

pub(crate) fn sled_err(context: &'static str) -> impl FnOnce(sled::Error) -> CacheError {
    move |source| CacheError::Sled { context, source }
}

/// Version of the cache layout; a cache with another version is rebuilt.
const LAYOUT_VERSION: &[u8] = b"2";

/// The sled trees. Cheap to clone (sled handles are reference-counted).
#[derive(Clone)]
pub struct Cache {
    db: sled::Db,
    pub(crate) members: Tree,
    pub(crate) idx_phone: Tree,
    pub(crate) idx_card: Tree,
    pub(crate) idx_tail: Tree,
    pub(crate) idx_name: Tree,
    pub(crate) products: Tree,
    pub(crate) idx_barcode: Tree,
    pub(crate) stock: Tree,
    pub(crate) coupons: Tree,
    pub(crate) sessions: Tree,
    pub(crate) meta: Tree,
    pub(crate) codec: PiiCodec,
    /// Sessions already read, so a request's token check costs no sled read or JSON decode.
    pub(crate) session_memo: sessions::Memo,
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
}

impl Cache {
    /// Opens the cache under `dir/cache`, moving aside a cache that fails to open or has
    /// another layout.
    pub fn open(
        dir: &Path,
        capacity_mb: u64,
        codec: PiiCodec,
    ) -> Result<(Cache, Opened), CacheError> {
        let path = dir.join("cache");
        let existed = path.exists();
        match Cache::open_at(&path, capacity_mb, codec.clone()) {
            Ok(cache) if cache.layout_ok()? => {
                let how = if existed {
                    Opened::Existing
                } else {
                    Opened::Created
                };
                Ok((cache, how))
            }
            Ok(cache) => {
                tracing::warn!("the cache has another layout; moving it aside and rebuilding");
                drop(cache);
                Cache::rebuild(&path, capacity_mb, codec)
            }
            Err(e) => {
                tracing::error!(error = %e, "the cache does not open; moving it aside and rebuilding");
                Cache::rebuild(&path, capacity_mb, codec)
            }
        }
    }

    /// Moves the cache at `path` aside and creates an empty one there (stamped with the
    /// current layout, so the next start keeps it).
    fn rebuild(
        path: &Path,
        capacity_mb: u64,
        codec: PiiCodec,
    ) -> Result<(Cache, Opened), CacheError> {
        let aside = Cache::move_aside(path)?;
        let cache = Cache::open_at(path, capacity_mb, codec)?;
        cache.layout_ok()?;
        Ok((cache, Opened::Rebuilt(aside)))
    }

    fn move_aside(path: &Path) -> Result<PathBuf, CacheError> {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S");
        let aside = path.with_file_name(format!("cache.broken-{stamp}"));
        std::fs::rename(path, &aside).map_err(|e| CacheError::Sled {
            context: "moving a broken cache aside",
            source: sled::Error::Io(e),
        })?;
        Ok(aside)
    }

    fn open_at(path: &Path, capacity_mb: u64, codec: PiiCodec) -> Result<Cache, CacheError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(capacity_mb * 1024 * 1024)
            .flush_every_ms(Some(500))
            .open()
            .map_err(sled_err("opening the cache"))?;
        let tree = |name: &str| db.open_tree(name).map_err(sled_err("opening a cache tree"));
        let cache = Cache {
            members: tree("members")?,
            idx_phone: tree("idx_phone")?,
            idx_card: tree("idx_card")?,
            idx_tail: tree("idx_tail")?,
            idx_name: tree("idx_name")?,
            products: tree("products")?,
            idx_barcode: tree("idx_barcode")?,
            stock: tree("stock")?,
            coupons: tree("coupons")?,
            sessions: tree("sessions")?,
            meta: tree("meta")?,
            db,
            codec,
            session_memo: Default::default(),
        };
        Ok(cache)
    }

    /// Checks the layout version, stamping a new cache.
    fn layout_ok(&self) -> Result<bool, CacheError> {
        match self
            .meta
            .get("layout")
            .map_err(sled_err("reading the cache layout"))?
        {
            Some(v) => Ok(v.as_ref() == LAYOUT_VERSION),
            None => {
                let empty = self.members.is_empty() && self.products.is_empty();
                if empty {
                    self.meta
                        .insert("layout", LAYOUT_VERSION)
                        .map_err(sled_err("stamping the cache layout"))?;
                    // Durable at once: a cache without its stamp would be rebuilt next time.
                    self.meta
                        .flush()
                        .map_err(sled_err("stamping the cache layout"))?;
                }
                Ok(empty)
            }
        }
    }

    /// The journal `seq` up to which projections have been applied.
    pub fn applied_seq(&self) -> Result<u64, CacheError> {
        Ok(self
            .meta
            .get("applied_seq")
            .map_err(sled_err("reading the applied seq"))?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0))
    }

    /// Writes dirty pages to disk (called at shutdown; sled also flushes every 500 ms).
    pub fn flush(&self) -> Result<(), CacheError> {
        self.db.flush().map_err(sled_err("flushing the cache"))?;
        Ok(())
    }

    /// Bytes the cache occupies on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    /// A member by id.
    pub fn member(&self, id: &str) -> Result<Option<Member>, CacheError> {
        match self.members.get(id).map_err(sled_err("reading a member"))? {
            Some(v) => codec::decode_member(&self.codec, id, &v).map(Some),
            None => Ok(None),
        }
    }

    /// The member with this (normalised) phone.
    pub fn member_by_phone(&self, phone: &str) -> Result<Option<Member>, CacheError> {
        self.member_by_index(&self.idx_phone, IndexField::Phone, phone)
    }

    /// The member with this (normalised) card number.
    pub fn member_by_card(&self, card: &str) -> Result<Option<Member>, CacheError> {
        self.member_by_index(&self.idx_card, IndexField::Card, card)
    }

    fn member_by_index(
        &self,
        tree: &Tree,
        field: IndexField,
        value: &str,
    ) -> Result<Option<Member>, CacheError> {
        let key = self.codec.index_key(field, value);
        match tree.get(key).map_err(sled_err("reading a member index"))? {
            Some(id) => self.member(&String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    /// Members whose phone ends in `tail` (four digits), at most `limit`.
    pub fn members_by_tail(&self, tail: &str, limit: usize) -> Result<Vec<Member>, CacheError> {
        self.members_by_prefix(&self.idx_tail, IndexField::PhoneTail, tail, limit)
    }

    /// Members whose name search key equals `name`, at most `limit`.
    pub fn members_by_name(&self, name: &str, limit: usize) -> Result<Vec<Member>, CacheError> {
        self.members_by_prefix(&self.idx_name, IndexField::Name, name, limit)
    }

    fn members_by_prefix(
        &self,
        tree: &Tree,
        field: IndexField,
        value: &str,
        limit: usize,
    ) -> Result<Vec<Member>, CacheError> {
        let prefix = pending::multi_prefix(&self.codec.index_key(field, value));
        let mut out = Vec::new();
        for item in tree.scan_prefix(&prefix).take(limit) {
            let (k, _) = item.map_err(sled_err("scanning a member index"))?;
            let id = String::from_utf8_lossy(&k[prefix.len()..]).to_string();
            if let Some(m) = self.member(&id)? {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// Number of members cached.
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// A product by SKU.
    pub fn product(&self, sku: &str) -> Result<Option<Product>, CacheError> {
        codec::get_json(&self.products, "products", sku)
    }

    /// The product carrying this barcode.
    pub fn product_by_barcode(&self, code: &str) -> Result<Option<Product>, CacheError> {
        match self
            .idx_barcode
            .get(code)
            .map_err(sled_err("reading the barcode index"))?
        {
            Some(sku) => self.product(&String::from_utf8_lossy(&sku)),
            None => Ok(None),
        }
    }

    /// Stock of a product (`None` if never counted).
    pub fn stock(&self, sku: &str) -> Result<Option<StockLevel>, CacheError> {
        codec::get_json(&self.stock, "stock", sku)
    }

    /// Products below their safety stock, by SKU, at most `limit`.
    pub fn stock_below_safety(&self, limit: usize) -> Result<Vec<StockLevel>, CacheError> {
        let mut out = Vec::new();
        for item in self.stock.iter() {
            let (k, v) = item.map_err(sled_err("scanning stock"))?;
            let level: StockLevel = codec::decode_json("stock", &k, &v)?;
            if level.below_safety() {
                out.push(level);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// A coupon by code.
    pub fn coupon(&self, code: &str) -> Result<Option<Coupon>, CacheError> {
        codec::get_json(&self.coupons, "coupons", code)
    }

    /// The personal-data codec the cache (and the journal) use.
    pub fn codec(&self) -> &PiiCodec {
        &self.codec
    }

    /// A read-write overlay for the ledger.
    pub fn pending(&self) -> Pending<'_> {
        Pending::new(self)
    }
}

impl Cache {
    /// Stock levels by SKU, at most `limit`.
    pub fn stock_levels(&self, limit: usize) -> Result<Vec<StockLevel>, CacheError> {
        let mut out = Vec::new();
        for item in self.stock.iter().take(limit) {
            let (k, v) = item.map_err(sled_err("scanning stock"))?;
            out.push(codec::decode_json("stock", &k, &v)?);
        }
        Ok(out)
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
mod tests {
    use super::*;

    #[test]
    fn a_rebuilt_cache_is_kept_on_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let (c, how) = Cache::open(dir.path(), 4, PiiCodec::plain()).unwrap();
        assert_eq!(how, Opened::Created);
        c.meta.insert("layout", b"0".as_slice()).unwrap();
        c.flush().unwrap();
        drop(c);
        let (c, how) = Cache::open(dir.path(), 4, PiiCodec::plain()).unwrap();
        assert!(matches!(how, Opened::Rebuilt(_)), "{how:?}");
        c.products.insert("sku", b"{}".as_slice()).unwrap();
        c.flush().unwrap();
        drop(c);
        let (_, how) = Cache::open(dir.path(), 4, PiiCodec::plain()).unwrap();
        assert_eq!(how, Opened::Existing);
    }
}

//! The config file as written: serde structs with `deny_unknown_fields`, and the parse step
//! that turns TOML errors into `(key, reason)`.

use std::path::PathBuf;

use serde::Deserialize;

use super::membership::RawMembership;
use super::{Environment, Invalid, SeedProduct, bad};
use crate::domain::access::Role;
use crate::domain::catalog::{MAX_UNIT_PRICE, Product};
use crate::domain::money::TotalRounding;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub(super) store: RawStore,
    #[serde(default)]
    pub(super) http: RawHttp,
    #[serde(default)]
    pub(super) storage: RawStorage,
    #[serde(default)]
    pub(super) terminals: Vec<RawTerminal>,
    #[serde(default)]
    pub(super) staff: Vec<RawStaff>,
    #[serde(default)]
    pub(super) membership: RawMembership,
    #[serde(default)]
    pub(super) products: Vec<RawProduct>,
    #[serde(default)]
    pub(super) uplink: Option<super::uplink::RawUplink>,
    #[serde(default)]
    pub(super) devices: Vec<super::devices::RawDevice>,
    #[serde(default)]
    pub(super) security: Option<super::security::RawSecurity>,
    #[serde(default)]
    pub(super) backup: Option<super::security::RawBackup>,
    #[serde(default)]
    pub(super) insight: Option<super::insight::RawInsight>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    pub id: String,
    pub name: String,
    #[serde(default = "default_tz")]
    pub timezone: String,
    #[serde(default = "default_currency")]
    pub currency: String,
    #[serde(default)]
    pub environment: Environment,
    #[serde(default = "yes")]
    pub allow_negative_stock: bool,
    #[serde(default)]
    pub total_rounding: TotalRounding,
}

fn default_tz() -> String {
    "Asia/Shanghai".into()
}
fn default_currency() -> String {
    "CNY".into()
}
fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default = "default_body")]
    pub max_body_bytes: usize,
    #[serde(default = "default_session_hours")]
    pub session_hours: u32,
    #[serde(default)]
    pub tls: Option<super::tls::RawHttpTls>,
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp {
            listen: default_listen(),
            max_body_bytes: default_body(),
            session_hours: default_session_hours(),
            tls: None,
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_body() -> usize {
    64 * 1024
}
fn default_session_hours() -> u32 {
    12
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStorage {
    #[serde(default = "default_dir")]
    pub dir: PathBuf,
    #[serde(default = "default_cache_mb")]
    pub cache_capacity_mb: u64,
    #[serde(default = "default_idem_days")]
    pub idempotency_days: u32,
    #[serde(default = "default_min_free_mb")]
    pub min_free_mb: u64,
}

fn default_min_free_mb() -> u64 {
    256
}

impl Default for RawStorage {
    fn default() -> Self {
        RawStorage {
            dir: default_dir(),
            cache_capacity_mb: default_cache_mb(),
            idempotency_days: default_idem_days(),
            min_free_mb: default_min_free_mb(),
        }
    }
}

fn default_dir() -> PathBuf {
    PathBuf::from("./data")
}
fn default_cache_mb() -> u64 {
    16
}
fn default_idem_days() -> u32 {
    30
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTerminal {
    pub id: String,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub token_sha256: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStaff {
    pub staff_no: String,
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub pin: Option<String>,
    #[serde(default)]
    pub pin_hash: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProduct {
    pub sku: String,
    pub name: String,
    pub price: i64,
    #[serde(default)]
    pub barcodes: Vec<String>,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub unit: Option<String>,
    #[serde(default = "yes")]
    pub member_discount: bool,
    #[serde(default)]
    pub stock: Option<i64>,
    #[serde(default)]
    pub safety_stock: Option<i64>,
}

/// Parses TOML text; on error returns the dotted key path and a reason with the line number.
pub(super) fn parse(text: &str) -> Result<RawConfig, Invalid> {
    let de = toml::Deserializer::parse(text).map_err(|e| toml_error(text, &e, String::new()))?;
    serde_path_to_error::deserialize::<_, RawConfig>(de).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        toml_error(text, e.inner(), key)
    })
}

fn toml_error(text: &str, e: &toml::de::Error, key: String) -> Invalid {
    let line = e
        .span()
        .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
    let reason = match line {
        Some(l) => format!("{} (line {l})", e.message().trim()),
        None => e.message().trim().to_string(),
    };
    (key, reason)
}

pub(super) fn to_products(raw: Vec<RawProduct>) -> Result<Vec<SeedProduct>, Invalid> {
    let mut out: Vec<SeedProduct> = Vec::with_capacity(raw.len());
    for (i, p) in raw.into_iter().enumerate() {
        let key = |f: &str| format!("products[{i}].{f}");
        crate::domain::catalog::validate_sku(&p.sku).map_err(|r| bad(key("sku"), r))?;
        if out.iter().any(|o| o.product.sku == p.sku) {
            return Err(bad(key("sku"), format!("duplicate sku {}", p.sku)));
        }
        if p.name.trim().is_empty() {
            return Err(bad(key("name"), "must not be empty"));
        }
        if !(0..=MAX_UNIT_PRICE).contains(&p.price) {
            return Err(bad(key("price"), "must be 0..=1000000000 minor units"));
        }
        if p.stock.is_some_and(|n| !(0..=1_000_000).contains(&n)) {
            return Err(bad(key("stock"), "must be 0..=1000000"));
        }
        if p.safety_stock
            .is_some_and(|n| !(0..=1_000_000).contains(&n))
        {
            return Err(bad(key("safety_stock"), "must be 0..=1000000"));
        }
        for b in &p.barcodes {
            crate::domain::catalog::validate_barcode(b).map_err(|r| bad(key("barcodes"), r))?;
            // The barcode index names one product per barcode: the ledger refuses to start on
            // a second one, so say so here, naming the key.
            if let Some(o) = out.iter().find(|o| o.product.barcodes.contains(b)) {
                return Err(bad(
                    key("barcodes"),
                    format!("barcode {b} is already product {}'s", o.product.sku),
                ));
            }
        }
        out.push(SeedProduct {
            product: Product {
                sku: p.sku,
                name: p.name,
                barcodes: p.barcodes,
                price: p.price,
                promo: None,
                category: p.category,
                unit: p.unit,
                member_discount: p.member_discount,
                active: true,
                version: 0,
                seq: 0,
            },
            stock: p.stock,
            safety_stock: p.safety_stock,
        });
    }
    Ok(out)
}

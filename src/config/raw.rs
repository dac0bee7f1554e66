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

/// Reads a config file as text. A file that is not UTF-8 — saved as "ANSI" (GBK, Windows-1252)
/// or "Unicode" (UTF-16) by a Windows editor — is refused with the line where the text stops
/// being UTF-8 and what to do; a UTF-8 BOM and CRLF line ends are read as they are.
pub(super) fn read(path: &std::path::Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    if bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]) {
        return Err("the file is UTF-16 (\"Unicode\" in Notepad); save it as UTF-8".into());
    }
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
        format!(
            "line {line} is not UTF-8 (the file was saved as GBK or Windows-1252, \"ANSI\" in \
             Notepad?); save it as UTF-8"
        )
    })
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
    let message = e.message().trim();
    let message = if is_secret(&key) {
        without_values(message)
    } else {
        message.to_string()
    };
    let reason = match line {
        Some(l) => format!("{message} (line {l})"),
        None => message,
    };
    (key, reason)
}

/// Keys whose values are secrets (or, for `pin_hash`, can be tried against every PIN).
const SECRET_KEYS: [&str; 4] = ["pin", "pin_hash", "token", "password"];

/// Whether the value at `key` (`staff[1].pin`) is a secret.
fn is_secret(key: &str) -> bool {
    let field = key.rsplit('.').next().unwrap_or(key);
    SECRET_KEYS.contains(&field)
}

/// A parser's message without the values it quotes in backticks: "invalid type: integer
/// `1111`, expected a string" for a PIN written without quotes would otherwise put the PIN in
/// the log and, at a reload, in the audit chain.
fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for (i, part) in message.split('`').enumerate() {
        if i % 2 == 0 {
            out.push_str(part);
        } else {
            out.truncate(out.trim_end().len());
        }
    }
    out
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
            // The barcode index names one product per barcode (a UPC-A and its EAN-13
            // spelling are one): the ledger refuses to start on a second one, so say so here,
            // naming the key.
            let twin = crate::domain::catalog::gtin_twin(b);
            if let Some(o) = out.iter().find(|o| {
                o.product
                    .barcodes
                    .iter()
                    .any(|x| x == b || twin.as_ref() == Some(x))
            }) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A PIN, token or password written without quotes is refused without its value: the
    /// message goes to the log and, at a reload, to the audit chain (and HQ's copy).
    #[test]
    fn a_secret_of_the_wrong_type_is_not_repeated() {
        let store = "[store]\nid = \"sh-001\"\nname = \"店\"\nenvironment = \"development\"\n";
        for (extra, key) in [
            (
                "[[staff]]\nstaff_no = \"1\"\nname = \"a\"\nrole = \"cashier\"\npin = 860731\n",
                "staff[0].pin",
            ),
            (
                "[[terminals]]\nid = \"pos-1\"\ntoken = 860731\n",
                "terminals[0].token",
            ),
            (
                "[uplink]\nhost = \"hq\"\nusername = \"u\"\npassword = 860731\n",
                "uplink.password",
            ),
        ] {
            let (k, reason) = parse(&format!("{store}{extra}")).unwrap_err();
            assert_eq!(k, key);
            assert!(!reason.contains("860731"), "{key}: {reason}");
            assert!(
                reason.starts_with("invalid type: integer, expected"),
                "{reason}"
            );
            assert!(reason.contains("line "), "{reason}");
        }
        // Other values are still named.
        let (k, reason) = parse(&format!("{store}[http]\nlisten = 8080\n")).unwrap_err();
        assert_eq!(k, "http.listen");
        assert!(reason.contains("`8080`"), "{reason}");
    }
}

//! Products, stock levels and coupons: the master data a sale is priced against.

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use super::money::{Bps, Money};

/// Largest unit price accepted (¥10,000,000): keeps every cart far from `i64` overflow.
pub const MAX_UNIT_PRICE: Money = 1_000_000_000;

/// A temporary promotional price for a product (a line promotion).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Promo {
    /// The promotional unit price.
    pub price: Money,
    /// First instant the promotion applies (open-ended when absent).
    #[serde(default)]
    pub from: Option<DateTime<FixedOffset>>,
    /// Last instant the promotion applies (open-ended when absent).
    #[serde(default)]
    pub to: Option<DateTime<FixedOffset>>,
}

impl Promo {
    /// Whether it may stand on a product priced `price`: a price from 0 to `price`, not ending
    /// before it starts (a terminal's edit and HQ's data are held to the same).
    pub fn fits(&self, price: Money) -> bool {
        (0..=price).contains(&self.price) && self.from.zip(self.to).is_none_or(|(f, t)| f <= t)
    }

    /// Whether the promotion is on at `now`.
    pub fn active(&self, now: DateTime<FixedOffset>) -> bool {
        self.from.is_none_or(|f| now >= f) && self.to.is_none_or(|t| now <= t)
    }
}

/// A product as the till sells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    /// Stock-keeping unit, the product's key.
    pub sku: String,
    /// Name printed on the receipt.
    pub name: String,
    /// Barcodes (EAN-13, UPC-A, in-store codes) that identify the product at the scanner.
    #[serde(default)]
    pub barcodes: Vec<String>,
    /// Regular unit price.
    pub price: Money,
    /// Current line promotion, if any.
    #[serde(default)]
    pub promo: Option<Promo>,
    /// Category for reports.
    #[serde(default)]
    pub category: Option<String>,
    /// Selling unit (件, 瓶, kg).
    #[serde(default)]
    pub unit: Option<String>,
    /// Whether level and birthday discounts apply (tobacco, infant formula usually not).
    #[serde(default = "yes")]
    pub member_discount: bool,
    /// Whether the product may be sold (HQ can delist).
    #[serde(default = "yes")]
    pub active: bool,
    /// HQ's version; a local edit bumps it.
    #[serde(default)]
    pub version: u64,
    /// Last journal `seq` applied to this product (local edits).
    #[serde(default)]
    pub seq: u64,
}

fn yes() -> bool {
    true
}

impl Product {
    /// The unit price in force at `now` (promotional price when a promotion is on and lower).
    pub fn unit_price_at(&self, now: DateTime<FixedOffset>) -> Money {
        match &self.promo {
            Some(p) if p.active(now) && p.price < self.price => p.price,
            _ => self.price,
        }
    }
}

/// Stock of one product at this store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockLevel {
    /// The product.
    pub sku: String,
    /// Units on hand; can go negative when the store allows selling what the books lack.
    pub on_hand: i64,
    /// Below this level the store is alerted (`stock.low`) and the item is listed for reorder.
    #[serde(default)]
    pub safety_stock: i64,
    /// HQ's version of the stock count (HQ stock pushes older than this are ignored).
    #[serde(default)]
    pub version: u64,
    /// Last journal `seq` applied.
    #[serde(default)]
    pub seq: u64,
    /// When the level last changed.
    #[serde(default)]
    pub updated_at: Option<DateTime<FixedOffset>>,
    /// A safety stock and no units yet: the level of a new product, made by its safety stock
    /// alone, until the first units go in or out (a movement, a sale, HQ's count). Such a
    /// level is below its safety stock without having gone below it: `stock.low` waits for
    /// those first units, and is raised if they leave the product below it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub awaiting_delivery: bool,
}

impl StockLevel {
    /// An empty level for a product never counted.
    pub fn empty(sku: &str) -> Self {
        StockLevel {
            sku: sku.to_string(),
            on_hand: 0,
            safety_stock: 0,
            version: 0,
            seq: 0,
            updated_at: None,
            awaiting_delivery: false,
        }
    }

    /// Whether the level is under its safety stock. A product without one (0: none set) is
    /// never below it, negative stock included, as `stock.low` is never raised for it.
    pub fn below_safety(&self) -> bool {
        self.safety_stock > 0 && self.on_hand < self.safety_stock
    }

    /// Whether going from this level to `on_hand` units and a safety stock of `safety_stock`
    /// takes the product below its safety stock (`stock.low`): units going out, or a safety
    /// stock raised above what is on hand. A level already below raises nothing more, but for
    /// a new product's ([`StockLevel::awaiting_delivery`]), which its first units leaving it
    /// below do take below (its safety stock changed alone does not: the caller does not ask).
    pub fn falls_below_safety(&self, on_hand: i64, safety_stock: i64) -> bool {
        let after = StockLevel {
            on_hand,
            safety_stock,
            ..self.clone()
        };
        let was_below = self.below_safety() && !self.awaiting_delivery;
        !was_below && after.below_safety()
    }
}

/// What a coupon takes off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum CouponKind {
    /// 满100减20: `amount` off when the cart reaches `threshold`.
    AmountOff {
        /// Cart amount (after line promotions and level benefits) needed to use the coupon.
        threshold: Money,
        /// Amount taken off.
        amount: Money,
    },
    /// 9折: `percent` off every line, optionally capped.
    PercentOff {
        /// Percent off in basis points (9折 = 10 % = 1000).
        bps: Bps,
        /// Largest discount for one sale.
        #[serde(default)]
        cap: Option<Money>,
    },
    /// One unit of `sku` free.
    FreeItem {
        /// The product given free.
        sku: String,
    },
}

impl CouponKind {
    /// Checks the amounts: a positive amount off with a threshold of zero or more, a percent
    /// of 0.01–100 % with a positive cap if any, a valid SKU for a free item (whether the
    /// store knows it is the caller's question).
    pub fn validate(&self) -> Result<(), String> {
        let ok = match self {
            CouponKind::AmountOff { threshold, amount } => {
                (0..=MAX_UNIT_PRICE).contains(threshold) && (1..=MAX_UNIT_PRICE).contains(amount)
            }
            CouponKind::PercentOff { bps, cap } => {
                (1..=10_000).contains(bps) && cap.is_none_or(|c| (1..=MAX_UNIT_PRICE).contains(&c))
            }
            CouponKind::FreeItem { sku } => validate_sku(sku).is_ok(),
        };
        if ok {
            Ok(())
        } else {
            Err("amount and threshold must be positive amounts, percent 0.01–100 %, a free item a valid SKU".into())
        }
    }
}

/// Where a coupon was used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CouponUse {
    /// The sale it paid for.
    pub sale_id: String,
    /// The store that took it.
    pub store_id: String,
    /// When.
    pub at: DateTime<FixedOffset>,
}

/// A single-use coupon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coupon {
    /// The code printed on it / scanned at the till.
    pub code: String,
    /// Short description (满100减20).
    #[serde(default)]
    pub title: String,
    /// What it takes off.
    pub kind: CouponKind,
    /// First valid instant.
    #[serde(default)]
    pub valid_from: Option<DateTime<FixedOffset>>,
    /// Last valid instant.
    #[serde(default)]
    pub valid_to: Option<DateTime<FixedOffset>>,
    /// The member it is bound to; a bearer coupon when absent.
    #[serde(default)]
    pub member_id: Option<String>,
    /// Whether it can be combined with the level or birthday discount (the chain's default: yes).
    #[serde(default = "yes")]
    pub combinable_with_level: bool,
    /// Whether other coupons may be used in the same sale (default: one coupon per sale).
    #[serde(default)]
    pub stackable: bool,
    /// Set once used; coupons are single use.
    #[serde(default)]
    pub used: Option<CouponUse>,
    /// HQ's version.
    #[serde(default)]
    pub version: u64,
    /// Last journal `seq` applied.
    #[serde(default)]
    pub seq: u64,
}

/// Whether a coupon's validity, where both ends are given, starts before it ends.
pub fn valid_window(
    from: Option<DateTime<FixedOffset>>,
    to: Option<DateTime<FixedOffset>>,
) -> bool {
    from.zip(to).is_none_or(|(f, t)| f < t)
}

/// Checks a SKU: 1–32 ASCII letters, digits, `-`, `_` or `.` (it appears in URLs and keys).
pub fn validate_sku(sku: &str) -> Result<(), String> {
    if (1..=32).contains(&sku.len())
        && sku
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        Ok(())
    } else {
        Err(format!(
            "sku '{}' must be 1–32 letters, digits, '-', '_' or '.'",
            sku.escape_debug()
        ))
    }
}

/// Checks a barcode as stored on a product: 1–48 ASCII letters or digits.
pub fn validate_barcode(code: &str) -> Result<(), String> {
    if (1..=48).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(format!(
            "barcode '{}' must be 1–48 letters or digits",
            code.escape_debug()
        ))
    }
}

/// Whether the last of `digits` (ASCII digits only) is their GS1 check digit (weights 3,1
/// from the right over the others): EAN-13, EAN-8, UPC-A.
pub fn gs1_check_ok(digits: &[u8]) -> bool {
    if !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let Some((&check, body)) = digits.split_last() else {
        return false;
    };
    let sum: u32 = body
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| u32::from(d - b'0') * if i % 2 == 0 { 3 } else { 1 })
        .sum();
    (10 - sum % 10) % 10 == u32::from(check - b'0')
}

/// The same GTIN in its other usual spelling: a UPC-A's 12 digits as the EAN-13 with a leading
/// `0`, and such an EAN-13 as the UPC-A. Scanners are often set to send UPC-A as EAN-13 (or
/// back), and product files hold either; the check digit is the same in both. Only a code
/// whose check digit is right has a twin: a store's own 12-digit code that is no GTIN is not
/// the 13-digit code with a `0` in front.
pub fn gtin_twin(code: &str) -> Option<String> {
    if !gs1_check_ok(code.as_bytes()) {
        return None;
    }
    match code.len() {
        12 => Some(format!("0{code}")),
        13 => code.strip_prefix('0').map(str::to_owned),
        _ => None,
    }
}

/// The UPC-A a UPC-E code stands for. Scanners send UPC-E, by default, as eight digits: the
/// number system (0 or 1), six digits and the check digit, which is the check digit of the
/// UPC-A — not what an EAN-8 of the same digits would carry. `None` for anything else, and for
/// eight digits whose last one is not their UPC-A's check digit.
pub fn upc_e_to_upc_a(code: &str) -> Option<String> {
    let b = code.as_bytes();
    if b.len() != 8 || !b.iter().all(u8::is_ascii_digit) || !matches!(b[0], b'0' | b'1') {
        return None;
    }
    let (ns, d, check) = (&code[..1], &code[1..7], &code[7..]);
    // The six digits compress manufacturer and item numbers; the last says how.
    let middle = match b[6] {
        b'0'..=b'2' => format!("{}{}0000{}", &d[..2], &d[5..], &d[2..5]),
        b'3' => format!("{}00000{}", &d[..3], &d[3..5]),
        b'4' => format!("{}00000{}", &d[..4], &d[4..5]),
        _ => format!("{}0000{}", &d[..5], &d[5..]),
    };
    let upc_a = format!("{ns}{middle}{check}");
    gs1_check_ok(upc_a.as_bytes()).then_some(upc_a)
}

/// A barcode typed at the till as it is stored: surrounding white space removed and full-width
/// letters and digits (a Chinese input method's full-width mode) made ASCII.
pub fn typed_barcode(raw: &str) -> String {
    raw.trim().chars().map(super::contact::half_width).collect()
}

/// A coupon code typed or scanned at the till (or by a manager issuing one) as it is stored:
/// white space and invisible characters dropped wherever they are (a code has none), full-width
/// letters, digits and `－` (a Chinese input method's full-width mode) made ASCII, letters
/// upper-cased.
pub fn typed_coupon_code(raw: &str) -> String {
    raw.chars()
        .filter(|c| !c.is_whitespace() && !super::contact::is_invisible(*c))
        .map(|c| super::contact::half_width(c).to_ascii_uppercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::StockLevel;

    #[test]
    fn upc_a_and_its_ean_13_spelling_are_twins() {
        use super::gtin_twin;
        assert_eq!(gtin_twin("036000291452").as_deref(), Some("0036000291452"));
        assert_eq!(gtin_twin("0036000291452").as_deref(), Some("036000291452"));
        assert_eq!(gtin_twin("6901234567892"), None);
        assert_eq!(gtin_twin("96385074"), None);
        assert_eq!(gtin_twin("SKU-TEA-001"), None);
        assert_eq!(gtin_twin("03600029145A"), None);
        // A 12-digit code whose last digit is no check digit is no UPC-A.
        assert_eq!(gtin_twin("036000291453"), None);
        assert_eq!(gtin_twin("0036000291453"), None);
    }

    #[test]
    fn a_upc_e_code_stands_for_its_upc_a() {
        use super::upc_e_to_upc_a;
        // A Coca-Cola can, and one example of each way the six digits compress.
        assert_eq!(upc_e_to_upc_a("04963406").as_deref(), Some("049000006346"));
        assert_eq!(upc_e_to_upc_a("01234565").as_deref(), Some("012345000065"));
        assert_eq!(upc_e_to_upc_a("01234531").as_deref(), Some("012300000451"));
        assert_eq!(upc_e_to_upc_a("01234543").as_deref(), Some("012340000053"));
        assert_eq!(upc_e_to_upc_a("01234589").as_deref(), Some("012345000089"));
        // A wrong check digit, number system 2..9, or not eight digits.
        assert_eq!(upc_e_to_upc_a("04963407"), None);
        assert_eq!(upc_e_to_upc_a("24963406"), None);
        assert_eq!(upc_e_to_upc_a("0496340"), None);
        assert_eq!(upc_e_to_upc_a("0496340A"), None);
    }

    #[test]
    fn typed_barcodes_lose_full_width() {
        use super::typed_barcode;
        assert_eq!(
            typed_barcode(" ６９０１２３４５６７８９２\u{3000}"),
            "6901234567892"
        );
        assert_eq!(typed_barcode("ＳＫＵ１"), "SKU1");
        assert_eq!(typed_barcode("6901234567892"), "6901234567892");
    }

    #[test]
    fn typed_coupon_codes_lose_case_spaces_and_full_width() {
        use super::typed_coupon_code;
        assert_eq!(typed_coupon_code(" ｍｊ１００－２０\u{3000}"), "MJ100-20");
        assert_eq!(typed_coupon_code("wl-1a2b 3c4d5e\u{200B}"), "WL-1A2B3C4D5E");
        assert_eq!(typed_coupon_code("MJ100-20"), "MJ100-20");
    }

    fn level(on_hand: i64, safety_stock: i64) -> StockLevel {
        StockLevel {
            on_hand,
            safety_stock,
            ..StockLevel::empty("TEA")
        }
    }

    #[test]
    fn a_level_falls_below_safety_by_units_out_or_by_a_raised_safety_stock() {
        // Units going out, the safety stock kept.
        assert!(level(10, 10).falls_below_safety(9, 10));
        assert!(!level(11, 10).falls_below_safety(10, 10));
        // Already below: nothing more.
        assert!(!level(9, 10).falls_below_safety(8, 10));
        // A safety stock raised above what is on hand, from none or from a lower one.
        assert!(level(5, 0).falls_below_safety(5, 10));
        assert!(level(5, 3).falls_below_safety(5, 10));
        assert!(!level(5, 8).falls_below_safety(5, 12));
        // None set: never below, negative stock included.
        assert!(!level(1, 0).falls_below_safety(-3, 0));
        assert!(!level(5, 10).falls_below_safety(5, 0));
        // A new product's first units: below if they leave it below, however few.
        let new = StockLevel {
            awaiting_delivery: true,
            ..level(0, 10)
        };
        assert!(new.falls_below_safety(5, 10));
        assert!(new.falls_below_safety(-1, 10));
        assert!(!new.falls_below_safety(10, 10));
    }
}

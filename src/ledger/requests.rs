//! What terminals ask for, as typed requests. These are the JSON bodies of the API (with
//! `deny_unknown_fields`), and what the ledger executes. Their canonical JSON is hashed for
//! idempotency, so the same request always hashes the same whatever its key order or spacing.

use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::adjustment::AdjustReason;
use crate::domain::catalog::{CouponKind, Promo};
use crate::domain::event::StockReason;
use crate::domain::member::{Consent, Gender};
use crate::domain::refund::RefundRequestLine;
use crate::domain::sale::Payment;

/// `POST /v1/members`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterMember {
    /// Full name.
    pub name: String,
    /// Mobile number (any usual spelling; normalised).
    pub phone: String,
    /// Gender.
    #[serde(default, deserialize_with = "null_is_default")]
    pub gender: Gender,
    /// Date of birth.
    #[serde(default)]
    pub birthday: Option<NaiveDate>,
    /// Physical card number.
    #[serde(default)]
    pub card_no: Option<String>,
    /// Tags.
    #[serde(default, deserialize_with = "null_is_default")]
    pub tags: Vec<String>,
    /// Marketing consent.
    #[serde(default, deserialize_with = "null_is_default")]
    pub consent: Consent,
}

/// A row of a member import, and what was computed for it ahead of the ledger.
#[derive(Debug, Clone)]
pub struct ImportRow {
    /// Its line in the file.
    pub line: u64,
    /// The row as read.
    pub req: RegisterMember,
    /// Its new member, prepared off the ledger thread (`None`: the ledger normalises the row
    /// itself, and refuses it if it must).
    pub prepared: Option<Box<PreparedMember>>,
}

/// A new member computed ahead from an import row: normalised profile and tags, a fresh id, the
/// index keys and the sealed forms of the profile. Used when the row's phone is new.
#[derive(Clone)]
pub struct PreparedMember {
    /// The id the member gets.
    pub id: String,
    /// The normalised profile.
    pub profile: crate::domain::member::Profile,
    /// The normalised tags.
    pub tags: Vec<String>,
    /// The profile's index keys.
    pub keys: crate::cache::MemberKeys,
    /// The profile sealed for the journal and the cache.
    pub sealed: crate::pii::Presealed,
}

impl std::fmt::Debug for PreparedMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No personal data in debug output.
        write!(f, "PreparedMember({})", self.id)
    }
}

/// `PATCH /v1/members/{id}`: only the fields present change. `card_no: ""` or `null` removes
/// the card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UpdateMember {
    /// New name.
    #[serde(default)]
    pub name: Option<String>,
    /// New phone.
    #[serde(default)]
    pub phone: Option<String>,
    /// New gender.
    #[serde(default)]
    pub gender: Option<Gender>,
    /// New birthday (changing one already on file needs a manager).
    #[serde(default)]
    pub birthday: Option<NaiveDate>,
    /// New card number; empty or `null` removes it (absent leaves it). Left out when
    /// serialized if absent: written as `null`, it would read back as a removal.
    #[serde(
        default,
        deserialize_with = "null_removes",
        skip_serializing_if = "Option::is_none"
    )]
    pub card_no: Option<String>,
    /// New tags (replace the old ones).
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// New consent.
    #[serde(default)]
    pub consent: Option<Consent>,
}

/// One line of a cart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CartLine {
    /// Product.
    pub sku: String,
    /// Units (1..=9999); negative or fractional numbers are rejected when parsing.
    pub qty: u32,
}

/// `POST /v1/sales/quote` and `POST /v1/sales`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaleRequest {
    /// Member buying, if identified.
    #[serde(default)]
    pub member_id: Option<String>,
    /// Cart.
    pub lines: Vec<CartLine>,
    /// Coupons presented.
    #[serde(default, deserialize_with = "null_is_default")]
    pub coupon_codes: Vec<String>,
    /// Points to pay with.
    #[serde(default, deserialize_with = "null_is_default")]
    pub redeem_points: i64,
    /// Payments tendered (ignored by quote).
    #[serde(default, deserialize_with = "null_is_default")]
    pub payments: Vec<Payment>,
    /// Print the receipt on the terminal's printer (default yes).
    #[serde(default = "yes", deserialize_with = "null_is_yes")]
    pub print: bool,
}

fn yes() -> bool {
    true
}

/// A yes-by-default flag given as `null`: yes, as when it is left out.
fn null_is_yes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(true))
}

/// `POST /v1/sales/{id}/refunds`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    /// Lines to refund; everything still refundable when absent.
    #[serde(default)]
    pub lines: Option<Vec<RefundRequestLine>>,
    /// Why.
    pub reason: String,
    /// Put the goods back into stock (default yes).
    #[serde(default = "yes", deserialize_with = "null_is_yes")]
    pub restock: bool,
}

/// `POST /v1/stock/movements`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockMovement {
    /// Product.
    pub sku: String,
    /// Units in (positive) or out (negative).
    pub delta: i64,
    /// Why.
    pub reason: StockReason,
    /// Free text (delivery note number, stocktake sheet).
    #[serde(default)]
    pub note: String,
}

/// `POST /v1/members/{id}/points`: a manager's adjustment of the member's points.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdjustPoints {
    /// Points added (positive) or taken (negative); not 0, at most 1,000,000 either way.
    pub delta: i64,
    /// Why.
    pub reason: AdjustReason,
    /// Free text (at most 200 characters; no personal data: it goes to HQ).
    #[serde(default, deserialize_with = "null_is_default")]
    pub note: String,
}

/// `PUT /v1/products/{sku}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductEdit {
    /// Name on receipts.
    pub name: String,
    /// Regular unit price.
    pub price: i64,
    /// Barcodes.
    #[serde(default)]
    pub barcodes: Vec<String>,
    /// Line promotion.
    #[serde(default)]
    pub promo: Option<Promo>,
    /// Category.
    #[serde(default)]
    pub category: Option<String>,
    /// Unit.
    #[serde(default)]
    pub unit: Option<String>,
    /// Level and birthday discounts apply (default yes).
    #[serde(default = "yes")]
    pub member_discount: bool,
    /// For sale (default yes).
    #[serde(default = "yes")]
    pub active: bool,
    /// Safety stock, if it changes.
    #[serde(default)]
    pub safety_stock: Option<i64>,
}

/// `POST /v1/coupons`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueCoupon {
    /// Code; generated when absent.
    #[serde(default)]
    pub code: Option<String>,
    /// Title (满100减20).
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
    /// Member it is bound to.
    #[serde(default)]
    pub member_id: Option<String>,
    /// Combinable with level benefits (default yes).
    #[serde(default = "yes")]
    pub combinable_with_level: bool,
    /// Other coupons allowed in the same sale (default no).
    #[serde(default)]
    pub stackable: bool,
}

/// [`request_hash`] keyed with the store's key, for a body that holds personal data (a
/// registration's name and phone): the hash kept with the idempotency key, unkeyed, would let
/// anyone with the journal and no key try phone numbers against it.
pub fn personal_request_hash<T: Serialize>(
    keys: &crate::security::StoreKeys,
    target: &str,
    req: &T,
) -> String {
    let body = serde_json::to_vec(req).unwrap_or_default();
    hex::encode(
        crate::security::seal::Mac256::new(&keys.idempotency).mac(&[target.as_bytes(), &body]),
    )
}

/// SHA-256 (hex) of a request's canonical JSON plus what it applies to (the path's id).
pub fn request_hash<T: Serialize>(target: &str, req: &T) -> String {
    let mut h = Sha256::new();
    h.update(target.as_bytes());
    h.update([0]);
    h.update(serde_json::to_vec(req).unwrap_or_default());
    hex::encode(h.finalize())
}

/// An optional field given as `null` (what many terminals' JSON libraries write for a field
/// they leave unset): its default, as when it is left out (design section 4's `?` fields).
fn null_is_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A field given as `null` in an edit: removal, as the empty string says it (JSON merge
/// patch); a field left out is `None` through `#[serde(default)]` and changes nothing.
fn null_removes<'de, D>(d: D) -> Result<Option<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Ok(Some(Option::<String>::deserialize(d)?.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An edit that leaves the card alone means the same once written out and read back (a
    /// `null` written for it would read back as "remove the card").
    #[test]
    fn an_edit_without_a_card_keeps_its_meaning_through_json() {
        for edit in [
            UpdateMember {
                name: Some("张三".into()),
                ..UpdateMember::default()
            },
            UpdateMember {
                card_no: Some(String::new()),
                ..UpdateMember::default()
            },
            UpdateMember {
                card_no: Some("8800123".into()),
                ..UpdateMember::default()
            },
        ] {
            let json = serde_json::to_string(&edit).unwrap();
            let back: UpdateMember = serde_json::from_str(&json).unwrap();
            assert_eq!(back, edit, "{json}");
        }
        let removes: UpdateMember = serde_json::from_str(r#"{"card_no": null}"#).unwrap();
        assert_eq!(removes.card_no.as_deref(), Some(""));
    }
}

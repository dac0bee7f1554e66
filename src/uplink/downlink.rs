//! Downlink messages from HQ (design section 5, "Down"): parsed and validated here, applied by
//! the ledger. Pure: bytes in, an [`HqUpdate`] or a reason out.
//!
//! Payload: `{"id", "kind", "version", "items": [...]}`. Unknown fields are ignored (HQ may add
//! some); a message that is not JSON, has no items array, or whose kind does not match its
//! topic is malformed as a whole. A bad item (a member with an impossible phone) is left out and
//! reported, and the rest of the message applies.

use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::config::{RawMembership, membership_from_raw};
use crate::domain::campaign::{CampaignSpec, CheckedSpec, check};
use crate::domain::catalog::{Coupon, MAX_UNIT_PRICE, Product, validate_barcode, validate_sku};
use crate::domain::contact::{
    check_birthday, normalize_card, normalize_name, normalize_phone, normalize_tags,
};
use crate::domain::member::{Consent, Gender, Member, Profile, StoreCounters};
use crate::domain::sync::{HqUpdate, PriceUpdate, StaffRecord, StockCount};

/// What a downlink message asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Downlink {
    /// Master data to apply.
    Update(HqUpdate),
    /// HQ asks the store to request a full snapshot.
    Resync,
    /// Campaigns HQ defines for the chain or this store: each store picks its own members.
    Campaigns(Vec<CheckedSpec>),
}

/// A parsed message: what to do, and the items left out with why.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The message's id (for logs and alerts).
    pub id: String,
    /// What to do.
    pub action: Downlink,
    /// Items left out: `"items[3]: phone: must be ..."`.
    pub rejected: Vec<String>,
    /// Their positions in the message's `items` (3 for the one above), in the same order.
    pub rejected_at: Vec<usize>,
}

/// The message as received: each item left as its text in the payload, made a [`Value`] only
/// when its turn comes. A whole message's items as values at once (HQ's 4 MiB of members is
/// about 15,000 of them) took 87 MB beside the payload, and the box's resident memory
/// stayed there after.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(borrow)]
    items: Vec<&'a RawValue>,
}

/// HQ's member record: the profile fields flat, as HQ's API has them.
#[derive(Deserialize, Default)]
struct HqMember {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    gender: Gender,
    #[serde(default)]
    birthday: Option<NaiveDate>,
    #[serde(default)]
    card_no: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    consent: Consent,
    #[serde(default)]
    level: Option<HqLevel>,
    #[serde(default)]
    counters: std::collections::BTreeMap<String, StoreCounters>,
    #[serde(default)]
    created_at: Option<DateTime<FixedOffset>>,
    #[serde(default)]
    created_store: String,
    version: u64,
    #[serde(default)]
    erased: bool,
}

/// A member's level from HQ: its code, or `{"code", "name"}` as the store's own events and API
/// give it (`level.changed`, a sale's `member.level`): HQ echoing that shape back is the same
/// level, not an item to refuse.
#[derive(Deserialize)]
#[serde(untagged)]
enum HqLevel {
    Code(String),
    Ref { code: String },
}

impl HqLevel {
    fn code(self) -> String {
        match self {
            HqLevel::Code(c) | HqLevel::Ref { code: c } => c,
        }
    }
}

/// What an erasure needs of HQ's member record: it applies whatever else the record holds.
#[derive(Deserialize)]
struct HqErasure {
    id: String,
    version: u64,
    #[serde(default)]
    erased: bool,
}

#[derive(Deserialize)]
struct RulesItem {
    version: u64,
    membership: RawMembership,
}

#[derive(Deserialize)]
struct CommandItem {
    command: String,
}

/// Parses a downlink message of `kind` (from its topic). `now` stamps an erasure by HQ.
pub fn parse(kind: &str, payload: &[u8], now: DateTime<FixedOffset>) -> Result<Parsed, String> {
    // Without the offending value: it may be personal data (a members message whose items
    // are a string), and the reason goes to HQ and the journal in the clear.
    let env: Envelope = serde_json::from_slice(payload)
        .map_err(|e| format!("not a downlink message: {}", without_value(&e.to_string())))?;
    if let Some(k) = &env.kind
        && k != kind
    {
        return Err(format!("payload kind {k} does not match topic kind {kind}"));
    }
    let id = match env.id {
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let (mut rejected, mut rejected_at) = (Vec::new(), Vec::new());
    macro_rules! items {
        ($convert:expr) => {{
            let mut out = Vec::with_capacity(env.items.len());
            for (i, raw) in env.items.into_iter().enumerate() {
                let item = serde_json::from_str::<Value>(raw.get())
                    .map_err(|e| without_value(&e.to_string()));
                match item.and_then($convert) {
                    Ok(v) => out.push(v),
                    Err(e) => {
                        rejected.push(format!("items[{i}]: {e}"));
                        rejected_at.push(i);
                    }
                }
            }
            out
        }};
    }
    let action = match kind {
        "products" => Downlink::Update(HqUpdate::Products(items!(product))),
        "prices" => Downlink::Update(HqUpdate::Prices(items!(price))),
        "members" => Downlink::Update(HqUpdate::Members(items!(|v| member(v, now)))),
        "coupons" => Downlink::Update(HqUpdate::Coupons(items!(coupon))),
        "staff" => Downlink::Update(HqUpdate::Staff(items!(staff))),
        "stock" => Downlink::Update(HqUpdate::Stock(items!(stock))),
        "campaigns" => Downlink::Campaigns(items!(campaign)),
        "rules" => {
            let mut all = items!(rules);
            if all.len() != 1 {
                // Say why items were refused: HQ has no other way to learn it.
                let why = if rejected.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", rejected.join("; "))
                };
                return Err(format!(
                    "a rules message carries exactly one valid item, not {}{why}",
                    all.len()
                ));
            }
            let (version, rules) = all.remove(0);
            Downlink::Update(HqUpdate::Rules {
                version,
                rules: Box::new(rules),
            })
        }
        "command" => {
            let cmds: Vec<String> = items!(|v| serde_json::from_value::<CommandItem>(v)
                .map(|c| c.command)
                .map_err(|e| e.to_string()));
            match cmds.as_slice() {
                [c] if c == "resync" => Downlink::Resync,
                [c] => return Err(format!("unknown command {c}")),
                _ => return Err("a command message carries exactly one command".into()),
            }
        }
        other => return Err(format!("unknown downlink kind {other}")),
    };
    Ok(Parsed {
        id,
        action,
        rejected,
        rejected_at,
    })
}

/// `v` as a `T`; refused, with the path of the field at fault (`promo.price: invalid type: …`),
/// so that HQ's integrators can tell what to fix (serde's own error says only what was wrong).
fn decode<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, String> {
    serde_path_to_error::deserialize(&v).map_err(|e| at_path(&e))
}

/// A decoding error as `path: reason`, or the reason alone for the item as a whole.
fn at_path(e: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = e.path().to_string();
    if path == "." {
        e.inner().to_string()
    } else {
        format!("{path}: {}", e.inner())
    }
}

/// [`decode`] for items that hold personal data or secrets (members, staff): the error names
/// the kind of value and what was expected, not the value — a phone sent as a number would
/// otherwise be quoted in full into the alert, which the journal keeps in the clear.
fn decode_quietly<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, String> {
    decode(v).map_err(|e| without_value(&e))
}

/// A serde message with the offending value left out (`invalid type: integer `138…`, expected
/// a string` → `invalid type: integer, expected a string`).
fn without_value(msg: &str) -> String {
    for marker in ["invalid type: ", "invalid value: ", "unknown variant "] {
        if let Some(at) = msg.find(marker) {
            let from = at + marker.len();
            let end = msg[from..]
                .find(", expected")
                .map_or(msg.len(), |i| from + i);
            let kind = if marker == "unknown variant " {
                ""
            } else {
                msg[from..end].split([' ', '`', '"']).next().unwrap_or("")
            };
            let head = if kind.is_empty() {
                msg[..from].trim_end()
            } else {
                &msg[..from]
            };
            return format!("{head}{kind}{}", &msg[end..]);
        }
    }
    msg.to_string()
}

/// Every item carries its own `version` (docs/uplink.md). `Product` and `Coupon` default it
/// to 0 for the store's own records; an item from HQ without one is refused, as a price or a
/// stock count without one is, instead of being applied as version 0 (or silently ignored
/// against a product the store holds at version 0).
fn require_version(v: &Value) -> Result<(), String> {
    match v {
        Value::Object(o) if !o.contains_key("version") => Err("missing field `version`".into()),
        _ => Ok(()),
    }
}

fn product(v: Value) -> Result<Product, String> {
    require_version(&v)?;
    let mut p: Product = decode(v)?;
    validate_sku(&p.sku)?;
    if p.name.trim().is_empty() || p.name.chars().count() > 64 {
        return Err(format!("{}: name must be 1–64 characters", p.sku));
    }
    if !(0..=MAX_UNIT_PRICE).contains(&p.price)
        || p.promo.as_ref().is_some_and(|pr| !pr.fits(p.price))
    {
        return Err(format!(
            "{}: price out of range, or a promotion that ends before it starts",
            p.sku
        ));
    }
    for b in &p.barcodes {
        validate_barcode(b)?;
    }
    p.seq = 0;
    Ok(p)
}

fn price(v: Value) -> Result<PriceUpdate, String> {
    let p: PriceUpdate = decode(v)?;
    validate_sku(&p.sku)?;
    if !(0..=MAX_UNIT_PRICE).contains(&p.price)
        || p.promo.as_ref().is_some_and(|pr| !pr.fits(p.price))
    {
        return Err(format!(
            "{}: price out of range, or a promotion that ends before it starts",
            p.sku
        ));
    }
    Ok(p)
}

/// The largest stock count (or safety stock) HQ may send, either way.
const MAX_STOCK_COUNT: i64 = 1_000_000_000;

fn stock(v: Value) -> Result<StockCount, String> {
    let s: StockCount = decode(v)?;
    validate_sku(&s.sku)?;
    let plausible = -MAX_STOCK_COUNT..=MAX_STOCK_COUNT;
    if !plausible.contains(&s.on_hand)
        || s.safety_stock
            .is_some_and(|n| !(0..=MAX_STOCK_COUNT).contains(&n))
    {
        return Err(format!("{}: implausible stock count", s.sku));
    }
    Ok(s)
}

fn coupon(v: Value) -> Result<Coupon, String> {
    require_version(&v)?;
    let mut c: Coupon = decode(v)?;
    c.code = c.code.trim().to_ascii_uppercase();
    if !(4..=32).contains(&c.code.len())
        || !c
            .code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(format!(
            "coupon code {} must be 4–32 letters, digits or '-'",
            c.code
        ));
    }
    c.kind
        .validate()
        .map_err(|e| format!("coupon {}: {e}", c.code))?;
    if !crate::domain::catalog::valid_window(c.valid_from, c.valid_to) {
        return Err(format!(
            "coupon {}: valid_from must be before valid_to",
            c.code
        ));
    }
    c.seq = 0;
    Ok(c)
}

fn campaign(v: Value) -> Result<CheckedSpec, String> {
    let spec: CampaignSpec = decode(v)?;
    let id = spec.id.clone();
    check(spec).map_err(|e| format!("campaign {id}: {e}"))
}

fn staff(v: Value) -> Result<StaffRecord, String> {
    let s: StaffRecord = decode_quietly(v)?;
    if s.staff_no.is_empty()
        || s.staff_no.len() > 16
        || !s.staff_no.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err("staff_no must be 1–16 letters or digits".into());
    }
    crate::security::pin::check_hash(&s.pin_hash)
        .map_err(|e| format!("{}: pin_hash: {e}", s.staff_no))?;
    Ok(s)
}

fn rules(v: Value) -> Result<(u64, crate::domain::rules::Rules), String> {
    let r: RulesItem = decode(v)?;
    let rules = membership_from_raw(r.membership)?;
    Ok((r.version, rules))
}

fn member(v: Value, now: DateTime<FixedOffset>) -> Result<Member, String> {
    // An erasure applies whatever else the record holds (fields in a form this store does not
    // read): refusing it would keep the member's personal data here.
    let m: HqMember = match serde_path_to_error::deserialize(&v) {
        Ok(m) => m,
        Err(e) => match HqErasure::deserialize(&v) {
            Ok(x) if x.erased => HqMember {
                id: x.id,
                version: x.version,
                erased: true,
                ..HqMember::default()
            },
            _ => return Err(without_value(&at_path(&e))),
        },
    };
    if m.id.is_empty() || m.id.len() > 64 || m.id.chars().any(char::is_control) {
        return Err("member id must be 1–64 characters".into());
    }
    let profile = if m.erased {
        None
    } else {
        let (Some(name), Some(phone)) = (m.name, m.phone) else {
            return Err(format!("{}: name and phone are required", m.id));
        };
        if let Some(b) = m.birthday {
            check_birthday(b, now.date_naive()).map_err(|e| format!("{}: {e}", m.id))?;
        }
        Some(Profile {
            name: normalize_name(&name).map_err(|e| format!("{}: {e}", m.id))?,
            phone: normalize_phone(&phone).map_err(|e| format!("{}: {e}", m.id))?,
            gender: m.gender,
            birthday: m.birthday,
            card_no: m
                .card_no
                .as_deref()
                .filter(|c| !c.trim().is_empty())
                .map(normalize_card)
                .transpose()
                .map_err(|e| format!("{}: {e}", m.id))?,
        })
    };
    let mut counters = m.counters;
    if let Err(e) = crate::domain::member::check_counters(&mut counters) {
        // An erasure is applied all the same, without the counters; anything else waits for
        // HQ to send sound ones.
        if !m.erased {
            return Err(format!("{}: {e}", m.id));
        }
        counters = std::collections::BTreeMap::new();
    }
    Ok(Member {
        // Tags are free text about the person: an erased member keeps none.
        tags: if m.erased {
            Vec::new()
        } else {
            normalize_tags(&m.tags).map_err(|e| format!("{}: {e}", m.id))?
        },
        id: m.id,
        profile,
        consent: m.consent,
        level: m.level.map(HqLevel::code),
        created_at: m.created_at.unwrap_or(now),
        created_store: m.created_store,
        counters,
        version: m.version,
        seq: 0,
        erased_at: m.erased.then_some(now),
    })
}

#[cfg(test)]
mod tests;

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

use crate::config::membership_from_value;
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
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    kind: Option<String>,
    items: Vec<Value>,
}

/// HQ's member record: the profile fields flat, as HQ's API has them.
#[derive(Deserialize)]
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
    level: Option<String>,
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

#[derive(Deserialize)]
struct RulesItem {
    version: u64,
    membership: Value,
}

#[derive(Deserialize)]
struct CommandItem {
    command: String,
}

/// Parses a downlink message of `kind` (from its topic). `now` stamps an erasure by HQ.
pub fn parse(kind: &str, payload: &[u8], now: DateTime<FixedOffset>) -> Result<Parsed, String> {
    let env: Envelope =
        serde_json::from_slice(payload).map_err(|e| format!("not a downlink message: {e}"))?;
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
    let mut rejected = Vec::new();
    macro_rules! items {
        ($convert:expr) => {{
            let mut out = Vec::with_capacity(env.items.len());
            for (i, item) in env.items.into_iter().enumerate() {
                match $convert(item) {
                    Ok(v) => out.push(v),
                    Err(e) => rejected.push(format!("items[{i}]: {e}")),
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
                return Err(format!(
                    "a rules message carries exactly one valid item, not {}",
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
    })
}

fn decode<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, String> {
    serde_json::from_value(v).map_err(|e| e.to_string())
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

fn product(v: Value) -> Result<Product, String> {
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
    let rules = membership_from_value(r.membership)?;
    Ok((r.version, rules))
}

fn member(v: Value, now: DateTime<FixedOffset>) -> Result<Member, String> {
    let m: HqMember = decode_quietly(v)?;
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
        tags: normalize_tags(&m.tags).map_err(|e| format!("{}: {e}", m.id))?,
        id: m.id,
        profile,
        consent: m.consent,
        level: m.level,
        created_at: m.created_at.unwrap_or(now),
        created_store: m.created_store,
        counters,
        version: m.version,
        seq: 0,
        erased_at: m.erased.then_some(now),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_rejected_member_or_staff_item_does_not_quote_its_values() {
        let msg = serde_json::json!({"kind": "members", "id": "m-1", "items": [
            {"id": "hq-1", "name": "慕容复", "phone": 13612349876u64, "version": 1},
            {"id": "hq-2", "name": "王语嫣", "phone": "13612340000", "gender": "女性x", "version": 1},
        ]});
        let parsed = parse("members", msg.to_string().as_bytes(), now()).unwrap();
        assert_eq!(parsed.rejected.len(), 2, "{:?}", parsed.rejected);
        let all = parsed.rejected.join("\n");
        assert!(
            !all.contains("13612349876") && !all.contains("女性x"),
            "{all}"
        );
        assert!(
            parsed.rejected[0].starts_with("items[0]: invalid type: integer, expected"),
            "{all}"
        );
        assert!(
            parsed.rejected[1].contains("unknown variant, expected"),
            "{all}"
        );
        let staff = serde_json::json!({"kind": "staff", "items": [
            {"staff_no": "3001", "name": "赵敏", "role": "cashier", "pin_hash": 123456, "version": 1},
        ]});
        let parsed = parse("staff", staff.to_string().as_bytes(), now()).unwrap();
        assert!(
            !parsed.rejected.join("").contains("123456"),
            "{:?}",
            parsed.rejected
        );
        // Products keep the value: it helps HQ find its mistake, and is no one's data.
        let product = serde_json::json!({"kind": "products", "items": [
            {"sku": "TEA", "name": "茶", "price": "12.50", "version": 1},
        ]});
        let parsed = parse("products", product.to_string().as_bytes(), now()).unwrap();
        assert!(
            parsed.rejected.join("").contains("12.50"),
            "{:?}",
            parsed.rejected
        );
    }

    fn now() -> DateTime<FixedOffset> {
        FixedOffset::east_opt(8 * 3600)
            .unwrap()
            .with_ymd_and_hms(2026, 11, 23, 10, 0, 0)
            .unwrap()
    }

    #[test]
    fn products_and_members() {
        let p = parse(
            "products",
            r#"{"id":"m1","kind":"products","version":3,"items":[
                {"sku":"A","name":"苹果","price":500,"version":3,"extra":"ignored"},
                {"sku":"bad sku","name":"x","price":1,"version":1}]}"#
                .as_bytes(),
            now(),
        )
        .unwrap();
        let Downlink::Update(HqUpdate::Products(items)) = p.action else {
            panic!()
        };
        assert_eq!(items.len(), 1);
        assert_eq!(p.rejected.len(), 1);
        assert!(p.rejected[0].starts_with("items[1]"));

        let p = parse(
            "members",
            r#"{"id":"m2","kind":"members","version":1,"items":[
                {"id":"hq-1","name":"赵敏","phone":"139 1111 2222","version":7,
                 "counters":{"sh-002":{"visits":3,"months":{"2026-10":{"spend":120000}}}}},
                {"id":"hq-2","erased":true,"version":9},
                {"id":"hq-3","name":"x","phone":"123","version":1}]}"#
                .as_bytes(),
            now(),
        )
        .unwrap();
        let Downlink::Update(HqUpdate::Members(items)) = p.action else {
            panic!()
        };
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].profile.as_ref().unwrap().phone, "13911112222");
        assert_eq!(items[0].total_spend(), 120_000);
        assert!(items[1].erased_at.is_some() && items[1].profile.is_none());
        assert_eq!(p.rejected.len(), 1);
    }

    /// How many of a message's items are refused.
    fn refused(topic: &str, items: &str) -> usize {
        let msg = format!(r#"{{"items":[{items}]}}"#);
        match parse(topic, msg.as_bytes(), now()) {
            Ok(p) => p.rejected.len(),
            Err(_) => usize::MAX,
        }
    }

    #[test]
    fn values_at_the_edge_of_their_types_are_refused_item_by_item() {
        // Stock counts whose absolute value does not exist, or is implausible.
        assert_eq!(
            refused(
                "stock",
                r#"{"sku":"A1","on_hand":-9223372036854775808,"version":9}"#
            ),
            1
        );
        assert_eq!(
            refused(
                "stock",
                r#"{"sku":"A1","on_hand":5,"safety_stock":9223372036854775807,"version":9}"#
            ),
            1
        );
        assert_eq!(
            refused(
                "stock",
                r#"{"sku":"A1","on_hand":-5,"safety_stock":3,"version":9}"#
            ),
            0
        );
        // A promotion below zero or above the price, in a price update as in a product.
        assert_eq!(
            refused(
                "prices",
                r#"{"sku":"A1","price":500,"promo":{"price":-100},"version":2}"#
            ),
            1
        );
        assert_eq!(
            refused(
                "prices",
                r#"{"sku":"A1","price":500,"promo":{"price":600},"version":2}"#
            ),
            1
        );
        assert_eq!(
            refused(
                "prices",
                r#"{"sku":"A1","price":500,"promo":{"price":400},"version":2}"#
            ),
            0
        );
        // A promotion that ends before it starts, in a product as in a price update.
        let reversed = r#""promo":{"price":400,"from":"2026-12-10T00:00:00+08:00","to":"2026-12-01T00:00:00+08:00"}"#;
        assert_eq!(
            refused(
                "products",
                &format!(r#"{{"sku":"A1","name":"苹果","price":500,{reversed},"version":2}}"#)
            ),
            1
        );
        assert_eq!(
            refused(
                "prices",
                &format!(r#"{{"sku":"A1","price":500,{reversed},"version":2}}"#)
            ),
            1
        );
        // A coupon valid from after it stops being valid.
        assert_eq!(
            refused(
                "coupons",
                r#"{"code":"HQ-0004","title":"x","kind":{"type":"percent_off","bps":1000},"valid_from":"2026-12-10T00:00:00+08:00","valid_to":"2026-12-10T00:00:00+08:00","version":1}"#
            ),
            1
        );
        // Coupons whose discount makes no sense.
        assert_eq!(
            refused(
                "coupons",
                r#"{"code":"HQ-0001","title":"x","kind":{"type":"percent_off","bps":0},"version":1}"#
            ),
            1
        );
        assert_eq!(
            refused(
                "coupons",
                r#"{"code":"HQ-0002","title":"x","kind":{"type":"amount_off","threshold":0,"amount":-5},"version":1}"#
            ),
            1
        );
        assert_eq!(
            refused(
                "coupons",
                r#"{"code":"HQ-0003","title":"x","kind":{"type":"percent_off","bps":1000},"version":1}"#
            ),
            0
        );
        // Member counters whose sums would overflow, or whose months are not months.
        let member = |counters: &str| {
            format!(
                r#"{{"id":"hq-9","name":"赵敏","phone":"13911112222","version":2,"counters":{counters}}}"#
            )
        };
        for bad in [
            r#"{"a":{"visits":18446744073709551615}}"#,
            r#"{"a":{"months":{"2026-01":{"spend":9223372036854775807}}}}"#,
            r#"{"a":{"months":{"2026-01":{"points_earned":-1}}}}"#,
            r#"{"a":{"months":{"2026-13":{"spend":1}}}}"#,
            r#"{"a":{"months":{"26-01":{"spend":1}}}}"#,
            r#"{"":{"visits":1}}"#,
        ] {
            assert_eq!(refused("members", &member(bad)), 1, "{bad}");
        }
        assert_eq!(
            refused(
                "members",
                &member(
                    r#"{"a":{"visits":2,"months":{"2026-01":{"spend":150000,"points_earned":1500}}}}"#
                )
            ),
            0
        );
        // More visit days than a store keeps: the latest are kept, as the store does.
        let days: Vec<String> = (1..=30).map(|d| format!("\"2026-10-{d:02}\"")).collect();
        let msg = format!(
            r#"{{"items":[{}]}}"#,
            member(&format!(r#"{{"a":{{"visit_days":[{}]}}}}"#, days.join(",")))
        );
        let p = parse("members", msg.as_bytes(), now()).unwrap();
        let Downlink::Update(HqUpdate::Members(items)) = p.action else {
            panic!()
        };
        let kept = &items[0].counters["a"].visit_days;
        assert_eq!(kept.len(), crate::domain::member::VISIT_DAYS_KEPT);
        assert_eq!(
            kept.last().map(ToString::to_string).as_deref(),
            Some("2026-10-30")
        );
        // Birthdays as a terminal's: after 1900 and not after the store's today.
        let born = |birthday: &str| {
            format!(
                r#"{{"id":"hq-8","name":"赵敏","phone":"13911112222","version":2,"birthday":"{birthday}"}}"#
            )
        };
        for bad in ["2026-11-24", "9999-12-31", "1899-12-31"] {
            assert_eq!(refused("members", &born(bad)), 1, "{bad}");
        }
        for good in ["2026-11-23", "1900-01-01", "1990-02-28"] {
            assert_eq!(refused("members", &born(good)), 0, "{good}");
        }
        // An erasure with unsound counters is still an erasure.
        let erased = r#"{"id":"hq-9","erased":true,"version":3,"counters":{"a":{"visits":18446744073709551615}}}"#;
        assert_eq!(refused("members", erased), 0);
    }

    #[test]
    fn malformed_messages() {
        assert!(parse("products", b"not json", now()).is_err());
        assert!(parse("products", br#"{"items": 3}"#, now()).is_err());
        assert!(parse("products", br#"{"kind":"members","items":[]}"#, now()).is_err());
        assert!(parse("weather", br#"{"items":[]}"#, now()).is_err());
        assert!(parse("command", br#"{"items":[{"command":"reboot"}]}"#, now()).is_err());
        assert_eq!(
            parse("command", br#"{"items":[{"command":"resync"}]}"#, now())
                .unwrap()
                .action,
            Downlink::Resync
        );
    }

    #[test]
    fn rules() {
        let p = parse(
            "rules",
            br#"{"items":[{"version":4,"membership":{"max_redeem_percent":30}}]}"#,
            now(),
        )
        .unwrap();
        let Downlink::Update(HqUpdate::Rules { version, rules }) = p.action else {
            panic!()
        };
        assert_eq!(version, 4);
        assert_eq!(rules.max_redeem_bps, 3000);
        assert!(
            parse(
                "rules",
                br#"{"items":[{"version":4,"membership":{"max_redeem_percent":300}}]}"#,
                now()
            )
            .is_err()
        );
    }
}

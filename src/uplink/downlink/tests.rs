//! Tests of parsing HQ's downlink messages.

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
        parsed.rejected[0].starts_with("items[0]: phone: invalid type: integer, expected"),
        "{all}"
    );
    assert!(
        parsed.rejected[1].contains("items[1]: gender: unknown variant, expected"),
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
    assert_eq!(p.rejected_at, [1]);

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
    assert_eq!(p.rejected_at, [2]);
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

/// HQ's erasure applies whatever else its item holds: tags the store would refuse from a live
/// member (more than 20, or too long), or a field in a form the store does not read, must not
/// keep the member's personal data here; and the erased member keeps no tags (free text about
/// the person), even one this store never held before.
#[test]
fn an_erasure_from_hq_applies_whatever_else_its_item_holds() {
    let long_tag = "孕妇".repeat(20);
    let many: Vec<String> = (0..25).map(|i| format!("t{i}")).collect();
    for extra in [
        format!(r#""tags":["{long_tag}"]"#),
        format!(r#""tags":{}"#, serde_json::to_string(&many).unwrap()),
        r#""tags":["孕妇"],"gender":"unknown""#.to_string(),
        r#""tags":["孕妇"],"birthday":"1990/05/17""#.to_string(),
    ] {
        let item = format!(r#"{{"id":"hq-7","erased":true,"version":4,{extra}}}"#);
        let msg = format!(r#"{{"items":[{item}]}}"#);
        let parsed = parse("members", msg.as_bytes(), now()).unwrap();
        assert!(parsed.rejected.is_empty(), "{extra}: {:?}", parsed.rejected);
        let Downlink::Update(HqUpdate::Members(items)) = parsed.action else {
            panic!("not members")
        };
        assert_eq!(items.len(), 1, "{extra}");
        let m = &items[0];
        assert_eq!((m.id.as_str(), m.version), ("hq-7", 4), "{extra}");
        assert!(m.erased_at.is_some() && m.profile.is_none(), "{extra}");
        assert!(m.tags.is_empty(), "{extra}: {:?}", m.tags);
    }
    // Not an erasure: the same item is refused, as before.
    assert_eq!(
        refused(
            "members",
            &format!(
                r#"{{"id":"hq-7","name":"赵敏","phone":"13911112222","version":4,"tags":["{long_tag}"]}}"#
            )
        ),
        1
    );
}

/// The reasons of refused items, one message's worth.
fn reasons(kind: &str, items: serde_json::Value) -> Vec<String> {
    let msg = serde_json::json!({"kind": kind, "id": "x", "items": items});
    match parse(kind, msg.to_string().as_bytes(), now()) {
        Ok(p) => p.rejected,
        Err(e) => vec![e],
    }
}

/// A refused item's reason names the field at fault, nested ones by their path, so that HQ's
/// integrators can tell what to fix; serde's own error says only what was wrong.
#[test]
fn a_refused_item_s_reason_names_the_field_at_fault() {
    use serde_json::json;
    let cases = [
        (
            "products",
            json!([{"sku": "A1", "name": {"zh": "茶"}, "price": 100, "version": 1}]),
            "items[0]: name: invalid type: map",
        ),
        (
            "products",
            json!([{"sku": "A1", "name": "茶", "price": 100, "version": 1,
                    "promo": {"price": "80"}}]),
            "items[0]: promo.price: invalid type: string",
        ),
        (
            "coupons",
            json!([{"code": "HQ-1", "kind": {"type": "amount_off", "amount": 100, "colour": 1},
                    "version": 1}]),
            "items[0]: kind: unknown field `colour`",
        ),
        (
            "staff",
            json!([{"staff_no": "7001", "name": "甲", "role": "boss", "pin_hash": "x",
                    "version": 1}]),
            "items[0]: role: unknown variant",
        ),
        (
            "members",
            json!([{"id": "hq-1", "name": "甲", "phone": "13612340000", "version": 1,
                    "consent": {"marketing": "yes"}}]),
            "items[0]: consent.marketing: invalid type: string",
        ),
        (
            "campaigns",
            json!([{"id": "HQ1", "name": "n", "target": {"tag": "vip"}, "coupon_title": "t",
                    "coupon": {"type": "amount_off", "threshold": 5000, "amount": 100},
                    "starts": "2026-12-01", "ends": "2026-12-32", "version": 1}]),
            "items[0]: ends: ",
        ),
        (
            "rules",
            json!([{"version": 2, "membership": {"levels": [
                {"code": "a", "name": "A", "threshold": 0, "points_per_yuan": 1},
                {"code": "b", "name": "B", "threshold": "3000", "points_per_yuan": 1}]}}]),
            "items[0]: membership.levels[1].threshold: invalid type: string",
        ),
    ];
    for (kind, items, want) in cases {
        let got = reasons(kind, items);
        assert!(
            got.iter().any(|r| r.contains(want)),
            "{kind}: {got:?} does not say {want:?}"
        );
    }
    // A value that is personal data is still not quoted, with its path.
    let got = reasons(
        "members",
        json!([{"id": "hq-1", "name": "甲", "phone": 13612349876u64, "version": 1}]),
    );
    assert_eq!(
        got,
        ["items[0]: phone: invalid type: integer, expected a string"]
    );
}

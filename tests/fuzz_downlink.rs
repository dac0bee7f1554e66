//! Randomly spoiled HQ messages through a real broker: every downlink kind (products, prices,
//! stock, members, coupons, campaigns, staff, rules, commands) arrives with values swapped for
//! hostile ones, keys dropped or added, arrays repeated, or as bytes that are not JSON. The
//! daemon must not panic, its uplink must stay connected and keep delivering, and the till
//! must keep selling.
//!
//! Seeded like `fuzz_input`: `FUZZ_SEED` replays a run, `FUZZ_CASES` sets its length (default
//! 300 messages).

mod common;

use std::time::Duration;

use common::mqtt::{Hq, store_with_hq};
use common::spoil::{seeded, spoil_body};
use common::{CASHIER, Daemon, cash};
use rand::RngExt;
use serde_json::{Value, json};

/// A valid message of `kind` whose items carry `version`.
fn message(kind: &str, version: u64, item: Value) -> Value {
    json!({"id": format!("fuzz-{kind}-{version}"), "kind": kind, "version": version, "items": [item]})
}

/// (topic, kind, a valid item) for every kind HQ sends.
fn templates(member: &str, pin_hash: &str, today: &str, later: &str) -> Vec<(String, Value)> {
    let chain = |kind: &str| format!("storebox/hq/{kind}");
    let store = |kind: &str| format!("storebox/stores/sh-001/hq/{kind}");
    vec![
        (
            chain("products"),
            message(
                "products",
                1,
                json!({"sku": "HQ-A", "name": "阿克苏苹果", "price": 990,
                "barcodes": ["6901234567953"], "promo": {"price": 890, "from": format!("{today}T00:00:00+08:00")},
                "version": 5}),
            ),
        ),
        (
            chain("prices"),
            message(
                "prices",
                1,
                json!({"sku": "RICE", "price": 9290, "promo": {"price": 8990}, "version": 5}),
            ),
        ),
        (
            store("stock"),
            message(
                "stock",
                1,
                json!({"sku": "RICE", "on_hand": 800, "safety_stock": 20, "version": 5}),
            ),
        ),
        (
            store("members"),
            message(
                "members",
                1,
                json!({"id": member, "name": "赵敏", "phone": "13911112222",
                "birthday": "1992-02-29", "tags": ["vip"], "level": "silver", "version": 5,
                "counters": {"sh-002": {"visits": 3, "last_visit_at": format!("{today}T10:00:00+08:00"),
                    "months": {"2026-10": {"spend": 120000, "points_earned": 1200}},
                    "visit_days": [today]}}}),
            ),
        ),
        (
            chain("coupons"),
            message(
                "coupons",
                1,
                json!({"code": "HQ-FUZZ-1", "title": "满100减10",
                "kind": {"type": "amount_off", "threshold": 10000, "amount": 1000},
                "valid_from": format!("{today}T00:00:00+08:00"), "valid_to": format!("{later}T23:59:59+08:00"),
                "member_id": member, "version": 5}),
            ),
        ),
        (
            chain("campaigns"),
            message(
                "campaigns",
                1,
                json!({"id": "HQFUZZ", "name": "HQ 会员日", "target": {"tag": "vip"},
                "coupon_title": "满50减10", "coupon": {"type": "amount_off", "threshold": 5000, "amount": 1000},
                "starts": today, "ends": later, "control_percent": 0, "version": 1}),
            ),
        ),
        (
            store("staff"),
            message(
                "staff",
                1,
                json!({"staff_no": "7001", "name": "临时工", "role": "cashier",
                "pin_hash": pin_hash, "active": true, "version": 5}),
            ),
        ),
        (
            chain("rules"),
            message(
                "rules",
                1,
                json!({"version": 5, "membership": {"max_redeem_percent": 30}}),
            ),
        ),
        (
            store("command"),
            message("command", 1, json!({"command": "resync"})),
        ),
    ]
}

#[tokio::test]
async fn spoiled_hq_messages_never_stop_the_store_or_its_uplink() {
    let (seed, cases, mut rng) = seeded(300);
    let dir = tempfile::tempdir().unwrap();
    let (_broker, hq, d) = store_with_hq(dir.path()).await;
    let t = d.login(CASHIER).await;
    let member = d
        .register(&t, "赵敏", "13911112222", json!({"tags": ["vip"]}))
        .await;
    let pin_hash = storebox::config::hash_pin("4321").unwrap();
    let today = common::store_today();
    let later = (today + chrono::Duration::days(3)).to_string();
    let templates = templates(&member, &pin_hash, &today.to_string(), &later);

    // Unspoiled, every kind is applied (otherwise the spoiled ones would mostly test the same
    // refusal).
    for (topic, msg) in &templates {
        hq.publish(topic, msg.clone()).await;
    }
    marker(&hq, &d, &t, "HQ-MARK-0").await;
    let tm = d.login(common::MANAGER).await;
    let applied = [
        ("/v1/products/HQ-A", "/name", json!("阿克苏苹果")),
        ("/v1/products/RICE", "/price", json!(9290)),
        ("/v1/stock/RICE", "/on_hand", json!(800)),
        (
            &*format!("/v1/members/{member}"),
            "/level/code",
            json!("silver"),
        ),
        ("/v1/coupons/HQ-FUZZ-1", "/code", json!("HQ-FUZZ-1")),
        ("/v1/campaigns/HQFUZZ", "/id", json!("HQFUZZ")),
        ("/v1/staff/7001", "/name", json!("临时工")),
    ];
    for (path, field, want) in applied {
        let (s, v) = d.get(&tm, path).await;
        assert_eq!((s, v.pointer(field)), (200, Some(&want)), "{path}: {v}");
    }

    for case in 0..cases {
        let (topic, msg) = &templates[rng.random_range(0..templates.len())];
        let mut msg = msg.clone();
        // Newer versions, so that spoiled items are not merely skipped as old.
        let version = case as u64 + 10;
        msg["version"] = json!(version);
        if let Some(item) = msg["items"][0].as_object_mut()
            && item.contains_key("version")
        {
            item.insert("version".into(), json!(version));
        }
        hq.publish_raw(topic, spoil_body(&mut rng, &msg)).await;
    }
    marker(&hq, &d, &t, "HQ-MARK-1").await;

    assert!(
        !d.log_text().contains("panicked"),
        "the daemon panicked (seed {seed}, FUZZ_SEED replays it):\n{}",
        d.log_text()
    );
    let h = d.health().await;
    assert_eq!(h["journal"]["writable"], true, "seed {seed}: {h}");
    assert_eq!(h["uplink"]["connected"], true, "seed {seed}: {h}");
    // The till still sells, and the sale still reaches HQ.
    let (s, sale) = d
        .sale(
            &t,
            &json!({"lines": [{"sku": "MILK", "qty": 1}], "payments": cash(1290)}),
        )
        .await;
    assert_eq!(s, 201, "seed {seed}: {sale}");
    for _ in 0..400 {
        if hq.events().iter().any(|e| e["data"]["id"] == sale["id"]) {
            eprintln!("seed {seed}: {cases} spoiled messages");
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("seed {seed}: the sale after the spoiled messages never reached HQ");
}

/// Publishes a product `sku` and waits until the till has it: every message published before
/// it has been handled then (one connection, handled in order).
async fn marker(hq: &Hq, d: &Daemon, t: &str, sku: &str) {
    hq.publish(
        "storebox/hq/products",
        message(
            "products",
            1,
            json!({"sku": sku, "name": "marker", "price": 1, "version": 1}),
        ),
    )
    .await;
    for _ in 0..2400 {
        if d.get(t, &format!("/v1/products/{sku}")).await.0 == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("marker {sku} never arrived\n{}", d.log_text());
}

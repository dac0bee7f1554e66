//! HQ's master data at the store, through a real Mosquitto broker: a campaign HQ defines and
//! each store's members; a coupon of HQ's used here, and a member of HQ's who bought here,
//! through a cache rebuild; a price that came before its product.

mod common;

use std::time::Duration;

use common::mqtt::{Broker, Hq, store_with_hq, wait_for};
use common::{CASHIER, Daemon, MANAGER, cash};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hq_defines_a_campaign_and_each_store_picks_its_members() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, hq, d) = store_with_hq(dir.path()).await;
    let t = d.login(CASHIER).await;
    let tm = d.login(MANAGER).await;
    let mut vip = Vec::new();
    for i in 0..30 {
        let tags = if i % 3 == 0 {
            json!([])
        } else {
            json!(["vip"])
        };
        let id = d
            .register(
                &t,
                &format!("客{i}"),
                &format!("1360000{i:04}"),
                json!({"tags": tags}),
            )
            .await;
        if i % 3 != 0 {
            vip.push(id);
        }
    }
    let today = common::store_today();
    let campaign = |id: &str, tag: &str| {
        json!({"id": id, "name": "HQ 会员日", "target": {"tag": tag},
               "coupon_title": "满50减10", "coupon": {"type": "amount_off", "threshold": 5000, "amount": 1000},
               "starts": today.to_string(), "ends": (today + chrono::Duration::days(3)).to_string(),
               "control_percent": 20, "version": 1, "hq_owner": "marketing"})
    };
    // A manager here started a campaign of an id HQ uses too.
    let mut own = campaign("SHOP1", "vip");
    for key in ["version", "hq_owner"] {
        own.as_object_mut().unwrap().remove(key);
    }
    let (s, v) = d.post(&tm, "/v1/campaigns", &own).await;
    assert_eq!(s, 201, "{v}");
    let message = json!({"id": "camp-1", "kind": "campaigns", "version": 1, "items": [
        campaign("HQDAY", "vip"),
        // HQ's of that id does not run here: reported.
        campaign("SHOP1", "vip"),
        // Nobody here has the tag: nothing to start, nothing to report.
        campaign("HQNONE", "nobody"),
        // The automatic prefixes are the store's own: refused and reported.
        campaign("BDX", "vip"),
    ]});
    hq.publish("storebox/hq/campaigns", message.clone()).await;
    let hq_day = |e: &Value| e["kind"] == "campaign.started" && e["data"]["id"] == "HQDAY";
    wait_for(10, "campaign.started", || hq.events().iter().any(hq_day)).await;
    let started = hq.events().into_iter().find(hq_day).unwrap();
    let treated: Vec<String> = serde_json::from_value(started["data"]["treated"].clone()).unwrap();
    let control: Vec<String> = serde_json::from_value(started["data"]["control"].clone()).unwrap();
    let mut picked: Vec<String> = treated.iter().chain(&control).cloned().collect();
    picked.sort();
    vip.sort();
    assert_eq!(picked, vip, "exactly the vip members, split");
    assert!(!treated.is_empty());
    assert_eq!(started["data"]["started_by"], "hq");

    // The treated members' coupons work at the till; the control group has none.
    let code = storebox::domain::automation::occasion_code(
        &storebox::domain::automation::Occasion::Campaign {
            campaign: "HQDAY".into(),
        },
        &treated[0],
    );
    let (s, c) = d.get(&t, &format!("/v1/coupons/{code}")).await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(c["member_id"], json!(treated[0]));
    let (s, v) = d.get(&tm, "/v1/campaigns/HQDAY").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["issued"].as_u64(), Some(treated.len() as u64));
    assert_eq!(d.get(&tm, "/v1/campaigns/HQNONE").await.0, 404);
    wait_for(10, "downlink_items_rejected", || {
        hq.events().iter().any(|e| {
            e["kind"] == "device.alert"
                && e["data"]["code"] == "downlink_items_rejected"
                && e["data"]["detail"]["rejected"].to_string().contains("BDX")
        })
    })
    .await;
    wait_for(10, "downlink_not_applied SHOP1", || {
        hq.events().iter().any(|e| {
            e["kind"] == "device.alert"
                && e["data"]["code"] == "downlink_not_applied"
                && e["data"]["detail"]["campaign"] == "SHOP1"
        })
    })
    .await;

    // Delivered again: nothing is started twice. (The marker after it is applied in order.)
    hq.publish("storebox/hq/campaigns", message).await;
    hq.publish(
        "storebox/hq/products",
        json!({"id": "p-9", "kind": "products", "version": 1, "items": [
            {"sku": "MARK-9", "name": "marker", "price": 1, "version": 1}]}),
    )
    .await;
    for _ in 0..200 {
        if d.get(&t, "/v1/products/MARK-9").await.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (_, v) = d.get(&tm, "/v1/campaigns").await;
    assert_eq!(v["campaigns"].as_array().map(Vec::len), Some(2), "{v}");
    let issued = |d: &Daemon| {
        let c = rusqlite::Connection::open(d.dir.join("data/journal.sqlite3")).unwrap();
        c.query_row(
            "SELECT COUNT(*) FROM events WHERE kind = 'campaign.started'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
    };
    assert_eq!(issued(&d), 2);
}

/// A coupon of HQ's used here stays used when the cache is rebuilt from the journal (which
/// holds the sale, not HQ's coupon) and HQ then pushes the coupon again unused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hq_coupon_used_here_stays_used_after_a_cache_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, hq, d) = store_with_hq(dir.path()).await;
    let coupon = json!({"id": "c-1", "kind": "coupons", "version": 1, "items": [
        {"code": "HQ-C001", "title": "立减2元", "kind": {"type": "amount_off", "threshold": 0, "amount": 200},
         "version": 1}]});
    let with_coupon = json!({"lines": [{"sku": "MILK", "qty": 1}], "coupon_codes": ["HQ-C001"],
                             "payments": cash(1090)});
    let tm = d.login(MANAGER).await;
    hq.publish("storebox/stores/sh-001/hq/coupons", coupon.clone())
        .await;
    wait_until_coupon(&d, &tm, "立减2元").await;
    let t = d.login(CASHIER).await;
    let (s, v) = d.sale(&t, &with_coupon).await;
    assert_eq!(s, 201, "{v}");
    let config = d.config.clone();
    d.terminate();

    // The cache is lost; the daemon rebuilds it from the journal. HQ pushes the coupon again.
    std::fs::write(dir.path().join("data/cache.sqlite3"), b"not a cache").unwrap();
    for f in ["data/cache.sqlite3-wal", "data/cache.sqlite3-shm"] {
        let _ = std::fs::remove_file(dir.path().join(f));
    }
    let d = Daemon::start_with(dir.path(), &config);
    let tm = d.login(MANAGER).await;
    hq.publish("storebox/stores/sh-001/hq/coupons", coupon)
        .await;
    wait_until_coupon(&d, &tm, "立减2元").await;
    let t = d.login(CASHIER).await;
    let (s, v) = d.sale(&t, &with_coupon).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("coupon_used")),
        "{v}"
    );
    d.terminate();
}

/// Waits until the coupon HQ pushed shows with its title.
async fn wait_until_coupon(d: &Daemon, token: &str, title: &str) {
    for _ in 0..400 {
        let (s, c) = d.get(token, "/v1/coupons/HQ-C001").await;
        if s == 200 && c["title"] == title {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("HQ's coupon never arrived");
}

/// A price change for a product the store does not know (it overtook the product's first
/// push) waits for the product, and HQ is told: when the older product push comes, the till
/// sells at the newer price.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_for_an_unknown_product_is_reported_to_hq() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, hq, d) = store_with_hq(dir.path()).await;
    let t = d.login(CASHIER).await;
    let price = json!({"id": "pr-6", "kind": "prices", "version": 6, "items": [
        {"sku": "NEW1", "price": 450, "version": 6}]});
    hq.publish("storebox/stores/sh-001/hq/prices", price).await;
    wait_for(10, "the report of the unknown product", || {
        hq.events().iter().any(|e| {
            e["kind"] == "device.alert"
                && e["data"]["code"] == "downlink_items_rejected"
                && e["data"]["detail"]["unknown_products"] == json!(["NEW1"])
        })
    })
    .await;
    hq.publish(
        "storebox/stores/sh-001/hq/products",
        json!({"id": "p-5", "kind": "products", "version": 5, "items": [
            {"sku": "NEW1", "name": "新品", "price": 500, "version": 5}]}),
    )
    .await;
    let mut sold = Value::Null;
    for _ in 0..200 {
        let (s, v) = d
            .sale(
                &t,
                &json!({"lines": [{"sku": "NEW1", "qty": 1}], "payments": cash(450)}),
            )
            .await;
        if s == 201 {
            sold = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(sold["total"], 450, "{sold}");
    d.terminate();
}

/// Waits for the `n`-th device.alert (counted from 1) and returns it.
async fn nth_alert(hq: &Hq, n: usize) -> Value {
    wait_for(15, "device.alert", || {
        hq.events()
            .iter()
            .filter(|e| e["kind"] == "device.alert")
            .count()
            >= n
    })
    .await;
    hq.events()
        .into_iter()
        .filter(|e| e["kind"] == "device.alert")
        .nth(n - 1)
        .unwrap()
}

/// A malformed `members` message must not carry the personal data it holds into the
/// `device.alert` HQ receives (and the journal keeps in the clear).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_members_message_does_not_put_a_phone_into_the_alert() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let hq = Hq::connect(broker.port, "sh-001").await;
    let _d = Daemon::start_in(dir.path(), &broker.uplink_config(""));
    store_listening(&hq).await;
    hq.publish(
        "storebox/hq/members",
        json!({"id": "m-bad", "kind": "members", "version": 1, "items": "张三 13812345678"}),
    )
    .await;
    let alert = nth_alert(&hq, 1).await;
    assert_eq!(alert["data"]["code"], "malformed_downlink", "{alert}");
    let text = alert.to_string();
    assert!(
        !text.contains("13812345678") && !text.contains("张三"),
        "personal data in a device.alert: {text}"
    );
}

/// The one item of a `rules` message that is refused: HQ is told why, as for any item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_rules_item_is_reported_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let hq = Hq::connect(broker.port, "sh-001").await;
    let _d = Daemon::start_in(dir.path(), &broker.uplink_config(""));
    store_listening(&hq).await;
    hq.publish(
        "storebox/hq/rules",
        json!({"id": "r-bad", "kind": "rules", "version": 1, "items": [
            {"version": 5, "membership": {"no_such_setting": 1}}]}),
    )
    .await;
    let alert = nth_alert(&hq, 1).await;
    let text = alert["data"].to_string();
    assert!(
        text.contains("no_such_setting"),
        "HQ is not told why its rules were refused: {text}"
    );
}

/// `version` is required on every item (docs/uplink.md): a product or coupon without one is
/// refused and reported like a price without one, not applied as version 0 (or silently
/// dropped when the store holds the product at version 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_without_a_version_is_refused_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, hq, d) = store_with_hq(dir.path()).await;
    let t = d.login(MANAGER).await;
    store_listening(&hq).await;
    hq.publish(
        "storebox/hq/products",
        json!({"id": "p-nov", "kind": "products", "version": 1, "items": [
            {"sku": "NOV", "name": "无版本", "price": 100},
            {"sku": "TEA", "name": "无版本龙井", "price": 100}]}),
    )
    .await;
    hq.publish(
        "storebox/hq/coupons",
        json!({"id": "c-nov", "kind": "coupons", "version": 1, "items": [
            {"code": "NOV-1", "kind": {"type": "amount_off", "threshold": 0, "amount": 100}}]}),
    )
    .await;
    let products = nth_alert(&hq, 1).await;
    assert_eq!(
        products["data"]["code"], "downlink_items_rejected",
        "{products}"
    );
    assert_eq!(
        products["data"]["detail"]["rejected"]
            .as_array()
            .map(Vec::len),
        Some(2),
        "{products}"
    );
    let coupons = nth_alert(&hq, 2).await;
    assert_eq!(
        coupons["data"]["code"], "downlink_items_rejected",
        "{coupons}"
    );
    assert_eq!(d.get(&t, "/v1/products/NOV").await.0, 404);
    assert_eq!(d.get(&t, "/v1/coupons/NOV-1").await.0, 404);
}

/// Waits until the store is online and subscribed (it subscribes when it connects; a message
/// published before that is not kept for a session that does not exist yet).
async fn store_listening(hq: &Hq) {
    hq.wait_subscribed().await;
}

/// A member HQ sent who bought here: once the cache is rebuilt from the journal (which holds
/// the sales, not HQ's record of the member) and HQ sends the member again, the member shows
/// HQ's registration — when and where — as before the rebuild, not the time of their first
/// sale here and no store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hq_member_keeps_their_registration_through_a_cache_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, hq, d) = store_with_hq(dir.path()).await;
    store_listening(&hq).await;
    let member = json!({"id": "m-7", "kind": "members", "version": 1, "items": [
        {"id": "hq-member-7", "name": "吴敏", "phone": "13788889999", "version": 3,
         "created_at": "2025-01-05T10:00:00+08:00", "created_store": "sh-002"}]});
    hq.publish("storebox/stores/sh-001/hq/members", member.clone())
        .await;
    let tm = d.login(MANAGER).await;
    let shown = |d: &Daemon, tm: String| {
        let (client, url) = (d.client.clone(), d.url("/v1/members/hq-member-7"));
        async move {
            for _ in 0..400 {
                let r = client.get(&url).bearer_auth(&tm).send().await.unwrap();
                let v: Value = r.json().await.unwrap_or(Value::Null);
                if v["name"] == "吴敏" {
                    return v;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            panic!("HQ's member never arrived");
        }
    };
    let before = shown(&d, tm.clone()).await;
    assert_eq!(
        before["created_at"], "2025-01-05T10:00:00+08:00",
        "{before}"
    );
    let (s, v) = d
        .sale(
            &tm,
            &json!({"member_id": "hq-member-7", "lines": [{"sku": "MILK", "qty": 1}], "payments": cash(1290)}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let config = d.config.clone();
    d.terminate();

    // The cache is lost and rebuilt from the journal; HQ sends the member again.
    std::fs::write(dir.path().join("data/cache.sqlite3"), b"not a cache").unwrap();
    for f in ["data/cache.sqlite3-wal", "data/cache.sqlite3-shm"] {
        let _ = std::fs::remove_file(dir.path().join(f));
    }
    let d = Daemon::start_with(dir.path(), &config);
    let tm = d.login(MANAGER).await;
    hq.publish("storebox/stores/sh-001/hq/members", member)
        .await;
    let after = shown(&d, tm.clone()).await;
    assert_eq!(after["created_at"], before["created_at"], "{after}");
    assert_eq!(
        (&after["visits"], &after["total_spend"]),
        (&json!(1), &json!(1290))
    );
    let export = d.text(&tm, "/v1/members/export").await;
    let row = export
        .lines()
        .find(|l| l.starts_with("hq-member-7"))
        .unwrap();
    assert!(row.contains(",2025-01-05T10:00:00+08:00,sh-002,"), "{row}");
    d.terminate();
}

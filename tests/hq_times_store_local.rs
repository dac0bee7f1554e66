//! Times HQ sends are shown in the store's timezone, like every time the API gives (README,
//! HTTP API): a member's registration and last visit as HQ recorded them in UTC, a coupon's
//! validity and a product's promotion — a till that shows the date part of `created_at` or
//! `valid_to` must not show the day before (or after) the store's.

mod common;

use std::time::Duration;

use common::mqtt::store_with_hq;
use common::{CASHIER, Daemon};
use serde_json::{Value, json};

async fn wait_get(d: &Daemon, t: &str, path: &str) -> Value {
    for _ in 0..400 {
        let (s, v) = d.get(t, path).await;
        if s == 200 {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{path} never arrived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn times_hq_sent_in_utc_are_answered_in_the_store_timezone() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, hq, d) = store_with_hq(dir.path()).await;
    hq.wait_subscribed().await;
    hq.publish(
        "storebox/stores/sh-001/hq/members",
        json!({"id": "m-1", "kind": "members", "version": 1, "items": [
            {"id": "hq-m-1", "name": "Wu Min", "phone": "13788889999", "version": 1,
             "created_at": "2026-03-01T20:00:00Z", "created_store": "sh-002",
             "counters": {"sh-002": {"visits": 1, "last_visit_at": "2026-11-30T17:30:00Z"}}}]}),
    )
    .await;
    hq.publish(
        "storebox/stores/sh-001/hq/coupons",
        json!({"id": "c-1", "kind": "coupons", "version": 1, "items": [
            {"code": "HQ-UTC-1", "title": "2 off", "kind": {"type": "amount_off", "threshold": 0, "amount": 200},
             "valid_from": "2026-11-30T16:00:00Z", "valid_to": "2026-12-31T15:59:59Z", "version": 1}]}),
    )
    .await;
    hq.publish(
        "storebox/stores/sh-001/hq/products",
        json!({"id": "p-1", "kind": "products", "version": 1, "items": [
            {"sku": "UTC-1", "name": "Tea", "price": 1000, "version": 1,
             "promo": {"price": 800, "from": "2026-11-30T16:00:00Z", "to": "2027-12-31T15:59:59Z"}}]}),
    )
    .await;

    let t = d.login(CASHIER).await;
    let m = wait_get(&d, &t, "/v1/members/hq-m-1").await;
    assert_eq!(m["created_at"], "2026-03-02T04:00:00+08:00", "{m}");
    assert_eq!(m["last_visit_at"], "2026-12-01T01:30:00+08:00", "{m}");
    let (_, found) = d.get(&t, "/v1/members?phone_tail=9999").await;
    assert_eq!(
        found["members"][0]["created_at"], m["created_at"],
        "{found}"
    );

    let c = wait_get(&d, &t, "/v1/coupons/HQ-UTC-1").await;
    assert_eq!(c["valid_from"], "2026-12-01T00:00:00+08:00", "{c}");
    assert_eq!(c["valid_to"], "2026-12-31T23:59:59+08:00", "{c}");

    let p = wait_get(&d, &t, "/v1/products/UTC-1").await;
    assert_eq!(p["promo"]["from"], "2026-12-01T00:00:00+08:00", "{p}");
    assert_eq!(p["promo"]["to"], "2027-12-31T23:59:59+08:00", "{p}");
    d.terminate();
}

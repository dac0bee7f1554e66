//! What HQ learns of the items of a big message the store refused or could not apply: every
//! one of them, not the first twenty. HQ must send those again (fixed, or their products
//! first); a price list of 3,000 lines with 1,500 bad ones was reported as "1500 item(s) were
//! left out" naming 20, and HQ had no way to find the others but to send everything again.

mod common;

use std::collections::BTreeSet;

use common::CASHIER;
use common::mqtt::{Hq, store_with_hq, wait_for};
use serde_json::{Value, json};

/// The `downlink_items_rejected` alerts HQ received about message `id`.
fn reports(hq: &Hq, id: &str) -> Vec<Value> {
    hq.events()
        .into_iter()
        .filter(|e| {
            e["kind"] == "device.alert"
                && e["data"]["code"] == "downlink_items_rejected"
                && e["data"]["detail"]["id"] == id
        })
        .map(|e| e["data"]["detail"].clone())
        .collect()
}

/// The positions of the refused items the reports name, by position (`items`) or in a reason
/// (`items[17]: ...`).
fn named_positions(reports: &[Value]) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    for r in reports {
        for p in r["items"].as_array().into_iter().flatten() {
            out.extend(p.as_u64());
        }
        for reason in r["rejected"].as_array().into_iter().flatten() {
            let pos = reason
                .as_str()
                .and_then(|s| s.strip_prefix("items["))
                .and_then(|s| s.split(']').next())
                .and_then(|n| n.parse::<u64>().ok());
            out.extend(pos);
        }
    }
    out
}

/// The SKUs the reports name as unknown products.
fn named_unknown(reports: &[Value]) -> BTreeSet<String> {
    reports
        .iter()
        .flat_map(|r| {
            r["unknown_products"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|s| s.as_str().map(String::from))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hq_learns_every_refused_item_of_a_big_price_list() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, hq, d) = store_with_hq(dir.path()).await;
    let t = d.login(CASHIER).await;
    hq.wait_subscribed().await;

    // 3,000 products, then a price list for them in which every other line is refused (a
    // negative price: more than one alert's worth) and 60 lines price products the store does
    // not know.
    let n = 3_000;
    let products: Vec<Value> = (0..n)
        .map(|i| {
            json!({"sku": format!("PL-{i:05}"), "name": format!("商品 {i}"), "price": 1000,
                        "version": 1})
        })
        .collect();
    hq.publish(
        "storebox/hq/products",
        json!({"id": "catalogue", "kind": "products", "version": 1, "items": products}),
    )
    .await;
    let mut bad = BTreeSet::new();
    let mut prices: Vec<Value> = (0..n)
        .map(|i| {
            let price = if i % 2 == 1 {
                bad.insert(i as u64);
                -5
            } else {
                1100
            };
            json!({"sku": format!("PL-{i:05}"), "price": price, "version": 2})
        })
        .collect();
    let unknown: BTreeSet<String> = (0..60).map(|i| format!("NOT-YET-{i:02}")).collect();
    prices.extend(
        unknown
            .iter()
            .map(|sku| json!({"sku": sku, "price": 700, "version": 2})),
    );
    hq.publish(
        "storebox/hq/prices",
        json!({"id": "price-list", "kind": "prices", "version": 2, "items": prices}),
    )
    .await;

    wait_for(60, "the price list applied", || {
        named_unknown(&reports(&hq, "price-list")).len() >= 20
    })
    .await;
    // Alerts go up in seq order: a marker applied after the price list is reported after them.
    hq.publish(
        "storebox/hq/prices",
        json!({"id": "marker", "kind": "prices", "version": 3, "items": [
            {"sku": "MARKER", "price": 1, "version": 3}]}),
    )
    .await;
    wait_for(30, "the marker's report", || {
        !reports(&hq, "marker").is_empty()
    })
    .await;
    let (_, v) = d.get(&t, "/v1/products/PL-00004").await;
    assert_eq!(v["price"], 1100, "the good lines apply: {v}");
    let (_, v) = d.get(&t, "/v1/products/PL-00001").await;
    assert_eq!(v["price"], 1000, "a refused line does not: {v}");

    let got = reports(&hq, "price-list");
    let named = named_positions(&got);
    let missing: Vec<&u64> = bad.difference(&named).collect();
    assert!(
        missing.is_empty(),
        "HQ was told of {} of the {} refused lines; never of positions {:?}…",
        bad.len() - missing.len(),
        bad.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(
        named.is_subset(&bad),
        "a line reported that was not refused"
    );
    let unknown_named = named_unknown(&got);
    assert_eq!(
        unknown_named,
        unknown,
        "HQ was told of {} of the 60 products it must send",
        unknown_named.len()
    );
}

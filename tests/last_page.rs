//! Paging at its edge: a store with exactly a page of products, a day with exactly a page of
//! sales. The last page says it is the last (`null`) and never points to an empty page.

mod common;

use common::{CASHIER, Daemon, cash, store_today};
use serde_json::json;

/// A store with exactly 1,000 products (a page): the list said `next_after` on its only page
/// (a page of 1,000 was taken to mean there are more), and the page it pointed to was empty —
/// against its own contract (`null` on the last page).
#[tokio::test]
async fn a_last_page_of_exactly_a_page_says_it_is_the_last() {
    let mut extra = String::new();
    // The tests' config has three products.
    for i in 0..997 {
        extra.push_str(&format!(
            "\n[[products]]\nsku = \"S{i:04}\"\nname = \"商品 {i}\"\nprice = 100\nstock = 5\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), &extra);
    let t = d.login(CASHIER).await;
    let (s, v) = d.get(&t, "/v1/stock").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["stock"].as_array().map(Vec::len), Some(1000));
    assert!(
        v["next_after"].is_null(),
        "the only page points to another: {}",
        v["next_after"]
    );
    d.terminate();
}

/// A day of exactly 500 sales (a page), then one more. The list said `next_after_seq` on the
/// only page (a full page was taken to mean there are more), and that pointed to an empty page;
/// the till's end-of-day export asked for a page that had nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_of_exactly_a_page_of_sales_has_one_page() {
    const PAGE: usize = 500;
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let sale = json!({"lines": [{"sku": "MILK", "qty": 1}], "payments": cash(1290)});
    let mut sold = std::collections::BTreeSet::new();
    for _ in 0..PAGE {
        let (s, v) = d.sale(&t, &sale).await;
        assert_eq!(s, 201, "{v}");
        sold.insert(v["id"].as_str().unwrap().to_string());
    }
    let path = format!("/v1/sales?date={}", store_today());
    let (s, v) = d.get(&t, &path).await;
    assert_eq!(s, 200, "{v}");
    let listed: std::collections::BTreeSet<String> = v["sales"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, sold, "the day's sales on its one page");
    assert!(
        v["next_after_seq"].is_null(),
        "the only page points to another: {}",
        v["next_after_seq"]
    );

    // One more: now there are two pages, the second with just that sale.
    let (s, last) = d.sale(&t, &sale).await;
    assert_eq!(s, 201, "{last}");
    let (_, first) = d.get(&t, &path).await;
    assert_eq!(first["sales"].as_array().map(Vec::len), Some(PAGE));
    let after = first["next_after_seq"]
        .as_u64()
        .expect("a second page after 501 sales");
    let (s, second) = d.get(&t, &format!("{path}&after_seq={after}")).await;
    assert_eq!(s, 200, "{second}");
    let ids: Vec<&str> = second["sales"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert_eq!(ids, [last["id"].as_str().unwrap()]);
    assert!(second["next_after_seq"].is_null(), "{second}");
    d.terminate();
}

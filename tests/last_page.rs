//! Paging at its edge: a store with exactly a page of products, a day with exactly a page of
//! sales, an audit log or a segment of exactly a page. The last page says it is the last
//! (`null`) and never points to an empty page.

mod common;

use common::{ADMIN, CASHIER, Daemon, MANAGER, cash, store_today};
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

/// The audit log read a page of exactly what it holds: `next` named a position on the last
/// page ("when there may be more"), and the page after it was empty — an HQ job copying the
/// log asked for a page that had nothing, and the README's `next` "for the next page" said
/// there was one.
#[tokio::test]
async fn an_audit_log_of_exactly_a_page_has_no_next() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let admin = d.login(ADMIN).await;
    let (s, all) = d.get(&admin, "/v1/audit?limit=1000").await;
    assert_eq!(s, 200, "{all}");
    let n = all["entries"].as_array().unwrap().len();
    assert!((2..1000).contains(&n), "{all}");
    assert!(all["next"].is_null(), "{all}");

    let (_, page) = d.get(&admin, &format!("/v1/audit?limit={n}")).await;
    assert_eq!(page["entries"].as_array().map(Vec::len), Some(n));
    assert!(
        page["next"].is_null(),
        "the only page points to another: {}",
        page["next"]
    );

    // One short of everything: the next page holds the last entry, and is the last.
    let (_, first) = d.get(&admin, &format!("/v1/audit?limit={}", n - 1)).await;
    let after = first["next"].as_u64().expect("a second page");
    let (_, second) = d
        .get(&admin, &format!("/v1/audit?after={after}&limit={}", n - 1))
        .await;
    assert_eq!(
        second["entries"].as_array().map(Vec::len),
        Some(1),
        "{second}"
    );
    assert!(second["next"].is_null(), "{second}");
    d.terminate();
}

/// A segment's members a page at a time: a segment of exactly a page gave `next`, and the
/// page it pointed to was empty. As CSV — what a manager downloads for a campaign — a page
/// that was not the last said nothing: the first 100 members came, the rest were left out
/// without a word.
#[tokio::test]
async fn a_segment_of_exactly_a_page_has_no_next_and_its_csv_says_when_more_follow() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let cashier = d.login(CASHIER).await;
    for i in 0..3 {
        d.register(
            &cashier,
            &format!("会员{i}"),
            &format!("1380013800{i}"),
            json!({}),
        )
        .await;
    }
    let manager = d.login(MANAGER).await;
    let path = "/v1/segments?segment=no_purchase";
    let (s, v) = d.get(&manager, &format!("{path}&limit=3")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["members"].as_array().map(Vec::len), Some(3), "{v}");
    assert!(
        v["next"].is_null(),
        "the only page points to another: {}",
        v["next"]
    );

    let (_, first) = d.get(&manager, &format!("{path}&limit=2")).await;
    assert_eq!(
        first["members"].as_array().map(Vec::len),
        Some(2),
        "{first}"
    );
    let after = first["next"].as_i64().expect("a second page");
    let (_, second) = d
        .get(&manager, &format!("{path}&limit=2&after={after}"))
        .await;
    assert_eq!(
        second["members"].as_array().map(Vec::len),
        Some(1),
        "{second}"
    );
    assert!(second["next"].is_null(), "{second}");

    // The CSV of the first page ends with a row that says more follow, and where.
    let csv = d
        .text(&manager, &format!("{path}&limit=2&format=csv"))
        .await;
    let last = csv.lines().last().unwrap_or_default();
    assert!(
        last.contains(&format!("after={after}")),
        "the CSV's last row does not say more follow: {csv}"
    );
    // The last page's CSV has its member and nothing else.
    let csv = d
        .text(
            &manager,
            &format!("{path}&limit=2&after={after}&format=csv"),
        )
        .await;
    assert_eq!(csv.lines().count(), 2, "{csv}");
    d.terminate();
}

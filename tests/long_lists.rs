//! Lists longer than one answer: a store with more products than a page of stock levels, a day
//! with more stock movements than a page (HQ's count of every product comes as one movement
//! each). Every item is a page away; none is left out without a word.

mod common;

use std::collections::BTreeSet;
use std::time::Instant;

use common::{Daemon, MANAGER, store_today};
use serde_json::Value;

/// Products beyond the tests' three, each below its safety stock, each with its opening stock
/// as a movement of today.
const PRODUCTS: usize = 10_050;

fn catalog() -> String {
    let mut s = String::new();
    for i in 0..PRODUCTS {
        s.push_str(&format!(
            "\n[[products]]\nsku = \"S{i:05}\"\nname = \"商品 {i}\"\nprice = 100\n\
             stock = 5\nsafety_stock = 10\n"
        ));
    }
    s
}

/// Follows `cursor` (the answer's field, sent back as `param`) from the first page to the last;
/// the items of `field` on every page.
async fn every_page(
    d: &Daemon,
    t: &str,
    path: &str,
    field: &str,
    cursor: &str,
    param: &str,
) -> Vec<Value> {
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = match &next {
            Some(n) => format!("{path}{sep}{param}={n}"),
            None => path.to_string(),
        };
        let (s, v) = d.get(t, &url).await;
        assert_eq!(s, 200, "{url}: {v}");
        out.extend(v[field].as_array().unwrap().iter().cloned());
        next = match &v[cursor] {
            Value::Null => break,
            Value::String(c) => Some(c.clone()),
            c => Some(c.to_string()),
        };
        assert!(out.len() <= 2 * PRODUCTS, "{url} never ends");
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_levels_and_movements_beyond_a_page_are_all_listed() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), &catalog());
    let t = d.login(MANAGER).await;

    let levels = every_page(&d, &t, "/v1/stock", "stock", "next_after", "after").await;
    let skus: BTreeSet<&str> = levels.iter().filter_map(|l| l["sku"].as_str()).collect();
    assert_eq!(levels.len(), PRODUCTS + 3, "stock levels listed");
    assert_eq!(skus.len(), levels.len(), "a level listed twice");

    let below = every_page(
        &d,
        &t,
        "/v1/stock?below_safety=true",
        "stock",
        "next_after",
        "after",
    )
    .await;
    assert_eq!(below.len(), PRODUCTS, "levels below safety stock listed");
    assert!(below.iter().all(|l| l["below_safety"] == true));

    let today = store_today();
    let started = Instant::now();
    let moves = every_page(
        &d,
        &t,
        &format!("/v1/stock/movements?date={today}"),
        "movements",
        "next_after_seq",
        "after_seq",
    )
    .await;
    eprintln!(
        "{} movements in {:?} (debug build)",
        moves.len(),
        started.elapsed()
    );
    let seqs: BTreeSet<u64> = moves.iter().filter_map(|m| m["seq"].as_u64()).collect();
    assert_eq!(moves.len(), PRODUCTS + 3, "the day's movements listed");
    assert_eq!(seqs.len(), moves.len(), "a movement listed twice");

    // The report has a limit of its own: what it leaves out is said.
    for (q, truncated) in [("", true), ("?limit=10000", true), ("?limit=1", true)] {
        let (s, v) = d.get(&t, &format!("/v1/reports/stock{q}")).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["truncated"], truncated, "reports/stock{q}");
    }
    // And its CSV, read in a spreadsheet, says so in its last row.
    let csv = d.text(&t, "/v1/reports/stock?format=csv&limit=5").await;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + 5 + 1, "{csv}");
    assert!(
        lines[6].contains("more not listed: limit=5"),
        "no word of the products left out: {csv}"
    );
}

//! A new product waits for its first delivery before `stock.low` can be raised for it — and
//! then it can: a first delivery (or the config's opening stock) that leaves it below its safety
//! stock tells HQ once, as a product sold down below it does. Before, a product whose safety
//! stock came before its first units counted as "already below" from its creation, so nothing
//! it did until it was once stocked above its safety stock raised `stock.low`: it was listed
//! below safety at the store, sold out, and HQ never heard it needed reordering.

mod common;

use common::race::journal_count;
use common::{CASHIER, Daemon, MANAGER, cash};
use serde_json::json;

async fn receive(d: &Daemon, tm: &str, sku: &str, n: i64) {
    let (s, v) = d
        .post(
            tm,
            "/v1/stock/movements",
            &json!({"sku": sku, "delta": n, "reason": "receive"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
}

async fn new_product(d: &Daemon, tm: &str, sku: &str, safety: i64) {
    let (s, v) = d
        .send(
            reqwest::Method::PUT,
            tm,
            &format!("/v1/products/{sku}"),
            &json!({"name": "新品", "price": 100, "safety_stock": safety}),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_delivery_short_of_the_safety_stock_raises_stock_low_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(
        dir.path(),
        "[[products]]\nsku = \"CFG\"\nname = \"配置品\"\nprice = 100\nstock = 5\nsafety_stock = 10\n",
    );
    // The config's opening stock is the product's first delivery, short of its safety stock.
    assert_eq!(
        journal_count(&d, "stock.low"),
        1,
        "the config's opening stock"
    );
    let tm = d.login(MANAGER).await;
    let t = d.login(CASHIER).await;

    // A new product with a safety stock and nothing on hand yet: not told.
    new_product(&d, &tm, "NEW", 10).await;
    new_product(&d, &tm, "NEW", 12).await;
    assert_eq!(journal_count(&d, "stock.low"), 1, "a new product waits");
    // Its first delivery leaves it short: told, once, however it sells on.
    receive(&d, &tm, "NEW", 5).await;
    assert_eq!(journal_count(&d, "stock.low"), 2, "the first delivery");
    for _ in 0..3 {
        let (s, v) = d
            .sale(
                &t,
                &json!({"lines": [{"sku": "NEW", "qty": 1}], "payments": cash(100)}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
    }
    receive(&d, &tm, "NEW", 3).await;
    assert_eq!(
        journal_count(&d, "stock.low"),
        2,
        "still below, told already"
    );
    // Back above it, and sold below it again: told again.
    receive(&d, &tm, "NEW", 20).await;
    let (s, v) = d
        .sale(
            &t,
            &json!({"lines": [{"sku": "NEW", "qty": 20}], "payments": cash(2000)}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        journal_count(&d, "stock.low"),
        3,
        "below again after it recovered"
    );

    // The wait survives a restart and a cache rebuilt from the journal.
    new_product(&d, &tm, "LATE", 10).await;
    d.terminate();
    for f in ["cache.sqlite3", "cache.sqlite3-wal", "cache.sqlite3-shm"] {
        let _ = std::fs::remove_file(dir.path().join("data").join(f));
    }
    let d = Daemon::start_with(dir.path(), &dir.path().join("storebox.toml"));
    assert_eq!(
        journal_count(&d, "stock.low"),
        3,
        "nothing raised by the restart"
    );
    let tm = d.login(MANAGER).await;
    receive(&d, &tm, "LATE", 4).await;
    assert_eq!(
        journal_count(&d, "stock.low"),
        4,
        "the first delivery after a rebuild"
    );
    receive(&d, &tm, "CFG", 1).await;
    assert_eq!(
        journal_count(&d, "stock.low"),
        4,
        "CFG was told at its opening stock"
    );
}

//! The stock list's paging at its edge: a store with exactly a page of products.

mod common;

use common::{CASHIER, Daemon};

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

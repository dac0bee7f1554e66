//! What changes between a till's quote and its sale: the benefits that are given once
//! whichever till asks first, and the retry of a sale made before the change
//! (tests/races_hq_stock.rs has the price changed since the quote, and what the till is told).

mod common;

use chrono::Datelike;
use common::race::*;
use common::*;
use serde_json::{Value, json};

fn card(amount: i64) -> Value {
    json!([{"method": "card", "amount": amount}])
}

/// The birthday discount quoted at one till and used meanwhile at the other is not given
/// again: the card payment of the quote is refused, cash pays the full price. A retry of the
/// other till's sale gets that sale again, and refunds give back what each sale took.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_birthday_discount_used_at_the_other_till_meanwhile_is_not_given_twice() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let [t1, t2] = tills(&d).await;
    let today = store_today();
    let birthday = today.with_year(1990).unwrap_or(today);
    let m = d
        .register(&t1, "王五", "13700137000", json!({"birthday": birthday}))
        .await;
    let (s, v) = d
        .sale(&t1, &json!({"member_id": m, "lines": [{"sku": "TEA", "qty": 4}], "payments": cash(100_000)}))
        .await;
    assert_eq!(s, 201, "{v}");
    let cart =
        |pay: Value| json!({"member_id": m, "lines": [{"sku": "RICE", "qty": 1}], "payments": pay});
    let (s, q) = d.post(&t1, "/v1/sales/quote", &cart(card(7192))).await;
    assert_eq!((s, q["total"].as_i64()), (200, Some(7192)), "{q}");
    let post = |t: &str, body: Value, key: &'static str| {
        let (d, t) = (&d, t.to_string());
        async move {
            d.send(reqwest::Method::POST, &t, "/v1/sales", &body, Some(key))
                .await
        }
    };
    let (s, other) = post(&t2, cart(card(7192)), "till-2").await;
    assert_eq!(
        (s, other["benefit"].as_str()),
        (201, Some("birthday")),
        "{other}"
    );
    let (s, v) = post(&t1, cart(card(7192)), "till-1").await;
    assert_eq!((s, code(&v)), (422, "underpaid"), "{v}");
    let (s, full) = post(&t1, cart(cash(10_000)), "till-1").await;
    assert_eq!(s, 201, "{full}");
    assert_eq!(
        (&full["total"], &full["change"], &full["benefit"]),
        (&json!(8990), &json!(1010), &Value::Null),
        "{full}"
    );
    let (s, again) = post(&t2, cart(card(7192)), "till-2").await;
    assert_eq!((s, &again), (200, &other));
    assert_eq!(journal_count(&d, "sale.recorded"), 3);
    let tm = d.login(MANAGER).await;
    for (sale, back) in [
        (&other, json!([{"method": "card", "amount": 7192}])),
        (&full, json!([{"method": "cash", "amount": 8990}])),
    ] {
        let path = format!("/v1/sales/{}/refunds", sale["id"].as_str().unwrap());
        let (s, r) = d.post(&tm, &path, &json!({"reason": "退货"})).await;
        assert_eq!((s, &r["payments"]), (201, &back), "{r}");
    }
}

/// A sale retried after its member was erased (a manager, meanwhile) gets the sale again, not
/// `member_not_found`, which would have the cashier ring it up a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_retried_after_its_member_was_erased_is_the_same_sale() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let tm = d.login(MANAGER).await;
    let m = member_with_points(&d, &t, "13700137001").await;
    let cart = json!({"member_id": m, "lines": [{"sku": "TEA", "qty": 1}], "redeem_points": 600, "payments": cash(24_400)});
    let (s, sale) = d
        .send(reqwest::Method::POST, &t, "/v1/sales", &cart, Some("k-1"))
        .await;
    assert_eq!(s, 201, "{sale}");
    let (s, v) = d.erase(&tm, &m).await;
    assert!(s < 300, "{s} {v}");
    let (s, again) = d
        .send(reqwest::Method::POST, &t, "/v1/sales", &cart, Some("k-1"))
        .await;
    assert_eq!((s, &again), (200, &sale));
    let (s, v) = d.sale(&t, &cart).await;
    assert_eq!((s, code(&v)), (404, "member_not_found"), "{v}");
    let path = format!("/v1/sales/{}/refunds", sale["id"].as_str().unwrap());
    let (s, r) = d.post(&tm, &path, &json!({"reason": "退货"})).await;
    assert_eq!(s, 201, "{r}");
    assert_eq!(
        (&r["refund_total"], &r["points_restored"]),
        (&sale["total"], &json!(600)),
        "{r}"
    );
}

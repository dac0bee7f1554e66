//! The design's optional request fields (`"member_id"?`, `"coupon_codes"?`, `"redeem_points"?`,
//! a registration's `gender`, `tags`, `consent`; a quote's `payments`, a sale's `print`, a
//! refund's `lines` and `restock`) may be sent as `null`, as many terminals'
//! JSON libraries write an unset field: the same as leaving them out, not a `400`.

mod common;

use common::{CASHIER, Daemon, MANAGER, cash};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_fields_sent_as_null_are_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;

    let (s, v) = d
        .post(
            &t,
            "/v1/members",
            &json!({"name": "Li Lei", "phone": "13912340000", "gender": null,
                    "birthday": null, "card_no": null, "tags": null, "consent": null}),
        )
        .await;
    assert_eq!(s, 201, "{v}");

    let quote = json!({"member_id": null, "lines": [{"sku": "TEA", "qty": 1}],
                       "coupon_codes": null, "redeem_points": null, "payments": null});
    let (s, q) = d.post(&t, "/v1/sales/quote", &quote).await;
    assert_eq!(s, 200, "{q}");
    let cart = json!({"member_id": null, "lines": [{"sku": "TEA", "qty": 1}],
                      "coupon_codes": null, "redeem_points": null, "payments": cash(25000),
                      "print": null});
    let (s, sale) = d.sale(&t, &cart).await;
    assert_eq!(s, 201, "{sale}");
    assert_eq!(sale["total"], q["total"], "{sale}");

    // A refund's `restock: null` puts the goods back, as when it is left out.
    let m = d.login(MANAGER).await;
    let (_, before) = d.get(&m, "/v1/stock/TEA").await;
    let id = sale["id"].as_str().unwrap();
    let (s, r) = d
        .post(
            &m,
            &format!("/v1/sales/{id}/refunds"),
            &json!({"reason": "wrong size", "lines": null, "restock": null}),
        )
        .await;
    assert_eq!(s, 201, "{r}");
    let (_, after) = d.get(&m, "/v1/stock/TEA").await;
    assert_eq!(
        after["on_hand"].as_i64(),
        before["on_hand"].as_i64().map(|n| n + 1),
        "{before} → {after}"
    );
    d.terminate();
}

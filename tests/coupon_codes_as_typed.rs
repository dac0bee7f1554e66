//! Coupon codes as a cashier types them: in lower case, with spaces, or in the full-width
//! letters and digits of a Chinese input method's full-width mode. The till finds the coupon
//! the customer holds, as it finds a barcode typed that way; a cart short of its threshold is
//! told by how much.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn a_coupon_code_typed_full_width_or_with_spaces_is_the_coupon() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let tm = d.login(MANAGER).await;
    let (s, c) = d
        .post(
            &tm,
            "/v1/coupons",
            &json!({"code": "MJ100-20", "title": "满100减20",
            "kind": {"type": "amount_off", "threshold": 10000, "amount": 2000}}),
        )
        .await;
    assert_eq!(s, 201, "{c}");

    // Looked up as typed in full-width mode.
    let (s, c) = d.get(&t, "/v1/coupons/ＭＪ１００－２０").await;
    assert_eq!((s, c["code"].as_str()), (200, Some("MJ100-20")), "{c}");

    // Quoted and used as typed: full-width, lower case, a space in the middle.
    for typed in ["ｍｊ１００－２０\u{3000}", "mj100 -20"] {
        let (s, q) = d
            .post(
                &t,
                "/v1/sales/quote",
                &json!({"lines": [{"sku": "RICE", "qty": 2}], "coupon_codes": [typed]}),
            )
            .await;
        assert_eq!(s, 200, "{typed:?}: {q}");
        assert_eq!(q["coupons"][0]["discount"], 2000, "{typed:?}: {q}");
    }
    // A cart short of its threshold (one bag, or a price lowered since the quote) is told by
    // how much in yuan, as the till shows it: until 2026-12-07 "needs 10000 but the cart is
    // 8990" (fen).
    let (s, v) = d
        .sale(
            &t,
            &json!({"lines": [{"sku": "RICE", "qty": 1}], "coupon_codes": ["mj100-20"],
            "payments": cash(8990)}),
        )
        .await;
    assert_eq!((s, code(&v)), (422, "coupon_threshold_not_met"), "{v}");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("needs 100.00 but the cart is 89.90"),
        "{v}"
    );
    let (s, sale) = d
        .sale(
            &t,
            &json!({"lines": [{"sku": "RICE", "qty": 2}], "coupon_codes": ["ＭＪ１００－２０"],
            "payments": cash(17_980 - 2000)}),
        )
        .await;
    assert_eq!(s, 201, "{sale}");
    assert_eq!(sale["coupons"][0]["code"], "MJ100-20", "{sale}");
    let (_, c) = d.get(&t, "/v1/coupons/MJ100-20").await;
    assert_eq!(c["used"]["sale_id"], sale["id"], "{c}");

    // A manager typing a new code in full-width mode issues the code the till will find.
    let (s, c) = d
        .post(
            &tm,
            "/v1/coupons",
            &json!({"code": "ＷＸ－２０２６", "kind": {"type": "percent_off", "bps": 1000}}),
        )
        .await;
    assert_eq!((s, c["code"].as_str()), (201, Some("WX-2026")), "{c}");
}

//! The chain's membership rules, end to end over HTTP against the real daemon.

mod common;

use chrono::Datelike;
use common::{CASHIER, Daemon, MANAGER, cash, store_today};
use serde_json::json;

#[tokio::test]
async fn first_sales_upgrade_then_earn_points() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let m = d.register(&t, "张三", "13800138000", json!({})).await;

    // ¥2,500 as a new member: reaches 普通会员 and earns nothing on this sale.
    let (s, sale) = d
        .sale(&t, &json!({"member_id": m, "lines": [{"sku": "TEA", "qty": 10}], "payments": cash(250_000)}))
        .await;
    assert_eq!(s, 201, "{sale}");
    assert_eq!(sale["total"], 250_000);
    assert_eq!(sale["points_earned"], 0);
    assert_eq!(sale["member"]["upgraded_to"]["code"], "regular");
    assert_eq!(sale["member"]["upgraded_to"]["name"], "普通会员");

    // From now on every yuan earns a point (floored).
    let (s, sale) = d
        .sale(&t, &json!({"member_id": m, "lines": [{"sku": "MILK", "qty": 1}], "payments": cash(10_000)}))
        .await;
    assert_eq!(s, 201, "{sale}");
    assert_eq!(sale["change"], 10_000 - 1290);
    assert_eq!(sale["points_earned"], 12);
    let (s, sale) = d
        .sale(&t, &json!({"member_id": m, "lines": [{"sku": "TEA", "qty": 1}, {"sku": "MILK", "qty": 2}], "payments": [{"method": "wechat", "amount": 27_580}]}))
        .await;
    assert_eq!(s, 201, "{sale}");
    assert_eq!(sale["total"], 27_580);
    assert_eq!(sale["points_earned"], 275);

    let (_, member) = d.get(&t, &format!("/v1/members/{m}")).await;
    assert_eq!(member["level"]["code"], "regular");
    assert_eq!(member["points"], 12 + 275);
    assert_eq!(member["total_spend"], 250_000 + 1290 + 27_580);
    assert_eq!(member["visits"], 3);
    assert_eq!(
        member["phone"], "138****8000",
        "cashiers see a masked phone"
    );

    let tm = d.login(MANAGER).await;
    let (_, member) = d.get(&tm, &format!("/v1/members/{m}")).await;
    assert_eq!(
        member["phone"], "13800138000",
        "managers see the whole phone"
    );

    // The level upgrade went to the journal as its own event (for HQ).
    let (_, today) = d.get(&t, "/v1/sales").await;
    assert_eq!(today["sales"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn exactly_100_yuan_earns_100_points() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(
        dir.path(),
        "[[products]]\nsku = \"GIFT100\"\nname = \"礼品卡 ¥100\"\nprice = 10000\n",
    );
    let t = d.login(CASHIER).await;
    let m = d.register(&t, "李四", "13900139000", json!({})).await;
    let (s, sale) = d
        .sale(&t, &json!({"member_id": m, "lines": [{"sku": "TEA", "qty": 10}], "payments": cash(250_000)}))
        .await;
    assert_eq!((s, &sale["points_earned"]), (201, &json!(0)));
    let (s, sale) = d
        .sale(&t, &json!({"member_id": m, "lines": [{"sku": "GIFT100", "qty": 1}], "payments": cash(10_000)}))
        .await;
    assert_eq!(s, 201, "{sale}");
    assert_eq!(sale["points_earned"], 100);
    assert_eq!(sale["member"]["points"], 100);
}

#[tokio::test]
async fn birthday_discount_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let today = store_today();
    let birthday = today.with_year(1990).unwrap_or(today);
    let m = d
        .register(&t, "王五", "13700137000", json!({"birthday": birthday}))
        .await;
    // No level yet: no birthday discount.
    let (_, sale) = d
        .sale(&t, &json!({"member_id": m, "lines": [{"sku": "TEA", "qty": 10}], "payments": cash(250_000)}))
        .await;
    assert_eq!(sale["discount_total"], 0);
    assert_eq!(sale["member"]["level"]["code"], "regular");

    let (_, member) = d.get(&t, &format!("/v1/members/{m}")).await;
    assert_eq!(member["birthday_discount_available"], true);

    // As 普通会员 on the birthday: 8折, once.
    let cart =
        json!({"member_id": m, "lines": [{"sku": "RICE", "qty": 1}], "payments": cash(8990)});
    let (s, q) = d.post(&t, "/v1/sales/quote", &cart).await;
    assert_eq!(s, 200);
    assert_eq!(q["total"], 7192);
    assert_eq!(q["benefit"], "birthday");
    let (s, sale) = d.sale(&t, &cart).await;
    assert_eq!(s, 201, "{sale}");
    assert_eq!(sale["total"], 7192);
    assert_eq!(sale["change"], 8990 - 7192);
    assert_eq!(sale["benefit"], "birthday");

    let (_, again) = d.sale(&t, &cart).await;
    assert_eq!(again["total"], 8990, "the birthday discount is once a year");
    assert_eq!(again["benefit"], serde_json::Value::Null);
    let (_, member) = d.get(&t, &format!("/v1/members/{m}")).await;
    assert_eq!(member["birthday_discount_available"], false);
}

#[tokio::test]
async fn silver_earns_1_2_points_and_points_rules() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let m = d.register(&t, "赵六", "13600136000", json!({})).await;
    let (_, sale) = d
        .sale(&t, &json!({"member_id": m, "lines": [{"sku": "TEA", "qty": 12}], "payments": cash(300_000)}))
        .await;
    assert_eq!(sale["member"]["upgraded_to"]["code"], "silver");
    assert_eq!(sale["points_earned"], 0);

    // 银卡: ¥1,000 earns 1,200 points.
    let (_, sale) = d
        .sale(&t, &json!({"member_id": m, "lines": [{"sku": "TEA", "qty": 4}], "payments": cash(100_000)}))
        .await;
    assert_eq!(sale["points_earned"], 1200);
    assert_eq!(sale["member"]["points"], 1200);

    // More points than held: 422.
    let cart = |points: i64| json!({"member_id": m, "lines": [{"sku": "TEA", "qty": 1}], "redeem_points": points, "payments": cash(25_000)});
    let (s, e) = d.sale(&t, &cart(1201)).await;
    assert_eq!(s, 422, "{e}");
    assert_eq!(e["error"]["code"], "insufficient_points");

    // More than 50 % of a sale: 422. ¥12.90 of milk allows at most 645 points.
    let milk = |points: i64| json!({"member_id": m, "lines": [{"sku": "MILK", "qty": 1}], "redeem_points": points, "payments": cash(1290)});
    let (s, e) = d.sale(&t, &milk(646)).await;
    assert_eq!(s, 422, "{e}");
    assert_eq!(e["error"]["code"], "redeem_above_limit");
    let (_, q) = d.post(&t, "/v1/sales/quote", &milk(0)).await;
    assert_eq!(q["max_redeem_points"], 645);

    // Within the limits the points pay and earn nothing themselves.
    let (s, sale) = d
        .sale(&t, &json!({"member_id": m, "lines": [{"sku": "MILK", "qty": 1}], "redeem_points": 645, "payments": cash(645)}))
        .await;
    assert_eq!(s, 201, "{sale}");
    assert_eq!(sale["points_value"], 645);
    assert_eq!(sale["total"], 645);
    assert_eq!(
        sale["points_earned"], 7,
        "6.45 yuan paid with money at 1.2 points per yuan"
    );
    assert_eq!(sale["member"]["points"], 1200 - 645 + 7);

    // Nothing changed for the refused attempts.
    let (_, member) = d.get(&t, &format!("/v1/members/{m}")).await;
    assert_eq!(member["points"], 1200 - 645 + 7);
}

#[tokio::test]
async fn refund_restores_spend_points_and_stock() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let tm = d.login(MANAGER).await;
    let m = d.register(&t, "钱七", "13500135000", json!({})).await;
    d.sale(
        &t,
        &json!({"member_id": m, "lines": [{"sku": "TEA", "qty": 10}], "payments": cash(250_000)}),
    )
    .await;
    let (_, before) = d.get(&t, &format!("/v1/members/{m}")).await;
    let (_, stock_before) = d.get(&t, "/v1/stock/TEA").await;

    let (s, sale) = d
        .sale(&t, &json!({"member_id": m, "lines": [{"sku": "TEA", "qty": 3}, {"sku": "MILK", "qty": 2}], "payments": cash(80_000)}))
        .await;
    assert_eq!(s, 201);
    let id = sale["id"].as_str().unwrap();

    // A cashier may not refund.
    let (s, e) = d
        .post(
            &t,
            &format!("/v1/sales/{id}/refunds"),
            &json!({"reason": "不想要了"}),
        )
        .await;
    assert_eq!(s, 403, "{e}");

    // Partial, then the rest.
    let (s, r1) = d
        .post(
            &tm,
            &format!("/v1/sales/{id}/refunds"),
            &json!({"reason": "破损", "lines": [{"sku": "TEA", "qty": 1}]}),
        )
        .await;
    assert_eq!(s, 201, "{r1}");
    let (s, e) = d
        .post(
            &tm,
            &format!("/v1/sales/{id}/refunds"),
            &json!({"reason": "x", "lines": [{"sku": "TEA", "qty": 3}]}),
        )
        .await;
    assert_eq!(s, 422, "{e}");
    assert_eq!(e["error"]["code"], "refund_exceeds_sale");
    let (s, r2) = d
        .post(
            &tm,
            &format!("/v1/sales/{id}/refunds"),
            &json!({"reason": "整单退货"}),
        )
        .await;
    assert_eq!(s, 201, "{r2}");
    assert_eq!(
        r1["refund_total"].as_i64().unwrap() + r2["refund_total"].as_i64().unwrap(),
        sale["total"].as_i64().unwrap()
    );

    let (_, after) = d.get(&t, &format!("/v1/members/{m}")).await;
    assert_eq!(after["total_spend"], before["total_spend"]);
    assert_eq!(after["points"], before["points"]);
    let (_, stock_after) = d.get(&t, "/v1/stock/TEA").await;
    assert_eq!(stock_after["on_hand"], stock_before["on_hand"]);

    let (s, e) = d
        .post(
            &tm,
            &format!("/v1/sales/{id}/refunds"),
            &json!({"reason": "again"}),
        )
        .await;
    assert_eq!(s, 422);
    assert_eq!(e["error"]["code"], "already_refunded");

    let (_, view) = d.get(&t, &format!("/v1/sales/{id}")).await;
    assert_eq!(view["refunds"].as_array().unwrap().len(), 2);
    assert_eq!(view["refunded_total"], sale["total"]);
}

#[tokio::test]
async fn coupons_at_the_till() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let tm = d.login(MANAGER).await;
    let (s, c) = d
        .post(&tm, "/v1/coupons", &json!({"code": "MJ100-20", "title": "满100减20", "kind": {"type": "amount_off", "threshold": 10000, "amount": 2000}}))
        .await;
    assert_eq!(s, 201, "{c}");
    let cart = json!({"lines": [{"sku": "RICE", "qty": 2}], "coupon_codes": ["mj100-20"], "payments": cash(15_980)});
    let (s, sale) = d.sale(&t, &cart).await;
    assert_eq!(s, 201, "{sale}");
    assert_eq!(sale["total"], 17_980 - 2000);
    assert_eq!(sale["coupons"][0]["discount"], 2000);
    let (s, e) = d.sale(&t, &cart).await;
    assert_eq!(s, 422);
    assert_eq!(e["error"]["code"], "coupon_used");
    let (_, c) = d.get(&t, "/v1/coupons/MJ100-20").await;
    assert_eq!(c["used"]["sale_id"], sale["id"]);
}

/// A sale is answered once the journal has it, before the cache is written: whatever the
/// terminal asks right after the answer must show the sale all the same.
#[tokio::test]
async fn what_the_terminal_asks_right_after_a_sale_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let m = d.register(&t, "李四", "13800138011", json!({})).await;
    for i in 1..=40i64 {
        let (s, sale) = d
            .sale(&t, &json!({"member_id": m, "lines": [{"sku": "MILK", "qty": 1}], "payments": cash(1290)}))
            .await;
        assert_eq!(s, 201, "{sale}");
        let (_, stock) = d.get(&t, "/v1/stock/MILK").await;
        assert_eq!(stock["on_hand"], 1000 - i, "stock after sale {i}: {stock}");
        let (_, member) = d.get(&t, &format!("/v1/members/{m}")).await;
        assert_eq!(
            member["total_spend"],
            1290 * i,
            "spend after sale {i}: {member}"
        );
    }
}

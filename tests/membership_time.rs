//! Membership rules as the calendar moves on, against the real daemon with its wall clock
//! moved by libfaketime: what a refund of an old sale does with points that lapsed since.

mod common;

use common::{CASHIER, MANAGER, cash, libfaketime, start_faked};
use serde_json::json;

/// Points lapse at the end of the third month after the month they were earned in. A member's
/// January sale of ¥500 earned 500 points that lapsed unused at the end of April; in May the
/// member earned 250 more. Refunded in June, the sale's money comes back whole (the lapsed
/// points were never used, so nothing is kept for them) and the May points stay. Until
/// 2026-12-07 the refund said 250 points were taken back, the balance stayed 250, and ¥2.50
/// was kept for the other 250.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunding_a_sale_whose_points_lapsed_unused_keeps_no_money_for_them() {
    let Some(lib) = libfaketime() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config(dir.path(), "[membership]\npoints_expiry_months = 3\n");
    let tea = |qty: u32| json!([{"sku": "TEA", "qty": qty}]);

    let d = start_faked(
        dir.path(),
        &config,
        lib,
        ("FAKETIME", "@2026-01-10 02:00:00"),
        &[],
    );
    let t = d.login(CASHIER).await;
    let m = d.register(&t, "孙八", "13400134000", json!({})).await;
    // ¥1,000 makes 普通会员; the next ¥500 earns 500 points.
    let (s, v) = d
        .sale(
            &t,
            &json!({"member_id": m, "lines": tea(4), "payments": cash(100_000)}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, sale) = d
        .sale(
            &t,
            &json!({"member_id": m, "lines": tea(2), "payments": cash(50_000)}),
        )
        .await;
    assert_eq!((s, &sale["points_earned"]), (201, &json!(500)), "{sale}");
    d.terminate();

    let d = start_faked(
        dir.path(),
        &config,
        lib,
        ("FAKETIME", "@2026-05-12 02:00:00"),
        &[],
    );
    let t = d.login(CASHIER).await;
    let (_, v) = d.get(&t, &format!("/v1/members/{m}")).await;
    assert_eq!(
        v["points"], 0,
        "the January points lapsed at the end of April: {v}"
    );
    let (s, v) = d
        .sale(
            &t,
            &json!({"member_id": m, "lines": tea(1), "payments": cash(30_000)}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    d.terminate();

    let d = start_faked(
        dir.path(),
        &config,
        lib,
        ("FAKETIME", "@2026-06-10 02:00:00"),
        &[],
    );
    let t = d.login(CASHIER).await;
    let tm = d.login(MANAGER).await;
    let (_, before) = d.get(&t, &format!("/v1/members/{m}")).await;
    assert_eq!(before["points"], 250, "{before}");
    let id = sale["id"].as_str().unwrap();
    let (s, r) = d
        .post(
            &tm,
            &format!("/v1/sales/{id}/refunds"),
            &json!({"reason": "退货"}),
        )
        .await;
    assert_eq!(s, 201, "{r}");
    assert_eq!(
        (
            &r["refund_total"],
            &r["points_shortfall"],
            &r["shortfall_value"]
        ),
        (&json!(50_000), &json!(0), &json!(0)),
        "{r}"
    );
    let (_, after) = d.get(&t, &format!("/v1/members/{m}")).await;
    assert_eq!(after["points"], 250, "{after}");
    assert_eq!(r["member"]["points"], 250, "{r}");
}

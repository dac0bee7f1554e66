//! The sales CSV has a row for every day of its period; the below-safety lists hold only
//! products that have a safety stock.
mod common;

use chrono::{FixedOffset, TimeZone};
use common::*;
use serde_json::json;

/// The README: "the CSV has a row a day: day, sales, revenue, refunded, net". A day of the
/// period without a sale or refund is a row of zeros, not a gap. The sales at 23:59:59 and
/// 00:00:00 store time fall on their own store-local days.
#[tokio::test]
async fn sales_csv_has_a_row_for_every_day_of_the_period() {
    let dir = tempfile::tempdir().unwrap();
    let today = store_today();
    let day = |n: u64| today - chrono::Days::new(n);
    let tz = FixedOffset::east_opt(8 * 3600).unwrap();
    let at = |d: chrono::NaiveDate, h, m, s| {
        tz.from_local_datetime(&d.and_hms_opt(h, m, s).unwrap())
            .unwrap()
    };
    let late = at(day(4), 23, 59, 59);
    let early = at(day(2), 0, 0, 0);
    history::write_journal(
        &dir.path().join("data"),
        vec![
            (
                late,
                history::sale_event("s-late", late, "1001", None, &[("MILK", 1, 1290)]),
            ),
            (
                early,
                history::sale_event("s-early", early, "1001", None, &[("MILK", 2, 2580)]),
            ),
        ],
    );
    let d = Daemon::start_in(dir.path(), "");
    let tm = d.login(MANAGER).await;
    let csv = d
        .text(
            &tm,
            &format!("/v1/reports/sales?from={}&to={}&format=csv", day(5), day(1)),
        )
        .await;
    let rows: Vec<&str> = csv.trim_start_matches('\u{feff}').lines().collect();
    assert_eq!(
        rows,
        vec![
            "day,sales,revenue,refunded,net".to_string(),
            format!("{},0,0.00,0.00,0.00", day(5)),
            format!("{},1,12.90,0.00,12.90", day(4)),
            format!("{},0,0.00,0.00,0.00", day(3)),
            format!("{},1,25.80,0.00,25.80", day(2)),
            format!("{},0,0.00,0.00,0.00", day(1)),
        ],
        "{csv}"
    );
    d.terminate();
}

/// A product with no safety stock (0: none set) is never "below" it, even when the store has
/// sold more than its books held (negative stock is allowed by default): `stock.low` is never
/// raised for it, and the reorder lists must not fill with every product HQ never counted.
#[tokio::test]
async fn a_product_without_safety_stock_is_not_below_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let tm = d.login(MANAGER).await;
    // RICE has no safety stock; sell more than the 1,000 on the books.
    let (s, v) = d
        .post(
            &tm,
            "/v1/stock/movements",
            &json!({"sku": "RICE", "delta": -1000, "reason": "adjust"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = d
        .sale(
            &t,
            &json!({"lines": [{"sku": "RICE", "qty": 1}], "payments": cash(8990)}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = d.get(&t, "/v1/stock/RICE").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["on_hand"].as_i64(), v["safety_stock"].as_i64()),
        (Some(-1), Some(0))
    );
    assert_eq!(v["below_safety"], false, "{v}");
    let (s, v) = d.get(&t, "/v1/stock?below_safety=true").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["stock"], json!([]), "{v}");
    let (s, v) = d.get(&tm, "/v1/reports/stock").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["low_stock"], json!([]), "{v}");
    // TEA (safety 10) at 0 is below it.
    let (s, v) = d
        .post(
            &tm,
            "/v1/stock/movements",
            &json!({"sku": "TEA", "delta": -1000, "reason": "adjust"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (_, v) = d.get(&tm, "/v1/reports/stock").await;
    let skus: Vec<&str> = v["low_stock"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["sku"].as_str())
        .collect();
    assert_eq!(skus, vec!["TEA"], "{v}");
    d.terminate();
}

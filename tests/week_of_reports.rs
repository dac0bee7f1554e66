//! A week at a store, through the HTTP API with the daemon's clock moved day by day: two tills,
//! three cashiers, members and walk-ins, cash with change, card, mixed payments, points,
//! coupons, a birthday discount, a price change mid-week, partial and whole refunds (of an
//! earlier day's sale, across midnight, by a manager at the other till), a sale at 23:59:59 and
//! one at 00:00:00. The test keeps its own book and checks every figure of the sales, staff and
//! products reports, JSON and CSV, each day and the week: what a manager does the cash-up from.

mod common;
mod week;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{CASHIER, MANAGER, POS2, TERMINAL_TOKEN, libfaketime, start_faked};
use serde_json::{Value, json};
use week::{Book, Clock, Store, check, day_of, i};

const CASHIER2: (&str, &str) = ("1002", "3333");
const CASHIER3: (&str, &str) = ("1003", "4444");
const STAFF: &str = r#"
[[staff]]
staff_no = "1002"
name = "张伟"
role = "cashier"
pin = "3333"

[[staff]]
staff_no = "1003"
name = "刘洋"
role = "cashier"
pin = "4444"
"#;

fn pay(method: &str, amount: i64) -> Value {
    json!({"method": method, "amount": amount})
}

fn config(dir: &Path) -> PathBuf {
    let path = dir.join("storebox.toml");
    std::fs::write(&path, common::config_text(&dir.join("data"), STAFF)).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_week_of_reports_adds_up_to_the_tills() {
    let Some(lib) = libfaketime() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let clock = Clock(dir.path().join("faketime"));
    clock.set("2026-11-16T09:00:00+08:00");
    let d = start_faked(
        dir.path(),
        &cfg,
        lib,
        ("FAKETIME_TIMESTAMP_FILE", clock.0.to_str().unwrap()),
        &[("TZ", "UTC")],
    );
    let mut s = Store {
        d,
        book: Book::default(),
    };
    let t1 = (TERMINAL_TOKEN, CASHIER);
    let t2 = (POS2, CASHIER2);
    let t3 = (POS2, CASHIER3);
    let tm1 = (TERMINAL_TOKEN, MANAGER);
    let tm2 = (POS2, MANAGER);
    let sell = |lines: Value, payments: Vec<Value>| json!({"lines": lines, "payments": payments});

    // Monday.
    let a =
        s.d.register(
            &s.login(t1.0, t1.1).await,
            "王芳",
            "13800138001",
            json!({"birthday": "1990-11-18"}),
        )
        .await;
    let b =
        s.d.register(&s.login(t2.0, t2.1).await, "李雷", "13800138002", json!({}))
            .await;
    // Walk-in, ¥25.80 from ¥30: ¥4.20 change.
    let mon1 = s
        .sell(
            t1,
            sell(json!([{"sku": "MILK", "qty": 2}]), vec![pay("cash", 3000)]),
        )
        .await;
    // Member A: 5 TEA (¥1,250) reaches regular; card ¥1,000 and cash ¥300 (¥50 change).
    let mon2 = s
        .sell(
            t1,
            json!({"member_id": a, "lines": [{"sku": "TEA", "qty": 5}],
                   "payments": [pay("card", 100000), pay("cash", 30000)]}),
        )
        .await;
    // Member B: RICE by WeChat at pos-2.
    let mon3 = s
        .sell(t2, json!({"member_id": b, "lines": [{"sku": "RICE", "qty": 2}], "payments": [pay("wechat", 17980)]}))
        .await;
    clock.set("2026-11-16T23:59:59.100+08:00");
    let late = s
        .sell(
            t3,
            sell(
                json!([{"sku": "MILK", "qty": 1}, {"sku": "RICE", "qty": 1}]),
                vec![pay("cash", 20000)],
            ),
        )
        .await;
    assert_eq!(day_of(&late["created_at"]), "2026-11-16", "{late}");

    // Tuesday, midnight.
    clock.set("2026-11-17T00:00:00.200+08:00");
    let tue1 = s
        .sell(
            t1,
            sell(
                json!([{"sku": "RICE", "qty": 1}]),
                vec![pay("alipay", 8990)],
            ),
        )
        .await;
    assert_eq!(day_of(&tue1["created_at"]), "2026-11-17", "{tue1}");
    // Monday 23:59:59's sale, its MILK given back at the other till (cash).
    s.refund(
        tm2,
        &late,
        json!({"reason": "坏了", "lines": [{"sku": "MILK", "qty": 1}]}),
    )
    .await;
    clock.set("2026-11-17T15:00:00+08:00");
    // Monday's mixed sale: 2 of the 5 TEA back at pos-1.
    s.refund(
        tm1,
        &mon2,
        json!({"reason": "送礼多了", "lines": [{"sku": "TEA", "qty": 2}]}),
    )
    .await;
    // Member A earns points now (regular): 2 TEA, cash ¥600.
    let tue2 = s
        .sell(t1, json!({"member_id": a, "lines": [{"sku": "TEA", "qty": 2}], "payments": [pay("cash", 60000)]}))
        .await;
    // Walk-in at pos-2 with a coupon: 满100减20 on RICE x2.
    let (st, c) = s
        .d
        .post(
            &s.login(tm1.0, tm1.1).await,
            "/v1/coupons",
            &json!({"title": "满100减20", "kind": {"type": "amount_off", "threshold": 10000, "amount": 2000}}),
        )
        .await;
    assert_eq!(st, 201, "{c}");
    s.sell(
        t2,
        json!({"lines": [{"sku": "RICE", "qty": 2}], "coupon_codes": [c["code"]], "payments": [pay("card", 5000), pay("cash", 20000)]}),
    )
    .await;

    // Wednesday: A's birthday, 8折, paying with points as well.
    clock.set("2026-11-18T11:30:00+08:00");
    let wed1 = s
        .sell(
            t3,
            json!({"member_id": a, "lines": [{"sku": "TEA", "qty": 1}, {"sku": "MILK", "qty": 3}],
                   "redeem_points": 300, "payments": [pay("cash", 30000)]}),
        )
        .await;
    assert!(i(&wed1["points_value"]) > 0, "{wed1}");
    // Monday's first sale refunded whole, at pos-2, by the manager.
    s.refund(tm2, &mon1, json!({"reason": "过期"})).await;
    s.sell(
        t1,
        sell(json!([{"sku": "TEA", "qty": 1}]), vec![pay("card", 25000)]),
    )
    .await;

    // The clock runs ahead into Thursday; NTP sets it back to Wednesday night.
    clock.set("2026-11-19T00:05:00+08:00");
    let ahead = s
        .sell(
            t1,
            sell(json!([{"sku": "TEA", "qty": 1}]), vec![pay("cash", 30000)]),
        )
        .await;
    clock.set("2026-11-18T23:58:00+08:00");
    s.sell(
        t2,
        sell(json!([{"sku": "RICE", "qty": 1}]), vec![pay("cash", 10000)]),
    )
    .await;
    s.refund(tm2, &ahead, json!({"reason": "不要了"})).await;

    // Thursday: MILK's price changes mid-day.
    clock.set("2026-11-19T10:00:00+08:00");
    let thu1 = s
        .sell(
            t1,
            sell(json!([{"sku": "MILK", "qty": 4}]), vec![pay("cash", 10000)]),
        )
        .await;
    let (st, p) =
        s.d.send(
            reqwest::Method::PUT,
            &s.login(tm1.0, tm1.1).await,
            "/v1/products/MILK",
            &json!({"name": "纯牛奶 1L", "price": 1390, "barcodes": ["6901234567915"]}),
            None,
        )
        .await;
    assert_eq!(st, 200, "{p}");
    clock.set("2026-11-19T16:00:00+08:00");
    let thu2 = s
        .sell(
            t1,
            sell(json!([{"sku": "MILK", "qty": 4}]), vec![pay("cash", 10000)]),
        )
        .await;
    assert_ne!(thu1["total"], thu2["total"]);
    // Member B's Monday RICE: one back, by WeChat.
    s.refund(
        tm1,
        &mon3,
        json!({"reason": "多买了", "lines": [{"sku": "RICE", "qty": 1}]}),
    )
    .await;

    // Friday: the rest of Monday's TEA, and Tuesday's rest of the late sale.
    clock.set("2026-11-20T12:00:00+08:00");
    s.refund(tm1, &mon2, json!({"reason": "不要了"})).await;
    s.refund(tm1, &late, json!({"reason": "不要了"})).await;
    s.refund(
        tm1,
        &tue2,
        json!({"reason": "不要了", "lines": [{"sku": "TEA", "qty": 1}]}),
    )
    .await;
    s.sell(
        t2,
        json!({"member_id": b, "lines": [{"sku": "TEA", "qty": 1}, {"sku": "MILK", "qty": 1}],
                        "payments": [pay("wechat", 10000), pay("cash", 20000)]}),
    )
    .await;

    // Saturday and Sunday: a quiet weekend.
    clock.set("2026-11-21T18:00:00+08:00");
    s.sell(
        t1,
        sell(json!([{"sku": "MILK", "qty": 1}]), vec![pay("cash", 1390)]),
    )
    .await;
    // Card for the whole, and a ¥5 note handed over by mistake and given back as change.
    let sat = s
        .sell(
            t2,
            sell(
                json!([{"sku": "RICE", "qty": 1}]),
                vec![pay("card", 8990), pay("cash", 500)],
            ),
        )
        .await;
    s.refund(tm2, &sat, json!({"reason": "不要了"})).await;
    // A free MILK with a coupon: nothing to pay.
    let (st, c) =
        s.d.post(
            &s.login(tm1.0, tm1.1).await,
            "/v1/coupons",
            &json!({"title": "送牛奶", "kind": {"type": "free_item", "sku": "MILK"}}),
        )
        .await;
    assert_eq!(st, 201, "{c}");
    let free = s.sell(t1, json!({"lines": [{"sku": "MILK", "qty": 1}], "coupon_codes": [c["code"]], "payments": []})).await;
    assert_eq!(i(&free["total"]), 0, "{free}");
    clock.set("2026-11-22T20:00:00+08:00");
    let tm1 = s.login(tm1.0, tm1.1).await;

    let days: Vec<String> = (16..=22).map(|d| format!("2026-11-{d}")).collect();
    for day in &days {
        check(&s, &tm1, std::slice::from_ref(day)).await;
    }
    check(&s, &tm1, &days).await;
    // Monday's two registrations, one at each till.
    let (_, r) =
        s.d.get(&tm1, "/v1/reports/staff?from=2026-11-16&to=2026-11-16")
            .await;
    let regs: BTreeMap<&str, u64> = r["staff"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["staff_no"].as_str().unwrap(),
                f["registrations"].as_u64().unwrap(),
            )
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    assert_eq!(regs, BTreeMap::from([("1001", 1), ("1002", 1)]), "{r}");
    let (_, r) =
        s.d.get(
            &tm1,
            "/v1/reports/associations?from=2026-11-16&to=2026-11-22&min_count=1",
        )
        .await;
    assert_eq!(r["sales"].as_u64(), Some(s.book.sales.len() as u64), "{r}");
    check(&s, &tm1, &days[1..3]).await;
    // The default period ends today.
    let (_, r) = s.d.get(&tm1, "/v1/reports/sales").await;
    assert_eq!(r["to"], "2026-11-22", "{r}");
    let sum: u64 = days
        .iter()
        .map(|d| r["by_day"][d][0].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(sum, s.book.sales.len() as u64, "{r}");
    s.d.terminate();
}

//! An automatic coupon's last day is a whole day. A welcome coupon issued at 19:30 "for 30
//! days" was refused as expired at 21:00 on its 30th day: it ended at the time of day it was
//! issued, while a customer (and the campaign coupons beside it) count whole days.

mod common;

use common::*;
use serde_json::json;

fn quote_with(code: &str, member: &str) -> serde_json::Value {
    json!({"member_id": member, "lines": [{"sku": "RICE", "qty": 1}], "coupon_codes": [code]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_welcome_coupon_is_good_all_of_its_last_day() {
    let Some(lib) = libfaketime() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("storebox.toml");
    std::fs::write(
        &config,
        config_text(&dir.path().join("data"), "").replace(
            "[insight.automation]\nenabled = false",
            "[insight.automation]\nenabled = true\nrun_hour = 23",
        ),
    )
    .unwrap();
    // The clocks below are UTC (TZ=UTC); the store is in Shanghai (+08:00).
    let at = |utc: &str| ("FAKETIME", format!("@{utc}"));

    // Registered at 19:30 on 10 March.
    let (k, v) = at("2026-03-10 11:30:00");
    let d = start_faked(dir.path(), &config, lib, (k, &v), &[("TZ", "UTC")]);
    let t = d.login(CASHIER).await;
    let member = d.register(&t, "王芳", "13800138000", json!({})).await;
    let coupon = storebox::domain::automation::occasion_code(
        &storebox::domain::automation::Occasion::Welcome,
        &member,
    );
    let (s, c) = d.get(&t, &format!("/v1/coupons/{coupon}")).await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(c["valid_to"], "2026-04-10T00:00:00+08:00", "{c}");
    d.terminate();
    // As journaled (and sent to HQ): the coupon's `seq` is its event's, not 0.
    let journal = rusqlite::Connection::open(dir.path().join("data/journal.sqlite3")).unwrap();
    let (seq, data): (i64, String) = journal
        .query_row(
            "SELECT seq, data FROM events WHERE kind = 'coupon.issued'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let data: serde_json::Value = serde_json::from_str(&data).unwrap();
    assert_eq!(data["seq"], seq, "{data}");
    assert_eq!(c["seq"], seq, "{c}");
    drop(journal);

    // 21:00 on 9 April, the 30th day: the coupon takes its ¥5 off.
    let (k, v) = at("2026-04-09 13:00:00");
    let d = start_faked(dir.path(), &config, lib, (k, &v), &[("TZ", "UTC")]);
    let t = d.login(CASHIER).await;
    let (s, q) = d
        .post(&t, "/v1/sales/quote", &quote_with(&coupon, &member))
        .await;
    assert_eq!(s, 200, "on its last day, at 21:00: {q}");
    assert_eq!(q["coupons"][0]["discount"], 500, "{q}");
    d.terminate();

    // 00:30 on 10 April: expired.
    let (k, v) = at("2026-04-09 16:30:00");
    let d = start_faked(dir.path(), &config, lib, (k, &v), &[("TZ", "UTC")]);
    let t = d.login(CASHIER).await;
    let (s, q) = d
        .post(&t, "/v1/sales/quote", &quote_with(&coupon, &member))
        .await;
    assert_eq!((s, code(&q)), (422, "coupon_expired"), "{q}");
    d.terminate();
}

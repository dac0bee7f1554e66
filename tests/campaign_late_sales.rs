//! An ended campaign's revenue is kept once read (tests/campaigns_of_past_months.rs): sales
//! of its days do not change — except when the clock goes back across midnight. A box whose
//! clock ran three minutes fast showed the campaigns page at "00:01" the day after the last
//! day; NTP stepped the clock back to 23:58 and the member's sale of those minutes is a sale
//! of the campaign's last day (the journal keeps it as a late event of that day). The page
//! kept the figures read before it for as long as the daemon ran.

mod common;

use std::time::Duration;

use chrono::{TimeZone, Timelike};
use common::{CASHIER, MANAGER, cash, libfaketime, start_faked};
use serde_json::json;

/// Seconds from now to the store's next midnight (Asia/Shanghai).
fn to_midnight() -> i64 {
    let now = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Shanghai);
    let next = now
        .date_naive()
        .succ_opt()
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    let next = chrono_tz::Asia::Shanghai
        .from_local_datetime(&next)
        .unwrap();
    (next - now).num_seconds() + i64::from(now.nanosecond() > 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_of_the_last_day_after_the_clock_went_back_counts_in_the_campaign() {
    let Some(lib) = libfaketime() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config(dir.path(), "");
    let offset = dir.path().join("faketime");
    let midnight = to_midnight();
    // The clock at `secs` from the store's next midnight (negative: before it).
    let set = |secs: i64| {
        std::fs::write(&offset, format!("{:+}\n", midnight + secs)).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    };
    set(-300);
    let clock = ("FAKETIME_TIMESTAMP_FILE", offset.to_str().unwrap());
    let d = start_faked(dir.path(), &config, lib, clock, &[]);
    let t = d.login(CASHIER).await;
    let tm = d.login(MANAGER).await;
    let day = (chrono::Utc::now() + chrono::Duration::seconds(midnight - 300))
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .date_naive();
    let member = d
        .register(&t, "客一", "13700000001", json!({"tags": ["vip"]}))
        .await;
    let (s, v) = d
        .post(
            &tm,
            "/v1/campaigns",
            &json!({"id": "LASTDAY", "name": "一日特惠", "target": {"tag": "vip"},
                    "coupon_title": "满100减20",
                    "coupon": {"type": "amount_off", "threshold": 10000, "amount": 2000},
                    "starts": day.to_string(), "ends": day.to_string(),
                    "control_percent": 0}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let buy =
        json!({"member_id": member, "lines": [{"sku": "TEA", "qty": 1}], "payments": cash(25_000)});
    let (s, v) = d.sale(&t, &buy).await;
    assert_eq!(s, 201, "{v}");

    // 00:01 on the box, the day after the last: the campaign is over, its figures read.
    set(60);
    let (s, v) = d.get(&tm, "/v1/campaigns").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["campaigns"][0]["treated_revenue"], 25_000, "{v}");

    // NTP: the clock was three minutes fast. At 23:58 of the last day the member buys again.
    set(-120);
    let (s, v) = d.sale(&t, &buy).await;
    assert_eq!(s, 201, "{v}");
    assert!(
        v["created_at"]
            .as_str()
            .unwrap()
            .starts_with(&day.to_string()),
        "{v}"
    );

    // Past midnight again: the campaign's last day had two sales of the member.
    set(120);
    let (s, v) = d.get(&tm, "/v1/campaigns").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["campaigns"][0]["treated_revenue"], 50_000,
        "the sale of the campaign's last day made after the clock went back is left out: {v}"
    );
    d.terminate();
}

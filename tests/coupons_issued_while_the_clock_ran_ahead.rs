//! Automatic coupons issued while the box's clock ran ahead (a bad RTC, before NTP set it
//! right) are good at the till once the clock is right again, the same day: a birthday coupon
//! of the morning run, a welcome coupon of a registration. The daemon runs under libfaketime
//! (`apt-get install faketime`); the test is skipped where it is missing.

mod common;

use chrono::TimeZone;
use common::{CASHIER, Daemon, history, libfaketime, start_faked};
use serde_json::json;
use storebox::domain::automation::{Occasion, occasion_code};

fn wait_for(d: &Daemon, needle: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !d.log_text().contains(needle) {
        assert!(
            std::time::Instant::now() < deadline,
            "no {needle:?}:\n{}",
            d.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_coupons_issued_while_the_clock_ran_ahead_are_good_once_it_is_set_right() {
    let Some(lib) = libfaketime() else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("storebox.toml");
    std::fs::write(
        &config,
        common::config_text(&data, "").replace(
            "[insight.automation]\nenabled = false",
            "[insight.automation]\nenabled = true\nrun_hour = 0",
        ),
    )
    .unwrap();
    // A member of two months' standing whose birthday is 10 March.
    let shanghai = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
    let joined = shanghai.with_ymd_and_hms(2026, 1, 10, 20, 0, 0).unwrap();
    let born = uuid::Uuid::now_v7().to_string();
    let mut e = history::member_event(&born, joined, "1001", "寿星", "13900000021");
    e["data"]["profile"]["birthday"] = json!("1990-03-10");
    history::write_journal(&data, vec![(joined, e)]);

    // 10 March, 09:00 in Shanghai; the box's clock says 15:00.
    let ahead = ("FAKETIME", "@2026-03-10 07:00:00");
    let d = start_faked(dir.path(), &config, lib, ahead, &[("TZ", "UTC")]);
    wait_for(&d, "morning automation done");
    let t = d.login(CASHIER).await;
    let new = d.register(&t, "新会员", "13900000022", json!({})).await;
    d.terminate();

    // NTP sets the clock right: 09:00.
    let right = ("FAKETIME", "@2026-03-10 01:00:00");
    let d = start_faked(dir.path(), &config, lib, right, &[("TZ", "UTC")]);
    let t = d.login(CASHIER).await;
    for (member, code) in [
        (
            &born,
            occasion_code(&Occasion::Birthday { year: 2026 }, &born),
        ),
        (&new, occasion_code(&Occasion::Welcome, &new)),
    ] {
        let (s, q) = d
            .post(
                &t,
                "/v1/sales/quote",
                &json!({"member_id": member, "lines": [{"sku": "RICE", "qty": 1}],
                        "coupon_codes": [code]}),
            )
            .await;
        assert_eq!(
            s, 200,
            "{code} at 09:00, issued at 15:00 by a clock that ran ahead: {q}"
        );
    }
    d.terminate();
}

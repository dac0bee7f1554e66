//! The store's clock stepping: a box that booted with its clock ahead (a bad RTC) and was set
//! right by NTP later, and a clock stepped forward while the daemon runs. The daemon runs
//! under libfaketime (`apt-get install faketime`); the tests are skipped where it is missing.

mod common;

use std::time::Duration;

use common::devices::wait_state;
use common::hw::FakePrinter;
use common::{
    ADMIN, CASHIER, Daemon, MANAGER, TERMINAL_TOKEN, libfaketime, login_status,
    printer_not_there_yet, start_faked,
};
use serde_json::json;

/// A staff number locked while the clock ran a day ahead stays locked for the lock-out time
/// after NTP sets the clock back, not for a day (an admin cannot unlock it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_set_by_a_clock_that_ran_ahead_lasts_the_lockout_time_not_the_clock_step() {
    let Some(lib) = libfaketime() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config(
        dir.path(),
        "[security]\nmax_pin_failures = 3\nlockout_seconds = 60\n",
    );
    let d = start_faked(dir.path(), &config, lib, ("FAKETIME", "+1d"), &[]);
    for _ in 0..3 {
        let (s, v, _) = login_status(&d, TERMINAL_TOKEN, CASHIER.0, "0000").await;
        assert_eq!(s, 401, "{v}");
    }
    let (s, v, _) = login_status(&d, TERMINAL_TOKEN, CASHIER.0, CASHIER.1).await;
    assert_eq!((s, common::code(&v)), (429, "staff_locked"), "{v}");
    d.terminate();

    // NTP has set the clock right: a day back.
    let d = Daemon::start_with(dir.path(), &config);
    let (s, v, retry) = login_status(&d, TERMINAL_TOKEN, CASHIER.0, CASHIER.1).await;
    assert_eq!(s, 429, "{v}");
    let secs: u64 = retry.as_deref().unwrap_or("0").parse().unwrap();
    assert!(
        secs <= 60,
        "locked for {secs} more seconds after the clock went back a day: {v}"
    );
    // Another number is not affected; the admin can log in (and could not unlock it).
    d.login(ADMIN).await;
}

/// A drawer opening queued while the clock ran a day ahead, its printer off, does not open the
/// drawer when the printer comes back after NTP set the clock back: its age is unknown, and
/// the drawer opens only within two minutes of being asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drawer_opening_queued_by_a_clock_that_ran_ahead_does_not_open_the_drawer_later() {
    let Some(lib) = libfaketime() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (config, addr) = printer_not_there_yet(dir.path());
    let d = start_faked(dir.path(), &config, lib, ("FAKETIME", "+1d"), &[]);
    let tm = d.login(MANAGER).await;
    let (s, q) = d
        .post(&tm, "/v1/devices/printer-1/drawer", &json!({}))
        .await;
    assert_eq!(s, 202, "{q}");
    d.terminate();

    // The clock is set back a day; the printer comes on hours later (by the clock) — here at
    // once.
    let printer = FakePrinter::start(Some(addr)).await;
    let d = Daemon::start_with(dir.path(), &config);
    let t = d.login(CASHIER).await;
    wait_state(&d, &t, "printer-1", "ready").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        printer.paper().drawer_kicks.is_empty(),
        "a drawer opening queued by a clock a day ahead opened the drawer"
    );
}

/// `storebox_uptime_seconds` counts the time the daemon has run, not how far the wall clock
/// moved: a clock stepped a day forward by NTP does not make it a day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uptime_does_not_jump_with_the_wall_clock() {
    let Some(lib) = libfaketime() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config(dir.path(), "");
    let offset = dir.path().join("faketime");
    std::fs::write(&offset, "+0\n").unwrap();
    let clock = ("FAKETIME_TIMESTAMP_FILE", offset.to_str().unwrap());
    let d = start_faked(dir.path(), &config, lib, clock, &[]);
    d.login(CASHIER).await;
    // NTP steps the clock a day forward.
    std::fs::write(&offset, "+1d\n").unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let metrics = d
        .client
        .get(d.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let uptime: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("storebox_uptime_seconds "))
        .unwrap_or_else(|| panic!("no uptime in {metrics}"))
        .trim()
        .parse()
        .unwrap();
    assert!(uptime < 600.0, "uptime {uptime} s after a clock step");
}

/// A coupon issued in a Berlin store three weeks before summer time begins is valid until a
/// time written in the store's offset on that day (+02:00), as every time storebox shows is,
/// not in the offset of the day it was issued: the midnight that ends its last day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_welcome_coupon_s_end_is_in_the_store_s_offset_on_its_day() {
    let Some(lib) = libfaketime() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("storebox.toml");
    std::fs::write(
        &config,
        common::config_text(&dir.path().join("data"), "")
            .replace("Asia/Shanghai", "Europe/Berlin")
            .replace(
                "[insight.automation]\nenabled = false",
                "[insight.automation]\nenabled = true\nrun_hour = 23",
            ),
    )
    .unwrap();
    let clock = ("FAKETIME", "@2026-03-10 09:00:00");
    let d = start_faked(dir.path(), &config, lib, clock, &[("TZ", "UTC")]);
    let t = d.login(CASHIER).await;
    let id = d.register(&t, "王芳", "13800138000", json!({})).await;
    let code = storebox::domain::automation::occasion_code(
        &storebox::domain::automation::Occasion::Welcome,
        &id,
    );
    let (s, c) = d.get(&t, &format!("/v1/coupons/{code}")).await;
    assert_eq!(s, 200, "{c}");
    let from = c["valid_from"].as_str().unwrap();
    let to = c["valid_to"].as_str().unwrap();
    // From the start of the day of its issue, whole days as its end.
    assert_eq!(from, "2026-03-10T00:00:00+01:00", "{c}");
    // Through the 30th day after, in summer time: until midnight on the store's clocks.
    assert_eq!(to, "2026-04-10T00:00:00+02:00", "{c}");
}

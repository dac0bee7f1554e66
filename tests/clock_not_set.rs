//! A box without a battery-backed clock boots at 1970-01-01 and sells until NTP sets the
//! clock; the morning automation waits for it. The daemon runs under libfaketime (`apt-get install faketime`); the test is
//! skipped where it is missing.

mod common;

use common::{CASHIER, libfaketime, start_faked};

/// The tills sell at 1970 (refusing would close the store while the uplink is down), but
/// `/healthz` and the log say the clock is not set: the sales are dated 1970-01-01 and the
/// manager will not find them under today.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_at_1970_is_reported_in_healthz_and_the_log() {
    let Some(lib) = libfaketime() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config(dir.path(), "");
    let at_1970 = ("FAKETIME", "@1970-01-01 00:00:30");
    let d = start_faked(dir.path(), &config, lib, at_1970, &[]);
    let t = d.login(CASHIER).await;
    d.sell_milk(&t, 1).await;
    let h = d.health().await;
    assert_eq!(h["status"], "degraded", "{h}");
    let problems = h["problems"].to_string();
    assert!(problems.contains("clock not set"), "{h}");
    assert!(
        d.log_text().contains("clock not set"),
        "no warning in the log:\n{}",
        d.log_text()
    );
    d.terminate();
}

/// The morning automation does not run on a clock of 1970: its coupons would be dated 1970
/// (expired once NTP sets the clock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_morning_automation_waits_for_the_clock() {
    let Some(lib) = libfaketime() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("storebox.toml");
    let text = common::config_text(&dir.path().join("data"), "").replace(
        "[insight.automation]\nenabled = false",
        "[insight.automation]\nenabled = true\nrun_hour = 0",
    );
    assert!(text.contains("run_hour = 0"), "{text}");
    std::fs::write(&config, text).unwrap();
    let at_1970 = ("FAKETIME", "@1970-01-01 00:00:30");
    let d = start_faked(dir.path(), &config, lib, at_1970, &[]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !d.log_text().contains("morning automation waits") {
        assert!(std::time::Instant::now() < deadline, "{}", d.log_text());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        !d.log_text().contains("morning automation done"),
        "{}",
        d.log_text()
    );
    d.terminate();
}

//! Work that goes on after the moment that asked for it: a report's read (or a campaign's, or
//! a scan of every member) after its request was dropped, and a cash receipt's drawer kick
//! after the clock that queued it was set back.

mod common;

use std::time::{Duration, Instant};

use common::devices::wait_state;
use common::hw::FakePrinter;
use common::{CASHIER, Daemon, MANAGER, store_today};
use serde_json::json;

/// A report whose request is dropped (a manager reloading a slow page, a dashboard's timeout)
/// keeps its turn until its read ends: the read goes on regardless, and the next report
/// waits for it instead of reading beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_report_keeps_its_turn_until_its_read_ends() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let tc = d.login(CASHIER).await;
    let tm = d.login(MANAGER).await;
    let today = store_today();
    let year = format!(
        "/v1/reports/products?from={}&to={today}",
        today - chrono::Duration::days(365)
    );
    let full = sell_until_slow(&d, &tc, &tm, &year).await;
    dropped_then_waited_for(&d, &tm, &year, full).await;
    d.terminate();
}

/// The segments page reads every member; asked for again and again (a dashboard refreshed,
/// several managers) each scan ran beside the others and beside the tills. It takes a
/// report's turn, held by its scan even when its request is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_of_every_member_takes_a_reports_turn() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config(dir.path(), "");
    let csv = dir.path().join("members.csv");
    // Members are added until a scan of them all takes long enough to be dropped half way
    // (how many depends on the machine).
    let mut added = 0u64;
    let mut full = Duration::ZERO;
    for _ in 0..8 {
        let rows: String = (added..added + 5_000)
            .map(|i| format!("会员{i},139{i:08}\n"))
            .collect();
        added += 5_000;
        std::fs::write(&csv, format!("姓名,手机号码\n{rows}")).unwrap();
        common::import_members(&config, &csv);
        let d = Daemon::start_with(dir.path(), &config);
        let tm = d.login(MANAGER).await;
        let t = Instant::now();
        let (s, v) = d.get(&tm, "/v1/segments").await;
        full = t.elapsed();
        assert_eq!(s, 200, "{v}");
        if full < Duration::from_millis(300) {
            d.terminate();
            continue;
        }
        dropped_then_waited_for(&d, &tm, "/v1/segments", full).await;
        d.terminate();
        return;
    }
    panic!("a scan of {added} members took only {full:?}: too quick to show anything");
}

/// Adds sales (of 40 lines each, 1,600 at a time) until `slow` takes long enough to be
/// dropped half way — how many depends on the machine; returns how long it then takes.
async fn sell_until_slow(d: &Daemon, tc: &str, tm: &str, slow: &str) -> Duration {
    let lines: Vec<_> = (0..40)
        .map(|i| {
            let sku = ["MILK", "RICE", "TEA"][i % 3];
            json!({"sku": sku, "qty": 1})
        })
        .collect();
    let sale = json!({"lines": lines, "payments": common::cash(10_000_000)});
    let mut full = Duration::ZERO;
    for _ in 0..8 {
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (client, url, tc, sale) = (
                d.client.clone(),
                d.url("/v1/sales"),
                tc.to_string(),
                sale.clone(),
            );
            tasks.push(tokio::spawn(async move {
                for _ in 0..200 {
                    let r = client
                        .post(&url)
                        .bearer_auth(&tc)
                        .header("Idempotency-Key", uuid::Uuid::now_v7().to_string())
                        .json(&sale)
                        .send()
                        .await
                        .unwrap();
                    let s = r.status().as_u16();
                    assert_eq!(s, 201, "{}", r.text().await.unwrap());
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let t = Instant::now();
        let (s, v) = d.get(tm, slow).await;
        full = t.elapsed();
        assert_eq!(s, 200, "{v}");
        if full >= Duration::from_millis(300) {
            return full;
        }
    }
    panic!("{slow} took only {full:?}: too quick to show anything");
}

/// Asks for `slow` (which takes `full` to answer) and drops the request early; a report of a
/// day without sales, with nothing to read, must then wait for the read the dropped request
/// started rather than read beside it.
async fn dropped_then_waited_for(d: &Daemon, tm: &str, slow: &str, full: Duration) {
    let impatient = reqwest::Client::builder()
        .timeout(full / 10)
        .build()
        .unwrap();
    let dropped = impatient.get(d.url(slow)).bearer_auth(tm).send().await;
    assert!(dropped.is_err(), "{slow} answered before it was dropped");
    let t = Instant::now();
    let (s, v) = d
        .get(tm, "/v1/reports/products?from=2001-01-01&to=2001-01-01")
        .await;
    let waited = t.elapsed();
    assert_eq!(s, 200, "{v}");
    assert!(
        waited >= full / 3,
        "a report read beside the dropped {slow} (answered in {waited:?}; it takes {full:?})"
    );
}

/// A cash sale made while the clock ran a day ahead, its printer off, prints when the printer
/// comes back after NTP set the clock back — but does not open the drawer: how long the
/// receipt waited is unknown, and nobody may be at the till (as a drawer opening asked for
/// alone, tests/clock_and_timezone.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cash_receipt_queued_by_a_clock_that_ran_ahead_does_not_open_the_drawer_later() {
    let Some(lib) = common::libfaketime() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (config, addr) = common::printer_not_there_yet(dir.path());
    let d = common::start_faked(dir.path(), &config, lib, ("FAKETIME", "+1d"), &[]);
    let tc = d.login(CASHIER).await;
    let (s, v) = d
        .sale(
            &tc,
            &json!({"lines": [{"sku": "MILK", "qty": 1}], "payments": common::cash(1290)}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    d.terminate();

    // The clock is set back a day; the printer comes on hours later (by the clock) — here at
    // once.
    let printer = FakePrinter::start(Some(addr)).await;
    let d = Daemon::start_with(dir.path(), &config);
    let t = d.login(CASHIER).await;
    wait_state(&d, &t, "printer-1", "ready").await;
    let mut printed = false;
    for _ in 0..30 {
        if printer.paper().cuts > 0 {
            printed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(printed, "the receipt was not printed:\n{}", d.log_text());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        printer.paper().drawer_kicks.is_empty(),
        "a cash receipt queued by a clock a day ahead opened the drawer when it printed"
    );
}

/// A campaign's figures read the sales of its period (up to a year, as a year's report does);
/// the campaigns page, refreshed or dropped by a dashboard's timeout, read them beside the
/// reports and the tills. The read takes a report's turn, held by the read when the request
/// is dropped (as the reports' and the segments' do: tests/work_left_running.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaigns_read_of_its_periods_sales_takes_a_reports_turn() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let tc = d.login(CASHIER).await;
    let tm = d.login(MANAGER).await;
    for i in 0..3 {
        d.register(
            &tc,
            &format!("客{i}"),
            &format!("1370000{i:04}"),
            json!({"tags": ["vip"]}),
        )
        .await;
    }
    let today = store_today();
    let (s, v) = d
        .post(
            &tm,
            "/v1/campaigns",
            &json!({"id": "YEAR", "name": "一年", "target": {"tag": "vip"},
                    "coupon_title": "满100减20",
                    "coupon": {"type": "amount_off", "threshold": 10000, "amount": 2000},
                    "starts": (today - chrono::Duration::days(365)).to_string(),
                    "ends": today.to_string(), "control_percent": 0}),
        )
        .await;
    assert_eq!(s, 201, "{v}");

    let slow = "/v1/campaigns/YEAR";
    let full = sell_until_slow(&d, &tc, &tm, slow).await;
    dropped_then_waited_for(&d, &tm, slow, full).await;
    d.terminate();
}

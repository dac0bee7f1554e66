//! The data directory taken away from under a running daemon: removed (`rm -rf` of the wrong
//! directory) or moved. SQLite goes on writing to the files it holds open, which no longer
//! have a name: a sale acknowledged then would be gone at the next start. Such sales must be
//! refused, the fault said (log, `/healthz`), the store sell again when the directory comes
//! back, and the daemon still stop on SIGTERM.

mod common;

use std::time::{Duration, Instant};

use common::mqtt::{Broker, Hq};
use common::*;
use serde_json::{Value, json};

fn milk() -> Value {
    json!({"lines": [{"sku": "MILK", "qty": 1}], "payments": cash(1290)})
}

/// SIGTERM, then waits up to `limit` for the daemon to exit; kills it after that. Returns
/// whether it exited by itself, and the log.
fn stop_within(mut d: Daemon, limit: Duration) -> (bool, String) {
    // SAFETY: kill(2) on the daemon's own pid with a signal number.
    unsafe {
        libc::kill(d.child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if d.child.try_wait().unwrap().is_some() {
            std::thread::sleep(Duration::from_millis(100));
            return (true, d.log_text());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = d.log_text();
    let _ = d.child.kill();
    let _ = d.child.wait();
    (false, log)
}

/// A sale refused because the journal is gone: `journal_unavailable` (nothing recorded), or
/// `journal_unconfirmed` when the journal's file went between the last check and the commit
/// (a retry with the same key tells).
fn assert_refused(s: u16, v: &Value) {
    assert!(
        s == 503 && ["journal_unavailable", "journal_unconfirmed"].contains(&code(v)),
        "{s}: {v}"
    );
}

/// Every sale answered `2xx` after the data directory was removed is there after a restart
/// on the same config — i.e. none is answered: they are refused with `503`, and `/healthz`
/// says why.
#[tokio::test]
async fn no_sale_is_acknowledged_once_the_data_directory_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    for _ in 0..3 {
        let (s, v) = d.sale(&t, &milk()).await;
        assert_eq!(s, 201, "{v}");
    }
    std::fs::remove_dir_all(dir.path().join("data")).unwrap();
    let mut acknowledged = Vec::new();
    for _ in 0..3 {
        let (s, v) = d.sale(&t, &milk()).await;
        if s / 100 == 2 {
            acknowledged.push(v["id"].as_str().unwrap().to_string());
        } else {
            assert_refused(s, &v);
        }
    }
    let h = d.health().await;
    let (stopped, log) = stop_within(d, Duration::from_secs(30));
    assert!(stopped, "no exit within 30 s of SIGTERM:\n{log}");
    let d = Daemon::start_with(dir.path(), &dir.path().join("storebox.toml"));
    let t = d.login(CASHIER).await;
    let mut lost = Vec::new();
    for id in &acknowledged {
        let (s, _) = d.get(&t, &format!("/v1/sales/{id}")).await;
        if s != 200 {
            lost.push(id.clone());
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} sales answered 201 after the data directory was removed are gone after the restart",
        lost.len(),
        acknowledged.len()
    );
    assert_eq!(h["status"], "failed", "{h}");
    assert_eq!(h["journal"]["writable"], false, "{h}");
    assert!(
        h["problems"].to_string().contains("no longer"),
        "the health check does not say the journal file is gone: {h}"
    );
    assert!(
        log.contains("no longer names the journal"),
        "nothing in the log says the journal's file is gone:\n{log}"
    );
}

/// A data directory moved away and back (an IT person's `mv`, undone): sales are refused while
/// it is away, and taken again once it is back, without a restart; the terminal's retry of a
/// refused sale with its key records it once; nothing answered is lost.
#[tokio::test]
async fn a_data_directory_moved_away_and_back_refuses_sales_meanwhile_and_sells_after() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let (s, v) = d.sale(&t, &milk()).await;
    assert_eq!(s, 201, "{v}");
    let data = dir.path().join("data");
    let aside = dir.path().join("data.moved");
    std::fs::rename(&data, &aside).unwrap();
    // Another directory where it was (a restore attempt, a new `storebox init`).
    std::fs::create_dir(&data).unwrap();
    let key = uuid::Uuid::now_v7().to_string();
    let post = |key: String| {
        let d = &d;
        let t = t.clone();
        async move {
            d.send(reqwest::Method::POST, &t, "/v1/sales", &milk(), Some(&key))
                .await
        }
    };
    for _ in 0..2 {
        let (s, v) = post(key.clone()).await;
        assert_refused(s, &v);
    }
    let h = d.health().await;
    assert_eq!(h["status"], "failed", "{h}");
    std::fs::remove_dir(&data).unwrap();
    std::fs::rename(&aside, &data).unwrap();
    let mut last = (0, Value::Null);
    for _ in 0..20 {
        last = post(key.clone()).await;
        if last.0 / 100 == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(last.0 == 200 || last.0 == 201, "{}", last.1);
    let id = last.1["id"].as_str().unwrap().to_string();
    // `/healthz` follows within the ledger's probe (once a second).
    let mut h = Value::Null;
    for _ in 0..20 {
        h = d.health().await;
        if h["status"] == "ok" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(h["status"], "ok", "{h}");
    let (stopped, log) = stop_within(d, Duration::from_secs(30));
    assert!(stopped, "no exit within 30 s of SIGTERM:\n{log}");
    let d = Daemon::start_with(dir.path(), &dir.path().join("storebox.toml"));
    let t = d.login(CASHIER).await;
    let (s, v) = d.get(&t, &format!("/v1/sales/{id}")).await;
    assert_eq!(s, 200, "{v}");
    let sales = d.sales_on(&t, &store_today().to_string()).await;
    assert_eq!(sales.len(), 2, "{sales:?}");
}

/// A daemon linked to a broker that went away, whose data directory was then removed, stops
/// on SIGTERM within the stop timeout systemd gives it (60 s; in-flight work 20 s at most).
#[tokio::test]
async fn a_daemon_whose_broker_and_data_directory_are_gone_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path());
    let hq = Hq::connect(broker.port, "sh-001").await;
    let d = Daemon::start_in(dir.path(), &broker.uplink_config(""));
    hq.wait_online().await;
    let t = d.login(CASHIER).await;
    let (s, v) = d.sale(&t, &milk()).await;
    assert_eq!(s, 201, "{v}");
    drop(hq);
    broker.stop();
    tokio::time::sleep(Duration::from_secs(1)).await;
    std::fs::remove_dir_all(dir.path().join("data")).unwrap();
    let (s, v) = d.sale(&t, &milk()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (stopped, log) = stop_within(d, Duration::from_secs(25));
    assert!(stopped, "no exit within 25 s of SIGTERM:\n{log}");
    assert!(log.contains("stopped"), "{log}");
    assert_refused(s, &v);
}

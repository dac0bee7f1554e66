//! The outbox alarm over a long outage: HQ hears of it once per outage (docs/uplink.md: "raised
//! once per crossing"), also when the box is restarted — switched off at night, say — while
//! the link is still down; and once more for the next outage. Each outage's end is told once
//! too (`outbox_ok`), also when the box was restarted during it.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::mqtt::{Broker, Hq, wait_for};
use common::{CASHIER, Daemon};
use serde_json::Value;

async fn sell(d: &Daemon, n: usize) {
    let t = d.login(CASHIER).await;
    d.sell_milk(&t, n).await;
}

/// The ids of the alerts with `code` HQ has (duplicates of one event counted once).
fn alerts(hq: &Hq, code: &str) -> HashSet<Value> {
    hq.events()
        .iter()
        .filter(|e| e["kind"] == "device.alert" && e["data"]["code"] == code)
        .map(|e| e["id"].clone())
        .collect()
}

/// The ids of the `outbox_backlog` alerts HQ has.
fn alarms(hq: &Hq) -> HashSet<Value> {
    alerts(hq, "outbox_backlog")
}

/// Whether `/healthz` lists the alarm as a problem, and whether `/metrics` has it at 1.
async fn alarm_shown(d: &Daemon) -> (bool, bool) {
    let h = d.health().await;
    let listed = h["problems"].as_array().is_some_and(|p| {
        p.iter().any(|p| {
            p.as_str()
                .is_some_and(|p| p.starts_with("outbox alarm raised"))
        })
    });
    let metrics = d.text("", "/metrics").await;
    let gauge = metrics.lines().any(|l| l == "storebox_outbox_alarm 1");
    assert!(
        gauge || metrics.lines().any(|l| l == "storebox_outbox_alarm 0"),
        "{metrics}"
    );
    (listed, gauge)
}

/// Waits until HQ has `n` `outbox_ok` alerts (the watch looks every 5 s), then a little more
/// for any extra one.
async fn ended(hq: &Hq, n: usize) {
    wait_for(30, "the outage's end at HQ", || {
        alerts(hq, "outbox_ok").len() >= n
    })
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(alerts(hq, "outbox_ok").len(), n, "outage ends told");
}

async fn drained(d: &Daemon, hq: &Hq) {
    let t = d.login(CASHIER).await;
    let mut backlog = Value::Null;
    for _ in 0..300 {
        backlog = d.get(&t, "/v1/uplink").await.1["backlog"].clone();
        if backlog == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(backlog, 0, "the backlog never drained");
    let last = d.health().await["journal"]["last_seq"].as_u64().unwrap();
    wait_for(15, "every event at HQ", || {
        let have: HashSet<u64> = hq
            .events()
            .iter()
            .filter_map(|e| e["seq"].as_u64())
            .collect();
        (1..=last).all(|s| have.contains(&s))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backlog_alarm_is_raised_once_per_outage_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path());
    let hq = Hq::connect(broker.port, "sh-001").await;
    let d = Daemon::start_in(dir.path(), &broker.uplink_config("outbox_alarm = 20\n"));
    let config = d.config.clone();
    hq.wait_online().await;

    // The link goes down; the store sells past the alarm; the watch (every 5 s) raises it.
    broker.stop();
    sell(&d, 30).await;
    d.wait_log("outbox backlog above its alarm size", 1);
    // The box is switched off and on again, twice, while the link is still down.
    d.terminate();
    let d = Daemon::start_with(dir.path(), &config);
    sell(&d, 5).await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    d.terminate();
    let d = Daemon::start_with(dir.path(), &config);
    tokio::time::sleep(Duration::from_secs(7)).await;
    // The store's own figures say the alarm is raised, after the restart too.
    assert_eq!(alarm_shown(&d).await, (true, true));

    broker.start_again();
    drained(&d, &hq).await;
    assert_eq!(
        alarms(&hq).len(),
        1,
        "one outage, announced {} times",
        alarms(&hq).len()
    );
    ended(&hq, 1).await;
    assert_eq!(alarm_shown(&d).await, (false, false));

    // The next outage, after a while online, is announced again.
    tokio::time::sleep(Duration::from_secs(6)).await;
    broker.stop();
    sell(&d, 30).await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    broker.start_again();
    drained(&d, &hq).await;
    assert_eq!(alarms(&hq).len(), 2, "the second outage was not announced");
    ended(&hq, 2).await;
    d.terminate();
}

//! The HQ link when things go wrong, against a real Mosquitto: a broker that hangs and is
//! killed while an unsendable event waits, a downlink message that forces a session reset, a
//! backlog drained after an outage.

mod common;

use std::time::Duration;

use common::mqtt::{Broker, Hq, big_products, big_sale_lines, wait_for};
use common::{CASHIER, Daemon, cash};
use serde_json::{Value, json};

fn too_large_alerts(hq: &Hq, seq: &Value) -> Vec<Value> {
    hq.events()
        .into_iter()
        .filter(|e| {
            e["kind"] == "device.alert"
                && e["data"]["code"] == "event_too_large"
                && e["data"]["detail"]["seq"] == *seq
        })
        .collect()
}

/// An event too big for the broker, passed while the event before it was still waiting for
/// its PUBACK, and the connection lost: the new connection sends from the older event again
/// and must not report the big one a second time (a second `device.alert`, another id).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsendable_event_is_reported_once_across_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path());
    let hq = Hq::connect(broker.port, "sh-001").await;
    let products = big_products();
    let d = Daemon::start_in(
        dir.path(),
        &format!(
            "{products}{}",
            broker.uplink_config("max_packet_bytes = 4096")
        ),
    );
    let t = d.login(CASHIER).await;
    wait_for(10, "the link online", || {
        hq.last_status().is_some_and(|s| s["online"] == true)
    })
    .await;
    // The broker hangs: the small sale gets no PUBACK; the big one is passed and reported.
    unsafe { libc::kill(broker.pid(), libc::SIGSTOP) };
    let (s, _) = d
        .sale(
            &t,
            &json!({"lines": [{"sku": "MILK", "qty": 1}], "payments": cash(1290)}),
        )
        .await;
    assert_eq!(s, 201);
    let lines = big_sale_lines();
    let (s, big) = d
        .sale(&t, &json!({"lines": lines, "payments": cash(4000)}))
        .await;
    assert_eq!(s, 201);
    tokio::time::sleep(Duration::from_millis(800)).await;
    broker.kill9();
    broker.start_again();
    wait_for(15, "the alert at HQ", || {
        !too_large_alerts(&hq, &big["seq"]).is_empty()
    })
    .await;
    // Long enough for the link to have passed the big event again.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let alerts = too_large_alerts(&hq, &big["seq"]);
    let ids: std::collections::HashSet<&Value> = alerts.iter().map(|a| &a["id"]).collect();
    assert_eq!(
        ids.len(),
        1,
        "one event_too_large for seq {}, got {}: {alerts:?}",
        big["seq"],
        ids.len()
    );
}

/// A downlink message above the client's limit breaks two connections; the store drops its
/// broker session and asks HQ for a snapshot at once, and its session is persistent again:
/// what HQ sends while the store is down still arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_reset_asks_for_a_sync_at_once_and_keeps_a_persistent_session() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let hq = Hq::connect(broker.port, "sh-001").await;
    // The client takes at most max(4 × 1 KiB, 1 MiB).
    let cfg = broker.uplink_config("max_message_bytes = 1024");
    let d = Daemon::start_in(dir.path(), &cfg);
    wait_for(10, "the link online", || {
        hq.last_status().is_some_and(|s| s["online"] == true)
    })
    .await;
    hq.publish_raw("storebox/stores/sh-001/hq/products", vec![b'a'; 1_200_000])
        .await;
    wait_for(10, "sync.requested at HQ", || {
        hq.events().iter().any(|e| {
            e["kind"] == "sync.requested" && e["data"]["reason"] == "downlink_session_reset"
        })
    })
    .await;
    d.kill9();
    hq.publish(
        "storebox/stores/sh-001/hq/products",
        json!({"id": "m1", "kind": "products",
               "items": [{"sku": "NEWP", "name": "新品", "price": 500, "version": 1}]}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let d = Daemon::start_in(dir.path(), &cfg);
    let t = d.login(CASHIER).await;
    let mut found = false;
    for _ in 0..100 {
        if d.get(&t, "/v1/products/NEWP").await.0 == 200 {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        found,
        "the product HQ sent while the store was down never arrived"
    );
}

/// After an outage the status announces the backlog; once it has drained HQ must not keep
/// seeing it for a whole status interval (60 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_shows_the_backlog_gone_once_drained() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path());
    let hq = Hq::connect(broker.port, "sh-001").await;
    let cfg = broker
        .uplink_config("")
        .replace("status_interval_secs = 5", "status_interval_secs = 60");
    let d = Daemon::start_in(dir.path(), &cfg);
    let t = d.login(CASHIER).await;
    wait_for(10, "the link online", || {
        hq.last_status().is_some_and(|s| s["online"] == true)
    })
    .await;
    broker.stop();
    for _ in 0..20 {
        let (s, _) = d
            .sale(
                &t,
                &json!({"lines": [{"sku": "MILK", "qty": 1}], "payments": cash(1290)}),
            )
            .await;
        assert_eq!(s, 201);
    }
    broker.start_again();
    wait_for(15, "the backlog drained", || {
        hq.events()
            .iter()
            .filter(|e| e["kind"] == "sale.recorded")
            .count()
            >= 20
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, u) = d.get(&t, "/v1/uplink").await;
    assert_eq!(u["backlog"], 0, "{u}");
    let status = hq.last_status().unwrap();
    assert_eq!(status["backlog"], 0, "stale retained status: {status}");
}

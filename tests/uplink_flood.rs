//! HQ's messages arriving faster than the store applies them, from a broker that does not
//! limit what it sends unacknowledged (Mosquitto's `max_inflight_messages 0`): two thousand
//! queued for a store that was off. The link must keep reading the connection meanwhile —
//! acknowledgements, pings, PUBACKs for the store's own events — and never wait for the
//! applier in a way that waits on itself.

mod common;

use std::time::Duration;

use common::mqtt::{Broker, Hq, wait_for};
use common::{CASHIER, Daemon};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_queued_hq_messages_is_applied_and_the_store_keeps_sending() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_with(dir.path(), "max_inflight_messages 0\n");
    let hq = Hq::connect(broker.port, "sh-001").await;
    let d = Daemon::start_in(dir.path(), &broker.uplink_config(""));
    let config = d.config.clone();
    hq.wait_online().await;
    // The store's session (and its subscriptions) stays at the broker while it is off.
    d.terminate();
    let n = 2_000;
    for i in 0..n {
        hq.publish(
            "storebox/stores/sh-001/hq/products",
            json!({"id": format!("m-{i}"), "kind": "products", "version": 1, "items": [
                {"sku": format!("FLOOD-{i:05}"), "name": format!("商品 {i}"), "price": 100 + i,
                 "version": 1}]}),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    let d = Daemon::start_with(dir.path(), &config);
    let t = d.login(CASHIER).await;
    let last = format!("/v1/products/FLOOD-{:05}", n - 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (s, _) = d.get(&t, &last).await;
        if s == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "HQ's queued messages were not all applied in two minutes"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for i in [0, n / 2, n - 2] {
        let (s, v) = d.get(&t, &format!("/v1/products/FLOOD-{i:05}")).await;
        assert_eq!(s, 200, "FLOOD-{i:05}: {v}");
    }
    // And the store's own events still reach HQ.
    let (s, sale) = d
        .sale(
            &t,
            &json!({"lines": [{"sku": "FLOOD-00007", "qty": 1}], "payments": common::cash(1_000)}),
        )
        .await;
    assert_eq!(s, 201, "{sale}");
    wait_for(30, "the sale at HQ", || {
        hq.events()
            .iter()
            .any(|e| e["kind"] == "sale.recorded" && e["data"]["id"] == sale["id"])
    })
    .await;
    d.terminate();
}

//! `storebox restore --hq-lost-events`: HQ lacks events the broker had acknowledged (a broker
//! that lost its queue), and the restored store is to send them again.

mod common;

use std::time::Duration;

use common::mqtt::{Broker, Hq, wait_for};
use common::*;
use serde_json::json;

/// The IT person restores with `--hq-last-seq 0 --hq-lost-events` (HQ's console shows nothing
/// of the store): the restore took the number, said the store would send those events again,
/// and the restored store sent none of them — the outbox position stayed where the backup had
/// it, so HQ never got the sales the broker had lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_with_hq_lost_events_sends_them_again() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let hq = Hq::connect(broker.port, "sh-001").await;
    let d = Daemon::start_in(dir.path(), &broker.uplink_config(""));
    hq.wait_online().await;
    let t = d.login(CASHIER).await;
    let mut sales = Vec::new();
    for _ in 0..3 {
        let (s, v) = d
            .sale(
                &t,
                &json!({"lines": [{"sku": "MILK", "qty": 1}], "payments": cash(1290)}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        sales.push(v["id"].clone());
    }
    let last = d.health().await["journal"]["last_seq"].as_u64().unwrap();
    wait_for(10, "HQ has the sales", || {
        hq.events().iter().any(|e| e["seq"].as_u64() == Some(last))
    })
    .await;
    // The acknowledged position is stored every 200 ms.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let backup = dir.path().join("store.sbk");
    let out = storebox(&[
        "backup",
        "--config",
        d.config.to_str().unwrap(),
        backup.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    d.kill9();

    let (dir2, config2) = new_box(
        &dir.path().join("data/store.key"),
        &broker.uplink_config(""),
    );
    let out = storebox(&[
        "restore",
        "--config",
        config2.to_str().unwrap(),
        "--hq-last-seq",
        "0",
        "--hq-lost-events",
        backup.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let before = hq.events().len();
    let d = Daemon::start_with(dir2.path(), &config2);
    let t = d.login(CASHIER).await;
    let (s, _) = d
        .sale(
            &t,
            &json!({"lines": [{"sku": "MILK", "qty": 1}], "payments": cash(1290)}),
        )
        .await;
    assert_eq!(s, 201);
    let after_seq = d.health().await["journal"]["last_seq"].as_u64().unwrap();
    wait_for(10, "the restored store's new sale at HQ", || {
        hq.events()[before..]
            .iter()
            .any(|e| e["seq"].as_u64() == Some(after_seq))
    })
    .await;
    let again: Vec<_> = hq.events()[before..]
        .iter()
        .filter(|e| e["kind"] == "sale.recorded" && sales.contains(&e["data"]["id"]))
        .map(|e| e["seq"].clone())
        .collect();
    assert_eq!(
        again.len(),
        sales.len(),
        "the events HQ lacks were not sent again after a restore with --hq-lost-events: {again:?}"
    );
    d.terminate();
}

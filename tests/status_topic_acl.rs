//! A broker whose ACL lets a store publish its status but not read it back (the usual rule:
//! a store writes its events and status, reads HQ's topics).

mod common;

use std::time::Duration;

use common::mqtt::{Broker, Hq, wait_for};
use common::*;
use serde_json::json;

/// The link subscribes to the store's status topic to see another box under its id: a broker
/// that does not let it read the topic leaves it unseen, and the link, its events and its
/// status go on as before (no reconnection, no error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_may_not_read_its_status_keeps_its_link() {
    let dir = tempfile::tempdir().unwrap();
    let acl = dir.path().join("acl");
    std::fs::write(
        &acl,
        "topic readwrite storebox/#\n\n\
         user store-sh-001\n\
         topic write storebox/stores/sh-001/status\n\
         topic write storebox/stores/sh-001/events/#\n\
         topic read storebox/hq/#\n\
         topic read storebox/stores/sh-001/hq/#\n",
    )
    .unwrap();
    let broker = Broker::start_with(dir.path(), &format!("acl_file {}", acl.display()));
    let hq = Hq::connect(broker.port, "sh-001").await;
    let d = Daemon::start_in(
        dir.path(),
        &broker.uplink_config("username = \"store-sh-001\"\npassword = \"pw\"\n"),
    );
    hq.wait_online().await;
    let t = d.login(CASHIER).await;
    let (s, sale) = d
        .sale(
            &t,
            &json!({"lines": [{"sku": "MILK", "qty": 1}], "payments": cash(1290)}),
        )
        .await;
    assert_eq!(s, 201, "{sale}");
    wait_for(10, "the sale at HQ", || {
        hq.events().iter().any(|e| e["data"]["id"] == sale["id"])
    })
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let connects = d.log_text().matches("uplink connected").count();
    assert_eq!(connects, 1, "{}", d.log_text());
    d.terminate();
}

//! Backups and restores through the real binary: what a restored store knows of HQ's master
//! data (tests/at_rest.rs: personal data at rest, a backup under load and its restore).

mod common;

use std::time::Duration;

use common::mqtt::{Hq, store_with_hq, wait_for};
use common::*;
use serde_json::{Value, json};

async fn store_listening(hq: &Hq) {
    hq.wait_subscribed().await;
}

/// HQ's erasure of a member, as its `members` message carries it.
fn erasure(id: &str) -> Value {
    json!({"id": format!("erase-{id}"), "kind": "members", "version": 1000,
           "items": [{"id": id, "version": 1000, "erased": true}]})
}

/// HQ's master data lives in the cache alone, and the broker forgets a message once the store
/// took it: what HQ sent after the backup (here, the erasure of a member) is in no backup. A
/// restored store must ask HQ for all of it again; before, it never did, and showed the erased
/// member's name and phone for good (and sold at the old prices, let in removed staff).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_store_asks_hq_again_for_what_it_sent_since_the_backup() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, hq, d) = store_with_hq(dir.path()).await;
    store_listening(&hq).await;
    let t = d.login(MANAGER).await;
    let id = d.register(&t, "张三丰", "13912345678", json!({})).await;

    let file = dir.path().join("store.sbk");
    let config = d.config.to_str().unwrap().to_string();
    let out = storebox(&["backup", "--config", &config, file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // After the backup, HQ erases the member (asked by the customer at another store).
    hq.publish("storebox/hq/members", erasure(&id)).await;
    for _ in 0..100 {
        if d.get(&t, &format!("/v1/members/{id}")).await.1["erased"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, m) = d.get(&t, &format!("/v1/members/{id}")).await;
    assert_eq!(m["name"], Value::Null, "{m}");
    let last = d.health().await["journal"]["last_seq"].as_u64().unwrap();
    wait_for(10, "HQ has every event of the lost box", || {
        hq.events().iter().any(|e| e["seq"].as_u64() == Some(last))
    })
    .await;
    d.terminate();

    // The box is lost; a new one is restored from the backup, HQ's last seq given.
    let (dir2, config2) = new_box(
        &dir.path().join("data/store.key"),
        &broker.uplink_config(""),
    );
    restore_ok(&config2, last, &file);
    let d = Daemon::start_with(dir2.path(), &config2);
    let t = d.login(MANAGER).await;
    let asked = async {
        for _ in 0..100 {
            if hq
                .events()
                .iter()
                .any(|e| e["kind"] == "sync.requested" && e["seq"].as_u64() > Some(last))
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
    .await;
    let (_, m) = d.get(&t, &format!("/v1/members/{id}")).await;
    assert!(
        asked,
        "the restored store never asked HQ for its master data; the member HQ erased reads {m}"
    );
    let request = hq
        .events()
        .into_iter()
        .find(|e| e["kind"] == "sync.requested" && e["seq"].as_u64() > Some(last))
        .unwrap();
    assert_eq!(request["data"]["reason"], "restored", "{request}");

    // HQ answers with its snapshot, which holds the erasure.
    hq.publish("storebox/hq/members", erasure(&id)).await;
    for _ in 0..100 {
        if d.get(&t, &format!("/v1/members/{id}")).await.1["erased"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, m) = d.get(&t, &format!("/v1/members/{id}")).await;
    assert_eq!(
        (&m["name"], &m["phone"]),
        (&Value::Null, &Value::Null),
        "{m}"
    );
    d.terminate();
}

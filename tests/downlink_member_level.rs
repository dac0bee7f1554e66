//! HQ's member records carry the member's level as the store's own events give it to HQ.

mod common;

use std::time::Duration;

use common::MANAGER;
use common::mqtt::store_with_hq;
use serde_json::{Value, json};

/// Every `level.changed`, `sale.recorded` (`member.level`) and the members API give a level as
/// `{"code", "name"}`: HQ sending a member back with the level in that shape has it applied,
/// as with the bare code, instead of the member being refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hq_member_with_the_level_as_the_store_sends_it_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, hq, d) = store_with_hq(dir.path()).await;
    hq.wait_online().await;
    let tm = d.login(MANAGER).await;
    hq.publish(
        "storebox/stores/sh-001/hq/members",
        json!({"id": "m-1", "kind": "members", "version": 1, "items": [
            {"id": "hq-lv-1", "name": "吴敏", "phone": "13788880001", "version": 1,
             "level": {"code": "silver", "name": "银卡会员"},
             "counters": {"sh-002": {"visits": 1, "months": {"2026-10": {"spend": 320000}}}}},
            {"id": "hq-lv-2", "name": "吴二", "phone": "13788880002", "version": 1,
             "level": "silver",
             "counters": {"sh-002": {"visits": 1, "months": {"2026-10": {"spend": 320000}}}}}]}),
    )
    .await;
    let mut found: Vec<Value> = Vec::new();
    for _ in 0..200 {
        found.clear();
        for id in ["hq-lv-1", "hq-lv-2"] {
            let (s, m) = d.get(&tm, &format!("/v1/members/{id}")).await;
            if s == 200 {
                found.push(m);
            }
        }
        if found.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let rejected: Vec<Value> = hq
        .events()
        .into_iter()
        .filter(|e| e["data"]["code"] == "downlink_items_rejected")
        .collect();
    assert!(rejected.is_empty(), "HQ's members refused: {rejected:?}");
    assert_eq!(found.len(), 2, "both members applied: {found:?}");
    for m in &found {
        assert_eq!(m["level"]["code"], "silver", "{m}");
    }
    d.terminate();
}

//! Personal data after an erasure, through the real binary: every route that shows a member or
//! what they said, and the log at the most detailed level.

mod common;

use common::*;
use serde_json::{Value, json};

const NAME: &str = "上官婉儿";
const PHONE: &str = "13955556666";
const CARD: &str = "VIP77001234";

/// A manager's feedback list after the erasure of the member whose sale a complaint was
/// recorded against (by its `sale_id`, as a till records a complaint about a receipt): the
/// complaint's text (what the customer said, here with their phone) is gone with them, as a
/// complaint recorded with their `member_id` is.
#[tokio::test]
async fn a_complaint_about_an_erased_member_s_sale_loses_its_text() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let id = d.register(&t, NAME, PHONE, json!({"card_no": CARD})).await;
    let (s, v) = d
        .sale(
            &t,
            &json!({"member_id": id, "lines": [{"sku": "MILK", "qty": 1}], "payments": cash(1290)}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let sale_id = v["sale"]["id"]
        .as_str()
        .or(v["id"].as_str())
        .unwrap()
        .to_string();
    let said = format!("牛奶变质，{NAME}，请回电 {PHONE}");
    let (s, v) = d
        .post(
            &t,
            "/v1/feedback",
            &json!({"rating": 1, "text": said, "category": "product", "sale_id": sale_id}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let tm = d.login(MANAGER).await;
    let fid = v["id"].as_str().unwrap().to_string();
    let (s, v) = d
        .send(
            reqwest::Method::PATCH,
            &tm,
            &format!("/v1/feedback/{fid}"),
            &json!({"status": "in_progress", "note": format!("已致电 {PHONE}")}),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");

    let (s, _) = d.erase(&tm, &id).await;
    assert_eq!(s, 204);

    let (s, v) = d.get(&tm, "/v1/feedback?status=all").await;
    assert_eq!(s, 200, "{v}");
    let shown = v.to_string();
    assert!(
        !shown.contains(PHONE) && !shown.contains(NAME),
        "the erased member's words are still in the feedback list: {v}"
    );
    // The item itself stays (its rating counts in the staff report).
    assert_eq!(v["items"].as_array().map(Vec::len), Some(1), "{v}");

    // And after a restart that rebuilds the cache from the journal.
    d.terminate();
    for f in ["cache.sqlite3", "cache.sqlite3-wal", "cache.sqlite3-shm"] {
        let _ = std::fs::remove_file(dir.path().join("data").join(f));
    }
    let d = Daemon::start_in(dir.path(), "");
    let tm = d.login(MANAGER).await;
    let (_, v) = d.get(&tm, "/v1/feedback?status=all").await;
    let shown = v.to_string();
    assert!(
        !shown.contains(PHONE) && !shown.contains(NAME),
        "back after a rebuild: {v}"
    );
}

/// At the most detailed log level (`RUST_LOG=trace`, which an IT person sets to chase a
/// problem), a member's registration, lookups, edit, sale, refusals and erasure leave their
/// name, phone and card out of the log and out of `/metrics`; a refusal names no other member.
#[tokio::test]
async fn no_personal_data_in_a_trace_log_or_the_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("storebox.toml");
    std::fs::write(&config, config_text(&dir.path().join("data"), "")).unwrap();
    let d = Daemon::start_env(dir.path(), &config, &[("RUST_LOG", "trace")]);
    let t = d.login(CASHIER).await;
    let id = d
        .register(
            &t,
            NAME,
            PHONE,
            json!({"card_no": CARD, "birthday": "1991-03-04"}),
        )
        .await;
    for q in [
        format!("phone={PHONE}"),
        format!("card={CARD}"),
        "phone_tail=6666".to_string(),
        format!("q={NAME}"),
    ] {
        let (s, v) = d.get(&t, &format!("/v1/members?{q}")).await;
        assert_eq!(s, 200, "{v}");
        assert!(
            !v.to_string().contains(PHONE),
            "a cashier sees the phone: {v}"
        );
    }
    // Refusals: the phone sent as a number, a phone and a card already taken.
    let (s, v) = d
        .post(
            &t,
            "/v1/members",
            &json!({"name": "某人", "phone": 13955556666u64}),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = d
        .post(&t, "/v1/members", &json!({"name": "某人", "phone": PHONE}))
        .await;
    assert_eq!(s, 409, "{v}");
    assert!(!v.to_string().contains(NAME), "{v}");
    let (s, v) = d
        .post(
            &t,
            "/v1/members",
            &json!({"name": "某人", "phone": "13900001111", "card_no": CARD}),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    assert!(!v.to_string().contains(NAME), "{v}");
    let (s, v) = d
        .sale(
            &t,
            &json!({"member_id": id, "lines": [{"sku": "TEA", "qty": 1}], "payments": cash(25000)}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let tm = d.login(MANAGER).await;
    for path in [
        "/v1/members/export",
        "/v1/members/at-risk?format=csv",
        "/v1/segments?segment=new&format=csv",
    ] {
        let _ = d.text(&tm, path).await;
    }
    let (s, _) = d.erase(&tm, &id).await;
    assert_eq!(s, 204);
    let metrics = d
        .client
        .get(d.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let log = d.log_text();
    d.terminate();
    for needle in [NAME, PHONE, CARD] {
        assert!(!metrics.contains(needle), "{needle:?} in /metrics");
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(needle)).take(5).collect();
        assert!(
            lines.is_empty(),
            "{needle:?} in the trace log:\n{}",
            lines.join("\n")
        );
    }
}

/// HQ erases a member with its whole record, as HQ holds it: tags longer than this store takes
/// from a terminal. The erasure applies all the same (the member's name and phone are gone
/// here, and no tag stays), instead of being refused as an invalid item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hq_s_erasure_applies_whatever_else_its_record_holds() {
    use common::mqtt::store_with_hq;
    let dir = tempfile::tempdir().unwrap();
    let (_broker, hq, d) = store_with_hq(dir.path()).await;
    hq.wait_online().await;
    let tm = d.login(MANAGER).await;
    let id = d
        .register(&tm, NAME, PHONE, json!({"card_no": CARD, "tags": ["孕妇"]}))
        .await;
    hq.publish(
        "storebox/hq/members",
        json!({"id": "erase-1", "kind": "members", "version": 1000, "items": [{
            "id": id, "version": 1000, "erased": true,
            "tags": ["孕妇", "会员日活动报名：2026年第四季度浦东新区陆家嘴正大广场旗舰店专场"],
        }]}),
    )
    .await;
    let mut m = Value::Null;
    for _ in 0..50 {
        m = d.get(&tm, &format!("/v1/members/{id}")).await.1;
        if m["erased"] == true {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        (&m["erased"], &m["name"], &m["phone"], &m["tags"]),
        (&json!(true), &Value::Null, &Value::Null, &json!([])),
        "HQ's erasure was not applied: {m}"
    );
    let (s, v) = d.get(&tm, &format!("/v1/members?phone={PHONE}")).await;
    assert_eq!(
        (s, v["members"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{v}"
    );
}

//! The HTTP API against its contract: the event stream lives no longer than its session,
//! every time in the API (and in HQ's status) carries the store's offset, a role too low is told so before its
//! query or path is parsed, an unknown sale is 404 on a reprint, and a member edit reads
//! `null` as removal.

mod common;

use std::time::Duration;

use common::devices::wait_state;
use common::hw::{Events, Pty, point};
use common::mqtt::{Broker, Hq, wait_for};
use common::{ADMIN, CASHIER, Daemon, MANAGER, cash, code};
use serde_json::{Value, json};

/// The store (Asia/Shanghai) is at +08:00 all year.
fn store_offset(t: &Value) -> bool {
    t.as_str().is_some_and(|s| s.ends_with("+08:00"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_ends_with_its_session_and_its_times_are_store_local() {
    let dir = tempfile::tempdir().unwrap();
    let mut reader = Pty::open();
    point(&dir.path().join("reader"), &reader.slave);
    let extra = format!(
        "[[devices]]\nid = \"reader-1\"\nkind = \"card_reader\"\nterminal = \"pos-1\"\n\
         transport = \"serial\"\npath = \"{}\"\nsuffix = \"cr\"\n",
        dir.path().join("reader").display()
    );
    let d = Daemon::start_in(dir.path(), &extra);
    let t = d.login(CASHIER).await;
    let dev = wait_state(&d, &t, "reader-1", "ready").await;
    let m = d
        .register(&t, "张三", "13912345678", json!({"card_no": "CARD1234"}))
        .await;

    let events = Events::open(&d.client, &d.base, &t).await;
    reader.send(b"CARD1234\r");
    let card = events.wait("card", 5, |v| v["card_no"] == "CARD1234").await;
    assert_eq!(card["member"]["id"], json!(m));
    assert_eq!(card["member"]["phone"], "139****5678");

    // Logged out: the token is refused, and the stream it opened hears nothing more.
    let r = d
        .client
        .delete(d.url("/v1/sessions/current"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(d.get(&t, "/v1/devices").await.0, 401);
    reader.send(b"CARD1234\r");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let cards = events.of("card").len();
    assert_eq!(cards, 1, "a logged-out session still receives card reads");
    assert!(store_offset(&dev["since"]), "devices: {dev}");
    assert!(store_offset(&card["at"]), "event: {card}");
    d.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uplink_and_health_times_are_store_local() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let d = Daemon::start_in(dir.path(), &broker.uplink_config(""));
    let t = d.login(CASHIER).await;
    let (s, _) = d
        .sale(
            &t,
            &json!({"lines": [{"sku": "TEA", "qty": 1}], "payments": cash(25000)}),
        )
        .await;
    assert_eq!(s, 201);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let up = loop {
        let (_, up) = d.get(&t, "/v1/uplink").await;
        if up["backlog"] == 0 && !up["last_ack_at"].is_null() {
            break up;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never acknowledged: {up}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(store_offset(&up["last_ack_at"]), "uplink: {up}");
    let health = d.health().await;
    assert!(store_offset(&health["started_at"]), "healthz: {health}");
    assert!(
        store_offset(&health["uplink"]["last_ack_at"]),
        "healthz: {health}"
    );
    // The audit log's entries (the login just made one) and HQ's retained status too.
    let admin = d.login(ADMIN).await;
    let (_, audit) = d.get(&admin, "/v1/audit").await;
    let entries = audit["entries"].as_array().expect("entries");
    assert!(!entries.is_empty(), "{audit}");
    assert!(entries.iter().all(|e| store_offset(&e["at"])), "{audit}");
    let hq = Hq::connect(broker.port, "sh-001").await;
    wait_for(10, "the retained status", || hq.last_status().is_some()).await;
    let status = hq.last_status().unwrap_or_default();
    assert!(store_offset(&status["started_at"]), "status: {status}");
    d.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_too_low_is_403_before_its_query_or_path_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let cashier = d.login(CASHIER).await;
    let manager = d.login(MANAGER).await;
    let admin = d.login(ADMIN).await;
    let cases: [(&str, &str, &str); 12] = [
        ("GET", "/v1/reports/sales?from=bad", "cashier"),
        ("GET", "/v1/reports/products?limit=x", "cashier"),
        ("GET", "/v1/reports/associations?min_count=x", "cashier"),
        ("GET", "/v1/reports/staff?from=x", "cashier"),
        ("GET", "/v1/reports/stock?x=1", "cashier"),
        ("GET", "/v1/segments?bogus=1", "cashier"),
        ("GET", "/v1/members/at-risk?bogus=1", "cashier"),
        ("GET", "/v1/feedback?bogus=1", "cashier"),
        ("DELETE", "/v1/members/%FF", "cashier"),
        ("GET", "/v1/staff/%FF", "cashier"),
        ("GET", "/v1/audit?after=x", "manager"),
        ("DELETE", "/v1/staff/%FF", "manager"),
    ];
    for (method, path, who) in cases {
        let token = if who == "cashier" { &cashier } else { &manager };
        let r = d
            .client
            .request(method.parse().unwrap(), d.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(
            (status, code(&v)),
            (403, "forbidden"),
            "{who} {method} {path}: {v}"
        );
    }
    // Those allowed still get their 400.
    let (s, v) = d.get(&admin, "/v1/audit?after=x").await;
    assert_eq!((s, code(&v)), (400, "invalid_query"));
    let (s, v) = d.get(&manager, "/v1/reports/sales?from=bad").await;
    assert_eq!((s, code(&v)), (400, "invalid_query"));
    d.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reprinting_an_unknown_sale_is_404() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let (s, v) = d.post(&t, "/v1/sales/no-such-sale/print", &json!({})).await;
    assert_eq!((s, code(&v)), (404, "sale_not_found"), "{v}");
    d.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_with_a_null_card_removes_the_card_and_one_left_out_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let m = d
        .register(&t, "张三", "13912345678", json!({"card_no": "CARD1234"}))
        .await;
    let path = format!("/v1/members/{m}");
    let patch = async |body: Value| d.send(reqwest::Method::PATCH, &t, &path, &body, None).await;

    let (s, v) = patch(json!({"name": "张三丰"})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["card_no"], "CARD1234",
        "a card left out of the edit stays"
    );

    let (s, v) = patch(json!({"card_no": null})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["card_no"], Value::Null, "card_no: null answered {v}");
    let (_, found) = d.get(&t, "/v1/members?card=CARD1234").await;
    assert_eq!(
        found["members"],
        json!([]),
        "the card still finds the member"
    );
    // The card is free for someone else.
    let (s, _) = d
        .post(
            &t,
            "/v1/members",
            &json!({"name": "李四", "phone": "13912345679", "card_no": "CARD1234"}),
        )
        .await;
    assert_eq!(s, 201);
    d.terminate();
}

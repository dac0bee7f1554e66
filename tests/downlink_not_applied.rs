//! An HQ message the store could not apply for a moment (its journal held by another process,
//! a write failing) is applied once it can be: MQTT brokers deliver an unacknowledged message
//! again only on the next connection, and a healthy link may stay up for weeks.

mod common;

use std::time::{Duration, Instant};

use common::mqtt::store_with_hq;
use common::{CASHIER, Daemon};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hq_message_not_applied_for_a_moment_is_applied_without_a_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, hq, d) = store_with_hq(dir.path()).await;
    let t = d.login(CASHIER).await;
    hq.wait_online().await;
    let connects = |d: &Daemon| d.log_text().matches("uplink connected").count();
    let before = connects(&d);

    // Another process holds the journal's write lock (longer than its 5 s busy timeout).
    let journal = rusqlite::Connection::open(dir.path().join("data/journal.sqlite3")).unwrap();
    journal.execute_batch("BEGIN IMMEDIATE").unwrap();
    hq.publish(
        "storebox/hq/products",
        json!({"id": "late-1", "kind": "products", "version": 1, "items": [
            {"sku": "LATE", "name": "迟到的商品", "price": 500, "version": 1}]}),
    )
    .await;
    let t0 = Instant::now();
    while !d.log_text().contains("downlink message not applied") {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the message was applied with the journal locked?\n{}",
            d.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    journal.execute_batch("ROLLBACK").unwrap();
    drop(journal);

    let t0 = Instant::now();
    let mut applied = false;
    while t0.elapsed() < Duration::from_secs(40) {
        if d.get(&t, "/v1/products/LATE").await.0 == 200 {
            applied = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        connects(&d),
        before,
        "the link reconnected (the test is about a link that stays up)"
    );
    assert!(
        applied,
        "HQ's product was never applied once the journal was free again (the link stayed up)"
    );
    // And HQ's next message still applies, after it.
    hq.publish(
        "storebox/hq/products",
        json!({"id": "late-2", "kind": "products", "version": 1, "items": [
            {"sku": "NEXT", "name": "下一个", "price": 600, "version": 1}]}),
    )
    .await;
    let mut ok = false;
    for _ in 0..80 {
        if d.get(&t, "/v1/products/NEXT").await.0 == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(ok, "the next message was not applied");
    d.terminate();
}

/// A message still not applied after its attempts (two and a half minutes of a journal that
/// cannot be written) is left unacknowledged for the broker to deliver again — which a broker
/// does only on a new connection — and HQ's later messages go on. But the broker holds the
/// messages it sent and that were not acknowledged against its in-flight limit (Mosquitto's
/// `max_inflight_messages`, 20 by default; 1 here, so that one message shows it): once it is
/// reached it sends the store nothing more, and the link, healthy, never reconnected. Every
/// later price list waited at the broker until the connection happened to drop.
///
/// Slow (the attempts take over three minutes): `cargo test --test downlink_not_applied -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "takes about four minutes: a message's attempts last two and a half"]
async fn a_message_left_unapplied_does_not_stop_hq_s_later_messages() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::mqtt::Broker::start_with(dir.path(), "max_inflight_messages 1\n");
    let hq = common::mqtt::Hq::connect(broker.port, "sh-001").await;
    let d = Daemon::start_in(dir.path(), &broker.uplink_config(""));
    let t = d.login(CASHIER).await;
    hq.wait_subscribed().await;

    let journal = rusqlite::Connection::open(dir.path().join("data/journal.sqlite3")).unwrap();
    journal.execute_batch("BEGIN IMMEDIATE").unwrap();
    hq.publish(
        "storebox/hq/products",
        json!({"id": "stuck-1", "kind": "products", "version": 1, "items": [
            {"sku": "STUCK", "name": "卡住的商品", "price": 500, "version": 1}]}),
    )
    .await;
    let t0 = Instant::now();
    while !d
        .log_text()
        .contains("left for the broker to deliver again")
    {
        assert!(
            t0.elapsed() < Duration::from_secs(400),
            "the message was never given up"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    journal.execute_batch("ROLLBACK").unwrap();
    drop(journal);

    hq.publish(
        "storebox/hq/prices",
        json!({"id": "after-1", "kind": "prices", "version": 2, "items": [
            {"sku": "TEA", "price": 23_000, "version": 2}]}),
    )
    .await;
    let t0 = Instant::now();
    while d.get(&t, "/v1/products/TEA").await.1["price"] != 23_000 {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "HQ's next price list never reached the store (the broker's in-flight window is \
             held by the message left unacknowledged)"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // And the one left is applied after all, delivered again.
    let t0 = Instant::now();
    while d.get(&t, "/v1/products/STUCK").await.0 != 200 {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the message left unacknowledged never came again"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    d.terminate();
}

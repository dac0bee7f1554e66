//! The HQ uplink against a real Mosquitto broker: events reach HQ, HQ's data reaches the till,
//! nothing is lost or doubled when the broker or the daemon dies.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::mqtt::{Broker, Hq, big_products, big_sale_lines, kinds, store_with_hq, wait_for};
use common::{CASHIER, Daemon, MANAGER, cash};
use serde_json::{Value, json};
use tokio::sync::Mutex;

async fn uplink(d: &Daemon, t: &str) -> Value {
    d.get(t, "/v1/uplink").await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_hq_and_hq_data_reaches_the_till() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, hq, d) = store_with_hq(dir.path()).await;
    let t = d.login(CASHIER).await;

    wait_for(10, "online status", || {
        hq.last_status().is_some_and(|s| s["online"] == json!(true))
    })
    .await;
    let status = hq.last_status().unwrap();
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    // Like every time storebox gives, with the store's offset (Asia/Shanghai).
    assert!(
        status["started_at"]
            .as_str()
            .is_some_and(|s| s.ends_with("+08:00")),
        "{status}"
    );

    // A member registered at the till goes up with the personal data HQ needs.
    let m = d
        .register(&t, "周杰", "13912340000", json!({"birthday": "1990-01-02"}))
        .await;
    wait_for(10, "member.registered", || {
        kinds(&hq.events()).contains(&"member.registered".to_string())
    })
    .await;
    let reg = hq
        .events()
        .into_iter()
        .find(|e| e["kind"] == "member.registered")
        .unwrap();
    assert_eq!(reg["store_id"], "sh-001");
    assert_eq!(reg["data"]["member_id"], json!(m));
    assert_eq!(reg["data"]["profile"]["name"], "周杰");
    assert_eq!(reg["data"]["profile"]["phone"], "13912340000");
    assert!(reg["id"].as_str().unwrap().len() == 36);

    let (s, sale) = d
        .sale(&t, &json!({"member_id": m, "lines": [{"sku": "TEA", "qty": 10}], "payments": cash(250_000)}))
        .await;
    assert_eq!(s, 201);
    wait_for(10, "sale.recorded and level.changed", || {
        let k = kinds(&hq.events());
        k.contains(&"sale.recorded".to_string()) && k.contains(&"level.changed".to_string())
    })
    .await;
    let up = hq
        .events()
        .into_iter()
        .find(|e| e["kind"] == "sale.recorded")
        .unwrap();
    assert_eq!(up["data"]["id"], sale["id"]);
    assert_eq!(up["seq"], sale["seq"]);
    assert_eq!(up["data"]["total"], 250_000);

    // HQ pushes a product, then an older version of it: the newer stays.
    let tm = d.login(MANAGER).await;
    hq.publish(
        "storebox/hq/products",
        json!({"id": "p-2", "kind": "products", "version": 2, "items": [
            {"sku": "HQ-PEAR", "name": "库尔勒香梨", "price": 1590, "barcodes": ["6901234567946"], "version": 2}]}),
    )
    .await;
    let mut found = Value::Null;
    for _ in 0..200 {
        let (s, p) = d.get(&t, "/v1/products?barcode=6901234567946").await;
        if s == 200 {
            found = p;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(found["name"], "库尔勒香梨");
    hq.publish(
        "storebox/hq/products",
        json!({"id": "p-1", "kind": "products", "version": 1, "items": [
            {"sku": "HQ-PEAR", "name": "旧梨", "price": 999, "version": 1}]}),
    )
    .await;
    // A marker message after it: once the marker is applied, the older one was handled too.
    hq.publish(
        "storebox/hq/products",
        json!({"id": "p-3", "kind": "products", "version": 1, "items": [
            {"sku": "MARK-1", "name": "marker", "price": 1, "version": 1}]}),
    )
    .await;
    for _ in 0..200 {
        if d.get(&t, "/v1/products/MARK-1").await.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (_, p) = d.get(&t, "/v1/products/HQ-PEAR").await;
    assert_eq!(
        p["price"], 1590,
        "an older version must not overwrite a newer one"
    );
    assert_eq!(p["name"], "库尔勒香梨");

    // A member pushed by HQ for this store, with spend at another store.
    hq.publish(
        "storebox/stores/sh-001/hq/members",
        json!({"id": "m-1", "kind": "members", "version": 1, "items": [
            {"id": "hq-member-1", "name": "吴敏", "phone": "13788889999", "version": 3, "level": "silver",
             "counters": {"sh-002": {"visits": 4, "months": {"2026-10": {"spend": 320000, "points_earned": 800}}}}}]}),
    )
    .await;
    let mut found = Value::Null;
    for _ in 0..200 {
        let (_, v) = d.get(&tm, "/v1/members?phone=13788889999").await;
        if v["members"].as_array().is_some_and(|a| !a.is_empty()) {
            found = v["members"][0].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(found["id"], "hq-member-1");
    assert_eq!(found["name"], "吴敏");
    assert_eq!(found["total_spend"], 320_000);
    assert_eq!(found["points"], 800);
    assert_eq!(found["level"]["code"], "silver");

    // A malformed message is acknowledged and reported, and does not block what follows.
    hq.publish_raw("storebox/hq/products", b"{not json".to_vec())
        .await;
    hq.publish(
        "storebox/hq/stock",
        json!({"id": "s-1", "kind": "stock", "version": 1, "items": [
            {"sku": "HQ-PEAR", "on_hand": 77, "safety_stock": 5, "version": 1}]}),
    )
    .await;
    wait_for(10, "malformed_downlink alert", || {
        hq.events()
            .iter()
            .any(|e| e["kind"] == "device.alert" && e["data"]["code"] == "malformed_downlink")
    })
    .await;
    let mut on_hand = Value::Null;
    for _ in 0..200 {
        let (_, v) = d.get(&t, "/v1/stock/HQ-PEAR").await;
        if v["on_hand"] == 77 {
            on_hand = v["on_hand"].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(on_hand, 77);

    let mut u = Value::Null;
    for _ in 0..200 {
        u = uplink(&d, &t).await;
        if u["backlog"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(u["connected"], true);
    assert_eq!(u["backlog"], 0);
    assert!(u["last_ack_at"].is_string());
    let health = d.health().await;
    assert_eq!(health["uplink"]["connected"], true);

    // A resync command from HQ goes up as a request for a snapshot.
    hq.publish(
        "storebox/stores/sh-001/hq/command",
        json!({"id": "c-1", "kind": "command", "version": 1, "items": [{"command": "resync"}]}),
    )
    .await;
    wait_for(10, "sync.requested", || {
        hq.events()
            .iter()
            .any(|e| e["kind"] == "sync.requested" && e["data"]["reason"] == "hq_command")
    })
    .await;
}

/// Sales from `clients` loops until `stop`; returns the acknowledged sale ids and keys.
fn sales_stream(
    d: &Daemon,
    token: &str,
    acked: Arc<Mutex<HashMap<String, Value>>>,
    stop: Arc<AtomicBool>,
    clients: usize,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..clients)
        .map(|c| {
            let client = d.client.clone();
            let base = d.base.clone();
            let token = token.to_string();
            let acked = acked.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let key = uuid::Uuid::now_v7().to_string();
                    let body = json!({"lines": [{"sku": "MILK", "qty": 1 + (n + c) % 3}], "payments": cash(10_000)});
                    let r = client
                        .post(format!("{base}/v1/sales"))
                        .bearer_auth(&token)
                        .header("Idempotency-Key", &key)
                        .json(&body)
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 201 => {
                            let v: Value = r.json().await.unwrap();
                            acked.lock().await.insert(v["id"].as_str().unwrap().to_string(), v);
                        }
                        Ok(r) => panic!("sale refused: {}", r.status()),
                        Err(_) => return,
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect()
}

/// HQ has every acknowledged sale, every id once after dedupe, and the seqs it got have no
/// gap up to the daemon's last seq.
/// `context` goes into the failure message: what the test did, with the `seq`s of when.
async fn assert_hq_has_everything(
    d: &Daemon,
    hq: &Hq,
    broker: &Broker,
    acked: &HashMap<String, Value>,
    context: &str,
) {
    let t = d.login(CASHIER).await;
    let mut last_seq = 0;
    for _ in 0..600 {
        let u = uplink(d, &t).await;
        last_seq = d.health().await["journal"]["last_seq"].as_u64().unwrap();
        let have: HashSet<u64> = hq
            .events()
            .iter()
            .filter_map(|e| e["seq"].as_u64())
            .collect();
        if u["backlog"] == 0 && (1..=last_seq).all(|s| have.contains(&s)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events = hq.events();
    let mut by_id: HashMap<String, Value> = HashMap::new();
    let mut seq_of: BTreeMap<u64, String> = BTreeMap::new();
    for e in &events {
        let id = e["id"].as_str().unwrap().to_string();
        let seq = e["seq"].as_u64().unwrap();
        if let Some(prev) = seq_of.insert(seq, id.clone()) {
            assert_eq!(prev, id, "two different events share seq {seq}");
        }
        by_id.insert(id, e.clone());
    }
    let got: Vec<u64> = seq_of.keys().copied().collect();
    if got != (1..=last_seq).collect::<Vec<_>>() {
        let log = d.log_text();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let have: HashSet<u64> = got.iter().copied().collect();
        let missing: Vec<u64> = (1..=last_seq).filter(|s| !have.contains(s)).collect();
        panic!(
            "HQ has {} distinct seqs, the store has {last_seq}; missing {}; {context}; uplink {}; \
             broker: {}; daemon log tail:\n{}",
            got.len(),
            ranges(&missing),
            uplink(d, &t).await,
            broker.log_summary(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    let sales_at_hq: HashSet<String> = by_id
        .values()
        .filter(|e| e["kind"] == "sale.recorded")
        .map(|e| e["data"]["id"].as_str().unwrap().to_string())
        .collect();
    for id in acked.keys() {
        assert!(
            sales_at_hq.contains(id),
            "acknowledged sale {id} never reached HQ"
        );
    }
    // First arrivals come in seq order: the outbox drains oldest first.
    let mut seen = HashSet::new();
    let firsts: Vec<u64> = events
        .iter()
        .filter_map(|e| e["seq"].as_u64())
        .filter(|s| seen.insert(*s))
        .collect();
    assert!(
        firsts.windows(2).all(|w| w[0] < w[1]),
        "first arrivals out of order"
    );
}

/// `1-3, 7, 9-12`.
fn ranges(seqs: &[u64]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < seqs.len() {
        let mut j = i;
        while j + 1 < seqs.len() && seqs[j + 1] == seqs[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            seqs[i].to_string()
        } else {
            format!("{}-{}", seqs[i], seqs[j])
        });
        i = j + 1;
    }
    out.join(", ")
}

/// The store's last `seq` now.
async fn last_seq(d: &Daemon) -> u64 {
    d.health().await["journal"]["last_seq"]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_restart_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path());
    let hq = Hq::connect(broker.port, "sh-001").await;
    let d = Daemon::start_in(dir.path(), &broker.uplink_config(""));
    let t = d.login(CASHIER).await;
    let acked = Arc::new(Mutex::new(HashMap::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = sales_stream(&d, &t, acked.clone(), stop.clone(), 4);

    tokio::time::sleep(Duration::from_millis(700)).await;
    let at_stop = last_seq(&d).await;
    broker.stop();
    // Sales go on while the broker is away, and queue in the outbox.
    let before = acked.lock().await.len();
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(
        acked.lock().await.len() > before + 10,
        "sales stalled without the broker"
    );
    let u = uplink(&d, &t).await;
    assert_eq!(u["connected"], false);
    assert!(u["backlog"].as_u64().unwrap() > 0, "{u}");
    assert!(u["oldest_unsent_at"].is_string(), "{u}");
    assert_eq!(d.health().await["status"], "degraded");
    let at_restart = last_seq(&d).await;
    broker.restart();
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let context = format!("broker stopped at seq ~{at_stop}, restarted at seq ~{at_restart}");
    assert_hq_has_everything(&d, &hq, &broker, &*acked.lock().await, &context).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_online_and_offline_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path());
    let hq = Hq::connect(broker.port, "sh-001").await;
    let cfg = broker.uplink_config("");
    let acked = Arc::new(Mutex::new(HashMap::new()));

    // Online: kill the daemon in the middle of a stream of sales.
    let d = Daemon::start_in(dir.path(), &cfg);
    let t = d.login(CASHIER).await;
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = sales_stream(&d, &t, acked.clone(), stop.clone(), 4);
    tokio::time::sleep(Duration::from_millis(800)).await;
    d.kill9();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    // The will: HQ sees the store go offline.
    wait_for(15, "online: false after kill -9", || {
        hq.last_status()
            .is_some_and(|s| s["online"] == json!(false))
    })
    .await;

    // Offline: the broker is down, sales queue, and the daemon is killed again.
    broker.stop();
    let d = Daemon::start_in(dir.path(), &cfg);
    let t = d.login(CASHIER).await;
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = sales_stream(&d, &t, acked.clone(), stop.clone(), 4);
    tokio::time::sleep(Duration::from_millis(600)).await;
    d.kill9();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }

    // Back: broker and daemon; everything drains.
    broker.restart();
    let d = Daemon::start_in(dir.path(), &cfg);
    wait_for(15, "online again", || {
        hq.last_status().is_some_and(|s| s["online"] == json!(true))
    })
    .await;
    let context = "killed online and offline, then broker and daemon back";
    assert_hq_has_everything(&d, &hq, &broker, &*acked.lock().await, context).await;
    assert!(acked.lock().await.len() > 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_too_big_for_the_broker_is_reported_not_looped() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
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
    let lines = big_sale_lines();
    let (s, big) = d
        .sale(&t, &json!({"lines": lines, "payments": cash(4000)}))
        .await;
    assert_eq!(s, 201, "the sale itself never fails: {big}");
    let (s, small) = d
        .sale(
            &t,
            &json!({"lines": [{"sku": "MILK", "qty": 1}], "payments": cash(1290)}),
        )
        .await;
    assert_eq!(s, 201);
    wait_for(15, "the alert and the next sale", || {
        let ev = hq.events();
        ev.iter().any(|e| {
            e["kind"] == "device.alert"
                && e["data"]["code"] == "event_too_large"
                && e["data"]["detail"]["seq"] == big["seq"]
        }) && ev.iter().any(|e| e["data"]["id"] == small["id"])
    })
    .await;
    assert!(
        !hq.events().iter().any(|e| e["data"]["id"] == big["id"]),
        "the oversized event cannot have been delivered"
    );
    let u = uplink(&d, &t).await;
    assert_eq!(u["connected"], true, "no reconnect loop: {u}");
}

/// An event whose payload cannot be made for now (the members' data keys cannot be read) is
/// read again until it can, nothing passed over and nothing new needed to try again; one that
/// can never be decoded (its sealed profile damaged on disk) goes to HQ as an
/// `event_unreadable` alert, and the events after it follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_event_is_reported_and_a_failed_read_is_tried_again() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let hq = Hq::connect(broker.port, "sh-001").await;
    // Registered while the uplink points nowhere, so nothing is sent yet.
    let d = Daemon::start_in(
        dir.path(),
        &broker
            .uplink_config("")
            .replace(&format!("port = {}", broker.port), "port = 1"),
    );
    let t = d.login(CASHIER).await;
    let damaged = d.register(&t, "坏数据", "13900000001", json!({})).await;
    let later = d.register(&t, "好数据", "13900000002", json!({})).await;
    d.terminate();
    let journal = dir.path().join("data/journal.sqlite3");
    {
        let c = rusqlite::Connection::open(&journal).unwrap();
        let data: String = c
            .query_row(
                "SELECT data FROM events WHERE kind = 'member.registered' AND subject = ?1",
                [&damaged],
                |r| r.get(0),
            )
            .unwrap();
        let at = data.find("xc1:").unwrap() + 12;
        let mut bytes = data.into_bytes();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        c.execute(
            "UPDATE events SET data = ?1 WHERE kind = 'member.registered' AND subject = ?2",
            rusqlite::params![String::from_utf8(bytes).unwrap(), damaged],
        )
        .unwrap();
        c.execute_batch("ALTER TABLE member_keys RENAME TO member_keys_aside")
            .unwrap();
    }
    let registered = |id: &str| {
        hq.events()
            .iter()
            .any(|e| e["kind"] == "member.registered" && e["data"]["member_id"] == id)
    };
    let unreadable = || {
        hq.events()
            .iter()
            .any(|e| e["kind"] == "device.alert" && e["data"]["code"] == "event_unreadable")
    };

    // The keys cannot be read: the link waits at the first member event.
    let d = Daemon::start_in(dir.path(), &broker.uplink_config(""));
    wait_for(10, "the link online", || {
        hq.last_status().is_some_and(|s| s["online"] == true)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!registered(&later) && !unreadable(), "{:?}", hq.events());

    // The keys are back (while the daemon runs, nothing new written): the damaged event is
    // reported and passed, the next one goes up.
    let c = rusqlite::Connection::open(&journal).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c.execute_batch("ALTER TABLE member_keys_aside RENAME TO member_keys")
        .unwrap();
    drop(c);
    wait_for(15, "the alert and the next member", || {
        unreadable() && registered(&later)
    })
    .await;
    assert!(!registered(&damaged));
    d.terminate();
}

//! What reaches HQ around a member's erasure, against a real Mosquitto: personal data the
//! uplink read ahead before the erasure does not go up after it; a backlog holding both the
//! registration and the erasure goes up without the data. And the outbox's age figure when the
//! clock was set back after events were recorded while it ran ahead.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::mqtt::{Broker, Hq, wait_for};
use common::{CASHIER, Daemon, MANAGER, cash};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How many bytes the proxy may pass from the broker to the store (`None`: all).
type Credit = Arc<Mutex<Option<usize>>>;

/// A TCP proxy between the store and the broker whose broker → store direction passes only
/// the bytes it is given credit for: PUBACKs can be held back and let through one at a time.
async fn gated_proxy(broker_port: u16, credit: Credit) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((store, _)) = listener.accept().await {
            let Ok(broker) = tokio::net::TcpStream::connect(("127.0.0.1", broker_port)).await
            else {
                continue;
            };
            let (mut store_rd, mut store_wr) = store.into_split();
            let (mut broker_rd, mut broker_wr) = broker.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut store_rd, &mut broker_wr).await;
            });
            let credit = credit.clone();
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let allow = {
                        let mut c = credit.lock().unwrap();
                        match c.as_mut() {
                            None => pending.len(),
                            Some(n) => {
                                let k = (*n).min(pending.len());
                                *n -= k;
                                k
                            }
                        }
                    };
                    if allow > 0 {
                        if store_wr.write_all(&pending[..allow]).await.is_err() {
                            return;
                        }
                        pending.drain(..allow);
                    }
                    tokio::select! {
                        r = broker_rd.read(&mut buf) => match r {
                            Ok(0) | Err(_) => return,
                            Ok(n) => pending.extend_from_slice(&buf[..n]),
                        },
                        _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                    }
                }
            });
        }
    });
    port
}

fn uplink_section(port: u16) -> String {
    format!(
        "\n[uplink]\nenabled = true\nhost = \"127.0.0.1\"\nport = {port}\nkeep_alive_secs = 60\n\
         reconnect_min_ms = 100\nreconnect_max_ms = 1000\nstatus_interval_secs = 600\n\
         inflight = 1\n"
    )
}

async fn backlog(d: &Daemon, t: &str) -> u64 {
    let (s, v) = d.get(t, "/v1/uplink").await;
    assert_eq!(s, 200, "{v}");
    v["backlog"].as_u64().unwrap()
}

async fn erase(d: &Daemon, token: &str, id: &str) {
    let (s, v) = d.erase(token, id).await;
    assert_eq!(s, 204, "{v}");
}

fn member_events(hq: &Hq, id: &str) -> Vec<Value> {
    hq.events()
        .into_iter()
        .filter(|e| e["data"]["member_id"] == id)
        .collect()
}

/// The uplink reads events ahead of sending them, opening the personal data in them. A
/// registration read while the broker had not yet acknowledged the event before it, then an
/// erasure: the registration must not go to HQ with the name and phone after the store erased
/// the member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_data_read_ahead_before_an_erasure_does_not_go_up_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let hq = Hq::connect(broker.port, "sh-001").await;
    let credit: Credit = Arc::new(Mutex::new(None));
    let proxy = gated_proxy(broker.port, credit.clone()).await;
    let d = Daemon::start_in(dir.path(), &uplink_section(proxy));
    let t = d.login(CASHIER).await;
    let tm = d.login(MANAGER).await;
    wait_for(10, "the link online", || {
        hq.last_status().is_some_and(|s| s["online"] == true)
    })
    .await;
    for _ in 0..100 {
        if backlog(&d, &t).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(backlog(&d, &t).await, 0, "the outbox drained");
    // The status the store publishes again once its backlog drained comes back to it (it
    // watches its status topic): let it through before the bytes are counted.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The broker's acknowledgements are held: the first sale fills the window (one event).
    *credit.lock().unwrap() = Some(0);
    let sale = json!({"lines": [{"sku": "MILK", "qty": 1}], "payments": cash(1290)});
    assert_eq!(d.sale(&t, &sale).await.0, 201);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(d.sale(&t, &sale).await.0, 201);
    let id = d.register(&t, "周杰", "13912340000", json!({})).await;
    // One PUBACK (4 bytes) through: the link reads the second sale and the registration
    // ahead, sends the sale and keeps the registration for when the window has room.
    let before = backlog(&d, &t).await;
    *credit.lock().unwrap() = Some(4);
    for _ in 0..100 {
        if backlog(&d, &t).await < before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        backlog(&d, &t).await < before,
        "the first sale acknowledged"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    erase(&d, &tm, &id).await;
    *credit.lock().unwrap() = None;
    wait_for(15, "member.erased at HQ", || {
        member_events(&hq, &id)
            .iter()
            .any(|e| e["kind"] == "member.erased")
    })
    .await;
    let events = member_events(&hq, &id);
    let registered: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "member.registered")
        .collect();
    assert!(!registered.is_empty(), "no member.registered at HQ");
    for e in &registered {
        assert!(
            e["data"]["profile"].is_null(),
            "HQ got the erased member's personal data after the erasure: {e}"
        );
    }
}

/// The uplink was down while a member was registered and erased: the backlog goes up with
/// the registration (its data unreadable now) and the erasure, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_with_a_registration_and_its_erasure_goes_up_without_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path());
    // HQ's persistent session is kept by the broker across its restart.
    let hq = Hq::connect(broker.port, "sh-001").await;
    broker.stop();
    let d = Daemon::start_in(dir.path(), &broker.uplink_config(""));
    let t = d.login(CASHIER).await;
    let tm = d.login(MANAGER).await;
    let id = d.register(&t, "周杰", "13912340000", json!({})).await;
    erase(&d, &tm, &id).await;
    broker.start_again();
    wait_for(15, "member.erased at HQ", || {
        member_events(&hq, &id)
            .iter()
            .any(|e| e["kind"] == "member.erased")
    })
    .await;
    let events = member_events(&hq, &id);
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    let reg = kinds.iter().position(|k| *k == "member.registered");
    let erased = kinds.iter().position(|k| *k == "member.erased");
    assert!(reg.is_some() && reg < erased, "{kinds:?}");
    for e in &events {
        assert!(
            e["data"]["profile"].is_null(),
            "personal data sent after the erasure: {e}"
        );
    }
}

fn oldest_age(metrics: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("storebox_outbox_oldest_age_seconds "))
        .unwrap_or_else(|| panic!("no outbox age in {metrics}"))
        .trim()
        .parse()
        .unwrap()
}

/// Events recorded while the clock ran a day ahead, then NTP sets it right: those events keep
/// waiting for HQ (the uplink is off here), and `storebox_outbox_oldest_age_seconds` must show
/// them waiting, not 0 for a day (an "outbox stuck" alert on it would not fire).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_age_counts_after_the_clock_is_set_back() {
    let Some(lib) = common::libfaketime() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config(dir.path(), "");
    let offset = dir.path().join("faketime");
    std::fs::write(&offset, "+1d\n").unwrap();
    let clock = ("FAKETIME_TIMESTAMP_FILE", offset.to_str().unwrap());
    let d = common::start_faked(dir.path(), &config, lib, clock, &[]);
    let t = d.login(CASHIER).await;
    let sale = json!({"lines": [{"sku": "MILK", "qty": 1}], "payments": cash(1290)});
    assert_eq!(d.sale(&t, &sale).await.0, 201);
    let metrics = || async {
        d.client
            .get(d.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    // Seen waiting (a scrape), then NTP sets the clock back a day.
    let _ = metrics().await;
    std::fs::write(&offset, "+0\n").unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let age = oldest_age(&metrics().await);
    assert!(
        (1.0..600.0).contains(&age),
        "the oldest unsent event has waited 1.5 s, the metric says {age} s"
    );
}

//! HQ's big pushes while the store is open, through a real Mosquitto broker: tens of thousands
//! of members in messages of up to `max_message_bytes`, as after a box was replaced. The tills
//! keep answering, the daemon's memory stays bounded, and a daemon stopped or killed half-way
//! through gets every record once.

mod common;

use std::time::{Duration, Instant};

use common::mqtt::store_with_hq;
use common::{CASHIER, Daemon, cash};
use serde_json::{Value, json};

/// `(VmRSS, VmHWM)` of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let get = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (get("VmRSS:"), get("VmHWM:"))
}

/// HQ's members `from..from + n` in one message, as HQ sends them after a resync (with their
/// counters at another store): 15,000 of them are 4.0 MB, under `max_message_bytes`.
fn members(id: usize, from: usize, n: usize) -> Value {
    let items: Vec<Value> = (from..from + n)
        .map(|i| {
            json!({"id": format!("hq-m-{i:06}"), "name": format!("会员{i:06}"),
                   "phone": format!("139{i:08}"), "card_no": format!("C{i:09}"),
                   "gender": "female", "birthday": "1990-05-06", "tags": ["vip"],
                   "level": "silver",
                   "counters": {"sh-002": {"visits": 3, "months": {
                       "2026-10": {"spend": 120000, "points_earned": 1200}}}},
                   "version": 1})
        })
        .collect();
    json!({"id": format!("members-{id}"), "kind": "members", "version": 1, "items": items})
}

const MEMBERS: &str = "storebox/stores/sh-001/hq/members";

/// The `q`th quantile of `v` (sorted here).
fn quantile(v: &mut [Duration], q: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 * q) as usize).min(v.len() - 1)]
}

/// While HQ pushes 30,000 members in two messages of 4 MB, a cashier's member lookups and
/// sales are answered (none fails; p99 was 3–8 ms for lookups and 103–132 ms for sales in a
/// debug build here, asserted under 2 s), and the daemon's resident memory grows by less than
/// 100 MiB. Each message's items were all made JSON values
/// at once (87 MB for 4 MB of members) and the parsed message was copied whole before it was
/// applied: 30,000 members took the daemon from 35 to 224 MiB, 60,000 to 256 MiB, and it
/// kept that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_of_members_keeps_the_till_answering_and_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, hq, d) = store_with_hq(dir.path()).await;
    let pid = d.child.id();
    let t = d.login(CASHIER).await;
    let m = d.register(&t, "周杰", "13912340000", json!({})).await;
    hq.wait_subscribed().await;
    let (before, _) = memory_kib(pid);

    let (n, per) = (30_000, 15_000);
    for k in 0..n / per {
        hq.publish(MEMBERS, members(k, k * per, per)).await;
    }
    let t0 = Instant::now();
    let last = format!("/v1/members/hq-m-{:06}", n - 1);
    let (mut lookups, mut sales) = (Vec::new(), Vec::new());
    loop {
        let s0 = Instant::now();
        let (s, v) = d.get(&t, "/v1/members?phone=13912340000").await;
        lookups.push(s0.elapsed());
        assert_eq!(
            (s, v["members"][0]["id"].as_str()),
            (200, Some(m.as_str())),
            "{v}"
        );
        let sale = json!({"member_id": m, "lines": [{"sku": "MILK", "qty": 1}],
                          "payments": cash(1290)});
        let s0 = Instant::now();
        let (s, v) = d.sale(&t, &sale).await;
        sales.push(s0.elapsed());
        assert_eq!(s, 201, "a sale failed during HQ's push: {v}");
        if d.get(&t, &last).await.0 == 200 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(300), "never applied");
    }
    let took = t0.elapsed();
    let (_, peak) = memory_kib(pid);
    let (lookup_p99, sale_p99) = (quantile(&mut lookups, 0.99), quantile(&mut sales, 0.99));
    println!(
        "{n} members applied in {took:?}; {} lookups p50 {:?} p99 {lookup_p99:?}; {} sales p50 \
         {:?} p99 {sale_p99:?} max {:?}; resident {before} KiB before, peak {peak} KiB",
        lookups.len(),
        quantile(&mut lookups, 0.5),
        sales.len(),
        quantile(&mut sales, 0.5),
        sales.last().unwrap(),
    );
    assert!(
        lookups.len() >= 20,
        "too few requests during the push to judge"
    );
    // Not a timing test (the figures are printed; the benchmark measures speed): a guard that
    // the till was not held for the push, with room for a loaded CI machine.
    assert!(
        lookup_p99 < Duration::from_secs(2),
        "lookup p99 {lookup_p99:?}"
    );
    // Not a timing test (the figures are printed; the benchmark measures speed): a guard that
    // the till was not held for the push, with room for a loaded CI machine.
    assert!(sale_p99 < Duration::from_secs(2), "sale p99 {sale_p99:?}");
    // Every member arrived, with the counters HQ sent.
    let (s, v) = d.get(&t, "/v1/members?phone=13900012345").await;
    assert_eq!(
        (s, v["members"][0]["id"].as_str()),
        (200, Some("hq-m-012345")),
        "{v}"
    );
    assert_eq!(v["members"][0]["total_spend"], 120_000, "{v}");
    let grown = peak.saturating_sub(before) / 1024;
    assert!(
        grown < 100,
        "resident memory grew by {grown} MiB ({before} KiB before, peak {peak} KiB) for {n} members"
    );
}

/// A daemon stopped (SIGTERM) while HQ's push is being applied stops within seconds — the
/// messages it had received but not yet applied are left to the broker, which delivers them
/// again — and the next start applies every member. The link used to apply everything it had
/// received before it let the daemon stop (each message of 15,000 members takes seconds),
/// though nothing it applied then could be acknowledged any more: systemd's 60 s stop timeout
/// then kills it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_stopped_during_a_push_stops_at_once_and_gets_it_all_after() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, hq, d) = store_with_hq(dir.path()).await;
    let config = d.config.clone();
    let t = d.login(CASHIER).await;
    hq.wait_subscribed().await;

    let (n, per) = (40_000, 10_000);
    for k in 0..n / per {
        hq.publish(MEMBERS, members(k, k * per, per)).await;
    }
    // The first part of the first message is in: the push is under way.
    let t0 = Instant::now();
    while d.get(&t, "/v1/members/hq-m-000000").await.0 != 200 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the push never began"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stopping = Instant::now();
    let code = d.terminate();
    let stop = stopping.elapsed();
    println!("stopped in {stop:?}");
    assert_eq!(code, Some(0));

    let d = Daemon::start_with(dir.path(), &config);
    let t = d.login(CASHIER).await;
    let t0 = Instant::now();
    for i in [0, n / 2, n - 1] {
        let path = format!("/v1/members/hq-m-{i:06}");
        while d.get(&t, &path).await.0 != 200 {
            assert!(t0.elapsed() < Duration::from_secs(300), "{path} never came");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    assert!(
        stop < Duration::from_secs(5),
        "the daemon took {stop:?} to stop during HQ's push"
    );
}

/// HQ's stock counts for `skus`, `CNT-{i}` counted at `i + bump`, at `version`.
fn counts(id: &str, skus: std::ops::Range<usize>, bump: i64, version: u64) -> Value {
    let items: Vec<Value> = skus
        .map(|i| json!({"sku": format!("CNT-{i:05}"), "on_hand": i as i64 + bump, "version": version}))
        .collect();
    json!({"id": id, "kind": "stock", "version": version, "items": items})
}

/// A stocktake of 6,000 SKUs, then a recount of the first 1,000, with the daemon killed
/// (`kill -9`) while the first is applied: after the restart every SKU holds its latest count,
/// and the journal records each count exactly once (a count applied twice would be a second
/// `stock.moved`, sent to HQ with another id).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stocktake_killed_half_way_counts_every_sku_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, hq, d) = store_with_hq(dir.path()).await;
    let config = d.config.clone();
    let t = d.login(CASHIER).await;
    hq.wait_subscribed().await;

    let topic = "storebox/stores/sh-001/hq/stock";
    for k in 0..3 {
        hq.publish(
            topic,
            counts(&format!("count-{k}"), k * 2000..(k + 1) * 2000, 0, 1),
        )
        .await;
    }
    hq.publish(topic, counts("recount", 0..1000, 500, 2)).await;
    let t0 = Instant::now();
    while d.get(&t, "/v1/stock/CNT-00300").await.1["on_hand"] != 300 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the stocktake never began"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    d.kill9();
    let journal = dir.path().join("data/journal.sqlite3");
    let recorded = |c: &rusqlite::Connection| -> i64 {
        c.query_row(
            "SELECT COUNT(*) FROM events WHERE kind = 'stock.moved'",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    let at_kill = recorded(&rusqlite::Connection::open(&journal).unwrap());
    println!("{at_kill} counts recorded when killed");

    let d = Daemon::start_with(dir.path(), &config);
    let t = d.login(CASHIER).await;
    let t0 = Instant::now();
    for (sku, want) in [("CNT-05999", 5999), ("CNT-00999", 1499)] {
        while d.get(&t, &format!("/v1/stock/{sku}")).await.1["on_hand"] != want {
            assert!(
                t0.elapsed() < Duration::from_secs(180),
                "{sku} never counted"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    for i in [0, 999, 1000, 2500, 4000] {
        let want = if i < 1000 { i + 500 } else { i };
        let (_, v) = d.get(&t, &format!("/v1/stock/CNT-{i:05}")).await;
        assert_eq!(v["on_hand"], want, "{v}");
    }
    let c = rusqlite::Connection::open(&journal).unwrap();
    let per_count: Vec<(String, i64, i64)> = c
        .prepare(
            "SELECT json_extract(data, '$.sku'), json_extract(data, '$.hq_count.version'),
                    COUNT(*)
               FROM events WHERE kind = 'stock.moved' AND json_extract(data, '$.hq_count') IS NOT NULL
              GROUP BY 1, 2",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let twice: Vec<_> = per_count
        .iter()
        .filter(|(_, _, n)| *n != 1)
        .take(5)
        .collect();
    assert!(
        twice.is_empty(),
        "counts recorded more than once: {twice:?}"
    );
    assert_eq!(per_count.len(), 7000, "one event per count of each SKU");
}

/// In the middle of HQ's push, a message over `max_message_bytes` (5 MB) and one that is not
/// JSON: each is refused alone and reported, and the members before and after them apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_or_broken_message_in_a_push_is_refused_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, hq, d) = store_with_hq(dir.path()).await;
    let t = d.login(CASHIER).await;
    hq.wait_subscribed().await;

    hq.publish(MEMBERS, members(0, 0, 2_000)).await;
    hq.publish(MEMBERS, members(1, 2_000, 20_000)).await;
    hq.publish_raw(MEMBERS, b"{\"id\": \"broken\", \"items\": [".to_vec())
        .await;
    hq.publish(MEMBERS, members(3, 22_000, 2_000)).await;
    let t0 = Instant::now();
    while d.get(&t, "/v1/members/hq-m-023999").await.0 != 200 {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the last message never applied"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(d.get(&t, "/v1/members/hq-m-001999").await.0, 200);
    assert_eq!(d.get(&t, "/v1/members/hq-m-002000").await.0, 404);
    common::mqtt::wait_for(30, "two malformed_downlink alerts", || {
        hq.events()
            .iter()
            .filter(|e| e["kind"] == "device.alert" && e["data"]["code"] == "malformed_downlink")
            .count()
            == 2
    })
    .await;
}

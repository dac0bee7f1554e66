//! Nothing acknowledged is lost: `kill -9` during a burst of concurrent sales, idempotency
//! across restarts, graceful shutdown, and a cache rebuilt from the journal.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{CASHIER, Daemon, MANAGER, cash, config_text};
use serde_json::{Value, json};
use tokio::sync::Mutex;

const SKUS: [(&str, i64); 3] = [("TEA", 25_000), ("MILK", 1290), ("RICE", 8990)];

/// A sale body from a small deterministic generator.
fn sale_body(n: u64, members: &[String]) -> Value {
    let sku = SKUS[(n % 3) as usize];
    let qty = 1 + (n % 4) as i64;
    let mut body = json!({
        "lines": [{"sku": sku.0, "qty": qty}, {"sku": "MILK", "qty": 1}],
        "payments": cash(sku.1 * qty + 1290 + 5_000),
    });
    if !n.is_multiple_of(5) {
        body["member_id"] = json!(members[(n as usize) % members.len()]);
    }
    body
}

async fn post_sale(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    key: &str,
    body: &Value,
) -> Result<(u16, Value), reqwest::Error> {
    let r = client
        .post(format!("{base}/v1/sales"))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await?))
}

#[derive(Default)]
struct Book {
    /// Idempotency key → acknowledged sale.
    acked: HashMap<String, Value>,
    /// Requests whose answer never came (connection died): key → body.
    unknown: HashMap<String, Value>,
}

/// Runs `clients` concurrent sale loops against `d` until `stop` is set.
fn burst(
    d: &Daemon,
    token: &str,
    members: &[String],
    book: Arc<Mutex<Book>>,
    stop: Arc<AtomicBool>,
    clients: u64,
    seed: u64,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..clients)
        .map(|c| {
            let client = d.client.clone();
            let base = d.base.clone();
            let token = token.to_string();
            let members = members.to_vec();
            let book = book.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut n = seed * 1_000_000 + c * 10_000;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let key = format!("k-{n}");
                    let body = sale_body(n, &members);
                    match post_sale(&client, &base, &token, &key, &body).await {
                        Ok((201, sale)) => {
                            book.lock().await.acked.insert(key, sale);
                        }
                        Ok((status, v)) => panic!("sale refused with {status}: {v}"),
                        Err(_) => {
                            book.lock().await.unknown.insert(key, body);
                            return;
                        }
                    }
                }
            })
        })
        .collect()
}

/// Checks the journal (through the API) against what was acknowledged.
async fn verify(d: &Daemon, book: &Book, members: &[String]) {
    let t = d.login(CASHIER).await;
    let mut days: HashSet<String> = book
        .acked
        .values()
        .map(|s| s["created_at"].as_str().unwrap()[..10].to_string())
        .collect();
    days.insert(common::store_today().to_string());
    let mut sales = Vec::new();
    for day in &days {
        sales.extend(d.sales_on(&t, day).await);
    }
    let by_id: HashMap<&str, &Value> = sales
        .iter()
        .map(|s| (s["id"].as_str().unwrap(), s))
        .collect();
    assert_eq!(by_id.len(), sales.len(), "a sale appears twice");
    for (key, ack) in &book.acked {
        let id = ack["id"].as_str().unwrap();
        let found = by_id
            .get(id)
            .unwrap_or_else(|| panic!("acknowledged sale {id} (key {key}) is missing"));
        assert_eq!(found["seq"], ack["seq"]);
        assert_eq!(found["total"], ack["total"]);
    }
    assert_eq!(
        sales.len(),
        book.acked.len(),
        "every sale in the journal belongs to exactly one idempotency key"
    );
    let mut seqs: Vec<u64> = sales.iter().map(|s| s["seq"].as_u64().unwrap()).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), sales.len());

    // Member counters equal what the journal's sales say.
    for m in members {
        let mine: Vec<&Value> = sales
            .iter()
            .filter(|s| s["member_id"] == json!(m))
            .collect();
        let spend: i64 = mine.iter().map(|s| s["total"].as_i64().unwrap()).sum();
        let points: i64 = mine
            .iter()
            .map(|s| s["points_earned"].as_i64().unwrap() - s["points_redeemed"].as_i64().unwrap())
            .sum();
        let (_, v) = d.get(&t, &format!("/v1/members/{m}")).await;
        assert_eq!(v["total_spend"], spend, "spend of {m}");
        assert_eq!(v["points"], points, "points of {m}");
        assert_eq!(v["visits"], mine.len(), "visits of {m}");
    }
    // Stock equals opening stock minus what the journal's sales took.
    let mut sold: BTreeMap<String, i64> = BTreeMap::new();
    for s in &sales {
        for l in s["lines"].as_array().unwrap() {
            *sold
                .entry(l["sku"].as_str().unwrap().to_string())
                .or_default() += l["qty"].as_i64().unwrap();
        }
    }
    for (sku, _) in SKUS {
        let (_, v) = d.get(&t, &format!("/v1/stock/{sku}")).await;
        assert_eq!(
            v["on_hand"],
            1000 - sold.get(sku).copied().unwrap_or(0),
            "stock of {sku}"
        );
    }
}

/// Retries every unanswered request with its key: the original answer (200) if it had been
/// recorded, a new sale (201) if not.
async fn retry_unknown(d: &Daemon, book: &mut Book) {
    let t = d.login(CASHIER).await;
    for (key, body) in std::mem::take(&mut book.unknown) {
        let (status, sale) = post_sale(&d.client, &d.base, &t, &key, &body)
            .await
            .unwrap();
        assert!(
            status == 200 || status == 201,
            "retry of {key}: {status} {sale}"
        );
        book.acked.insert(key, sale);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_sales_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let mut members = Vec::new();
    for i in 0..4 {
        members.push(
            d.register(
                &t,
                &format!("会员{i}"),
                &format!("1390000000{i}"),
                json!({}),
            )
            .await,
        );
    }
    let book = Arc::new(Mutex::new(Book::default()));
    for round in 0..3u64 {
        let t = d.login(CASHIER).await;
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = burst(&d, &t, &members, book.clone(), stop.clone(), 16, round);
        // Let the burst run, then pull the plug at a moment that differs per round.
        tokio::time::sleep(Duration::from_millis(300 + 170 * round)).await;
        d.kill9();
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            task.await.unwrap();
        }
        d = Daemon::start_in(dir.path(), "");
        let mut b = book.lock().await;
        assert!(
            b.acked.len() > 20 * (round as usize + 1),
            "the burst made too few sales"
        );
        retry_unknown(&d, &mut b).await;
        verify(&d, &b, &members).await;
    }
}

#[tokio::test]
async fn idempotency_key_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let body = json!({"lines": [{"sku": "MILK", "qty": 2}], "payments": cash(5000)});
    let (s, first) = post_sale(&d.client, &d.base, &t, "key-1", &body)
        .await
        .unwrap();
    assert_eq!(s, 201);
    // Same key, same body (keys in another order, other spacing): the original, 200.
    let same = json!({"payments": [{"amount": 5000, "method": "cash"}], "lines": [{"qty": 2, "sku": "MILK"}]});
    let (s, again) = post_sale(&d.client, &d.base, &t, "key-1", &same)
        .await
        .unwrap();
    assert_eq!((s, &again["id"]), (200, &first["id"]));
    // The first answer is the journal's JSON of the sale; the replay's, the sale read back
    // from the journal: the same sale, field for field.
    assert_eq!(again, first, "a replay answers the original sale");

    assert_eq!(d.terminate(), Some(0));
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let (s, again) = post_sale(&d.client, &d.base, &t, "key-1", &body)
        .await
        .unwrap();
    assert_eq!(
        (s, &again["id"]),
        (200, &first["id"]),
        "after a clean restart"
    );
    let other = json!({"lines": [{"sku": "MILK", "qty": 3}], "payments": cash(5000)});
    let (s, e) = post_sale(&d.client, &d.base, &t, "key-1", &other)
        .await
        .unwrap();
    assert_eq!(s, 409);
    assert_eq!(e["error"]["code"], "idempotency_key_reused");

    d.kill9();
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let (s, again) = post_sale(&d.client, &d.base, &t, "key-1", &body)
        .await
        .unwrap();
    assert_eq!((s, &again["id"]), (200, &first["id"]), "after kill -9");
    let sales = d.sales_on(&t, &common::store_today().to_string()).await;
    assert_eq!(sales.len(), 1, "one key, one sale");
    let (_, stock) = d.get(&t, "/v1/stock/MILK").await;
    assert_eq!(stock["on_hand"], 998);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_finishes_in_flight_sales() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let members = vec![d.register(&t, "甲", "13811110000", json!({})).await];
    let book = Arc::new(Mutex::new(Book::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = burst(&d, &t, &members, book.clone(), stop.clone(), 8, 7);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let code = d.terminate();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(code, Some(0), "a clean shutdown exits 0");
    let d = Daemon::start_in(dir.path(), "");
    let mut b = book.lock().await;
    retry_unknown(&d, &mut b).await;
    verify(&d, &b, &members).await;
}

#[tokio::test]
async fn cache_is_rebuilt_from_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let m = d
        .register(&t, "丙", "13822220000", json!({"card_no": "C-0001"}))
        .await;
    for n in 0..6 {
        let (s, _) = d
            .sale(&t, &json!({"member_id": m, "lines": [{"sku": "TEA", "qty": 1 + n}], "payments": cash(200_000)}))
            .await;
        assert_eq!(s, 201);
    }
    let (_, member) = d.get(&t, &format!("/v1/members/{m}")).await;
    let (_, stock) = d.get(&t, "/v1/stock/TEA").await;
    assert_eq!(d.terminate(), Some(0));

    // Lose the cache entirely.
    for f in ["cache.sqlite3", "cache.sqlite3-wal", "cache.sqlite3-shm"] {
        let _ = std::fs::remove_file(dir.path().join("data").join(f));
    }
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let (_, rebuilt) = d.get(&t, &format!("/v1/members/{m}")).await;
    assert_eq!(rebuilt, member);
    let (_, found) = d.get(&t, "/v1/members?card=C0001").await;
    assert_eq!(found["members"][0]["id"], json!(m));
    let (_, stock2) = d.get(&t, "/v1/stock/TEA").await;
    assert_eq!(stock2["on_hand"], stock["on_hand"]);
    assert!(d.log_text().contains("replayed journal events"));
    d.terminate();

    // A damaged cache is moved aside and rebuilt, not a reason to stop selling.
    std::fs::write(
        dir.path().join("data/cache.sqlite3"),
        vec![0xA5u8; 64 * 1024],
    )
    .unwrap();
    let _ = std::fs::remove_file(dir.path().join("data/cache.sqlite3-wal"));
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let (_, again) = d.get(&t, &format!("/v1/members/{m}")).await;
    assert_eq!(again["total_spend"], member["total_spend"]);
    assert_eq!(again["points"], member["points"]);
    assert!(d.log_text().contains("moving it aside"));
    assert_eq!(d.terminate(), Some(0));

    // The rebuilt cache is kept: the next start replays nothing.
    let d = Daemon::start_in(dir.path(), "");
    assert!(
        !d.log_text().contains("moving it aside"),
        "{}",
        d.log_text()
    );
    assert!(
        !d.log_text().contains("replayed journal events"),
        "{}",
        d.log_text()
    );
}

/// The store's clock goes back across midnight (here its timezone is corrected from UTC+14 to
/// UTC−12, 26 hours back): a sale made after that is in its own day's list and report, and
/// in no other day's.
#[tokio::test]
async fn sales_after_the_clock_went_back_are_in_their_days_list() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("storebox.toml");
    let in_zone = |tz: &str| {
        let text = config_text(&dir.path().join("data"), "");
        std::fs::write(
            &config,
            text.replace(
                "timezone = \"Asia/Shanghai\"",
                &format!("timezone = \"{tz}\""),
            ),
        )
        .unwrap();
        Daemon::start_with(dir.path(), &config)
    };
    let body = json!({"lines": [{"sku": "TEA", "qty": 1}], "payments": [{"method": "cash", "amount": 25000}]});
    let d = in_zone("Etc/GMT-14");
    let t = d.login(CASHIER).await;
    let (s, ahead) = d.sale(&t, &body).await;
    assert_eq!(s, 201, "{ahead}");
    d.terminate();

    let d = in_zone("Etc/GMT+12");
    let t = d.login(CASHIER).await;
    let (s, back) = d.sale(&t, &body).await;
    assert_eq!(s, 201, "{back}");
    let day = |sale: &Value| sale["created_at"].as_str().unwrap()[..10].to_string();
    assert!(day(&back) < day(&ahead), "{back} {ahead}");
    let tm = d.login(MANAGER).await;
    let ids = |sales: Vec<Value>| -> Vec<Value> { sales.iter().map(|s| s["id"].clone()).collect() };
    assert_eq!(
        ids(d.sales_on(&tm, &day(&back)).await),
        vec![back["id"].clone()]
    );
    assert_eq!(
        ids(d.sales_on(&tm, &day(&ahead)).await),
        vec![ahead["id"].clone()]
    );
    for (sale, other) in [(&back, &ahead), (&ahead, &back)] {
        let (s, v) = d
            .get(
                &tm,
                &format!("/v1/reports/staff?from={0}&to={0}", day(sale)),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        let cashier = v["staff"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["staff_no"] == CASHIER.0)
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            cashier["sales"],
            1,
            "{} (not {}): {v}",
            day(sale),
            day(other)
        );
    }
    d.terminate();
}

/// An `LD_PRELOAD` library that fails the journal's next WAL sync with `EIO` once the file
/// `$STOREBOX_TEST_FAILSYNC` exists (and removes it): a disk error at the moment of a commit.
const FAILSYNC_C: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static int fail_now(int fd) {
    const char *trigger = getenv("STOREBOX_TEST_FAILSYNC");
    if (!trigger || access(trigger, F_OK) != 0) return 0;
    char link[64], path[512] = {0};
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    if (readlink(link, path, sizeof path - 1) < 0) return 0;
    size_t n = strlen(path), k = strlen("journal.sqlite3-wal");
    if (n < k || strcmp(path + n - k, "journal.sqlite3-wal") != 0) return 0;
    unlink(trigger);
    return 1;
}
int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    if (fail_now(fd)) { errno = EIO; return -1; }
    return real(fd);
}
int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    if (fail_now(fd)) { errno = EIO; return -1; }
    return real(fd);
}
"#;

/// A commit whose `fdatasync` fails may still be on disk, and a recovery after a crash
/// replays it. So the terminal is not told "nothing was recorded" (it would ring the sale up
/// again under a new key: twice) but to retry with the same key — which, after the crash,
/// finds the sale, and one sale it stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_sync_failed_is_retried_with_its_key_and_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("failsync.c");
    let library = dir.path().join("failsync.so");
    std::fs::write(&source, FAILSYNC_C).unwrap();
    let built = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(&source)
        .arg("-ldl")
        .status()
        .expect("cc (the C compiler Rust links with)");
    assert!(built.success());
    let trigger = dir.path().join("fail-next-sync");
    let config = dir.path().join("storebox.toml");
    std::fs::write(&config, config_text(&dir.path().join("data"), "")).unwrap();
    let d = Daemon::start_env(
        dir.path(),
        &config,
        &[
            ("LD_PRELOAD", library.to_str().unwrap()),
            ("STOREBOX_TEST_FAILSYNC", trigger.to_str().unwrap()),
        ],
    );
    let t = d.login(CASHIER).await;
    let body = json!({"lines": [{"sku": "MILK", "qty": 1}], "payments": cash(2000)});
    let (s, _) = post_sale(&d.client, &d.base, &t, "key-1", &body)
        .await
        .unwrap();
    assert_eq!(s, 201);
    std::fs::write(&trigger, b"").unwrap();
    let (s, e) = post_sale(&d.client, &d.base, &t, "key-2", &body)
        .await
        .unwrap();
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (503, Some("journal_unconfirmed")),
        "{e}"
    );
    assert!(!trigger.exists(), "the sync was never failed");
    // The box dies before anything else is written.
    d.kill9();
    let d = Daemon::start_with(dir.path(), &config);
    let t = d.login(CASHIER).await;
    let (s, again) = post_sale(&d.client, &d.base, &t, "key-2", &body)
        .await
        .unwrap();
    assert!(s == 200 || s == 201, "{s} {again}");
    let sales = d.sales_on(&t, &common::store_today().to_string()).await;
    assert_eq!(sales.len(), 2, "two keys, two sales: {sales:?}");
    let (_, stock) = d.get(&t, "/v1/stock/MILK").await;
    assert_eq!(stock["on_hand"], 998);
    d.terminate();
}

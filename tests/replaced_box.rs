//! A store's box replaced, restored or set up again with the same store id: what HQ sees and
//! what the store keeps (tests/backup_restore.rs and tests/at_rest.rs: the restore itself;
//! tests/new_store.rs: a production box begins a journal only where `init` said so).

mod common;

use std::time::Duration;

use common::mqtt::{Broker, Hq, store_with_hq, wait_for};
use common::*;
use serde_json::{Value, json};

/// The data files of `data` but the store key: the box's disk as a reinstall leaves it.
fn wipe_but_key(data: &std::path::Path) {
    for e in std::fs::read_dir(data).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().is_some_and(|n| n != "store.key") {
            if p.is_dir() {
                std::fs::remove_dir_all(&p).unwrap();
            } else {
                std::fs::remove_file(&p).unwrap();
            }
        }
    }
}

/// The `sync.requested` events HQ received, with their `seq` and reason.
fn sync_requests(hq: &Hq) -> Vec<(u64, String)> {
    hq.events()
        .iter()
        .filter(|e| e["kind"] == "sync.requested")
        .map(|e| {
            (
                e["seq"].as_u64().unwrap_or(0),
                e["data"]["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

async fn wait_sync(hq: &Hq, reason: &str) -> bool {
    for _ in 0..200 {
        if sync_requests(hq).iter().any(|(_, r)| r == reason) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A sale of one MILK at the till, once HQ has it.
async fn sold_and_sent(d: &Daemon, t: &str, hq: &Hq, what: &str) -> Value {
    let (s, sale) = d
        .sale(
            t,
            &json!({"lines": [{"sku": "MILK", "qty": 1}], "payments": cash(1290)}),
        )
        .await;
    assert_eq!(s, 201, "{sale}");
    wait_for(10, what, || {
        hq.events().iter().any(|e| e["data"]["id"] == sale["id"])
    })
    .await;
    sale
}

/// A box whose disk was wiped (or reinstalled with an empty data directory) begins a new
/// journal at seq 1 under the same store id. Its cache holds nothing of HQ's (members, prices,
/// coupons, rules, staff), and HQ, which holds seqs 1.. of the old box, is told nothing: the
/// new box neither asked for HQ's data nor said that its numbering started again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_begun_afresh_asks_hq_for_its_data_and_says_its_numbering_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, hq, d) = store_with_hq(dir.path()).await;
    hq.wait_online().await;
    let t = d.login(CASHIER).await;
    let old_sale = sold_and_sent(&d, &t, &hq, "the old box's sale at HQ").await;
    let old_ids: Vec<Value> = hq.events().iter().map(|e| e["id"].clone()).collect();
    d.terminate();

    // The disk is wiped; the box comes back with the same config and key.
    wipe_but_key(&dir.path().join("data"));
    let d = Daemon::start_with(dir.path(), &dir.path().join("storebox.toml"));
    let t = d.login(CASHIER).await;
    let new_sale = sold_and_sent(&d, &t, &hq, "the new box's sale at HQ").await;
    // What HQ dedupes by never collides: the new events have ids of their own (their seqs
    // are the old box's again).
    assert!(
        hq.events()
            .iter()
            .skip(old_ids.len())
            .all(|e| !old_ids.contains(&e["id"])),
        "an event id of the old box used again"
    );
    assert_ne!(old_sale["id"], new_sale["id"]);
    let asked = wait_sync(&hq, "new_journal").await;
    assert!(
        asked,
        "the new journal neither asked HQ for its data nor told HQ its seqs start again: {:?}",
        sync_requests(&hq)
    );
    d.terminate();
}

/// The cache is "rebuildable: replay the journal, resync from HQ" (DESIGN §1). One deleted
/// beside its journal (an IT person freeing space, a file lost) is rebuilt from the journal,
/// but HQ's master data in it was never asked for again: a product HQ sent stayed unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_lost_beside_its_journal_asks_hq_again() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, hq, d) = store_with_hq(dir.path()).await;
    hq.wait_subscribed().await;
    let t = d.login(CASHIER).await;
    hq.publish(
        "storebox/hq/products",
        json!({"id": "p-1", "kind": "products", "version": 1, "items": [
            {"sku": "HQ-1", "name": "总部商品", "price": 500, "version": 1}]}),
    )
    .await;
    let mut found = false;
    for _ in 0..100 {
        if d.get(&t, "/v1/products/HQ-1").await.0 == 200 {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(found, "HQ's product never arrived");
    d.terminate();
    let before = sync_requests(&hq).len();

    let data = dir.path().join("data");
    for f in ["cache.sqlite3", "cache.sqlite3-wal", "cache.sqlite3-shm"] {
        let _ = std::fs::remove_file(data.join(f));
    }
    let d = Daemon::start_with(dir.path(), &dir.path().join("storebox.toml"));
    let t = d.login(CASHIER).await;
    assert_eq!(d.get(&t, "/v1/products/HQ-1").await.0, 404);
    let mut asked = false;
    for _ in 0..200 {
        if sync_requests(&hq)[before..]
            .iter()
            .any(|(_, r)| r == "cache_rebuilt")
        {
            asked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        asked,
        "a cache rebuilt without its file never asked HQ for its data: {:?}",
        sync_requests(&hq)
    );
    d.terminate();
}

/// The text of an offline command's output.
fn said(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A box that ran on after its last backup, with HQ receiving everything, then died.
/// Returns the directory, the backup file, the backup's last seq, the old box's last seq, and
/// the request and answer of its last sale (made after the backup, with its key).
struct LostBox {
    dir: tempfile::TempDir,
    broker: Broker,
    hq: Hq,
    backup: std::path::PathBuf,
    backup_seq: u64,
    last_seq: u64,
    key: String,
    body: Value,
    sale: Value,
}

impl LostBox {
    /// A new box for the lost one's store: its key, its broker.
    fn replacement(&self) -> (tempfile::TempDir, std::path::PathBuf) {
        new_box(
            &self.dir.path().join("data/store.key"),
            &self.broker.uplink_config(""),
        )
    }

    /// `storebox restore` of the lost box's backup into `config`, HQ's last seq being
    /// `hq_last_seq`, with the flags in `more`.
    fn restore(
        &self,
        config: &std::path::Path,
        hq_last_seq: u64,
        more: &[&str],
    ) -> std::process::Output {
        let seq = hq_last_seq.to_string();
        let mut args = vec![
            "restore",
            "--config",
            config.to_str().unwrap(),
            "--hq-last-seq",
            &seq,
        ];
        args.extend_from_slice(more);
        args.push(self.backup.to_str().unwrap());
        storebox(&args)
    }
}

async fn lost_box() -> LostBox {
    let dir = tempfile::tempdir().unwrap();
    let (broker, hq, d) = store_with_hq(dir.path()).await;
    hq.wait_online().await;
    let t = d.login(CASHIER).await;
    d.sell_milk(&t, 3).await;
    // Everything up to here acknowledged, and the position stored (every 200 ms).
    let last = d.health().await["journal"]["last_seq"].as_u64().unwrap();
    wait_for(10, "HQ has the first sales", || {
        hq.events().iter().any(|e| e["seq"].as_u64() == Some(last))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let backup = dir.path().join("store.sbk");
    let out = storebox(&[
        "backup",
        "--config",
        d.config.to_str().unwrap(),
        backup.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", said(&out));
    let backup_seq = d.health().await["journal"]["last_seq"].as_u64().unwrap();

    // After the backup: a sale whose answer the terminal never got (the box died).
    let key = uuid::Uuid::now_v7().to_string();
    let body = json!({"lines": [{"sku": "RICE", "qty": 1}], "payments": cash(8990)});
    let (s, sale) = d
        .send(reqwest::Method::POST, &t, "/v1/sales", &body, Some(&key))
        .await;
    assert_eq!(s, 201, "{sale}");
    let last_seq = d.health().await["journal"]["last_seq"].as_u64().unwrap();
    wait_for(10, "HQ has every event of the lost box", || {
        hq.events()
            .iter()
            .any(|e| e["seq"].as_u64() == Some(last_seq))
    })
    .await;
    d.kill9();
    LostBox {
        dir,
        broker,
        hq,
        backup,
        backup_seq,
        last_seq,
        key,
        body,
        sale,
    }
}

/// `--hq-last-seq` is typed by the IT person from HQ's console. A number below what the backup
/// itself shows the broker acknowledged is certainly not this store's last at HQ (a typo,
/// another store's, `0`): the restored store numbered its events after the backup's last, with
/// seqs HQ already held for other events — the restore took it without a word.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_refuses_an_hq_last_seq_below_what_the_backup_shows_acknowledged() {
    let lost = lost_box().await;
    let (_dir2, config2) = lost.replacement();
    let out = lost.restore(&config2, 0, &[]);
    assert!(
        !out.status.success(),
        "a restore took --hq-last-seq 0 from a backup HQ had acknowledged: {}",
        said(&out)
    );
    assert!(said(&out).contains("--hq-last-seq"), "{}", said(&out));
    // Nothing was left in the directory: the restore can be run again with the right number.
    let out = lost.restore(&config2, lost.last_seq, &[]);
    assert!(out.status.success(), "{}", said(&out));
}

/// The IT person restores with `--hq-last-seq 0 --hq-lost-events` (a broker that lost its
/// queue: HQ's console shows nothing of the store). The restored store sends the backup's
/// events again — until the review, the outbox position stayed where the backup had it (it
/// only moved forward), and HQ never got the sales the broker had lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_with_hq_lost_events_sends_them_again() {
    let lost = lost_box().await;
    let (dir2, config2) = lost.replacement();
    let out = lost.restore(&config2, 0, &["--hq-lost-events"]);
    assert!(out.status.success(), "{}", said(&out));
    let resent = format!("events seq 1 to {} are sent to HQ again", lost.backup_seq);
    assert!(said(&out).contains(&resent), "{}", said(&out));
    let before = lost.hq.events().len();
    let d = Daemon::start_with(dir2.path(), &config2);
    let t = d.login(CASHIER).await;
    let new_sale = sold_and_sent(&d, &t, &lost.hq, "the restored store's new sale at HQ").await;
    let again = lost.hq.events()[before..]
        .iter()
        .filter(|e| e["kind"] == "sale.recorded" && e["data"]["id"] != new_sale["id"])
        .count();
    assert_eq!(
        again, 3,
        "the backup's three sales were not sent again after a restore with --hq-lost-events"
    );
    d.terminate();
}

/// The events HQ holds beyond the backup are not on the restored box (their sales cannot be
/// refunded or reprinted there, their `Idempotency-Key`s are forgotten): the restore says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_behind_hq_tells_the_it_person_what_the_box_lacks() {
    let lost = lost_box().await;
    assert!(lost.last_seq > lost.backup_seq);
    let (_dir2, config2) = lost.replacement();
    let out = lost.restore(&config2, lost.last_seq, &[]);
    assert!(out.status.success(), "{}", said(&out));
    let text = said(&out);
    let range = format!("{} to {}", lost.backup_seq + 1, lost.last_seq);
    assert!(
        text.contains(&range),
        "the restore does not say which events HQ has and the box lacks ({range}): {text}"
    );
}

/// A terminal retries a sale whose answer it never got, after the box was replaced by one
/// restored from last night's backup. The restored box has forgotten the key (it came after
/// the backup) and records the sale again, with a new id: the box cannot know better, and HQ,
/// which received the first one, got nothing to tie the two together — a doubled sale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_retried_on_a_restored_box_is_recognisable_at_hq() {
    let lost = lost_box().await;
    let (dir2, config2) = lost.replacement();
    let out = lost.restore(&config2, lost.last_seq, &[]);
    assert!(out.status.success(), "{}", said(&out));
    let d = Daemon::start_with(dir2.path(), &config2);
    let t = d.login(CASHIER).await;
    let (s, again) = d
        .send(
            reqwest::Method::POST,
            &t,
            "/v1/sales",
            &lost.body,
            Some(&lost.key),
        )
        .await;
    assert_eq!(s, 201, "{again}");
    assert_ne!(again["id"], lost.sale["id"]);
    wait_for(10, "the retried sale at HQ", || {
        lost.hq
            .events()
            .iter()
            .any(|e| e["data"]["id"] == again["id"])
    })
    .await;
    let sales: Vec<Value> = lost
        .hq
        .events()
        .into_iter()
        .filter(|e| {
            e["kind"] == "sale.recorded"
                && (e["data"]["id"] == lost.sale["id"] || e["data"]["id"] == again["id"])
        })
        .collect();
    let keys: Vec<(&Value, &Value)> = sales
        .iter()
        .map(|e| (&e["data"]["terminal_id"], &e["data"]["idempotency_key"]))
        .collect();
    assert!(
        keys.iter()
            .all(|(t, k)| *t == "pos-1" && k.as_str() == Some(lost.key.as_str())),
        "HQ cannot tell the retried sale from a new one: {keys:?}"
    );
    d.terminate();
}

/// A spare box set up by mistake with the store's id, beside the store's own: both connect as
/// `storebox-{store_id}`, so the broker closes one's connection each time the other connects;
/// they share one broker session, so each of HQ's messages reaches only the one connected at
/// that moment, and HQ receives both boxes' events (their seqs colliding) under one store id.
/// Nothing said so, on either box or to HQ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_boxes_with_one_store_id_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let hq = Hq::connect(broker.port, "sh-001").await;
    let a = Daemon::start_in(dir.path(), &broker.uplink_config(""));
    hq.wait_online().await;
    let spare = tempfile::tempdir().unwrap();
    let b = Daemon::start_in(spare.path(), &broker.uplink_config(""));
    let mut warned = false;
    for _ in 0..300 {
        let alerts = hq
            .events()
            .iter()
            .filter(|e| e["kind"] == "device.alert" && e["data"]["code"] == "store_id_in_use")
            .count();
        if alerts > 0
            && a.log_text().contains("another box")
            && b.log_text().contains("another box")
        {
            warned = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let connects = |d: &Daemon| d.log_text().matches("uplink connected").count();
    assert!(
        warned,
        "two boxes with store id sh-001 took each other's connection ({} and {} connections) \
         and nobody was told",
        connects(&a),
        connects(&b)
    );
    a.terminate();
    b.terminate();
}

/// The same box restarted at once after a crash finds the status its previous run left
/// (`online: true`, the will not sent yet), and a broker restarted hands its status back: no
/// other box is seen in either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_box_restarted_or_reconnected_sees_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path());
    let hq = Hq::connect(broker.port, "sh-001").await;
    let d = Daemon::start_in(dir.path(), &broker.uplink_config(""));
    hq.wait_online().await;
    d.kill9();
    // As a run that died without its will being sent (the broker not yet aware) leaves it.
    hq.client
        .publish(
            "storebox/stores/sh-001/status",
            rumqttc::QoS::AtLeastOnce,
            true,
            json!({"online": true, "box": "the-run-before"}).to_string(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let d = Daemon::start_with(dir.path(), &dir.path().join("storebox.toml"));
    d.wait_log("uplink connected", 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    broker.restart();
    d.wait_log("uplink connected", 2);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let alerts: Vec<Value> = hq
        .events()
        .into_iter()
        .filter(|e| e["data"]["code"] == "store_id_in_use")
        .collect();
    assert!(alerts.is_empty(), "{alerts:?}");
    assert!(!d.log_text().contains("another box"), "{}", d.log_text());
    d.terminate();
}

//! What an operator's monitoring sees when something is wrong: `/healthz` while the journal or
//! the cache refuses writes, and `/metrics` under requests a client makes up.

mod common;

use common::*;
use serde_json::{Value, json};

/// Holds `file` in the data directory locked for writing, as another process would, while a
/// sale is tried: the sale is refused (`refused` checks the answer) and `/healthz` fails with
/// `{part}.writable` false rather than `ok`; once the lock goes, the store is `ok` again before
/// any sale, and a sale is recorded.
async fn health_fails_while_locked(file: &str, part: &str, refused: impl Fn(u16, &Value)) {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let body = json!({"lines": [{"sku": "MILK", "qty": 1}], "payments": cash(1290)});
    let lock = rusqlite::Connection::open(dir.path().join("data").join(file)).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    let (s, v) = d.sale(&t, &body).await;
    refused(s, &v);
    let r = d.client.get(d.url("/healthz")).send().await.unwrap();
    let status = r.status().as_u16();
    let h: Value = r.json().await.unwrap();
    assert_eq!(
        (status, h["status"].as_str(), h[part]["writable"].as_bool()),
        (503, Some("failed"), Some(false)),
        "{h}"
    );
    lock.execute_batch("ROLLBACK").unwrap();
    // No sale comes to show the fault has cleared (a quiet hour): `/healthz` says so itself
    // within a few of a monitor's polls.
    let mut h = Value::Null;
    for _ in 0..20 {
        h = d
            .client
            .get(d.url("/healthz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if h["status"] == "ok" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_eq!(h["status"], "ok", "{h}");
    let (s, v) = d.sale(&t, &body).await;
    assert_eq!(s, 201, "{v}");
}

/// A journal whose write lock another process holds (a stuck `sqlite3` shell, a hung disk)
/// refuses every sale after the busy timeout.
#[tokio::test]
async fn healthz_fails_while_the_journal_refuses_writes_and_recovers_after() {
    health_fails_while_locked("journal.sqlite3", "journal", |s, v| {
        assert_eq!((s, code(v)), (503, "journal_unavailable"), "{v}");
    })
    .await;
}

/// A cache another process holds locked refuses the ledger's writes: every sale is refused,
/// as retryable as the journal's refusal (nothing was recorded).
#[tokio::test]
async fn healthz_fails_while_the_cache_cannot_be_written_and_recovers_after() {
    health_fails_while_locked("cache.sqlite3", "cache", |s, v| {
        assert_eq!((s, code(v)), (503, "journal_unavailable"), "{v}");
    })
    .await;
}

/// Any token is an HTTP method. Each one a client makes up must not become a label set of its
/// own in `/metrics`, or a scanner on the LAN grows the daemon's memory and every scrape.
#[tokio::test]
async fn made_up_methods_do_not_grow_the_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let before = d.text("", "/metrics").await.len();
    for i in 0..50 {
        let method = reqwest::Method::from_bytes(format!("MADEUP{i:04}").as_bytes()).unwrap();
        let path = if i % 2 == 0 { "/healthz" } else { "/nowhere" };
        let r = d.client.request(method, d.url(path)).send().await.unwrap();
        assert!(r.status().is_client_error(), "{}", r.status());
    }
    let text = d.text("", "/metrics").await;
    assert!(!text.contains("MADEUP"), "a made-up method became a label");
    assert!(
        text.contains("method=\"other\""),
        "made-up methods are counted as other"
    );
    // Two routes (and their statuses) for all fifty: a few label sets, not fifty.
    assert!(
        text.len() < before + 8 * 1024,
        "/metrics grew from {before} to {} bytes",
        text.len()
    );
}

/// A daemon started on a disk already below `storage.min_free_mb` (a box restarted after its
/// disk filled) tells HQ, as when the disk fills while it runs.
#[tokio::test]
async fn a_disk_already_low_at_start_is_alerted() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("storebox.toml");
    // The largest limit the config takes (1 TiB): below it on any test machine.
    let text = config_text(&dir.path().join("data"), "")
        .replace("min_free_mb = 16", "min_free_mb = 1048576");
    std::fs::write(&config, text).unwrap();
    let d = Daemon::start_with(dir.path(), &config);
    let h = d.health().await;
    assert_eq!(h["disk"]["low"], true, "{h}");
    let metrics = d.text("", "/metrics").await;
    assert!(
        metrics.lines().any(|l| l == "storebox_disk_low 1"),
        "{metrics}"
    );
    d.wait_log("disk space low", 1);
    // Logged just before the alert goes to the ledger: it is journaled a moment after.
    let journal = rusqlite::Connection::open(dir.path().join("data/journal.sqlite3")).unwrap();
    let alerts = || -> i64 {
        journal
            .query_row(
                "SELECT COUNT(*) FROM events WHERE kind = 'device.alert' AND data LIKE '%disk_low%'",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while alerts() == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(alerts(), 1, "no disk_low alert for HQ");
}

//! The journal's write-ahead log after a long read (a backup, a year's report) held it open
//! while the till sold: it grows meanwhile, and must not keep that size on disk for the months
//! the daemon runs (nor after a restart) once the read is over.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{CASHIER, Daemon, cash};
use serde_json::json;

fn wal_len(data: &Path) -> u64 {
    std::fs::metadata(data.join("journal.sqlite3-wal")).map_or(0, |m| m.len())
}

async fn sell(d: &Daemon, token: &str, n: usize) {
    let mut tasks = Vec::new();
    for c in 0..4 {
        let client = d.client.clone();
        let base = d.base.clone();
        let token = token.to_string();
        tasks.push(tokio::spawn(async move {
            for i in 0..n / 4 {
                let body = json!({"lines": [{"sku": "MILK", "qty": 1 + (i + c) % 3}], "payments": cash(10_000)});
                let r = client
                    .post(format!("{base}/v1/sales"))
                    .bearer_auth(&token)
                    .header("Idempotency-Key", uuid::Uuid::now_v7().to_string())
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_wal_shrinks_back_after_a_long_read() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;

    // A long read (as a backup's copy holds one): the checkpoints cannot get past it, so the
    // WAL grows with every sale.
    let reader = rusqlite::Connection::open_with_flags(
        data.join("journal.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let _: i64 = reader
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .unwrap();
    let grown = Instant::now();
    while wal_len(&data) < 24 << 20 {
        assert!(
            grown.elapsed() < Duration::from_secs(60),
            "the WAL did not grow: {} bytes",
            wal_len(&data)
        );
        sell(&d, &t, 200).await;
    }
    let peak = wal_len(&data);
    reader.execute_batch("COMMIT").unwrap();
    drop(reader);

    // The read is over: the checkpoint thread copies the WAL home, the next sales start it
    // over, and the file goes back to its working size.
    let deadline = Instant::now() + Duration::from_secs(10);
    while wal_len(&data) > 16 << 20 {
        assert!(
            Instant::now() < deadline,
            "the journal's WAL stayed at {} bytes after the read ended (peak {peak})",
            wal_len(&data)
        );
        tokio::time::sleep(Duration::from_millis(600)).await;
        sell(&d, &t, 4).await;
    }
}

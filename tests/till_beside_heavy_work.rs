//! The till beside the daemon's heavy work: a sale is answered promptly while something else
//! (a backup's long read, a year's report) runs. Bounds are generous — these are behaviour
//! tests, not speed figures.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// A member erased while a backup copies the journal: the write-ahead log is to be scrubbed,
/// which must wait for the backup's snapshot — without holding up the sales meanwhile.
#[tokio::test]
async fn sales_are_answered_while_an_erasure_scrub_waits_for_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let tm = d.login(MANAGER).await;
    let tc = d.login(CASHIER).await;
    let gone = d.register(&tc, "张伟", "13812345678", json!({})).await;
    let sale = json!({"lines": [{"sku": "MILK", "qty": 1}], "payments": cash(1290)});
    let (s, v) = d.sale(&tc, &sale).await;
    assert_eq!(s, 201, "{v}");

    // What `storebox backup` (or a scheduled one) does while it copies a journal: one read
    // transaction, on a snapshot that the sales after it leave behind.
    let data = dir.path().join("data");
    let backup = rusqlite::Connection::open_with_flags(
        data.join("journal.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    backup.execute_batch("BEGIN").unwrap();
    let _: i64 = backup
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .unwrap();
    let cache_backup = rusqlite::Connection::open_with_flags(
        data.join("cache.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    cache_backup.execute_batch("BEGIN").unwrap();
    let _: i64 = cache_backup
        .query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))
        .unwrap();
    let (s, v) = d.sale(&tc, &sale).await;
    assert_eq!(s, 201, "{v}");

    let (s, v) = d.erase(&tm, &gone).await;
    assert_eq!(s, 204, "{v}");

    // The till keeps selling at its pace for a few seconds of the backup.
    let mut worst = Duration::ZERO;
    let until = Instant::now() + Duration::from_secs(4);
    let mut n = 0;
    while Instant::now() < until {
        let t = Instant::now();
        let (s, v) = d.sale(&tc, &sale).await;
        worst = worst.max(t.elapsed());
        assert_eq!(s, 201, "a sale during the backup: {v}\n{}", d.log_text());
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        worst < Duration::from_secs(1),
        "a sale waited {worst:?} for the scrub (of {n} sales)"
    );

    // The backup ends; the scrub then happens.
    drop(backup);
    drop(cache_backup);
    let mut scrubbed = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if d.log_text().matches("write-ahead log scrubbed").count() >= 2 {
            scrubbed = true;
            break;
        }
    }
    assert!(scrubbed, "no scrub:\n{}", d.log_text());
}

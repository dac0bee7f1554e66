//! An erasure's scrub of the write-ahead logs must not be lost with the process: the box
//! stopped hard (power cut, watchdog) after the erasure was answered but before the scrub
//! could run (a backup or a long report was reading) still has the old pages in its WAL.

mod common;

use std::path::Path;

use common::*;
use serde_json::json;

fn contains(path: &Path, needle: &[u8]) -> bool {
    std::fs::read(path)
        .map(|b| b.windows(needle.len()).any(|w| w == needle))
        .unwrap_or(false)
}

#[tokio::test]
async fn an_erasure_answered_before_a_crash_is_scrubbed_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = Daemon::start_in(dir.path(), "");
    let tm = d.login(MANAGER).await;
    let id = d
        .register(
            &tm,
            "测试张三",
            "13812345678",
            json!({"card_no": "VIP77665544"}),
        )
        .await;
    // What an attacker with the key file would need: the member's wrapped data key, and the
    // member's sealed profile in the cache.
    let journal = rusqlite::Connection::open(data.join("journal.sqlite3")).unwrap();
    let wrapped: Vec<u8> = journal
        .query_row(
            "SELECT wrapped FROM member_keys WHERE member_id = ?1",
            [&id],
            |r| r.get(0),
        )
        .unwrap();
    let cache = rusqlite::Connection::open(data.join("cache.sqlite3")).unwrap();
    let sealed: Vec<u8> = cache
        .query_row("SELECT data FROM members WHERE id = ?1", [&id], |r| {
            r.get(0)
        })
        .unwrap();
    // A reader (here the test; on a box, a backup's copy) holds both files' snapshots.
    journal
        .execute_batch("BEGIN; SELECT COUNT(*) FROM events;")
        .unwrap();
    cache
        .execute_batch("BEGIN; SELECT COUNT(*) FROM members;")
        .unwrap();
    let (s, v) = d.erase(&tm, &id).await;
    assert_eq!(s, 204, "{v}");
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    // The power goes; the reader is gone with it (closed without a checkpoint of its own).
    d.kill9();
    journal.execute_batch("COMMIT").unwrap();
    cache.execute_batch("COMMIT").unwrap();
    std::mem::forget(journal);
    std::mem::forget(cache);

    let d = Daemon::start_in(dir.path(), "");
    let tm = d.login(MANAGER).await;
    let (s, v) = d.get(&tm, &format!("/v1/members/{id}")).await;
    assert_eq!((s, &v["erased"]), (200, &json!(true)), "{v}");
    // A few sales, as the day goes on.
    let t = d.login(CASHIER).await;
    d.sell_milk(&t, 3).await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let mut found = Vec::new();
    for (file, needle) in [
        ("journal.sqlite3", &wrapped),
        ("journal.sqlite3-wal", &wrapped),
        ("cache.sqlite3", &sealed),
        ("cache.sqlite3-wal", &sealed),
    ] {
        if contains(&data.join(file), needle) {
            found.push(file);
        }
    }
    d.terminate();
    assert!(
        found.is_empty(),
        "the erased member's data key or sealed profile is still in {found:?}"
    );
}

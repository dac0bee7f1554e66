//! A backup taken while the cache is marked damaged (`cache.sqlite3-damaged`: a read found a
//! malformed page, and the daemon runs on, degraded, until a restart rebuilds it): SQLite's
//! backup copies pages as they are, damage included, and the marker is no file a backup holds.
//! A box that dies then (a failing SD card is what damages a cache) is restored from that
//! backup: before, the restored store opened the damaged copy as a sound cache and served it —
//! members missing or failing to read — until the damage was met again and a restart came.

mod common;

use std::collections::BTreeSet;

use common::crash::snapshot;
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_of_a_backup_taken_beside_a_damaged_cache_rebuilds_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let mut members = BTreeSet::new();
    for i in 0..300u64 {
        let id = d
            .register(
                &t,
                &format!("会员{i}"),
                &format!("135{i:08}"),
                json!({"card_no": format!("BD{i:04}")}),
            )
            .await;
        members.insert(id);
    }
    let before = snapshot(&d, &members).await;
    let last = d.health().await["journal"]["last_seq"].as_u64().unwrap();
    let config = d.config.clone();
    d.terminate();

    // The cache is damaged in the middle (found by a read: the daemon marked it) and still
    // opens: only its first pages are read then.
    let data = dir.path().join("data");
    let cache = data.join("cache.sqlite3");
    let mut bytes = std::fs::read(&cache).unwrap();
    let n = bytes.len();
    for b in &mut bytes[n / 3..2 * n / 3] {
        *b = 0x5A;
    }
    std::fs::write(&cache, &bytes).unwrap();
    for f in ["cache.sqlite3-wal", "cache.sqlite3-shm"] {
        let _ = std::fs::remove_file(data.join(f));
    }
    std::fs::write(data.join("cache.sqlite3-damaged"), b"").unwrap();

    let file = dir.path().join("store.sbk");
    let out = storebox(&[
        "backup",
        "--config",
        config.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The box is lost; a new one is restored from the backup.
    let (dir2, config2) = new_box(&data.join("store.key"), "");
    restore_ok(&config2, last, &file);
    let d = Daemon::start_with(dir2.path(), &config2);
    let after = snapshot(&d, &members).await;
    let t = d.login(CASHIER).await;
    let mut not_found = Vec::new();
    for i in (0..300u64).step_by(7) {
        for q in [format!("phone=135{i:08}"), format!("card=BD{i:04}")] {
            let (s, v) = d.get(&t, &format!("/v1/members?{q}")).await;
            let found = v["members"].as_array().map_or(0, |m| m.len());
            if s != 200 || found != 1 {
                not_found.push(format!("{q}: {s} {v}"));
            }
        }
    }
    let differing: Vec<String> = before
        .iter()
        .filter(|(k, v)| after.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}: before {v} after {:?}", after.get(k)))
        .collect();
    let h = d.health().await;
    let log = d.log_text();
    assert!(
        differing.is_empty() && not_found.is_empty(),
        "the restored store served the damaged cache: {} of {} differ (first: {:?}); {} \
         lookups failed (first: {:?}); health {h}\n{log}",
        differing.len(),
        before.len(),
        differing.first(),
        not_found.len(),
        not_found.first(),
    );
    assert_eq!(h["status"], "ok", "{h}");
    // HQ is asked for its master data (the restore's `restored`, and the rebuild's).
    assert!(common::cache_rebuilt_resyncs(&dir2.path().join("data")) <= 1);
    assert!(!dir2.path().join("data/cache.sqlite3-unfilled").exists());
    d.terminate();
}

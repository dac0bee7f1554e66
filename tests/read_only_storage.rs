//! The journal's or the cache's files made unwritable under a running daemon (a file system
//! remounted read-only after an error, a botched upgrade script): `chattr +i`, which stops
//! root too and fails writes on descriptors already open, stands in for them. Sales are refused
//! (never acknowledged and lost), `/healthz` says so, the daemon does not spin, and once the
//! files take writes again the store sells without a restart.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// Files made immutable (`chattr +i`) until dropped.
struct Immutable(Vec<PathBuf>);

impl Immutable {
    /// `None` when this file system or user cannot (the test then says it skipped).
    fn set(files: &[PathBuf]) -> Option<Immutable> {
        let ok = Command::new("chattr")
            .arg("+i")
            .args(files)
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            let _ = Command::new("chattr").arg("-i").args(files).status();
            eprintln!("skipped: chattr +i does not work here (needs root on ext4/xfs/btrfs)");
            return None;
        }
        Some(Immutable(files.to_vec()))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").args(&self.0).status();
    }
}

fn milk() -> Value {
    json!({"lines": [{"sku": "MILK", "qty": 1}], "payments": cash(1290)})
}

fn files(data: &Path, name: &str) -> Vec<PathBuf> {
    ["", "-wal"]
        .iter()
        .map(|s| data.join(format!("{name}{s}")))
        .collect()
}

/// Sells until a sale is `201` (5 s at most); returns its answer.
async fn sells_again(d: &Daemon, t: &str) -> Value {
    let mut last = (0, Value::Null);
    for _ in 0..20 {
        last = d.sale(t, &milk()).await;
        if last.0 == 201 {
            return last.1;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("no sale taken after the files came back: {}", last.1);
}

/// Three quiet seconds with the files unwritable do not fill the log: the checkpoint thread
/// (every 500 ms) says its failure once, not at every tick.
async fn quiet_log(d: &Daemon) {
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = d.log_text();
    let failed = log.matches("checkpoint failed").count();
    assert!(failed <= 1, "{failed} checkpoint failures logged:\n{log}");
}

/// The journal unwritable: every sale is refused `503`, none acknowledged; `/healthz` fails;
/// the checkpoints that fail meanwhile do not fill the log; writable again, the store sells
/// without a restart and every sale answered `201` is there after one.
#[tokio::test]
async fn an_unwritable_journal_refuses_sales_and_sells_again_once_writable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let mut answered = Vec::new();
    let (s, v) = d.sale(&t, &milk()).await;
    assert_eq!(s, 201, "{v}");
    answered.push(v["id"].as_str().unwrap().to_string());
    {
        let Some(_held) = Immutable::set(&files(&data, "journal.sqlite3")) else {
            return;
        };
        for _ in 0..3 {
            let (s, v) = d.sale(&t, &milk()).await;
            assert_eq!(s, 503, "{v}");
            assert!(
                ["journal_unavailable", "journal_unconfirmed"].contains(&code(&v)),
                "{v}"
            );
        }
        let h = d.health().await;
        assert_eq!(
            (h["status"].as_str(), h["journal"]["writable"].as_bool()),
            (Some("failed"), Some(false)),
            "{h}"
        );
        quiet_log(&d).await;
    }
    answered.push(
        sells_again(&d, &t).await["id"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    assert_eq!(d.health().await["status"], "ok");
    assert_eq!(d.terminate(), Some(0));
    let d = Daemon::start_with(dir.path(), &dir.path().join("storebox.toml"));
    let t = d.login(CASHIER).await;
    for id in &answered {
        let (s, v) = d.get(&t, &format!("/v1/sales/{id}")).await;
        assert_eq!(s, 200, "{v}");
    }
    assert_eq!(d.sales_on(&t, &store_today().to_string()).await.len(), 2);
}

/// The cache unwritable: a sale the journal took is acknowledged (the journal has it), then
/// commands are refused until the cache catches up, as after a full disk; writable again, the
/// store sells without a restart and the cache shows every sale.
#[tokio::test]
async fn an_unwritable_cache_refuses_commands_and_catches_up_once_writable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let (s, v) = d.sale(&t, &milk()).await;
    assert_eq!(s, 201, "{v}");
    let mut acknowledged = 1;
    {
        let Some(_held) = Immutable::set(&files(&data, "cache.sqlite3")) else {
            return;
        };
        for _ in 0..3 {
            let (s, v) = d.sale(&t, &milk()).await;
            match s {
                201 => acknowledged += 1,
                503 => assert_eq!(code(&v), "journal_unavailable", "{v}"),
                _ => panic!("{s}: {v}"),
            }
        }
        let h = d.health().await;
        assert_eq!(h["status"], "failed", "{h}");
        quiet_log(&d).await;
    }
    sells_again(&d, &t).await;
    acknowledged += 1;
    let (s, v) = d.get(&t, "/v1/stock/MILK").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["on_hand"].as_i64(), Some(1000 - acknowledged), "{v}");
    assert_eq!(
        d.sales_on(&t, &store_today().to_string()).await.len() as i64,
        acknowledged
    );
}

//! `kill -9` of offline work and of the daemon's edges: a members import killed part-way, a
//! start-up replay killed, a shutdown cut short by SIGKILL; afterwards the store agrees with a
//! cache rebuilt from the journal.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use common::crash::*;
use common::{CASHIER, Daemon, MANAGER};
use reqwest::Method;
use serde_json::{Value, json};

/// `storebox_members_cached` from `/metrics`.
async fn members_cached(d: &Daemon) -> i64 {
    let text = d.text("", "/metrics").await;
    text.lines()
        .find(|l| l.starts_with("storebox_members_cached"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(-1.0) as i64
}

/// Phones (every `step`-th of `n` imported) found by lookup on `d`.
async fn found_phones(d: &Daemon, n: u64, step: u64) -> BTreeMap<u64, (usize, Value)> {
    let t = d.login(MANAGER).await;
    let mut out = BTreeMap::new();
    for i in (0..n).step_by(step as usize) {
        let (s, v) = d.get(&t, &format!("/v1/members?phone=136{i:08}")).await;
        assert_eq!(s, 200, "{v}");
        let ms = v["members"].as_array().unwrap();
        let m = ms.first().cloned().unwrap_or(Value::Null);
        let (_, by_card) = d.get(&t, &format!("/v1/members?card=IMP{i}")).await;
        out.insert(
            i,
            (
                ms.len(),
                json!([m["id"], m["name"], by_card["members"][0]["id"]]),
            ),
        );
    }
    out
}

fn write_csv(path: &Path, n: u64) {
    let mut text = String::from("姓名,手机号码,生日,性别,会员卡号\n");
    for i in 0..n {
        text.push_str(&format!(
            "导入{i},136{i:08},1990-01-{:02},女,IMP{i}\n",
            1 + i % 28
        ));
    }
    std::fs::write(path, text).unwrap();
}

/// Runs `storebox members import` and kills it with SIGKILL after `after`; returns whether it
/// had finished on its own.
fn import_killed(config: &Path, csv: &Path, after: Duration) -> bool {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_storebox"))
        .args(["members", "import", "--config"])
        .arg(config)
        .arg(csv)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    let done = child.try_wait().unwrap().is_some();
    let _ = child.kill();
    let _ = child.wait();
    done
}

/// Starts the daemon and `kill -9`s it after `after`, whether it finished starting or not.
fn start_killed(dir: &Path, after: Duration) -> bool {
    let config = dir.join("storebox.toml");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_storebox"))
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .env_remove("NOTIFY_SOCKET")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    running
}

/// `kill -9` during `storebox members import`, during the start-up replay of a long journal and
/// during a shutdown; then the daemon must agree with a cache rebuilt from the journal.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_import_replay_and_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), EXTRA);
    let t = d.login(CASHIER).await;
    let tm = d.login(MANAGER).await;
    let m = d
        .register(&t, "老会员", "13800000001", json!({"card_no": "OLD1"}))
        .await;
    for _ in 0..4 {
        let (s, sale) = d.sale(&t, &json!({"member_id": m, "lines": [{"sku": "TEA", "qty": 2}], "payments": common::cash(50_000)})).await;
        assert_eq!(s, 201);
        let (s, _) = d
            .post(
                &tm,
                &format!("/v1/sales/{}/refunds", sale["id"].as_str().unwrap()),
                &json!({"reason": "r", "lines": [{"sku": "TEA", "qty": 1}]}),
            )
            .await;
        assert_eq!(s, 201);
    }
    let config = d.config.clone();
    d.terminate();
    let n: u64 = std::env::var("CRASH_IMPORT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30_000);
    let csv = dir.path().join("m.csv");
    write_csv(&csv, n);
    for ms in [300u64, 2600, 6000, 12000] {
        let done = import_killed(&config, &csv, Duration::from_millis(ms));
        eprintln!("import killed after {ms} ms (finished: {done})");
    }
    // The daemon starts on what the killed imports left.
    let a = Daemon::start_in(dir.path(), EXTRA);
    eprintln!(
        "{}",
        a.log_text()
            .lines()
            .filter(|l| l.contains("aside") || l.contains("replayed") || l.contains("bulk"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let count_a = members_cached(&a).await;
    let phones_a = found_phones(&a, n, 97).await;
    a.terminate();
    let members: BTreeSet<String> = [m.clone()].into();
    let a = compare_with_rebuild(dir.path(), EXTRA, &members).await;
    a.terminate();
    let b = Daemon::start_in(&dir.path().join("rebuilt"), EXTRA);
    assert_eq!(
        members_cached(&b).await,
        count_a,
        "members counted after a killed import"
    );
    assert_eq!(
        found_phones(&b, n, 97).await,
        phones_a,
        "lookups after a killed import"
    );
    b.terminate();

    // The start-up replay of the whole journal, killed at several moments.
    for ms in [150u64, 400, 800, 1500, 2500] {
        for f in ["cache.sqlite3", "cache.sqlite3-wal", "cache.sqlite3-shm"] {
            if ms == 150 {
                let _ = std::fs::remove_file(dir.path().join("data").join(f));
            }
        }
        let running = start_killed(dir.path(), Duration::from_millis(ms));
        eprintln!("start-up killed after {ms} ms (was running: {running})");
    }
    let a = Daemon::start_in(dir.path(), EXTRA);
    assert_eq!(
        members_cached(&a).await,
        count_a,
        "members counted after a killed replay"
    );
    assert_eq!(
        found_phones(&a, n, 97).await,
        phones_a,
        "lookups after a killed replay"
    );
    a.terminate();
    let a = compare_with_rebuild(dir.path(), EXTRA, &members).await;

    // Shutdowns killed: SIGTERM during a burst of writes, then SIGKILL shortly after.
    let mut a = a;
    for delay in [0u64, 5, 20, 60] {
        let t = a.login(CASHIER).await;
        let tm = a.login(MANAGER).await;
        let mut tasks = Vec::new();
        for k in 0..8u64 {
            let client = a.client.clone();
            let base = a.base.clone();
            let (t, tm, m) = (t.clone(), tm.clone(), m.clone());
            tasks.push(tokio::spawn(async move {
                for j in 0.. {
                    let key = format!("sd-{delay}-{k}-{j}");
                    let body = json!({"member_id": m, "lines": [{"sku": "MILK", "qty": 1}], "payments": common::cash(2000), "print": false});
                    let r = call(&client, &base, Method::POST, &t, "/v1/sales", Some(&body), Some(&key)).await;
                    if r.is_none() { break; }
                    let r = call(&client, &base, Method::POST, &tm, "/v1/stock/movements", Some(&json!({"sku": "RICE", "delta": 1, "reason": "receive"})), Some(&key)).await;
                    if r.is_none() { break; }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        unsafe { libc::kill(a.child.id() as i32, libc::SIGTERM) };
        tokio::time::sleep(Duration::from_millis(delay)).await;
        a.kill9();
        for task in tasks {
            task.await.unwrap();
        }
        a = Daemon::start_in(dir.path(), EXTRA);
        let moved = movements(&a).await;
        check_counters(&a, std::slice::from_ref(&m), &moved).await;
        a.terminate();
        a = compare_with_rebuild(dir.path(), EXTRA, &members).await;
    }
    a.terminate();
}

//! `storebox members import` stopped with SIGTERM (`systemctl`-style, or a shutdown of the
//! box) or Ctrl-C: the import holds its new members' index entries in memory until it closes
//! the store, and its cache carries a bulk marker until then. Before, a signal killed it
//! outright: the next start found the marker, moved the whole cache aside and rebuilt it from
//! the journal (an hour for a store's years of sales), HQ's master data — prices, staff,
//! coupons — gone until HQ sent it again. Now a signal stops the import after the chunk under
//! way and closes the store.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn bulk_marker(data: &std::path::Path) -> bool {
    rusqlite::Connection::open_with_flags(
        data.join("cache.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .and_then(|c| {
        c.prepare("SELECT 1 FROM meta WHERE key = 'bulk_index'")?
            .exists([])
    })
    .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_stopped_by_sigterm_leaves_a_cache_the_next_start_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = write_config(dir.path(), "");
    let csv = dir.path().join("m.csv");
    let mut text = String::from("姓名,手机号码,会员卡号\n");
    const ROWS: u64 = 20_000;
    for i in 0..ROWS {
        text.push_str(&format!("导入{i},136{i:08},SIG{i:05}\n"));
    }
    std::fs::write(&csv, text).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_storebox"))
        .args(["members", "import", "--config"])
        .arg(&config)
        .arg(&csv)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Stopped once it is importing (its cache in bulk mode).
    let deadline = Instant::now() + Duration::from_secs(60);
    while !bulk_marker(&data) {
        assert!(Instant::now() < deadline, "the import never began");
        std::thread::sleep(Duration::from_millis(2));
    }
    // SAFETY: kill(2) on the import's own pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{:?}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{said}");
    assert!(
        !bulk_marker(&data),
        "the import left its cache half-written: {said}"
    );

    let d = Daemon::start_in(dir.path(), "");
    let log = d.log_text();
    let aside = std::fs::read_dir(&data)
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().starts_with("cache.broken-"));
    assert!(!aside, "the cache was moved aside and rebuilt:\n{log}");
    assert_eq!(common::cache_rebuilt_resyncs(&data), 0, "{log}");
    // What the import recorded is found, by phone and by card.
    let t = d.login(MANAGER).await;
    let mut found = Vec::new();
    for i in [0, ROWS / 2, ROWS - 1] {
        let (_, p) = d.get(&t, &format!("/v1/members?phone=136{i:08}")).await;
        let (_, c) = d.get(&t, &format!("/v1/members?card=SIG{i:05}")).await;
        let n = |v: &serde_json::Value| v["members"].as_array().map_or(0, |m| m.len());
        found.push((n(&p), n(&c)));
    }
    assert!(
        found.iter().all(|f| *f == found[0] && f.0 == f.1),
        "{found:?}"
    );
    d.terminate();
}

//! A trouble HQ was told of (`device.alert`) and that ended while the box was off — the disk
//! freed, the printer given paper, the backup directory fixed, then the box restarted — is
//! told over once the box runs again: HQ's alert does not stay open for ever. One still there
//! after the restart is not told a second time.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::devices::{printer_only, wait_state};
use common::hw::FakePrinter;
use common::{CASHIER, Daemon, cash, config_text};
use serde_json::json;

/// The codes of the alerts from `source` in the journal (what goes to HQ), in order.
fn alerts(data: &Path, source: &str) -> Vec<String> {
    let journal = rusqlite::Connection::open(data.join("journal.sqlite3")).unwrap();
    let mut st = journal
        .prepare(
            "SELECT json_extract(data, '$.code') FROM events
               WHERE kind = 'device.alert' AND subject = ?1 ORDER BY seq",
        )
        .unwrap();
    st.query_map([source], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

async fn wait_alerts(data: &Path, source: &str, want: &[&str], secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut got = alerts(data, source);
    while got != want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        got = alerts(data, source);
    }
    assert_eq!(got, want, "alerts from {source}");
}

fn write_config(dir: &Path, extra: &str, min_free_mb: u64) -> std::path::PathBuf {
    let config = dir.join("storebox.toml");
    let text = config_text(&dir.join("data"), extra)
        .replace("min_free_mb = 16", &format!("min_free_mb = {min_free_mb}"));
    std::fs::write(&config, text).unwrap();
    config
}

/// The disk was low (a limit above any test machine's free space), the box went off, space
/// was freed (the limit lowered): `disk_ok` once the box runs again. Low at two starts in a
/// row: one `disk_low`.
#[tokio::test]
async fn a_disk_freed_while_the_box_was_off_is_reported_fine() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = write_config(dir.path(), "", 1_048_576);
    let d = Daemon::start_with(dir.path(), &config);
    wait_alerts(&data, "storage", &["disk_low"], 30).await;
    d.terminate();
    let d = Daemon::start_with(dir.path(), &config);
    assert_eq!(d.health().await["disk"]["low"], true);
    tokio::time::sleep(Duration::from_secs(3)).await;
    wait_alerts(&data, "storage", &["disk_low"], 1).await;
    d.terminate();

    let config = write_config(dir.path(), "", 16);
    let d = Daemon::start_with(dir.path(), &config);
    wait_alerts(&data, "storage", &["disk_low", "disk_ok"], 30).await;
    d.terminate();
    // Fine at the next start too: nothing more.
    let d = Daemon::start_with(dir.path(), &config);
    tokio::time::sleep(Duration::from_secs(3)).await;
    wait_alerts(&data, "storage", &["disk_low", "disk_ok"], 1).await;
    d.terminate();
}

/// The printer ran out of paper, the box went off, paper was put in: `ready` once the box runs
/// again and finds the printer ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_printer_given_paper_while_the_box_was_off_is_reported_ready() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let printer = FakePrinter::start(None).await;
    let d = Daemon::start_in(dir.path(), &printer_only(printer.addr));
    let t = d.login(CASHIER).await;
    wait_state(&d, &t, "printer-1", "ready").await;
    printer.set_paper_out(true);
    let body = json!({"lines": [{"sku": "MILK", "qty": 1}], "payments": cash(2_000)});
    let (s, v) = d.sale(&t, &body).await;
    assert_eq!(s, 201, "{v}");
    wait_state(&d, &t, "printer-1", "paper_out").await;
    wait_alerts(&data, "printer-1", &["paper_out"], 30).await;
    d.terminate();

    printer.set_paper_out(false);
    let d = Daemon::start_with(dir.path(), &d_config(dir.path()));
    let t = d.login(CASHIER).await;
    wait_state(&d, &t, "printer-1", "ready").await;
    wait_alerts(&data, "printer-1", &["paper_out", "ready"], 30).await;
    d.terminate();
}

fn d_config(dir: &Path) -> std::path::PathBuf {
    dir.join("storebox.toml")
}

/// Scheduled backups failed (the backup directory is a file), the box went off, the directory
/// was fixed: `/healthz` still says backups fail until one works, then `backup_ok` goes to HQ.
#[tokio::test]
async fn a_backup_failure_told_before_a_restart_is_ended_by_the_next_backup() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backups = dir.path().join("backups");
    std::fs::write(&backups, b"not a directory").unwrap();
    let extra = format!(
        "\n[backup]\nevery_hours = 1\ndir = \"{}\"\n",
        backups.display()
    );
    let config = write_config(dir.path(), &extra, 16);
    let d = Daemon::start_with(dir.path(), &config);
    // The first one is due a minute after the start.
    wait_alerts(&data, "backup", &["backup_failed"], 120).await;
    d.terminate();

    std::fs::remove_file(&backups).unwrap();
    let d = Daemon::start_with(dir.path(), &config);
    let h = d.health().await;
    assert!(
        h["problems"]
            .to_string()
            .contains("scheduled backup failing"),
        "{h}"
    );
    let metrics = d.text("", "/metrics").await;
    assert!(
        metrics.lines().any(|l| l == "storebox_backup_failing 1"),
        "{metrics}"
    );
    wait_alerts(&data, "backup", &["backup_failed", "backup_ok"], 120).await;
    let h = d.health().await;
    assert!(!h["problems"].to_string().contains("backup"), "{h}");
    let metrics = d.text("", "/metrics").await;
    assert!(
        metrics.lines().any(|l| l == "storebox_backup_failing 0"),
        "{metrics}"
    );
    d.terminate();
}

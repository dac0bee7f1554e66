//! A cache rebuilt from a store's years of journal: every event is replayed, which on a box's
//! SD card can outlast systemd's start timeout (`TimeoutStartSec=5min`), and systemd then
//! stops the daemon and starts it again. A long replay defers the member index entries to its
//! end (bulk mode, its marker in the cache): a stop half-way left the marker, so the next start
//! took the cache for damaged, moved it aside and replayed from the first event again — a store
//! whose replay takes longer than the timeout never came back up.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{FixedOffset, TimeZone};
use common::history;
use common::{Daemon, store_today};

/// The cache's `applied_seq`, read beside the daemon (0 until there is one).
fn applied(data: &Path) -> u64 {
    rusqlite::Connection::open_with_flags(
        data.join("cache.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .and_then(|c| {
        c.query_row(
            "SELECT value FROM meta WHERE key = 'applied_seq'",
            [],
            |r| r.get::<_, String>(0),
        )
    })
    .ok()
    .and_then(|v| v.parse().ok())
    .unwrap_or(0)
}

#[test]
fn a_rebuild_stopped_half_way_goes_on_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tz = FixedOffset::east_opt(8 * 3600).unwrap();
    let today = store_today();
    // More events than a replay does without bulk mode (20,000), and no cache.
    const SALES: i64 = 40_000;
    let mut events = Vec::new();
    for i in 0..SALES {
        let day = today - chrono::Duration::days(1 + i * 700 / SALES);
        let at = tz
            .from_local_datetime(&day.and_hms_opt(9 + (i % 12) as u32, 0, 0).unwrap())
            .unwrap();
        let id = format!("0190d000-0000-7000-8000-{i:012}");
        let lines = [("MILK", 1, 1290), ("RICE", 1, 8990)];
        events.push((at, history::sale_event(&id, at, "1001", None, &lines)));
    }
    history::write_journal(&data, events);
    let config = common::write_config(dir.path(), "");

    let log = dir.path().join("daemon.log");
    // Started as systemd starts it, with a notify socket to hear from it.
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_nonblocking(true).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_storebox"))
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .env("NOTIFY_SOCKET", &notify_path)
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Stopped (as systemd's start timeout stops it) once part of the journal is replayed.
    let deadline = Instant::now() + Duration::from_secs(120);
    while applied(&data) < 4_000 {
        assert!(Instant::now() < deadline, "the replay did not begin");
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: kill(2) on the daemon's own pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{status:?}\n{text}");
    assert!(text.contains("stopped during start-up"), "{text}");
    let done = applied(&data);
    assert!(
        (4_000..SALES as u64).contains(&done),
        "{done} events replayed before the stop\n{text}"
    );
    // While it replayed, it asked systemd for more time than `TimeoutStartSec`, saying how far
    // it had got.
    let mut buf = [0u8; 4096];
    let mut heard = Vec::new();
    while let Ok(n) = notify.recv(&mut buf) {
        heard.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(
        heard
            .iter()
            .any(|m| m.contains("EXTEND_TIMEOUT_USEC=60000000")
                && m.contains(&format!("of {SALES}"))),
        "{heard:?}"
    );
    // Stopped, it asked for time to write the index entries of what it had replayed (more
    // than `TimeoutStopSec` may give on an SD card).
    assert!(
        heard
            .iter()
            .any(|m| m.contains("STOPPING=1") && m.contains("EXTEND_TIMEOUT_USEC=300000000")),
        "{heard:?}"
    );

    // The next start goes on from there: the cache is not taken for damaged and rebuilt.
    let d = Daemon::start_with(dir.path(), &config);
    let log = d.log_text();
    let aside: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("cache.broken"))
        .collect();
    assert!(
        aside.is_empty(),
        "the cache was moved aside ({aside:?}) and rebuilt from the first event:\n{log}"
    );
    let replayed: u64 = log
        .lines()
        .find(|l| l.contains("replayed journal events into the cache"))
        .and_then(|l| l.split("events=").nth(1))
        .and_then(|n| n.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no replay logged:\n{log}"));
    assert!(
        replayed <= SALES as u64 - done,
        "{replayed} events replayed again after {done} were:\n{log}"
    );
    let health = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async { d.health().await });
    assert_eq!(
        health["cache"]["applied_seq"], health["journal"]["last_seq"],
        "{health}"
    );
    d.terminate();
    // Done, and HQ was asked for its data once (the first start stopped before asking).
    assert!(!data.join("cache.sqlite3-unfilled").exists());
    let asked = common::cache_rebuilt_resyncs(&data);
    assert_eq!(asked, 1);
}

//! A graceful stop (SIGTERM, as `systemctl stop` sends it) in the middle of things: what was
//! under way is finished or kept, and nothing is done twice after the restart.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::devices::{printer_only, wait_state};
use common::{CASHIER, Daemon, cash};
use serde_json::json;

fn queued_jobs(dir: &Path) -> i64 {
    let c = rusqlite::Connection::open(dir.join("data/journal.sqlite3")).unwrap();
    c.query_row("SELECT count(*) FROM print_jobs", [], |r| r.get(0))
        .unwrap()
}

/// A TCP printer that takes every byte at once and answers DLE EOT like a real one: a status
/// asked after a receipt is answered once the receipt is printed (`printing` later). Returns
/// its address and what it received.
fn printer_busy_printing(printing: Duration) -> (std::net::SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    std::thread::spawn(move || {
        for sock in listener.incoming() {
            let Ok(mut sock) = sock else { return };
            let sink = sink.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut tail: Vec<u8> = Vec::new();
                // Bytes to print since the last answer.
                let mut to_print = 0usize;
                loop {
                    let n = match sock.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    sink.lock().unwrap().extend_from_slice(&buf[..n]);
                    to_print += n;
                    tail.extend_from_slice(&buf[..n]);
                    let chunk = std::mem::take(&mut tail);
                    tail = chunk[chunk.len().saturating_sub(2)..].to_vec();
                    for w in chunk.windows(3) {
                        if w[0] == 0x10 && w[1] == 0x04 {
                            if to_print > 64 {
                                std::thread::sleep(printing);
                            }
                            to_print = 0;
                            let _ = sock.write_all(&[0x12]);
                        }
                    }
                }
            });
        }
    });
    (addr, received)
}

/// Before: a SIGTERM while a printer that answers DLE EOT was printing a receipt (it had taken
/// the bytes, its answer to the status asked after them not come yet) left the job queued; the
/// receipt came out, and after the restart came out again — and opened the cash drawer again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_printing_at_the_stop_is_not_printed_again_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, received) = printer_busy_printing(Duration::from_secs(2));
    let mut d = Daemon::start_in(dir.path(), &printer_only(addr));
    let t = d.login(CASHIER).await;
    wait_state(&d, &t, "printer-1", "ready").await;
    let paper = || storebox::devices::decode::decode(&received.lock().unwrap());

    let (s, sale) = d
        .sale(
            &t,
            &json!({"lines": [{"sku": "MILK", "qty": 1}], "payments": cash(2_000)}),
        )
        .await;
    assert_eq!(s, 201, "{sale}");
    // The printer has the receipt and is printing it: the stop comes now.
    let deadline = Instant::now() + Duration::from_secs(10);
    while paper().cuts < 1 {
        assert!(
            Instant::now() < deadline,
            "the receipt never reached the printer"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stop = Instant::now();
    // SAFETY: kill(2) on the daemon's own pid.
    unsafe { libc::kill(d.child.id() as i32, libc::SIGTERM) };
    let status = d.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        stop.elapsed() < Duration::from_secs(15),
        "the stop took {:?}",
        stop.elapsed()
    );
    assert_eq!(
        queued_jobs(dir.path()),
        0,
        "the receipt the printer took is still queued:\n{}",
        d.log_text()
    );

    let d = Daemon::start_with(dir.path(), &d.config.clone());
    let t = d.login(CASHIER).await;
    wait_state(&d, &t, "printer-1", "ready").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let p = paper();
    assert_eq!(p.cuts, 1, "printed {} times", p.cuts);
    assert_eq!(
        p.drawer_kicks.len(),
        1,
        "the drawer opened {} times",
        p.drawer_kicks.len()
    );
    assert_eq!(d.terminate(), Some(0));
}

/// What HQ holds: every seq from 1 to `last` once at least, each seq always with the same
/// event id (a resent event is one HQ can tell apart by its id). Waits for it (30 s at most).
async fn hq_has_every_event(hq: &common::mqtt::Hq, last: u64) {
    use std::collections::BTreeMap;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut seq_of: BTreeMap<u64, String> = BTreeMap::new();
        for e in hq.events() {
            let (seq, id) = (e["seq"].as_u64().unwrap(), e["id"].as_str().unwrap());
            if let Some(prev) = seq_of.insert(seq, id.to_string()) {
                assert_eq!(prev, id, "two different events share seq {seq}");
            }
        }
        if (1..=last).all(|s| seq_of.contains_key(&s)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "HQ has {} of {last} events",
            seq_of.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// SIGTERM while the uplink drains a backlog, and while the broker holds back its PUBACKs:
/// the stop is quick, HQ is told the store went offline, and after the restart HQ gets every
/// event (a few twice, with the same id).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_while_the_uplink_drains_or_waits_for_acks_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = common::mqtt::Broker::start(dir.path());
    let hq = common::mqtt::Hq::connect(broker.port, "sh-001").await;
    let cfg = broker.uplink_config("");
    let mut d = Daemon::start_in(dir.path(), &cfg);
    let t = d.login(CASHIER).await;
    let sale = json!({"lines": [{"sku": "MILK", "qty": 1}], "payments": cash(2_000)});

    // A backlog while the broker is away, drained when it is back: stopped half way.
    broker.stop();
    for _ in 0..150 {
        assert_eq!(d.sale(&t, &sale).await.0, 201);
    }
    broker.start_again();
    let deadline = Instant::now() + Duration::from_secs(20);
    while hq.events().len() < 20 {
        assert!(
            Instant::now() < deadline,
            "the backlog never began to drain"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stop = Instant::now();
    // SAFETY: kill(2) on the daemon's own pid.
    unsafe { libc::kill(d.child.id() as i32, libc::SIGTERM) };
    assert!(d.child.wait().unwrap().success());
    assert!(
        stop.elapsed() < Duration::from_secs(10),
        "{:?}",
        stop.elapsed()
    );
    common::mqtt::wait_for(10, "online: false after the stop", || {
        hq.last_status()
            .is_some_and(|s| s["online"] == json!(false))
    })
    .await;
    let mut d = Daemon::start_with(dir.path(), &d.config.clone());
    let t = d.login(CASHIER).await;
    let last = d.health().await["journal"]["last_seq"].as_u64().unwrap();
    hq_has_every_event(&hq, last).await;

    // The broker takes the events and answers nothing (hung): the stop does not wait long.
    // SAFETY: kill(2) on the broker's pid.
    unsafe { libc::kill(broker.pid(), libc::SIGSTOP) };
    for _ in 0..20 {
        assert_eq!(d.sale(&t, &sale).await.0, 201);
    }
    let stop = Instant::now();
    unsafe { libc::kill(d.child.id() as i32, libc::SIGTERM) };
    assert!(d.child.wait().unwrap().success());
    assert!(
        stop.elapsed() < Duration::from_secs(10),
        "{:?}",
        stop.elapsed()
    );
    unsafe { libc::kill(broker.pid(), libc::SIGCONT) };
    let d = Daemon::start_with(dir.path(), &d.config.clone());
    let last = d.health().await["journal"]["last_seq"].as_u64().unwrap();
    hq_has_every_event(&hq, last).await;
    common::mqtt::wait_for(10, "online again", || {
        hq.last_status().is_some_and(|s| s["online"] == json!(true))
    })
    .await;
    assert_eq!(d.terminate(), Some(0));
}

/// Before: a SIGTERM while the daemon replayed its journal into a lost cache was only acted on
/// once the replay was done — minutes for a large store on an SD card, well past systemd's
/// 60 s, so systemd killed it — and the daemon then even began listening and recorded its
/// start before stopping. Now it stops between two chunks of the replay, and the next start
/// finishes it.
#[test]
fn a_stop_during_the_cache_rebuild_at_start_up_is_not_held_up_by_it() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = common::write_config(dir.path(), "");
    // A journal of some thousands of events (an import is the quickest way to one).
    let mut csv = String::from("name,phone\n");
    for i in 0..6_000 {
        csv.push_str(&format!("会员{i},139{i:08}\n"));
    }
    let file = dir.path().join("members.csv");
    std::fs::write(&file, csv).unwrap();
    common::import_members(&config, &file);
    // The cache is lost: the next start replays the whole journal into a new one.
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("cache.")
        {
            std::fs::remove_file(path).unwrap();
        }
    }

    let log = dir.path().join("daemon.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_storebox"))
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .env_remove("NOTIFY_SOCKET")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The new cache exists: the replay is under way.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !data.join("cache.sqlite3").exists() {
        assert!(Instant::now() < deadline, "no cache created");
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: kill(2) on the daemon's own pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{status:?}\n{text}");
    assert!(
        !text.contains("listening on"),
        "the SIGTERM waited for the whole replay:\n{text}"
    );
    assert!(text.contains("stopped during start-up"), "{text}");

    // The next start finishes the replay: every member is there.
    let d = Daemon::start_with(dir.path(), &config);
    let health = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async { d.health().await });
    assert_eq!(
        health["cache"]["applied_seq"], health["journal"]["last_seq"],
        "{health}"
    );
}

//! Receipt printers that fail: a TCP printer that accepts and never reads, one that stops
//! answering its status, a USB printer that stops taking data, and a drawer opening that
//! waited too long for its printer.

mod common;

use std::path::Path;
use std::time::Duration;

use common::devices::{device_state, has, printer_only, wait_state, wait_state_for};
use common::hw::{DeafPrinter, FakePrinter};
use common::{CASHIER, Daemon, MANAGER, cash};
use serde_json::{Value, json};

fn queued_jobs(dir: &Path) -> i64 {
    let c = rusqlite::Connection::open(dir.join("data/journal.sqlite3")).unwrap();
    c.query_row("SELECT count(*) FROM print_jobs", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_printer_that_accepts_but_never_reads_keeps_the_receipt_and_prints_it_once_fixed() {
    let dir = tempfile::tempdir().unwrap();
    // Hung firmware, live network stack: connections are accepted, nothing is read, DLE EOT
    // is never answered.
    let deaf = DeafPrinter::start().await;
    let addr = deaf.addr;
    // A long receipt: more than the printer's network stack takes without reading.
    let mut config = printer_only(addr);
    for i in 0..40 {
        config.push_str(&format!(
            "\n[[products]]\nsku = \"GIFT-{i:02}\"\nname = \"有机纯牛奶 250ml×12盒 礼盒装 {i:02}\"\nprice = 9990\n"
        ));
    }
    let d = Daemon::start_in(dir.path(), &config);
    let t = d.login(CASHIER).await;
    // Silent, as many cheap printers are: assumed ready.
    wait_state(&d, &t, "printer-1", "ready").await;
    let started = std::time::Instant::now();
    let mut lines: Vec<Value> = (0..40)
        .map(|i| json!({"sku": format!("GIFT-{i:02}"), "qty": 1}))
        .collect();
    lines.push(json!({"sku": "MILK", "qty": 1}));
    lines.push(json!({"sku": "RICE", "qty": 1}));
    let (s, sale) = d
        .sale(&t, &json!({"lines": lines, "payments": cash(500_000)}))
        .await;
    assert_eq!(s, 201, "{sale}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the sale waited for the printer"
    );
    // The bytes sit in socket buffers: the printer is not "ready, handled 1" with the job
    // gone, but offline, not taking data, the job still queued.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let st = loop {
        let st = device_state(&d, &t, "printer-1").await;
        assert!(
            !(st["state"] == "ready" && st["handled"].as_u64().unwrap_or(0) > 0),
            "a receipt nobody read counted as printed: {st}; {} bytes unread, {} jobs queued",
            deaf.unread(),
            queued_jobs(dir.path())
        );
        if st["state"] == "offline" {
            break st;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never reported offline: {st}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        st["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("not taking data"),
        "{st}"
    );
    assert_eq!(st["handled"], 0, "{st}");
    assert_eq!(queued_jobs(dir.path()), 1, "the receipt left the queue");
    assert!(deaf.connections() >= 1);
    let unread = deaf.unread();

    // Power-cycled: the hung printer goes, a working one answers on the same address. The
    // receipt prints, once, and leaves the queue.
    deaf.stop().await;
    let printer = FakePrinter::start(Some(addr)).await;
    let paper = printer.wait_cuts(1, 40).await;
    assert!(
        has(&paper, &["纯牛奶 1L"]) && has(&paper, &["五常大米 5kg"]),
        "{:?}",
        paper.lines
    );
    let st = wait_state(&d, &t, "printer-1", "ready").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    eprintln!(
        "the receipt: {} bytes; the hung printer's stack had taken {unread}",
        printer.bytes().len()
    );
    assert_eq!(printer.paper().cuts, 1, "printed more than once");
    assert_eq!(queued_jobs(dir.path()), 0);
    let st2 = device_state(&d, &t, "printer-1").await;
    assert_eq!(st2["handled"], 1, "{st} {st2}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_printer_that_answered_its_status_and_falls_silent_is_offline_and_its_receipt_waits() {
    let dir = tempfile::tempdir().unwrap();
    let printer = FakePrinter::start(None).await;
    let d = Daemon::start_in(dir.path(), &printer_only(printer.addr));
    let t = d.login(CASHIER).await;
    // It answers DLE EOT.
    wait_state(&d, &t, "printer-1", "ready").await;
    // Its firmware hangs; its network stack still accepts, and a short receipt would fit in
    // what it takes without reading: the silence, not the socket, tells.
    printer.set_hung(true);
    let (s, sale) = d
        .sale(
            &t,
            &json!({"lines": [{"sku": "MILK", "qty": 1}], "payments": cash(2_000)}),
        )
        .await;
    assert_eq!(s, 201, "{sale}");
    let st = wait_state_for(&d, &t, "printer-1", "offline", 30).await;
    assert!(
        st["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("no longer answers"),
        "{st}"
    );
    assert_eq!(st["handled"], 0, "{st}");
    assert_eq!(queued_jobs(dir.path()), 1, "the receipt left the queue");

    printer.set_hung(false);
    let paper = printer.wait_cuts(1, 40).await;
    assert!(has(&paper, &["纯牛奶 1L"]), "{:?}", paper.lines);
    wait_state(&d, &t, "printer-1", "ready").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(printer.paper().cuts, 1, "printed more than once");
    assert_eq!(queued_jobs(dir.path()), 0);
}

async fn audit_actions(d: &Daemon) -> Vec<Value> {
    let admin = d.login(common::ADMIN).await;
    let (s, v) = d.get(&admin, "/v1/audit?limit=1000").await;
    assert_eq!(s, 200, "{v}");
    v["entries"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drawer_opening_that_waited_too_long_for_its_printer_is_dropped_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    // A port where no printer listens yet.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let d = Daemon::start_in(dir.path(), &printer_only(addr));
    let tm = d.login(MANAGER).await;
    let (s, q) = d
        .post(&tm, "/v1/devices/printer-1/drawer", &json!({}))
        .await;
    assert_eq!(s, 202, "{q}");
    let config = d.config.clone();
    d.terminate();
    // The printer stays off for three minutes (aged in the journal rather than waited for).
    let long_ago = (chrono::Utc::now() - chrono::Duration::minutes(3)).to_rfc3339();
    let c = rusqlite::Connection::open(dir.path().join("data/journal.sqlite3")).unwrap();
    let n = c
        .execute(
            "UPDATE print_jobs SET created_at = ?1 WHERE kind = 'drawer'",
            [&long_ago],
        )
        .unwrap();
    assert_eq!(n, 1);
    drop(c);

    let printer = FakePrinter::start(Some(addr)).await;
    let d = Daemon::start_with(dir.path(), &config);
    let t = d.login(CASHIER).await;
    wait_state(&d, &t, "printer-1", "ready").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        printer.paper().drawer_kicks.is_empty(),
        "a request three minutes old opened the drawer"
    );
    let audit = audit_actions(&d).await;
    let expired = audit
        .iter()
        .find(|e| e["action"] == "drawer.expired")
        .unwrap_or_else(|| panic!("no drawer.expired in the audit log: {audit:?}"));
    assert_eq!(expired["target"], "printer-1");
    assert_eq!(expired["detail"]["queued_at"], long_ago.as_str());
    assert!(d.log_text().contains("drawer opening waited too long"));
    assert_eq!(device_state(&d, &t, "printer-1").await["rejected"], 1);

    // One asked for now opens it, once.
    let tm = d.login(MANAGER).await;
    let (s, q) = d
        .post(&tm, "/v1/devices/printer-1/drawer", &json!({}))
        .await;
    assert_eq!(s, 202, "{q}");
    for _ in 0..400 {
        if !printer.paper().drawer_kicks.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(printer.paper().drawer_kicks.len(), 1);
}

/// A FIFO standing in for `/dev/usb/lp0`. The test holds both ends (so the daemon's open never
/// waits) and reads what the "printer" takes; a full pipe is a printer that stopped taking
/// data (out of paper).
struct LpFifo {
    path: std::path::PathBuf,
    holder: std::fs::File,
    /// Filler bytes still in the pipe, ahead of what the daemon wrote.
    filler: std::cell::Cell<usize>,
}

impl LpFifo {
    fn new(dir: &Path) -> LpFifo {
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join("lp0");
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let holder = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .unwrap();
        LpFifo {
            path,
            holder,
            filler: std::cell::Cell::new(0),
        }
    }

    /// Fills the pipe (the test has read all before): the printer stops taking data.
    fn stall(&self) {
        use std::io::Write;
        let filler = [b' '; 4096];
        while let Ok(n) = (&self.holder).write(&filler) {
            self.filler.set(self.filler.get() + n);
        }
    }

    /// What the printer took since the last call (the filler left out).
    fn take(&self) -> Vec<u8> {
        use std::io::Read;
        let mut got = Vec::new();
        let mut buf = [0u8; 65536];
        while let Ok(n) = (&self.holder).read(&mut buf) {
            if n == 0 {
                break;
            }
            let skip = self.filler.get().min(n);
            self.filler.set(self.filler.get() - skip);
            got.extend_from_slice(&buf[skip..n]);
        }
        got
    }

    /// Descriptors `pid` has open on the pipe.
    fn fds_of(&self, pid: u32) -> usize {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| std::fs::read_link(e.path()).ok().as_deref() == Some(&self.path))
                    .count()
            })
            .unwrap_or(0)
    }
}

fn threads_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Drains the pipe until `cuts` receipts came out (at most `secs`), then a second more.
async fn drain_receipts(lp: &LpFifo, got: &mut Vec<u8>, cuts: usize, secs: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while storebox::devices::decode::decode(got).cuts < cuts && std::time::Instant::now() < deadline
    {
        got.extend(lp.take());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let more = std::time::Instant::now() + Duration::from_secs(1);
    while std::time::Instant::now() < more {
        got.extend(lp.take());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_usb_printer_that_stops_taking_data_prints_the_receipt_once_when_it_takes_data_again() {
    let dir = tempfile::tempdir().unwrap();
    let lp = LpFifo::new(dir.path());
    let cfg = format!(
        r#"
[[devices]]
id = "printer-1"
kind = "printer"
terminal = "pos-1"
transport = "file"
path = "{}"
"#,
        lp.path.display()
    );
    let mut d = Daemon::start_in(dir.path(), &cfg);
    let pid = d.child.id();
    let t = d.login(CASHIER).await;
    wait_state(&d, &t, "printer-1", "ready").await;
    let threads = threads_of(pid);

    // Out of paper: the printer takes nothing.
    lp.stall();
    let (s, sale) = d
        .sale(
            &t,
            &json!({"lines": [{"sku": "MILK", "qty": 1}], "payments": cash(2_000)}),
        )
        .await;
    assert_eq!(s, 201, "{sale}");
    wait_state(&d, &t, "printer-1", "offline").await;
    // It stays offline while stuck: not retried (no second copy, no other descriptor, no
    // thread per attempt), not reported ready before a byte went.
    let until = std::time::Instant::now() + Duration::from_secs(14);
    while std::time::Instant::now() < until {
        let s = device_state(&d, &t, "printer-1").await;
        assert_eq!(s["state"], "offline", "{s}");
        assert!(
            lp.fds_of(pid) <= 1,
            "{} descriptors on the printer",
            lp.fds_of(pid)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let off = device_state(&d, &t, "printer-1").await;
    assert!(
        off["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("not taking data"),
        "{off}"
    );
    assert!(
        threads_of(pid) <= threads + 3,
        "threads: {} at start, {} now",
        threads,
        threads_of(pid)
    );
    let alerts = |d: &Daemon| {
        d.log_text()
            .lines()
            .filter(|l| l.contains("device not ready") && l.contains("printer-1"))
            .count()
    };
    assert_eq!(alerts(&d), 1, "{}", d.log_text());

    // Paper back in: the receipt comes out once, with its drawer kick (still within two
    // minutes), and the printer is ready again.
    let mut got = Vec::new();
    drain_receipts(&lp, &mut got, 1, 15).await;
    wait_state(&d, &t, "printer-1", "ready").await;
    drain_receipts(&lp, &mut got, 2, 3).await;
    let paper = storebox::devices::decode::decode(&got);
    assert_eq!(paper.cuts, 1, "printed {} times", paper.cuts);
    assert_eq!(paper.drawer_kicks.len(), 1);
    assert!(has(&paper, &["纯牛奶 1L"]), "{:?}", paper.lines);

    // Stuck again, and the daemon is stopped: it stops at once; the receipt stays queued
    // and prints, once, after the restart.
    lp.stall();
    let (s, _) = d
        .sale(
            &t,
            &json!({"lines": [{"sku": "RICE", "qty": 1}], "payments": cash(10_000)}),
        )
        .await;
    assert_eq!(s, 201);
    wait_state(&d, &t, "printer-1", "offline").await;
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let stop = std::time::Instant::now();
    let status = loop {
        if let Ok(Some(st)) = d.child.try_wait() {
            break st;
        }
        assert!(
            stop.elapsed() < Duration::from_secs(10),
            "a stuck printer holds up shutdown"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
    assert_eq!(
        storebox::devices::decode::decode(&lp.take()).cuts,
        0,
        "nothing of it went"
    );
    let d = Daemon::start_with(dir.path(), &d.config.clone());
    let mut got = Vec::new();
    drain_receipts(&lp, &mut got, 1, 15).await;
    drain_receipts(&lp, &mut got, 2, 2).await;
    let paper = storebox::devices::decode::decode(&got);
    assert_eq!(paper.cuts, 1, "printed {} times", paper.cuts);
    assert!(has(&paper, &["五常大米 5kg"]), "{:?}", paper.lines);
    drop(d);
}

/// A printer configured without a drawer (`drawer_pin = 0`): asking it to open one is refused,
/// not answered 202 and audited as opened while nothing happens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_the_drawer_of_a_printer_without_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let extra = format!("{}drawer_pin = 0\n", printer_only(addr));
    let d = Daemon::start_in(dir.path(), &extra);
    let tm = d.login(MANAGER).await;
    let (s, v) = d
        .post(&tm, "/v1/devices/printer-1/drawer", &json!({}))
        .await;
    assert_eq!((s, common::code(&v)), (422, "no_drawer"), "{v}");
    assert_eq!(queued_jobs(dir.path()), 0);
    let opened = audit_actions(&d)
        .await
        .iter()
        .filter(|e| e["action"] == "drawer.open")
        .count();
    assert_eq!(opened, 0);
    d.terminate();
}

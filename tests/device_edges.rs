//! Device edge cases on real transports: a magstripe reader that sends a whole track 1 (and
//! track 2) line, a scanner that ends its codes with CR LF or LF while the config says CR, a
//! scanner unplugged in the middle of a code, and a receipt whose printing cannot be recorded in
//! the journal.

mod common;

use std::path::Path;
use std::time::Duration;

use common::devices::{device_state, printer_only, wait_state};
use common::hw::{Events, FakePrinter, Pty, point};
use common::{CASHIER, Daemon, cash};
use serde_json::json;

fn inputs_config(dir: &Path) -> String {
    format!(
        r#"
[[devices]]
id = "scanner-1"
kind = "scanner"
terminal = "pos-1"
transport = "serial"
path = "{scanner}"
suffix = "cr"

[[devices]]
id = "reader-1"
kind = "card_reader"
terminal = "pos-1"
transport = "serial"
path = "{reader}"
suffix = "cr"
"#,
        scanner = dir.join("scanner").display(),
        reader = dir.join("reader").display(),
    )
}

/// A store with a scanner and a card reader on pseudo-terminals ([`inputs_config`]), the
/// device `ready` open, and the cashier's event stream.
struct Inputs {
    _dir: tempfile::TempDir,
    d: Daemon,
    t: String,
    scanner: Pty,
    reader: Pty,
    events: Events,
}

async fn inputs(ready: &str) -> Inputs {
    let dir = tempfile::tempdir().unwrap();
    let (reader, scanner) = (Pty::open(), Pty::open());
    point(&dir.path().join("reader"), &reader.slave);
    point(&dir.path().join("scanner"), &scanner.slave);
    let d = Daemon::start_in(dir.path(), &inputs_config(dir.path()));
    let t = d.login(CASHIER).await;
    wait_state(&d, &t, ready, "ready").await;
    let events = Events::open(&d.client, &d.base, &t).await;
    Inputs {
        _dir: dir,
        d,
        t,
        scanner,
        reader,
        events,
    }
}

/// `n` events of `kind` reached the terminal, and `device` counts `n` handled, none rejected.
async fn all_read(d: &Daemon, t: &str, events: &Events, kind: &str, device: &str, n: u64) {
    assert_eq!(events.of(kind).len() as u64, n, "{:?}", events.all());
    let st = device_state(d, t, device).await;
    assert_eq!(
        (st["handled"].as_u64(), st["rejected"].as_u64()),
        (Some(n), Some(0)),
        "{st}"
    );
}

/// A bank-style member card's track 1 is up to 79 characters (ISO 7813: PAN, a 26-character
/// name field, expiry, service code, discretionary data); USB magstripe readers send it with
/// track 2 on one line. The swipe must find the member, not be rejected as "too long".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_magstripe_track_finds_the_member() {
    // Every field bound: the directory and the other port live as long as the test.
    let Inputs {
        _dir,
        d,
        t,
        scanner: _scanner,
        mut reader,
        events,
    } = inputs("reader-1").await;
    let m = d
        .register(
            &t,
            "叶尤金",
            "13987654321",
            json!({"card_no": "4815881002861896"}),
        )
        .await;

    let track1 = "%B4815881002861896^YATES/EUGENE JOHN         ^37829821000123456789?";
    let track2 = ";4815881002861896=37829821000123456789?";
    assert_eq!(track1.len(), 67);
    reader.send(format!("{track1}\r").as_bytes());
    let card = events.wait("card", 5, |_| true).await;
    assert_eq!(card["card_no"], "4815881002861896", "{card}");
    assert_eq!(card["member"]["id"], json!(m), "{card}");

    reader.send(format!("{track1}{track2}\r").as_bytes());
    tokio::time::sleep(Duration::from_millis(500)).await;
    all_read(&d, &t, &events, "card", "reader-1", 2).await;
}

/// Many scanners end a code with CR LF. With the default `suffix = "cr"` the LF after each CR
/// is not a read cut short: good scans must not be counted as rejected input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_feed_after_the_suffix_is_not_counted_as_garbage() {
    let Inputs {
        _dir,
        d,
        t,
        mut scanner,
        reader: _reader,
        events,
    } = inputs("scanner-1").await;
    for _ in 0..3 {
        scanner.send(b"6901234567892\r\n");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    all_read(&d, &t, &events, "scan", "scanner-1", 3).await;
}

/// A scanner set to end its codes with LF alone (another model swapped in) on a port
/// configured `cr`: every scan sat unfinished until the 300 ms gap dropped it as garbage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scanner_ending_its_codes_with_a_line_feed_is_read_on_a_cr_port() {
    let Inputs {
        _dir,
        d,
        t,
        mut scanner,
        reader: _reader,
        events,
    } = inputs("scanner-1").await;
    scanner.send(b"6901234567892\n");
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Two codes in one read, one ended by LF, the next by CR LF.
    scanner.send(b"6901234567892\n6901234567892\r\n");
    tokio::time::sleep(Duration::from_millis(500)).await;
    all_read(&d, &t, &events, "scan", "scanner-1", 3).await;
}

/// A receipt went out but the journal could not record it (here: another process holds the
/// journal's write lock; on a store box, a full or failing disk). The printer must not print
/// the same receipt again and again while the journal cannot be written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_whose_printing_cannot_be_recorded_is_not_printed_again_and_again() {
    let dir = tempfile::tempdir().unwrap();
    let printer = FakePrinter::start(None).await;
    let config = printer_only(printer.addr);
    let d = Daemon::start_in(dir.path(), &config);
    let t = d.login(CASHIER).await;
    wait_state(&d, &t, "printer-1", "ready").await;
    // Out of paper: the receipt waits in the queue.
    printer.set_paper_out(true);
    let (s, sale) = d
        .sale(
            &t,
            &json!({"lines": [{"sku": "MILK", "qty": 1}], "payments": cash(2_000)}),
        )
        .await;
    assert_eq!(s, 201, "{sale}");
    wait_state(&d, &t, "printer-1", "paper_out").await;

    // The journal cannot be written from now on.
    let lock = rusqlite::Connection::open(dir.path().join("data/journal.sqlite3")).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    printer.set_paper_out(false);
    printer.wait_cuts(1, 10).await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    let while_locked = printer.paper().cuts;
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        (while_locked, printer.paper().cuts),
        (1, 1),
        "the same receipt printed again while the journal could not be written"
    );
    let c = rusqlite::Connection::open(dir.path().join("data/journal.sqlite3")).unwrap();
    let queued: i64 = c
        .query_row("SELECT count(*) FROM print_jobs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(queued, 0, "the job stayed queued once the journal was back");
}

/// A serial receipt printer on a pseudo-terminal that never answers DLE EOT (many cheap ones
/// do not) but sent one XON — software flow control's "ready for data" — when it first read
/// something. The test keeps the master; what the printer took is in `received`.
struct XonPrinter {
    slave: std::path::PathBuf,
    received: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl XonPrinter {
    fn open() -> XonPrinter {
        use std::io::{Read, Write};
        let mut pty = Pty::open();
        let slave = pty.slave.clone();
        // The master goes to the reader thread below.
        let mut master = pty.take_master();
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = received.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut sent_xon = false;
            loop {
                // EIO while no one has the slave open (before the daemon opens it, between
                // reopens): wait for it.
                let n = match master.read(&mut buf) {
                    Ok(n) if n > 0 => n,
                    _ => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
                if !sent_xon {
                    sent_xon = true;
                    let _ = master.write_all(&[0x11]);
                }
            }
        });
        XonPrinter { slave, received }
    }

    fn cuts(&self) -> usize {
        storebox::devices::decode::decode(&self.received.lock().unwrap()).cuts
    }
}

/// One byte that is not a status reply (an XON) must not make storebox believe the printer
/// answers DLE EOT: it would then take the printer's usual silence for a hang, report it
/// offline and hold every receipt until a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_printer_that_never_answers_its_status_is_not_taken_for_hung_after_an_xon() {
    let dir = tempfile::tempdir().unwrap();
    let printer = XonPrinter::open();
    point(&dir.path().join("printer"), &printer.slave);
    let config = format!(
        r#"
[[devices]]
id = "printer-1"
kind = "printer"
terminal = "pos-1"
transport = "serial"
path = "{}"
"#,
        dir.path().join("printer").display()
    );
    let d = Daemon::start_in(dir.path(), &config);
    let t = d.login(CASHIER).await;
    wait_state(&d, &t, "printer-1", "ready").await;
    let (s, sale) = d
        .sale(
            &t,
            &json!({"lines": [{"sku": "MILK", "qty": 1}], "payments": cash(2_000)}),
        )
        .await;
    assert_eq!(s, 201, "{sale}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while printer.cuts() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the receipt never printed: {}",
            device_state(&d, &t, "printer-1").await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let st = wait_state(&d, &t, "printer-1", "ready").await;
    assert_eq!(st["handled"], 1, "{st}");
}

/// A scanner unplugged in the middle of a code (the cable pulled as the code was read): the
/// half line is a read cut short, counted as rejected like one the 300 ms gap drops — not
/// lost without a trace — and the next scan, once the scanner is back, arrives alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_cut_off_by_an_unplug_is_counted_as_rejected() {
    let Inputs {
        _dir,
        d,
        t,
        mut scanner,
        reader: _reader,
        events,
    } = inputs("scanner-1").await;
    scanner.send(b"690123");
    tokio::time::sleep(Duration::from_millis(50)).await;
    scanner.close();
    wait_state(&d, &t, "scanner-1", "offline").await;
    let mut again = Pty::open();
    point(&_dir.path().join("scanner"), &again.slave);
    wait_state(&d, &t, "scanner-1", "ready").await;
    again.send(b"6901234567892\r");
    let scan = events.wait("scan", 5, |_| true).await;
    assert_eq!(scan["code"], "6901234567892", "{scan}");
    let st = device_state(&d, &t, "scanner-1").await;
    assert_eq!(
        (st["handled"].as_u64(), st["rejected"].as_u64()),
        (Some(1), Some(1)),
        "{st}"
    );
}

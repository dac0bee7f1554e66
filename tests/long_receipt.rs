//! A long receipt on a slow printer: a serial printer at 9600 baud takes about a kilobyte a
//! second, so a cart of a few hundred lines takes it longer to take than one write is given.
//! As long as it keeps taking bytes it is printing, not hung, and a stop does not cut it off.

mod common;

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::devices::{device_state, wait_state};
use common::hw::{Pty, point};
use common::{CASHIER, Daemon, cash};
use serde_json::{Value, json};

/// A serial receipt printer on a pseudo-terminal that takes `rate` bytes a second, as a slow
/// line does, and never answers DLE EOT. What it took is in `received`.
struct SlowPrinter {
    slave: std::path::PathBuf,
    received: Arc<Mutex<Vec<u8>>>,
}

impl SlowPrinter {
    fn open(rate: usize) -> SlowPrinter {
        let mut pty = Pty::open();
        let slave = pty.slave.clone();
        let mut master = pty.take_master();
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        std::thread::spawn(move || {
            // A tenth of a second's worth at a time, paced from the first byte of a run of
            // reads (a sleep that overran is caught up; time spent idle gives no credit).
            let mut buf = vec![0u8; (rate / 10).max(1)];
            let mut run: Option<(Instant, usize)> = None;
            loop {
                match master.read(&mut buf) {
                    Ok(n) if n > 0 => {
                        sink.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .extend_from_slice(&buf[..n]);
                        let (start, taken) = run.get_or_insert((Instant::now(), 0));
                        *taken += n;
                        let due = *start + Duration::from_secs_f64(*taken as f64 / rate as f64);
                        let now = Instant::now();
                        if due > now {
                            std::thread::sleep(due - now);
                        } else if now - due > Duration::from_millis(200) {
                            run = None;
                        }
                    }
                    // EIO while nobody has the slave open: wait for it.
                    _ => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        SlowPrinter { slave, received }
    }

    fn paper(&self) -> storebox::devices::decode::Paper {
        storebox::devices::decode::decode(&self.received.lock().unwrap())
    }
}

/// A store whose printer (`printer-1`, serial, at `dir/printer`) is ready, and a cash sale of
/// `n` gift boxes, one line each with a long Chinese name: a receipt of about 110 bytes a line.
async fn sell_gifts(dir: &std::path::Path, n: usize) -> (Daemon, String) {
    let mut config = format!(
        r#"
[[devices]]
id = "printer-1"
kind = "printer"
terminal = "pos-1"
transport = "serial"
path = "{}"
"#,
        dir.join("printer").display()
    );
    for i in 0..n {
        config.push_str(&format!(
            "\n[[products]]\nsku = \"GIFT-{i:03}\"\nname = \"有机纯牛奶 250ml×12盒 礼盒装 内蒙古大草原牧场直供 新鲜日期 {i:03}\"\nprice = 9990\n"
        ));
    }
    let d = Daemon::start_in(dir, &config);
    let t = d.login(CASHIER).await;
    wait_state(&d, &t, "printer-1", "ready").await;
    let lines: Vec<Value> = (0..n)
        .map(|i| json!({"sku": format!("GIFT-{i:03}"), "qty": 1}))
        .collect();
    let (s, sale) = d
        .sale(&t, &json!({"lines": lines, "payments": cash(5_000_000)}))
        .await;
    assert_eq!(s, 201, "{sale}");
    (d, t)
}

/// 500 lines (about 58 KB of receipt) to a printer taking 5 KB a second: about 12 s of
/// printing, most of it after the pseudo-terminal's buffer (about 16 KB) is full. The receipt
/// prints once, whole, and the printer is never taken for offline. (It was given 5 s for the
/// whole write, then reported offline, its output flushed and the job sent again from the top:
/// the first part of the receipt printed again and again, the queue stuck behind it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_receipt_on_a_slow_serial_printer_prints_once() {
    let dir = tempfile::tempdir().unwrap();
    let printer = SlowPrinter::open(5_000);
    point(&dir.path().join("printer"), &printer.slave);
    let (d, t) = sell_gifts(dir.path(), 500).await;

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = device_state(&d, &t, "printer-1").await;
        assert_ne!(
            st["state"],
            "offline",
            "a printer taking the receipt was reported offline after {} bytes: {st}",
            printer.received.lock().unwrap().len()
        );
        if printer.paper().cuts >= 1 && st["handled"] == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the receipt never finished: {st}; {} bytes taken",
            printer.received.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let paper = printer.paper();
    eprintln!(
        "the receipt: {} bytes",
        printer.received.lock().unwrap().len()
    );
    assert_eq!(paper.cuts, 1);
    for i in [0, 250, 499] {
        let name = format!("新鲜日期 {i:03}");
        let n = paper.lines.iter().filter(|l| l.contains(&name)).count();
        assert_eq!(n, 1, "line {name} printed {n} times");
    }
}

/// A stop (SIGTERM, as `systemctl stop` sends it) while a long receipt is still being handed to
/// a slow serial printer: the printer is printing it, so the receipt is seen through — written
/// to the end while the printer takes it — and not printed again after the restart. (Before, a
/// stop that came while the receipt was still being written, not yet drained, dropped the
/// unsent rest: the customer got the head of the receipt, and after the restart the whole
/// receipt again.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_while_a_long_receipt_is_written_does_not_print_it_again_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let printer = SlowPrinter::open(5_000);
    point(&dir.path().join("printer"), &printer.slave);
    let (d, _t) = sell_gifts(dir.path(), 300).await;
    // The pseudo-terminal's buffer is full and the printer is taking the receipt: most of it
    // is still to be written when the stop comes.
    let taken = || printer.received.lock().unwrap().len();
    let deadline = Instant::now() + Duration::from_secs(20);
    while taken() < 20_000 {
        assert!(Instant::now() < deadline, "the receipt never came");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let config_path = d.config.clone();
    assert_eq!(d.terminate(), Some(0));
    let at_stop = taken();

    let d = Daemon::start_with(dir.path(), &config_path);
    let t = d.login(CASHIER).await;
    wait_state(&d, &t, "printer-1", "ready").await;
    // Whatever the restart sends, the printer has it within a few seconds at 5 KB/s.
    let mut last = taken();
    loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let now = taken();
        if now == last {
            break;
        }
        last = now;
    }
    let paper = printer.paper();
    eprintln!("{at_stop} bytes at the stop, {last} in all");
    for i in [0, 150, 299] {
        let name = format!("新鲜日期 {i:03}");
        let n = paper.lines.iter().filter(|l| l.contains(&name)).count();
        assert_eq!(n, 1, "line {name} printed {n} times");
    }
    assert_eq!(paper.cuts, 1);
    assert_eq!(paper.drawer_kicks.len(), 1);
    assert_eq!(d.terminate(), Some(0));
}

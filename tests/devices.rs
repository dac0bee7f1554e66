//! Devices with real transports: scanners and card readers on pseudo-terminals, a receipt
//! printer on a local TCP socket whose bytes are decoded back into what the paper shows, and a
//! FIFO standing in for a USB printer (`/dev/usb/lp*`) that stops taking data.

mod common;

use std::path::Path;
use std::time::Duration;

use common::hw::{DeafPrinter, Events, FakePrinter, Pty, point};
use common::{CASHIER, Daemon, MANAGER, cash};
use serde_json::{Value, json};

fn devices_config(dir: &Path, printer: std::net::SocketAddr, paper: &str) -> String {
    format!(
        r#"
[[devices]]
id = "scanner-1"
kind = "scanner"
terminal = "pos-1"
transport = "serial"
path = "{scanner}"
baud = 9600
suffix = "cr"

[[devices]]
id = "reader-1"
kind = "card_reader"
terminal = "pos-1"
transport = "serial"
path = "{reader}"
suffix = "cr"

[[devices]]
id = "printer-1"
kind = "printer"
terminal = "pos-1"
transport = "tcp"
address = "{printer}"
paper = "{paper}"
header_lines = ["南京西路1266号"]
qr = "https://hq.example.cn/r/{{sale_id}}"

[[products]]
sku = "GIFT-BOX"
name = "有机纯牛奶 250ml×12盒 礼盒装 新鲜直达"
price = 9990
"#,
        scanner = dir.join("scanner").display(),
        reader = dir.join("reader").display(),
    )
}

async fn device_state(d: &Daemon, t: &str, id: &str) -> Value {
    let (_, v) = d.get(t, "/v1/devices").await;
    v["devices"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["id"] == id).cloned())
        .unwrap_or(Value::Null)
}

async fn wait_state_for(d: &Daemon, t: &str, id: &str, state: &str, secs: u64) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let s = device_state(d, t, id).await;
        if s["state"] == state {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{id} never became {state}: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_state(d: &Daemon, t: &str, id: &str, state: &str) -> Value {
    for _ in 0..400 {
        let s = device_state(d, t, id).await;
        if s["state"] == state {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "{id} never became {state}: {}",
        device_state(d, t, id).await
    );
}

async fn login_pos2(d: &Daemon) -> String {
    let r: Value = d
        .client
        .post(d.url("/v1/sessions"))
        .bearer_auth("test-terminal-token-0002")
        .json(&json!({"staff_no": "1001", "pin": "1111"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["token"].as_str().unwrap().to_string()
}

struct Rig {
    _dir: tempfile::TempDir,
    d: Daemon,
    scanner: Pty,
    reader: Pty,
    printer: FakePrinter,
    t: String,
}

async fn rig(paper: &str) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let scanner = Pty::open();
    let reader = Pty::open();
    point(&dir.path().join("scanner"), &scanner.slave);
    point(&dir.path().join("reader"), &reader.slave);
    let printer = FakePrinter::start(None).await;
    let d = Daemon::start_in(dir.path(), &devices_config(dir.path(), printer.addr, paper));
    let t = d.login(CASHIER).await;
    wait_state(&d, &t, "scanner-1", "ready").await;
    wait_state(&d, &t, "reader-1", "ready").await;
    Rig {
        _dir: dir,
        d,
        scanner,
        reader,
        printer,
        t,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_reaches_its_terminal_with_the_product_and_garbage_does_not() {
    let mut r = rig("80mm").await;
    let pos1 = Events::open(&r.d.client, &r.d.base, &r.t).await;
    let pos2 = Events::open(&r.d.client, &r.d.base, &login_pos2(&r.d).await).await;

    r.scanner.send(b"\x00\x01\xfe\xff\r"); // line noise
    r.scanner.send(b"6901234567893\r"); // a misread: wrong check digit
    r.scanner.send(b"\r"); // empty
    r.scanner.send(b"6901234567892\r");
    let scan = pos1.wait("scan", 5, |v| v["code"] == "6901234567892").await;
    assert_eq!(scan["symbology"], "ean13");
    assert_eq!(scan["device"], "scanner-1");
    assert_eq!(scan["terminal"], "pos-1");
    assert_eq!(scan["product"]["sku"], "TEA");
    assert_eq!(scan["product"]["name"], "西湖龙井 250g");
    assert_eq!(scan["product"]["price"], 25000);

    // An unknown but valid code still arrives, without a product.
    r.scanner.send(b"ABC-123\r");
    let other = pos1.wait("scan", 5, |v| v["code"] == "ABC-123").await;
    assert_eq!(other["symbology"], "other");
    assert!(other["product"].is_null());

    let scans: Vec<Value> = pos1
        .all()
        .into_iter()
        .filter(|(k, _)| k == "scan")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(scans.len(), 2, "garbage became events: {scans:?}");
    let s = device_state(&r.d, &r.t, "scanner-1").await;
    assert_eq!(s["rejected"], 3);
    assert_eq!(s["handled"], 2);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        pos2.all().iter().all(|(k, _)| k != "scan"),
        "another terminal got pos-1's scans"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unplugged_scanner_goes_offline_and_comes_back() {
    let mut r = rig("80mm").await;
    let events = Events::open(&r.d.client, &r.d.base, &r.t).await;
    r.scanner.close();
    let offline = wait_state(&r.d, &r.t, "scanner-1", "offline").await;
    assert!(offline["last_error"].is_string());
    events
        .wait("device", 5, |v| {
            v["device"] == "scanner-1" && v["state"] == "offline"
        })
        .await;

    // Plugged back: a new pty under the same stable name.
    let mut again = Pty::open();
    point(&r._dir.path().join("scanner"), &again.slave);
    wait_state(&r.d, &r.t, "scanner-1", "ready").await;
    events
        .wait("device", 5, |v| {
            v["device"] == "scanner-1" && v["state"] == "ready"
        })
        .await;
    again.send(b"6901234567915\r");
    let scan = events
        .wait("scan", 5, |v| v["code"] == "6901234567915")
        .await;
    assert_eq!(scan["product"]["sku"], "MILK");
    assert!(r.d.log_text().contains("device not ready"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_swipe_finds_the_member() {
    let mut r = rig("80mm").await;
    let events = Events::open(&r.d.client, &r.d.base, &r.t).await;
    let m =
        r.d.register(
            &r.t,
            "刘洋",
            "13987654321",
            json!({"card_no": "6222020000001234"}),
        )
        .await;
    r.reader.send(b";6222020000001234=25121010000?\r");
    let card = events.wait("card", 5, |_| true).await;
    assert_eq!(card["member"]["id"], json!(m));
    assert_eq!(card["member"]["name"], "刘洋");
    assert_eq!(card["member"]["phone"], "139****4321");
    assert_eq!(card["unknown_card"], false);

    r.reader.send(b"04A1B2C3D4\r");
    let unknown = events
        .wait("card", 5, |v| v["card_no"] == "04A1B2C3D4")
        .await;
    assert_eq!(unknown["unknown_card"], true);
    assert!(unknown["member"].is_null());
}

/// Registers a member and brings them to 银卡会员 (¥3,000 spent, receipt not printed).
async fn silver_member(d: &Daemon, t: &str) -> String {
    let m = d.register(t, "陈静", "13912345678", json!({})).await;
    let (s, _) = d
        .sale(t, &json!({"member_id": m, "lines": [{"sku": "TEA", "qty": 12}], "payments": [{"method": "card", "amount": 300_000}], "print": false}))
        .await;
    assert_eq!(s, 201);
    m
}

fn has(paper: &storebox::devices::decode::Paper, parts: &[&str]) -> bool {
    paper
        .lines
        .iter()
        .any(|l| parts.iter().all(|p| l.contains(p)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cash_sale_prints_a_receipt_then_opens_the_drawer() {
    for (paper_width, columns) in [("80mm", 48), ("58mm", 32)] {
        let r = rig(paper_width).await;
        let m = silver_member(&r.d, &r.t).await;
        let (s, sale) = r
            .d
            .sale(&r.t, &json!({"member_id": m, "lines": [{"sku": "TEA", "qty": 1}, {"sku": "MILK", "qty": 2}, {"sku": "GIFT-BOX", "qty": 1}], "payments": cash(40_000)}))
            .await;
        assert_eq!(s, 201);
        let paper = r.printer.wait_cuts(1, 10).await;
        let text = paper.lines.join("\n");
        assert!(has(&paper, &["上海南京西路店"]), "{text}");
        assert!(
            has(&paper, &["西湖龙井 250g"]) && has(&paper, &["纯牛奶 1L"]),
            "{text}"
        );
        assert!(has(&paper, &["139****5678"]), "{text}");
        assert!(!text.contains("13912345678"), "whole phone on paper");
        assert!(has(&paper, &["银卡会员"]), "{text}");
        let earned = sale["points_earned"].as_i64().unwrap();
        let balance = sale["member"]["points"].as_i64().unwrap();
        assert!(earned > 0);
        assert!(
            has(&paper, &["Points earned", &format!("+{earned}")]),
            "{text}"
        );
        assert!(
            has(&paper, &["Points balance", &balance.to_string()]),
            "{text}"
        );
        assert!(has(&paper, &["合计 Total", "￥375.70"]), "{text}");
        assert!(has(&paper, &["找零 Change", "￥24.30"]), "{text}");
        // The long name is on paper whole: on one line at 80 mm, wrapped without loss at 58 mm.
        let long = "有机纯牛奶 250ml×12盒 礼盒装 新鲜直达";
        let at = paper
            .lines
            .iter()
            .position(|l| l.starts_with("有机纯牛奶"))
            .unwrap_or_else(|| panic!("{text}"));
        if columns == 48 {
            assert_eq!(paper.lines[at], long, "{text}");
        } else {
            assert_ne!(paper.lines[at], long, "58 mm must wrap: {text}");
            assert_eq!(
                format!("{}{}", paper.lines[at], paper.lines[at + 1]),
                long,
                "{text}"
            );
        }
        assert_eq!(paper.qr.len(), 1);
        assert!(paper.qr[0].ends_with(sale["id"].as_str().unwrap()));
        assert_eq!(paper.cuts, 1);
        assert_eq!(paper.drawer_kicks.len(), 1, "cash opens the drawer once");
        assert_eq!(
            paper.timeline.last(),
            Some(&storebox::devices::decode::Mark::DrawerKick(0)),
            "the drawer opens after the cut"
        );
        for (line, width) in paper.lines.iter().zip(&paper.line_widths) {
            assert!(*width <= columns, "{paper_width}: {width} columns: {line}");
        }
    }
}

/// The customer wants no receipt: a cash sale still opens the drawer (the change), a card sale
/// does nothing, and no paper comes out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cash_sale_without_a_receipt_still_opens_the_drawer() {
    let r = rig("80mm").await;
    let card = json!([{"method": "card", "amount": 1290}]);
    let (s, v) =
        r.d.sale(
            &r.t,
            &json!({"lines": [{"sku": "MILK", "qty": 1}], "payments": card, "print": false}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) =
        r.d.sale(
            &r.t,
            &json!({"lines": [{"sku": "MILK", "qty": 1}], "payments": cash(2_000), "print": false}),
        )
        .await;
    assert_eq!((s, v["change"].as_i64()), (201, Some(710)), "{v}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while r.printer.paper().drawer_kicks.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the drawer never opened"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Both jobs have been handed over (they go in order): one kick, no paper.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let paper = r.printer.paper();
    assert_eq!(paper.drawer_kicks.len(), 1);
    assert_eq!(paper.cuts, 0);
    assert!(
        paper.lines.iter().all(|l| l.trim().is_empty()),
        "{:?}",
        paper.lines
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_printer_that_is_down_never_fails_a_sale_and_prints_once_when_back() {
    let dir = tempfile::tempdir().unwrap();
    let scanner = Pty::open();
    let reader = Pty::open();
    point(&dir.path().join("scanner"), &scanner.slave);
    point(&dir.path().join("reader"), &reader.slave);
    // A port where no printer listens yet.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let d = Daemon::start_in(dir.path(), &devices_config(dir.path(), addr, "80mm"));
    let t = d.login(CASHIER).await;
    let started = std::time::Instant::now();
    let (s, sale) = d
        .sale(
            &t,
            &json!({"lines": [{"sku": "MILK", "qty": 1}], "payments": cash(2_000)}),
        )
        .await;
    assert_eq!(s, 201, "{sale}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the sale waited for the printer"
    );
    wait_state(&d, &t, "printer-1", "offline").await;

    let printer = FakePrinter::start(Some(addr)).await;
    let paper = printer.wait_cuts(1, 15).await;
    assert!(has(&paper, &["纯牛奶 1L"]));
    assert!(paper.drawer_kicks.len() <= 1);
    wait_state(&d, &t, "printer-1", "ready").await;
    // Whatever happens next, the receipt is not printed again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(printer.paper().cuts, 1, "printed more than once");

    // A reprint is asked for, and marked.
    let tm = d.login(MANAGER).await;
    let (s, q) = d
        .post(
            &tm,
            &format!("/v1/sales/{}/print", sale["id"].as_str().unwrap()),
            &json!({}),
        )
        .await;
    assert_eq!(s, 202, "{q}");
    let paper = printer.wait_cuts(2, 10).await;
    assert!(has(&paper, &["重打 REPRINT"]), "{:?}", paper.lines);
    assert_eq!(
        paper.drawer_kicks.len(),
        1,
        "a reprint does not open the drawer"
    );

    // Out of paper: jobs wait, the state says so, and they print when paper is back.
    printer.set_paper_out(true);
    let (s, _) = d
        .sale(
            &t,
            &json!({"lines": [{"sku": "RICE", "qty": 1}], "payments": cash(10_000)}),
        )
        .await;
    assert_eq!(s, 201);
    wait_state(&d, &t, "printer-1", "paper_out").await;
    printer.set_paper_out(false);
    let paper = printer.wait_cuts(3, 15).await;
    assert!(has(&paper, &["五常大米 5kg"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_scan_is_dropped_not_glued_to_the_next() {
    let mut r = rig("80mm").await;
    let events = Events::open(&r.d.client, &r.d.base, &r.t).await;
    r.scanner.send(b"69012"); // a read cut short (power blip, cable wiggle)
    tokio::time::sleep(Duration::from_secs(1)).await;
    r.scanner.send(b"6901234567892\r"); // a good scan, a second later
    let scan = events.wait("scan", 5, |_| true).await;
    assert_eq!(scan["code"], "6901234567892", "the good scan was lost");
    // A code whose bytes arrive in two reads a few milliseconds apart is still one code.
    r.scanner.send(b"690123");
    tokio::time::sleep(Duration::from_millis(20)).await;
    r.scanner.send(b"4567892\r");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let scans: Vec<Value> = events
        .all()
        .into_iter()
        .filter(|(k, _)| k == "scan")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(scans.len(), 2, "{scans:?}");
    assert!(
        scans.iter().all(|s| s["code"] == "6901234567892"),
        "{scans:?}"
    );
    let s = device_state(&r.d, &r.t, "scanner-1").await;
    assert_eq!(s["rejected"], 1, "{s}");
    assert_eq!(s["handled"], 2, "{s}");
}

fn printer_only(address: std::net::SocketAddr) -> String {
    format!(
        r#"
[[devices]]
id = "printer-1"
kind = "printer"
terminal = "pos-1"
transport = "tcp"
address = "{address}"
"#
    )
}

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

//! Devices with real transports: scanners and card readers on pseudo-terminals, a receipt
//! printer on a local TCP socket whose bytes are decoded back into what the paper shows, and a
//! FIFO standing in for a USB printer (`/dev/usb/lp*`) that stops taking data.

mod common;

use std::path::Path;
use std::time::Duration;

use common::devices::{device_state, has, wait_state};
use common::hw::{Events, FakePrinter, Pty, point};
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

    let scans: Vec<Value> = pos1.of("scan");
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

/// A refund prints its slip at the manager's terminal: what goes back and how, the sale it
/// refunds, the member's points; money back in cash opens the drawer, a card refund does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_prints_its_slip_and_a_cash_refund_opens_the_drawer() {
    let r = rig("58mm").await;
    let m = silver_member(&r.d, &r.t).await;
    let card = json!([{"method": "card", "amount": 2_580}]);
    let mut sales = Vec::new();
    for payments in [cash(2_580), card] {
        let (s, v) =
            r.d.sale(
                &r.t,
                &json!({"member_id": m, "lines": [{"sku": "MILK", "qty": 2}], "payments": payments, "print": false}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        sales.push(v);
    }
    // The cash sale's drawer opening (no receipt) has gone out before the refunds.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while r.printer.paper().drawer_kicks.is_empty() {
        assert!(std::time::Instant::now() < deadline, "no drawer opening");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tm = r.d.login(MANAGER).await;
    let mut refunds = Vec::new();
    for sale in &sales {
        let path = format!("/v1/sales/{}/refunds", sale["id"].as_str().unwrap());
        let (s, v) =
            r.d.post(&tm, &path, &json!({"reason": "变质 spoiled"}))
                .await;
        assert_eq!(s, 201, "{v}");
        refunds.push(v);
    }
    let paper = r.printer.wait_cuts(2, 10).await;
    let text = paper.lines.join("\n");
    assert_eq!(
        paper
            .lines
            .iter()
            .filter(|l| l.contains("退款单 REFUND"))
            .count(),
        2,
        "{text}"
    );
    assert!(has(&paper, &["退款合计 Refund total", "￥25.80"]), "{text}");
    assert!(has(&paper, &["现金 Cash", "￥25.80"]), "{text}");
    assert!(has(&paper, &["银行卡 Card", "￥25.80"]), "{text}");
    assert!(has(&paper, &["变质 spoiled"]), "{text}");
    let sale_no = format!("#{}", sales[0]["seq"]);
    assert!(has(&paper, &["原单号 Sale No.", &sale_no]), "{text}");
    assert!(has(&paper, &["139****5678"]), "{text}");
    let balance = refunds[1]["member"]["points"].as_i64().unwrap();
    assert!(
        has(&paper, &["积分余额 Points balance", &balance.to_string()]),
        "{text}"
    );
    // The sale's opening and the cash refund's, after its slip's cut; none for the card.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let paper = r.printer.paper();
    assert_eq!(paper.drawer_kicks.len(), 2, "{:?}", paper.timeline);
    use storebox::devices::decode::Mark;
    let marks: Vec<&Mark> = paper
        .timeline
        .iter()
        .filter(|m| matches!(m, Mark::Cut | Mark::DrawerKick(_)))
        .collect();
    assert!(
        matches!(
            marks.as_slice(),
            [
                Mark::DrawerKick(_),
                Mark::Cut,
                Mark::DrawerKick(_),
                Mark::Cut
            ]
        ),
        "{marks:?}"
    );

    // The cash refund's slip again (it jammed): marked, and the drawer stays shut. A refund
    // of another sale, or a body that is not the reprint's, is refused and prints nothing.
    let path = format!("/v1/sales/{}/print", sales[0]["id"].as_str().unwrap());
    let other = json!({"refund_id": refunds[1]["id"]});
    let (s, v) = r.d.post(&tm, &path, &other).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("refund_not_found")),
        "{v}"
    );
    let (s, v) =
        r.d.post(&tm, &path, &json!({"refund": refunds[0]["id"]}))
            .await;
    assert_eq!(s, 400, "{v}");
    let (s, v) =
        r.d.post(&tm, &path, &json!({"refund_id": refunds[0]["id"]}))
            .await;
    assert_eq!(s, 202, "{v}");
    let paper = r.printer.wait_cuts(3, 10).await;
    let last = paper.lines.iter().rposition(|l| l.contains("重打 REPRINT"));
    let last = last.unwrap_or_else(|| panic!("no reprint mark: {:?}", paper.lines));
    let slip = paper.lines[last..].join("\n");
    assert!(
        slip.contains("退款单 REFUND") && slip.contains("现金 Cash"),
        "{slip}"
    );
    assert!(
        !slip.contains("银行卡 Card"),
        "the other refund's slip: {slip}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let paper = r.printer.paper();
    assert_eq!(
        (paper.cuts, paper.drawer_kicks.len()),
        (3, 2),
        "{:?}",
        paper.timeline
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
    let scans: Vec<Value> = events.of("scan");
    assert_eq!(scans.len(), 2, "{scans:?}");
    assert!(
        scans.iter().all(|s| s["code"] == "6901234567892"),
        "{scans:?}"
    );
    let s = device_state(&r.d, &r.t, "scanner-1").await;
    assert_eq!(s["rejected"], 1, "{s}");
    assert_eq!(s["handled"], 2, "{s}");
}

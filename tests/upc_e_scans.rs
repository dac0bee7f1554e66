//! UPC-E, the short barcode of small American packs (cans, sweets): scanners send it by
//! default as eight digits — number system, six digits, check digit — and its check digit is
//! that of the UPC-A it stands for, not an EAN-8's. Product files hold the UPC-A (the GTIN).

mod common;

use std::time::Duration;

use common::devices::{device_state, wait_state};
use common::hw::{Events, Pty, point};
use common::{CASHIER, Daemon};

/// A Coca-Cola can: UPC-E `04963406` is UPC-A `049000006346`. Its scan reached nobody: the
/// EAN-8 check of its first seven digits is 0, so it was dropped as a misread and counted as
/// garbage, and the cashier had to type the code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_upc_e_scan_reaches_the_till_with_its_product() {
    let dir = tempfile::tempdir().unwrap();
    let scanner = Pty::open();
    point(&dir.path().join("scanner"), &scanner.slave);
    let mut scanner = scanner;
    let config = format!(
        r#"
[[devices]]
id = "scanner-1"
kind = "scanner"
terminal = "pos-1"
transport = "serial"
path = "{}"

[[products]]
sku = "COKE-330"
name = "可口可乐 330ml 罐装 (美国)"
price = 450
barcodes = ["049000006346"]
"#,
        dir.path().join("scanner").display()
    );
    let d = Daemon::start_in(dir.path(), &config);
    let t = d.login(CASHIER).await;
    wait_state(&d, &t, "scanner-1", "ready").await;
    let events = Events::open(&d.client, &d.base, &t).await;

    scanner.send(b"04963406\r");
    let scan = events.wait("scan", 5, |_| true).await;
    assert_eq!(scan["code"], "04963406", "{scan}");
    assert_eq!(scan["symbology"], "upc_e", "{scan}");
    assert_eq!(scan["product"]["sku"], "COKE-330", "{scan}");
    assert_eq!(scan["product"]["price"], 450, "{scan}");

    // A misread UPC-E (its check digit wrong for both readings) is still garbage.
    scanner.send(b"04963407\r");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(events.of("scan").len(), 1, "{:?}", events.all());
    let st = device_state(&d, &t, "scanner-1").await;
    assert_eq!(
        (st["handled"].as_u64(), st["rejected"].as_u64()),
        (Some(1), Some(1)),
        "{st}"
    );
}

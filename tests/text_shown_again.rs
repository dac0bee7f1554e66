//! Text from people and from HQ where it is shown again. In a spreadsheet (Excel, WPS): codes
//! that look like numbers — card numbers with leading zeros or more than 15 digits, SKUs that
//! are barcodes or start with a 0, phones — stay text; text HQ sends that begins with a tab or a
//! carriage return before a formula is defused like text beginning with `=`. In the log: HQ's
//! text cannot start a line of its own.

mod common;

use common::mqtt::store_with_hq;
use common::{CASHIER, Daemon, MANAGER, cash};
use serde_json::{Value, json};

/// The records of a CSV answer (byte-order mark dropped), fields as written.
fn records(csv: &str) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(csv.trim_start_matches('\u{feff}').as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

/// The value of column `col` in the records whose column `key` is `value` (marks included).
fn cells(recs: &[Vec<String>], key: &str, value: &str, col: &str) -> Vec<String> {
    let head = &recs[0];
    let k = head.iter().position(|h| h == key).unwrap();
    let c = head.iter().position(|h| h == col).unwrap();
    recs[1..]
        .iter()
        .filter(|r| r[k].trim_start_matches('\t') == value)
        .map(|r| r[c].clone())
        .collect()
}

const PRODUCTS: &str = r#"
[[products]]
sku = "000123"
name = "散装花生"
price = 500
stock = 3
safety_stock = 10

[[products]]
sku = "6901234567890123"
name = "整箱矿泉水"
price = 2400
stock = 100
"#;

/// A member card `0001234567` came out of the member export as the bare number, which Excel
/// and WPS turn into 1234567; a 19-digit card into 6.22202E+18 with its last digits gone (15
/// significant digits), and a SKU `000123` in the reports into 123. Written as text (a tab
/// before them), they keep every digit, and the export read back by `members import` (which
/// trims the tab) gives the same card.
#[tokio::test]
async fn codes_that_look_like_numbers_stay_text() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), PRODUCTS);
    let t = d.login(CASHIER).await;
    let m1 = d
        .register(&t, "张三", "13800138000", json!({"card_no": "0001234567"}))
        .await;
    d.register(
        &t,
        "李四",
        "13900139000",
        json!({"card_no": "6222021234567890123"}),
    )
    .await;
    let (s, v) = d
        .sale(
            &t,
            &json!({"member_id": m1, "lines": [{"sku": "000123", "qty": 1},
                    {"sku": "6901234567890123", "qty": 1}], "payments": cash(2900)}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let tm = d.login(MANAGER).await;

    let export = d.text(&tm, "/v1/members/export").await;
    let recs = records(&export);
    assert_eq!(
        cells(&recs, "card_no", "0001234567", "card_no"),
        ["\t0001234567"],
        "{export}"
    );
    assert_eq!(
        cells(&recs, "card_no", "6222021234567890123", "card_no"),
        ["\t6222021234567890123"],
        "{export}"
    );
    assert_eq!(
        cells(&recs, "card_no", "0001234567", "phone"),
        ["\t13800138000"],
        "{export}"
    );

    let report = d.text(&tm, "/v1/reports/products?format=csv").await;
    let recs = records(&report);
    assert_eq!(
        cells(&recs, "sku", "000123", "sku"),
        ["\t000123"],
        "{report}"
    );
    assert_eq!(
        cells(&recs, "sku", "6901234567890123", "sku"),
        ["\t6901234567890123"],
        "{report}"
    );
    // Codes that do not look like numbers are left as they are.
    assert_eq!(cells(&recs, "sku", "TEA", "sku"), ["TEA"], "{report}");

    let low = d.text(&tm, "/v1/reports/stock?format=csv").await;
    assert_eq!(
        cells(&records(&low), "sku", "000123", "sku"),
        ["\t000123"],
        "{low}"
    );

    let pairs = d
        .text(&tm, "/v1/reports/associations?format=csv&min_count=1")
        .await;
    let recs = records(&pairs);
    assert_eq!(recs.len(), 3, "{pairs}");
    assert!(
        recs[1..]
            .iter()
            .all(|r| r[..2].iter().all(|c| c.starts_with('\t'))),
        "{pairs}"
    );

    let staff = d.text(&tm, "/v1/reports/staff?format=csv").await;
    assert_eq!(
        cells(&records(&staff), "staff_no", "1001", "staff_no"),
        ["\t1001"],
        "{staff}"
    );
    d.terminate();

    // The export, read back into another store, gives the cards as they were.
    let other = tempfile::tempdir().unwrap();
    let config = other.path().join("storebox.toml");
    std::fs::write(&config, common::config_text(&other.path().join("data"), "")).unwrap();
    let file = other.path().join("members.csv");
    std::fs::write(&file, &export).unwrap();
    common::import_members(&config, &file);
    let d = Daemon::start_with(other.path(), &config);
    let t = d.login(CASHIER).await;
    for card in ["0001234567", "6222021234567890123"] {
        let (s, v) = d.get(&t, &format!("/v1/members?card={card}")).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["members"][0]["card_no"], card, "{v}");
    }
}

/// A product name from HQ is stored as sent (HQ's names are not trimmed, and may hold control
/// characters, which the printer turns into spaces). One beginning with a tab or a carriage
/// return before `=` reached the products report as it was — a cell that OWASP's advice on
/// CSV injection defuses like one beginning with `=`, since spreadsheets may drop the
/// leading white space.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_formula_behind_a_tab_in_hq_text_is_defused() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, hq, d) = store_with_hq(dir.path()).await;
    let t = d.login(CASHIER).await;
    hq.wait_online().await;
    let names = [
        (
            "HQ-TAB",
            "\t=HYPERLINK(\"http://example.invalid\",\"领奖\")",
        ),
        ("HQ-CR", "\r=1+1"),
    ];
    let items: Vec<Value> = names
        .iter()
        .map(|(sku, name)| json!({"sku": sku, "name": name, "price": 100, "version": 1}))
        .collect();
    hq.publish(
        "storebox/hq/products",
        json!({"id": "p1", "kind": "products", "version": 1, "items": items}),
    )
    .await;
    for _ in 0..400 {
        if d.get(&t, "/v1/products/HQ-CR").await.0 == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let (s, v) = d
        .sale(
            &t,
            &json!({"lines": [{"sku": "HQ-TAB", "qty": 1}, {"sku": "HQ-CR", "qty": 1}],
                    "payments": cash(200)}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let tm = d.login(MANAGER).await;
    let report = d.text(&tm, "/v1/reports/products?format=csv").await;
    let recs = records(&report);
    for (sku, name) in names {
        assert_eq!(
            cells(&recs, "sku", sku, "name"),
            [format!("'{name}")],
            "{report:?}"
        );
    }
}

/// The log (stdout, one line an entry, read in the journal) quoted what a malformed HQ message
/// said its kind was as it came: a kind with a line break wrote a line of HQ's own making into
/// the store's log, looking like one of storebox's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_hq_message_cannot_write_a_line_into_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, hq, d) = store_with_hq(dir.path()).await;
    hq.wait_online().await;
    let forged = "2026-12-07T05:00:00.000000Z  INFO storebox::uplink::link: uplink connected";
    hq.publish(
        "storebox/hq/products",
        json!({"id": "p1", "kind": format!("x\n{forged}\n"), "version": 1, "items": []}),
    )
    .await;
    d.wait_log("malformed downlink message", 1);
    let log = d.log_text();
    assert!(!log.lines().any(|l| l == forged), "{log}");
}

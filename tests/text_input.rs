//! Chinese text and the forms input really takes at the till: phone numbers as phones and
//! chats copy them (no-break spaces, direction marks), names with invisible characters, phone
//! tails typed on a Chinese input method, UPC-A barcodes in their EAN-13 spelling.

mod common;

use common::devices::{has, printer_only, wait_state};
use common::hw::{Events, FakePrinter, Pty, point};
use common::{CASHIER, Daemon, MANAGER, cash, code};
use serde_json::{Value, json};

/// `s` percent-encoded for a query string.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The ids of the members a lookup finds (status and ids; an error's code instead).
async fn lookup(d: &Daemon, t: &str, query: &str) -> (u16, Vec<String>) {
    let (s, v) = d.get(t, &format!("/v1/members?{query}")).await;
    let ids = v["members"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| m["id"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_else(|| vec![code(&v).to_owned()]);
    (s, ids)
}

/// A phone number copied from a phone's contacts or a chat carries no-break spaces and
/// direction marks around and inside it; it is still the member's number: found by it, and
/// refused as a second registration of the same person, not refused as malformed.
#[tokio::test]
async fn a_phone_copied_from_a_contact_card_is_the_same_member() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let id = d.register(&t, "张三", "138 0013 8000", json!({})).await;
    for phone in [
        "\u{202A}+86 138 0013 8000\u{202C}",
        "+86\u{00A0}138\u{00A0}0013\u{00A0}8000",
        "138\u{2002}0013\u{2002}8000",
        "138\u{200B}0013\u{200B}8000",
        "138\t0013\t8000",
    ] {
        assert_eq!(
            lookup(&d, &t, &format!("phone={}", enc(phone))).await,
            (200, vec![id.clone()]),
            "{phone:?}"
        );
        let (s, v) = d
            .post(&t, "/v1/members", &json!({"name": "张三", "phone": phone}))
            .await;
        assert_eq!((s, code(&v)), (409, "phone_taken"), "{phone:?}: {v}");
    }
}

/// A name of nothing but invisible characters is blank; a name with one stuck to it (pasted
/// from a chat) is stored without it and found by what the cashier types.
#[tokio::test]
async fn invisible_characters_do_not_make_a_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(MANAGER).await;
    for name in ["\u{200B}", "\u{FEFF}\u{200D}", " \u{200B}\u{3000}"] {
        let (s, v) = d
            .post(
                &t,
                "/v1/members",
                &json!({"name": name, "phone": "13900001111"}),
            )
            .await;
        assert_eq!((s, code(&v)), (400, "invalid_name"), "{name:?}: {v}");
    }
    let (s, v) = d
        .post(
            &t,
            "/v1/members",
            &json!({"name": "\u{FEFF}李娜\u{200B}", "phone": "13900002222"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["name"], "李娜");
    let id = v["id"].as_str().unwrap().to_owned();
    for q in ["李娜", "李娜\u{200B}"] {
        assert_eq!(
            lookup(&d, &t, &format!("q={}", enc(q))).await,
            (200, vec![id.clone()]),
            "{q:?}"
        );
    }
}

/// The phone tail or card number typed in a Chinese input method's full-width mode, or with a
/// space, finds the member as the whole phone number typed that way does.
#[tokio::test]
async fn a_phone_tail_or_card_typed_full_width_finds_the_member() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let id = d
        .register(&t, "王芳", "13800138000", json!({"card_no": "VIP8001"}))
        .await;
    for card in [
        "VIP8001",
        "ＶＩＰ８００１",
        "ｖｉｐ　8001",
        "\u{202A}VIP 8001\u{202C}",
    ] {
        assert_eq!(
            lookup(&d, &t, &format!("card={}", enc(card))).await,
            (200, vec![id.clone()]),
            "{card:?}"
        );
    }
    for tail in ["8000", "８０００", " 8000 ", "8000\u{3000}"] {
        assert_eq!(
            lookup(&d, &t, &format!("phone_tail={}", enc(tail))).await,
            (200, vec![id.clone()]),
            "{tail:?}"
        );
    }
    for tail in ["800", "80000", "８００"] {
        let (s, v) = d
            .get(&t, &format!("/v1/members?phone_tail={}", enc(tail)))
            .await;
        assert_eq!((s, code(&v)), (400, "invalid_phone_tail"), "{tail:?}");
    }
}

const UPC_PRODUCTS: &str = r#"
[[products]]
sku = "COKE"
name = "可口可乐 355ml"
price = 350
barcodes = ["036000291452"]
stock = 100

[[products]]
sku = "SNACK"
name = "进口零食"
price = 1500
barcodes = ["0049000050103"]
stock = 100
"#;

/// A UPC-A product (imported goods) is found by the EAN-13 spelling of its code, with the
/// leading `0`, which many scanners send, and the other way round; a code typed full-width
/// is found too.
#[tokio::test]
async fn a_upc_a_product_is_found_by_its_ean_13_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), UPC_PRODUCTS);
    let t = d.login(CASHIER).await;
    for (code, sku) in [
        ("036000291452", "COKE"),
        ("0036000291452", "COKE"),
        ("049000050103", "SNACK"),
        ("0049000050103", "SNACK"),
        ("６９０１２３４５６７８９２", "TEA"),
    ] {
        let (s, v) = d
            .get(&t, &format!("/v1/products?barcode={}", enc(code)))
            .await;
        assert_eq!((s, v["sku"].as_str()), (200, Some(sku)), "{code}: {v}");
    }
    // Not every 13-digit code has a twin: an EAN-13 not starting with 0 stays unknown.
    let (s, v) = d.get(&t, "/v1/products?barcode=6901234567908").await;
    assert_eq!((s, code(&v)), (404, "unknown_barcode"));
}

/// The same at the scanner: a scanner set to send UPC-A as EAN-13 puts the product on the
/// till's screen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scanner_sending_upc_a_as_ean_13_finds_the_product() {
    let dir = tempfile::tempdir().unwrap();
    let scanner = Pty::open();
    point(&dir.path().join("scanner"), &scanner.slave);
    let extra = format!(
        r#"{UPC_PRODUCTS}
[[devices]]
id = "scanner-1"
kind = "scanner"
terminal = "pos-1"
transport = "serial"
path = "{}"
baud = 9600
suffix = "cr"
"#,
        dir.path().join("scanner").display()
    );
    let d = Daemon::start_in(dir.path(), &extra);
    let t = d.login(CASHIER).await;
    wait_state(&d, &t, "scanner-1", "ready").await;
    let events = Events::open(&d.client, &d.base, &t).await;
    let mut scanner = scanner;
    scanner.send(b"0036000291452\r");
    let scan: Value = events
        .wait("scan", 5, |v| v["code"] == "0036000291452")
        .await;
    assert_eq!(scan["symbology"], "ean13");
    assert_eq!(scan["product"]["sku"], "COKE", "{scan}");
}

/// A product name with invisible characters in it (pasted from a web page: a zero-width space,
/// the variation selector after a symbol) prints as it shows on screen, not with a `?` for
/// each, on 58 mm paper as on 80 mm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invisible_characters_in_a_product_name_print_as_nothing() {
    for paper in ["58mm", "80mm"] {
        let dir = tempfile::tempdir().unwrap();
        let printer = FakePrinter::start(None).await;
        let extra = format!(
            r#"{}paper = "{paper}"

[[products]]
sku = "COLA"
name = "可口可乐\u200B零度 ★\uFE0F限量\uFEFF"
price = 350
stock = 10
"#,
            printer_only(printer.addr)
        );
        let d = Daemon::start_in(dir.path(), &extra);
        let t = d.login(CASHIER).await;
        wait_state(&d, &t, "printer-1", "ready").await;
        let (s, v) = d
            .sale(
                &t,
                &json!({"lines": [{"sku": "COLA", "qty": 1}], "payments": cash(350)}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        let paper_out = printer.wait_cuts(1, 10).await;
        let text = paper_out.lines.join("\n");
        assert!(has(&paper_out, &["可口可乐零度 ★限量"]), "{paper}: {text}");
        assert!(!text.contains('?'), "{paper}: {text}");
    }
}

/// A UPC-A code and its EAN-13 spelling are one product (docs/decisions.md, Barcodes): a
/// local edit that gives the EAN-13 spelling of one product's UPC-A to another product is
/// refused as taken, as the same spelling is. Accepted, the scan rang up whichever product
/// held the spelling the till's scanner happens to send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_barcode_whose_other_gtin_spelling_another_product_has_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let tm = d.login(MANAGER).await;
    let put = |sku: &'static str, name: &'static str, barcodes: serde_json::Value| {
        let d = &d;
        let tm = tm.clone();
        async move {
            d.send(
                reqwest::Method::PUT,
                &tm,
                &format!("/v1/products/{sku}"),
                &json!({"name": name, "price": 300, "barcodes": barcodes}),
                None,
            )
            .await
        }
    };
    let (s, v) = put("COLA", "可乐", json!(["036000291452"])).await;
    assert!((200..300).contains(&s), "{v}");
    // The same product may carry both spellings.
    let (s, v) = put("COLA", "可乐", json!(["036000291452", "0036000291452"])).await;
    assert!((200..300).contains(&s), "{v}");
    let (s, v) = put("COLA", "可乐", json!(["036000291452"])).await;
    assert!((200..300).contains(&s), "{v}");

    let (s, v) = put("OTHER", "别的", json!(["0036000291452"])).await;
    assert_eq!((s, code(&v)), (409, "barcode_taken"), "{v}");
    // And the other way round: a product holding the EAN-13 spelling keeps its UPC-A too.
    let (s, v) = put("JUICE", "果汁", json!(["0012345678905"])).await;
    assert!((200..300).contains(&s), "{v}");
    let (s, v) = put("WATER", "水", json!(["012345678905"])).await;
    assert_eq!((s, code(&v)), (409, "barcode_taken"), "{v}");

    // Both spellings still ring up the one product.
    for (code, sku) in [
        ("036000291452", "COLA"),
        ("0036000291452", "COLA"),
        ("012345678905", "JUICE"),
        ("0012345678905", "JUICE"),
    ] {
        let (s, v) = d.get(&tm, &format!("/v1/products?barcode={code}")).await;
        assert_eq!(s, 200, "{code}: {v}");
        assert_eq!(v["sku"], sku, "{code}: {v}");
    }
    d.terminate();
}

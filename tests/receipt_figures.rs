//! What a receipt and a refund slip say, read back from the paper of a real printer and held
//! against the sale's and the refund's JSON: every figure (lines, discounts, coupon, points,
//! 抹零, total, payments, change, points and balance, the level reached), the masked member,
//! and, once the member is erased, a reprint with nothing of theirs on it.

mod common;

use common::devices::{has, printer_only};
use common::hw::FakePrinter;
use common::{CASHIER, Daemon, MANAGER, config_text};
use serde_json::{Value, json};
use storebox::devices::decode::Paper;

/// `12345` → `123.45`, `-5` → `-0.05`.
fn yuan(v: &Value) -> String {
    let n = v.as_i64().unwrap_or_else(|| panic!("not money: {v}"));
    let sign = if n < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", n.abs() / 100, n.abs() % 100)
}

/// Money as the totals print it: `￥123.45`, `-￥0.05`.
fn money(n: i64) -> String {
    let s = yuan(&json!(n));
    match s.strip_prefix('-') {
        Some(abs) => format!("-￥{abs}"),
        None => format!("￥{s}"),
    }
}

/// A store rounding totals down to the jiao (抹角), its printer `printer-1` on TCP.
async fn store(dir: &std::path::Path, paper: &str) -> (Daemon, FakePrinter) {
    let printer = FakePrinter::start(None).await;
    let extra = format!("{}paper = \"{paper}\"\n", printer_only(printer.addr));
    let text = config_text(&dir.join("data"), &extra).replacen(
        "environment = \"development\"",
        "environment = \"development\"\ntotal_rounding = \"drop_jiao\"",
        1,
    );
    let config = dir.join("storebox.toml");
    std::fs::write(&config, text).unwrap();
    (Daemon::start_with(dir, &config), printer)
}

fn assert_fits(paper: &Paper, columns: usize) {
    for (line, width) in paper.lines.iter().zip(&paper.line_widths) {
        assert!(*width <= columns, "{width} columns: {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_figure_on_the_receipt_is_the_sales() {
    for (paper_width, columns) in [("58mm", 32), ("80mm", 48)] {
        let dir = tempfile::tempdir().unwrap();
        let (d, printer) = store(dir.path(), paper_width).await;
        let t = d.login(CASHIER).await;
        let tm = d.login(MANAGER).await;
        let m = d.register(&t, "陈静", "13912345678", json!({})).await;
        // ¥1,000 makes them 普通会员; the next sale earns points at that level.
        for qty in [4, 1] {
            let (s, v) = d
                .sale(
                    &t,
                    &json!({"member_id": m, "lines": [{"sku": "TEA", "qty": qty}],
                    "payments": [{"method": "card", "amount": qty * 25_000}], "print": false}),
                )
                .await;
            assert_eq!(s, 201, "{v}");
        }
        let (s, c) = d
            .post(
                &tm,
                "/v1/coupons",
                &json!({"code": "MJ100-20", "title": "满100减20",
                "kind": {"type": "amount_off", "threshold": 10000, "amount": 2000}}),
            )
            .await;
        assert_eq!(s, 201, "{c}");
        let body = json!({"member_id": m,
            "lines": [{"sku": "TEA", "qty": 9}, {"sku": "MILK", "qty": 3}, {"sku": "RICE", "qty": 1}],
            "coupon_codes": ["MJ100-20"], "redeem_points": 200, "print": false});
        let (s, q) = d.post(&t, "/v1/sales/quote", &body).await;
        assert_eq!(s, 200, "{q}");
        let total = q["total"].as_i64().unwrap();
        let mut body = body;
        body["print"] = json!(true);
        body["payments"] = json!([{"method": "card", "amount": 100_000},
            {"method": "cash", "amount": total - 100_000 + 5_000}]);
        let (s, sale) = d.sale(&t, &body).await;
        assert_eq!(s, 201, "{sale}");
        let paper = printer.wait_cuts(1, 10).await;
        let text = paper.lines.join("\n");
        assert!(paper.unknown.is_empty(), "{:?}", paper.unknown);
        assert_fits(&paper, columns);

        // Who, where, when, and a number to quote.
        let seq = sale["seq"].to_string();
        let created = sale["created_at"].as_str().unwrap();
        let time = format!("{} {}", &created[..10], &created[11..19]);
        assert!(has(&paper, &["上海南京西路店"]), "{text}");
        assert!(has(&paper, &["pos-1"]) && has(&paper, &["1001"]), "{text}");
        assert!(has(&paper, &[&format!("#{seq}")]), "{text}");
        assert!(has(&paper, &[&time]), "{time}: {text}");

        // Each line: name, qty × unit price = gross; its own discount.
        for l in sale["lines"].as_array().unwrap() {
            let name = l["name"].as_str().unwrap();
            assert!(has(&paper, &[name]), "{name}: {text}");
            let qty = format!("{} x {}", l["qty"], yuan(&l["unit_price"]));
            let gross = l["qty"].as_i64().unwrap() * l["unit_price"].as_i64().unwrap();
            assert!(has(&paper, &[&qty, &yuan(&json!(gross))]), "{qty}: {text}");
        }
        let coupon: i64 = sale["coupons"][0]["discount"].as_i64().unwrap();
        let rounding: i64 = sale["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["rounding"].as_i64().unwrap())
            .sum();
        assert!(rounding > 0, "抹零 expected: {sale}");
        let own = sale["discount_total"].as_i64().unwrap() - coupon - rounding;
        assert!(
            has(
                &paper,
                &["小计 Subtotal", &money(sale["subtotal"].as_i64().unwrap())]
            ),
            "{text}"
        );
        assert!(
            own == 0 && !has(&paper, &["优惠 Discount"])
                || has(&paper, &["优惠 Discount", &money(-own)]),
            "{text}"
        );
        assert!(has(&paper, &["MJ100-20", &money(-coupon)]), "{text}");
        assert!(
            has(&paper, &["200"])
                && has(&paper, &[&money(-sale["points_value"].as_i64().unwrap())]),
            "{text}"
        );
        assert!(has(&paper, &["抹零 Rounding", &money(-rounding)]), "{text}");
        assert!(
            has(
                &paper,
                &["合计 Total", &money(sale["total"].as_i64().unwrap())]
            ),
            "{text}"
        );
        assert!(has(&paper, &["银行卡 Card", "￥1000.00"]), "{text}");
        assert!(
            has(&paper, &["现金 Cash", &money(total - 100_000 + 5_000)]),
            "{text}"
        );
        assert!(
            has(
                &paper,
                &["实收 Paid", &money(sale["paid"].as_i64().unwrap())]
            ),
            "{text}"
        );
        assert!(
            has(
                &paper,
                &["找零 Change", &money(sale["change"].as_i64().unwrap())]
            ),
            "{text}"
        );
        assert_eq!(sale["change"], 5_000, "{sale}");

        // The member: masked, points earned and balance after, the level reached.
        assert!(
            has(&paper, &["139****5678"]) && !text.contains("13912345678"),
            "{text}"
        );
        assert!(!text.contains("陈静"), "{text}");
        let earned = format!("+{}", sale["points_earned"]);
        assert!(has(&paper, &["Points earned", &earned]), "{text}");
        let balance = sale["member"]["points"].to_string();
        assert!(has(&paper, &["Points balance", &balance]), "{text}");
        let up = sale["member"]["upgraded_to"]["name"]
            .as_str()
            .unwrap_or_else(|| panic!("{sale}"));
        assert!(has(&paper, &["恭喜升级", up]), "{text}");

        // A partial refund: its slip has the refund's figures, not the sale's.
        let path = format!("/v1/sales/{}/refunds", sale["id"].as_str().unwrap());
        let (s, r) = d
            .post(
                &tm,
                &path,
                &json!({"lines": [{"sku": "MILK", "qty": 1}], "reason": "漏气 leaking"}),
            )
            .await;
        assert_eq!(s, 201, "{r}");
        let paper = printer.wait_cuts(2, 10).await;
        let text = paper.lines.join("\n");
        let slip: Vec<&String> = paper
            .lines
            .iter()
            .skip_while(|l| !l.contains("REFUND"))
            .collect();
        let slip_text = slip
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        assert_fits(&paper, columns);
        assert!(slip_text.contains(&format!("#{}", r["seq"])), "{slip_text}");
        assert!(slip_text.contains(&format!("#{seq}")), "{slip_text}");
        let amount = format!("-{}", yuan(&r["lines"][0]["amount"]));
        assert!(
            slip.iter().any(|l| l.contains("-1") && l.contains(&amount)),
            "{slip_text}"
        );
        let back = money(r["refund_total"].as_i64().unwrap());
        assert!(
            slip.iter()
                .any(|l| l.contains("Refund total") && l.contains(&back)),
            "{slip_text}"
        );
        for p in r["payments"].as_array().unwrap() {
            let label = if p["method"] == "cash" {
                "Cash"
            } else {
                "Card"
            };
            let m = money(p["amount"].as_i64().unwrap());
            assert!(
                slip.iter().any(|l| l.contains(label) && l.contains(&m)),
                "{label} {m}: {slip_text}"
            );
        }
        let balance = r["member"]["points"].to_string();
        assert!(
            slip.iter()
                .any(|l| l.contains("Points balance") && l.contains(&balance)),
            "{slip_text}"
        );
        assert!(
            !slip_text.contains(&money(sale["total"].as_i64().unwrap())),
            "{slip_text}"
        );
        assert!(text.contains("139****5678"));

        // Erased, then the receipt reprinted: nothing of the member's on paper.
        let (s, v) = d.erase(&tm, &m).await;
        assert!((200..300).contains(&s), "{v}");
        let (s, v) = d
            .post(
                &t,
                &format!("/v1/sales/{}/print", sale["id"].as_str().unwrap()),
                &json!({}),
            )
            .await;
        assert_eq!(s, 202, "{v}");
        let paper = printer.wait_cuts(3, 10).await;
        let reprint: Vec<&String> = paper
            .lines
            .iter()
            .skip_while(|l| !l.contains("REPRINT"))
            .collect();
        let reprint_text = reprint
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            reprint_text.contains(&money(sale["total"].as_i64().unwrap())),
            "{reprint_text}"
        );
        for personal in ["****5678", "139*", "陈静"] {
            assert!(
                !reprint_text.contains(personal),
                "{personal}: {reprint_text}"
            );
        }
    }
}

//! Refunds in the orders a store makes them, over HTTP against the real daemon: a sale paid
//! with points, a card and cash with change, refunded a unit at a time by two managers at two
//! tills (each refund retried with its key, and its key tried with another body), after the
//! product's price changed, while the member spends points on another sale and returns that
//! too. After every unit is back the member's spend and the stock are what they were before
//! the sale; the points are too, plus any the refunds kept money for (`points_shortfall`: the
//! member had used them, and the other sale's refund gave them back); no payment method got
//! back more than it paid; the level is the one the spend earns, and HQ was told it.

mod common;

use common::race::login_on;
use common::{CASHIER, Daemon, MANAGER, POS2};
use serde_json::{Value, json};

/// A small deterministic generator (no dependency, the same sequence on every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

const EXTRA: &str = r#"
[[products]]
sku = "PEN"
name = "钢笔"
price = 3333
stock = 1000

[membership]
levels_can_drop = true
"#;

fn level_of(spend: i64) -> Value {
    match spend {
        s if s >= 500_000 => json!("gold"),
        s if s >= 300_000 => json!("silver"),
        s if s >= 100_000 => json!("regular"),
        _ => Value::Null,
    }
}

async fn stock(d: &Daemon, t: &str) -> Vec<i64> {
    let mut out = Vec::new();
    for sku in ["TEA", "MILK", "RICE", "PEN"] {
        let (_, s) = d.get(t, &format!("/v1/stock/{sku}")).await;
        out.push(s["on_hand"].as_i64().unwrap());
    }
    out
}

/// Pays `total` by card (a random part) and cash (the rest, rounded up to ¥10 for change).
fn payments(r: &mut Lcg, total: i64) -> Value {
    let card = total * r.next(101) as i64 / 100;
    let mut p = vec![];
    if card > 0 {
        p.push(json!({"method": "card", "amount": card}));
    }
    if total - card > 0 {
        let cash = (total - card).div_euclid(1000) * 1000 + 1000;
        p.push(json!({"method": "cash", "amount": cash}));
    }
    json!(p)
}

/// A cart of random lines, redeeming a random part of what the quote allows.
async fn sell(d: &Daemon, t: &str, r: &mut Lcg, member: &str, big: bool) -> Value {
    let skus = ["TEA", "MILK", "RICE", "PEN"];
    let mut lines = vec![];
    for sku in skus {
        if r.next(2) == 0 || lines.is_empty() && sku == "PEN" {
            lines.push(json!({"sku": sku, "qty": 1 + r.next(4)}));
        }
    }
    if big {
        // Half paid with points, and little earned.
        lines = vec![
            json!({"sku": "MILK", "qty": 5 + r.next(20)}),
            json!({"sku": "PEN", "qty": 1 + r.next(3)}),
        ];
    }
    let cart = json!({"member_id": member, "lines": lines});
    let (s, q) = d.post(t, "/v1/sales/quote", &cart).await;
    assert_eq!(s, 200, "{q}");
    let pct = if big { 100 } else { r.next(101) as i64 };
    let redeem = q["max_redeem_points"].as_i64().unwrap() * pct / 100;
    let mut body = cart.clone();
    body["redeem_points"] = json!(redeem);
    let (s, q) = d.post(t, "/v1/sales/quote", &body).await;
    assert_eq!(s, 200, "{q}");
    body["payments"] = payments(r, q["total"].as_i64().unwrap());
    let (s, sale) = d.sale(t, &body).await;
    assert_eq!(s, 201, "{sale}");
    sale
}

fn units_left(sale: &Value, refunded: &[Value]) -> Vec<(String, u64)> {
    let mut out = vec![];
    for l in sale["lines"].as_array().unwrap() {
        let sku = l["sku"].as_str().unwrap();
        let done: u64 = refunded
            .iter()
            .flat_map(|r| r["lines"].as_array().unwrap())
            .filter(|x| x["sku"] == sku)
            .map(|x| x["qty"].as_u64().unwrap())
            .sum();
        let left = l["qty"].as_u64().unwrap() - done;
        if left > 0 {
            out.push((sku.to_string(), left));
        }
    }
    out
}

#[tokio::test]
async fn refunding_a_sale_a_unit_at_a_time_puts_everything_back() {
    refund_sequences(EXTRA, true).await;
}

/// The same where levels stay, spend is a rolling year, points lapse and 1,000 points are ¥1.
#[tokio::test]
async fn refunds_a_unit_at_a_time_under_other_rules() {
    let extra = EXTRA.replace(
        "levels_can_drop = true",
        "levels_can_drop = false\nspend_window = \"rolling_365d\"\npoints_expiry_months = 12\nredeem_points_per_yuan = 1000",
    );
    refund_sequences(&extra, false).await;
}

async fn refund_sequences(extra: &str, can_drop: bool) {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), extra);
    let t = d.login(CASHIER).await;
    let managers = [d.login(MANAGER).await, login_on(&d, POS2, MANAGER).await];
    for seed in 0..40u64 {
        let mut r = Lcg(seed * 7919 + 1);
        let m = d
            .register(&t, "顾客", &format!("1380000{:04}", 100 + seed), json!({}))
            .await;
        // A history: ¥2,500 for a level, then ¥1,000–¥5,000 more for points.
        for qty in [10, 4 + r.next(16)] {
            let (s, v) = d
                .sale(&t, &json!({"member_id": m, "lines": [{"sku": "TEA", "qty": qty}], "payments": common::cash(25_000 * qty as i64)}))
                .await;
            assert_eq!(s, 201, "{v}");
        }
        let (_, before) = d.get(&t, &format!("/v1/members/{m}")).await;
        let stock_before = stock(&d, &t).await;

        let sale = sell(&d, &t, &mut r, &m, false).await;
        let id = sale["id"].as_str().unwrap().to_string();
        // Points spent elsewhere, maybe, before the refunds begin.
        let other = if r.next(2) == 0 {
            Some(sell(&d, &t, &mut r, &m, true).await)
        } else {
            None
        };
        // The pen's price changes and it is taken off sale: its refunds go by the sale.
        let (s, v) = d
            .send(
                reqwest::Method::PUT,
                &managers[0],
                "/v1/products/PEN",
                &json!({"name": "钢笔", "price": 4000 + seed as i64, "active": seed % 2 == 0}),
                None,
            )
            .await;
        assert_eq!(s, 200, "{v}");
        let mut refunds: Vec<Value> = vec![];
        let mut other_refunds: Vec<Value> = vec![];
        let mut n = 0;
        loop {
            n += 1;
            let manager = &managers[r.next(2) as usize];
            // Now and then a unit of the other sale goes back first.
            if let Some(o) = &other
                && r.next(8) == 0
            {
                let left = units_left(o, &other_refunds);
                if let Some((sku, _)) = left.first() {
                    let (s, v) = d
                        .post(
                            manager,
                            &format!("/v1/sales/{}/refunds", o["id"].as_str().unwrap()),
                            &json!({"reason": "退货", "lines": [{"sku": sku, "qty": 1}]}),
                        )
                        .await;
                    assert_eq!(s, 201, "{v}");
                    other_refunds.push(v);
                }
            }
            let left = units_left(&sale, &refunds);
            if left.is_empty() {
                break;
            }
            let (sku, _) = &left[r.next(left.len() as u64) as usize];
            let key = format!("refund-{seed}-{n}");
            let body = json!({"reason": "退货", "lines": [{"sku": sku, "qty": 1}]});
            let path = format!("/v1/sales/{id}/refunds");
            let (s, v) = d
                .send(reqwest::Method::POST, manager, &path, &body, Some(&key))
                .await;
            assert_eq!(s, 201, "{v}");
            // The till retries: the same refund, not a second one.
            let (s, again) = d
                .send(reqwest::Method::POST, manager, &path, &body, Some(&key))
                .await;
            assert_eq!((s, &again["id"]), (200, &v["id"]), "{again}");
            // The same key with another reason is another request.
            let other_body = json!({"reason": "另一个", "lines": [{"sku": sku, "qty": 1}]});
            let (s, e) = d
                .send(
                    reqwest::Method::POST,
                    manager,
                    &path,
                    &other_body,
                    Some(&key),
                )
                .await;
            assert_eq!(
                (s, &e["error"]["code"]),
                (409, &json!("idempotency_key_reused")),
                "{e}"
            );
            let (_, now) = d.get(&t, &format!("/v1/members/{m}")).await;
            assert_eq!(now["points"], v["member"]["points"], "seed {seed}: {v}");
            assert_eq!(now["total_spend"], v["member"]["total_spend"], "{v}");
            assert!(now["points"].as_i64().unwrap() >= 0, "{now}");
            if can_drop {
                assert_eq!(
                    v["member"]["level"]["code"],
                    level_of(v["member"]["total_spend"].as_i64().unwrap()),
                    "seed {seed}: {v}"
                );
            }
            assert_eq!(now["level"]["code"], v["member"]["level"]["code"], "{v}");
            refunds.push(v);
        }
        if let Some(o) = &other
            && !units_left(o, &other_refunds).is_empty()
        {
            let (s, v) = d
                .post(
                    &managers[0],
                    &format!("/v1/sales/{}/refunds", o["id"].as_str().unwrap()),
                    &json!({"reason": "退货"}),
                )
                .await;
            assert_eq!(s, 201, "{v}");
            other_refunds.push(v);
        }

        // Money: what each method paid, net of change, at most; every fen of the sale
        // either given back or kept for points the member had used.
        let total = sale["total"].as_i64().unwrap();
        let back: i64 = refunds
            .iter()
            .map(|r| r["refund_total"].as_i64().unwrap())
            .sum();
        let kept: i64 = refunds
            .iter()
            .map(|r| r["shortfall_value"].as_i64().unwrap())
            .sum();
        assert_eq!(back + kept, total, "seed {seed}");
        let mut change = sale["change"].as_i64().unwrap();
        for p in sale["payments"].as_array().unwrap() {
            let method = p["method"].as_str().unwrap();
            let mut paid = p["amount"].as_i64().unwrap();
            if method == "cash" {
                let c = change.min(paid);
                paid -= c;
                change -= c;
            }
            let got: i64 = refunds
                .iter()
                .flat_map(|r| r["payments"].as_array().unwrap())
                .filter(|x| x["method"] == method)
                .map(|x| x["amount"].as_i64().unwrap())
                .sum();
            assert!(got <= paid, "seed {seed}: {method} got {got} of {paid}");
            if kept == 0 {
                assert_eq!(got, paid, "seed {seed}: {method}");
            }
        }
        // Points: the sale's points paid back, its earned ones taken back or paid for.
        let restored: i64 = refunds
            .iter()
            .map(|r| r["points_restored"].as_i64().unwrap())
            .sum();
        assert_eq!(restored, sale["points_redeemed"], "seed {seed}");
        let reversed: i64 = refunds
            .iter()
            .map(|r| {
                r["points_reversed"].as_i64().unwrap() + r["points_shortfall"].as_i64().unwrap()
            })
            .sum();
        assert_eq!(reversed, sale["points_earned"], "seed {seed}");
        let shortfall: i64 = refunds
            .iter()
            .chain(&other_refunds)
            .map(|r| r["points_shortfall"].as_i64().unwrap())
            .sum();

        let (_, after) = d.get(&t, &format!("/v1/members/{m}")).await;
        assert_eq!(after["total_spend"], before["total_spend"], "seed {seed}");
        assert_eq!(
            after["points"].as_i64().unwrap(),
            before["points"].as_i64().unwrap() + shortfall,
            "seed {seed}: {after}"
        );
        if can_drop {
            assert_eq!(
                after["level"]["code"],
                level_of(after["total_spend"].as_i64().unwrap()),
                "seed {seed}: {after}"
            );
        } else {
            assert_eq!(after["level"], sale["member"]["level"], "seed {seed}");
        }
        assert_eq!(stock(&d, &t).await, stock_before, "seed {seed}");
        // HQ's last word on the member's level (`level.changed`) is the level they hold.
        let c = rusqlite::Connection::open(d.dir.join("data/journal.sqlite3")).unwrap();
        let told: Vec<Value> = c
            .prepare("SELECT data FROM events WHERE kind = 'level.changed' ORDER BY seq")
            .unwrap()
            .query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(|x| serde_json::from_str::<Value>(&x.unwrap()).unwrap())
            .filter(|v| v["member_id"] == m.as_str())
            .collect();
        let told = told.last().map_or(Value::Null, |v| v["to"]["code"].clone());
        assert_eq!(
            told, after["level"]["code"],
            "seed {seed}: HQ was told {told}"
        );
        let (s, v) = d
            .send(
                reqwest::Method::PUT,
                &managers[0],
                "/v1/products/PEN",
                &json!({"name": "钢笔", "price": 3333}),
                None,
            )
            .await;
        assert_eq!(s, 200, "{v}");
        let (_, view) = d.get(&t, &format!("/v1/sales/{id}")).await;
        assert_eq!(view["refunded_total"], json!(back), "seed {seed}");
    }
}

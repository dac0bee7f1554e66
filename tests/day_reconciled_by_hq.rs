//! HQ's finance team reconciles a store's day: what the store's `sale.recorded` and
//! `sale.refunded` events say, summed by payment method, against the store's own day (the sales
//! report's takings by method and by drawer, `GET /v1/sales?date=`, `GET /v1/refunds?date=`),
//! to the fen. A realistic two days over a real Mosquitto: cash with 抹零 and change, card,
//! WeChat, Alipay, cash + WeChat, stored value + other, a WeChat sale with a cash note handed
//! back whole, points paid, a coupon, the birthday discount, a free-item sale of ¥0; sales just
//! before and after the store's midnight; the link to HQ down from the evening of the first day
//! to the morning of the second (the first day's last events arrive the next day); partial and
//! whole refunds on the second day of the first day's sales (the rounded cash sale, one whose
//! earned points were spent, the free one). Each side counts a sale on the store-local day of its
//! `occurred_at` (= its `created_at`) and a refund on the day it was given, whatever the day of
//! its sale (docs/uplink.md, "A store's takings from the events").

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use common::mqtt::{Broker, Hq, wait_for};
use common::{CASHIER, MANAGER, POS2, TERMINAL_TOKEN, libfaketime, login_status, start_faked};
use serde_json::{Value, json};

const DAY1: &str = "2026-12-01";
const DAY2: &str = "2026-12-02";

fn pay(method: &str, amount: i64) -> Value {
    json!({"method": method, "amount": amount})
}

fn i(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The daemon's clock, as a libfaketime offset file read at every call.
struct Clock(PathBuf);

impl Clock {
    fn set(&self, at: &str) {
        let at = chrono::DateTime::parse_from_rfc3339(at).unwrap();
        let off = (at.to_utc() - chrono::Utc::now()).num_milliseconds() as f64 / 1000.0;
        let aside = self.0.with_extension("next");
        std::fs::write(&aside, format!("{off:+.3}\n")).unwrap();
        std::fs::rename(&aside, &self.0).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What HQ adds up from the events of one store-local day.
#[derive(Debug, Default, PartialEq)]
struct Takings {
    sales: u64,
    revenue: i64,
    refunded: i64,
    /// By method: (sales, taken, refunds, refunded).
    by_method: BTreeMap<String, (u64, i64, u64, i64)>,
    /// Cash by terminal: (sales, taken, refunds, refunded).
    cash_by_terminal: BTreeMap<String, (u64, i64, u64, i64)>,
    sale_ids: BTreeSet<String>,
    refund_ids: BTreeSet<String>,
}

/// One sale's or refund's money by method, as the events give it: a sale's `payments` are as
/// tendered, so its cash is net of `change`; a refund's are the money given back.
fn money_by_method(data: &Value, change: i64) -> BTreeMap<String, i64> {
    let mut change = change;
    let mut out: BTreeMap<String, i64> = BTreeMap::new();
    for p in data["payments"].as_array().unwrap() {
        let mut a = i(&p["amount"]);
        if p["method"] == "cash" {
            let c = change.min(a);
            a -= c;
            change -= c;
        }
        *out.entry(p["method"].as_str().unwrap().into()).or_default() += a;
    }
    assert_eq!(change, 0, "change not given from cash: {data}");
    out.retain(|_, a| *a > 0);
    out
}

/// HQ's figures for `day` from the events it received (deduplicated by `id`).
fn from_events(events: &HashMap<String, Value>, day: &str) -> Takings {
    let mut t = Takings::default();
    for e in events.values() {
        let at = e["occurred_at"].as_str().unwrap();
        if &at[..10] != day
            || !matches!(e["kind"].as_str(), Some("sale.recorded" | "sale.refunded"))
        {
            continue;
        }
        let data = &e["data"];
        assert_eq!(
            data["created_at"].as_str().map(|c| &c[..10]),
            Some(&at[..10]),
            "the event's day is its record's: {e}"
        );
        let terminal = data["terminal_id"].as_str().unwrap().to_string();
        match e["kind"].as_str().unwrap() {
            "sale.recorded" => {
                t.sales += 1;
                t.revenue += i(&data["total"]);
                t.sale_ids.insert(data["id"].as_str().unwrap().into());
                let money = money_by_method(data, i(&data["change"]));
                assert_eq!(money.values().sum::<i64>(), i(&data["total"]), "{data}");
                for (m, a) in money {
                    let x = t.by_method.entry(m.clone()).or_default();
                    x.0 += 1;
                    x.1 += a;
                    if m == "cash" {
                        let x = t.cash_by_terminal.entry(terminal.clone()).or_default();
                        x.0 += 1;
                        x.1 += a;
                    }
                }
            }
            "sale.refunded" => {
                t.refunded += i(&data["refund_total"]);
                t.refund_ids.insert(data["id"].as_str().unwrap().into());
                let money = money_by_method(data, 0);
                assert_eq!(
                    money.values().sum::<i64>(),
                    i(&data["refund_total"]),
                    "{data}"
                );
                for (m, a) in money {
                    let x = t.by_method.entry(m.clone()).or_default();
                    x.2 += 1;
                    x.3 += a;
                    if m == "cash" {
                        let x = t.cash_by_terminal.entry(terminal.clone()).or_default();
                        x.2 += 1;
                        x.3 += a;
                    }
                }
            }
            _ => {}
        }
    }
    t
}

/// The store's own figures for `day`: the sales report, the day's sales and refunds.
async fn from_store(d: &common::Daemon, tm: &str, day: &str) -> Takings {
    let (s, r) = d
        .get(tm, &format!("/v1/reports/sales?from={day}&to={day}"))
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(i(&r["net"]), i(&r["revenue"]) - i(&r["refunded"]), "{r}");
    let rows = |v: &Value| -> BTreeMap<String, (u64, i64, u64, i64)> {
        v.as_object()
            .unwrap()
            .iter()
            .map(|(k, x)| {
                assert_eq!(i(&x["net"]), i(&x["taken"]) - i(&x["refunded"]), "{x}");
                (
                    k.clone(),
                    (
                        x["sales"].as_u64().unwrap(),
                        i(&x["taken"]),
                        x["refunds"].as_u64().unwrap(),
                        i(&x["refunded"]),
                    ),
                )
            })
            .collect()
    };
    let ids = |v: &Value, key: &str| -> BTreeSet<String> {
        assert!(v["next_after_seq"].is_null(), "{v}");
        v[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (s, sales) = d.get(tm, &format!("/v1/sales?date={day}")).await;
    assert_eq!(s, 200, "{sales}");
    let (s, refunds) = d.get(tm, &format!("/v1/refunds?date={day}")).await;
    assert_eq!(s, 200, "{refunds}");
    Takings {
        sales: r["sales"].as_u64().unwrap(),
        revenue: i(&r["revenue"]),
        refunded: i(&r["refunded"]),
        by_method: rows(&r["by_method"]),
        cash_by_terminal: rows(&r["cash_by_terminal"]),
        sale_ids: ids(&sales, "sales"),
        refund_ids: ids(&refunds, "refunds"),
    }
}

struct Store {
    d: common::Daemon,
}

impl Store {
    async fn login(&self, terminal: &str, staff: (&str, &str)) -> String {
        let (s, v, _) = login_status(&self.d, terminal, staff.0, staff.1).await;
        assert_eq!(s, 201, "{v}");
        v["token"].as_str().unwrap().to_string()
    }

    async fn sell(&self, t: &str, body: Value) -> Value {
        let (s, v) = self.d.sale(t, &body).await;
        assert_eq!(s, 201, "{body} → {v}");
        v
    }

    async fn refund(&self, tm: &str, sale: &Value, body: Value) -> Value {
        let (s, v) = self
            .d
            .post(
                tm,
                &format!("/v1/sales/{}/refunds", sale["id"].as_str().unwrap()),
                &body,
            )
            .await;
        assert_eq!(s, 201, "{body} → {v}");
        v
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hq_adds_up_each_day_from_the_events_as_the_store_reports_it() {
    let Some(lib) = libfaketime() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path());
    let hq = Hq::connect(broker.port, "sh-001").await;
    let extra = format!(
        "{}\n[[products]]\nsku = \"SNACK\"\nname = \"牛肉干 100g\"\nprice = 333\nstock = 500\n",
        broker.uplink_config("")
    );
    let config = dir.path().join("storebox.toml");
    std::fs::write(
        &config,
        common::config_text(&dir.path().join("data"), &extra).replace(
            "environment = \"development\"",
            "environment = \"development\"\ntotal_rounding = \"drop_fen\"",
        ),
    )
    .unwrap();
    let clock = Clock(dir.path().join("faketime"));
    clock.set(&format!("{DAY1}T09:00:00+08:00"));
    let s = Store {
        d: start_faked(
            dir.path(),
            &config,
            lib,
            ("FAKETIME_TIMESTAMP_FILE", clock.0.to_str().unwrap()),
            &[("TZ", "UTC")],
        ),
    };
    hq.wait_online().await;
    let sell = |lines: Value, payments: Vec<Value>| json!({"lines": lines, "payments": payments});

    // Day 1, morning: a member whose birthday it is reaches 普通会员 paying by card.
    let t1 = s.login(TERMINAL_TOKEN, CASHIER).await;
    let t2 = s.login(POS2, CASHIER).await;
    let tm = s.login(TERMINAL_TOKEN, MANAGER).await;
    let m =
        s.d.register(
            &t1,
            "王芳",
            "13800138001",
            json!({"birthday": "1990-12-01"}),
        )
        .await;
    let mut body = sell(
        json!([{"sku": "TEA", "qty": 5}]),
        vec![pay("card", 125_000)],
    );
    body["member_id"] = json!(m);
    s.sell(&t1, body).await;
    // Her birthday purchase: 8折 on ¥102.80, 抹零 of the fen, a ¥100 note.
    let mut body = sell(
        json!([{"sku": "MILK", "qty": 1}, {"sku": "RICE", "qty": 1}]),
        vec![pay("cash", 10_000)],
    );
    body["member_id"] = json!(m);
    let birthday = s.sell(&t1, body).await;
    assert_eq!(birthday["benefit"], "birthday", "{birthday}");
    assert!(i(&birthday["points_earned"]) > 50, "{birthday}");
    assert!(i(&birthday["change"]) > 0, "{birthday}");
    // Cash + WeChat at pos-2 with change; Alipay; stored value + other.
    let split = s
        .sell(
            &t2,
            sell(
                json!([{"sku": "MILK", "qty": 3}]),
                vec![pay("cash", 2500), pay("wechat", 1870)],
            ),
        )
        .await;
    assert_eq!(i(&split["change"]), 500, "{split}");
    s.sell(
        &t1,
        sell(
            json!([{"sku": "RICE", "qty": 1}]),
            vec![pay("alipay", 8990)],
        ),
    )
    .await;
    let wallet = s
        .sell(
            &t2,
            sell(
                json!([{"sku": "TEA", "qty": 2}]),
                vec![pay("stored_value", 30_000), pay("other", 20_000)],
            ),
        )
        .await;
    // Points paid with (50 of her birthday sale's), the rest in cash.
    let mut body = sell(json!([{"sku": "MILK", "qty": 1}]), vec![pay("cash", 2000)]);
    body["member_id"] = json!(m);
    body["redeem_points"] = json!(50);
    let points = s.sell(&t1, body).await;
    assert_eq!(i(&points["points_redeemed"]), 50, "{points}");
    // A ¥5 coupon, and a free-item coupon that makes the sale ¥0 (no payment at all).
    let (st, c) = s
        .d
        .post(
            &tm,
            "/v1/coupons",
            &json!({"title": "立减5元", "kind": {"type": "amount_off", "threshold": 0, "amount": 500}}),
        )
        .await;
    assert_eq!(st, 201, "{c}");
    let mut body = sell(
        json!([{"sku": "RICE", "qty": 1}]),
        vec![pay("wechat", 8490)],
    );
    body["coupon_codes"] = json!([c["code"]]);
    s.sell(&t2, body).await;
    let (st, c) =
        s.d.post(
            &tm,
            "/v1/coupons",
            &json!({"title": "送牛奶", "kind": {"type": "free_item", "sku": "MILK"}}),
        )
        .await;
    assert_eq!(st, 201, "{c}");
    let mut body = sell(json!([{"sku": "MILK", "qty": 1}]), vec![]);
    body["coupon_codes"] = json!([c["code"]]);
    let free = s.sell(&t1, body).await;
    assert_eq!(i(&free["total"]), 0, "{free}");

    // Evening: the link to HQ goes down until the next morning.
    clock.set(&format!("{DAY1}T20:00:00+08:00"));
    broker.stop();
    let t1 = s.login(TERMINAL_TOKEN, CASHIER).await;
    let t2 = s.login(POS2, CASHIER).await;
    // WeChat pays it all; the cash note the customer also held out is handed back whole.
    let handed_back = s
        .sell(
            &t2,
            sell(
                json!([{"sku": "MILK", "qty": 1}]),
                vec![pay("wechat", 1290), pay("cash", 100)],
            ),
        )
        .await;
    assert_eq!(i(&handed_back["change"]), 100, "{handed_back}");
    // 23:59:59: ¥3.33 rounded to ¥3.30, from a ¥5 note.
    clock.set(&format!("{DAY1}T23:59:59+08:00"));
    let rounded = s
        .sell(
            &t1,
            sell(json!([{"sku": "SNACK", "qty": 1}]), vec![pay("cash", 500)]),
        )
        .await;
    assert_eq!(
        (i(&rounded["total"]), i(&rounded["change"])),
        (330, 170),
        "{rounded}"
    );

    // Day 2, 00:00:01, still offline: a card sale, then the morning's refunds of day 1's sales.
    clock.set(&format!("{DAY2}T00:00:01+08:00"));
    s.sell(
        &t1,
        sell(json!([{"sku": "RICE", "qty": 1}]), vec![pay("card", 8990)]),
    )
    .await;
    clock.set(&format!("{DAY2}T09:30:00+08:00"));
    let t1 = s.login(TERMINAL_TOKEN, CASHIER).await;
    let tm = s.login(TERMINAL_TOKEN, MANAGER).await;
    let tm2 = s.login(POS2, MANAGER).await;
    // One of the three cartons of milk (sold at pos-2), at pos-1: pos-1's drawer gives back
    // the cash share, WeChat the rest.
    let r1 = s
        .refund(
            &tm,
            &split,
            json!({"reason": "漏了", "lines": [{"sku": "MILK", "qty": 1}]}),
        )
        .await;
    assert_eq!(i(&r1["refund_total"]), 1290, "{r1}");
    // The rounded sale, whole: ¥3.30 back, not ¥3.33 (抹零 neither given twice nor lost).
    let r2 = s.refund(&tm2, &rounded, json!({"reason": "过期"})).await;
    assert_eq!(
        (i(&r2["refund_total"]), r2["payments"].clone()),
        (330, json!([pay("cash", 330)])),
        "{r2}"
    );
    // The birthday sale, whole: 50 of its points were spent, their value kept from the cash.
    let r3 = s
        .refund(&tm, &birthday, json!({"reason": "质量问题"}))
        .await;
    assert!(i(&r3["refund_total"]) < i(&r3["amount"]), "{r3}");
    assert_eq!(i(&r3["amount"]), i(&birthday["total"]), "{r3}");
    // Part of the wallet sale; the free sale; the sale paid by WeChat with a note handed back.
    s.refund(
        &tm2,
        &wallet,
        json!({"reason": "退一盒", "lines": [{"sku": "TEA", "qty": 1}]}),
    )
    .await;
    let r5 = s.refund(&tm, &free, json!({"reason": "不要了"})).await;
    assert_eq!(i(&r5["refund_total"]), 0, "{r5}");
    let r6 = s
        .refund(&tm, &handed_back, json!({"reason": "不要了"}))
        .await;
    assert_eq!(r6["payments"], json!([pay("wechat", 1290)]), "{r6}");
    // A sale of the day, then the link comes back.
    s.sell(
        &t1,
        sell(
            json!([{"sku": "TEA", "qty": 1}]),
            vec![pay("cash", 20_000), pay("wechat", 5000)],
        ),
    )
    .await;
    clock.set(&format!("{DAY2}T10:00:00+08:00"));
    broker.start_again();

    // HQ gets every sale and refund (some perhaps twice), the first day's last ones on the
    // second day.
    let mut store = Vec::new();
    for day in [DAY1, DAY2] {
        store.push(from_store(&s.d, &tm, day).await);
    }
    let wanted: BTreeSet<String> = store
        .iter()
        .flat_map(|t| t.sale_ids.iter().chain(&t.refund_ids).cloned())
        .collect();
    wait_for(30, "HQ has every sale and refund", || {
        let got: BTreeSet<String> = hq
            .events()
            .iter()
            .filter_map(|e| e["data"]["id"].as_str().map(String::from))
            .collect();
        wanted.is_subset(&got)
    })
    .await;
    let mut events: HashMap<String, Value> = HashMap::new();
    for e in hq.events() {
        let id = e["id"].as_str().unwrap().to_string();
        if let Some(before) = events.get(&id) {
            assert_eq!(before, &e, "event {id} sent twice, differently");
        }
        events.insert(id, e);
    }

    for (day, store_side) in [DAY1, DAY2].into_iter().zip(store) {
        let hq_side = from_events(&events, day);
        assert_eq!(
            hq_side, store_side,
            "{day}: HQ's sums from the events ≠ the store's"
        );
    }
    // The day's figures are those of the store: ten sales on day 1, two on day 2; day 2's
    // refunds all of day 1's sales, each counted on day 2 by both sides.
    let d1 = from_events(&events, DAY1);
    let d2 = from_events(&events, DAY2);
    assert_eq!((d1.sales, d1.refund_ids.len()), (10, 0), "{d1:?}");
    assert_eq!((d2.sales, d2.refund_ids.len()), (2, 6), "{d2:?}");
    assert_eq!(
        d1.by_method.get("cash").map(|c| c.0),
        Some(4),
        "the note handed back whole is no cash sale: {d1:?}"
    );
    s.d.terminate();
}

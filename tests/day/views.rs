//! More views of the same days: the product and period reports, the lists beside the single
//! reads (stock, member lookups), coupons, and what HQ was told about stock and levels.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use serde_json::Value;

use super::Book;
use super::checks::day_of;
use crate::common::Daemon;

fn i(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

/// The products report of `day` (CSV, every product): units net of the day's refunds, the
/// lines' revenue and the sales each product was in.
pub async fn products(d: &Daemon, tm: &str, book: &Book, day: &str) {
    let mut want: BTreeMap<String, (i64, i64, u64)> = BTreeMap::new();
    for s in book
        .sales
        .iter()
        .filter(|s| day_of(&s["created_at"]) == day)
    {
        for l in s["lines"].as_array().unwrap() {
            let e = want.entry(l["sku"].as_str().unwrap().into()).or_default();
            e.0 += i(&l["qty"]);
            e.1 += i(&l["amount"]);
            e.2 += 1;
        }
    }
    for r in book
        .refunds
        .iter()
        .filter(|r| day_of(&r["created_at"]) == day)
    {
        for l in r["lines"].as_array().unwrap() {
            want.entry(l["sku"].as_str().unwrap().into()).or_default().0 -= i(&l["qty"]);
        }
    }
    let csv = d
        .text(
            tm,
            &format!("/v1/reports/products?from={day}&to={day}&format=csv&limit=1000"),
        )
        .await;
    let y = storebox::domain::money::format_yuan;
    for (sku, (units, revenue, sales)) in &want {
        let row = format!("{sku},");
        let line = csv
            .lines()
            .find(|l| l.trim_start_matches('\u{feff}').starts_with(&row))
            .unwrap_or_else(|| panic!("{sku} not in the products report of {day}: {csv}"));
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(
            (cells[2], cells[3], cells[4]),
            (
                units.to_string().as_str(),
                y(*revenue).as_str(),
                sales.to_string().as_str()
            ),
            "products report of {day}, {sku}: {line}"
        );
    }
}

/// The sales report over both days: each day's row, and the day before as the "previous".
pub async fn period(d: &Daemon, tm: &str, book: &Book, days: &[&str]) {
    let (from, to) = (days[0], days[days.len() - 1]);
    let (s, r) = d
        .get(tm, &format!("/v1/reports/sales?from={from}&to={to}"))
        .await;
    assert_eq!(s, 200, "{r}");
    for day in days {
        let sold: Vec<&Value> = book
            .sales
            .iter()
            .filter(|s| day_of(&s["created_at"]) == *day)
            .collect();
        let back: i64 = book
            .refunds
            .iter()
            .filter(|r| day_of(&r["created_at"]) == *day)
            .map(|r| i(&r["refund_total"]))
            .sum();
        let revenue: i64 = sold.iter().map(|s| i(&s["total"])).sum();
        assert_eq!(
            (r["by_day"][day][0].as_u64(), r["by_day"][day][1].as_i64()),
            (Some(sold.len() as u64), Some(revenue)),
            "{day} in {r}"
        );
        assert_eq!(
            r["refunded_by_day"][day].as_i64().unwrap_or(0),
            back,
            "{day} in {r}"
        );
    }
    let (s, two) = d
        .get(tm, &format!("/v1/reports/sales?from={to}&to={to}"))
        .await;
    assert_eq!(s, 200);
    let (_, one) = d
        .get(tm, &format!("/v1/reports/sales?from={from}&to={from}"))
        .await;
    for k in ["sales", "revenue", "refunded", "net"] {
        assert_eq!(two["previous"][k], one[k], "{to}'s previous {k}: {two}");
    }
}

/// The stock list, the below-safety lists and each product's level agree; HQ heard `stock.low`
/// once each time a product went below its safety stock.
pub async fn stock_lists(d: &Daemon, t: &str, tm: &str, hq: &[Value]) {
    let (s, all) = d.get(t, "/v1/stock").await;
    assert_eq!(s, 200, "{all}");
    let mut below = Vec::new();
    for l in all["stock"].as_array().unwrap() {
        let sku = l["sku"].as_str().unwrap();
        let (_, one) = d.get(t, &format!("/v1/stock/{sku}")).await;
        assert_eq!(&one, l, "{sku}");
        let under = i(&l["safety_stock"]) > 0 && i(&l["on_hand"]) < i(&l["safety_stock"]);
        assert_eq!(l["below_safety"], under, "{l}");
        if under {
            below.push(sku.to_string());
        }
    }
    let (_, listed) = d.get(t, "/v1/stock?below_safety=true").await;
    let skus = |v: &Value, k: &str| -> Vec<String> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|l| l["sku"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(skus(&listed, "stock"), below, "{listed}");
    let (_, report) = d.get(tm, "/v1/reports/stock").await;
    assert_eq!(skus(&report, "low_stock"), below, "{report}");
    // Walk HQ's stock.moved, sale and refund events in seq order: every crossing below the
    // safety stock is one stock.low, and only those are.
    let mut events: Vec<&Value> = hq.iter().collect();
    events.sort_by_key(|e| e["seq"].as_u64());
    // (on hand, safety stock, a new product waiting for its first units)
    let mut level: BTreeMap<String, (i64, i64, bool)> = BTreeMap::new();
    let mut crossings: BTreeMap<String, u32> = BTreeMap::new();
    let mut told: BTreeMap<String, u32> = BTreeMap::new();
    let mut moves: Vec<(String, i64, Option<i64>)> = Vec::new();
    for e in events {
        let data = &e["data"];
        moves.clear();
        match e["kind"].as_str().unwrap() {
            "stock.moved" => {
                let safety = data["hq_count"]["safety_stock"].as_i64();
                moves.push((
                    data["sku"].as_str().unwrap().into(),
                    i(&data["delta"]),
                    safety,
                ));
            }
            "sale.recorded" => {
                for l in data["lines"].as_array().unwrap() {
                    moves.push((l["sku"].as_str().unwrap().into(), -i(&l["qty"]), None));
                }
            }
            "sale.refunded" if data["restock"] == true => {
                for l in data["lines"].as_array().unwrap() {
                    moves.push((l["sku"].as_str().unwrap().into(), i(&l["qty"]), None));
                }
            }
            "product.updated" => {
                if let Some(safety) = data["safety_stock"].as_i64() {
                    let sku: String = data["product"]["sku"].as_str().unwrap().into();
                    match level.entry(sku) {
                        // A new product waits for its first delivery.
                        Entry::Vacant(v) => {
                            v.insert((0, safety, true));
                        }
                        Entry::Occupied(o) => moves.push((o.key().clone(), 0, Some(safety))),
                    }
                }
            }
            "stock.low" => {
                *told
                    .entry(data["sku"].as_str().unwrap().into())
                    .or_default() += 1
            }
            _ => {}
        }
        let units = e["kind"] != "product.updated";
        for (sku, delta, safety) in &moves {
            let l = level.entry(sku.clone()).or_default();
            // Until its first units, a new product was never told below; they tell it.
            let was = l.1 > 0 && l.0 < l.1 && !(l.2 && units);
            l.0 += delta;
            if let Some(s) = safety {
                l.1 = *s;
            }
            l.2 &= !units;
            if !was && l.1 > 0 && l.0 < l.1 {
                *crossings.entry(sku.clone()).or_default() += 1;
            }
        }
    }
    assert_eq!(told, crossings, "stock.low at HQ");
}

/// A member found by phone shows what the member's own page shows; each coupon used shows the
/// sale it was used on.
pub async fn lookups(d: &Daemon, tm: &str, book: &Book, ids: &[String]) {
    for id in ids {
        let (_, m) = d.get(tm, &format!("/v1/members/{id}")).await;
        let phone = m["phone"].as_str().unwrap();
        let (s, found) = d.get(tm, &format!("/v1/members?phone={phone}")).await;
        assert_eq!(s, 200, "{found}");
        assert_eq!(found["members"][0], m, "by phone against by id");
        let tail = &phone[phone.len() - 4..];
        let (_, by_tail) = d.get(tm, &format!("/v1/members?phone_tail={tail}")).await;
        let same = by_tail["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == id.as_str());
        assert_eq!(same, Some(&m), "by phone tail against by id");
    }
    for s in &book.sales {
        for c in s["coupons"].as_array().unwrap() {
            let (st, coupon) = d
                .get(tm, &format!("/v1/coupons/{}", c["code"].as_str().unwrap()))
                .await;
            assert_eq!(st, 200, "{coupon}");
            assert_eq!(coupon["used"]["sale_id"], s["id"], "{coupon}");
        }
    }
    for c in &book.coupons {
        let (_, coupon) = d.get(tm, &format!("/v1/coupons/{}", c.code)).await;
        assert!(
            coupon["used"].is_null(),
            "an unused coupon shows used: {coupon}"
        );
    }
}

/// HQ's `coupon.redeemed` and `level.changed`: what each sale gave and did.
pub fn hq_details(hq: &[Value], book: &Book) {
    for s in &book.sales {
        for c in s["coupons"].as_array().unwrap() {
            let up = hq
                .iter()
                .find(|e| e["kind"] == "coupon.redeemed" && e["data"]["code"] == c["code"])
                .expect("coupon.redeemed");
            assert_eq!(
                (
                    &up["data"]["sale_id"],
                    &up["data"]["discount"],
                    &up["data"]["member_id"]
                ),
                (&s["id"], &c["discount"], &s["member_id"]),
                "{up}"
            );
        }
        if let Some(to) = s["member"]["upgraded_to"].as_object() {
            let up = hq
                .iter()
                .find(|e| e["kind"] == "level.changed" && e["data"]["cause_id"] == s["id"])
                .expect("level.changed");
            assert_eq!(up["data"]["to"]["code"], to["code"], "{up}");
            assert_eq!(up["data"]["from"]["code"], s["level"]["code"], "{up}");
            assert_eq!(
                up["data"]["total_spend"], s["member"]["total_spend"],
                "{up}"
            );
        }
    }
}

/// The member's page against the segment lists (`GET /v1/segments?segment=`): the same segment,
/// scores and figures; and the next level's spend still needed.
pub async fn segments(d: &Daemon, tm: &str, ids: &[String]) {
    for id in ids {
        let (_, m) = d.get(tm, &format!("/v1/members/{id}")).await;
        let code = m["segment"]["code"].as_str().unwrap();
        let (s, v) = d
            .get(tm, &format!("/v1/segments?segment={code}&limit=1000"))
            .await;
        assert_eq!(s, 200, "{v}");
        let row = v["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == id.as_str())
            .unwrap_or_else(|| panic!("{id} not in segment {code}: {v}"));
        for k in ["rfm", "visits", "total_spend", "last_visit_at", "name"] {
            assert_eq!(row[k], m[k], "{k} of {id} in the segment list: {row} {m}");
        }
        if let Some(next) = m["next_level"].as_object() {
            let threshold = match next["code"].as_str() {
                Some("regular") => 100_000,
                Some("silver") => 300_000,
                _ => 500_000,
            };
            let needed = (threshold - i(&m["total_spend"])).max(0);
            assert_eq!(next["spend_needed"].as_i64(), Some(needed), "{m}");
        }
    }
}

/// The audit log: a `sale.refund` entry for each refund (with what it took back) and a
/// `stock.move` entry for each movement of the staff; HQ holds the same entries.
pub async fn audit(d: &Daemon, admin: &str, book: &Book, hq: &[Value]) {
    let mut entries = Vec::new();
    let mut after = 0;
    loop {
        let (s, v) = d
            .get(admin, &format!("/v1/audit?after={after}&limit=1000"))
            .await;
        assert_eq!(s, 200, "{v}");
        entries.extend(v["entries"].as_array().unwrap().iter().cloned());
        match v["next"].as_u64() {
            Some(n) => after = n,
            None => break,
        }
    }
    for r in &book.refunds {
        let e = entries
            .iter()
            .find(|e| e["action"] == "sale.refund" && e["detail"]["refund_id"] == r["id"])
            .unwrap_or_else(|| panic!("no audit entry for refund {r}"));
        assert_eq!(e["target"], r["sale_id"], "{e}");
        assert_eq!(e["staff_no"], r["staff_no"], "{e}");
    }
    for m in &book.movements {
        assert!(
            entries
                .iter()
                .any(|e| e["action"] == "stock.move"
                    && e["detail"]["movement_id"] == m["movement_id"]),
            "no audit entry for movement {m}"
        );
    }
    let mut up: Vec<&Value> = hq
        .iter()
        .filter(|e| e["kind"] == "audit.recorded")
        .collect();
    up.sort_by_key(|e| e["seq"].as_u64());
    up.dedup_by_key(|e| e["seq"].as_u64());
    assert_eq!(up.len(), entries.len(), "audit entries at HQ");
    for e in &entries {
        // HQ's copy keeps the time as the chain's MAC covers it (UTC); the API shows it with
        // the store's offset: the same instant.
        let instant =
            |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
        let mut at_hq = up
            .iter()
            .find(|u| u["data"]["n"] == e["n"])
            .map(|u| u["data"].clone());
        if let Some(a) = at_hq.as_mut() {
            assert_eq!(instant(&a["at"]), instant(&e["at"]), "{a} {e}");
            a["at"] = e["at"].clone();
        }
        assert_eq!(at_hq.as_ref(), Some(e), "audit entry {} at HQ", e["n"]);
    }
}

/// Each hour of the sales report holds that hour's sales.
pub async fn hours(d: &Daemon, tm: &str, book: &Book, day: &str) {
    let (_, r) = d
        .get(tm, &format!("/v1/reports/sales?from={day}&to={day}"))
        .await;
    let mut want: BTreeMap<String, (u64, i64)> = BTreeMap::new();
    for s in book
        .sales
        .iter()
        .filter(|s| day_of(&s["created_at"]) == day)
    {
        let hour: u32 = s["created_at"].as_str().unwrap()[11..13].parse().unwrap();
        let e = want.entry(hour.to_string()).or_default();
        e.0 += 1;
        e.1 += i(&s["total"]);
    }
    let got: BTreeMap<String, (u64, i64)> = r["by_hour"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(h, v)| (h.clone(), (v[0].as_u64().unwrap(), i(&v[1]))))
        .collect();
    assert_eq!(got, want, "by hour on {day}");
}

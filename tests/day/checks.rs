//! Every view of a store's days held against the book of what the terminals were told, and
//! against each other: the sales list and each sale, the reports (JSON and CSV), payments,
//! stock and its movements, each member (JSON and the export), the receipts on paper, and
//! what HQ received.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{Value, json};

use super::Book;
use crate::common::Daemon;

/// The store-local day of an RFC 3339 time as the API writes it (`2026-11-21T10:00:00+08:00`).
pub fn day_of(t: &Value) -> String {
    t.as_str().unwrap()[..10].to_string()
}

fn i(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

fn seq(v: &Value) -> u64 {
    v["seq"].as_u64().unwrap()
}

/// Each sale adds up, and reads the same in its answer, on its own page, in its day's list.
pub async fn sales(d: &Daemon, t: &str, book: &Book, days: &[&str]) {
    for s in &book.sales {
        let lines = s["lines"].as_array().unwrap();
        let sum = |k: &str| lines.iter().map(|l| i(&l[k])).sum::<i64>();
        assert_eq!(
            i(&s["subtotal"]) - i(&s["discount_total"]) - i(&s["points_value"]),
            i(&s["total"]),
            "{s}"
        );
        assert_eq!(sum("amount") - sum("points_value"), i(&s["total"]), "{s}");
        assert_eq!(sum("discount"), i(&s["discount_total"]), "{s}");
        assert_eq!(sum("points_earned"), i(&s["points_earned"]), "{s}");
        assert_eq!(sum("points_redeemed"), i(&s["points_redeemed"]), "{s}");
        let coupons: i64 = s["coupons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| i(&c["discount"]))
            .sum();
        assert_eq!(sum("coupon_discount"), coupons, "{s}");
        let paid: i64 = s["payments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| i(&p["amount"]))
            .sum();
        assert_eq!(
            (paid, paid - i(&s["change"])),
            (i(&s["paid"]), i(&s["total"])),
            "{s}"
        );

        let id = s["id"].as_str().unwrap();
        let (st, mut page) = d.get(t, &format!("/v1/sales/{id}")).await;
        assert_eq!(st, 200, "{page}");
        let refunds = page.as_object_mut().unwrap().remove("refunds").unwrap();
        let refunded = page
            .as_object_mut()
            .unwrap()
            .remove("refunded_total")
            .unwrap();
        assert_eq!(&page, s, "GET /v1/sales/{id} against the sale's answer");
        let mine: Vec<&Value> = book.refunds.iter().filter(|r| r["sale_id"] == id).collect();
        assert_eq!(
            refunds.as_array().unwrap().iter().collect::<Vec<_>>(),
            mine,
            "refunds of {id}"
        );
        assert_eq!(
            i(&refunded),
            mine.iter().map(|r| i(&r["refund_total"])).sum::<i64>()
        );
    }
    for day in days {
        let listed = d.sales_on(t, day).await;
        let booked: Vec<&Value> = book
            .sales
            .iter()
            .filter(|s| day_of(&s["created_at"]) == *day)
            .collect();
        let mut booked = booked.clone();
        booked.sort_by_key(|s| seq(s));
        assert_eq!(
            listed.iter().collect::<Vec<_>>(),
            booked,
            "sales list of {day}"
        );
        let (st, page) = d.get(t, &format!("/v1/refunds?date={day}")).await;
        assert_eq!(st, 200, "{page}");
        let mut booked: Vec<&Value> = book
            .refunds
            .iter()
            .filter(|r| day_of(&r["created_at"]) == *day)
            .collect();
        booked.sort_by_key(|r| seq(r));
        assert_eq!(
            page["refunds"]
                .as_array()
                .unwrap()
                .iter()
                .collect::<Vec<_>>(),
            booked,
            "refunds list of {day}"
        );
    }
}

/// Payments: each sale's methods pay its total, each refund's methods return its money, and
/// no method of a sale gets back more than it paid.
pub fn payments(book: &Book) -> BTreeMap<String, i64> {
    let mut by_method: BTreeMap<String, i64> = BTreeMap::new();
    for s in &book.sales {
        let mut change = i(&s["change"]);
        let mut net: BTreeMap<String, i64> = BTreeMap::new();
        for p in s["payments"].as_array().unwrap() {
            let mut a = i(&p["amount"]);
            if p["method"] == "cash" {
                let c = change.min(a);
                a -= c;
                change -= c;
            }
            *net.entry(p["method"].as_str().unwrap().into()).or_default() += a;
        }
        assert_eq!(change, 0, "change not given from cash: {s}");
        for r in book.refunds.iter().filter(|r| r["sale_id"] == s["id"]) {
            let back: i64 = r["payments"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| i(&p["amount"]))
                .sum();
            assert_eq!(back, i(&r["refund_total"]), "{r}");
            for p in r["payments"].as_array().unwrap() {
                let m = net.entry(p["method"].as_str().unwrap().into()).or_default();
                *m -= i(&p["amount"]);
                assert!(
                    *m >= 0,
                    "{} got back more than it paid: {s} {r}",
                    p["method"]
                );
            }
        }
        for (m, a) in net {
            *by_method.entry(m).or_default() += a;
        }
    }
    by_method
}

/// The sales and staff reports of `day`, JSON and CSV, against the book.
pub async fn reports(d: &Daemon, tm: &str, book: &Book, day: &str) {
    let sales: Vec<&Value> = book
        .sales
        .iter()
        .filter(|s| day_of(&s["created_at"]) == day)
        .collect();
    let refunds: Vec<&Value> = book
        .refunds
        .iter()
        .filter(|r| day_of(&r["created_at"]) == day)
        .collect();
    let revenue: i64 = sales.iter().map(|s| i(&s["total"])).sum();
    let refunded: i64 = refunds.iter().map(|r| i(&r["refund_total"])).sum();
    let members: Vec<&&Value> = sales.iter().filter(|s| !s["member_id"].is_null()).collect();
    let (s, r) = d
        .get(tm, &format!("/v1/reports/sales?from={day}&to={day}"))
        .await;
    assert_eq!(s, 200, "{r}");
    let got = json!([
        r["sales"],
        r["revenue"],
        r["refunded"],
        r["net"],
        r["member_sales"],
        r["member_revenue"]
    ]);
    let want = json!([
        sales.len(),
        revenue,
        refunded,
        revenue - refunded,
        members.len(),
        members.iter().map(|s| i(&s["total"])).sum::<i64>()
    ]);
    assert_eq!(got, want, "sales report of {day}: {r}");
    let by_hour: i64 = r["by_hour"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| i(&v[1]))
        .sum();
    assert_eq!(by_hour, revenue, "by hour: {r}");
    // The cash-up: each method's takings (cash less the change given) and money given back.
    let mut want: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for s in &sales {
        for p in s["payments"].as_array().unwrap() {
            want.entry(p["method"].as_str().unwrap().into())
                .or_default()
                .0 += i(&p["amount"]);
        }
        want.entry("cash".into()).or_default().0 -= i(&s["change"]);
    }
    for r in &refunds {
        for p in r["payments"].as_array().unwrap() {
            want.entry(p["method"].as_str().unwrap().into())
                .or_default()
                .1 += i(&p["amount"]);
        }
    }
    want.retain(|_, v| *v != (0, 0));
    let got: BTreeMap<String, (i64, i64)> = r["by_method"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), (i(&v["taken"]), i(&v["refunded"]))))
        .collect();
    assert_eq!(got, want, "takings by method on {day}: {r}");
    let csv = d
        .text(
            tm,
            &format!("/v1/reports/sales?from={day}&to={day}&format=csv"),
        )
        .await;
    let y = storebox::domain::money::format_yuan;
    let row = format!(
        "{day},{},{},{},{}",
        sales.len(),
        y(revenue),
        y(refunded),
        y(revenue - refunded)
    );
    assert_eq!(
        csv.trim_start_matches('\u{feff}').lines().nth(1),
        Some(row.as_str()),
        "{csv}"
    );

    // Staff: their sales, and the refunds of their sales (whoever gave them, whenever sold).
    let cashier_of: HashMap<&str, &str> = book
        .sales
        .iter()
        .map(|s| (s["id"].as_str().unwrap(), s["staff_no"].as_str().unwrap()))
        .collect();
    let mut want: BTreeMap<String, (u64, i64, i64, u64)> = BTreeMap::new();
    for s in &sales {
        let e = want
            .entry(s["staff_no"].as_str().unwrap().into())
            .or_default();
        e.0 += 1;
        e.1 += i(&s["total"]);
    }
    for r in &refunds {
        let no = cashier_of[r["sale_id"].as_str().unwrap()];
        want.entry(no.into()).or_default().2 += i(&r["refund_total"]);
    }
    for (_, no, on) in &book.registrations {
        if on == day {
            want.entry(no.clone()).or_default().3 += 1;
        }
    }
    let (s, r) = d
        .get(tm, &format!("/v1/reports/staff?from={day}&to={day}"))
        .await;
    assert_eq!(s, 200, "{r}");
    let got: BTreeMap<String, (u64, i64, i64, u64)> = r["staff"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let n = |k: &str| f[k].as_u64().unwrap();
            (
                f["staff_no"].as_str().unwrap().into(),
                (
                    n("sales"),
                    i(&f["revenue"]),
                    i(&f["refunded"]),
                    n("registrations"),
                ),
            )
        })
        .collect();
    assert_eq!(got, want, "staff report of {day}: {r}");
    let csv = d
        .text(
            tm,
            &format!("/v1/reports/staff?from={day}&to={day}&format=csv"),
        )
        .await;
    for (no, (n, rev, back, regs)) in &want {
        let cells = format!("\t{no},{n},{},{},", y(*rev), y(*back));
        let line = csv.lines().find(|l| l.starts_with(&cells));
        assert!(
            line.is_some_and(|l| l.split(',').nth(6) == Some(&regs.to_string())),
            "staff CSV of {day} has no row {cells:?}…{regs}: {csv}"
        );
    }
}

/// Stock: every movement's level after it, and each product's level now, follow from the
/// movements, sales and restocked refunds in `seq` order; HQ got every movement.
pub async fn stock(d: &Daemon, t: &str, book: &Book, days: &[&str], hq: &HashMap<String, Value>) {
    let mut movements: Vec<Value> = Vec::new();
    for day in days {
        let (s, v) = d.get(t, &format!("/v1/stock/movements?date={day}")).await;
        assert_eq!(s, 200, "{v}");
        movements.extend(v["movements"].as_array().unwrap().iter().cloned());
    }
    let ids: HashSet<&str> = movements
        .iter()
        .map(|m| m["movement_id"].as_str().unwrap())
        .collect();
    for m in &book.movements {
        assert!(
            ids.contains(m["movement_id"].as_str().unwrap()),
            "movement not listed: {m}"
        );
    }
    // (seq, sku, change, movement): a movement sets or moves the level; a sale or refund moves it.
    let mut steps: Vec<(u64, String, i64, Option<&Value>)> = Vec::new();
    for m in &movements {
        steps.push((
            seq(m),
            m["sku"].as_str().unwrap().into(),
            i(&m["delta"]),
            Some(m),
        ));
    }
    for s in &book.sales {
        for l in s["lines"].as_array().unwrap() {
            steps.push((
                seq(s),
                l["sku"].as_str().unwrap().into(),
                -i(&l["qty"]),
                None,
            ));
        }
    }
    for r in book.refunds.iter().filter(|r| r["restock"] == true) {
        for l in r["lines"].as_array().unwrap() {
            steps.push((
                seq(r),
                l["sku"].as_str().unwrap().into(),
                i(&l["qty"]),
                None,
            ));
        }
    }
    steps.sort_by_key(|s| s.0);
    let mut level: BTreeMap<String, i64> = BTreeMap::new();
    for (_, sku, change, m) in &steps {
        let l = level.entry(sku.clone()).or_default();
        *l += change;
        if let Some(m) = m {
            assert_eq!(
                *l,
                i(&m["on_hand_after"]),
                "movement against the books: {m}"
            );
        }
    }
    for (sku, want) in &level {
        let (s, v) = d.get(t, &format!("/v1/stock/{sku}")).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(i(&v["on_hand"]), *want, "{sku}: {v}");
    }
    for m in &movements {
        let up = hq
            .values()
            .find(|e| e["kind"] == "stock.moved" && e["data"]["movement_id"] == m["movement_id"])
            .unwrap_or_else(|| panic!("HQ never got movement {m}"));
        assert_eq!(up["data"]["on_hand_after"], m["on_hand_after"], "{up} {m}");
    }
}

/// The level a spend reaches under the chain's table.
fn level_for(spend: i64) -> Option<&'static str> {
    match spend {
        s if s >= 500_000 => Some("gold"),
        s if s >= 300_000 => Some("silver"),
        s if s >= 100_000 => Some("regular"),
        _ => None,
    }
}

fn rank(code: Option<&str>) -> u8 {
    match code {
        Some("gold") => 3,
        Some("silver") => 2,
        Some("regular") => 1,
        _ => 0,
    }
}

/// What a member held before the day's book: (spend, points, visits, level) pushed by HQ.
pub type Opening = HashMap<String, (i64, i64, u64, Option<&'static str>)>;

/// Each member: the figures of every sale and refund follow on from the one before (in `seq`
/// order), points are earned at the level held when the sale began, and the member's page,
/// the export and HQ's `level.changed` events end where the book does.
pub async fn members(
    d: &Daemon,
    tm: &str,
    book: &Book,
    opening: &Opening,
    hq: &HashMap<String, Value>,
    can_drop: bool,
) {
    let mut ids: Vec<String> = book.registrations.iter().map(|r| r.0.clone()).collect();
    ids.extend(opening.keys().cloned());
    let export = d.text(tm, "/v1/members/export").await;
    for id in &ids {
        let (mut spend, mut points, mut visits, mut held) =
            opening.get(id).copied().unwrap_or_default();
        let mut last_visit: Option<String> = None;
        let mut events: Vec<&Value> = book
            .sales
            .iter()
            .chain(&book.refunds)
            .filter(|e| e["member_id"] == id.as_str())
            .collect();
        events.sort_by_key(|e| seq(e));
        let mut changes = 0;
        for e in events {
            let before = held;
            if e.get("sale_id").is_none() {
                assert_eq!(
                    e["level"]["code"].as_str(),
                    held,
                    "level at the start of {e}"
                );
                let rate = match held {
                    Some("gold") => 15,
                    Some("silver") => 12,
                    Some("regular") => 10,
                    _ => 0,
                };
                assert_eq!(i(&e["points_earned"]), i(&e["total"]) * rate / 1000, "{e}");
                spend += i(&e["total"]);
                points += i(&e["points_earned"]) - i(&e["points_redeemed"]);
                visits += 1;
                last_visit = Some(e["created_at"].as_str().unwrap().into());
                if can_drop || rank(level_for(spend)) > rank(held) {
                    held = level_for(spend);
                }
                let up = e["member"]["upgraded_to"]["code"].as_str();
                assert_eq!(
                    up,
                    (rank(held) > rank(before)).then_some(held).flatten(),
                    "{e}"
                );
            } else {
                spend -= i(&e["amount"]);
                points += i(&e["points_restored"]) - i(&e["points_reversed"]);
                if can_drop {
                    held = level_for(spend);
                }
            }
            let after = &e["member"];
            let got = (
                i(&after["total_spend"]),
                i(&after["points"]),
                after["level"]["code"].as_str(),
            );
            assert_eq!(got, (spend, points, held), "member {id} after {e}");
            if held != before {
                changes += 1;
                let cause = e["id"].as_str().unwrap();
                let told = hq
                    .values()
                    .filter(|x| x["kind"] == "level.changed" && x["data"]["cause_id"] == cause);
                assert_eq!(told.count(), 1, "level.changed for {e}");
            }
        }
        let told = hq
            .values()
            .filter(|x| x["kind"] == "level.changed" && x["data"]["member_id"] == id.as_str())
            .count();
        assert_eq!(told, changes, "level.changed events of {id}");
        let (s, m) = d.get(tm, &format!("/v1/members/{id}")).await;
        assert_eq!(s, 200, "{m}");
        // The birthday discount: once a year, and not offered again once given.
        let birthdays = book
            .sales
            .iter()
            .filter(|s| s["member_id"] == id.as_str() && s["benefit"] == "birthday")
            .count();
        assert!(
            birthdays <= 1,
            "{id} had the birthday discount {birthdays} times"
        );
        if birthdays == 1 {
            assert_eq!(m["birthday_discount_available"], false, "{m}");
        }
        let got = (
            i(&m["total_spend"]),
            i(&m["points"]),
            m["visits"].as_u64().unwrap(),
            m["level"]["code"].as_str(),
        );
        assert_eq!(got, (spend, points, visits, held), "member {id}: {m}");
        if let Some(at) = last_visit {
            assert_eq!(m["last_visit_at"].as_str(), Some(at.as_str()), "{m}");
        }
        let row = export
            .lines()
            .find(|l| l.starts_with(id.as_str()))
            .unwrap_or_else(|| panic!("{id} not in the export"));
        let cells: Vec<&str> = row.split(',').collect();
        assert_eq!(
            (cells[6], cells[7], cells[8], cells[9]),
            (
                held.unwrap_or(""),
                points.to_string().as_str(),
                spend.to_string().as_str(),
                visits.to_string().as_str()
            ),
            "export row of {id}: {row}"
        );
    }
}

/// HQ: every `seq` from 1 to the journal's last, each event the same whenever it came again,
/// each sale, refund, registration and coupon use of the book once, as recorded.
pub fn hq(events: &[Value], last_seq: u64, book: &Book) -> HashMap<String, Value> {
    let mut by_id: HashMap<String, Value> = HashMap::new();
    for e in events {
        let id = e["id"].as_str().unwrap().to_string();
        if let Some(before) = by_id.get(&id) {
            assert_eq!(before, e, "event {id} sent twice, differently");
        }
        by_id.insert(id, e.clone());
    }
    let mut seqs: Vec<u64> = by_id.values().map(seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=last_seq).collect::<Vec<_>>(), "HQ's seqs");
    let of = |kind: &str| -> Vec<&Value> { by_id.values().filter(|e| e["kind"] == kind).collect() };
    let sold = of("sale.recorded");
    assert_eq!(sold.len(), book.sales.len(), "sales at HQ");
    for s in &book.sales {
        let up = sold
            .iter()
            .find(|e| e["data"]["id"] == s["id"])
            .expect("sale at HQ");
        assert_eq!(&up["data"], s, "sale at HQ");
        assert_eq!(up["seq"], s["seq"]);
        for c in s["coupons"].as_array().unwrap() {
            let n = of("coupon.redeemed")
                .iter()
                .filter(|e| e["data"]["code"] == c["code"])
                .count();
            assert_eq!(n, 1, "coupon.redeemed {c}");
        }
    }
    let back = of("sale.refunded");
    assert_eq!(back.len(), book.refunds.len(), "refunds at HQ");
    for r in &book.refunds {
        let up = back
            .iter()
            .find(|e| e["data"]["id"] == r["id"])
            .expect("refund at HQ");
        assert_eq!(&up["data"], r, "refund at HQ");
    }
    let registered = of("member.registered");
    assert_eq!(
        registered.len(),
        book.registrations.len(),
        "registrations at HQ"
    );
    by_id
}

//! The book of the week in `tests/week_of_reports.rs`, and the reports checked against it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, FixedOffset};
use serde_json::Value;

use crate::common::{Daemon, login_status};

pub fn i(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

/// The daemon's wall clock, moved by writing libfaketime's offset file.
pub struct Clock(pub PathBuf);

impl Clock {
    /// Sets the daemon's clock to `at` (store time, `2026-11-16T10:00:00+08:00`).
    pub fn set(&self, at: &str) {
        let at = DateTime::parse_from_rfc3339(at).unwrap();
        let off = (at.to_utc() - chrono::Utc::now()).num_milliseconds() as f64 / 1000.0;
        // Written aside and renamed over: libfaketime reads the file at every call, and a
        // read while it is rewritten in place finds it empty and gives the real time.
        let aside = self.0.with_extension("next");
        std::fs::write(&aside, format!("{off:+.3}\n")).unwrap();
        std::fs::rename(&aside, &self.0).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// What happened, as the tills were answered.
#[derive(Default)]
pub struct Book {
    pub sales: Vec<Value>,
    pub refunds: Vec<Value>,
}

pub fn day_of(t: &Value) -> String {
    DateTime::parse_from_rfc3339(t.as_str().unwrap())
        .unwrap()
        .date_naive()
        .to_string()
}

pub fn local(t: &Value) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(t.as_str().unwrap()).unwrap()
}

pub struct Store {
    pub d: Daemon,
    pub book: Book,
}

impl Store {
    pub async fn login(&self, terminal: &str, staff: (&str, &str)) -> String {
        let (s, v, _) = login_status(&self.d, terminal, staff.0, staff.1).await;
        assert_eq!(s, 201, "{v}");
        v["token"].as_str().unwrap().to_string()
    }

    /// A sale by `who` at their till (a till has one session at a time: log in each time).
    pub async fn sell(&mut self, who: (&str, (&str, &str)), body: Value) -> Value {
        let t = self.login(who.0, who.1).await;
        let (s, v) = self.d.sale(&t, &body).await;
        assert_eq!(s, 201, "{body} → {v}");
        // The change is what was tendered beyond the total, from cash.
        let paid: i64 = body["payments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| i(&p["amount"]))
            .sum();
        assert_eq!(i(&v["change"]), paid - i(&v["total"]), "{v}");
        self.book.sales.push(v.clone());
        v
    }

    pub async fn refund(&mut self, who: (&str, (&str, &str)), sale: &Value, body: Value) -> Value {
        let t = self.login(who.0, who.1).await;
        let (s, v) = self
            .d
            .post(
                &t,
                &format!("/v1/sales/{}/refunds", sale["id"].as_str().unwrap()),
                &body,
            )
            .await;
        assert_eq!(s, 201, "{body} → {v}");
        self.book.refunds.push(v.clone());
        v
    }
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Takings {
    pub sales: u64,
    pub taken: i64,
    pub refunds: u64,
    pub refunded: i64,
}

/// The figures a day (or the week) should show, from the book.
#[derive(Debug, Default)]
pub struct Want {
    pub sales: u64,
    pub revenue: i64,
    pub refunded: i64,
    pub member_sales: u64,
    pub member_revenue: i64,
    pub by_method: BTreeMap<String, Takings>,
    pub drawers: BTreeMap<String, Takings>,
    pub by_hour: BTreeMap<u32, (u64, i64)>,
    /// staff → (sales, revenue, refunded of their sales, member sales)
    pub staff: BTreeMap<String, (u64, i64, i64, u64)>,
    /// sku → (units, revenue, sales)
    pub products: BTreeMap<String, (i64, i64, u64)>,
}

pub fn want(book: &Book, days: &[String]) -> Want {
    use chrono::Timelike;
    let mut w = Want::default();
    let cashier: BTreeMap<&str, &str> = book
        .sales
        .iter()
        .map(|s| (s["id"].as_str().unwrap(), s["staff_no"].as_str().unwrap()))
        .collect();
    for s in book
        .sales
        .iter()
        .filter(|s| days.contains(&day_of(&s["created_at"])))
    {
        let total = i(&s["total"]);
        w.sales += 1;
        w.revenue += total;
        let h = w.by_hour.entry(local(&s["created_at"]).hour()).or_default();
        h.0 += 1;
        h.1 += total;
        let member = !s["member_id"].is_null();
        if member {
            w.member_sales += 1;
            w.member_revenue += total;
        }
        let st = w
            .staff
            .entry(s["staff_no"].as_str().unwrap().into())
            .or_default();
        st.0 += 1;
        st.1 += total;
        st.3 += u64::from(member);
        let mut net: BTreeMap<String, i64> = BTreeMap::new();
        for p in s["payments"].as_array().unwrap() {
            *net.entry(p["method"].as_str().unwrap().into()).or_default() += i(&p["amount"]);
        }
        *net.get_mut("cash").unwrap_or(&mut 0) -= i(&s["change"]);
        for (m, a) in net.into_iter().filter(|(_, a)| *a > 0) {
            let e = w.by_method.entry(m.clone()).or_default();
            e.sales += 1;
            e.taken += a;
            if m == "cash" {
                let e = w
                    .drawers
                    .entry(s["terminal_id"].as_str().unwrap().into())
                    .or_default();
                e.sales += 1;
                e.taken += a;
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for l in s["lines"].as_array().unwrap() {
            let sku = l["sku"].as_str().unwrap();
            let e = w.products.entry(sku.into()).or_default();
            e.0 += i(&l["qty"]);
            e.1 += i(&l["amount"]);
            if seen.insert(sku) {
                e.2 += 1;
            }
        }
    }
    for r in book
        .refunds
        .iter()
        .filter(|r| days.contains(&day_of(&r["created_at"])))
    {
        let back = i(&r["refund_total"]);
        w.refunded += back;
        let no = cashier[r["sale_id"].as_str().unwrap()];
        w.staff.entry(no.into()).or_default().2 += back;
        for p in r["payments"].as_array().unwrap() {
            let m = p["method"].as_str().unwrap();
            let e = w.by_method.entry(m.into()).or_default();
            e.refunds += 1;
            e.refunded += i(&p["amount"]);
            if m == "cash" {
                let e = w
                    .drawers
                    .entry(r["terminal_id"].as_str().unwrap().into())
                    .or_default();
                e.refunds += 1;
                e.refunded += i(&p["amount"]);
            }
        }
        for l in r["lines"].as_array().unwrap() {
            w.products
                .entry(l["sku"].as_str().unwrap().into())
                .or_default()
                .0 -= i(&l["qty"]);
        }
    }
    w
}

pub fn takings(v: &Value) -> BTreeMap<String, Takings> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, m)| {
            assert_eq!(i(&m["net"]), i(&m["taken"]) - i(&m["refunded"]), "{m}");
            (
                k.clone(),
                Takings {
                    sales: m["sales"].as_u64().unwrap(),
                    taken: i(&m["taken"]),
                    refunds: m["refunds"].as_u64().unwrap(),
                    refunded: i(&m["refunded"]),
                },
            )
        })
        .collect()
}

pub fn yuan(a: i64) -> String {
    storebox::domain::money::format_yuan(a)
}

/// Every figure of the sales, staff and products reports of `from..=to` against the book.
pub async fn check(s: &Store, tm: &str, days: &[String]) {
    let (from, to) = (&days[0], &days[days.len() - 1]);
    let w = want(&s.book, days);
    let q = format!("from={from}&to={to}");
    let (st, r) = s.d.get(tm, &format!("/v1/reports/sales?{q}")).await;
    assert_eq!(st, 200, "{r}");
    let what = format!("sales report {from}..{to}: {r}");
    assert_eq!(r["sales"].as_u64(), Some(w.sales), "{what}");
    assert_eq!(i(&r["revenue"]), w.revenue, "{what}");
    assert_eq!(i(&r["refunded"]), w.refunded, "{what}");
    assert_eq!(i(&r["net"]), w.revenue - w.refunded, "{what}");
    let avg = if w.sales > 0 {
        w.revenue / w.sales as i64
    } else {
        0
    };
    assert_eq!(i(&r["average_ticket"]), avg, "{what}");
    assert_eq!(r["member_sales"].as_u64(), Some(w.member_sales), "{what}");
    assert_eq!(i(&r["member_revenue"]), w.member_revenue, "{what}");
    assert_eq!(takings(&r["by_method"]), w.by_method, "by_method of {what}");
    assert_eq!(
        takings(&r["cash_by_terminal"]),
        w.drawers,
        "drawers of {what}"
    );
    let hours: BTreeMap<u32, (u64, i64)> = r["by_hour"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(h, v)| (h.parse().unwrap(), (v[0].as_u64().unwrap(), i(&v[1]))))
        .collect();
    assert_eq!(hours, w.by_hour, "by_hour of {what}");
    // Each day's row, in JSON and CSV, and the days add up to the period.
    let csv =
        s.d.text(tm, &format!("/v1/reports/sales?{q}&format=csv"))
            .await;
    let rows: Vec<&str> = csv.trim_start_matches('\u{feff}').lines().skip(1).collect();
    assert_eq!(rows.len(), days.len(), "{csv}");
    let (mut n, mut rev, mut back) = (0, 0, 0);
    for (day, row) in days.iter().zip(&rows) {
        let dw = want(&s.book, std::slice::from_ref(day));
        let got = (
            r["by_day"][day][0].as_u64().unwrap_or(0),
            r["by_day"][day][1].as_i64().unwrap_or(0),
            r["refunded_by_day"][day].as_i64().unwrap_or(0),
        );
        assert_eq!(got, (dw.sales, dw.revenue, dw.refunded), "{day} in {what}");
        let line = format!(
            "{day},{},{},{},{}",
            dw.sales,
            yuan(dw.revenue),
            yuan(dw.refunded),
            yuan(dw.revenue - dw.refunded)
        );
        assert_eq!(*row, line, "{csv}");
        n += dw.sales;
        rev += dw.revenue;
        back += dw.refunded;
    }
    assert_eq!((n, rev, back), (w.sales, w.revenue, w.refunded), "{what}");
    // Against the same length of time before.
    let len = days.len() as i64;
    let first = from.parse::<chrono::NaiveDate>().unwrap();
    let before: Vec<String> = (1..=len)
        .rev()
        .map(|k| (first - chrono::Duration::days(k)).to_string())
        .collect();
    let p = want(&s.book, &before);
    assert_eq!(r["previous"]["sales"].as_u64(), Some(p.sales), "{what}");
    assert_eq!(i(&r["previous"]["revenue"]), p.revenue, "{what}");
    assert_eq!(i(&r["previous"]["refunded"]), p.refunded, "{what}");
    let trend = |now: i64, was: i64| {
        (was != 0).then(|| ((now - was) as f64 / was as f64 * 1000.0).round() / 10.0)
    };
    assert_eq!(
        r["revenue_trend_percent"].as_f64(),
        trend(w.revenue, p.revenue),
        "{what}"
    );
    assert_eq!(
        r["sales_trend_percent"].as_f64(),
        trend(w.sales as i64, p.sales as i64),
        "{what}"
    );

    // Staff.
    let (st, r) = s.d.get(tm, &format!("/v1/reports/staff?{q}")).await;
    assert_eq!(st, 200, "{r}");
    let got: BTreeMap<String, (u64, i64, i64, i64, f64)> = r["staff"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["sales"].as_u64() > Some(0) || i(&f["refunded"]) != 0)
        .map(|f| {
            (
                f["staff_no"].as_str().unwrap().into(),
                (
                    f["sales"].as_u64().unwrap(),
                    i(&f["revenue"]),
                    i(&f["refunded"]),
                    i(&f["average_ticket"]),
                    f["member_share"].as_f64().unwrap(),
                ),
            )
        })
        .collect();
    let want_staff: BTreeMap<String, (u64, i64, i64, i64, f64)> = w
        .staff
        .iter()
        .map(|(k, (n, rev, back, members))| {
            let avg = if *n > 0 { rev / *n as i64 } else { 0 };
            let share = if *n > 0 {
                (*members as f64 / *n as f64 * 1000.0).round() / 1000.0
            } else {
                0.0
            };
            (k.clone(), (*n, *rev, *back, avg, share))
        })
        .collect();
    assert_eq!(got, want_staff, "staff report {from}..{to}: {r}");

    // Products (CSV: every product).
    let csv =
        s.d.text(
            tm,
            &format!("/v1/reports/products?{q}&format=csv&limit=1000"),
        )
        .await;
    for (sku, (units, revenue, sales)) in &w.products {
        let line = csv
            .lines()
            .find(|l| {
                l.trim_start_matches('\u{feff}')
                    .starts_with(&format!("{sku},"))
            })
            .unwrap_or_else(|| panic!("{sku} not in {csv}"));
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(
            (cells[2], cells[3], cells[4]),
            (
                units.to_string().as_str(),
                yuan(*revenue).as_str(),
                sales.to_string().as_str()
            ),
            "products {from}..{to}: {csv}"
        );
    }
}

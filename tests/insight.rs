//! Customer insight against an independent computation: a generated year of history (a few
//! thousand members with different habits, baskets with built-in associations, refunds) is
//! written into a journal, the daemon starts on it, and its segments, churn list, product
//! pairs and staff figures are checked against figures the test computes itself from the
//! generated data.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, TimeZone};
use common::history;
use common::*;
use serde_json::{Value, json};

/// A small deterministic generator (xorshift64*), so every run sees the same history.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const PRODUCTS: [(&str, i64); 8] = [
    ("TEA", 25000),
    ("MILK", 1290),
    ("RICE", 8990),
    ("EGGS", 1590),
    ("BREAD", 990),
    ("JAM", 2290),
    ("OIL", 6990),
    ("SALT", 350),
];

struct GenSale {
    id: String,
    at: DateTime<FixedOffset>,
    staff: String,
    member: Option<usize>,
    lines: Vec<(&'static str, u32, i64)>,
    total: i64,
}

struct GenRefund {
    sale: usize,
    at: DateTime<FixedOffset>,
}

struct History {
    members: Vec<(String, DateTime<FixedOffset>, String)>,
    sales: Vec<GenSale>,
    refunds: Vec<GenRefund>,
}

fn basket(rng: &mut Rng) -> Vec<(&'static str, u32, i64)> {
    let mut skus: BTreeSet<&'static str> = BTreeSet::new();
    // Built-in associations: bread with jam, tea with milk.
    match rng.below(5) {
        0 => {
            skus.insert("BREAD");
            skus.insert("JAM");
        }
        1 => {
            skus.insert("TEA");
            if rng.below(3) > 0 {
                skus.insert("MILK");
            }
        }
        _ => {}
    }
    for _ in 0..=rng.below(3) {
        skus.insert(PRODUCTS[rng.below(PRODUCTS.len() as u64) as usize].0);
    }
    skus.into_iter()
        .map(|s| {
            let price = PRODUCTS.iter().find(|p| p.0 == s).map(|p| p.1).unwrap_or(0);
            let qty = 1 + rng.below(2) as u32;
            (s, qty, price * i64::from(qty))
        })
        .collect()
}

fn generate(now: DateTime<FixedOffset>, members: usize) -> History {
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let staff = ["1001", "1002", "1003", "2001"];
    let day0 = now - Duration::days(360);
    let mut h = History {
        members: Vec::new(),
        sales: Vec::new(),
        refunds: Vec::new(),
    };
    for i in 0..members {
        let joined = day0 + Duration::days(rng.below(30) as i64) + Duration::hours(9);
        let by = staff[rng.below(3) as usize].to_string();
        h.members
            .push((uuid::Uuid::now_v7().to_string(), joined, by));
        // Habits: weekly regulars, regulars who stopped, monthly, rare, never.
        let (every, stop_days_ago) = match i % 5 {
            0 => (7 + rng.below(4) as i64, 0),
            1 => (6 + rng.below(4) as i64, 60 + rng.below(120) as i64),
            2 => (25 + rng.below(10) as i64, 0),
            3 => (90 + rng.below(60) as i64, 0),
            _ => continue,
        };
        let mut t = joined + Duration::days(rng.below(every as u64) as i64);
        while t < now - Duration::days(stop_days_ago.max(1)) {
            let at = t
                .date_naive()
                .and_hms_opt(10 + rng.below(10) as u32, rng.below(60) as u32, 0);
            let at = at
                .and_then(|x| now.offset().from_local_datetime(&x).single())
                .unwrap_or(t);
            if at < now - Duration::hours(1) {
                let lines = basket(&mut rng);
                let total = lines.iter().map(|l| l.2).sum();
                h.sales.push(GenSale {
                    id: uuid::Uuid::now_v7().to_string(),
                    at,
                    staff: staff[rng.below(4) as usize].to_string(),
                    member: Some(i),
                    lines,
                    total,
                });
            }
            t += Duration::days(every - 2 + rng.below(5) as i64);
        }
    }
    // Walk-in customers.
    for _ in 0..members * 2 {
        let at = day0 + Duration::minutes(rng.below(359 * 24 * 60) as i64);
        let lines = basket(&mut rng);
        let total = lines.iter().map(|l| l.2).sum();
        h.sales.push(GenSale {
            id: uuid::Uuid::now_v7().to_string(),
            at,
            staff: staff[rng.below(4) as usize].to_string(),
            member: None,
            lines,
            total,
        });
    }
    h.sales.sort_by_key(|s| s.at);
    for (i, s) in h.sales.iter().enumerate() {
        if i % 40 == 7 && s.at < now - Duration::days(2) {
            h.refunds.push(GenRefund {
                sale: i,
                at: s.at + Duration::hours(20),
            });
        }
    }
    h
}

fn sale_body(s: &GenSale, member_id: Option<&str>) -> Value {
    history::sale_event(&s.id, s.at, &s.staff, member_id, &s.lines)
}

fn refund_body(s: &GenSale, at: DateTime<FixedOffset>, member_id: Option<&str>) -> Value {
    json!({"kind": "sale.refunded", "data": {
        "id": uuid::Uuid::now_v7().to_string(), "seq": 0, "store_id": "sh-001",
        "sale_id": s.id, "sale_month": s.at.format("%Y-%m").to_string(),
        "created_at": at.to_rfc3339(), "staff_no": "2001", "terminal_id": "pos-1",
        "member_id": member_id, "reason": "退货", "restock": true,
        "lines": s.lines.iter().map(|(sku, qty, amount)| json!({
            "sku": sku, "name": sku, "qty": qty, "amount": amount,
            "points_restored": 0, "points_reversed": 0})).collect::<Vec<_>>(),
        "amount": s.total, "points_restored": 0, "points_reversed": 0,
        "points_shortfall": 0, "shortfall_value": 0, "refund_total": s.total,
        "payments": [{"method": "cash", "amount": s.total}], "member": null}})
}

/// Writes the history into the store's journal, in time order.
fn write_journal(data: &std::path::Path, h: &History) {
    let mut events: Vec<(DateTime<FixedOffset>, Value)> = Vec::new();
    for (i, (id, at, by)) in h.members.iter().enumerate() {
        let (name, phone) = (format!("会员{i}"), format!("139{:08}", i));
        events.push((*at, history::member_event(id, *at, by, &name, &phone)));
    }
    for s in &h.sales {
        let m = s.member.map(|i| h.members[i].0.as_str());
        events.push((s.at, sale_body(s, m)));
    }
    for r in &h.refunds {
        let s = &h.sales[r.sale];
        events.push((
            r.at,
            refund_body(s, r.at, s.member.map(|i| h.members[i].0.as_str())),
        ));
    }
    history::write_journal(data, events);
}

/// Per member: visits, last visit day, net spend, visit days, net spend by month.
type MemberFacts = (
    u64,
    NaiveDate,
    i64,
    BTreeSet<NaiveDate>,
    BTreeMap<String, i64>,
);

/// The test's own RFM segment code (defaults: R ≤30/60/90/180 days, F ≥2/4/8/16 visits,
/// M ≥¥500/1,000/3,000/10,000; "high" at 3 or more).
fn segment_of(days_since: i64, visits: u64, spend: i64) -> &'static str {
    let r = 5 - [30, 60, 90, 180]
        .iter()
        .filter(|c| days_since > **c)
        .count();
    let f = 1 + [2u64, 4, 8, 16].iter().filter(|c| visits >= **c).count();
    let m = 1 + [50_000i64, 100_000, 300_000, 1_000_000]
        .iter()
        .filter(|c| spend >= **c)
        .count();
    match (r >= 3, f >= 3, m >= 3) {
        (true, true, true) => "important_value",
        (false, true, true) => "important_retain",
        (true, false, true) => "important_develop",
        (false, false, true) => "important_winback",
        (true, true, false) => "general_value",
        (false, true, false) => "general_retain",
        (true, false, false) => "general_develop",
        (false, false, false) => "general_winback",
    }
}

#[tokio::test]
async fn insight_matches_an_independent_computation() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let now = chrono::Utc::now().with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap());
    let today: NaiveDate = store_today();
    let h = generate(now, 2_000);
    assert!(h.sales.len() > 20_000, "{} sales", h.sales.len());
    write_journal(&data, &h);
    let d = Daemon::start_in(dir.path(), "");
    let tm = d.login(MANAGER).await;

    // --- what the test expects, from the generated data alone.
    let refunded: HashMap<usize, i64> = h
        .refunds
        .iter()
        .map(|r| (r.sale, h.sales[r.sale].total))
        .collect();
    let mut per_member: HashMap<usize, MemberFacts> = HashMap::new();
    for (i, s) in h.sales.iter().enumerate() {
        let Some(m) = s.member else { continue };
        let e = per_member.entry(m).or_insert((
            0,
            s.at.date_naive(),
            0,
            BTreeSet::new(),
            BTreeMap::new(),
        ));
        let net = s.total - refunded.get(&i).copied().unwrap_or(0);
        e.0 += 1;
        e.1 = e.1.max(s.at.date_naive());
        e.2 += net;
        e.3.insert(s.at.date_naive());
        *e.4.entry(s.at.format("%Y-%m").to_string()).or_insert(0) += net;
    }
    let mut expected_segments: BTreeMap<&str, u64> = BTreeMap::new();
    let mut expected_at_risk: BTreeSet<String> = BTreeSet::new();
    let month = |n: i32| {
        let idx = today.format("%Y").to_string().parse::<i32>().unwrap() * 12
            + today.format("%m").to_string().parse::<i32>().unwrap()
            - 1
            - n;
        format!("{:04}-{:02}", idx.div_euclid(12), idx.rem_euclid(12) + 1)
    };
    for (i, (id, _, _)) in h.members.iter().enumerate() {
        let Some((visits, last, spend, days, months)) = per_member.get(&i) else {
            *expected_segments.entry("no_purchase").or_insert(0) += 1;
            continue;
        };
        *expected_segments
            .entry(segment_of((today - *last).num_days(), *visits, *spend))
            .or_insert(0) += 1;
        // Churn: the last 24 visit days give the usual interval; 2.5 × it and 14 days, up to
        // a year (then lost).
        let recent: Vec<&NaiveDate> = days.iter().rev().take(24).collect();
        let overdue = recent.len() >= 3 && {
            let usual = (*recent[0] - *recent[recent.len() - 1]).num_days() as f64
                / (recent.len() - 1) as f64;
            let gap = (today - *recent[0]).num_days();
            (14..=365).contains(&gap) && gap as f64 > 2.5 * usual
        };
        let spend_in = |m: String| months.get(&m).copied().unwrap_or(0);
        let before = (spend_in(month(2)) + spend_in(month(3)) + spend_in(month(4))) / 3;
        let dropped = before >= 10_000 && (spend_in(month(1)) as f64) < before as f64 * 0.4;
        if overdue || dropped {
            expected_at_risk.insert(id.clone());
        }
    }

    // --- segments.
    let (s, v) = d.get(&tm, "/v1/segments").await;
    assert_eq!(s, 200, "{v}");
    let got: BTreeMap<String, u64> = v["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["code"].as_str().unwrap().to_string(),
                x["members"].as_u64().unwrap(),
            )
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    let want: BTreeMap<String, u64> = expected_segments
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    assert_eq!(got, want);
    assert!(got.len() >= 4, "the habits spread over segments: {got:?}");
    // A member's own view carries the same segment.
    let (i, _) = per_member.iter().next().unwrap();
    let (_, mv) = d
        .get(&tm, &format!("/v1/members/{}", h.members[*i].0))
        .await;
    let (visits, last, spend, _, _) = per_member[i];
    assert_eq!(
        mv["segment"]["code"],
        segment_of((today - last).num_days(), visits, spend)
    );

    // --- churn list.
    let (s, v) = d.get(&tm, "/v1/members/at-risk").await;
    assert_eq!(s, 200);
    let got: BTreeSet<String> = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, expected_at_risk);
    assert!(
        got.len() > 50,
        "the lapsed regulars are flagged: {}",
        got.len()
    );
    let first = &v["members"][0];
    assert!(
        first["message"].as_str().unwrap().contains("usually every"),
        "{first}"
    );

    // --- product pairs over the whole year.
    let from = today - Duration::days(364);
    let mut single: HashMap<&str, u64> = HashMap::new();
    let mut both: HashMap<(&str, &str), u64> = HashMap::new();
    let in_period: Vec<&GenSale> = h
        .sales
        .iter()
        .filter(|s| s.at.date_naive() >= from)
        .collect();
    for s in &in_period {
        let items: BTreeSet<&str> = s.lines.iter().map(|l| l.0).collect();
        for a in &items {
            *single.entry(a).or_insert(0) += 1;
        }
        for a in &items {
            for b in &items {
                if a != b {
                    *both.entry((a, b)).or_insert(0) += 1;
                }
            }
        }
    }
    let n = in_period.len() as f64;
    let (s, v) = d
        .get(
            &tm,
            &format!("/v1/reports/associations?from={from}&to={today}&min_count=50&limit=1000"),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["sales"].as_u64(), Some(in_period.len() as u64));
    let pairs = v["pairs"].as_array().unwrap();
    let expected_pairs = both.values().filter(|c| **c >= 50).count();
    assert_eq!(pairs.len(), expected_pairs);
    for p in pairs {
        let (a, b) = (p["a"].as_str().unwrap(), p["b"].as_str().unwrap());
        let c = both[&(a, b)] as f64;
        let lift = (c / single[a] as f64) / (single[b] as f64 / n);
        assert_eq!(p["count"].as_f64(), Some(c));
        assert!(
            (p["lift"].as_f64().unwrap() - lift).abs() < 1e-3,
            "{p} vs {lift}"
        );
    }
    let top = &pairs[0];
    let top_pair = (top["a"].as_str().unwrap(), top["b"].as_str().unwrap());
    assert!(
        [("BREAD", "JAM"), ("JAM", "BREAD")].contains(&top_pair),
        "bread and jam go together: {top}"
    );

    // --- staff figures.
    let mut want: BTreeMap<String, (u64, i64, i64, u64)> = BTreeMap::new();
    for (i, s) in h.sales.iter().enumerate() {
        if s.at.date_naive() < from {
            continue;
        }
        let e = want.entry(s.staff.clone()).or_default();
        e.0 += 1;
        e.1 += s.total;
        if let Some(r) = h.refunds.iter().find(|r| r.sale == i)
            && r.at.date_naive() <= today
        {
            e.2 += s.total;
        }
    }
    for (_, at, by) in &h.members {
        if at.date_naive() >= from {
            want.entry(by.clone()).or_default().3 += 1;
        }
    }
    let (s, v) = d
        .get(&tm, &format!("/v1/reports/staff?from={from}&to={today}"))
        .await;
    assert_eq!(s, 200, "{v}");
    let got: BTreeMap<String, (u64, i64, i64, u64)> = v["staff"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["staff_no"].as_str().unwrap().to_string(),
                (
                    x["sales"].as_u64().unwrap(),
                    x["revenue"].as_i64().unwrap(),
                    x["refunded"].as_i64().unwrap(),
                    x["registrations"].as_u64().unwrap(),
                ),
            )
        })
        .collect();
    assert_eq!(got, want);

    // --- the sales summary and its CSV agree with the recorded sales.
    let (s, v) = d
        .get(&tm, &format!("/v1/reports/sales?from={from}&to={today}"))
        .await;
    assert_eq!(s, 200);
    let revenue: i64 = in_period.iter().map(|s| s.total).sum();
    assert_eq!(v["revenue"].as_i64(), Some(revenue));
    assert_eq!(v["sales"].as_u64(), Some(in_period.len() as u64));
    let members_share =
        in_period.iter().filter(|s| s.member.is_some()).count() as f64 / in_period.len() as f64;
    assert!((v["member_share"].as_f64().unwrap() - members_share).abs() < 0.001);
    let csv = d
        .text(
            &tm,
            &format!("/v1/reports/sales?from={from}&to={today}&format=csv"),
        )
        .await;
    let csv_sales: u64 = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(csv_sales, in_period.len() as u64);
    d.terminate();
}

/// The reports count what a refund gave back: when the member had already spent the points
/// the refunded sale earned, their value is kept from the money returned, and the sales
/// report, its CSV and the staff report show that money, not the lines' amount.
#[tokio::test]
async fn reports_count_the_money_a_refund_gave_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let tm = d.login(MANAGER).await;
    let m = d.register(&t, "退款", "13900000077", json!({})).await;
    let sell = |body: Value| {
        let (d, t) = (&d, &t);
        async move {
            let (s, v) = d.sale(t, &body).await;
            assert_eq!(s, 201, "{v}");
            v
        }
    };
    // ¥2,500 reaches 普通会员; the next TEA earns 250 points, spent on the one after.
    sell(json!({"member_id": m, "lines": [{"sku": "TEA", "qty": 10}], "payments": cash(250_000)}))
        .await;
    let earning = sell(
        json!({"member_id": m, "lines": [{"sku": "TEA", "qty": 1}], "payments": cash(25_000)}),
    )
    .await;
    assert_eq!(earning["points_earned"], 250);
    sell(json!({"member_id": m, "lines": [{"sku": "TEA", "qty": 1}], "redeem_points": 250, "payments": cash(24_750)})).await;
    let (s, r) = d
        .post(
            &tm,
            &format!("/v1/sales/{}/refunds", earning["id"].as_str().unwrap()),
            &json!({"reason": "test"}),
        )
        .await;
    assert_eq!(s, 201, "{r}");
    let given = r["refund_total"].as_i64().unwrap();
    assert!(
        given < 25_000 && r["shortfall_value"].as_i64() > Some(0),
        "{r}"
    );

    let today = store_today();
    let (s, v) = d
        .get(&tm, &format!("/v1/reports/sales?from={today}&to={today}"))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["refunded"].as_i64(), Some(given), "{v}");
    let (s, v) = d
        .get(&tm, &format!("/v1/reports/staff?from={today}&to={today}"))
        .await;
    assert_eq!(s, 200, "{v}");
    let refunded: i64 = v["staff"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x["refunded"].as_i64())
        .sum();
    assert_eq!(refunded, given, "{v}");
    let csv = d
        .text(
            &tm,
            &format!("/v1/reports/sales?from={today}&to={today}&format=csv"),
        )
        .await;
    let yuan = |fen: i64| format!("{}.{:02}", fen / 100, fen % 100);
    let revenue = 250_000 + 25_000 + 24_750;
    assert!(
        csv.contains(&format!(
            "{today},3,{},{},{}\r\n",
            yuan(revenue),
            yuan(given),
            yuan(revenue - given)
        )),
        "{csv}"
    );
    d.terminate();
}

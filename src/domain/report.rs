//! The figures of the reports: sales by day and hour, products, pairs bought together, staff.
//! Pure functions over the sales and refunds of a period, read from the journal by
//! [`crate::insight`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::Timelike;
use serde::Serialize;

use super::money::Money;
use super::sale::{Payment, PaymentMethod};

/// One sale as the reports see it.
#[derive(Debug, Clone, PartialEq)]
pub struct SaleFact {
    /// Sale id.
    pub id: String,
    /// Store-local time.
    pub at: chrono::DateTime<chrono::FixedOffset>,
    /// Cashier.
    pub staff_no: String,
    /// The till it was rung up at (whose drawer took its cash).
    pub terminal_id: String,
    /// Member, if any.
    pub member_id: Option<String>,
    /// Total paid.
    pub total: Money,
    /// Lines: sku, quantity, amount.
    pub lines: Vec<(String, u32, Money)>,
    /// What was taken by each method, cash net of the change given ([`Sale::net_payments`]).
    ///
    /// [`Sale::net_payments`]: super::sale::Sale::net_payments
    pub payments: Vec<Payment>,
}

/// One refund as the reports see it.
#[derive(Debug, Clone, PartialEq)]
pub struct RefundFact {
    /// The refunded sale.
    pub sale_id: String,
    /// Store-local time.
    pub at: chrono::DateTime<chrono::FixedOffset>,
    /// Staff who refunded.
    pub staff_no: String,
    /// The terminal it was given at (whose drawer gave its cash back).
    pub terminal_id: String,
    /// The refunded sale's cashier.
    pub sale_staff_no: Option<String>,
    /// Amount given back.
    pub amount: Money,
    /// Lines: sku, quantity.
    pub lines: Vec<(String, u32)>,
    /// The money given back, by method.
    pub payments: Vec<Payment>,
}

/// Sales by store-local day and hour.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SalesSummary {
    /// Sales.
    pub sales: u64,
    /// Gross takings (before refunds).
    pub revenue: Money,
    /// Refunded.
    pub refunded: Money,
    /// Revenue minus refunds.
    pub net: Money,
    /// Average ticket (revenue / sales).
    pub average_ticket: Money,
    /// By day `YYYY-MM-DD`: (sales, revenue).
    pub by_day: BTreeMap<String, (u64, Money)>,
    /// Refunded by day `YYYY-MM-DD` (the refund's day).
    pub refunded_by_day: BTreeMap<String, Money>,
    /// By hour 0–23: (sales, revenue).
    pub by_hour: BTreeMap<u32, (u64, Money)>,
    /// Member sales and their revenue.
    pub member_sales: u64,
    /// Revenue from member sales.
    pub member_revenue: Money,
    /// By payment method: what the drawer and each payment provider should show for the period.
    pub by_method: BTreeMap<PaymentMethod, MethodTakings>,
    /// Cash by terminal: what each till's drawer took and gave back, for its count.
    pub cash_by_terminal: BTreeMap<String, MethodTakings>,
}

/// The money of one payment method in a period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct MethodTakings {
    /// Sales paid (in part) this way.
    pub sales: u64,
    /// Taken (cash: tendered minus change).
    pub taken: Money,
    /// Refunds given back this way.
    pub refunds: u64,
    /// Given back.
    pub refunded: Money,
    /// Taken minus given back.
    pub net: Money,
}

/// What adds up a period's sales and refunds as they are read, one at a time in `seq` order
/// (a refund after its sale): a year of a busy store is more than half a million sales, too
/// many to hold (see [`crate::insight::read`]).
pub trait Tally {
    /// A sale of the period.
    fn sale(&mut self, x: &SaleFact);
    /// A refund made in the period.
    fn refund(&mut self, _r: &RefundFact) {}
    /// A member registered in the period, by the staff member `_staff_no`.
    fn registration(&mut self, _staff_no: &str) {}
    /// Whether a refund's `sale_staff_no` is wanted: reading it is a lookup of the refunded
    /// sale's event, a refund at a time.
    fn wants_sale_cashier(&self) -> bool {
        false
    }
}

impl Tally for SalesSummary {
    fn sale(&mut self, x: &SaleFact) {
        self.sales += 1;
        self.revenue += x.total;
        let d = self
            .by_day
            .entry(x.at.date_naive().to_string())
            .or_default();
        d.0 += 1;
        d.1 += x.total;
        let h = self.by_hour.entry(x.at.hour()).or_default();
        h.0 += 1;
        h.1 += x.total;
        if x.member_id.is_some() {
            self.member_sales += 1;
            self.member_revenue += x.total;
        }
        for (method, amount) in by_method(&x.payments) {
            for m in takings(self, method, &x.terminal_id) {
                m.sales += 1;
                m.taken += amount;
            }
        }
    }

    fn refund(&mut self, r: &RefundFact) {
        self.refunded += r.amount;
        *self
            .refunded_by_day
            .entry(r.at.date_naive().to_string())
            .or_default() += r.amount;
        for (method, amount) in by_method(&r.payments) {
            for m in takings(self, method, &r.terminal_id) {
                m.refunds += 1;
                m.refunded += amount;
            }
        }
    }
}

impl SalesSummary {
    /// The summary once every sale and refund of the period was added: net and average
    /// ticket, overall and by payment method.
    pub fn finished(mut self) -> SalesSummary {
        for m in self
            .by_method
            .values_mut()
            .chain(self.cash_by_terminal.values_mut())
        {
            m.net = m.taken - m.refunded;
        }
        self.net = self.revenue - self.refunded;
        self.average_ticket = if self.sales > 0 {
            self.revenue / self.sales as i64
        } else {
            0
        };
        self
    }
}

/// The figures a payment of `method` at `terminal` counts in: its method's, and its
/// terminal's drawer's when it is cash.
fn takings<'a>(
    s: &'a mut SalesSummary,
    method: PaymentMethod,
    terminal: &str,
) -> impl Iterator<Item = &'a mut MethodTakings> {
    let drawer = (method == PaymentMethod::Cash)
        .then(|| s.cash_by_terminal.entry(terminal.to_string()).or_default());
    std::iter::once(s.by_method.entry(method).or_default()).chain(drawer)
}

/// One sale's or refund's payments summed by method (two cash payments are one), leaving out
/// a cash payment that was all change.
fn by_method(payments: &[Payment]) -> BTreeMap<PaymentMethod, Money> {
    let mut out = BTreeMap::new();
    for p in payments.iter().filter(|p| p.amount > 0) {
        *out.entry(p.method).or_default() += p.amount;
    }
    out
}

/// Change of `now` against `before`, in percent (None when there was nothing before).
pub fn trend_percent(now: Money, before: Money) -> Option<f64> {
    (before != 0).then(|| ((now - before) as f64 / before as f64 * 1000.0).round() / 10.0)
}

/// Units and revenue of one product in a period.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProductSales {
    /// Product.
    pub sku: String,
    /// Units sold, net of refunds.
    pub units: i64,
    /// Revenue of its lines (before refunds).
    pub revenue: Money,
    /// Sales it appeared in.
    pub sales: u64,
}

/// Units and revenue by product, added up sale by sale (see [`Tally`]).
#[derive(Debug, Clone, Default)]
pub struct ProductTally {
    by: BTreeMap<String, ProductSales>,
    /// Units refunded of products not (yet) among `by`: counted if the period sells them
    /// later, else left out, like a product neither sold in the period nor in the catalog.
    refunded_elsewhere: BTreeMap<String, i64>,
}

impl ProductTally {
    /// A tally in which every sku in `catalog` appears, sold or not.
    pub fn new(catalog: &[String]) -> ProductTally {
        let by = catalog
            .iter()
            .map(|s| {
                (
                    s.clone(),
                    ProductSales {
                        sku: s.clone(),
                        ..Default::default()
                    },
                )
            })
            .collect();
        ProductTally {
            by,
            refunded_elsewhere: BTreeMap::new(),
        }
    }

    /// The products, by sku.
    pub fn rows(self) -> Vec<ProductSales> {
        self.by.into_values().collect()
    }
}

impl Tally for ProductTally {
    fn sale(&mut self, x: &SaleFact) {
        let mut seen = BTreeSet::new();
        for (sku, qty, amount) in &x.lines {
            if !self.by.contains_key(sku) {
                let refunded = self.refunded_elsewhere.remove(sku).unwrap_or(0);
                self.by.insert(
                    sku.clone(),
                    ProductSales {
                        sku: sku.clone(),
                        units: -refunded,
                        ..Default::default()
                    },
                );
            }
            if let Some(p) = self.by.get_mut(sku) {
                p.units += i64::from(*qty);
                p.revenue += amount;
                if seen.insert(sku.as_str()) {
                    p.sales += 1;
                }
            }
        }
    }

    fn refund(&mut self, r: &RefundFact) {
        for (sku, qty) in &r.lines {
            match self.by.get_mut(sku) {
                Some(p) => p.units -= i64::from(*qty),
                None => *self.refunded_elsewhere.entry(sku.clone()).or_default() += i64::from(*qty),
            }
        }
    }
}

/// Two products bought together.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pair {
    /// The first product (the antecedent of `confidence`).
    pub a: String,
    /// The second.
    pub b: String,
    /// Sales with both.
    pub count: u64,
    /// Share of all sales with both.
    pub support: f64,
    /// Share of sales with `a` that also have `b`.
    pub confidence: f64,
    /// Confidence against `b`'s own share: above 1, `a` makes `b` likelier.
    pub lift: f64,
}

/// Products bought together, added up sale by sale (see [`Tally`]). Products are numbered as
/// they come, so that a sale's pairs are counted without copying their skus.
#[derive(Debug, Clone, Default)]
pub struct PairTally {
    sales: u64,
    number: HashMap<String, usize>,
    /// Sku and sales of each product, by number.
    single: Vec<(String, u64)>,
    both: HashMap<(usize, usize), u64>,
}

impl Tally for PairTally {
    fn sale(&mut self, x: &SaleFact) {
        self.sales += 1;
        let items: BTreeSet<&str> = x.lines.iter().map(|(s, _, _)| s.as_str()).collect();
        let mut v = Vec::with_capacity(items.len());
        for sku in items {
            let k = match self.number.get(sku) {
                Some(&k) => k,
                None => {
                    self.single.push((sku.to_string(), 0));
                    self.number.insert(sku.to_string(), self.single.len() - 1);
                    self.single.len() - 1
                }
            };
            self.single[k].1 += 1;
            v.push(k);
        }
        // In sku order (`items` is sorted), as the pairs are named.
        for i in 0..v.len() {
            for j in i + 1..v.len() {
                *self.both.entry((v[i], v[j])).or_insert(0) += 1;
            }
        }
    }
}

impl PairTally {
    /// Sales added.
    pub fn sales(&self) -> u64 {
        self.sales
    }

    /// Product pairs in at least `min_count` sales, both directions, by lift then count.
    pub fn pairs(&self, min_count: u64, limit: usize) -> Vec<Pair> {
        let n = self.sales as f64;
        let round = |x: f64| (x * 10_000.0).round() / 10_000.0;
        // Ranked by reference, and only the `limit` kept become `Pair`s: with `min_count` 1
        // over a year every pair sold together is a candidate, twice.
        let mut ranked: Vec<(&str, &str, u64, f64, f64)> = Vec::new();
        for (&(a, b), &c) in &self.both {
            if c < min_count {
                continue;
            }
            let (a, b) = (&self.single[a], &self.single[b]);
            for (x, y) in [(a, b), (b, a)] {
                let (nx, ny) = (x.1 as f64, y.1 as f64);
                let lift = round((c as f64 / nx) / (ny / n));
                ranked.push((&x.0, &y.0, c, lift, nx));
            }
        }
        ranked.sort_by(|p, q| {
            q.3.total_cmp(&p.3)
                .then(q.2.cmp(&p.2))
                .then(p.0.cmp(q.0))
                .then(p.1.cmp(q.1))
        });
        ranked.truncate(limit);
        ranked
            .into_iter()
            .map(|(x, y, c, lift, nx)| Pair {
                a: x.to_string(),
                b: y.to_string(),
                count: c,
                support: round(c as f64 / n),
                confidence: round(c as f64 / nx),
                lift,
            })
            .collect()
    }
}

/// One staff member's figures in a period.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StaffFigures {
    /// Staff number.
    pub staff_no: String,
    /// Sales rung up.
    pub sales: u64,
    /// Their revenue.
    pub revenue: Money,
    /// Refunds of their sales.
    pub refunded: Money,
    /// Average ticket.
    pub average_ticket: Money,
    /// Share of their sales made to members.
    pub member_share: f64,
    /// Members they registered.
    pub registrations: u64,
    /// Feedback linked to them: count and average rating.
    pub feedback: u64,
    /// Average rating of that feedback (None without feedback).
    pub average_rating: Option<f64>,
}

/// Figures by staff member, added up sale by sale (see [`Tally`]): per staff number, the
/// figures, their member sales and the sum of their ratings.
#[derive(Debug, Clone, Default)]
pub struct StaffTally {
    by: BTreeMap<String, (StaffFigures, u64, u64)>,
}

impl StaffTally {
    fn entry(&mut self, no: &str) -> &mut (StaffFigures, u64, u64) {
        self.by.entry(no.to_string()).or_insert_with(|| {
            (
                StaffFigures {
                    staff_no: no.to_string(),
                    ..Default::default()
                },
                0,
                0,
            )
        })
    }

    /// A rating of feedback about staff member `no`.
    pub fn rating(&mut self, no: &str, rating: u8) {
        let e = self.entry(no);
        e.0.feedback += 1;
        e.2 += u64::from(rating);
    }

    /// The figures, by staff number.
    pub fn figures(self) -> Vec<StaffFigures> {
        self.by
            .into_values()
            .map(|(mut f, member_sales, rating_sum)| {
                if f.sales > 0 {
                    f.average_ticket = f.revenue / f.sales as i64;
                    f.member_share =
                        (member_sales as f64 / f.sales as f64 * 1000.0).round() / 1000.0;
                }
                if f.feedback > 0 {
                    f.average_rating =
                        Some((rating_sum as f64 / f.feedback as f64 * 100.0).round() / 100.0);
                }
                f
            })
            .collect()
    }
}

impl Tally for StaffTally {
    fn sale(&mut self, x: &SaleFact) {
        let e = self.entry(&x.staff_no);
        e.0.sales += 1;
        e.0.revenue += x.total;
        if x.member_id.is_some() {
            e.1 += 1;
        }
    }

    fn refund(&mut self, r: &RefundFact) {
        if let Some(no) = &r.sale_staff_no {
            self.entry(no).0.refunded += r.amount;
        }
    }

    fn registration(&mut self, staff_no: &str) {
        self.entry(staff_no).0.registrations += 1;
    }

    fn wants_sale_cashier(&self) -> bool {
        true
    }
}

/// Stock turnover of a product over a period of `days`: units sold per day, days of cover at
/// that rate, and turnover (units sold / units on hand).
pub fn stock_cover(units_sold: i64, on_hand: i64, days: i64) -> (f64, Option<f64>, Option<f64>) {
    let per_day = units_sold.max(0) as f64 / days.max(1) as f64;
    let cover = (per_day > 0.0).then(|| (on_hand.max(0) as f64 / per_day * 10.0).round() / 10.0);
    let turnover =
        (on_hand > 0).then(|| (units_sold.max(0) as f64 / on_hand as f64 * 100.0).round() / 100.0);
    ((per_day * 100.0).round() / 100.0, cover, turnover)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_with_support_confidence_and_lift() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-01T10:00:00+08:00").unwrap();
        let sale = |skus: &[&str]| SaleFact {
            id: "s".into(),
            at,
            staff_no: "1".into(),
            terminal_id: "pos-1".into(),
            member_id: None,
            total: 100,
            lines: skus.iter().map(|s| (s.to_string(), 1, 100)).collect(),
            payments: vec![],
        };
        let sales = [
            sale(&["A", "B"]),
            sale(&["A", "B"]),
            sale(&["A"]),
            sale(&["C"]),
        ];
        let mut t = PairTally::default();
        sales.iter().for_each(|s| t.sale(s));
        let pairs = t.pairs(1, 10);
        let ab = pairs.iter().find(|p| p.a == "A" && p.b == "B").unwrap();
        assert_eq!(ab.count, 2);
        assert_eq!(ab.support, 0.5);
        assert_eq!(ab.confidence, 0.6667);
        assert_eq!(ab.lift, 1.3333);
        let ba = pairs.iter().find(|p| p.a == "B" && p.b == "A").unwrap();
        assert_eq!(ba.confidence, 1.0);
    }

    #[test]
    fn products_count_refunds_of_a_product_the_period_sells_later() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-01T10:00:00+08:00").unwrap();
        let refund = |sku: &str, qty| RefundFact {
            sale_id: "older".into(),
            at,
            staff_no: "1".into(),
            terminal_id: "pos-1".into(),
            sale_staff_no: None,
            amount: 100,
            lines: vec![(sku.to_string(), qty)],
            payments: vec![],
        };
        let sale = SaleFact {
            id: "s".into(),
            at,
            staff_no: "1".into(),
            terminal_id: "pos-1".into(),
            member_id: None,
            total: 300,
            lines: vec![("OLD".into(), 3, 300)],
            payments: vec![],
        };
        let mut t = ProductTally::new(&["TEA".to_string()]);
        // Refunds of sales before the period come first, in seq order: one of a product out
        // of the catalog that the period then sells, one of a product it never sells.
        t.refund(&refund("OLD", 1));
        t.refund(&refund("GONE", 2));
        t.refund(&refund("TEA", 1));
        t.sale(&sale);
        let rows: Vec<(String, i64, u64)> = t
            .rows()
            .into_iter()
            .map(|p| (p.sku, p.units, p.sales))
            .collect();
        assert_eq!(rows, [("OLD".into(), 2, 1), ("TEA".into(), -1, 0)]);
    }
}

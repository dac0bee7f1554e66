//! A member's counters at one store, month by month, and the bounds on counters that come
//! from elsewhere (HQ's copy of a member).

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::domain::money::Money;

/// One month of a member's activity at one store. Every field only grows. A field at zero is
/// not written (most months hold a spend and points earned, nothing else): the member's record,
/// read at every lookup and sale, grows by about 45 bytes a month of visits, not 120.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonthCounters {
    /// Paid amount of sales in this month.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub spend: Money,
    /// Refunded amount of sales made in this month (refunds are booked to the sale's month).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub spend_refunded: Money,
    /// Points earned by sales in this month.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub points_earned: i64,
    /// Earned points taken back by refunds of this month's sales.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub points_reversed: i64,
    /// Points paid with in this month.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub points_redeemed: i64,
    /// Paid points given back by refunds of this month's sales.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub points_restored: i64,
    /// Points a manager credited by hand in this month (`points.adjusted` with a positive
    /// delta): held and lapsing like points earned this month, but not earned by a sale.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub points_adjusted_in: i64,
    /// Points a manager took by hand in this month (`points.adjusted` with a negative delta):
    /// paid out of the points held like a redemption.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub points_adjusted_out: i64,
}

impl MonthCounters {
    /// Combines each field with the same field of `o` through `f`.
    pub(super) fn combine(&mut self, o: &MonthCounters, f: impl Fn(i64, i64) -> i64) {
        self.spend = f(self.spend, o.spend);
        self.spend_refunded = f(self.spend_refunded, o.spend_refunded);
        self.points_earned = f(self.points_earned, o.points_earned);
        self.points_reversed = f(self.points_reversed, o.points_reversed);
        self.points_redeemed = f(self.points_redeemed, o.points_redeemed);
        self.points_restored = f(self.points_restored, o.points_restored);
        self.points_adjusted_in = f(self.points_adjusted_in, o.points_adjusted_in);
        self.points_adjusted_out = f(self.points_adjusted_out, o.points_adjusted_out);
    }

    /// Per-field maximum: the merge of two copies of the same month.
    fn merge(&mut self, o: &MonthCounters) {
        self.combine(o, i64::max);
    }

    /// Every field, in declaration order.
    fn fields(&self) -> [i64; 8] {
        [
            self.spend,
            self.spend_refunded,
            self.points_earned,
            self.points_reversed,
            self.points_redeemed,
            self.points_restored,
            self.points_adjusted_in,
            self.points_adjusted_out,
        ]
    }

    /// Points credited (earned, net of reversals, plus credited by hand).
    pub(super) fn credits(&self) -> i64 {
        self.points_earned
            .saturating_sub(self.points_reversed)
            .saturating_add(self.points_adjusted_in)
    }

    /// Points debited (paid with, net of restorations, plus taken by hand).
    pub(super) fn debits(&self) -> i64 {
        self.points_redeemed
            .saturating_sub(self.points_restored)
            .saturating_add(self.points_adjusted_out)
    }
}

/// A member's counters at one store. Only the store itself changes its own entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreCounters {
    /// Number of sales (visits) at this store.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub visits: u64,
    /// Time of the latest sale at this store.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::domain::timestamp::serde::option"
    )]
    pub last_visit_at: Option<DateTime<FixedOffset>>,
    /// The latest calendar year in which the birthday discount was used at this store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birthday_discount_year: Option<i32>,
    /// Activity by month (`"2026-11"`), for spend windows and points expiry.
    #[serde(default)]
    pub months: BTreeMap<String, MonthCounters>,
    /// The latest distinct days with a sale (store-local, oldest first, at most
    /// [`VISIT_DAYS_KEPT`]): the member's own rhythm, for the churn warning.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub visit_days: Vec<NaiveDate>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// How many visit days a member's counters keep per store.
pub const VISIT_DAYS_KEPT: usize = 24;

/// Adds `day` to sorted distinct `days`, keeping the latest [`VISIT_DAYS_KEPT`].
pub fn note_visit_day(days: &mut Vec<NaiveDate>, day: NaiveDate) {
    if let Err(i) = days.binary_search(&day) {
        days.insert(i, day);
    }
    if days.len() > VISIT_DAYS_KEPT {
        let excess = days.len() - VISIT_DAYS_KEPT;
        days.drain(..excess);
    }
}

/// Bounds on counters that come from elsewhere (HQ's copy of a member): far above any real
/// member, and low enough that every sum over them stays inside an `i64` — stores × months ×
/// amount is 2.4 × 10¹⁸.
pub const MAX_COUNTER_STORES: usize = 2_000;
/// Months a store's counters may hold (a hundred years).
pub const MAX_COUNTER_MONTHS: usize = 1_200;
/// The most one month's field may hold: ¥10,000,000,000, or as many points.
pub const MAX_MONTH_AMOUNT: i64 = 1_000_000_000_000;
/// The most visits one store's counters may hold.
pub const MAX_VISITS: u64 = 1_000_000_000;

/// Checks counters received from elsewhere against the bounds above (store ids of 1–64
/// characters, month keys `YYYY-MM`, amounts 0 to [`MAX_MONTH_AMOUNT`]) and keeps the latest
/// [`VISIT_DAYS_KEPT`] distinct visit days of each store, as the store itself does.
pub fn check_counters(counters: &mut BTreeMap<String, StoreCounters>) -> Result<(), String> {
    if counters.len() > MAX_COUNTER_STORES {
        return Err(format!(
            "counters for more than {MAX_COUNTER_STORES} stores"
        ));
    }
    for (store, c) in counters.iter_mut() {
        if store.is_empty() || store.chars().count() > 64 || store.chars().any(char::is_control) {
            return Err("counters' store ids must be 1–64 characters".into());
        }
        let bad = |what: &str| Err(format!("store {store}'s counters: {what}"));
        if c.visits > MAX_VISITS {
            return bad("implausible visits");
        }
        if c.months.len() > MAX_COUNTER_MONTHS {
            return bad("too many months");
        }
        let days = std::mem::take(&mut c.visit_days);
        for day in days {
            note_visit_day(&mut c.visit_days, day);
        }
        if c.birthday_discount_year
            .is_some_and(|y| !(1900..=9999).contains(&y))
        {
            return bad("implausible birthday discount year");
        }
        for (month, m) in &c.months {
            let b = month.as_bytes();
            let is_key = b.len() == 7
                && b[4] == b'-'
                && b.iter()
                    .enumerate()
                    .all(|(i, d)| i == 4 || d.is_ascii_digit())
                && (b"01".as_slice()..=b"12".as_slice()).contains(&&b[5..]);
            if !is_key {
                return bad("months must be keyed YYYY-MM");
            }
            if m.fields()
                .iter()
                .any(|a| !(0..=MAX_MONTH_AMOUNT).contains(a))
            {
                return bad("amounts must be 0 to 10^12");
            }
        }
    }
    Ok(())
}

impl StoreCounters {
    /// Per-field maximum: the merge of two copies of the same store's counters.
    pub fn merge(&mut self, o: &StoreCounters) {
        self.visits = self.visits.max(o.visits);
        self.last_visit_at = self.last_visit_at.max(o.last_visit_at);
        self.birthday_discount_year = self.birthday_discount_year.max(o.birthday_discount_year);
        for (m, c) in &o.months {
            self.months.entry(m.clone()).or_default().merge(c);
        }
        for d in &o.visit_days {
            note_visit_day(&mut self.visit_days, *d);
        }
    }

    /// The month bucket for `month`, created if missing.
    pub fn month_mut(&mut self, month: &str) -> &mut MonthCounters {
        self.months.entry(month.to_string()).or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ten years of monthly visits at one store, each month a spend and the points it earned.
    fn ten_years() -> StoreCounters {
        let mut c = StoreCounters {
            visits: 120,
            ..StoreCounters::default()
        };
        for y in 2016..2026 {
            for m in 1..=12 {
                let month = c.month_mut(&format!("{y}-{m:02}"));
                month.spend = 12_345;
                month.points_earned = 123;
            }
        }
        c.month_mut("2025-12").points_redeemed = 500;
        c
    }

    #[test]
    fn zero_fields_are_not_written_and_read_back_as_zero() {
        let c = ten_years();
        let json = serde_json::to_string(&c).unwrap();
        // 120 months of {"spend":12345,"points_earned":123}: ~45 bytes each; with every zero
        // field written it was ~125.
        assert!(json.len() < 120 * 50, "{} bytes", json.len());
        assert!(!json.contains("spend_refunded"), "{json}");
        assert!(json.contains(r#""points_redeemed":500"#), "{json}");
        let back: StoreCounters = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
        // A record written with every field (before this change) still reads the same.
        let old = r#"{"visits":0,"last_visit_at":null,"birthday_discount_year":null,"months":{"2026-01":{"spend":5,"spend_refunded":0,"points_earned":0,"points_reversed":0,"points_redeemed":0,"points_restored":0}}}"#;
        let old: StoreCounters = serde_json::from_str(old).unwrap();
        assert_eq!(old.months["2026-01"].spend, 5);
        assert_eq!(
            serde_json::to_string(&old).unwrap(),
            r#"{"months":{"2026-01":{"spend":5}}}"#
        );
    }

    #[test]
    fn credits_and_debits_count_adjustments_apart_from_sales() {
        let c = MonthCounters {
            points_earned: 100,
            points_reversed: 10,
            points_redeemed: 50,
            points_restored: 5,
            points_adjusted_in: 30,
            points_adjusted_out: 7,
            ..MonthCounters::default()
        };
        assert_eq!(c.credits(), 120);
        assert_eq!(c.debits(), 52);
        // Zero fields stay unwritten; the new ones are written when set and read back.
        let json = serde_json::to_string(&c).expect("json");
        assert!(json.contains(r#""points_adjusted_in":30"#), "{json}");
        assert!(
            !serde_json::to_string(&MonthCounters::default())
                .expect("json")
                .contains("adjusted")
        );
        assert_eq!(
            serde_json::from_str::<MonthCounters>(&json).expect("read"),
            c
        );
    }
}

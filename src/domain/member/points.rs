//! A member's points balance under an expiry: the months played in order, oldest points paid
//! with first, points lapsing unpaid once older than the expiry.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use super::{Member, MonthCounters};
use crate::domain::calendar::month_expired;
use crate::domain::rules::Rules;

/// Earned points not yet paid with, oldest first, for playing a member's months in order.
///
/// A store lets a member pay only with points held then, so paid points normally come out of
/// `by_month`. Counters can show more paid than that: paid before the expiry was configured
/// (with points that have lapsed since), or at another store that did not know of a payment
/// here. Such points come out of the lapsed ones, and beyond every point ever earned they are
/// owed and later points pay for them first.
#[derive(Default)]
struct PointsHeld<'a> {
    /// Points by the month they were earned in.
    by_month: std::collections::VecDeque<(&'a str, i64)>,
    /// Points that lapsed unpaid.
    lapsed: i64,
    /// Points paid beyond every point earned before.
    owed: i64,
    /// A month whose points that lapse unpaid are added up in `watched_lapsed`.
    watch: Option<&'a str>,
    /// Points of `watch` that lapsed unpaid.
    watched_lapsed: i64,
}

impl<'a> PointsHeld<'a> {
    /// Moves the points that have lapsed on `day` out of those held.
    fn lapse(&mut self, day: NaiveDate, expiry: u32) {
        while let Some(&(month, points)) = self.by_month.front() {
            if !month_expired(month, day, expiry) {
                break;
            }
            self.lapsed = self.lapsed.saturating_add(points);
            if self.watch == Some(month) {
                self.watched_lapsed = self.watched_lapsed.saturating_add(points);
            }
            self.by_month.pop_front();
        }
    }

    fn credit(&mut self, month: &'a str, points: i64) {
        let points = points.max(0);
        let paid = points.min(self.owed);
        self.owed -= paid;
        if points > paid {
            self.by_month.push_back((month, points - paid));
        }
    }

    /// Pays `points` with the oldest points held (see the type for more).
    fn debit(&mut self, points: i64) {
        let mut points = points.max(0);
        while points > 0 {
            let Some((_, held)) = self.by_month.front_mut() else {
                let from_lapsed = points.min(self.lapsed);
                self.lapsed -= from_lapsed;
                self.owed = self.owed.saturating_add(points - from_lapsed);
                return;
            };
            let used = points.min(*held);
            *held -= used;
            points -= used;
            if *held == 0 {
                self.by_month.pop_front();
            }
        }
    }

    fn left(&self) -> i64 {
        self.by_month
            .iter()
            .fold(0i64, |n, (_, p)| n.saturating_add(*p))
            .saturating_sub(self.owed)
            .max(0)
    }
}

impl Member {
    /// Points that can be spent on `today`. Never negative. With an expiry, the months are
    /// played in order: a month's paid points consume the oldest points not lapsed by then,
    /// and earned points lapse, unless consumed before, once they are older than the expiry.
    /// (Refunds are booked to the sale's month: a reversal or restoration changes that month.)
    pub fn points(&self, rules: &Rules, today: NaiveDate) -> i64 {
        let Some(expiry) = rules.points_expiry_months else {
            let all = self.sum_months(|_| true);
            return all.credits().saturating_sub(all.debits()).max(0);
        };
        self.play_points(expiry, today, None).left()
    }

    /// Points earned in `month` that lapsed unpaid by `today` (none without an expiry). A
    /// refund of a sale of that month has nothing to take back for them, and they were not
    /// used, so it keeps nothing for them either.
    pub fn points_lapsed_unused(&self, rules: &Rules, today: NaiveDate, month: &str) -> i64 {
        let Some(expiry) = rules.points_expiry_months else {
            return 0;
        };
        let held = self.play_points(expiry, today, Some(month));
        // Lapsed points that paid for points paid beyond those held are not unused.
        held.watched_lapsed.min(held.lapsed).max(0)
    }

    /// Plays the member's months in order under an expiry (see [`Member::points`]).
    fn play_points<'a>(
        &'a self,
        expiry: u32,
        today: NaiveDate,
        watch: Option<&'a str>,
    ) -> PointsHeld<'a> {
        let mut months: BTreeMap<&str, MonthCounters> = BTreeMap::new();
        for c in self.counters.values() {
            for (m, mc) in &c.months {
                months
                    .entry(m.as_str())
                    .or_default()
                    .combine(mc, i64::saturating_add);
            }
        }
        let mut held = PointsHeld {
            watch,
            ..PointsHeld::default()
        };
        for (month, c) in &months {
            if let Ok(first) = NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d") {
                // A month after today (a clock that ran ahead, another store's) lapses
                // nothing that today still holds.
                held.lapse(first.min(today), expiry);
            }
            held.credit(month, c.credits());
            held.debit(c.debits());
        }
        held.lapse(today, expiry);
        held
    }
}

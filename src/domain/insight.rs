//! What the store learns about its customers: RFM segments and the churn warning. Pure
//! functions over members and their counters; `today` is passed in. The sales figures of the
//! reports are in [`super::report`].

use std::collections::BTreeSet;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::calendar::MonthKey;
use super::member::{Member, VISIT_DAYS_KEPT};
use super::money::Money;

/// Cut-offs of the RFM scores: four ascending thresholds give scores 1–5.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RfmCutoffs {
    /// Days since the last visit: at most `recency_days[0]` scores 5, more than the last scores 1.
    pub recency_days: [u32; 4],
    /// Visits: at least `frequency[3]` scores 5, fewer than `frequency[0]` scores 1.
    pub frequency: [u64; 4],
    /// Net spend (分): at least `monetary[3]` scores 5, less than `monetary[0]` scores 1.
    pub monetary: [Money; 4],
}

impl Default for RfmCutoffs {
    fn default() -> Self {
        RfmCutoffs {
            recency_days: [30, 60, 90, 180],
            frequency: [2, 4, 8, 16],
            monetary: [50_000, 100_000, 300_000, 1_000_000],
        }
    }
}

/// A member's RFM scores, each 1–5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rfm {
    /// Recency.
    pub r: u8,
    /// Frequency.
    pub f: u8,
    /// Monetary value.
    pub m: u8,
}

/// The classic eight RFM segments, plus members who never bought.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Segment {
    /// Recent, frequent, high value: 重要价值客户.
    ImportantValue,
    /// Frequent and high value, not recent: 重要保持客户.
    ImportantRetain,
    /// Recent and high value, not frequent: 重要发展客户.
    ImportantDevelop,
    /// High value only: 重要挽留客户.
    ImportantWinback,
    /// Recent and frequent, low value: 一般价值客户.
    GeneralValue,
    /// Frequent only: 一般保持客户.
    GeneralRetain,
    /// Recent only: 一般发展客户.
    GeneralDevelop,
    /// None of the three: 一般挽留客户.
    GeneralWinback,
    /// Registered, never bought: 未消费.
    NoPurchase,
}

impl Segment {
    /// Every segment, in report order.
    pub const ALL: [Segment; 9] = [
        Segment::ImportantValue,
        Segment::ImportantRetain,
        Segment::ImportantDevelop,
        Segment::ImportantWinback,
        Segment::GeneralValue,
        Segment::GeneralRetain,
        Segment::GeneralDevelop,
        Segment::GeneralWinback,
        Segment::NoPurchase,
    ];

    /// The code used in the API.
    pub fn code(self) -> &'static str {
        match self {
            Segment::ImportantValue => "important_value",
            Segment::ImportantRetain => "important_retain",
            Segment::ImportantDevelop => "important_develop",
            Segment::ImportantWinback => "important_winback",
            Segment::GeneralValue => "general_value",
            Segment::GeneralRetain => "general_retain",
            Segment::GeneralDevelop => "general_develop",
            Segment::GeneralWinback => "general_winback",
            Segment::NoPurchase => "no_purchase",
        }
    }

    /// The Chinese name the chain uses.
    pub fn name_zh(self) -> &'static str {
        match self {
            Segment::ImportantValue => "重要价值客户",
            Segment::ImportantRetain => "重要保持客户",
            Segment::ImportantDevelop => "重要发展客户",
            Segment::ImportantWinback => "重要挽留客户",
            Segment::GeneralValue => "一般价值客户",
            Segment::GeneralRetain => "一般保持客户",
            Segment::GeneralDevelop => "一般发展客户",
            Segment::GeneralWinback => "一般挽留客户",
            Segment::NoPurchase => "未消费会员",
        }
    }

    /// The English name.
    pub fn name_en(self) -> &'static str {
        match self {
            Segment::ImportantValue => "Champions",
            Segment::ImportantRetain => "Loyal, slipping",
            Segment::ImportantDevelop => "Big spenders, new",
            Segment::ImportantWinback => "Big spenders, lost",
            Segment::GeneralValue => "Regulars",
            Segment::GeneralRetain => "Regulars, slipping",
            Segment::GeneralDevelop => "Newcomers",
            Segment::GeneralWinback => "Lapsed",
            Segment::NoPurchase => "No purchase yet",
        }
    }

    /// A segment by its code.
    pub fn from_code(code: &str) -> Option<Segment> {
        Segment::ALL.into_iter().find(|s| s.code() == code)
    }
}

fn score_up<T: PartialOrd>(v: T, cuts: &[T; 4]) -> u8 {
    1 + cuts.iter().filter(|c| v >= **c).count() as u8
}

/// A member's RFM scores and segment on `today`, from the counters of every store (`None`
/// scores for a member who never bought).
pub fn rfm(member: &Member, cut: &RfmCutoffs, today: NaiveDate) -> (Option<Rfm>, Segment) {
    let days = match member.last_visit_day(today) {
        Some(last) => (today - last).num_days().max(0) as u32,
        // Visits or spend without a time (counters HQ sent without `last_visit_at`): a member
        // who bought, when is not known — as long ago as can be, not "no purchase yet" (whom a
        // first-purchase campaign would target).
        None if member.visits() > 0 || member.total_spend() > 0 => u32::MAX,
        None => return (None, Segment::NoPurchase),
    };
    let r = 5 - cut.recency_days.iter().filter(|c| days > **c).count() as u8;
    let f = score_up(member.visits(), &cut.frequency);
    let m = score_up(member.total_spend(), &cut.monetary);
    let s = Rfm { r, f, m };
    (Some(s), segment(s))
}

/// The segment of RFM scores: each dimension is "high" at 3 or more.
pub fn segment(s: Rfm) -> Segment {
    match (s.r >= 3, s.f >= 3, s.m >= 3) {
        (true, true, true) => Segment::ImportantValue,
        (false, true, true) => Segment::ImportantRetain,
        (true, false, true) => Segment::ImportantDevelop,
        (false, false, true) => Segment::ImportantWinback,
        (true, true, false) => Segment::GeneralValue,
        (false, true, false) => Segment::GeneralRetain,
        (true, false, false) => Segment::GeneralDevelop,
        (false, false, false) => Segment::GeneralWinback,
    }
}

/// When a member counts as drifting away.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChurnRules {
    /// Visits (distinct days) needed before a usual interval means anything.
    pub min_visits: usize,
    /// At risk when the time since the last visit exceeds this many usual intervals...
    pub interval_factor: f64,
    /// ...and at least this many days...
    pub min_gap_days: i64,
    /// ...and at most this many: a member away longer is lost, not drifting (the RFM segments
    /// show them), and a store's years of them would bury the ones still worth a call.
    pub lost_after_days: i64,
    /// At risk when the last full month's spend fell by this share (0–1) against the average
    /// of the three months before it...
    pub spend_drop: f64,
    /// ...which averaged at least this much (分).
    pub min_monthly_spend: Money,
}

impl Default for ChurnRules {
    fn default() -> Self {
        ChurnRules {
            min_visits: 3,
            interval_factor: 2.5,
            min_gap_days: 14,
            lost_after_days: 365,
            spend_drop: 0.6,
            min_monthly_spend: 10_000,
        }
    }
}

/// Why a member is flagged `at_risk`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum ChurnReason {
    /// No visit for much longer than the member's own usual interval.
    Overdue {
        /// Days since the last visit.
        days_since_last: i64,
        /// The member's usual days between visits.
        usual_interval_days: f64,
    },
    /// The last full month's spend fell sharply.
    SpendDrop {
        /// Average monthly spend of the three months before.
        before: Money,
        /// The last full month's spend.
        last_month: Money,
    },
}

impl ChurnReason {
    /// A sentence for the till and the manager.
    pub fn describe(&self) -> String {
        match self {
            ChurnReason::Overdue {
                days_since_last,
                usual_interval_days,
            } => format!(
                "no visit for {days_since_last} days; usually every {usual_interval_days:.0} days"
            ),
            ChurnReason::SpendDrop { before, last_month } => format!(
                "spent ¥{:.2} last month against ¥{:.2} a month before",
                *last_month as f64 / 100.0,
                *before as f64 / 100.0
            ),
        }
    }
}

/// Whether the member is drifting away on `today`, and why (the interval rule first).
pub fn churn(member: &Member, rules: &ChurnRules, today: NaiveDate) -> Option<ChurnReason> {
    // The latest VISIT_DAYS_KEPT days of all stores together: each store keeps its own
    // latest, and another store's days from years ago are not the member's rhythm of today.
    // A day after today (a clock that ran ahead) is no visit yet: kept, it would be the
    // latest, and the member never overdue until that date came.
    let all: BTreeSet<NaiveDate> = member
        .counters
        .values()
        .flat_map(|c| c.visit_days.iter().copied())
        .filter(|d| *d <= today)
        .collect();
    let days: Vec<NaiveDate> = all.into_iter().rev().take(VISIT_DAYS_KEPT).collect();
    if days.len() >= rules.min_visits.max(2)
        && let (Some(last), Some(first)) = (days.first(), days.last())
    {
        let usual = (*last - *first).num_days() as f64 / (days.len() - 1) as f64;
        let gap = (today - *last).num_days();
        if (rules.min_gap_days..=rules.lost_after_days).contains(&gap)
            && gap as f64 > rules.interval_factor * usual
        {
            return Some(ChurnReason::Overdue {
                days_since_last: gap,
                usual_interval_days: (usual * 10.0).round() / 10.0,
            });
        }
    }
    let spend = |month: &str| -> Money {
        member
            .counters
            .values()
            .filter_map(|c| c.months.get(month))
            .fold(0, |sum: Money, m| {
                sum.saturating_add(m.spend.saturating_sub(m.spend_refunded))
            })
    };
    let last_month = spend(MonthKey::before(today, 1).as_str());
    let before = (2..=4)
        .map(|n| spend(MonthKey::before(today, n).as_str()))
        .fold(0, Money::saturating_add)
        / 3;
    if before >= rules.min_monthly_spend
        && (last_month as f64) < before as f64 * (1.0 - rules.spend_drop)
    {
        return Some(ChurnReason::SpendDrop { before, last_month });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::member::{StoreCounters, note_visit_day};

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn member(days: &[&str], spend_by_month: &[(&str, Money)]) -> Member {
        let mut c = StoreCounters::default();
        for day in days {
            note_visit_day(&mut c.visit_days, d(day));
            c.visits += 1;
            let t = d(day)
                .and_hms_opt(12, 0, 0)
                .unwrap()
                .and_local_timezone(chrono::FixedOffset::east_opt(8 * 3600).unwrap())
                .unwrap();
            c.last_visit_at = c.last_visit_at.max(Some(t));
        }
        for (m, spend) in spend_by_month {
            c.month_mut(m).spend += spend;
        }
        let mut m = crate::domain::pricing::tests::member(0, 0, None);
        m.counters.clear();
        m.counters.insert("sh-001".into(), c);
        m
    }

    #[test]
    fn rfm_scores_and_segments() {
        let cut = RfmCutoffs::default();
        let m = member(
            &["2026-10-01", "2026-10-20", "2026-11-01", "2026-11-10"],
            &[("2026-11", 400_000)],
        );
        let (s, seg) = rfm(&m, &cut, d("2026-11-20"));
        assert_eq!(s, Some(Rfm { r: 5, f: 3, m: 4 }));
        assert_eq!(seg, Segment::ImportantValue);
        let (s, seg) = rfm(&m, &cut, d("2027-06-01"));
        assert_eq!(s.map(|s| s.r), Some(1));
        assert_eq!(seg, Segment::ImportantRetain);
        let none = member(&[], &[]);
        assert_eq!(
            rfm(&none, &cut, d("2026-11-20")),
            (None, Segment::NoPurchase)
        );
        // HQ's counters with visits and spend but no time of the last visit.
        let mut untimed = member(&[], &[("2026-03", 400_000)]);
        untimed.counters.get_mut("sh-001").unwrap().visits = 4;
        let (s, seg) = rfm(&untimed, &cut, d("2026-11-20"));
        assert_eq!(s, Some(Rfm { r: 1, f: 3, m: 4 }));
        assert_eq!(seg, Segment::ImportantRetain);
    }

    #[test]
    fn overdue_against_the_members_own_rhythm() {
        let rules = ChurnRules::default();
        // Every 7 days, then silence.
        let m = member(
            &["2026-10-01", "2026-10-08", "2026-10-15", "2026-10-22"],
            &[],
        );
        assert_eq!(churn(&m, &rules, d("2026-11-01")), None);
        match churn(&m, &rules, d("2026-11-10")) {
            Some(ChurnReason::Overdue {
                days_since_last,
                usual_interval_days,
            }) => {
                assert_eq!(days_since_last, 19);
                assert_eq!(usual_interval_days, 7.0);
            }
            other => panic!("{other:?}"),
        }
        // A year on, still overdue; longer, lost: no longer a churn warning.
        assert!(churn(&m, &rules, d("2027-10-22")).is_some());
        assert_eq!(churn(&m, &rules, d("2027-10-23")), None);
        // Too few visits to know a rhythm.
        let m = member(&["2026-10-01", "2026-10-08"], &[]);
        assert_eq!(churn(&m, &rules, d("2026-12-30")), None);
    }

    /// A member who shops here twice a week and, now and then over the years, at another
    /// store of the chain (HQ's copy brings that store's visit days) is overdue by their
    /// rhythm of today, not by a "usual interval" stretched over a decade of the other
    /// store's days. Until 2026-12-07 the days of every store were taken together, oldest
    /// first: ten years of occasional visits elsewhere made the usual interval ~70 days, and
    /// the member who stopped coming a month ago was not at risk (no win-back coupon).
    #[test]
    fn old_visits_at_another_store_do_not_stretch_the_members_rhythm() {
        let rules = ChurnRules::default();
        let mut here = StoreCounters::default();
        // Twice a week for twelve weeks, until 31 October.
        let last = d("2026-10-31");
        for week in 0..12 {
            for back in [0, 3] {
                note_visit_day(
                    &mut here.visit_days,
                    last - chrono::Duration::days(week * 7 + back),
                );
            }
        }
        let mut elsewhere = StoreCounters::default();
        // Every four months from 2017 to 2025 at another store.
        for n in 0..24 {
            note_visit_day(
                &mut elsewhere.visit_days,
                d("2017-01-10") + chrono::Duration::days(n * 120),
            );
        }
        let mut m = member(&[], &[]);
        m.counters.insert("sh-001".into(), here.clone());
        // Alone, the store's own days flag the member a month after the last visit.
        let today = d("2026-11-30");
        assert!(matches!(
            churn(&m, &rules, today),
            Some(ChurnReason::Overdue {
                days_since_last: 30,
                ..
            })
        ));
        m.counters.insert("sh-002".into(), elsewhere);
        match churn(&m, &rules, today) {
            Some(ChurnReason::Overdue {
                days_since_last,
                usual_interval_days,
            }) => {
                assert_eq!(days_since_last, 30);
                assert!(usual_interval_days < 4.0, "{usual_interval_days}");
            }
            other => panic!("{other:?}"),
        }
    }

    /// A box whose clock ran a year ahead for a day stamped the member's visit there in
    /// 2027; HQ's copy brings it here. Until 2026-12-07 that day was the member's latest: the
    /// member who stopped coming was never overdue (no win-back coupon) and scored as a recent
    /// visitor in RFM for a year.
    #[test]
    fn a_visit_dated_after_today_does_not_hide_the_member_going_quiet() {
        let rules = ChurnRules::default();
        let mut m = member(
            &["2026-10-01", "2026-10-08", "2026-10-15", "2026-10-22"],
            &[("2026-10", 100_000)],
        );
        let mut ahead = StoreCounters::default();
        note_visit_day(&mut ahead.visit_days, d("2027-10-20"));
        ahead.visits = 1;
        ahead.last_visit_at = Some("2027-10-20T10:00:00+08:00".parse().unwrap());
        m.counters.insert("sh-009".into(), ahead);
        let today = d("2026-11-10");
        assert!(matches!(
            churn(&m, &rules, today),
            Some(ChurnReason::Overdue {
                days_since_last: 19,
                ..
            })
        ));
        assert_eq!(m.last_visit_day(today), Some(d("2026-10-22")));
        // Four months on, the last visit was 130 days ago: recency 2, not 5.
        let (scores, _) = rfm(&m, &RfmCutoffs::default(), d("2027-03-01"));
        assert_eq!(scores.map(|s| s.r), Some(2), "{scores:?}");
        // Every visit so dated: visited today, as far as this box can tell.
        let mut only_ahead = member(&[], &[]);
        only_ahead.counters = [("sh-009".to_string(), m.counters["sh-009"].clone())].into();
        assert_eq!(only_ahead.last_visit_day(today), Some(today));
    }

    #[test]
    fn a_sharp_drop_in_monthly_spend() {
        let rules = ChurnRules::default();
        let m = member(
            &[],
            &[
                ("2026-07", 30_000),
                ("2026-08", 30_000),
                ("2026-09", 30_000),
                ("2026-10", 5_000),
            ],
        );
        assert_eq!(
            churn(&m, &rules, d("2026-11-05")),
            Some(ChurnReason::SpendDrop {
                before: 30_000,
                last_month: 5_000
            })
        );
        assert_eq!(MonthKey::before(d("2026-01-15"), 1).as_str(), "2025-12");
    }
}

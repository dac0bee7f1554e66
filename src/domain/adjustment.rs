//! A manager's adjustment of a member's points by hand (a goodwill credit, a correction): the
//! checks, the `points.adjusted` event's data and how it changes the member's counters.
//!
//! A credit is booked to `points_adjusted_in` of the adjustment's month (store-local) and lapses
//! with that month under `points_expiry_months`, like points earned that month; a debit to
//! `points_adjusted_out`, paid like a redemption (oldest points first). Neither is spend, a
//! visit or points earned by sales: the level and the reports do not move.

use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::{Deserialize, Serialize};

use super::calendar::month_key;
use super::member::{LevelRef, Member};
use super::rules::Rules;
use super::sale::MemberAfter;

/// The largest adjustment either way, in points (¥10,000 at 100 points a yuan).
pub const MAX_ADJUSTMENT: i64 = 1_000_000;
/// The longest note, in characters (as a stock movement's).
pub const MAX_NOTE_CHARS: usize = 200;

/// Why a manager adjusted a member's points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdjustReason {
    /// A goodwill credit (a delay, a broken promise).
    Goodwill,
    /// Putting a mistake right (points a sale should have earned, points credited twice).
    Correction,
    /// Settling a customer's complaint.
    Complaint,
    /// Anything else (say what in the note).
    Other,
}

/// The data of a `points.adjusted` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointsAdjusted {
    /// Member.
    pub member_id: String,
    /// The store whose counters it changes.
    pub store_id: String,
    /// Points added (positive) or taken (negative); never 0.
    pub delta: i64,
    /// Why.
    pub reason: AdjustReason,
    /// The manager's note (no personal data: it goes to HQ as written).
    pub note: String,
    /// The manager.
    pub staff_no: String,
    /// The terminal.
    pub terminal_id: String,
    /// The month bucket (`YYYY-MM`, store-local) of the counters it changes.
    pub month: String,
    /// The member after it (the adjustment's answer; the level does not change).
    pub member: MemberAfter,
}

/// Why an adjustment is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdjustError {
    /// `delta` is 0 or beyond [`MAX_ADJUSTMENT`].
    InvalidDelta,
    /// The note is longer than [`MAX_NOTE_CHARS`] or holds control characters.
    InvalidNote,
    /// A debit larger than the balance.
    InsufficientPoints {
        /// The balance.
        balance: i64,
    },
}

/// What a manager asks for.
#[derive(Debug, Clone)]
pub struct Adjustment<'a> {
    /// Points either way.
    pub delta: i64,
    /// Why.
    pub reason: AdjustReason,
    /// Note.
    pub note: &'a str,
    /// Store.
    pub store_id: &'a str,
    /// Manager.
    pub staff_no: &'a str,
    /// Terminal.
    pub terminal_id: &'a str,
}

/// Checks an adjustment of `member`'s points at `now` (store-local) and computes its event data.
/// A debit may take the balance (with expiry, as [`Member::points`] computes it) to 0, not
/// below.
pub fn adjust(
    member: &Member,
    a: &Adjustment<'_>,
    rules: &Rules,
    now: DateTime<FixedOffset>,
) -> Result<PointsAdjusted, AdjustError> {
    if a.delta == 0 || !(-MAX_ADJUSTMENT..=MAX_ADJUSTMENT).contains(&a.delta) {
        return Err(AdjustError::InvalidDelta);
    }
    if a.note.chars().count() > MAX_NOTE_CHARS
        || a.note.chars().any(|c| c.is_control() && c != '\n')
    {
        return Err(AdjustError::InvalidNote);
    }
    let today: NaiveDate = now.date_naive();
    let balance = member.points(rules, today);
    if a.delta < 0 && balance < -a.delta {
        return Err(AdjustError::InsufficientPoints { balance });
    }
    let mut data = PointsAdjusted {
        member_id: member.id.clone(),
        store_id: a.store_id.to_string(),
        delta: a.delta,
        reason: a.reason,
        note: a.note.to_string(),
        staff_no: a.staff_no.to_string(),
        terminal_id: a.terminal_id.to_string(),
        month: month_key(today),
        member: MemberAfter {
            level: None,
            points: 0,
            total_spend: 0,
            upgraded_to: None,
        },
    };
    let mut after = member.clone();
    add_adjustment_counters(&mut after, &data);
    data.member = MemberAfter {
        level: after.effective_level(rules, today).map(LevelRef::from),
        points: after.points(rules, today),
        total_spend: after.total_spend(),
        upgraded_to: None,
    };
    Ok(data)
}

fn add_adjustment_counters(member: &mut Member, a: &PointsAdjusted) {
    let c = member.counters.entry(a.store_id.clone()).or_default();
    let m = c.month_mut(&a.month);
    if a.delta > 0 {
        m.points_adjusted_in = m.points_adjusted_in.saturating_add(a.delta);
    } else {
        m.points_adjusted_out = m
            .points_adjusted_out
            .saturating_add(a.delta.saturating_neg());
    }
}

/// Applies a recorded adjustment to the member (projection): the counters alone; the level
/// stays as it is.
pub fn apply_adjustment(member: &mut Member, a: &PointsAdjusted) {
    add_adjustment_counters(member, a);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::TimeZone;

    use super::*;
    use crate::domain::member::{Consent, StoreCounters, check_counters};

    fn member() -> Member {
        Member {
            id: "m1".into(),
            profile: None,
            tags: vec![],
            consent: Consent::default(),
            level: None,
            created_at: at(2025, 1, 1),
            created_store: "sh-001".into(),
            counters: BTreeMap::new(),
            version: 0,
            seq: 0,
            erased_at: None,
        }
    }

    fn at(y: i32, m: u32, d: u32) -> DateTime<FixedOffset> {
        FixedOffset::east_opt(8 * 3600)
            .and_then(|tz| tz.with_ymd_and_hms(y, m, d, 10, 0, 0).single())
            .expect("a valid time")
    }

    fn req(delta: i64) -> Adjustment<'static> {
        Adjustment {
            delta,
            reason: AdjustReason::Goodwill,
            note: "",
            store_id: "sh-001",
            staff_no: "2001",
            terminal_id: "pos-1",
        }
    }

    /// Adjusts and applies, as the ledger and the projection do.
    fn apply(m: &mut Member, delta: i64, rules: &Rules, now: DateTime<FixedOffset>) -> i64 {
        let a = adjust(m, &req(delta), rules, now).expect("allowed");
        apply_adjustment(m, &a);
        assert_eq!(a.member.points, m.points(rules, now.date_naive()));
        a.member.points
    }

    #[test]
    fn a_credit_and_a_debit_book_to_their_month_and_merge_by_maximum() {
        let rules = Rules::default();
        let mut m = member();
        assert_eq!(apply(&mut m, 500, &rules, at(2026, 11, 3)), 500);
        assert_eq!(apply(&mut m, -200, &rules, at(2026, 11, 20)), 300);
        let month = &m.counters["sh-001"].months["2026-11"];
        assert_eq!(
            (month.points_adjusted_in, month.points_adjusted_out),
            (500, 200)
        );
        assert_eq!(
            (month.points_earned, month.points_redeemed, month.spend),
            (0, 0, 0)
        );
        assert_eq!(m.total_spend(), 0);
        assert_eq!(m.visits(), 0);

        // HQ's copy, from before the debit: the merge keeps each field's maximum, nothing twice.
        let mut hq = member();
        hq.version = 2;
        let mut sc = StoreCounters::default();
        sc.month_mut("2026-11").points_adjusted_in = 500;
        hq.counters.insert("sh-001".into(), sc);
        let mut merged = m.clone();
        merged.merge_from(&hq);
        assert_eq!(merged.points(&rules, at(2026, 11, 21).date_naive()), 300);
        merged.merge_from(&hq);
        assert_eq!(merged.counters, m.counters);
        // HQ's bounds apply to the new fields too.
        let mut bad = m.counters.clone();
        bad.get_mut("sh-001")
            .expect("store")
            .month_mut("2026-11")
            .points_adjusted_out = -1;
        assert!(check_counters(&mut bad).is_err());
    }

    #[test]
    fn refusals() {
        let rules = Rules::default();
        let mut m = member();
        let now = at(2026, 11, 3);
        for delta in [0, MAX_ADJUSTMENT + 1, -MAX_ADJUSTMENT - 1, i64::MIN] {
            assert_eq!(
                adjust(&m, &req(delta), &rules, now),
                Err(AdjustError::InvalidDelta)
            );
        }
        let long = "长".repeat(MAX_NOTE_CHARS + 1);
        let a = Adjustment {
            note: &long,
            ..req(5)
        };
        assert_eq!(adjust(&m, &a, &rules, now), Err(AdjustError::InvalidNote));
        apply(&mut m, 100, &rules, now);
        assert_eq!(
            adjust(&m, &req(-101), &rules, now),
            Err(AdjustError::InsufficientPoints { balance: 100 })
        );
        assert_eq!(apply(&mut m, -100, &rules, now), 0);
    }

    /// Under an expiry a credit lapses with its month, and a debit pays the oldest points.
    #[test]
    fn a_credit_lapses_with_its_month_and_a_debit_pays_the_oldest_first() {
        let rules = Rules {
            points_expiry_months: Some(1),
            ..Rules::default()
        };
        let mut m = member();
        m.counters
            .entry("sh-001".into())
            .or_default()
            .month_mut("2026-01")
            .points_earned = 300;
        assert_eq!(apply(&mut m, 200, &rules, at(2026, 2, 10)), 500);
        assert_eq!(apply(&mut m, -100, &rules, at(2026, 2, 11)), 400);
        // January's 200 left lapse at the end of February; February's credit stays.
        assert_eq!(m.points(&rules, at(2026, 3, 1).date_naive()), 200);
        assert_eq!(m.points(&rules, at(2026, 4, 1).date_naive()), 0);
        assert_eq!(
            adjust(&m, &req(-1), &rules, at(2026, 4, 1)),
            Err(AdjustError::InsufficientPoints { balance: 0 })
        );
    }
}

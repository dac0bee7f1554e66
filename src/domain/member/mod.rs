//! Members, their per-store counters, and what follows from them (totals, points balance,
//! level). Design section 3: "Member counters are per store."
//!
//! Every counter here only ever grows. A refund does not decrease `spend`, it increases
//! `spend_refunded`; a redemption increases `points_redeemed`. That is what makes the merge of
//! two copies of a member (this store's and HQ's, changed offline at the same time) a plain
//! per-field maximum, with nothing counted twice.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::{Deserialize, Serialize};

use super::calendar::{birthday_window_year, month_in_spend_window};
use super::money::Money;
use super::rules::{LevelRule, Rules};

mod counters;
mod points;
pub use counters::*;

/// Personal data of a member: the fields the PIPL cares about. Kept together so that one codec
/// can seal them (encryption at rest) and one operation can erase them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Full name as given at registration.
    pub name: String,
    /// Normalised 11-digit mobile number.
    pub phone: String,
    /// Gender as the member chose to give it.
    #[serde(default)]
    pub gender: Gender,
    /// Date of birth (the year may be a placeholder; only month and day drive benefits).
    #[serde(default)]
    pub birthday: Option<NaiveDate>,
    /// Physical member card, normalised (upper-case letters and digits).
    #[serde(default)]
    pub card_no: Option<String>,
}

/// Gender as recorded; `unknown` when not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Gender {
    /// Not given.
    #[default]
    Unknown,
    /// 男.
    Male,
    /// 女.
    Female,
}

/// Marketing consent, recorded with the time it was given (PIPL: separate consent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Consent {
    /// May the chain send marketing messages (SMS, WeChat)?
    #[serde(default)]
    pub marketing: bool,
}

/// A reference to a level as it appears in JSON: `{"code": "silver", "name": "银卡会员"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LevelRef {
    /// Stable level code.
    pub code: String,
    /// Display name.
    pub name: String,
}

impl From<&LevelRule> for LevelRef {
    fn from(l: &LevelRule) -> Self {
        LevelRef {
            code: l.code.clone(),
            name: l.name.clone(),
        }
    }
}

/// A member as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Chain-wide member id (UUIDv7 when registered by a store).
    pub id: String,
    /// Personal data; `None` once erased (PIPL deletion).
    pub profile: Option<Profile>,
    /// Free tags set by staff or HQ (segments, interests).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Marketing consent.
    #[serde(default)]
    pub consent: Consent,
    /// The level held, as decided by the last sale or refund (or HQ).
    #[serde(default)]
    pub level: Option<String>,
    /// When the member registered, and where.
    #[serde(with = "crate::domain::timestamp::serde")]
    pub created_at: DateTime<FixedOffset>,
    /// The store that registered the member.
    #[serde(default)]
    pub created_store: String,
    /// Counters by store id.
    #[serde(default)]
    pub counters: BTreeMap<String, StoreCounters>,
    /// HQ's version of this member (0 when only known locally).
    #[serde(default)]
    pub version: u64,
    /// The last journal `seq` applied to this member; projections skip events at or below it.
    #[serde(default)]
    pub seq: u64,
    /// When the personal data was erased, if it was.
    #[serde(default, with = "crate::domain::timestamp::serde::option")]
    pub erased_at: Option<DateTime<FixedOffset>>,
}

impl Member {
    /// All stores' counters summed over the months selected by `keep`.
    fn sum_months(&self, keep: impl Fn(&str) -> bool) -> MonthCounters {
        let mut t = MonthCounters::default();
        for c in self.counters.values() {
            for (m, mc) in &c.months {
                // Saturating: counters from HQ are bounded (`check_counters`), but a sum must
                // not be what takes a till down if a bound is ever missed.
                if keep(m) {
                    t.combine(mc, i64::saturating_add);
                }
            }
        }
        t
    }

    /// Lifetime spend at all stores, refunds subtracted.
    pub fn total_spend(&self) -> Money {
        let t = self.sum_months(|_| true);
        t.spend.saturating_sub(t.spend_refunded)
    }

    /// Spend that counts towards a level on `today`.
    pub fn window_spend(&self, rules: &Rules, today: NaiveDate) -> Money {
        let t = self.sum_months(|m| month_in_spend_window(rules.spend_window, m, today));
        t.spend.saturating_sub(t.spend_refunded)
    }

    /// Number of visits at all stores.
    pub fn visits(&self) -> u64 {
        self.counters
            .values()
            .fold(0, |n, c| n.saturating_add(c.visits))
    }

    /// The latest visit at any store.
    pub fn last_visit_at(&self) -> Option<DateTime<FixedOffset>> {
        self.counters.values().filter_map(|c| c.last_visit_at).max()
    }

    /// The day of the latest visit at any store on or before `today` (each store's latest
    /// visit and its kept visit days, by their own dates). A visit dated after today — stamped
    /// by a box whose clock ran ahead, here or at another store, and kept by the per-store
    /// maximum until that date comes — does not count, nor hide the visits before it; a member
    /// whose every visit is so dated has visited today.
    pub fn last_visit_day(&self, today: NaiveDate) -> Option<NaiveDate> {
        let mut any = false;
        let mut latest = None;
        for c in self.counters.values() {
            let last = c.last_visit_at.map(|t| t.date_naive());
            for day in last.into_iter().chain(c.visit_days.iter().copied()) {
                any = true;
                if day <= today {
                    latest = latest.max(Some(day));
                }
            }
        }
        latest.or(any.then_some(today))
    }

    /// The level the spend alone earns on `today`.
    pub fn earned_level<'r>(&self, rules: &'r Rules, today: NaiveDate) -> Option<&'r LevelRule> {
        rules.level_for_spend(self.window_spend(rules, today))
    }

    /// The level in force on `today`: what spend earns, and — unless levels can drop — never
    /// below the level already held.
    pub fn effective_level<'r>(&self, rules: &'r Rules, today: NaiveDate) -> Option<&'r LevelRule> {
        let earned = self.earned_level(rules, today);
        if rules.levels_can_drop {
            return earned;
        }
        let held = self.level.as_deref().and_then(|c| rules.level(c));
        match (held, earned) {
            (Some(h), Some(e)) => {
                if rules.rank(Some(&h.code)) >= rules.rank(Some(&e.code)) {
                    Some(h)
                } else {
                    Some(e)
                }
            }
            (h, e) => h.or(e),
        }
    }

    /// Whether the birthday discount may be given on `today`: in a birthday's window, and that
    /// birthday's discount not yet used at any store this store has heard of.
    pub fn birthday_discount_due(&self, rules: &Rules, today: NaiveDate) -> bool {
        let Some(year) = self.birthday_year(rules, today) else {
            return false;
        };
        !self
            .counters
            .values()
            .any(|c| c.birthday_discount_year >= Some(year))
    }

    /// The year of the birthday whose discount a sale on `today` would use (see
    /// [`birthday_window_year`]).
    pub fn birthday_year(&self, rules: &Rules, today: NaiveDate) -> Option<i32> {
        let birthday = self.profile.as_ref().and_then(|p| p.birthday)?;
        birthday_window_year(birthday, today, rules.birthday_window)
    }

    /// Merges another copy of this member (typically HQ's) into this one: counters by per-store
    /// maximum; profile, tags, consent and level from whichever copy has the higher `version`;
    /// the registration (time and store) from the other copy when this one lacks it.
    pub fn merge_from(&mut self, other: &Member) {
        // Each copy is within the bounds above (`check_counters`), but their union may not be:
        // copies naming ever new stores or months would grow the member without end. A union
        // past the bounds is left out, and the rest of the copy still applies.
        let mut counters = self.counters.clone();
        for (store, c) in &other.counters {
            counters.entry(store.clone()).or_default().merge(c);
        }
        if counters.len() <= MAX_COUNTER_STORES
            && counters
                .values()
                .all(|c| c.months.len() <= MAX_COUNTER_MONTHS)
        {
            self.counters = counters;
        }
        if self.created_store.is_empty() {
            // A member this copy knows only from sales (a cache rebuilt from the journal, which
            // holds this store's sales but not HQ's record of the member) takes the
            // registration from the copy that has it: where, and the earlier time (HQ's copy
            // says "now" when HQ did not send one).
            self.created_store = other.created_store.clone();
            self.created_at = self.created_at.min(other.created_at);
        }
        if other.version > self.version {
            // An erasure is never undone: neither the profile nor the tags (free text about
            // the person) come back with a newer copy.
            if self.erased_at.is_none() {
                self.profile = other.profile.clone();
                self.tags = other.tags.clone();
            }
            self.consent = other.consent.clone();
            self.version = other.version;
            if other.level.is_some() {
                self.level = other.level.clone();
            }
        }
        if other.erased_at.is_some() && self.erased_at.is_none() {
            self.erased_at = other.erased_at;
            self.profile = None;
            self.tags.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn member() -> Member {
        Member {
            id: "m1".into(),
            profile: Some(Profile {
                name: "张三".into(),
                phone: "13800138000".into(),
                gender: Gender::Male,
                birthday: NaiveDate::from_ymd_opt(1990, 11, 23),
                card_no: None,
            }),
            tags: vec![],
            consent: Consent::default(),
            level: None,
            created_at: FixedOffset::east_opt(8 * 3600)
                .unwrap()
                .with_ymd_and_hms(2025, 1, 1, 9, 0, 0)
                .unwrap(),
            created_store: "sh-001".into(),
            counters: BTreeMap::new(),
            version: 0,
            seq: 0,
            erased_at: None,
        }
    }

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 23).unwrap()
    }

    #[test]
    fn sums_over_counters_out_of_bounds_saturate_instead_of_overflowing() {
        let mut m = member();
        let huge = MonthCounters {
            spend: i64::MAX,
            points_earned: i64::MAX,
            ..MonthCounters::default()
        };
        for store in ["a", "b"] {
            let c = m.counters.entry(store.into()).or_default();
            c.visits = u64::MAX;
            c.months.insert("2026-11".into(), huge.clone());
        }
        assert!(check_counters(&mut m.counters.clone()).is_err());
        let rules = Rules::default();
        assert_eq!(m.total_spend(), i64::MAX);
        assert_eq!(m.window_spend(&rules, today()), i64::MAX);
        assert_eq!(m.points(&rules, today()), i64::MAX);
        assert_eq!(m.visits(), u64::MAX);
    }

    #[test]
    fn totals_sum_stores_and_subtract_refunds() {
        let mut m = member();
        let a = m.counters.entry("sh-001".into()).or_default();
        a.month_mut("2026-11").spend = 100_000;
        a.month_mut("2026-11").spend_refunded = 10_000;
        let b = m.counters.entry("sh-002".into()).or_default();
        b.month_mut("2025-01").spend = 50_000;
        assert_eq!(m.total_spend(), 140_000);
        let mut rules = Rules::default();
        rules.spend_window = crate::domain::rules::SpendWindow::Rolling365d;
        assert_eq!(m.window_spend(&rules, today()), 90_000);
    }

    #[test]
    fn points_expire_oldest_first() {
        let mut m = member();
        let c = m.counters.entry("sh-001".into()).or_default();
        c.month_mut("2024-01").points_earned = 500;
        c.month_mut("2026-10").points_earned = 300;
        c.month_mut("2026-10").points_redeemed = 200;
        let mut rules = Rules::default();
        assert_eq!(m.points(&rules, today()), 600);
        rules.points_expiry_months = Some(12);
        // The 500 of 2024-01 lapsed at the start of 2025-02, before the 200 were paid in
        // 2026-10: those came out of that month's 300.
        assert_eq!(m.points(&rules, today()), 100);
        // Paid in 2024-06, the 200 came out of the 500, whose other 300 lapsed since.
        let c = m.counters.get_mut("sh-001").unwrap();
        c.month_mut("2026-10").points_redeemed = 0;
        c.month_mut("2024-06").points_redeemed = 200;
        assert_eq!(m.points(&rules, today()), 300);
    }

    /// Paying with points never brings lapsed points back: four sales that each pay with the
    /// whole balance spend what the member held, and nothing of what had lapsed.
    #[test]
    fn lapsed_points_stay_lapsed_however_often_the_member_pays() {
        let mut m = member();
        let rules = Rules {
            points_expiry_months: Some(12),
            ..Rules::default()
        };
        let c = m.counters.entry("sh-001".into()).or_default();
        c.month_mut("2024-01").points_earned = 500;
        c.month_mut("2026-10").points_earned = 300;
        let mut paid = 0;
        for _ in 0..4 {
            let balance = m.points(&rules, today());
            paid += balance;
            let month = today().format("%Y-%m").to_string();
            let c = m.counters.get_mut("sh-001").unwrap();
            c.month_mut(&month).points_redeemed += balance;
            c.month_mut(&month).points_earned += 5;
        }
        // 300, then the 5 earned by each of the three sales before the last.
        assert_eq!(paid, 300 + 15);
        assert_eq!(m.points(&rules, today()), 5);

        // Counters that show points paid when none were held (another store's, or paid before
        // the expiry was configured) take them from the lapsed points...
        let other = m.counters.entry("sh-002".into()).or_default();
        other.month_mut("2026-09").points_redeemed = 500;
        assert_eq!(m.points(&rules, today()), 5);
        // ... and beyond every point earned, later points pay for them.
        let mut other_store = |f: fn(&mut MonthCounters)| {
            f(m.counters.get_mut("sh-002").unwrap().month_mut("2026-09"));
            m.points(&rules, today())
        };
        assert_eq!(other_store(|c| c.points_redeemed = 600), 0);
        assert_eq!(other_store(|c| c.points_restored = 95), 0);
        assert_eq!(other_store(|c| c.points_restored = 100), 5);
    }

    #[test]
    fn level_never_drops_unless_configured() {
        let mut m = member();
        m.level = Some("silver".into());
        let mut rules = Rules::default();
        assert_eq!(
            m.effective_level(&rules, today()).map(|l| l.code.as_str()),
            Some("silver")
        );
        rules.levels_can_drop = true;
        assert_eq!(m.effective_level(&rules, today()), None);
    }

    #[test]
    fn birthday_once_per_year() {
        let mut m = member();
        let rules = Rules::default();
        assert!(m.birthday_discount_due(&rules, today()));
        m.counters
            .entry("sh-002".into())
            .or_default()
            .birthday_discount_year = Some(2026);
        assert!(!m.birthday_discount_due(&rules, today()));
    }

    #[test]
    fn merge_is_per_store_max() {
        let mut here = member();
        here.counters
            .entry("sh-001".into())
            .or_default()
            .month_mut("2026-11")
            .spend = 500;
        let mut hq = member();
        hq.version = 3;
        hq.counters
            .entry("sh-001".into())
            .or_default()
            .month_mut("2026-11")
            .spend = 300;
        hq.counters
            .entry("sh-002".into())
            .or_default()
            .month_mut("2026-11")
            .spend = 700;
        here.merge_from(&hq);
        assert_eq!(here.total_spend(), 1200);
        assert_eq!(here.version, 3);
        // Merging again changes nothing.
        let before = here.clone();
        here.merge_from(&hq);
        assert_eq!(here, before);
    }

    /// A member known only from this store's sales (a cache rebuilt from the journal) takes
    /// the registration of HQ's copy; a registration already held stays.
    #[test]
    fn a_member_known_from_sales_takes_the_registration_of_hq_s_copy() {
        let at = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap();
        let mut here = member();
        here.profile = None;
        here.created_store = String::new();
        here.created_at = at("2026-11-21T10:00:00+08:00");
        let mut hq = member();
        hq.version = 3;
        hq.created_store = "sh-002".into();
        here.merge_from(&hq);
        assert_eq!(
            (here.created_at, here.created_store.as_str()),
            (hq.created_at, "sh-002")
        );
        let mut later = hq.clone();
        later.version = 4;
        later.created_at = at("2026-12-01T10:00:00+08:00");
        later.created_store = "sh-003".into();
        here.merge_from(&later);
        assert_eq!(
            (here.created_at, here.created_store.as_str()),
            (hq.created_at, "sh-002")
        );
    }

    /// A newer copy of an erased member (HQ's, sent before it heard of the erasure) brings
    /// back neither the profile nor the tags.
    #[test]
    fn an_erased_member_gets_no_tags_back_from_a_newer_copy() {
        let mut here = member();
        here.tags = vec!["孕妇".into()];
        let mut erased = here.clone();
        erased.erased_at =
            Some(chrono::DateTime::parse_from_rfc3339("2026-11-20T10:00:00+08:00").unwrap());
        here.merge_from(&erased);
        assert_eq!((here.profile.is_none(), here.tags.len()), (true, 0));
        let mut newer = member();
        newer.version = 4;
        newer.tags = vec!["孕妇".into()];
        here.merge_from(&newer);
        assert_eq!(
            (here.profile.is_none(), here.tags.len(), here.version),
            (true, 0, 4)
        );
    }

    /// Counters with a month after today (another store's clock ran ahead) lapse nothing that
    /// today still holds.
    #[test]
    fn a_month_after_today_lapses_nothing_early() {
        let mut m = member();
        let rules = Rules {
            points_expiry_months: Some(12),
            ..Rules::default()
        };
        m.counters
            .entry("sh-001".into())
            .or_default()
            .month_mut("2026-01")
            .points_earned = 500;
        m.counters
            .entry("sh-002".into())
            .or_default()
            .month_mut("2028-01")
            .spend = 100;
        assert_eq!(m.points(&rules, today()), 500);
    }

    #[test]
    fn copies_naming_ever_new_stores_do_not_grow_a_member_past_the_bounds() {
        let mut here = member();
        for i in 0..MAX_COUNTER_STORES {
            here.counters
                .entry(format!("s{i}"))
                .or_default()
                .month_mut("2026-11")
                .spend = 1;
        }
        assert!(check_counters(&mut here.counters.clone()).is_ok());
        let mut hq = member();
        hq.version = 7;
        hq.tags = vec!["vip".into()];
        hq.counters
            .entry("one-store-too-many".into())
            .or_default()
            .month_mut("2026-11")
            .spend = 5;
        here.merge_from(&hq);
        assert_eq!(here.counters.len(), MAX_COUNTER_STORES);
        assert_eq!(here.total_spend(), 2_000);
        assert_eq!(
            (here.version, here.tags.clone()),
            (7, vec!["vip".to_string()])
        );
        // Within the bounds a store's months still merge.
        let mut more = member();
        more.counters
            .entry("s0".into())
            .or_default()
            .month_mut("2026-10")
            .spend = 10;
        here.merge_from(&more);
        assert_eq!(here.total_spend(), 2_010);
    }
}

//! Membership rules: levels, points, birthday benefits, redemption. Design section 3.
//!
//! These are values, normally read from `[membership]` in the config and later pushed by HQ; the
//! defaults are the chain's own table. Nothing here reads a clock or a store.

use serde::{Deserialize, Serialize};

use super::money::{Bps, Money};

/// One membership level. Levels are reached by cumulative spend (see [`SpendWindow`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LevelRule {
    /// Stable code used in JSON and events (`regular`, `silver`, `gold`).
    pub code: String,
    /// Display name printed on receipts and shown at the till (普通会员).
    pub name: String,
    /// Spend (minor units, inside the spend window) at which the level is reached.
    pub threshold: Money,
    /// Points earned per ¥1 paid with money, in thousandths (1.2 points per yuan = 1200).
    pub points_per_yuan_milli: u32,
    /// Everyday discount for the level in basis points (0 = none; the chain's table has none).
    pub discount_bps: Bps,
    /// Birthday discount in basis points (8折 = 20 % off = 2000).
    pub birthday_discount_bps: Bps,
    /// Largest birthday discount for one sale, if the chain caps it.
    pub birthday_discount_cap: Option<Money>,
    /// Benefits that are not price rules (priority service, exclusive gift), shown at the till.
    pub benefits: Vec<String>,
}

/// Over which period spend counts towards a level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SpendWindow {
    /// All spend since registration.
    #[default]
    Lifetime,
    /// Spend in the current calendar year (store timezone).
    CalendarYear,
    /// Spend in the current month and the eleven before it (spend is bucketed by month, so the
    /// window moves a month at a time; documented in the README). Spelled `rolling_365d` as
    /// documented; `rolling365d`, what serde's snake_case made of the name, is still read.
    #[serde(rename = "rolling_365d", alias = "rolling365d")]
    Rolling365d,
}

/// Which days around the birthday count as "the birthday" for the discount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BirthdayWindow {
    /// The birthday itself (29 February is celebrated on 28 February in other years).
    #[default]
    Day,
    /// The Monday–Sunday week that contains this year's birthday.
    Week,
    /// The calendar month of the birthday.
    Month,
}

/// The whole `[membership]` rule set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rules {
    /// Levels ordered by ascending threshold.
    pub levels: Vec<LevelRule>,
    /// Period over which spend counts towards a level.
    pub spend_window: SpendWindow,
    /// Whether a member can lose a level when windowed spend falls or a refund reduces it.
    pub levels_can_drop: bool,
    /// Birthday discount window; the discount is used at most once per calendar year.
    pub birthday_window: BirthdayWindow,
    /// Points needed for ¥1 when paying with points (100 = each point is worth 1 分).
    pub redeem_points_per_yuan: u32,
    /// Largest share of a sale that may be paid with points, in basis points (50 % = 5000).
    pub max_redeem_bps: Bps,
    /// Points expire this many months after the month they were earned in (`None`: never).
    pub points_expiry_months: Option<u32>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            levels: vec![
                LevelRule {
                    code: "regular".into(),
                    name: "普通会员".into(),
                    threshold: 100_000,
                    points_per_yuan_milli: 1000,
                    discount_bps: 0,
                    birthday_discount_bps: 2000,
                    birthday_discount_cap: None,
                    benefits: vec![],
                },
                LevelRule {
                    code: "silver".into(),
                    name: "银卡会员".into(),
                    threshold: 300_000,
                    points_per_yuan_milli: 1200,
                    discount_bps: 0,
                    birthday_discount_bps: 3000,
                    birthday_discount_cap: None,
                    benefits: vec!["priority for events".into()],
                },
                LevelRule {
                    code: "gold".into(),
                    name: "金卡会员".into(),
                    threshold: 500_000,
                    points_per_yuan_milli: 1500,
                    discount_bps: 0,
                    birthday_discount_bps: 4000,
                    birthday_discount_cap: None,
                    benefits: vec!["exclusive gift".into(), "priority service".into()],
                },
            ],
            spend_window: SpendWindow::Lifetime,
            levels_can_drop: false,
            birthday_window: BirthdayWindow::Day,
            redeem_points_per_yuan: 100,
            max_redeem_bps: 5000,
            points_expiry_months: None,
        }
    }
}

impl Rules {
    /// The rule for a level code, if the code is known.
    pub fn level(&self, code: &str) -> Option<&LevelRule> {
        self.levels.iter().find(|l| l.code == code)
    }

    /// The position of a level in the ladder (higher is better); unknown codes rank lowest.
    pub fn rank(&self, code: Option<&str>) -> Option<usize> {
        code.and_then(|c| self.levels.iter().position(|l| l.code == c))
    }

    /// The highest level whose threshold `spend` reaches, if any.
    pub fn level_for_spend(&self, spend: Money) -> Option<&LevelRule> {
        self.levels.iter().rev().find(|l| spend >= l.threshold)
    }

    /// The next level above `code` (the first level when `code` is `None`).
    pub fn next_level(&self, code: Option<&str>) -> Option<&LevelRule> {
        match self.rank(code) {
            Some(i) => self.levels.get(i + 1),
            None => self.levels.first(),
        }
    }

    /// Checks the invariants the pricing code relies on; the message names the offending part.
    pub fn validate(&self) -> Result<(), String> {
        if self.levels.is_empty() {
            return Err("at least one level is required".into());
        }
        for (i, l) in self.levels.iter().enumerate() {
            if l.code.trim().is_empty() || l.name.trim().is_empty() {
                return Err(format!("levels[{i}]: code and name must not be empty"));
            }
            if l.threshold < 0 {
                return Err(format!(
                    "levels[{i}] ({}): threshold must not be negative",
                    l.code
                ));
            }
            if l.discount_bps > 10_000 || l.birthday_discount_bps > 10_000 {
                return Err(format!(
                    "levels[{i}] ({}): a discount cannot exceed 100 %",
                    l.code
                ));
            }
            // A negative cap switched the birthday discount off without a word.
            if l.birthday_discount_cap.is_some_and(|c| c < 0) {
                return Err(format!(
                    "levels[{i}] ({}): birthday_discount_cap must not be negative",
                    l.code
                ));
            }
            if l.points_per_yuan_milli > 1_000_000 {
                return Err(format!(
                    "levels[{i}] ({}): points_per_yuan above 1000 is not plausible",
                    l.code
                ));
            }
            if i > 0 && l.threshold <= self.levels[i - 1].threshold {
                return Err(format!(
                    "levels[{i}] ({}): thresholds must increase from level to level",
                    l.code
                ));
            }
            if self.levels[..i].iter().any(|o| o.code == l.code) {
                return Err(format!("levels[{i}]: duplicate level code {}", l.code));
            }
        }
        if self.redeem_points_per_yuan == 0 {
            return Err("redeem_points_per_yuan must be at least 1".into());
        }
        if self.max_redeem_bps > 10_000 {
            return Err("max_redeem_percent cannot exceed 100".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_negative_birthday_cap_is_refused() {
        let mut r = Rules::default();
        r.levels[1].birthday_discount_cap = Some(-1);
        let e = r.validate().unwrap_err();
        assert!(
            e.contains("birthday_discount_cap must not be negative"),
            "{e}"
        );
        r.levels[1].birthday_discount_cap = Some(0);
        r.validate().unwrap();
    }

    #[test]
    fn chain_table_is_the_default() {
        let r = Rules::default();
        r.validate().unwrap();
        assert_eq!(r.level_for_spend(99_999).map(|l| l.code.as_str()), None);
        assert_eq!(
            r.level_for_spend(250_000).map(|l| l.code.as_str()),
            Some("regular")
        );
        assert_eq!(
            r.level_for_spend(300_000).map(|l| l.code.as_str()),
            Some("silver")
        );
        assert_eq!(
            r.level_for_spend(9_000_000).map(|l| l.code.as_str()),
            Some("gold")
        );
        assert_eq!(r.next_level(None).map(|l| l.code.as_str()), Some("regular"));
        assert_eq!(r.next_level(Some("gold")), None);
    }

    #[test]
    fn rejects_unordered_levels() {
        let mut r = Rules::default();
        r.levels.swap(0, 1);
        assert!(
            r.validate()
                .unwrap_err()
                .contains("thresholds must increase")
        );
    }
}
